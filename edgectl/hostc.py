"""Generated C compiled for this machine and called through ctypes: the host half of every C parity test, and
how `edgectl run --policy` flies a c or stm32 export. Ground floor: numpy, ctypes and a C compiler, no export."""
from __future__ import annotations

import ctypes
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .errors import ExportError, TargetUnavailable

PREFIX = "edgectl_policy"  # the generated C's symbol prefix (export.c_codegen.PREFIX is this one)

HOST_CFLAGS = ["-std=c99", "-O2", "-ffp-contract=off", "-Wall", "-Wextra", "-Werror", "-pedantic"]


def compile_shared(files: dict[str, str], workdir: Path | None = None, *, cc: str = "cc", extra=()) -> Path:
    """Write `files` and build every .c into one shared library; returns its path."""
    if shutil.which(cc) is None:
        raise TargetUnavailable(f"host C compiler {cc!r} not found: install gcc (apt-get install gcc)")
    work = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="edgectl-hostc-"))
    work.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (work / name).write_text(text)
    sources = [str(work / n) for n in files if n.endswith(".c")]
    lib = work / "libpolicy.so"
    cmd = [cc, *HOST_CFLAGS, *extra, "-shared", "-fPIC", "-o", str(lib), *sources]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise ExportError(f"host compile failed ({' '.join(cmd)}):\n{r.stderr[-3000:]}")
    return lib


class HostPolicy:
    """`edgectl_policy_step` from a compiled library; step() for one observation, batch() for many."""

    def __init__(self, lib: Path, obs_size: int, action_size: int):
        self._lib = ctypes.CDLL(str(lib))
        self._fn = getattr(self._lib, f"{PREFIX}_step")
        self._fn.restype = ctypes.c_int
        self._fn.argtypes = [ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_float)]
        self.obs_size, self.action_size = obs_size, action_size

    def step(self, obs: np.ndarray) -> tuple[int, np.ndarray]:
        x = np.ascontiguousarray(obs, dtype=np.float32)
        if x.shape != (self.obs_size,):
            raise ValueError(f"observation shape {list(x.shape)}, expected [{self.obs_size}]")
        out = np.full(self.action_size, np.nan, np.float32)
        rc = self._fn(x.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        return rc, out

    def batch(self, obs: np.ndarray) -> np.ndarray:
        rows = []
        for i, x in enumerate(np.asarray(obs, np.float32)):
            rc, a = self.step(x)
            if rc != 0:
                raise ExportError(f"C policy refused observation {i} (return code {rc})")
            rows.append(a)
        return np.stack(rows)


def load_host_policy(files: dict[str, str], obs_size: int, action_size: int, workdir: Path | None = None) -> HostPolicy:
    return HostPolicy(compile_shared(files, workdir), obs_size, action_size)

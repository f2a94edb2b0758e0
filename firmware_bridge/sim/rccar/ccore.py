"""The C car core (``firmware/car_link.c``) compiled for the host and driven through ctypes.

Same interface as ``car_core.CarCore``, so ``sim_car`` and the tests can swap one for the other.
The build uses the flags CI holds the firmware to (``CFLAGS``) and is cached by source hash.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

from .car_core import COUNTERS, Sensors

FIRMWARE_DIR = Path(__file__).resolve().parents[2] / "rccar" / "firmware"  # the car MCU's C, shipped with the link
SOURCES = ("car_link.c", "car_link.h")
CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Wconversion", "-Wsign-conversion",
          "-Wshadow", "-O2", "-fPIC", "-shared")


class CCoreBuildError(RuntimeError):
    pass


def build(out_dir: str | os.PathLike | None = None, cc: str | None = None) -> Path:
    """Compile the core into a shared library; returns its path (reused while the sources match)."""
    cc = cc or os.environ.get("CC", "gcc")
    if shutil.which(cc) is None:
        raise CCoreBuildError(f"C compiler {cc!r} not found (set CC): needed to build {FIRMWARE_DIR / 'car_link.c'}")
    h = hashlib.sha256(" ".join((cc,) + CFLAGS).encode())
    for name in SOURCES:
        h.update((FIRMWARE_DIR / name).read_bytes())
    out = Path(out_dir) if out_dir else Path(tempfile.gettempdir()) / f"edgectl-rccar-{h.hexdigest()[:16]}"
    lib = out / "libcarlink.so"
    if lib.exists() and out_dir is None:
        return lib
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".libcarlink.{os.getpid()}.so"  # rename into place: concurrent builds never see half a file
    cmd = [cc, *CFLAGS, str(FIRMWARE_DIR / "car_link.c"), "-o", str(tmp)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise CCoreBuildError(f"{' '.join(cmd)} failed:\n{r.stderr}")
    os.replace(tmp, lib)
    return lib


_WRITE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint8), ctypes.c_uint16)


class _Sensors(ctypes.Structure):
    _fields_ = [("speed_mm_s", ctypes.c_int16), ("erpm", ctypes.c_int32), ("battery_mv", ctypes.c_uint16),
                ("yaw_rate_mrad_s", ctypes.c_int16), ("accel_x_mm_s2", ctypes.c_int16),
                ("accel_y_mm_s2", ctypes.c_int16), ("flags", ctypes.c_uint16)]


def load(path: str | os.PathLike | None = None) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path or build()))
    vp, u8, u16, u32, i16 = ctypes.c_void_p, ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_int16
    sig = {
        "cl_link_size": (ctypes.c_size_t, []),
        "cl_init": (None, [vp, _WRITE, vp]),
        "cl_feed": (ctypes.c_int, [vp, u8, u32]),
        "cl_tick": (None, [vp, u32]),
        "cl_outputs": (None, [vp, ctypes.POINTER(i16), ctypes.POINTER(i16), ctypes.POINTER(u8)]),
        "cl_flags": (u16, [vp]),
        "cl_counter": (u32, [vp, u8]),
        "cl_send_heartbeat": (None, [vp, u32]),
        "cl_send_telemetry": (None, [vp, u32, ctypes.POINTER(_Sensors)]),
        "cl_frame": (u16, [u8, u16, ctypes.c_char_p, u8, ctypes.POINTER(u8), u16]),
        "cl_crc16": (u16, [ctypes.c_char_p, u16]),
    }
    for name, (res, args) in sig.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


class CCore:
    """One ``cl_link`` in a ctypes buffer. Not thread-safe (neither is the MCU's loop)."""

    def __init__(self, write: Callable[[bytes], None] | None = None, lib: ctypes.CDLL | None = None):
        self.lib = lib or load()
        self.write = write
        self._mem = ctypes.create_string_buffer(self.lib.cl_link_size())
        self._cb = _WRITE(self._on_write)  # keep a reference: C holds only the pointer
        self.lib.cl_init(self._mem, self._cb, None)
        self._pending = 0

    def _on_write(self, _ctx, data, n):
        if self.write is not None:
            self.write(ctypes.string_at(data, n))

    def feed(self, data: bytes, now_ms: int) -> list[int]:
        # cl_feed returns 0 both for idle fill (0x00 0x00) and for a valid frame it ignored; count
        # the bytes since the last delimiter to tell them apart, as CarCore.feed does
        out = []
        feed, mem, now = self.lib.cl_feed, self._mem, now_ms & 0xFFFFFFFF
        for b in data:
            r = feed(mem, b, now)
            if b:
                self._pending += 1
            else:
                if self._pending:
                    out.append(r)
                self._pending = 0
        return out

    def tick(self, now_ms: int) -> None:
        self.lib.cl_tick(self._mem, now_ms & 0xFFFFFFFF)

    def outputs(self) -> tuple[int, int, bool]:
        s, t, b = ctypes.c_int16(), ctypes.c_int16(), ctypes.c_uint8()
        self.lib.cl_outputs(self._mem, ctypes.byref(s), ctypes.byref(t), ctypes.byref(b))
        return s.value, t.value, bool(b.value)

    @property
    def flags(self) -> int:
        return self.lib.cl_flags(self._mem)

    def counters(self) -> dict[str, int]:
        return {name: self.lib.cl_counter(self._mem, i) for i, name in enumerate(COUNTERS)}

    def send_heartbeat(self, now_ms: int) -> None:
        self.lib.cl_send_heartbeat(self._mem, now_ms & 0xFFFFFFFF)

    def send_telemetry(self, now_ms: int, s: Sensors) -> None:
        cs = _Sensors(s.speed_mm_s, s.erpm, s.battery_mv, s.yaw_rate_mrad_s, s.accel_x_mm_s2, s.accel_y_mm_s2, s.flags)
        self.lib.cl_send_telemetry(self._mem, now_ms & 0xFFFFFFFF, ctypes.byref(cs))


def c_frame(lib: ctypes.CDLL, mtype: int, seq: int, body: bytes) -> bytes:
    """A frame built by the C encoder (to be decoded by the Python one)."""
    out = (ctypes.c_uint8 * 64)()
    n = lib.cl_frame(mtype, seq, body, len(body), out, len(out))
    if n == 0:
        raise ValueError(f"cl_frame refused type {mtype} with a {len(body)}-byte body")
    return bytes(out[:n])

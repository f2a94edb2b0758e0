"""The edgectl Crazyflie app compiled for this host: what the simulated Crazyflie runs on board.

`edgectl export --target crazyflie` writes an out-of-tree app (export/crazyflie_app.py: controller,
observation builder, policy, backup, monitors) that the firmware build links into cf2.bin for the
STM32. Here the same folder, written by the same function, is compiled with the host's gcc -O2 against
stand-in firmware headers (host_firmware/: the API of crazyflie-firmware FIRMWARE_RELEASE as the app
uses it) and a host shim (host_firmware/edgectl_host.c: tick count, supervisor, commander, power
distribution, console, and the log/param tables), and loaded with ctypes. So the figures a simulated
flight gives (hover error, link-cut latency, fault handling) are those of the C that gets flashed.

    AppImage(bundle, impl)   the compiled app of a bundle, built once into a cache directory keyed by
                             the sha256 of its sources and flags (``$EDGECTL_CACHE/crazyflie_host``)
    AppImage.boot()          one power-on: a fresh copy of the library, so the app's static variables
                             start from their initial values, as after a reset (CompiledApp)

The policy is the generated float32 C (impl "c"), the edgectl_policy.c of an `edgectl export --target c
[--int8]` folder, or a Python function called from the C app in its place (impl "numpy": the bundle's
own forward; ``policy=``: any ``f(obs) -> action``). Everything around it is the app's C either way.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import weakref
from pathlib import Path

import numpy as np

from .setpoints import Setpoint
from .toc import PARAM_TYPES

FIRMWARE_RELEASE = "2026.08"  # crazyflie-firmware release the stand-in headers follow
HOST_FIRMWARE = Path(__file__).resolve().parent / "host_firmware"
LIBRARY = "libedgectl_app.so"
# As the firmware compiles the app (tools/kbuild/Makefile.kbuild: -std=gnu11 -Wall -Wmissing-braces
# -Wdouble-promotion -fno-strict-aliasing; Makefile: -Werror -fno-math-errno), plus -Wextra; -O2 for the
# host and no fused multiply-add, so a run is the same on every x86-64.
CFLAGS = ("-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wmissing-braces", "-Wdouble-promotion", "-Werror",
          "-fno-math-errno", "-fno-strict-aliasing", "-ffp-contract=off", "-fPIC", "-shared")
# The app-config's CONFIG_CONTROLLER_OOT / CONFIG_APP_ENABLE, and the Kconfig default of a Crazyflie 2.x
# build, CONFIG_ENABLE_THRUST_BAT_COMPENSATED=y (normalized forces are fractions of the firmware's
# per-motor maximum thrust, so the app rescales its model's forces by powerDistributionGetMaxThrust()).
DEFINES = ("CONFIG_CONTROLLER_OOT=1", "CONFIG_APP_ENABLE=1", "CONFIG_ENABLE_THRUST_BAT_COMPENSATED=1")
ST_SIZE, SP_SIZE, MODES = 16, 16, 7  # edgectl_host.c's flat layouts (checked at load)
_U32 = 0xFFFFFFFF
_GROUP_START, _GROUP_STOP = 0x80000000, 0x80000001
_LOG_CTYPES = {1: ctypes.c_uint8, 2: ctypes.c_uint16, 3: ctypes.c_uint32, 4: ctypes.c_int8, 5: ctypes.c_int16,
               6: ctypes.c_int32, 7: ctypes.c_float}
_FMT_CTYPES = {"<B": ctypes.c_uint8, "<H": ctypes.c_uint16, "<I": ctypes.c_uint32, "<b": ctypes.c_int8,
               "<h": ctypes.c_int16, "<i": ctypes.c_int32, "<f": ctypes.c_float}
_PARAM_CORE, _PARAM_RONLY, _PARAM_PERSISTENT = 0x20, 0x40, 0x100
BACKUP_PHASES = ("level", "hold", "descend", "landed")  # edgectl_backup.h EDGECTL_BACKUP_LEVEL..LANDED


def _target_unavailable():
    from export.errors import TargetUnavailable
    return TargetUnavailable


class NoCompiler(_target_unavailable()):
    """No host C compiler: the simulated Crazyflie cannot run the app (an export.errors.TargetUnavailable)."""


def cache_root() -> Path:
    return Path(os.environ.get("EDGECTL_CACHE", Path.home() / ".cache" / "edgectl")) / "crazyflie_host"


def find_compiler() -> str:
    cc = shutil.which("gcc")
    if cc is None:
        raise NoCompiler("no C compiler (gcc) on PATH: the simulated Crazyflie runs its on-board app's C compiled "
                         "for this machine; install gcc (Debian/Ubuntu: sudo apt install gcc)")
    return cc


# --- sources ---------------------------------------------------------------------------------------------
def callback_policy_files(obs_size: int, action_size: int = 4) -> dict[str, str]:
    """edgectl_policy.h/.c that call a function of the host process (edgectl_host_set_policy) in place
    of a network; the rest of the app is unchanged."""
    h = f"""/* edgectl_policy.h - host build: the policy is a function of the simulated vehicle's process. */
#ifndef EDGECTL_POLICY_H
#define EDGECTL_POLICY_H
#define EDGECTL_POLICY_OBS_SIZE {int(obs_size)}
#define EDGECTL_POLICY_ACTION_SIZE {int(action_size)}
typedef int (*edgectl_host_policy_fn)(const float *obs, float *action);
void edgectl_host_set_policy(edgectl_host_policy_fn fn);
/* Returns 0 and writes action[], or nonzero (action[] untouched). */
int edgectl_policy_step(const float obs[EDGECTL_POLICY_OBS_SIZE], float action[EDGECTL_POLICY_ACTION_SIZE]);
#endif
"""
    c = """#include <stddef.h>
#include "edgectl_policy.h"
static edgectl_host_policy_fn hostPolicy;
void edgectl_host_set_policy(edgectl_host_policy_fn fn) {
  hostPolicy = fn;
}
int edgectl_policy_step(const float obs[EDGECTL_POLICY_OBS_SIZE], float action[EDGECTL_POLICY_ACTION_SIZE]) {
  return hostPolicy == NULL ? 1 : hostPolicy(obs, action);
}
"""
    return {"edgectl_policy.h": h, "edgectl_policy.c": c}


def export_folder_policy_files(bundle, folder: str | Path) -> tuple[dict[str, str], str]:
    folder = Path(folder)
    if not (folder / "report.json").is_file() or not (folder / "edgectl_policy.c").is_file():
        raise ValueError(f"on-board policy {folder}: expected c, numpy, or an `edgectl export --target c` folder "
                         "(report.json, edgectl_policy.c)")
    report = json.loads((folder / "report.json").read_text())
    if report.get("bundle_weights_sha256") != bundle.manifest["weights"]["sha256"]:
        raise ValueError(f"on-board policy {folder}: exported from another bundle than {bundle.path}")
    return {n: (folder / n).read_text() for n in ("edgectl_policy.h", "edgectl_policy.c")}, \
        f"exported C ({'int8' if report.get('int8') else 'float32'}, {folder})"


def app_sources(bundle, policy_files: dict[str, str]) -> dict[str, str]:
    """The app's src/ (.c and .h) exactly as `edgectl export --target crazyflie` writes it."""
    from export.crazyflie_app import write_app
    with tempfile.TemporaryDirectory(prefix="edgectl-cfapp-") as tmp:
        app = write_app(bundle, policy_files, Path(tmp) / "app")
        return {p.name: p.read_text() for p in sorted((app / "src").iterdir()) if p.suffix in (".c", ".h")}


def _host_files() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(HOST_FIRMWARE.iterdir()) if p.suffix in (".c", ".h")}


def build(sources: dict[str, str], defines=(), *, cache: Path | None = None) -> Path:
    """Compile the app's sources with the host shim into a shared library; returns its path. Built once
    per sha256 of (sources, stand-ins, compiler, flags): a second call returns the cached library."""
    cc = find_compiler()
    host = _host_files()
    flags = [*CFLAGS, *(f"-D{d}" for d in (*DEFINES, *defines))]
    h = hashlib.sha256()
    for tag, files in (("src", sources), ("host", host)):
        for name in sorted(files):
            h.update(f"{tag}/{name}\0".encode() + files[name].encode() + b"\0")
    h.update("\0".join([cc, *flags]).encode())
    key = h.hexdigest()[:32]
    root = Path(cache) if cache is not None else cache_root()
    out = root / key
    lib = out / LIBRARY
    if lib.is_file():
        return lib
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    try:
        (tmp / "include").mkdir()
        (tmp / "src").mkdir()
        for name, text in host.items():
            (tmp / ("src" if name.endswith(".c") else "include") / name).write_text(text)
        for name, text in sources.items():
            (tmp / "src" / name).write_text(text)
        # edgectl_host.c #includes the controller: one translation unit
        units = ["src/edgectl_host.c"] + [f"src/{n}" for n in sorted(sources)
                                          if n.endswith(".c") and n != "edgectl_controller.c"]
        cmd = [cc, *flags, "-Iinclude", "-Isrc", "-o", LIBRARY, *units, "-lm"]
        r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            from export.errors import ExportError
            raise ExportError(f"host build of the Crazyflie app failed in {tmp} ({' '.join(cmd)}):\n{r.stderr[-4000:]}")
        (tmp / "build.json").write_text(json.dumps({"cmd": cmd, "firmware_release": FIRMWARE_RELEASE}, indent=1))
        try:
            os.rename(tmp, out)
        except OSError:  # another process built the same key first
            if not lib.is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return lib


# --- the compiled app ------------------------------------------------------------------------------------
class _Var(ctypes.Structure):  # edgectl_host_var_t
    _fields_ = [("type", ctypes.c_uint32), ("name", ctypes.c_char_p), ("address", ctypes.c_void_p)]


_POLICY_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_float))


class AppImage:
    """The edgectl app of a bundle compiled for this host (see the module docstring).

    ``impl``: "c" (the generated float32 policy C), "numpy" (the bundle's forward, called from the C app),
    or an `edgectl export --target c [--int8]` folder; ``policy``: a function obs -> action instead (tests);
    ``link_timeout_ms``: the boot value of edgectl.linkMs, compiled in as EDGECTL_LINK_TIMEOUT_MS (None: the
    app's own default)."""

    def __init__(self, bundle, impl: str = "c", *, policy=None, link_timeout_ms: int | None = None,
                 cache: Path | None = None):
        from edgectl.bundle import Bundle, load_bundle
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(Path(bundle))
        self.contract = c = self.bundle.contract
        n_obs, n_act = c["observation"]["size"], c["action"]["size"]
        self._policy_fn = None
        if policy is not None:
            files, self.impl, self._policy_fn = callback_policy_files(n_obs, n_act), "Python function", policy
        elif impl == "numpy":
            b = self.bundle
            files, self.impl = callback_policy_files(n_obs, n_act), "numpy (bundle)"
            self._policy_fn = lambda obs: np.asarray(b.act(obs[None]), float).reshape(n_act)
        elif impl == "c":
            from export.c_codegen import generate_c
            files, self.impl = generate_c(self.bundle), "generated C (float32)"
        else:
            files, self.impl = export_folder_policy_files(self.bundle, impl)
        defines = () if link_timeout_ms is None else (f"EDGECTL_LINK_TIMEOUT_MS={int(link_timeout_ms)}",)
        self.sources = app_sources(self.bundle, files)
        self.library = build(self.sources, defines, cache=cache)
        probe = self.boot()
        layout = probe.layout
        self.rate_hz = float(layout[3])
        self.log_vars = [(g, n, t) for g, n, t, _ in probe.vars("log")]
        self.param_vars = [(g, n, t, probe.read(addr, PARAM_TYPES[t & 0x0F])) for g, n, t, addr in probe.vars("param")]

    def boot(self, max_thrust_n: float = 0.0) -> "CompiledApp":
        return CompiledApp(self, max_thrust_n)

    def __repr__(self):
        return f"AppImage({self.bundle.path.name}, {self.impl}, {self.library})"


def _load_copy(library: Path) -> ctypes.CDLL:
    """dlopen a private copy: each copy has its own static variables (a fresh power-on)."""
    fd, path = tempfile.mkstemp(prefix="edgectl-cfapp-", suffix=".so")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(Path(library).read_bytes())
        return ctypes.CDLL(path)
    finally:
        os.unlink(path)  # the mapping stays until dlclose


def _dlclose(handle: int) -> None:
    try:
        import _ctypes
        _ctypes.dlclose(handle)
    except Exception:  # noqa: BLE001  best effort: an unload that fails leaves the library mapped
        pass


class CompiledApp:
    """One power-on of the compiled app. ``step`` runs one stabilizer tick; the rest reads the app's state
    for the vehicle (log/param variables) and for tests: ``engaged``, ``fault``, ``steps``, ``link_drops``,
    ``link_latched``, ``host_stamp`` (s), ``link_timeout_s``, ``robustness``, ``forces``, ``backup``,
    ``fault_at`` (vehicle time the current fault began, s, or None)."""

    def __init__(self, image: AppImage, max_thrust_n: float = 0.0):
        self.image = image
        lib = self._lib = _load_copy(image.library)
        self._finalizer = weakref.finalize(self, _dlclose, lib._handle)
        self._finalizer.atexit = False
        f32p, i32p = ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_int32)
        lib.edgectl_host_step.argtypes = [ctypes.c_uint32, ctypes.c_uint32, ctypes.c_int, f32p, ctypes.c_uint32,
                                          f32p, i32p, f32p]
        lib.edgectl_host_step.restype = ctypes.c_int
        lib.edgectl_host_fed.argtypes = [f32p, i32p]
        lib.edgectl_host_fed.restype = ctypes.c_uint32
        lib.edgectl_host_status.argtypes = [ctypes.POINTER(ctypes.c_double), ctypes.c_int]
        lib.edgectl_host_status_names.restype = ctypes.c_char_p
        lib.edgectl_host_set_max_thrust.argtypes = [ctypes.c_float]
        lib.edgectl_host_vars.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.POINTER(_Var))]
        lib.edgectl_host_console.argtypes = [ctypes.c_char_p, ctypes.c_int]
        lib.controllerOutOfTreeTest.restype = ctypes.c_bool
        layout = (ctypes.c_int32 * 6)()
        lib.edgectl_host_layout(layout)
        self.layout = list(layout)
        if self.layout[:3] != [ST_SIZE, SP_SIZE, MODES]:
            raise RuntimeError(f"{image.library}: edgectl_host.c layout {self.layout[:3]}, host_app.py packs "
                               f"{[ST_SIZE, SP_SIZE, MODES]}: rebuild")
        self.obs_size, self.action_size = self.layout[4], self.layout[5]
        self._names = lib.edgectl_host_status_names().decode().split()
        self._status = (ctypes.c_double * len(self._names))()
        self._cb = None
        if image._policy_fn is not None:
            self._cb = _POLICY_FN(self._call_policy)
            lib.edgectl_host_set_policy.argtypes = [_POLICY_FN]
            lib.edgectl_host_set_policy(self._cb)
        lib.edgectl_host_set_max_thrust(float(max_thrust_n))
        self._st = np.zeros(ST_SIZE, np.float32)
        self._sp = np.zeros(SP_SIZE, np.float32)
        self._modes = np.zeros(MODES, np.int32)
        self._forces = np.zeros(4, np.float32)
        self._ptrs = [a.ctypes.data_as(p) for a, p in ((self._st, f32p), (self._sp, f32p), (self._modes, i32p),
                                                        (self._forces, f32p))]
        self._log = {f"{g}.{n}": (t, self._cvar(addr, _LOG_CTYPES.get(t & 0x1F))) for g, n, t, addr in self.vars("log")}
        self._params = {f"{g}.{n}": (t, self._cvar(addr, _FMT_CTYPES.get(PARAM_TYPES.get(t & 0x0F))))
                        for g, n, t, addr in self.vars("param")}
        self._fault = self._log.get("edgectl.fault", (None, None))[1]
        self.forces = np.zeros(4)
        self.t_boot = 0.0  # vehicle time of this power-on: tick counts and setpoint stamps count from it
        self.fault_at: float | None = None

    # -- the tables ---------------------------------------------------------------------------------------
    def vars(self, kind: str) -> list[tuple[str, str, int, int]]:
        """(group, name, type code with flags, address) of every LOG_ADD (kind "log") or PARAM_ADD ("param")."""
        first = ctypes.POINTER(_Var)()
        n = self._lib.edgectl_host_vars(0 if kind == "log" else 1, ctypes.byref(first))
        out, group = [], None
        for i in range(n):
            v = first[i]
            name = v.name.decode()
            if v.type == _GROUP_START:
                group = name
            elif v.type == _GROUP_STOP:
                group = None
            elif group is not None:
                out.append((group, name, int(v.type), int(v.address)))
        return out

    def _cvar(self, address: int, ctype):
        if ctype is None:
            return None
        return ctype.from_address(address)

    @staticmethod
    def read(address: int, fmt: str):
        return _FMT_CTYPES[fmt].from_address(address).value

    def log_values(self) -> dict:
        return {k: (v.value if v is not None else 0) for k, (_, v) in self._log.items()}

    def param_get(self, full_name: str):
        return self._params[full_name][1].value

    def param_set(self, full_name: str, value) -> None:
        self._params[full_name][1].value = value

    # -- the firmware's calls -------------------------------------------------------------------------------
    def init(self) -> None:
        """controllerOutOfTreeInit: the stabilizer calls it when stabilizer.controller selects the app."""
        self._lib.controllerOutOfTreeInit()
        self.fault_at = None

    def test(self) -> bool:
        return bool(self._lib.controllerOutOfTreeTest())

    def app_main(self) -> str:
        """appMain up to its task loop's first delay; returns what it printed (DEBUG_PRINT)."""
        self._lib.edgectl_host_app_main()
        return self.console()

    def console(self) -> str:
        buf = ctypes.create_string_buffer(4096)
        n = self._lib.edgectl_host_console(buf, len(buf))
        return buf.raw[:n].decode(errors="replace")

    def _call_policy(self, obs_p, act_p) -> int:
        try:
            obs = np.ctypeslib.as_array(obs_p, (self.obs_size,)).astype(np.float64)
            a = np.asarray(self.image._policy_fn(obs), np.float32).reshape(self.action_size)
        except Exception:  # noqa: BLE001  (C calls back into Python: nothing may propagate)
            return 1  # a policy that fails gives no action: the app's action stays NaN (fault 2)
        np.ctypeslib.as_array(act_p, (self.action_size,))[:] = a
        return 0

    def ms(self, t: float) -> int:
        """A vehicle time as this power-on's tick count (1 kHz)."""
        return round((t - self.t_boot) * 1000.0) & _U32

    def step(self, tick: int, stabilizer_step: int, motors_allowed: bool, state: np.ndarray, sp: Setpoint):
        """One stabilizer tick. state: position (m), velocity (m/s), quaternion x, y, z, w, gyro (deg/s),
        accelerometer (g), as edgectl_host.c's layout. Returns the setpoint the app fed the commander
        during the tick (a Setpoint stamped in vehicle time), or None."""
        self._st[:] = state
        s, m = self._sp, self._modes
        s[:] = (sp.thrust, sp.x, sp.y, sp.z, sp.vx, sp.vy, sp.vz, 0.0, 0.0, 0.0, sp.roll, sp.pitch, sp.yaw,
                sp.roll_rate, sp.pitch_rate, sp.yaw_rate)
        m[:] = (sp.mode_x, sp.mode_y, sp.mode_z, sp.mode_roll, sp.mode_pitch, sp.mode_yaw, 0)
        p = self._ptrs
        fed = self._lib.edgectl_host_step(tick & _U32, stabilizer_step & _U32, int(bool(motors_allowed)), p[0],
                                          self.ms(sp.timestamp), p[1], p[2], p[3])
        self.forces = self._forces.astype(float)
        fault = self._fault.value if self._fault is not None else self.status()["fault"]
        if not fault:
            self.fault_at = None
        elif self.fault_at is None:
            self.fault_at = self.t_boot + tick / 1000.0
        return self._fed() if fed else None

    def _fed(self) -> Setpoint:
        sp = np.zeros(SP_SIZE, np.float32)
        modes = np.zeros(MODES, np.int32)
        stamp = self._lib.edgectl_host_fed(sp.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                           modes.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)))
        v = [float(x) for x in sp]
        return Setpoint(mode_x=int(modes[0]), mode_y=int(modes[1]), mode_z=int(modes[2]), mode_roll=int(modes[3]),
                        mode_pitch=int(modes[4]), mode_yaw=int(modes[5]), thrust=v[0], x=v[1], y=v[2], z=v[3],
                        vx=v[4], vy=v[5], vz=v[6], roll=v[10], pitch=v[11], yaw=v[12], roll_rate=v[13],
                        pitch_rate=v[14], yaw_rate=v[15], timestamp=self.t_boot + stamp / 1000.0)

    def policy_io(self) -> tuple[np.ndarray, np.ndarray]:
        """(observation, action) of the app's newest policy period, as its C holds them."""
        obs, act = np.zeros(self.obs_size, np.float32), np.zeros(self.action_size, np.float32)
        self._lib.edgectl_host_policy_io(obs.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                         act.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        return obs, act

    # -- the app's state ------------------------------------------------------------------------------------
    def status(self) -> dict:
        self._lib.edgectl_host_status(self._status, len(self._status))
        return dict(zip(self._names, self._status))

    @property
    def engaged(self) -> bool:
        return bool(self.status()["engaged"])

    @property
    def fault(self) -> int:
        return int(self.status()["fault"])

    @property
    def steps(self) -> int:
        return int(self.status()["steps"])

    @property
    def link_drops(self) -> int:
        return int(self.status()["linkdrops"])

    @property
    def link_latched(self) -> bool:
        return bool(self.status()["link_latched"])

    @property
    def host_stamp(self) -> float:
        """Vehicle time (s) of the newest setpoint the host, not the app, wrote."""
        return self.t_boot + self.status()["host_stamp"] / 1000.0

    @property
    def link_timeout_s(self) -> float:
        return self.status()["link_ms"] / 1000.0

    @property
    def robustness(self) -> float:
        return float(self.status()["robustness"])

    @property
    def backup(self) -> "BackupView":
        return BackupView(self.status(), self.image)


class BackupView:
    """The app's backup controller as bench/link_cut.py reads it: ``phase`` (name), ``state`` (phase index,
    t_phase, hold point) and ``gains`` (the platform's, from which edgectl_backup.c was generated)."""

    def __init__(self, status: dict, image: AppImage):
        self.phase = BACKUP_PHASES[int(status["backup_phase"])]
        self.state = {"phase": int(status["backup_phase"]), "t_phase": status["backup_t_phase"],
                      "hold": np.array([status["backup_hold_x"], status["backup_hold_y"], status["backup_hold_z"]])}
        from edgectl.safety.backup import BackupGains
        self.gains = BackupGains()

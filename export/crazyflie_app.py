"""Crazyflie target: an out-of-tree (OOT) controller app for bitcraze crazyflie-firmware.

    generate_observation_c(contract)          -> {"edgectl_obs.h": ..., "edgectl_obs.c": ...}
    write_app(bundle, policy_files, out_dir)  -> the app folder (Makefile, Kbuild, app-config, src/)
    build_firmware(app_dir, firmware_dir)     -> path of the built cf2.bin

The observation builder is generated field by field from the contract, so a field the exporter
does not know is refused here rather than silently zero on the drone. It takes the vehicle state
in firmware units (gyro in deg/s, quaternion x-y-z-w) and converts to contract units in C, the one
place where the firmware's conventions meet the simulator's. The firmware itself is GPL-3.0 and
not vendored: the user supplies a checkout (--firmware-dir) and we run its build.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from edgectl.contract import ContractError, validate_contract
from edgectl.csource import CSourceError, c_float, render
from edgectl.fsutil import replace_dir

from .errors import ExportError, TargetUnavailable

TEMPLATES = Path(__file__).resolve().parent / "crazyflie"
FIRMWARE_URL = "https://github.com/bitcraze/crazyflie-firmware"
STABILIZER_HZ = 1000  # the firmware calls controllerOutOfTree() at RATE_MAIN_LOOP
OBS_FILES = ("edgectl_obs.h", "edgectl_obs.c")
POLICY_FILES = ("edgectl_policy.h", "edgectl_policy.c")
CONTROLLER = "edgectl_controller.c"
# How the controller sets the policy's reference from the firmware's setpoint, per task:
# "position" (hover) uses only the setpoint position; "trajectory" also its velocity and acceleration.
TASK_REFERENCE = {"hover": "position", "figure8": "trajectory"}
_PLAIN_C_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.[ch]$")


# --- small helpers -----------------------------------------------------------------------------
def _render(name: str, **values) -> str:
    try:  # a template/generator mismatch is a bug here, not in the bundle
        return render(TEMPLATES / name, unused_ok=True, **values)
    except CSourceError as e:
        raise ExportError(str(e)) from None


def _cfloat(x: float, where: str) -> str:
    """A C float literal that reads back as exactly float32(x): edgectl.csource.c_float, the one writer."""
    if not isinstance(x, (int, float)) or isinstance(x, bool) or not math.isfinite(x):
        raise ExportError(f"{where}: expected a finite number, got {x!r}")
    try:
        return c_float(x, where=where)
    except CSourceError as e:  # finite, but inf in float32
        raise ExportError(str(e)) from None


def _num(d: dict, key: str, where: str) -> float:
    if key not in d:
        raise ExportError(f"{where}.{key}: missing; the Crazyflie exporter needs it")
    _cfloat(d[key], f"{where}.{key}")
    return float(d[key])


def _check_contract(contract: dict) -> None:
    try:
        validate_contract(contract)
    except ContractError as e:
        raise ExportError(str(e)) from None
    if contract["action"]["size"] != 4:
        raise ExportError(f"contract.action.size: the Crazyflie has 4 motors, got {contract['action']['size']}")


# --- observation fields ------------------------------------------------------------------------
# name -> (required size or None for "a multiple of 4", unit the C produces). Each has a C function
# edgectl_field_<name> in crazyflie/edgectl_obs.c.in; the generator only calls them in contract order.
FIELDS = {
    "position_error": (3, "m"),
    "rotation_matrix": (9, "1"),
    "velocity_error": (3, "m/s"),
    "angular_velocity": (3, "rad/s"),
    "reference_acceleration": (3, "m/s^2"),
    "previous_actions": (None, "1"),
    "position_error_integral": (3, "m s"),
}


def _obs_calls(contract: dict) -> tuple[list[str], int]:
    """Glue filling obs[] in contract order, one field function call each; returns (lines, history steps)."""
    lines: list[str] = []
    o, steps = 0, 0
    for k, f in enumerate(contract["observation"]["fields"]):
        where = f"contract.observation.fields[{k}]"
        name, size, unit = f["name"], f["size"], f["unit"]
        if name not in FIELDS:
            raise ExportError(f"{where}.name: the Crazyflie exporter does not know how to build observation field "
                              f"{name!r} on the drone (known: {sorted(FIELDS)})")
        want_size, want_unit = FIELDS[name]
        if want_size is not None and size != want_size:
            raise ExportError(f"{where}.size: field {name!r} has size {size}, the Crazyflie exporter builds {want_size}")
        if want_size is None and size % 4:
            raise ExportError(f"{where}.size: field {name!r} has size {size}, expected 4 actions per step")
        if unit != want_unit:
            raise ExportError(f"{where}.unit: field {name!r} is in {unit!r}, the Crazyflie exporter builds {want_unit!r}")
        if name == "previous_actions":
            steps = size // 4
        lines.append(f"  edgectl_field_{name}(vehicle, history, obs + {o}, {size}); /* obs[{o}..{o + size - 1}], "
                     f"{unit}, {f['frame']} */")
        o += size
    return lines, steps


def _thrust(contract: dict) -> tuple[float, float, float]:
    """(model thrust per rotor at full command in N, b0, b1) of the contract's thrust curve."""
    from edgectl.contract import ContractError, thrust_curve
    try:
        return thrust_curve(contract["action"]["mapping"], "contract.action.mapping")
    except ContractError as e:
        raise ExportError(str(e)) from None


def generate_observation_c(contract: dict, *, description: str = "an edgectl bundle") -> dict[str, str]:
    """edgectl_obs.h / edgectl_obs.c for `contract`; ExportError names any field it cannot build."""
    _check_contract(contract)
    calls, steps = _obs_calls(contract)
    # The simulator's thrust curve, the same numbers: the policy asks for the force it was trained to ask for.
    thrust_max, b0, b1 = _thrust(contract)
    where = "contract.action.mapping"
    act = contract["action"]
    if steps and "hover_action" not in act:
        raise ExportError("contract.action.hover_action: missing; the action history starts at the hover action")
    hover = act.get("hover_action", 0.0)
    from edgectl.contract import ContractError, integral_jump, integral_spec
    try:
        ispec, jump = integral_spec(contract), integral_jump(contract)
    except ContractError as e:
        raise ExportError(str(e)) from None
    decay, limit, dt = ispec if ispec is not None else (1.0, 0.0, 0.0)
    values = dict(HAS_INTEGRAL=int(ispec is not None), INTEGRAL_DECAY=f"({_cfloat(decay, 'contract.observation')})",
                  INTEGRAL_LIMIT=f"({_cfloat(limit, 'contract.observation')})",
                  INTEGRAL_DT=f"({_cfloat(dt, 'contract.rate_hz')})",
                  INTEGRAL_JUMP=f"({_cfloat(jump, 'contract.observation')})", BUNDLE_DESC=description, OBS_SIZE=contract["observation"]["size"], HISTORY_STEPS=steps,
                  HISTORY_LEN=max(4 * steps, 1), THRUST_MAX_N=_cfloat(thrust_max, "contract.action.mapping"),
                  ACTION_LOW=f"({_cfloat(act['low'], 'contract.action.low')})",
                  ACTION_HIGH=f"({_cfloat(act['high'], 'contract.action.high')})",
                  HOVER_ACTION=f"({_cfloat(hover, 'contract.action.hover_action')})",
                  THRUST_B0=_cfloat(b0, where), THRUST_B1=_cfloat(b1, where), THRUST_B2=_cfloat(1.0 - b0 - b1, where),
                  OBS_FIELDS="\n".join(calls))
    return {name: _render(name + ".in", **values) for name in OBS_FILES}


# --- the app folder ----------------------------------------------------------------------------
def _check_policy_files(policy_files: dict[str, str], contract: dict) -> None:
    for name in POLICY_FILES:
        if name not in policy_files:
            raise ExportError(f"policy_files: {name} is missing (have {sorted(policy_files)})")
    for name, text in policy_files.items():
        if not isinstance(name, str) or not _PLAIN_C_NAME.match(name):
            raise ExportError(f"policy_files: {name!r}: expected a plain C file name like edgectl_policy.c")
        if name in OBS_FILES or name == CONTROLLER:
            raise ExportError(f"policy_files: {name}: clashes with a file the Crazyflie exporter writes")
        if not isinstance(text, str):
            raise ExportError(f"policy_files: {name}: expected the file's text, got {type(text).__name__}")
    header = policy_files["edgectl_policy.h"]
    if "edgectl_policy_step" not in header:
        raise ExportError("policy_files: edgectl_policy.h does not declare edgectl_policy_step")
    for macro, want in (("EDGECTL_POLICY_OBS_SIZE", contract["observation"]["size"]),
                        ("EDGECTL_POLICY_ACTION_SIZE", contract["action"]["size"])):
        m = re.search(rf"#define\s+{macro}\s+\(?\s*(\d+)", header)
        if m is None:
            raise ExportError(f"policy_files: edgectl_policy.h: no integer #define {macro} (the controller checks it with #if)")
        if int(m.group(1)) != want:
            raise ExportError(f"policy_files: edgectl_policy.h: {macro} is {m.group(1)}, the bundle's contract says {want}")


def _rate_hz(contract: dict) -> int:
    rate = contract["rate_hz"]
    if rate != int(rate) or STABILIZER_HZ % int(rate):
        raise ExportError(f"contract.rate_hz: {rate} Hz; the Crazyflie runs the policy every N ticks of its "
                          f"{STABILIZER_HZ} Hz loop, so the rate must divide {STABILIZER_HZ} (e.g. 100, 250, 500)")
    return int(rate)


def _describe(bundle) -> str:
    sha = bundle.manifest.get("weights", {}).get("sha256", "?")
    return (f"bundle {bundle.path.name} (task {bundle.task_name}, platform {bundle.platform_name}, "
            f"seed {bundle.seed}, weights sha256 {sha[:16]})")


def _app_files(bundle, policy_files: dict[str, str]) -> dict[str, str]:
    contract = bundle.contract
    task = bundle.task_name
    if task not in TASK_REFERENCE:
        raise ExportError(f"bundle.json: task.name: the Crazyflie exporter knows tasks {sorted(TASK_REFERENCE)} "
                          f"(how to set the reference from a setpoint), got {task!r}")
    desc = _describe(bundle)
    obs = generate_observation_c(contract, description=desc)
    _check_policy_files(policy_files, contract)
    rate = _rate_hz(contract)
    track = TASK_REFERENCE[task] == "trajectory"
    thrust_max, _, _ = _thrust(contract)
    fields = ", ".join(f"{f['name']} {f['size']}" for f in contract["observation"]["fields"])
    readme = _render("README.md.in", BUNDLE_DESC=desc, TASK=task, OBS_SIZE=contract["observation"]["size"],
                     FIELDS=fields, RATE_HZ=rate, THRUST_MAX_N=f"{thrust_max:.4g}",
                     TRACK_NOTE=("position, velocity and acceleration (feed-forward), as in training."
                                 if track else "its position only, as in training."))
    from firmware_bridge.crazyflie.onboard import bundle_id
    controller = _render(CONTROLLER + ".in", BUNDLE_DESC=desc, TASK=task, RATE_HZ=rate,
                         BUNDLE_ID=f"0x{bundle_id(bundle.manifest):08x}",
                         TRACK_TRAJECTORY=int(track),
                         TRACK_DESC=" with its velocity and acceleration" if track else " (position only)")
    safety = safety_files(bundle)
    sources = sorted({CONTROLLER, *(n for n in obs if n.endswith(".c")), *(n for n in policy_files if n.endswith(".c")),
                      *(n for n in safety if n.endswith(".c"))})
    kbuild = "".join(f"obj-y += {n[:-2]}.o\n" for n in sources)
    files = {
        "Makefile": _render("Makefile.in", BUNDLE_DESC=desc),
        "Kbuild": (TEMPLATES / "Kbuild").read_text(),
        "app-config": (TEMPLATES / "app-config").read_text(),
        "README.md": readme,
        ".gitignore": "build/\n*.o\n.*.cmd\n",  # kbuild writes objects next to the sources
        "src/Kbuild": kbuild,
        f"src/{CONTROLLER}": controller,
    }
    files.update({f"src/{n}": t for n, t in obs.items()})
    files.update({f"src/{n}": t for n, t in policy_files.items()})
    files.update({f"src/{n}": t for n, t in safety.items()})
    return files


def onboard_formulas(platform) -> list:
    """The platform's safety specs as the vehicle can monitor them: without a model to predict with, a
    prediction spec `always[a,b](P)` becomes its predicate P checked every period; past-time specs stay."""
    import re

    from edgectl.safety.signals import QUADROTOR_SIGNALS
    from edgectl.safety.stl import parse
    from edgectl.safety.shield import ShieldConfig
    out = []
    for text in ShieldConfig.from_platform(platform).specs:
        f = parse(text, QUADROTOR_SIGNALS)
        if not f.is_past_time:
            m = re.fullmatch(r"\s*always\s*\[[^\]]*\]\s*\((.*)\)\s*", text)
            if m is None:
                raise ExportError(f"platform.toml: safety.specs: {text!r} has no onboard form (use a past-time spec, "
                                  "or always[a,b](predicate))")
            f = parse(m.group(1), QUADROTOR_SIGNALS)
        out.append(f)
    return out


def safety_files(bundle) -> dict[str, str]:
    """The backup controller, the signal builder and the STL monitors for the app, generated from the
    bundle's own platform file, so the vehicle falls back to the same law the host shield uses."""
    from edgectl.platforms import parse_platform
    from edgectl.safety import c_backup, c_signals
    from edgectl.safety.c_monitor import generate_monitor_c
    from edgectl.safety.signals import QUADROTOR_SIGNALS
    path = bundle.path / "platform.toml"
    platform = parse_platform(path.read_bytes(), path)
    dt = 1.0 / float(bundle.contract["rate_hz"])
    return {**c_backup.generate(platform), **c_signals.generate(),
            **generate_monitor_c(onboard_formulas(platform), dt, list(QUADROTOR_SIGNALS))}


def _is_our_app(d: Path) -> bool:
    return (d / "app-config").is_file() and (d / "src" / CONTROLLER).is_file()


def write_app(bundle, policy_files: dict[str, str], out_dir: Path) -> Path:
    """Write the OOT app for `bundle` (an edgectl.bundle.Bundle) to out_dir and return it.

    Everything is generated in memory first and swapped in at the end, so a refused bundle leaves
    nothing behind. An existing out_dir is replaced only if it is empty or an earlier edgectl app.
    """
    out = Path(out_dir).resolve()
    files = _app_files(bundle, policy_files)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not _is_our_app(out))):
        raise ExportError(f"{out}: exists and is not an edgectl Crazyflie app; choose another --out or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)
        for rel, text in files.items():
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


# --- the firmware build ------------------------------------------------------------------------
def _rerun(app_dir: Path) -> str:
    return f"edgectl build-firmware {app_dir} --firmware-dir /path/to/crazyflie-firmware"


def _how_to_get_firmware(app_dir: Path) -> str:
    return (f"get one with `git clone --recursive {FIRMWARE_URL}` (GPL-3.0; its submodules are needed), "
            "install the ARM toolchain arm-none-eabi-gcc (Debian/Ubuntu: "
            "`sudo apt install gcc-arm-none-eabi libnewlib-arm-none-eabi`), then rerun: "
            f"`{_rerun(app_dir)}`")


def _check_firmware(firmware_dir: Path | None, app_dir: Path) -> Path:
    if firmware_dir is None:
        raise TargetUnavailable("--firmware-dir: building the Crazyflie firmware needs a crazyflie-firmware checkout; "
                                + _how_to_get_firmware(app_dir))
    fw = Path(firmware_dir).expanduser().resolve()
    missing = [p for p in ("tools/make/oot.mk", "Makefile", "src/modules/interface/controller/controller.h")
               if not (fw / p).is_file()]
    if missing:
        raise TargetUnavailable(f"--firmware-dir {fw}: not a crazyflie-firmware checkout (no {', '.join(missing)}); "
                                + _how_to_get_firmware(app_dir))
    empty = [s for s in ("vendor/FreeRTOS", "vendor/CMSIS") if not (fw / s).is_dir() or not any((fw / s).iterdir())]
    if empty:
        raise TargetUnavailable(f"--firmware-dir {fw}: submodules {', '.join(empty)} are empty; run "
                                f"`git -C {fw} submodule update --init --recursive`, then `{_rerun(app_dir)}`")
    return fw


def build_firmware(app_dir: Path, firmware_dir: Path | None, *, make: str = "make", jobs: int = 2,
                   timeout_s: float = 1800.0) -> Path:
    """Build the firmware image with the app at app_dir linked in; return the path of cf2.bin."""
    app = Path(app_dir).expanduser().resolve()
    if not _is_our_app(app):
        raise ExportError(f"{app}: not an edgectl Crazyflie app (no app-config or src/{CONTROLLER}); "
                          "write one with `edgectl export BUNDLE --target crazyflie --out DIR`")
    fw = _check_firmware(firmware_dir, app)
    for tool in (make, "arm-none-eabi-gcc"):
        if shutil.which(tool) is None:
            raise TargetUnavailable(f"{tool}: not found on PATH; the Crazyflie firmware build needs GNU make and the "
                                    "ARM toolchain (Debian/Ubuntu: `sudo apt install make gcc-arm-none-eabi "
                                    f"libnewlib-arm-none-eabi`), then rerun `{_rerun(app)}`")
    cmd = [make, "-C", str(app), f"-j{int(jobs)}", f"CRAZYFLIE_BASE={fw}"]
    env = dict(os.environ, CRAZYFLIE_BASE=str(fw), PWD=str(app))
    try:
        proc = subprocess.run(cmd, cwd=app, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, errors="replace", timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        out = e.stdout if isinstance(e.stdout, str) else (e.stdout or b"").decode(errors="replace")
        raise ExportError(f"{' '.join(cmd)}: did not finish in {timeout_s:.0f} s; last output:\n{_tail(out)}") from None
    if proc.returncode != 0:
        raise ExportError(f"{' '.join(cmd)}: failed with exit status {proc.returncode}; last output:\n{_tail(proc.stdout)}")
    image = app / "build" / "cf2.bin"
    if not image.is_file():
        found = sorted((app / "build").glob("*.bin"))
        if len(found) != 1:
            raise ExportError(f"{' '.join(cmd)}: succeeded but wrote no {image} (found {[str(p) for p in found]}); "
                              f"last output:\n{_tail(proc.stdout)}")
        image = found[0]
    return image


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join((text or "").rstrip().splitlines()[-lines:])

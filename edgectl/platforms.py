"""Platform files (hardware/*.toml): load, check units and ranges, hand out plain values.

Every value in a platform file is an inline table ``{ value = ..., unit = "...", source = "..." }``.
The schema below says which fields a platform of each kind must have, in which unit, and what
shape; a file that disagrees is refused with the file, the field and the expected unit named,
because a silently wrong mass or inertia is how a sim-trained policy crashes on hardware.
"""
from __future__ import annotations

import hashlib
import math
import os
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (JetPack 6, ROS 2 Humble): the backport, a declared dependency below 3.11
    import tomli as tomllib


def shipped_hardware_dir() -> Path:
    """The platform files and tracks as the package ships them (package data edgectl/hardware/): in a
    checkout or an editable install a link to the top-level hardware/ folder, in a wheel a copy of it."""
    return Path(str(resources.files("edgectl") / "hardware"))


HARDWARE_DIR = Path(os.environ.get("EDGECTL_HARDWARE_DIR", shipped_hardware_dir()))


class PlatformError(ValueError):
    pass


@dataclass(frozen=True)
class Spec:
    unit: str
    shape: tuple[int, ...] = ()  # () scalar, (n,) vector, (n, m) matrix
    kind: str = "float"  # float | int | str | stl (a list of STL specs, parsed on load)
    min: float | None = None  # inclusive
    max: float | None = None
    positive: bool = False
    optional: bool = False  # may be left out: then `default`, with source "edgectl default (not in the file)"
    default: Any = None


_QUADROTOR: dict[str, Spec] = {
    "body.mass": Spec("kg", positive=True),
    "body.inertia": Spec("kg*m^2", (3,), positive=True),
    "body.gravity": Spec("m/s^2", positive=True),
    "rotors.positions": Spec("m", (4, 3)),
    "rotors.spin": Spec("1", (4,), kind="int", min=-1, max=1),
    "rotors.torque_coefficient": Spec("N*m/N", positive=True),
    # Linear rotor drag in the body x/y plane (Faessler et al. 2018 "Differential flatness of quadrotor
    # dynamics subject to rotor drag"): force = -drag_coefficient * body velocity (x, y).
    "rotors.drag_coefficient": Spec("N*s/m", min=0.0, optional=True, default=0.0),
    "control.sim_rate": Spec("Hz", positive=True),
    "control.policy_rate": Spec("Hz", positive=True),
    "control.action_min": Spec("1"),
    "control.action_max": Spec("1"),
    "mcu.name": Spec("", kind="str"),
    "mcu.core": Spec("", kind="str"),
    "mcu.fpu": Spec("", kind="str"),
    "mcu.clock": Spec("MHz", positive=True),
    "mcu.flash": Spec("B", kind="int", positive=True),
    "mcu.ram": Spec("B", kind="int", positive=True),
    "mcu.firmware_flash_offset": Spec("B", kind="int", min=0),
    "mcu.policy_flash_budget": Spec("B", kind="int", positive=True),
    "mcu.policy_ram_budget": Spec("B", kind="int", positive=True),
    # Each a factor range [lo, hi] (drawn log-uniform per episode) or, as older files write it, r
    # for [1 - r, 1 + r]; normalized to [lo, hi] on load.
    "randomization.mass": Spec("1", kind="range"),
    "randomization.inertia": Spec("1", kind="range"),
    "randomization.torque_coefficient": Spec("1", kind="range"),
    "randomization.motor_time_constant": Spec("1", kind="range"),
    "randomization.drag_coefficient": Spec("1", kind="range", optional=True, default=[1.0, 1.0]),
    # Actuation delay in control periods, uniform per episode (absolute, not a factor).
    "randomization.action_delay": Spec("1", kind="interval", optional=True, default=[0.0, 0.0]),
    "disturbance.force_std": Spec("N", min=0.0),
    "disturbance.torque_std": Spec("N*m", min=0.0),
    "sensors.position_noise_std": Spec("m", min=0.0),
    "sensors.orientation_noise_std": Spec("1", min=0.0),
    "sensors.velocity_noise_std": Spec("m/s", min=0.0),
    "sensors.angular_velocity_noise_std": Spec("rad/s", min=0.0),
    # A constant gyro bias per episode, N(0, std) per axis (what the rest calibration leaves).
    "sensors.angular_velocity_bias_std": Spec("rad/s", min=0.0, optional=True, default=0.0),
    # Runtime assurance (edgectl/safety): specs over edgectl.safety.signals.QUADROTOR_SIGNALS.
    # The margin is in robustness units (those of the spec's predicates: m, rad, ...).
    "safety.specs": Spec("", (-1,), kind="stl"),
    "safety.shield_margin": Spec("", min=0.0),
    "safety.shield_holdoff": Spec("s", min=0.0),
    "safety.shield_horizon": Spec("s", positive=True),
    # The autopilot whose body-rate loop flies a rate-level (ctbr) policy (edgectl/rate_control.py: the loop's
    # structure and default gains, cited per firmware) and the policy's rate range (the ctbr action's +-1).
    "rate_controller.firmware": Spec("", kind="str"),
    "rate_controller.max_rate": Spec("rad/s", (3,), positive=True),
    # ctbr training: a factor on the rate loop's P, I and D (a vehicle tuned away from the defaults) and on the
    # autopilot's clamp of commanded rates (<= 1: it may cut the policy's range), each drawn per episode.
    "randomization.rate_gain": Spec("1", kind="range", optional=True, default=[1.0, 1.0]),
    "randomization.rate_limit": Spec("1", kind="range", optional=True, default=[1.0, 1.0]),
}

# 1/10 RC race car (train_fast/sims/car.py): dynamic bicycle model, saturating tires, servo and
# speed-controller lag.
_RC_CAR: dict[str, Spec] = {
    "body.mass": Spec("kg", positive=True),
    "body.yaw_inertia": Spec("kg*m^2", positive=True),
    "body.wheelbase": Spec("m", positive=True),
    "body.cg_to_front": Spec("m", positive=True),
    "body.width": Spec("m", positive=True),
    "body.length": Spec("m", positive=True),
    "body.gravity": Spec("m/s^2", positive=True),
    "tires.friction": Spec("1", positive=True),
    "tires.cornering_stiffness_front": Spec("1/rad", positive=True),
    "tires.cornering_stiffness_rear": Spec("1/rad", positive=True),
    "steering.max_angle": Spec("rad", positive=True, max=1.2),
    "steering.max_rate": Spec("rad/s", positive=True),
    "steering.time_constant": Spec("s", positive=True),
    "drive.max_force": Spec("N", positive=True),
    "drive.max_speed": Spec("m/s", positive=True),
    "drive.max_brake_force": Spec("N", positive=True),
    "drive.rolling_resistance": Spec("N", min=0.0),
    "drive.time_constant": Spec("s", positive=True),
    "control.sim_rate": Spec("Hz", positive=True),
    "control.policy_rate": Spec("Hz", positive=True),
    "control.action_min": Spec("1"),
    "control.action_max": Spec("1"),
    "randomization.mass": Spec("1", min=0.0, max=0.5),
    "randomization.friction": Spec("1", min=0.0, max=0.5),
    "randomization.cornering_stiffness": Spec("1", min=0.0, max=0.5),
    "randomization.max_force": Spec("1", min=0.0, max=0.5),
    "randomization.steering_time_constant": Spec("1", min=0.0, max=0.5),
    "sensors.speed_noise_std": Spec("m/s", min=0.0),
    "sensors.yaw_rate_noise_std": Spec("rad/s", min=0.0),
    "sensors.position_noise_std": Spec("m", min=0.0),
    "sensors.heading_noise_std": Spec("rad", min=0.0),
}

# The rotor model, in one of two forms. "curve" (system identification): thrust per rotor as a
# polynomial of the normalized motor command u in [0, 1] (u = (a + 1) / 2 of the action), separate
# rise and fall time constants of the first-order motor lag acting on u. "rpm" (the form of Learning to
# Fly in Seconds, older files and bundles): rpm linear in the action between min_rpm and max_rpm,
# thrust = k rpm^2, one time constant; the loader turns it into the curve form exactly.
_QUAD_CURVE: dict[str, Spec] = {
    "rotors.thrust_curve": Spec("N", (3,)),
    "rotors.motor_time_constant_up": Spec("s", positive=True),
    "rotors.motor_time_constant_down": Spec("s", positive=True),
    "randomization.thrust_curve": Spec("1", kind="range"),
}
_QUAD_RPM: dict[str, Spec] = {
    "rotors.thrust_coefficient": Spec("N/rpm^2", positive=True),
    "rotors.max_rpm": Spec("rpm", positive=True),
    "rotors.min_rpm": Spec("rpm", min=0.0),
    "rotors.motor_time_constant": Spec("s", positive=True),
    "randomization.thrust_coefficient": Spec("1", kind="range"),
}

SCHEMAS: dict[str, dict[str, Spec]] = {"quadrotor": _QUADROTOR, "rc_car": _RC_CAR}
# Sections a file may leave out entirely (all their fields then absent), so platform files copied
# into bundles before the section existed still load; a section that is present must be complete.
OPTIONAL_SECTIONS = frozenset({"safety", "rate_controller"})


@dataclass(frozen=True)
class Platform:
    name: str
    kind: str
    path: Path
    raw: bytes = field(repr=False)
    values: dict[str, Any] = field(repr=False)
    units: dict[str, str] = field(repr=False)
    sources: dict[str, str] = field(repr=False)

    def get(self, key: str) -> Any:
        try:
            return self.values[key]
        except KeyError:
            raise PlatformError(f"{self.path.name}: no field {key!r} in platform {self.name!r}") from None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


def resolve(name_or_path: str | os.PathLike) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        return p
    candidate = HARDWARE_DIR / f"{name_or_path}.toml"
    if candidate.exists():
        return candidate
    known = sorted(f.stem for f in HARDWARE_DIR.glob("*.toml"))
    raise PlatformError(f"unknown platform {str(name_or_path)!r}: no file {candidate}; known platforms: {', '.join(known) or 'none'}")


def load_platform(name_or_path: str | os.PathLike) -> Platform:
    path = resolve(name_or_path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise PlatformError(f"{path}: cannot read platform file ({e.strerror})") from None
    return parse_platform(raw, path)


def parse_platform(raw: bytes, path: Path) -> Platform:
    fname = str(path)
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise PlatformError(f"{fname}: not valid TOML: {e}") from None
    header = doc.get("platform")
    if not isinstance(header, dict):
        raise PlatformError(f"{fname}: missing [platform] table with name and kind")
    name, kind = header.get("name"), header.get("kind")
    if not isinstance(name, str) or not name:
        raise PlatformError(f"{fname}: field platform.name: expected a non-empty string, got {name!r}")
    if kind not in SCHEMAS:
        raise PlatformError(f"{fname}: field platform.kind: expected one of {sorted(SCHEMAS)}, got {kind!r}")
    values, units, sources = {}, {}, {}
    schema = dict(SCHEMAS[kind])
    rotors = doc.get("rotors") if isinstance(doc.get("rotors"), dict) else {}
    if kind == "quadrotor":
        schema.update(_QUAD_RPM if "thrust_curve" not in rotors and "thrust_coefficient" in rotors else _QUAD_CURVE)
    _check_known(fname, doc, header, schema)
    for key, spec in schema.items():
        section, fld = key.split(".")
        if section in OPTIONAL_SECTIONS and section not in doc:
            continue
        entry = doc.get(section, {}).get(fld) if isinstance(doc.get(section), dict) else None
        if entry is None and spec.optional:
            values[key], units[key], sources[key] = spec.default, spec.unit, "edgectl default (not in the file)"
            continue
        if entry is None:
            raise PlatformError(f"{fname}: missing field {key} (expected {{ value = ..., unit = {spec.unit!r}, source = ... }})")
        if not isinstance(entry, dict) or "value" not in entry or "unit" not in entry:
            raise PlatformError(f"{fname}: field {key}: expected an inline table with value and unit {spec.unit!r}, got {entry!r}")
        if entry["unit"] != spec.unit:
            raise PlatformError(f"{fname}: field {key}: unit {entry['unit']!r} is not the expected unit {spec.unit!r}")
        if not isinstance(entry.get("source"), str) or not entry["source"].strip():
            raise PlatformError(f"{fname}: field {key}: every value needs a source (where the number comes from)")
        values[key] = _check_value(fname, key, spec, entry["value"])
        units[key], sources[key] = spec.unit, entry["source"]
    if values.get("control.action_min", 0) >= values.get("control.action_max", 1):
        raise PlatformError(f"{fname}: field control.action_min must be below control.action_max")
    if kind == "rc_car" and not 0.0 < values["body.cg_to_front"] < values["body.wheelbase"]:
        raise PlatformError(f"{fname}: field body.cg_to_front ({values['body.cg_to_front']}) must lie between the axles (0, body.wheelbase = {values['body.wheelbase']})")
    if kind == "quadrotor" and "rotors.max_rpm" in values:
        _rpm_to_curve(fname, values, units, sources)
    if kind == "quadrotor":
        c = values["rotors.thrust_curve"]
        if not (c[0] >= 0 and sum(c) > 0 and all(c[0] + c[1] * u + c[2] * u * u < c[0] + c[1] * v + c[2] * v * v
                                                   for u, v in zip(_GRID[:-1], _GRID[1:]))):
            raise PlatformError(f"{fname}: field rotors.thrust_curve ({c}): expected thrust >= 0 at u = 0, rising over u in [0, 1]")
    firmware = header.get("firmware")
    if firmware is not None:
        _check_mixer(fname, kind, firmware, values)
    if "safety.specs" in values:
        _check_safety(fname, kind, values)
    if "rate_controller.firmware" in values:
        if values["rate_controller.firmware"] not in RATE_FIRMWARES:
            raise PlatformError(f"{fname}: field rate_controller.firmware: expected one of {sorted(RATE_FIRMWARES)}, "
                                f"got {values['rate_controller.firmware']!r}")
    return Platform(name=name, kind=kind, path=path, raw=raw, values=values, units=units, sources=sources)



# The autopilot rate loops edgectl.rate_control models (its FIRMWARES table, which imports this module: the
# names live here so the loader needs nothing above it; tests/test_rate_control.py holds the two equal).
RATE_FIRMWARES = ("ardupilot", "crazyflie", "px4")

def _check_value(fname: str, key: str, spec: Spec, value: Any) -> Any:
    where = f"{fname}: field {key} ({spec.unit or 'no unit'})"
    if spec.kind == "stl":
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
            raise PlatformError(f"{where}: expected a non-empty list of STL specs (strings), got {value!r}")
        return list(value)
    if spec.kind in ("range", "interval"):
        return _check_range(where, spec.kind, value)
    if spec.kind == "str":
        if not isinstance(value, str) or not value:
            raise PlatformError(f"{where}: expected a non-empty string, got {value!r}")
        return value
    shape = _shape(value)
    if shape != spec.shape:
        want = "a number" if not spec.shape else f"an array of shape {list(spec.shape)}"
        raise PlatformError(f"{where}: expected {want}, got {value!r}")
    for x in _flat(value):
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise PlatformError(f"{where}: expected numbers, got {x!r}")
        if spec.kind == "int" and not isinstance(x, int):
            raise PlatformError(f"{where}: expected an integer, got {x!r}")
        if isinstance(x, int) and not -(2**63) <= x < 2**63:
            raise PlatformError(f"{where}: integer {x} is outside the 64-bit range TOML allows")
        if not math.isfinite(x):
            raise PlatformError(f"{where}: value {x!r} is not finite")
        if spec.positive and x <= 0:
            raise PlatformError(f"{where}: expected a positive value, got {x!r}")
        if spec.min is not None and x < spec.min:
            raise PlatformError(f"{where}: value {x!r} is below the minimum {spec.min}")
        if spec.max is not None and x > spec.max:
            raise PlatformError(f"{where}: value {x!r} is above the maximum {spec.max}")
    return value if spec.kind == "int" or spec.shape else float(value)


_HEADER_KEYS = ("name", "kind", "description", "firmware")


def _check_known(fname: str, doc: dict, header: dict, schema: dict) -> None:
    """A misspelled section or key would otherwise be ignored silently (the shield falling back to defaults,
    a randomization range never applied): refuse it, with the nearest known name."""
    import difflib
    sections = {k.split(".")[0] for k in schema}
    for key in header:
        if key not in _HEADER_KEYS:
            near = difflib.get_close_matches(key, _HEADER_KEYS, n=1)
            raise PlatformError(f"{fname}: unknown key platform.{key}" + (f" (did you mean platform.{near[0]}?)" if near else
                                f"; [platform] takes {', '.join(_HEADER_KEYS)}"))
    for section, table in doc.items():
        if section == "platform":
            continue
        if section not in sections or not isinstance(table, dict):
            near = difflib.get_close_matches(section, sorted(sections), n=1)
            raise PlatformError(f"{fname}: unknown section [{section}]" + (f" (did you mean [{near[0]}]?)" if near else
                                f"; known sections: {', '.join(sorted(sections))}"))
        known = sorted(k.split(".", 1)[1] for k in schema if k.startswith(section + "."))
        for key in table:
            if key not in known:
                near = difflib.get_close_matches(key, known, n=1)
                raise PlatformError(f"{fname}: unknown field {section}.{key}" + (f" (did you mean {section}.{near[0]}?)" if near else
                                    f"; [{section}] takes {', '.join(known)}"))


_GRID = [i / 20 for i in range(21)]


def _rpm_to_curve(fname: str, values: dict, units: dict, sources: dict) -> None:
    """The rpm form as the curve form: rpm / max_rpm = m0 + u (1 - m0), thrust = k rpm^2."""
    lo, hi = values["rotors.min_rpm"], values["rotors.max_rpm"]
    if lo >= hi:
        raise PlatformError(f"{fname}: field rotors.min_rpm ({lo}) must be below rotors.max_rpm ({hi})")
    t, m0 = values["rotors.thrust_coefficient"] * hi * hi, lo / hi
    why = "derived from rotors.thrust_coefficient, max_rpm, min_rpm (rpm linear in the command, thrust = k rpm^2)"
    new = {"rotors.thrust_curve": ([t * m0 * m0, 2.0 * t * m0 * (1.0 - m0), t * (1.0 - m0) ** 2], "N", why),
           "rotors.motor_time_constant_up": (values["rotors.motor_time_constant"], "s", "rotors.motor_time_constant"),
           "rotors.motor_time_constant_down": (values["rotors.motor_time_constant"], "s", "rotors.motor_time_constant"),
           "randomization.thrust_curve": (values["randomization.thrust_coefficient"], "1", "randomization.thrust_coefficient")}
    for k, (v, unit, src) in new.items():
        values[k], units[k], sources[k] = v, unit, src


def rotor_model(platform: "Platform") -> dict[str, Any]:
    """The rotor constants every twin uses (simulators, backup, C app): thrust(u) = thrust_max *
    (b0 + b1 u + (1 - b0 - b1) u^2) per rotor for the motor state u in [0, 1]; lag time constants."""
    c = [float(v) for v in platform.get("rotors.thrust_curve")]
    t = sum(c)
    return {"thrust_max": t, "thrust_shape": [c[0] / t, c[1] / t], "motor_tau": platform.get("rotors.motor_time_constant_up"),
            "motor_tau_down": platform.get("rotors.motor_time_constant_down"), "drag": platform.get("rotors.drag_coefficient"),
            "motor_min": 0.0}


def thrust_fraction(u, b0, b1):
    """thrust / thrust_max at motor state u (numpy or JAX arrays: plain arithmetic)."""
    return b0 + u * (b1 + u * (1.0 - b0 - b1))


def motor_for_fraction(f, b0, b1, xp=None):
    """The motor state u in [0, 1] whose thrust is f * thrust_max (f clipped to the curve's range):
    the stable root 2 (f - b0) / (b1 + sqrt(b1^2 + 4 b2 (f - b0))), valid for b2 = 0 and b1 = 0 too."""
    import numpy as _np
    xp = xp or _np
    d = xp.clip(f - b0, 0.0, 1.0 - b0)
    b2 = 1.0 - b0 - b1
    # d = 0 (a motor commanded to its floor) is 0 exactly; the root is taken of d > 0 only, because with b1 = 0 (the
    # Crazyflie's pure quadratic) sqrt's derivative at 0 is infinite and JAX's gradient through the clip became NaN
    # (0 * inf), which blinded the differentiable uses of the simulator (train_fast/recoverability.py) whenever a
    # motor hit its floor.
    live = d > 0.0
    safe = xp.where(live, d, 1.0)
    u = xp.where(live, 2.0 * safe / xp.maximum(b1 + xp.sqrt(b1 * b1 + 4.0 * b2 * safe), 1e-12), 0.0)
    return u[()] if xp is _np else u  # NumPy: a scalar in, a scalar out, as before


def _check_mixer(fname: str, kind: str, firmware: Any, values: dict[str, Any]) -> None:
    # The firmware's mixer is the outside truth for motor order and spin (edgectl/mixers.py).
    from edgectl.mixers import MIXERS, mismatch
    if kind != "quadrotor" or firmware not in MIXERS:
        raise PlatformError(f"{fname}: field platform.firmware: expected one of {sorted(MIXERS)} for a quadrotor, got {firmware!r}")
    bad = mismatch(firmware, values["rotors.positions"], values["rotors.spin"])
    if bad:
        raise PlatformError(f"{fname}: field rotors.spin/rotors.positions disagree with the {firmware} firmware: {bad}")


def _check_safety(fname: str, kind: str, values: dict[str, Any]) -> None:
    # Parse every spec now, at the sample period the policy (and so the monitor) runs at: a typo
    # in a safety spec must stop the load, not surface mid-flight.
    from edgectl.safety.signals import SIGNALS_BY_KIND
    from edgectl.safety.stl import SpecError, parse
    dt = 1.0 / values["control.policy_rate"]
    horizon = values["safety.shield_horizon"]
    if abs(round(horizon / dt) * dt - horizon) > 1e-9:
        raise PlatformError(f"{fname}: field safety.shield_horizon ({horizon:g} s) is not a multiple of 1/control.policy_rate = {dt:g} s")
    for i, text in enumerate(values["safety.specs"]):
        try:
            f = parse(text, SIGNALS_BY_KIND[kind])
            f.steps(dt)
        except SpecError as e:
            raise PlatformError(f"{fname}: field safety.specs[{i}]: {e}") from None
        if f.horizon > horizon + 1e-9:
            raise PlatformError(f"{fname}: field safety.specs[{i}] looks {f.horizon:g} s ahead, beyond safety.shield_horizon = {horizon:g} s")


def _check_range(where: str, kind: str, value: Any) -> list[float]:
    ok = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)  # noqa: E731
    if kind == "range" and ok(value):
        if not 0.0 <= value <= 0.5:
            raise PlatformError(f"{where}: r = {value!r} (the range [1 - r, 1 + r]) must lie in [0, 0.5]")
        return [1.0 - float(value), 1.0 + float(value)]
    if not (isinstance(value, list) and len(value) == 2 and all(ok(x) for x in value)):
        want = "[lo, hi] factors (or one number r for [1 - r, 1 + r])" if kind == "range" else "[lo, hi]"
        raise PlatformError(f"{where}: expected {want}, got {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if kind == "range" and not 0.0 < lo <= 1.0 <= hi <= 10.0:
        raise PlatformError(f"{where}: factor range {value!r} must have 0 < lo <= 1 <= hi <= 10")
    if kind == "interval" and not 0.0 <= lo <= hi <= 1.0:
        raise PlatformError(f"{where}: interval {value!r} must have 0 <= lo <= hi <= 1 (control periods)")
    return [lo, hi]


def _shape(v: Any) -> tuple[int, ...]:
    if not isinstance(v, list):
        return ()
    inner = {_shape(x) for x in v}
    if len(inner) != 1:
        return (len(v), -1) if v else (0,)
    return (len(v), *inner.pop())


def _flat(v: Any):
    if isinstance(v, list):
        for x in v:
            yield from _flat(x)
    else:
        yield v

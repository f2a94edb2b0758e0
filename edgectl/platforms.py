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
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HARDWARE_DIR = Path(os.environ.get("EDGECTL_HARDWARE_DIR", Path(__file__).resolve().parent.parent / "hardware"))


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


_QUADROTOR: dict[str, Spec] = {
    "body.mass": Spec("kg", positive=True),
    "body.inertia": Spec("kg*m^2", (3,), positive=True),
    "body.gravity": Spec("m/s^2", positive=True),
    "rotors.positions": Spec("m", (4, 3)),
    "rotors.spin": Spec("1", (4,), kind="int", min=-1, max=1),
    "rotors.thrust_coefficient": Spec("N/rpm^2", positive=True),
    "rotors.torque_coefficient": Spec("N*m/N", positive=True),
    "rotors.max_rpm": Spec("rpm", positive=True),
    "rotors.min_rpm": Spec("rpm", min=0.0),
    "rotors.motor_time_constant": Spec("s", positive=True),
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
    "randomization.mass": Spec("1", min=0.0, max=0.5),
    "randomization.inertia": Spec("1", min=0.0, max=0.5),
    "randomization.thrust_coefficient": Spec("1", min=0.0, max=0.5),
    "randomization.torque_coefficient": Spec("1", min=0.0, max=0.5),
    "randomization.motor_time_constant": Spec("1", min=0.0, max=0.5),
    "disturbance.force_std": Spec("N", min=0.0),
    "disturbance.torque_std": Spec("N*m", min=0.0),
    "sensors.position_noise_std": Spec("m", min=0.0),
    "sensors.orientation_noise_std": Spec("1", min=0.0),
    "sensors.velocity_noise_std": Spec("m/s", min=0.0),
    "sensors.angular_velocity_noise_std": Spec("rad/s", min=0.0),
    # Runtime assurance (edgectl/safety): specs over edgectl.safety.signals.QUADROTOR_SIGNALS.
    # The margin is in robustness units (those of the spec's predicates: m, rad, ...).
    "safety.specs": Spec("", (-1,), kind="stl"),
    "safety.shield_margin": Spec("", min=0.0),
    "safety.shield_holdoff": Spec("s", min=0.0),
    "safety.shield_horizon": Spec("s", positive=True),
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

SCHEMAS: dict[str, dict[str, Spec]] = {"quadrotor": _QUADROTOR, "rc_car": _RC_CAR}
# Sections a file may leave out entirely (all their fields then absent), so platform files copied
# into bundles before the section existed still load; a section that is present must be complete.
OPTIONAL_SECTIONS = frozenset({"safety"})


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
    for key, spec in SCHEMAS[kind].items():
        section, fld = key.split(".")
        if section in OPTIONAL_SECTIONS and section not in doc:
            continue
        entry = doc.get(section, {}).get(fld) if isinstance(doc.get(section), dict) else None
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
    if kind == "quadrotor" and values["rotors.min_rpm"] >= values["rotors.max_rpm"]:
        raise PlatformError(f"{fname}: field rotors.min_rpm ({values['rotors.min_rpm']}) must be below rotors.max_rpm ({values['rotors.max_rpm']})")
    firmware = header.get("firmware")
    if firmware is not None:
        _check_mixer(fname, kind, firmware, values)
    if "safety.specs" in values:
        _check_safety(fname, kind, values)
    return Platform(name=name, kind=kind, path=path, raw=raw, values=values, units=units, sources=sources)


def _check_value(fname: str, key: str, spec: Spec, value: Any) -> Any:
    where = f"{fname}: field {key} ({spec.unit or 'no unit'})"
    if spec.kind == "stl":
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
            raise PlatformError(f"{where}: expected a non-empty list of STL specs (strings), got {value!r}")
        return list(value)
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

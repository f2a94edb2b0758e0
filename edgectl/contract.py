"""The observation/action contract of a trained policy: what the runtime must feed it and what it returns.

The contract is a plain JSON-serializable dict stored in a policy bundle. A policy fed an
observation in the wrong order, unit or normalization still outputs plausible numbers, so the
contract is checked field by field and every error names the field path and the bad value.
Stdlib + numpy only: this module runs on the robot (Jetson, Raspberry Pi).
"""
from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

CONTRACT_VERSION = 1
QUATERNION_ORDERS = ("wxyz", "xyzw")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


class ContractError(ValueError):
    pass


def _short(v: Any, limit: int = 80) -> str:
    r = repr(v)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _fail(path: str, expected: str, got: Any) -> None:
    raise ContractError(f"{path}: expected {expected}, got {_short(got)}")


def _is_num(v: Any) -> bool:
    # bool is an int subclass; True as a size or a scale is always a mistake.
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _key(d: dict, key: str, path: str) -> tuple[Any, str]:
    p = f"{path}.{key}"
    if key not in d:
        raise ContractError(f"{p}: missing required key")
    return d[key], p


def _dict(v: Any, path: str) -> dict:
    if not isinstance(v, dict):
        _fail(path, "an object", v)
    return v


def _pos_int(v: Any, path: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
        _fail(path, "a positive int", v)
    return v


def _num(v: Any, path: str) -> float:
    if not _is_num(v):
        _fail(path, "a finite number", v)
    return v


def _str(v: Any, path: str) -> str:
    if not isinstance(v, str):
        _fail(path, "a string", v)
    return v


def _num_list(v: Any, path: str, n: int, *, nonzero: bool = False, nonneg: bool = False) -> None:
    if not isinstance(v, list):
        _fail(path, f"a list of {n} finite numbers", v)
    if len(v) != n:
        raise ContractError(f"{path}: expected a list of {n} finite numbers (observation.size), got a list of length {len(v)}")
    for i, x in enumerate(v):
        _num(x, f"{path}[{i}]")
        if nonzero and x == 0:
            _fail(f"{path}[{i}]", "a nonzero number", x)
        if nonneg and x < 0:
            _fail(f"{path}[{i}]", "a number >= 0", x)


def validate_contract(contract: dict, where: str = "contract") -> None:
    """Raise ContractError naming the first bad field; ``where`` prefixes every field path."""
    c = _dict(contract, where)
    v, p = _key(c, "version", where)
    if v != CONTRACT_VERSION or isinstance(v, bool):
        _fail(p, f"version {CONTRACT_VERSION}", v)
    v, p = _key(c, "rate_hz", where)
    if _num(v, p) <= 0:
        _fail(p, "a positive rate in Hz", v)
    v, p = _key(c, "quaternion_order", where)
    if v not in QUATERNION_ORDERS:
        _fail(p, f"one of {list(QUATERNION_ORDERS)}", v)

    obs, op = _key(c, "observation", where)
    _dict(obs, op)
    size = _pos_int(*_key(obs, "size", op))
    fields, fp = _key(obs, "fields", op)
    if not isinstance(fields, list) or not fields:
        _fail(fp, "a non-empty list of fields", fields)
    seen: set[str] = set()
    total = 0
    for i, f in enumerate(fields):
        ip = f"{fp}[{i}]"
        _dict(f, ip)
        name, namep = _key(f, "name", ip)
        if not isinstance(name, str) or not _NAME_RE.match(name):
            _fail(namep, "a name matching ^[a-z][a-z0-9_]*$", name)
        if name in seen:
            _fail(namep, "a unique field name", name)
        seen.add(name)
        total += _pos_int(*_key(f, "size", ip))
        _str(*_key(f, "unit", ip))
        _str(*_key(f, "frame", ip))
        if "description" in f:
            _str(*_key(f, "description", ip))
    if total != size:
        raise ContractError(f"{fp}: field sizes sum to {total}, expected observation.size = {size}")
    if "noise_std" in obs:
        _num_list(obs["noise_std"], f"{op}.noise_std", size, nonneg=True)
    norm, normp = _key(obs, "normalization", op)
    _dict(norm, normp)
    _num_list(*_key(norm, "offset", normp), size)
    _num_list(*_key(norm, "scale", normp), size, nonzero=True)
    if "formula" in norm:
        _str(norm["formula"], f"{normp}.formula")

    act, ap = _key(c, "action", where)
    _dict(act, ap)
    asize = _pos_int(*_key(act, "size", ap))
    names, nmp = _key(act, "names", ap)
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        _fail(nmp, "a list of non-empty strings", names)
    if len(names) != asize:
        raise ContractError(f"{nmp}: expected {asize} names (action.size), got {len(names)}: {_short(names)}")
    if len(set(names)) != len(names):
        _fail(nmp, "unique names", names)
    low = _num(*_key(act, "low", ap))
    high, hp = _key(act, "high", ap)
    if _num(high, hp) <= low:
        _fail(hp, f"a number greater than action.low = {low}", high)
    mapping, mp = _key(act, "mapping", ap)
    _dict(mapping, mp)
    _str(*_key(mapping, "kind", mp))
    if "hover_action" in act:
        hover, hvp = _key(act, "hover_action", ap)
        if not low <= _num(hover, hvp) <= high:
            _fail(hvp, f"a number in [action.low, action.high] = [{low}, {high}]", hover)


def observation_slices(contract: dict) -> dict[str, slice]:
    """Field name -> slice into the observation vector, in contract order."""
    out, start = {}, 0
    for f in contract["observation"]["fields"]:
        out[f["name"]] = slice(start, start + f["size"])
        start += f["size"]
    return out


def normalize(contract: dict, obs: np.ndarray) -> np.ndarray:
    """(obs - offset) / scale over the last axis; float32, like the policy's weights."""
    size = contract["observation"]["size"]
    x = np.asarray(obs, dtype=np.float64)
    if x.ndim == 0 or x.shape[-1] != size:
        raise ValueError(f"observation has shape {x.shape}, expected last dimension observation.size = {size}")
    norm = contract["observation"]["normalization"]
    return ((x - np.asarray(norm["offset"], dtype=np.float64)) / np.asarray(norm["scale"], dtype=np.float64)).astype(np.float32)


INTEGRAL_FIELD = "position_error_integral"


def integral_spec(contract: dict) -> tuple[float, float, float] | None:
    """(decay per period, limit, dt) of the contract's position_error_integral field, or None without one.

    The rule every implementation follows (JAX task, runtime, shield, C app): 0 in the first control period of a
    reference, then every period, before the policy runs, I <- clip(I * decay + position_error * dt, -limit, limit).
    A period whose reference position differs from the last period's (compared as float32, as the C app stores it)
    starts the integral again at 0: a climbing take-off ramp or a waypoint hop would otherwise wind it up with the
    tracking lag, and the policy was only trained on fixed references (measured: a 9.7 cm offset at the end of a
    0.4 m/s take-off, with the integral at its limit). A field with ``reset_jump_m`` J > 0 (a task trained on a
    moving reference: figure8) restarts it only when the reference moved by more than J on an axis in one period
    (a hop), and integrates along a reference that moves less (see integral_jump)."""
    for i, f in enumerate(contract["observation"]["fields"]):
        if f["name"] == INTEGRAL_FIELD:
            where = f"contract.observation.fields[{i}]"
            tau, limit = f.get("tau_s"), f.get("limit")
            if not (isinstance(tau, (int, float)) and tau > 0 and isinstance(limit, (int, float)) and limit > 0):
                raise ContractError(f"{where}: {INTEGRAL_FIELD} needs positive tau_s and limit, got {tau!r}, {limit!r}")
            dt = 1.0 / float(contract["rate_hz"])
            return math.exp(-dt / float(tau)), float(limit), dt
    return None


def integral_jump(contract: dict) -> float:
    """The position_error_integral field's ``reset_jump_m`` (m, per axis and period): a reference that moved by more
    than this since the last period restarts the integral. 0 (the field without the key: hover bundles): any
    change does."""
    for i, f in enumerate(contract["observation"]["fields"]):
        if f["name"] == INTEGRAL_FIELD:
            j = f.get("reset_jump_m", 0.0)
            if not (isinstance(j, (int, float)) and not isinstance(j, bool) and math.isfinite(j) and j >= 0):
                raise ContractError(f"contract.observation.fields[{i}].reset_jump_m: expected a finite number >= 0 (m), "
                                    f"got {j!r}")
            return float(j)
    return 0.0


def integral_update(integral: np.ndarray, position_error, spec: tuple[float, float, float]) -> np.ndarray:
    decay, limit, dt = spec
    return np.clip(integral * decay + np.asarray(position_error, np.float64) * dt, -limit, limit)


def same_reference(a, b, jump: float = 0.0) -> bool:
    """The integral rule's reference comparison, in float32 (what the C app and CRTP carry): no axis moved by more
    than ``jump`` (0: equal)."""
    return a is not None and b is not None and bool(np.all(np.abs(np.float32(a) - np.float32(b)) <= np.float32(jump)))


class PositionIntegral:
    """The position_error_integral a runtime keeps, by the rule above: `update(position_error, ref_position)` once
    per control period before the policy runs returns the value to observe (zeros, and never updated, without
    the field). Without ``ref_position`` the reference is taken as unchanged."""

    def __init__(self, contract: dict):
        self.spec, self.jump = integral_spec(contract), integral_jump(contract)
        self.reset()

    def reset(self) -> None:
        self.value, self._started, self._ref = np.zeros(3), False, None

    def update(self, position_error, ref_position=None) -> np.ndarray:
        if self.spec is not None:
            moved = ref_position is not None and self._ref is not None and not same_reference(ref_position, self._ref,
                                                                                               self.jump)
            if ref_position is not None:
                self._ref = np.float32(ref_position).copy()
            if self._started and not moved:  # 0 in the first period of a reference
                self.value = integral_update(self.value, position_error, self.spec)
            else:
                self.value = np.zeros(3)
            self._started = True
        return self.value


def thrust_curve(mapping: dict, where: str = "contract.action.mapping") -> tuple[float, float, float]:
    """(thrust_max N, b0, b1) of an action mapping: per-rotor thrust = thrust_max * (b0 + b1 u + (1 - b0 - b1) u^2)
    at u = (clip(a, -1, 1) + 1) / 2. Knows "thrust_curve" ([c0, c1, c2] N) and the older "rpm_linear"
    (rpm = min_rpm + u (max_rpm - min_rpm), thrust = thrust_coefficient rpm^2), which is the same curve."""
    kind = mapping.get("kind") if isinstance(mapping, dict) else None
    if kind == "thrust_curve":
        c = mapping.get("thrust_curve")
        if not (isinstance(c, list) and len(c) == 3 and all(_is_num(x) for x in c) and sum(c) > 0):
            _fail(f"{where}.thrust_curve", "a list [c0, c1, c2] of finite numbers (N) with c0 + c1 + c2 > 0", c)
        t = float(sum(c))
        return t, c[0] / t, c[1] / t
    if kind == "rpm_linear":
        try:
            lo, hi, k = (float(mapping[n]) for n in ("min_rpm", "max_rpm", "thrust_coefficient"))
        except (KeyError, TypeError, ValueError):
            raise ContractError(f"{where}: rpm_linear needs min_rpm, max_rpm and thrust_coefficient") from None
        if not (0.0 <= lo < hi and k > 0):
            raise ContractError(f"{where}: expected 0 <= min_rpm < max_rpm and thrust_coefficient > 0, got {lo}, {hi}, {k}")
        m0 = lo / hi
        return k * hi * hi, m0 * m0, 2.0 * m0 * (1.0 - m0)
    raise ContractError(f"{where}.kind: expected 'thrust_curve' or 'rpm_linear', got {_short(kind)}")


"""The observation builder: a policy's raw observation from a state estimate, in the contract's field order.

The one function the runtime (``edgectl.runtime.loop``), the host shield and the benches build observations with;
numpy in, numpy out (float64), jax in, jax out (the arrays' own dtype), like ``edgectl.scene`` and
``edgectl.safety.signals``, and no JAX import here. The training environments' jitted observation
(train_fast/tasks/quadrotor_tasks.py) and the C one (export/crazyflie/edgectl_obs.c.in) are tested against it
(tests/test_quadrotor_tasks.py, tests/test_crazyflie_host_app.py); the shield's fused Numba kernel
(edgectl.safety.shield) against it too (tests/test_shield.py).
"""
from __future__ import annotations

import numpy as np

SUPPORTED_FIELDS = ("position_error", "rotation_matrix", "velocity_error", "angular_velocity", "previous_actions",
                    "reference_acceleration", "position_error_integral")
# What this builder makes of each field: unit, and frame (the text before any comma; None: not checked, the actions
# are the policy's own outputs as sent). A contract that declares another unit or frame for a field gets a policy
# fed numbers it was not trained on (deg/s read as rad/s, a body-frame velocity as world): refused (issue 16).
BUILT_AS = {
    "position_error": ("m", "world"), "rotation_matrix": ("1", "body-to-world"), "velocity_error": ("m/s", "world"),
    "angular_velocity": ("rad/s", "body"), "previous_actions": ("1", None), "reference_acceleration": ("m/s^2", "world"),
    "position_error_integral": ("m s", "world"),
}


def _xp(*arrays):
    # jax in, jax out; anything else is numpy. No jax import unless the caller already passed jax arrays.
    for a in arrays:
        if type(a).__module__.split(".")[0] in ("jax", "jaxlib"):
            import jax.numpy as jnp
            return jnp
    return np


def check_contract(contract: dict) -> None:
    """Refuse a contract with a field this builder cannot make from a state estimate (once, not every tick)."""
    names = [f["name"] for f in contract["observation"]["fields"]]
    bad = [n for n in names if n not in SUPPORTED_FIELDS]
    if bad:
        raise ValueError(f"shield: contract.observation.fields: cannot build {bad} from a state estimate "
                         f"(known: {list(SUPPORTED_FIELDS)})")
    for i, fd in enumerate(contract["observation"]["fields"]):
        unit, frame = BUILT_AS[fd["name"]]
        got_unit, got_frame = fd.get("unit"), str(fd.get("frame", "")).split(",")[0].strip()
        if got_unit != unit or (frame is not None and got_frame != frame):
            raise ValueError(f"contract.observation.fields[{i}] {fd['name']!r}: unit {got_unit!r}, frame {got_frame!r}; "
                             f"the host builds it in {unit!r}, frame {frame!r}")


def observation(contract: dict, pos, quat, vel, omega, prev_actions, ref_pos=None, ref_vel=None, ref_acc=None,
                integral=None):
    """Raw (unnormalized, noise-free) observation (..., size) in the contract's field order. `quat`: w, x, y, z,
    body to world; `integral`: the position_error_integral the caller keeps (edgectl.contract.integral_update),
    zeros if None. Callers check the contract once (check_contract), not every tick."""
    xp = _xp(pos, quat, vel, omega, prev_actions, ref_pos, ref_vel, ref_acc, integral)

    def arr(v):
        return np.asarray(v, np.float64) if xp is np else xp.asarray(v)

    pos, quat, vel, omega = (arr(v) for v in (pos, quat, vel, omega))
    z3 = xp.zeros(3, pos.dtype)
    ref_pos = z3 if ref_pos is None else arr(ref_pos)
    ref_vel = z3 if ref_vel is None else arr(ref_vel)
    w, x, y, z = (quat[..., i] for i in range(4))
    rot = xp.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                    2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                    2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=-1)
    parts = {"position_error": pos - ref_pos, "rotation_matrix": rot, "velocity_error": vel - ref_vel,
             "angular_velocity": omega}
    out = []
    for fd in contract["observation"]["fields"]:
        name = fd["name"]
        if name == "previous_actions":
            v = arr(prev_actions)
        elif name == "reference_acceleration":
            v = xp.broadcast_to(z3 if ref_acc is None else arr(ref_acc), pos.shape)
        elif name == "position_error_integral":
            v = xp.broadcast_to(z3 if integral is None else arr(integral), pos.shape)
        else:
            v = parts[name]
        if v.shape[-1] != fd["size"]:
            raise ValueError(f"shield: observation field {name!r}: built {v.shape[-1]} values, contract says {fd['size']}")
        out.append(xp.broadcast_to(v, pos.shape[:-1] + (fd["size"],)))
    return xp.concatenate(out, axis=-1)


__all__ = ["BUILT_AS", "SUPPORTED_FIELDS", "check_contract", "observation"]

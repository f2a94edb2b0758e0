"""Standard signal names for quadrotor specs, and how to compute them from a state.

Units and frames: x, y, z (m, world, z up); vx, vy, vz (m/s, world); roll, pitch, yaw (rad, ZYX
Euler angles of the body-to-world quaternion); wx, wy, wz (rad/s, body rates as the simulator
gives them); ex, ey, ez (m, position minus reference, world); speed (m/s, |v|); tilt (rad, angle
between body z and world z, in [0, pi]).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # edgectl.platforms imports this module (its spec check): no import of it here, not even for types
    from edgectl.safety.stl import Formula

QUADROTOR_SIGNALS: tuple[str, ...] = (
    "x", "y", "z", "vx", "vy", "vz", "roll", "pitch", "yaw",
    "wx", "wy", "wz", "ex", "ey", "ez", "speed", "tilt",
)

SIGNALS_BY_KIND: dict[str, tuple[str, ...]] = {"quadrotor": QUADROTOR_SIGNALS}


def _xp(a):
    # Same code for numpy and for jax arrays (the shield calls this under jit): no jax import here.
    if type(a).__module__.split(".")[0] in ("jax", "jaxlib"):
        import jax.numpy as jnp
        return jnp
    return np


def signals_from_state(pos, quat_wxyz, vel, omega, ref_pos) -> dict:
    """Signals of QUADROTOR_SIGNALS from state arrays with the vector on the last axis
    (pos (..., 3), quat_wxyz (..., 4), vel (..., 3), omega (..., 3), ref_pos broadcastable to
    pos). Returns {name: array of shape (...)}; numpy in, numpy out (jax in, jax out)."""
    xp = _xp(pos)
    pos, q, vel, omega = (xp.asarray(a) for a in (pos, quat_wxyz, vel, omega))
    err = pos - xp.asarray(ref_pos)
    for name, a, n in (("pos", pos, 3), ("quat_wxyz", q, 4), ("vel", vel, 3), ("omega", omega, 3)):
        if a.ndim == 0 or a.shape[-1] != n:
            raise ValueError(f"signals_from_state: {name} must have {n} components on its last axis, got shape {tuple(a.shape)}")
    w, qx, qy, qz = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    roll = xp.arctan2(2 * (w * qx + qy * qz), 1 - 2 * (qx * qx + qy * qy))
    pitch = xp.arcsin(xp.clip(2 * (w * qy - qz * qx), -1.0, 1.0))
    yaw = xp.arctan2(2 * (w * qz + qx * qy), 1 - 2 * (qy * qy + qz * qz))
    # cos(tilt) = R[2,2] = (w^2 + z^2) - (x^2 + y^2); the half-angle form keeps precision near 0
    tilt = 2 * xp.arctan2(xp.sqrt(qx * qx + qy * qy), xp.sqrt(w * w + qz * qz))
    return {
        "x": pos[..., 0], "y": pos[..., 1], "z": pos[..., 2],
        "vx": vel[..., 0], "vy": vel[..., 1], "vz": vel[..., 2],
        "roll": roll, "pitch": pitch, "yaw": yaw,
        "wx": omega[..., 0], "wy": omega[..., 1], "wz": omega[..., 2],
        "ex": err[..., 0], "ey": err[..., 1], "ez": err[..., 2],
        "speed": xp.sqrt(vel[..., 0] ** 2 + vel[..., 1] ** 2 + vel[..., 2] ** 2),
        "tilt": tilt,
    }


def platform_formulas(platform) -> list["Formula"]:
    """The parsed ``safety.specs`` of an edgectl.platforms.Platform (already checked when the platform loaded)."""
    from edgectl.safety.stl import parse
    return [parse(s, SIGNALS_BY_KIND[platform.kind]) for s in platform.get("safety.specs")]

"""Frames: MAVLink speaks NED world / FRD body, edgectl speaks ENU world (z up) / FLU body.

World, NED -> ENU (a proper rotation, so handedness and cross products survive):
    x_enu = y_ned (east),  y_enu = x_ned (north),  z_enu = -z_ned (up)
Body, FRD -> FLU (180 deg about the forward axis):
    x_flu = x_frd,  y_flu = -y_frd,  z_flu = -z_frd
Both maps are their own inverse, so the same formulas convert back.

Attitude: with R_ned_frd the body-to-world rotation MAVLink reports (ATTITUDE_QUATERNION q1..q4
= w x y z), ours is R_enu_flu = T @ R_ned_frd @ F with T the world map and F the body map above; as
quaternions q_enu_flu = q_T * q_ned_frd * q_F. Consequences worth remembering: level and nose north
in NED (identity) is yaw +90 deg in ENU; nose east is identity in ENU; body rates (p, q, r) FRD
are (p, -q, -r) FLU, so a positive FRD pitch (nose up) is a negative FLU pitch.

Quaternions are (w, x, y, z), returned with w >= 0 (q and -q are the same rotation).
"""
from __future__ import annotations

import math

import numpy as np

_S = math.sqrt(0.5)
Q_NED_ENU = np.array([0.0, _S, _S, 0.0])  # T: 180 deg about (1, 1, 0)/sqrt(2)
Q_FRD_FLU = np.array([0.0, 1.0, 0.0, 0.0])  # F: 180 deg about x
_FLIP_YZ = np.array([1.0, -1.0, -1.0])


def ned_to_enu(v) -> np.ndarray:
    """Vector(s) (..., 3) from NED to ENU: (n, e, d) -> (e, n, -d)."""
    v = np.asarray(v, dtype=np.float64)
    return np.stack([v[..., 1], v[..., 0], -v[..., 2]], axis=-1)


enu_to_ned = ned_to_enu  # the swap is an involution: (e, n, u) -> (n, e, -u)


def frd_to_flu(v) -> np.ndarray:
    """Body vector(s) (..., 3) from FRD to FLU: (x, y, z) -> (x, -y, -z)."""
    return np.asarray(v, dtype=np.float64) * _FLIP_YZ


flu_to_frd = frd_to_flu


def quat_mul(a, b) -> np.ndarray:
    """Hamilton product a * b of (..., 4) quaternions (w, x, y, z)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    aw, ax, ay, az = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
    bw, bx, by, bz = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack([aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw], axis=-1)


def quat_conj(q) -> np.ndarray:
    return np.asarray(q, dtype=np.float64) * np.array([1.0, -1.0, -1.0, -1.0])


def quat_canonical(q) -> np.ndarray:
    """Unit norm and w >= 0."""
    q = np.asarray(q, dtype=np.float64)
    n = np.linalg.norm(q, axis=-1, keepdims=True)
    if np.any(n == 0) or not np.all(np.isfinite(n)):
        raise ValueError(f"quaternion {q.tolist()} is zero or not finite")
    q = q / n
    return np.where(q[..., :1] < 0, -q, q)


def quat_ned_frd_to_enu_flu(q) -> np.ndarray:
    """Body-to-world attitude from MAVLink's NED/FRD to edgectl's ENU/FLU."""
    return quat_canonical(quat_mul(quat_mul(Q_NED_ENU, q), Q_FRD_FLU))


# T and F are 180 deg turns (their own inverses up to sign), so the inverse map is the same product.
quat_enu_flu_to_ned_frd = quat_ned_frd_to_enu_flu


def quat_to_rotmat(q) -> np.ndarray:
    """(..., 4) unit quaternion (w, x, y, z) -> (..., 3, 3) rotation matrix (body to world)."""
    q = np.asarray(q, dtype=np.float64)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], axis=-1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], axis=-1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=-1),
    ], axis=-2)


def quat_from_euler(roll, pitch, yaw) -> np.ndarray:
    """ZYX (yaw, then pitch, then roll) Euler angles in rad -> quaternion, in whatever frame pair
    the angles are given (MAVLink ATTITUDE: NED/FRD)."""
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    return quat_canonical(np.array([cr * cp * cy + sr * sp * sy,
                                    sr * cp * cy - cr * sp * sy,
                                    cr * sp * cy + sr * cp * sy,
                                    cr * cp * sy - sr * sp * cy]))


def quat_to_euler(q) -> tuple[float, float, float]:
    """Quaternion -> ZYX Euler (roll, pitch, yaw) in rad, same frames as the quaternion."""
    w, x, y, z = (float(c) for c in np.asarray(q, dtype=np.float64))
    roll = math.atan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = math.asin(max(-1.0, min(1.0, 2 * (w * y - z * x))))
    yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return roll, pitch, yaw

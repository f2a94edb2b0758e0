"""A PX4 ULog (.ulg) read into the flight log's columns (edgectl.runtime.flightlog), so `edgectl plot FLIGHT.ulg`
draws a real PX4 flight the way it draws a simulated one. Needs pyulog (pip install pyulog).

Topics and fields, from PX4's msg/ definitions (PX4-Autopilot main):
- vehicle_local_position (VehicleLocalPosition.msg): x y z (m, NED), vx vy vz (m/s, NED): the rows, at its
  timestamps;
- vehicle_attitude (VehicleAttitude.msg): q[4], FRD body to NED, Hamilton w x y z;
- vehicle_angular_velocity (VehicleAngularVelocity.msg): xyz[3], rad/s, FRD body;
- trajectory_setpoint (TrajectorySetpoint.msg): position[3], m, NED: the reference;
- actuator_motors (ActuatorMotors.msg): control[12], thrust 0..1 per motor (NaN: off): a1..a4 = 2 control - 1,
  the contract's [-1, 1] motor units (u = (a + 1) / 2);
- vehicle_status (VehicleStatus.msg): nav_state; NAVIGATION_STATE_OFFBOARD (14), what `edgectl run` flies in,
  is `nominal`, any other mode is named (px4 POSCTL, px4 AUTO_LAND, ...), and a change of it is an event.
Each other topic is sampled and held at the rows' times (its last message at or before). Frames become edgectl's
(world ENU z up, body FLU): the same conversion as firmware_bridge/mavlink/frames.py (tests/test_flightlog.py
holds them equal; that module is not imported here because its package imports pymavlink). No robustness, no
period error: nan; no link events.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

# VehicleStatus.msg NAVIGATION_STATE_* (PX4-Autopilot main)
NAV_STATES = {0: "MANUAL", 1: "ALTCTL", 2: "POSCTL", 3: "AUTO_MISSION", 4: "AUTO_LOITER", 5: "AUTO_RTL",
              10: "ACRO", 12: "DESCEND", 13: "TERMINATION", 14: "OFFBOARD", 15: "STAB", 17: "AUTO_TAKEOFF",
              18: "AUTO_LAND", 19: "AUTO_FOLLOW_TARGET", 20: "AUTO_PRECLAND", 21: "ORBIT", 22: "AUTO_VTOL_TAKEOFF"}
OFFBOARD = 14
_S = math.sqrt(0.5)
_Q_NED_ENU = np.array([0.0, _S, _S, 0.0])  # firmware_bridge/mavlink/frames.py Q_NED_ENU
_Q_FRD_FLU = np.array([0.0, 1.0, 0.0, 0.0])  # ... Q_FRD_FLU


def _qmul(a, b):
    aw, ax, ay, az = (a[..., i] for i in range(4))
    bw, bx, by, bz = (b[..., i] for i in range(4))
    return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], axis=-1)


def quat_ned_frd_to_enu_flu(q) -> np.ndarray:
    q = _qmul(_qmul(_Q_NED_ENU, np.asarray(q, np.float64)), _Q_FRD_FLU)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)


def _ned_to_enu(v) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return np.stack([v[..., 1], v[..., 0], -v[..., 2]], axis=-1)


def read_ulog(path: Path) -> dict[str, np.ndarray]:
    """The columns a ULog gives (edgectl.runtime.flightlog.read_log fills the others, empty)."""
    try:
        from pyulog import ULog
    except ImportError as e:
        raise ImportError(f"reading {path}: PX4 logs need the Python package pyulog, which is not installed: "
                          "pip install pyulog", name="pyulog") from e
    try:
        ulog = ULog(str(path))
    except OSError:
        raise
    except Exception as e:  # noqa: BLE001  pyulog raises its own and struct/index errors on a broken file
        raise ValueError(f"{path}: not a readable PX4 ULog ({type(e).__name__})") from None
    topics = {}
    for d in ulog.data_list:
        if d.multi_id == 0:
            topics.setdefault(d.name, d.data)
    pos = topics.get("vehicle_local_position")
    if pos is None or not len(pos["timestamp"]):
        raise ValueError(f"{path}: a ULog without vehicle_local_position: nothing to plot")
    ts = np.asarray(pos["timestamp"], np.int64)
    n = len(ts)

    def held(topic: str, fields: list[str]) -> np.ndarray:
        """(n, len(fields)) of `topic` sampled and held at the rows' times; nan before its first message."""
        d = topics.get(topic)
        out = np.full((n, len(fields)), np.nan)
        if d is None or not all(f in d for f in fields) or not len(d["timestamp"]):
            return out
        idx = np.searchsorted(np.asarray(d["timestamp"], np.int64), ts, side="right") - 1
        ok = idx >= 0
        for j, f in enumerate(fields):
            out[ok, j] = np.asarray(d[f], np.float64)[idx[ok]]
        return out

    cols: dict[str, np.ndarray] = {"t": (ts - ts[0]) / 1e6}
    p = _ned_to_enu(np.stack([np.asarray(pos[k], np.float64) for k in ("x", "y", "z")], axis=-1))
    v = _ned_to_enu(np.stack([np.asarray(pos[k], np.float64) for k in ("vx", "vy", "vz")], axis=-1))
    q = held("vehicle_attitude", [f"q[{i}]" for i in range(4)])
    have_q = np.isfinite(q).all(axis=1)
    q[have_q] = quat_ned_frd_to_enu_flu(q[have_q])
    w = held("vehicle_angular_velocity", [f"xyz[{i}]" for i in range(3)]) * np.array([1.0, -1.0, -1.0])  # FRD->FLU
    ref = _ned_to_enu(held("trajectory_setpoint", [f"position[{i}]" for i in range(3)]))
    motors = 2.0 * held("actuator_motors", [f"control[{i}]" for i in range(4)]) - 1.0
    for names, arr in ((("x", "y", "z"), p), (("qw", "qx", "qy", "qz"), q), (("vx", "vy", "vz"), v),
                       (("wx", "wy", "wz"), w), (("ref_x", "ref_y", "ref_z"), ref), (("a1", "a2", "a3", "a4"), motors)):
        for j, name in enumerate(names):
            cols[name] = arr[:, j]
    nav = held("vehicle_status", ["nav_state"])[:, 0]
    controller = np.asarray(["" if not np.isfinite(s) else "nominal" if int(s) == OFFBOARD
                             else f"px4 {NAV_STATES.get(int(s), int(s))}" for s in nav], dtype=object)
    event = np.full(n, "", dtype=object)
    for i in range(1, n):
        if controller[i] != controller[i - 1]:
            event[i] = f"{controller[i - 1] or 'start'} -> {controller[i]}"
    cols.update(controller=controller, event=event)
    return cols

"""The host's backup controller for rate-level (ctbr) policies: level, hold the point it took over at, descend
when the state is unknown; commands in the policy's own ctbr action space, so the autopilot's rate loop flies it.

The motor-level backup (edgectl.safety.backup) commands motors, which no autopilot takes from a companion
computer; this one needs only the contract: the hover thrust setpoint and the rate range. The law: a desired
acceleration a = kp (target - p) - kd v (clipped), the thrust vector f = a + g z (tilt at most 30 deg), body
rates turning body z toward f (k_att, the rate loop closes the rest), collective T = hover * (f . z_body) / g.
With no finite attitude it commands 90 % of hover and zero rates (a slow descent the autopilot levels).
The autopilot's own failsafes (PX4 COM_OF_LOSS_T, ArduPilot GUID_TIMEOUT) stay the last line when the host stops.
"""
from __future__ import annotations

import math

import numpy as np

G = 9.81


class CtbrBackup:
    def __init__(self, contract: dict, kp: float = 2.0, kd: float = 2.5, k_att: float = 6.0, max_tilt: float = math.radians(30)):
        m = contract["action"]["mapping"]
        if m.get("kind") != "ctbr":
            raise ValueError(f"contract.action.mapping.kind: CtbrBackup flies ctbr contracts, got {m.get('kind')!r}")
        self.max_rate = np.asarray(m["max_rate"], np.float64)
        self.hover = float(m["hover_thrust"])
        self.kp, self.kd, self.k_att, self.max_tilt = kp, kd, k_att, max_tilt
        self.target: np.ndarray | None = None

    def engage(self, pos, target=None) -> None:
        p = np.asarray(target if target is not None else pos, np.float64)
        self.target = p.copy() if np.all(np.isfinite(p)) else None

    def observe(self, quat, vel, omega, action) -> None:  # stateless law: nothing to keep current
        pass

    def _action(self, thrust: float, rates) -> np.ndarray:
        return np.concatenate([[2.0 * float(np.clip(thrust, 0.0, 1.0)) - 1.0], np.clip(np.asarray(rates) / self.max_rate, -1.0, 1.0)])

    def __call__(self, pos, quat, vel, omega) -> np.ndarray:
        pos, quat, vel = (np.asarray(v, np.float64) for v in (pos, quat, vel))
        if not np.all(np.isfinite(quat)) or np.linalg.norm(quat) < 0.5:
            return self._action(0.9 * self.hover, np.zeros(3))
        if self.target is None and np.all(np.isfinite(pos)):
            self.target = pos.copy()
        a = np.zeros(3)
        if self.target is not None and np.all(np.isfinite(pos)):
            a += self.kp * (self.target - pos)
        if np.all(np.isfinite(vel)):
            a -= self.kd * vel
        a[:2] = np.clip(a[:2], -3.0, 3.0)
        a[2] = np.clip(a[2], -4.0, 4.0)
        f = a + np.array([0.0, 0.0, G])
        horiz = np.linalg.norm(f[:2])
        if horiz > f[2] * math.tan(self.max_tilt):
            f[:2] *= f[2] * math.tan(self.max_tilt) / max(horiz, 1e-9)
        q = quat / np.linalg.norm(quat)
        w, x, y, z = q
        r = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                      [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                      [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
        zb = r[:, 2]
        e = r.T @ np.cross(zb, f / np.linalg.norm(f))  # body-frame axis turning body z toward f
        rates = np.array([self.k_att * e[0], self.k_att * e[1], 0.0])
        thrust = self.hover * float(f @ zb) / G
        return self._action(thrust, rates)

"""Sensor guard: tells a non-finite or a stuck (frozen) state channel, and gives the backup the best
estimate left for it instead of nothing.

A channel component is
- non-finite: NaN or inf;
- stuck: bit-identical for STUCK_SAMPLES consecutive samples while some other component changed (so a
  state read twice, or a vehicle at rest on a noise-free simulator, counts nothing). Exact 0.0 and +-1.0
  never count: a noise-free simulator holds x, y, yaw and a level quaternion there exactly.
  STUCK_SAMPLES from the platform's estimator noise (tests/data/hover_bundle/platform.toml,
  hardware/*.toml [noise]: position_noise_std 0.001 m, velocity_noise_std 0.002 m/s,
  angular_velocity_noise_std 0.002 rad/s, from Learning to Fly in Seconds): a float32 reading near 1 m
  has a step of 1.2e-7 m, so two noisy readings agree with probability about 1.2e-7 / (0.001 * sqrt(4 pi))
  = 3e-5; five in a row (four repeats) about 1e-18 per component and sample: never in a flight. The window is
  also at least STUCK_SECONDS (30 periods at 100 Hz), for links that refresh a channel slower than the loop.

Once bad, a component stays bad (the loop has handed over to the backup for good), and is estimated
from the others, one control period ``dt`` at a time:
- position: the last estimate plus the velocity times dt (dead reckoning);
- velocity: the position's difference, low-passed (alpha VEL_ALPHA), or the last estimate held;
- quaternion (any component bad): the last estimate turned by the body rates over dt;
- body rates: the quaternion's difference, low-passed, or the last estimate held.
The C twin is in export/crazyflie/edgectl_controller.c.in (sensorGuard); keep them together.
"""
from __future__ import annotations

import numpy as np

STUCK_SAMPLES = 5
# ... and never less than STUCK_SECONDS of control periods: a link that refreshes one channel slower than the loop
# runs (a MAVLink LOCAL_POSITION_NED stream the autopilot does not raise to the 200 Hz edgectl asks for: its rate is
# the autopilot's stream setting, e.g. ArduPilot's SRx_POSITION, not checked here against a real one) repeats it bit
# for bit between messages; 0.3 s tells apart any stream >= 4 Hz (tests/test_sensor_guard.py, a 5 Hz stream).
STUCK_SECONDS = 0.3
VEL_ALPHA = 0.2
RATE_ALPHA = 1.0
SLICES = {"pos": slice(0, 3), "quat": slice(3, 7), "vel": slice(7, 10), "omega": slice(10, 13)}
NAMES = [f"{c}[{i}]" for c, s in SLICES.items() for i in range(s.stop - s.start)]


def _qmul(a, b):
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return np.array([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw])


class SensorGuard:
    def __init__(self, dt: float, stuck_samples: int | None = None):
        n = stuck_samples if stuck_samples is not None else max(STUCK_SAMPLES, int(np.ceil(STUCK_SECONDS / dt - 1e-9)))
        self.dt, self.n = float(dt), int(n)
        self.prev_raw: np.ndarray | None = None
        self.count = np.zeros(13, int)
        self.bad = np.zeros(13, bool)
        self.est: np.ndarray | None = None
        self.reason: str | None = None

    def update(self, pos, quat, vel, omega):
        """Returns (pos, quat, vel, omega) to fly the backup on, and a reason once any component is bad
        (None while all are good; then the state is returned as given)."""
        x = np.concatenate([np.asarray(v, np.float64).reshape(-1) for v in (pos, quat, vel, omega)])
        fin = np.isfinite(x)
        if self.prev_raw is not None:
            p = self.prev_raw
            moved = np.any(fin & np.isfinite(p) & (x != p))
            if moved:
                same = (x == p) & (x != 0.0) & (np.abs(x) != 1.0)
                self.count = np.where(same, self.count + 1, 0)
                self.bad |= self.count >= self.n - 1
        self.prev_raw = x.copy()
        self.bad |= ~fin
        if self.reason is None and self.bad.any():
            which = [NAMES[i] for i in np.flatnonzero(self.bad)]
            kind = "not finite" if (~fin).any() else f"stuck (bit-identical for {self.n} samples)"
            self.reason = f"sensor: {', '.join(which)} {kind}: the backup flies on the last good estimate"
        if not self.bad.any() or self.est is None:
            self.est = np.where(fin, x, 0.0) if self.est is None else x
            if self.bad.any():  # bad from the first sample: nothing to hold; quaternion level
                self.est[3:7] = np.where(self.bad[3:7], [1.0, 0.0, 0.0, 0.0], self.est[3:7])
            return (pos, quat, vel, omega) if not self.bad.any() else self._split(self.est), self.reason
        e, dt, b = self.est, self.dt, self.bad
        out = np.where(b, e, x)
        # velocity first (position dead-reckons with it)
        for i in range(3):
            if b[7 + i]:
                out[7 + i] = e[7 + i] + VEL_ALPHA * ((x[i] - e[i]) / dt - e[7 + i]) if not b[i] else e[7 + i]
        for i in range(3):
            if b[i]:
                out[i] = e[i] + out[7 + i] * dt
        if b[3:7].any():
            q = e[3:7]
            q = q + 0.5 * dt * _qmul(q, np.array([0.0, *(out[10:13] if not b[10:13].any() else e[10:13])]))
            out[3:7] = q / np.linalg.norm(q)
        elif b[10:13].any():
            dq = _qmul(e[3:7] * np.array([1.0, -1.0, -1.0, -1.0]), x[3:7])
            w = 2.0 * np.sign(dq[0] or 1.0) * dq[1:] / dt
            for i in range(3):
                if b[10 + i]:
                    out[10 + i] = e[10 + i] + RATE_ALPHA * (w[i] - e[10 + i])
        self.est = out
        return self._split(out), self.reason

    @staticmethod
    def _split(x):
        return tuple(x[s].copy() for s in SLICES.values())

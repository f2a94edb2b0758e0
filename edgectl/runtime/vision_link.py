"""An avoid (vision) policy flown on a Crazyflie: camera frames in, velocity setpoints out, from a host such
as a Jetson or a laptop.

The avoid task's vehicle flies forward (+x) at a constant speed and tracks lateral (y) and vertical (z)
velocity commands with a 0.2 s lag: on a Crazyflie that is the firmware's own velocity controller (the
stock PID, stabilizer.controller = 1), fed world-frame velocity setpoints. The edgectl on-board app is
not involved: it flies motor-level policies, and this one commands velocities. The host runs the loop
at the contract's rate (20 Hz): state from the log stream, one camera frame, the observation
(edgectl.runtime.camera.build_observation), the policy on the chosen backend (onnxruntime, compiled C,
TFLite; not TensorRT, which edgectl has never run), one velocity setpoint.

Cameras (any edgectl.runtime.camera.CameraSource):
- OpenCVCamera: a V4L2/USB camera on the host (the vehicle flies blind to the host otherwise);
- SimCamera(field, spec): the training renderer looking at a numpy-sampled obstacle field (an AvoidSim,
  whose position fly_vision keeps at the one the vehicle reports), for a simulated Crazyflie (`edgectl
  sim-vehicle crazyflie`) or a real one in an empty room: the only way the run can also tell a collision.

Never silence: a state that is stale or not finite, a camera that fails or a non-finite action ends
the run by holding the last good position (position setpoints) and landing there.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .camera import AvoidSim, CameraSource, build_observation
from .loop import fixed_rate_ticks, timing_stats

STABILIZER_PID = 1  # stabilizer.controller of the firmware's cascaded PID (position / velocity modes)


@dataclass
class VisionReport:
    rate_hz: float
    ticks: int = 0
    crossed: bool = False
    collided: bool = False
    distance_m: float = 0.0  # along +x from the start of the field
    min_clearance_m: float | None = None  # with a field
    ended: str = ""
    period_error_ms: list = field(default_factory=list)
    compute_ms: list = field(default_factory=list)
    path: list = field(default_factory=list)  # (t, x, y, z, cmd_vy, cmd_vz)

    def summary(self) -> dict:
        return {"ticks": self.ticks, "rate_hz": self.rate_hz, "crossed": self.crossed, "collided": self.collided,
                "distance_m": self.distance_m, "min_clearance_m": self.min_clearance_m, "ended": self.ended,
                "period_error_ms": timing_stats(np.abs(self.period_error_ms).tolist()),
                "compute_ms": timing_stats(self.compute_ms)}


def _ramp(link, start, goal, speed: float, rate_hz: float, settle_s: float) -> None:
    """Position setpoints from start to goal at `speed`, then `settle_s` at goal."""
    start, goal = np.asarray(start, float), np.asarray(goal, float)
    n_ramp = max(1, int(math.ceil(np.linalg.norm(goal - start) / speed * rate_hz)))
    t0 = time.perf_counter()
    for k in range(n_ramp + int(settle_s * rate_hz)):
        p = start + min(1.0, (k + 1) / n_ramp) * (goal - start)
        link.send_position(*p)
        time.sleep(max(0.0, t0 + (k + 1) / rate_hz - time.perf_counter()))


def fly_vision(act, contract: dict, task: dict, link, camera: CameraSource, *, seconds: float = 15.0,
               lateral: float = 0.0, field: AvoidSim | None = None, takeoff_speed: float = 0.4,
               stale_s: float = 0.25) -> VisionReport:
    """Take off to (0, lateral, cruise height), fly the policy until the field is crossed (x >= its length), a
    collision (with `field`), a fault, or `seconds`; then hold and land. `link`: a
    firmware_bridge.crazyflie.bridge.CrazyflieLink; `act(obs (1, size)) -> (1, 2)`."""
    rate = float(contract["rate_hz"])
    rep = VisionReport(rate_hz=rate)
    s = link.next_state(timeout=2.0) or link.read_state()
    if s is None:
        raise ValueError(f"{link.uri}: no state from the vehicle before take-off")
    link.set_param("stabilizer.controller", STABILIZER_PID)
    link.arm(True)
    h = float(task["cruise_height"])
    _ramp(link, s.pos, (0.0, lateral, h), takeoff_speed, 50.0, 1.0)
    fwd, k_lat, k_vert = float(task["forward_speed"]), float(task["max_lateral_speed"]), float(task["max_vertical_speed"])
    prev = np.zeros(2, np.float32)
    last_good = np.array([0.0, lateral, h])
    try:
        for t, scheduled, start in fixed_rate_ticks(rate, seconds):
            s = link.read_state(max_age=stale_s)
            if s is None or not (np.all(np.isfinite(s.pos)) and np.all(np.isfinite(s.vel))):
                rep.ended = "state lost or not finite: hold and land"
                break
            pos, vel = np.asarray(s.pos, float), np.asarray(s.vel, float)
            last_good = pos.copy()
            rep.distance_m = max(rep.distance_m, float(pos[0]))
            if field is not None:
                field.pos = pos.copy()
                clear = field.clearance()
                rep.min_clearance_m = clear if rep.min_clearance_m is None else min(rep.min_clearance_m, clear)
                if clear <= 0.0:
                    rep.collided, rep.ended = True, "collision"
                    break
            if pos[0] >= float(task["length"]):
                rep.crossed, rep.ended = True, "crossed the field"
                break
            try:
                img = camera.read()
            except Exception as e:  # noqa: BLE001  a camera that fails ends the flight, it does not crash it
                rep.ended = f"camera failed ({e}): hold and land"
                break
            obs = build_observation(contract, img, vel[1:3], float(pos[2]), prev)
            a = np.asarray(act(obs[None]), np.float64).reshape(-1)[:2]
            if not np.all(np.isfinite(a)):
                rep.ended = f"policy returned {a}: hold and land"
                break
            a = np.clip(a, -1.0, 1.0)
            link.send_velocity(fwd, a[0] * k_lat, a[1] * k_vert)
            prev = a.astype(np.float32)
            rep.ticks += 1
            rep.period_error_ms.append(1e3 * (start - scheduled))
            rep.compute_ms.append(1e3 * (time.perf_counter() - start))
            rep.path.append((t, *(float(v) for v in pos), float(a[0] * k_lat), float(a[1] * k_vert)))
        else:
            rep.ended = "time"
    finally:
        camera.close()
        # stop where we are now, then land there
        try:
            s = link.read_state()
            if s is not None and np.all(np.isfinite(s.pos)):
                last_good = np.asarray(s.pos, float)
            _ramp(link, last_good, last_good, 1.0, 50.0, 1.0)
            # 1 s at the floor: the position loop lags a 0.4 m/s descent by ~10 cm, and the motors stop after it
            _ramp(link, last_good, (last_good[0], last_good[1], 0.03), takeoff_speed, 50.0, 1.0)
        finally:
            link.stop()
    return rep

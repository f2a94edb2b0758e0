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

import numpy as np

from .camera import AvoidSim, CameraSource, build_observation
from .loop import fixed_rate_ticks, frozen_heap
from .protocol import State
from .report import BACKUP, NOMINAL, STOPPED, FlightReport

STABILIZER_PID = 1  # stabilizer.controller of the firmware's cascaded PID (position / velocity modes)


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
               stale_s: float = 0.25, log=None) -> FlightReport:
    """Take off to (0, lateral, cruise height), fly the policy until the field is crossed (x >= its length), a
    collision (with `field`), a fault, or `seconds`; then hold and land. `link`: a
    firmware_bridge.crazyflie.bridge.CrazyflieLink; `act(obs (1, size)) -> (1, 2)`. The report's outcome: crossed,
    collided, distance_m, min_clearance_m, ended (why the policy stopped flying). `log`: a FlightLog, a row per
    tick (the clearance as robustness when the field is known); its path: (t, x, y, z, cmd_vy, cmd_vz) per tick."""
    with frozen_heap():
        return _fly_vision(act, contract, task, link, camera, seconds=seconds, lateral=lateral, field=field,
                           takeoff_speed=takeoff_speed, stale_s=stale_s, log=log)


def _fly_vision(act, contract, task, link, camera, *, seconds, lateral, field, takeoff_speed, stale_s,
                log) -> FlightReport:
    rate = float(contract["rate_hz"])
    rep = FlightReport(vehicle="avoid", rate_hz=rate)
    out = rep.outcome
    out.update(crossed=False, collided=False, distance_m=0.0, min_clearance_m=None, ended="")
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
            state, clear, a, end_to = None, math.nan, None, None
            if s is None or not (np.all(np.isfinite(s.pos)) and np.all(np.isfinite(s.vel))):
                out["ended"], end_to = "state lost or not finite: hold and land", BACKUP
            else:
                pos, vel = np.asarray(s.pos, float), np.asarray(s.vel, float)
                state = State(s.t, pos, np.asarray(s.quat_wxyz, float), vel, np.asarray(s.omega, float))
                last_good = pos.copy()
                out["distance_m"] = max(out["distance_m"], float(pos[0]))
                if field is not None:
                    field.pos = pos.copy()
                    clear = field.clearance()
                    out["min_clearance_m"] = clear if out["min_clearance_m"] is None else min(out["min_clearance_m"], clear)
                    if clear <= 0.0:
                        out["collided"], out["ended"], end_to = True, "collision", STOPPED
                if end_to is None and pos[0] >= float(task["length"]):
                    out["crossed"], out["ended"], end_to = True, "crossed the field", STOPPED
                if end_to is None:
                    try:
                        img = camera.read()
                    except Exception as e:  # noqa: BLE001  a camera that fails ends the flight, it does not crash it
                        img, out["ended"], end_to = None, f"camera failed ({e}): hold and land", BACKUP
                if end_to is None:
                    obs = build_observation(contract, img, vel[1:3], float(pos[2]), prev)
                    a = np.asarray(act(obs[None]), np.float64).reshape(-1)[:2]
                    if not np.all(np.isfinite(a)):
                        out["ended"], end_to = f"policy returned {a}: hold and land", BACKUP
            if end_to is not None:  # a tick too (logged: the last row says why); the hold-and-land after it is the firmware's
                rep.events.append((round(t, 4), rep.final_mode, end_to, out["ended"]))
                rep.final_mode = end_to
                rep.tick(end_to, 1e3 * (start - scheduled), 1e3 * (time.perf_counter() - start))
                if log is not None:
                    log.write(t, rep.period_error_ms[-1], rep.compute_ms[-1], end_to, out["ended"], state, None, None,
                              clear, "" if s is not None else f"no state for {1e3 * stale_s:.0f} ms")
                break
            a = np.clip(a, -1.0, 1.0)
            link.send_velocity(fwd, a[0] * k_lat, a[1] * k_vert)
            prev = a.astype(np.float32)
            rep.tick(NOMINAL, 1e3 * (start - scheduled), 1e3 * (time.perf_counter() - start))
            rep.path.append((t, *(float(v) for v in pos), float(a[0] * k_lat), float(a[1] * k_vert)))
            if log is not None:
                log.write(t, rep.period_error_ms[-1], rep.compute_ms[-1], NOMINAL, "", state, None, a, clear)
        else:
            out["ended"] = "time"
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

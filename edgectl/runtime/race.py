"""`edgectl run` of a race bundle: an RC car driven through the bundle's checkpoints at the contract rate.

Three parts, kept apart as in the quadrotor runtime:
- `LapTracker`: the numpy twin of car_tasks' lap bookkeeping (projection on the demonstration lap, arc
  progress, the next checkpoint) and of its actor observation. tests/test_race_runtime.py holds it equal
  to the JAX task, so the car is fed exactly the layout it was trained on.
- car sources: `SimCar` in-process (the numba twin of the training dynamics, true pose), and `SerialCar`,
  a car behind the framed serial protocol (firmware_bridge/rccar, a real MCU or `edgectl sim-vehicle
  rc-car`), whose pose is dead reckoning from its telemetry (wheel speed and gyro yaw rate), started on the
  start/finish line: put the car there, facing along the lap, before `edgectl run`.
- `drive`: the fixed-rate loop. A stale or NaN state, a policy that fails or returns NaN, or a car that
  leaves the corridor (by the tracker's pose) hands over to the backup (straight wheels, brake to a
  standstill), which latches; a car whose link goes silent is stopped by its own command watchdog
  (PROTOCOL.md), and the loop keeps sending the brake until the end.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgectl.tracks import Track, extract_checkpoints

from .report import BACKUP, NOMINAL, FlightReport
from .uri import UriError, parse_uri

CAR_ADAPTERS = ("sim", "serial")  # edgectl/runtime/uri.py: what an rc-car bundle drives

BRAKE = np.array([0.0, -1.0])  # the backup's command: straight wheels, full brake (the car has no reverse)


@dataclass(frozen=True)
class CarPose:
    t: float  # host time.monotonic() of the reading
    x: float  # m, track frame
    y: float
    yaw: float  # rad, counter-clockwise from x
    speed: float  # m/s, body x
    yaw_rate: float  # rad/s


class LapTracker:
    """Where the car is on the lap, which checkpoint is next, and the actor observation that follows."""

    def __init__(self, track: Track, contract: dict, car_length: float, car_width: float):
        tr = contract.get("track") or {}
        if "checkpoint_spacing_m" not in tr or "checkpoints_observed" not in tr:
            raise ValueError("contract: not a race contract (no track.checkpoint_spacing_m / checkpoints_observed)")
        self.track = track
        self.k = int(tr["checkpoints_observed"])
        self.cps = extract_checkpoints(track, float(tr["checkpoint_spacing_m"]))
        self.half_l, self.half_w = 0.5 * car_length, 0.5 * car_width
        fields = {f["name"]: f for f in contract["observation"]["fields"]}
        self.scan_beams = int(fields["range_scan"]["size"]) if "range_scan" in fields else 0
        if self.scan_beams:
            i = [f["name"] for f in contract["observation"]["fields"]].index("range_scan")
            start = sum(f["size"] for f in contract["observation"]["fields"][:i])
            self.scan_range = 2.0 * float(contract["observation"]["normalization"]["offset"][start])
        self.size = int(contract["observation"]["size"])
        self.idx = 0
        self.prog = self.cp_prog = 0.0
        self.cp = 0
        self.passed = 0

    # --- bookkeeping (car_tasks.place / step) ------------------------------------------------------
    def start(self, x: float, y: float) -> None:
        d2 = np.sum((self.track.points - [x, y]) ** 2, axis=1)
        self.idx = int(np.argmin(d2))
        self.prog = self.idx * self.track.spacing
        self.cp, self.cp_prog = self._next_checkpoint(self.idx, self.prog)
        self.passed = 0

    def _next_checkpoint(self, idx: int, prog: float) -> tuple[int, float]:
        k = int(np.searchsorted(self.cps, idx, side="right")) % len(self.cps)
        gap = ((int(self.cps[k]) - idx) % self.track.n) * self.track.spacing
        return k, prog + (gap if gap > 0 else self.track.length)

    def project(self, idx: int, x: float, y: float) -> tuple[int, float, float]:
        """Nearest lap point in the training's search window around `idx`: (idx, along, lateral) in m."""
        tr = self.track
        cand = (idx + np.arange(-4, 9)) % tr.n
        d2 = (tr.points[cand, 0] - x) ** 2 + (tr.points[cand, 1] - y) ** 2
        j = int(cand[int(np.argmin(d2))])
        c, s = math.cos(tr.heading[j]), math.sin(tr.heading[j])
        dx, dy = x - tr.points[j, 0], y - tr.points[j, 1]
        return j, dx * c + dy * s, -dx * s + dy * c

    def update(self, prev_x: float, prev_y: float, x: float, y: float) -> bool:
        """Advance from the previous position to this one; True when a checkpoint was passed."""
        tr = self.track
        idx, along, _ = self.project(self.idx, x, y)
        _, along0, _ = self.project(self.idx, prev_x, prev_y)
        di = (idx - self.idx + tr.n // 2) % tr.n - tr.n // 2
        self.prog += di * tr.spacing + along - along0
        self.idx = idx
        if self.prog >= self.cp_prog:
            nxt = (self.cp + 1) % len(self.cps)
            gap = ((int(self.cps[nxt]) - int(self.cps[self.cp])) % tr.n) * tr.spacing
            self.cp_prog += gap if gap > 0 else tr.length
            self.cp = nxt
            self.passed += 1
            return True
        return False

    @property
    def laps(self) -> int:
        return self.passed // len(self.cps)

    def excess(self, x: float, y: float, yaw: float) -> float:
        """How far (m) the car's farthest corner is outside the corridor (> 0: it has hit the edge)."""
        _, _, lat = self.project(self.idx, x, y)
        dh = math.atan2(math.sin(yaw - self.track.heading[self.idx]), math.cos(yaw - self.track.heading[self.idx]))
        reach = abs(lat) + self.half_l * abs(math.sin(dh)) + self.half_w * abs(math.cos(dh))
        return reach - self.track.half_width

    # --- the actor's observation (car_tasks._fields) -----------------------------------------------
    def observation(self, pose: CarPose, prev_action) -> np.ndarray:
        tr = self.track
        ks = (self.cp + np.arange(self.k)) % len(self.cps)
        c, s = math.cos(pose.yaw), math.sin(pose.yaw)
        dx, dy = tr.points[self.cps[ks], 0] - pose.x, tr.points[self.cps[ks], 1] - pose.y
        rel = np.stack([dx * c + dy * s, -dx * s + dy * c], axis=-1).reshape(-1)
        dh = tr.heading[self.cps[self.cp]] - pose.yaw
        parts = [[pose.speed, pose.yaw_rate], np.asarray(prev_action, float).reshape(2), rel, [math.cos(dh), math.sin(dh)]]
        if self.scan_beams:
            parts.append(self.range_scan(pose))
        obs = np.concatenate([np.asarray(p, float) for p in parts]).astype(np.float32)
        assert obs.size == self.size, (obs.size, self.size)
        return obs

    def range_scan(self, pose: CarPose) -> np.ndarray:
        tr = self.track
        angles = np.linspace(-math.pi / 2, math.pi / 2, self.scan_beams)
        ts = np.arange(0.25, self.scan_range + 1e-6, 0.25)
        span = int(math.ceil(self.scan_range / tr.spacing))
        near = (self.idx + np.arange(-span, span + 1, 2)) % tr.n
        bx = pose.x + np.cos(pose.yaw + angles)[:, None] * ts[None, :]
        by = pose.y + np.sin(pose.yaw + angles)[:, None] * ts[None, :]
        d2 = (bx[..., None] - tr.points[near, 0]) ** 2 + (by[..., None] - tr.points[near, 1]) ** 2
        outside = np.min(d2, axis=-1) > tr.half_width ** 2
        first = np.argmax(outside, axis=-1)
        return np.where(np.any(outside, axis=-1), ts[first], self.scan_range)


# --- car sources -----------------------------------------------------------------------------------
class SimCar:
    """In-process car: the numba twin of the training dynamics (nominal platform), stepped once per tick by
    the command sent. The pose is the true one."""
    kind = "in-process simulator"

    def __init__(self, platform: str, x: float, y: float, yaw: float):
        from edgectl.plant.car_model import load_dynamics

        self.dyn, self.params, self.model = load_dynamics(platform)
        self.names = tuple(self.dyn.STATE_NAMES)
        self.state = np.asarray(self.dyn.initial_state(x, y, yaw), dtype=np.float64)
        self.dt = float(self.params[list(self.dyn.PARAM_NAMES).index("dt")])
        self._i = {n: self.names.index(n) for n in ("x", "y", "yaw", "vx", "yaw_rate")}

    def read(self) -> CarPose:
        s, i = self.state, self._i
        return CarPose(time.monotonic(), float(s[i["x"]]), float(s[i["y"]]), float(s[i["yaw"]]),
                       float(s[i["vx"]]), float(s[i["yaw_rate"]]))

    def send(self, action: np.ndarray) -> None:
        self.state = np.asarray(self.dyn.step(self.state, np.asarray(action, np.float64), self.params), np.float64)

    def close(self) -> None:
        pass


class SerialCar:
    """A car behind the framed serial protocol; pose by dead reckoning from its telemetry, integrated on every
    telemetry frame with the car's own clock (the midpoint heading over each interval)."""
    kind = "serial (odometry from telemetry)"

    # Side slip: the wheel speed is body x only, and a car sliding through a corner moves sideways too (up to
    # 0.5 m/s on the oval; 20 cm of drift in 4 s without it). The IMU's lateral acceleration gives it,
    # dvy/dt = a_y - vx r, with the accelerometer's bias taken at standstill (the car waits on the line) and
    # vy reset whenever the car stands. A leak toward zero instead cost more than it saved (4 s, 25 cm).

    def __init__(self, url: str, x: float, y: float, yaw: float, *, connect_timeout: float = 2.0):
        from firmware_bridge.rccar.bridge import RcCarLink, RcCarLinkError

        self._lock = threading.Lock()
        self._pose = None
        self._start = (x, y, yaw)
        self._t_car = None
        self._vy = 0.0
        self._bias, self._bias_n = 0.0, 0
        self.link = RcCarLink(url, connect_timeout=connect_timeout, arm=False)
        self.link.on_telemetry = self._integrate
        try:
            self.link.connect()
            self.link.arm()
        except RcCarLinkError as e:
            self.link.close(stop_car=False)
            raise ValueError(str(e)) from None

    def _integrate(self, st) -> None:
        with self._lock:
            if self._t_car is None:
                x, y, yaw = self._start
            else:
                x, y, yaw = self._pose.x, self._pose.y, self._pose.yaw
                dt = st.t_car - self._t_car
                standing = abs(st.speed) < 0.02 and abs(st.yaw_rate) < 0.02
                if standing:
                    self._vy = 0.0
                    self._bias_n += 1
                    self._bias += (st.accel[1] - self._bias) / self._bias_n
                elif 0.0 < dt < 0.5:  # a longer gap (link cut) cannot be bridged by holding the last reading
                    self._vy += (st.accel[1] - self._bias - st.speed * st.yaw_rate) * dt
                    mid = yaw + 0.5 * st.yaw_rate * dt
                    c, s = math.cos(mid), math.sin(mid)
                    x += (st.speed * c - self._vy * s) * dt
                    y += (st.speed * s + self._vy * c) * dt
                    yaw += st.yaw_rate * dt
            self._t_car = st.t_car
            self._pose = CarPose(st.t, x, y, yaw, st.speed, st.yaw_rate)

    def read(self) -> CarPose | None:
        with self._lock:
            return self._pose

    def send(self, action: np.ndarray) -> None:
        from firmware_bridge.rccar.bridge import RcCarLinkError
        try:
            self.link.send_command(float(action[0]), float(action[1]))
        except RcCarLinkError:
            pass  # a dead port: the car's command watchdog brakes it; the loop's stale-state watchdog takes over

    def close(self) -> None:
        try:
            self.link.close(stop_car=True)
        except Exception:  # noqa: BLE001 - closing a car that is gone must not hide the run's report
            self.link.close(stop_car=False)


def open_car(uri: str, platform: str, start: tuple[float, float, float]):
    """sim:// (in-process), or a serial port / pyserial URL of a car speaking firmware_bridge/rccar/PROTOCOL.md:
    /dev/ttyACM0, /dev/pts/N (`edgectl sim-vehicle rc-car`), socket://127.0.0.1:5760."""
    parsed = parse_uri(uri)
    if parsed.for_vehicle(CAR_ADAPTERS, "an rc-car bundle") == "serial":
        return SerialCar(uri, *start)
    if parsed.rest:
        raise UriError(f"--uri {uri}: an rc-car bundle starts on its track: sim:// takes no start or seed")
    return SimCar(platform, *start)


# --- the loop --------------------------------------------------------------------------------------
def drive(car, tracker: LapTracker, act: Callable[[np.ndarray], np.ndarray], *, rate_hz: float, seconds: float,
          realtime: bool = True, stale_s: float = 0.1, laps: int | None = None, lost_m: float = 0.25,
          log=None) -> FlightReport:
    """Drive for `seconds` (or until `laps` laps are done, then brake). `act(obs (1, size)) -> (1, 2)`.

    Touching the corridor's edge is counted (`edge_contacts`), as training counts a collision; a car more than
    `lost_m` outside it (by the pose the host has) is lost or off course, and the backup brakes it. `log`: an
    edgectl.runtime.flightlog.FlightLog, a row per tick (the reference is the next checkpoint, the robustness the
    distance inside the corridor's edge). The report's outcome: laps, lap_times_s, checkpoints_passed,
    edge_contacts, max_corridor_excess_m; its path: (t, x, y, yaw, speed, steer, throttle, mode) per tick with a
    pose."""
    from .loop import frozen_heap
    with frozen_heap(realtime):
        return _drive(car, tracker, act, rate_hz=rate_hz, seconds=seconds, realtime=realtime, stale_s=stale_s,
                      laps=laps, lost_m=lost_m, log=log)


def _drive(car, tracker, act, *, rate_hz, seconds, realtime, stale_s, laps, lost_m, log) -> FlightReport:
    from .flightlog import car_state
    from .loop import fixed_rate_ticks

    rep = FlightReport(vehicle="rc car", rate_hz=rate_hz)
    lap_times, checkpoints, edge_contacts, max_excess = [], 0, 0, -math.inf
    mode, prev_action, prev_xy, last_lap_t, last_good, touching = NOMINAL, np.zeros(2), None, 0.0, 0.0, False
    link_down = False

    def switch(t, reason):
        nonlocal mode
        if mode != BACKUP:
            rep.events.append((round(t, 4), mode, BACKUP, reason))
            mode = BACKUP

    deadline = time.monotonic() + 5.0
    while car.read() is None:  # a serial car's first telemetry
        if time.monotonic() > deadline:
            raise ValueError("no telemetry from the car within 5 s")
        time.sleep(0.01)
    tracker.start(car.read().x, car.read().y)
    for t, scheduled, start in fixed_rate_ticks(rate_hz, seconds, realtime):
        p = car.read()
        fresh = p is not None and (not realtime or time.monotonic() - p.t <= stale_s)
        finite = p is not None and all(math.isfinite(v) for v in (p.x, p.y, p.yaw, p.speed, p.yaw_rate))
        link_event, ex = "", math.nan
        if fresh and finite:
            last_good = t
            if link_down:
                link_event, link_down = "back", False
            if prev_xy is not None and tracker.update(*prev_xy, p.x, p.y):
                checkpoints += 1
                if tracker.passed % len(tracker.cps) == 0:
                    lap_times.append(round(t - last_lap_t, 3))
                    last_lap_t = t
            prev_xy = (p.x, p.y)
            ex = tracker.excess(p.x, p.y, p.yaw)
            max_excess = max(max_excess, ex)
            if ex > 0.0 and not touching:
                edge_contacts += 1
            touching = ex > 0.0
            if ex > lost_m:
                switch(t, f"{ex:.2f} m outside the corridor (more than {lost_m:g} m: off course)")
        elif p is None:  # nothing from the car (a link that went silent): no pose to fly the policy on
            switch(t, "no state from the car (link silent)")
            link_event = "" if link_down else "silent"
            link_down = True
        elif not finite:
            switch(t, "state is not finite")
        elif t - last_good > stale_s:
            switch(t, f"no fresh state for {1000 * (t - last_good):.0f} ms")
        if p is not None and not fresh and not link_down:
            link_event, link_down = f"stale {1000 * (time.monotonic() - p.t):.0f} ms", True
        if laps is not None and tracker.laps >= laps:
            switch(t, f"{laps} laps done")
        action = BRAKE
        if mode == NOMINAL:
            try:
                a = np.asarray(act(tracker.observation(p, prev_action)[None, :]), float).reshape(-1)[:2]
                if not np.all(np.isfinite(a)):
                    raise ValueError(f"policy returned {a}")
                action = np.clip(a, -1.0, 1.0)
            except Exception as e:  # noqa: BLE001 - any policy failure hands over to the backup
                switch(t, f"policy failed: {e}")
        car.send(action)
        prev_action = action if mode == NOMINAL else np.zeros(2)
        compute_ms = 1e3 * (time.perf_counter() - start)
        rep.tick(mode, 1e3 * (start - scheduled) if realtime else None, compute_ms)
        if p is not None:
            rep.path.append((round(t, 4), p.x, p.y, p.yaw, p.speed, float(action[0]), float(action[1]), mode))
        if log is not None:
            cp = tracker.track.points[tracker.cps[tracker.cp]]
            log.write(t, 1e3 * (start - scheduled), compute_ms, mode, rep.event_at(t),
                      car_state(p.x, p.y, p.yaw, p.speed, p.yaw_rate) if p is not None and fresh and finite else None,
                      (float(cp[0]), float(cp[1]), 0.0), action, -ex, link_event)
    rep.final_mode = mode
    rep.outcome = {"laps": len(lap_times), "lap_times_s": lap_times, "checkpoints_passed": checkpoints,
                   "edge_contacts": edge_contacts,
                   "max_corridor_excess_m": max_excess if math.isfinite(max_excess) else None}
    return rep

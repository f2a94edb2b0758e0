"""Link cut at random instants: the vehicle's own backup takes over, it never leaves the safe set, and
both logs record it.

For each vehicle, N flights (fixed seed): take off to 1 m, hover under `edgectl run`'s ControlLoop,
cut the link both ways at a random instant of a 10 s hover, then let the vehicle alone until its backup
has landed it. Vehicles, each simulated in this process in lockstep with the host loop (faster than
real time; the packets still go through the vehicle's real receive path and its fault injection):
- crazyflie: CrazyflieSim carrying the hover bundle as its on-board app (the generated app's C, controller,
  policy, backup and monitors, compiled for this host: firmware_bridge/sim/crazyflie/host_app.py); the host
  streams position setpoints as CRTP packets. The app's link watchdog (onboard.LINK_TIMEOUT_S) hands over to the backup.
- mavlink: the PX4-like SimVehicle flown by the host's policy through SET_ACTUATOR_CONTROL_TARGET
  messages (with the host's shield); its motor-stream watchdog (actuator_timeout) runs the backup.
In both, the host's keep-alive (edgectl.runtime.keepalive) repeats the newest command before every
2 ms physics step, as the real links' keep-alive threads do; the pass mark is a takeover within one
control period (10 ms) of the cut in every flight.

Per vehicle it prints the takeover latency from the cut instant and from the watchdog threshold
crossing (p50/max), the minimum robustness of the platform's [safety] specs (hardware/
crazyflie_2_1.toml, evaluated offline with edgectl.safety.stl over the vehicle's true trajectory; the
reference is the host's until the takeover, then the backup's hold point and descent target), how
many flights left the safe set (robustness < 0), and how many flights' logs recorded the event (the
vehicle's: edgectl.fault = 4 / the failsafe; the host's flight log: a watchdog row within 20 ms of the
cut).

    python3 bench/link_cut.py [--runs 100] [--seed 0] [--vehicle crazyflie|mavlink|both] [--vehicle-platform FILE] [--json]
    python3 bench/link_cut.py --jitter [--seconds 30]   # host setpoint inter-arrival at the vehicle, udp://
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgectl.bundle import load_bundle  # noqa: E402
from edgectl.platforms import parse_platform  # noqa: E402
from edgectl.runtime.flightlog import FlightLog, read_log  # noqa: E402
from edgectl.runtime.links import State  # noqa: E402
from edgectl.runtime.loop import ControlLoop, LoopConfig  # noqa: E402
from edgectl.safety.backup import PHASES, BackupController  # noqa: E402

BUNDLE = ROOT / "tests" / "data" / "hover_bundle"
REF = np.array([0.0, 0.0, 1.0])
RATE_HZ = 100.0
HOVER_S = 10.0  # the host loop's flight; the cut falls in [0.5, HOVER_S - 0.5]
AFTER_S = 12.0
from edgectl.runtime.keepalive import PERIOD_S as KEEPALIVE_PERIOD_S  # noqa: E402  # vehicle alone after the host gave up: backup hold 5 s + 1 m at 0.3 m/s + margin


def _platform(bundle):
    path = bundle.path / "platform.toml"
    return parse_platform(path.read_bytes(), path)


def _specs(platform):
    from edgectl.safety.shield import ShieldConfig
    from edgectl.safety.signals import QUADROTOR_SIGNALS
    from edgectl.safety.stl import parse
    return [parse(text, QUADROTOR_SIGNALS) for text in ShieldConfig.from_platform(platform).specs]


def _backup_target(backup, host_ref):
    """The position the backup flies to now (hold point; during descent the descending target)."""
    cs = backup.state
    if cs is None:
        return host_ref
    hold = np.asarray(cs["hold"], float)
    if not np.all(np.isfinite(hold)):
        return host_ref
    g = backup.gains
    if PHASES[int(cs["phase"])] in ("descend", "landed"):
        z = max(hold[2] - g.descent_rate * float(cs["t_phase"]), g.ground_z) if PHASES[int(cs["phase"])] == "descend" else g.ground_z
        return np.array([hold[0], hold[1], z])
    return hold


class Trace:
    """The vehicle's true state every control period and the reference the safe set is taken around."""

    def __init__(self):
        self.rows = []

    def add(self, x, ref):
        self.rows.append((x[0:3].copy(), x[3:7].copy(), x[7:10].copy(), x[10:13].copy(), np.asarray(ref, float).copy()))

    def min_robustness(self, specs, dt) -> float:
        from edgectl.safety.signals import signals_from_state
        pos, quat, vel, omega, ref = (np.stack(c) for c in zip(*self.rows))
        sig = signals_from_state(pos, quat, vel, omega, ref)
        return float(min(np.min(f.robustness(sig, dt)) for f in specs))


# --- Crazyflie: the app on the vehicle, the host streams references ------------------------------
class LockstepCrazyflie:
    """The host's view of a CrazyflieSim in this process, one control period per tick: references go in
    as CRTP position setpoints through the vehicle's receive path (where the injected cut drops them),
    repeated before every 2 ms physics step as CrazyflieOnboardLink's keep-alive repeats them; state and
    app status come back only while the link is up, as the log stream would."""
    onboard = True

    def __init__(self, sim, trace: Trace, cut_in_hover_s: float):
        self.sim, self.trace, self.name = sim, trace, "crazyflie (lockstep)"
        self.cut_in_hover_s = cut_in_hover_s
        self.link = sim.open_link(lambda raw: None, "bench")
        from firmware_bridge.crazyflie.onboard import LINK_PARAM, LINK_TIMEOUT_S
        sim.set_param(LINK_PARAM, round(1000 * LINK_TIMEOUT_S))  # as CrazyflieOnboardLink does with its keep-alive
        from edgectl.platforms import rotor_model
        self.thrust_shape = tuple(rotor_model(sim.platform)["thrust_shape"])
        self.host_ref = REF
        self.took = self.threshold = None
        self.vehicle_logged = False
        self._packet_now = None  # the newest setpoint packet, which the keep-alive repeats
        self._repeats = max(1, round(KEEPALIVE_PERIOD_S / sim.dt))

    def _packet(self, ref):
        import struct

        from firmware_bridge.crazyflie import crtp
        return crtp.packet(crtp.GENERIC_SETPOINT, 0, struct.pack("<Bffff", crtp.SP_POSITION, *(float(v) for v in ref), 0.0))

    def _period(self, keepalive: bool):
        """One control period of vehicle time, physics step by physics step, the keep-alive repeating
        the newest packet every KEEPALIVE_PERIOD_S (a host that stopped streaming repeats nothing)."""
        from firmware_bridge.crazyflie.onboard import FAULT_LINK
        sim, app = self.sim, self.sim.onboard
        n = max(1, round(1.0 / RATE_HZ / sim.dt))
        for k in range(n):
            if keepalive and k > 0 and k % self._repeats == 0 and self._packet_now is not None:
                self.link.send(self._packet_now)
            sim.advance(sim.dt)
            if self.took is None and app.fault == FAULT_LINK:
                self.took, self.threshold = app.fault_at, app.host_stamp + app.link_timeout_s
                self.vehicle_logged = sim.variables()["edgectl.fault"] == FAULT_LINK  # what its log block sends

    def tick(self, keepalive: bool = True):
        self._period(keepalive)
        app = self.sim.onboard
        # after the takeover the backup's target, even once landed and disengaged
        ref = self.host_ref if self.took is None else _backup_target(app.backup, self.host_ref)
        self.trace.add(self.sim.x, ref)

    def start(self, ref):
        """The take-off ControlLoop asks for (as CrazyflieOnboardLink.start); the cut is armed after it."""
        ref = np.asarray(ref, float)
        start = self.sim.x[0:3].copy()
        n = int(np.ceil(np.linalg.norm(ref - start) / 0.4 * RATE_HZ))
        for k in range(n + int(RATE_HZ)):
            self._packet_now = self._packet(start + min(1.0, (k + 1) / n) * (ref - start))
            self.link.send(self._packet_now)
            self._period(keepalive=True)
        self.t_loop0 = self.sim.t
        self.sim.cut_at = self.t_loop0 + self.cut_in_hover_s

    def send_reference(self, ref):
        self.host_ref = np.asarray(ref, float)
        self._packet_now = self._packet(ref)
        self.link.send(self._packet_now)
        self.tick()

    def read_state(self):
        if self.sim.link_cut():
            return None
        x = self.sim.measured()
        return State(time.monotonic(), x[0:3].copy(), x[3:7].copy(), x[7:10].copy(), x[10:13].copy())

    def vehicle_status(self):
        if self.sim.link_cut():
            return None
        a = self.sim.onboard
        return {"t": time.monotonic(), "engaged": int(a.engaged), "fault": a.fault, "steps": a.steps, "forces": a.forces.copy()}

    def forces_to_action(self, f):
        from edgectl.platforms import motor_for_fraction
        u = motor_for_fraction(np.clip(np.asarray(f, float), 0.0, 1.0), *self.thrust_shape)
        return np.clip(2.0 * u - 1.0, -1.0, 1.0)

    def stop(self):
        pass

    def close(self):
        pass


def run_crazyflie(cut_in_hover_s: float, *, bundle=None, policy=None, seed: int = 0, log_path=None,
                  vehicle_platform: str = "crazyflie_2_1") -> dict:
    """``policy``: the app compiled for this host (host_app.AppImage), built once for many runs;
    ``vehicle_platform``: the platform file the simulated vehicle flies."""
    from firmware_bridge.sim.crazyflie.host_app import AppImage
    from firmware_bridge.crazyflie.onboard import LINK_TIMEOUT_S
    from firmware_bridge.sim.crazyflie.sim_vehicle import CrazyflieSim
    bundle = bundle or load_bundle(BUNDLE)
    policy = policy or AppImage(bundle)
    platform = _platform(bundle)
    sim = CrazyflieSim(vehicle_platform, realtime=False, onboard_policy=policy, seed=seed)
    sim.set_param("stabilizer.controller", 6)
    trace = Trace()
    link = LockstepCrazyflie(sim, trace, cut_in_hover_s)
    log_path = Path(log_path or tempfile.mktemp(suffix=".csv", prefix="link_cut_cf_"))
    flog = FlightLog(log_path)
    loop = ControlLoop(link, None, bundle.contract, BackupController(platform),
                       LoopConfig(rate_hz=RATE_HZ, seconds=HOVER_S, realtime=False), log=flog, ref=tuple(REF))
    loop.run()
    flog.close()
    while sim.t < sim.cut_at + AFTER_S:  # nobody streams: the app lands the vehicle
        link.tick(keepalive=False)
    app = sim.onboard
    took, threshold = link.took, link.threshold if link.threshold is not None else app.host_stamp + LINK_TIMEOUT_S
    # the host reads the state after the tick's setpoint went out and the vehicle moved one period
    return _result("crazyflie", sim.cut_at, took, threshold, trace, _specs(platform), log_path, link.t_loop0 + 1.0 / RATE_HZ,
                   vehicle_logged=link.vehicle_logged, landed=app.backup.phase == "landed", link_drops=app.link_drops,
                   z_end=float(sim.x[2]))


# --- MAVLink: the host flies the motors, the vehicle's failsafe runs the backup -------------------
class LockstepMavlink:
    """The host's view of a SimVehicle in this process, one control period per tick: motor commands go in
    as SET_ACTUATOR_CONTROL_TARGET messages through the vehicle's message handler (dropped while the
    injected cut is on, as its receive path drops them); state comes back while the link is up. The
    host's keep-alive (MavlinkMotorLink's KeepAlive) is modelled: the newest message goes out again
    before each 2 ms physics tick of the period, while it is younger than the keep-alive's max age."""

    def __init__(self, v, trace: Trace):
        from edgectl.runtime.keepalive import MAX_AGE_S, PERIOD_S
        from firmware_bridge.sim.mavlink.sim_vehicle import MAIN_OFFBOARD
        if abs(v.phys.dt - PERIOD_S) > 1e-9:
            raise ValueError(f"LockstepMavlink repeats the host's command at each physics tick, as the keep-alive "
                             f"every {1e3 * PERIOD_S:g} ms: needs physics_hz={1 / PERIOD_S:g}, got {1 / v.phys.dt:g}")
        self.v, self.trace, self.name = v, trace, "mavlink (lockstep)"
        self._offboard = MAIN_OFFBOARD
        self.per_period = round(1.0 / (RATE_HZ * v.phys.dt))
        self.max_age_s = MAX_AGE_S
        self.sent = 0
        self.msg, self.sent_at = None, 0.0

    def _deliver(self, msg):
        v = self.v
        if v._lost():  # as the vehicle's receive path: nothing passes the cut
            v.counters["dropped_in"] += 1
        else:
            v._handle(msg)

    def tick(self, sent: bool = False):
        """One control period; `sent`: the host's own message went out at its start (no repeat then)."""
        v = self.v
        for k in range(self.per_period):
            if (k or not sent) and self.msg is not None and v.phys.t - self.sent_at <= self.max_age_s + 1e-9:
                self._deliver(self.msg)
            v.tick()
        ref = _backup_target(v.backup, REF) if v.backup_active else REF
        self.trace.add(v.phys.state, ref)

    def read_state(self):
        if self.v.link_cut():
            return None
        pos, vel, quat, omega = self.v.measured()
        return State(time.monotonic(), pos, quat, vel, omega)

    def send_action(self, a):
        v = self.v
        u = (np.clip(np.asarray(a, float), -1.0, 1.0) + 1.0) / 2.0
        self.msg = v.conn.mav.set_actuator_control_target_encode(int(v.phys.t * 1e6), 0, v.system_id, v.component_id,
                                                                  [float(c) for c in u] + [0.0] * 4)
        self.sent_at = v.phys.t
        self._deliver(self.msg)
        self.sent += 1
        if self.sent == 5 and not v.link_cut():  # as MavlinkMotorLink: a stream first, then offboard and arm
            v._set_mode(self._offboard, 0)
            v._arm(True, False)
        self.tick(sent=True)

    def stop(self):
        pass

    def close(self):
        pass


def run_mavlink(cut_in_hover_s: float, *, bundle=None, shield: bool = True, seed: int = 0, log_path=None,
                vehicle_platform: str = "crazyflie_2_1") -> dict:
    from firmware_bridge.sim.mavlink.sim_vehicle import SimVehicle
    from edgectl.plant import quadrotor as qd
    bundle = bundle or load_bundle(BUNDLE)
    platform = _platform(bundle)
    v = SimVehicle("udpin:127.0.0.1:0", speed=0, seed=seed, noise=True, platform=vehicle_platform)
    try:
        # Start hovering at the reference (a take-off is not what this measures).
        v.phys.state[0:3] = REF
        v.phys.state[qd.MOTOR] = BackupController(platform).model.hover_motor
        trace = Trace()
        link = LockstepMavlink(v, trace)
        t_loop0 = v.phys.t
        v.cut_at = t_loop0 + cut_in_hover_s
        sh = None
        if shield:
            from edgectl.safety.shield import Shield
            sh = Shield(bundle.act, bundle.contract, platform)
        log_path = Path(log_path or tempfile.mktemp(suffix=".csv", prefix="link_cut_mav_"))
        flog = FlightLog(log_path)
        loop = ControlLoop(link, bundle.act, bundle.contract, BackupController(platform),
                           LoopConfig(rate_hz=RATE_HZ, seconds=HOVER_S, realtime=False), shield=sh, log=flog, ref=tuple(REF))
        loop.run()
        flog.close()
        while v.phys.t < v.cut_at + AFTER_S:
            link.tick()
        took = v.failsafe_at  # the backup's first motor command of the episode that latched
        threshold = (v.last_setpoint_t or 0.0) + v.actuator_timeout  # the newest message (a repeat) + the threshold
        # one pause of the motor stream (no spurious one: the lockstep host is never late), latched, said why
        logged = v.failsafe_reason == "offboard setpoints lost" and v.counters["failsafes"] == 1 and v.counters["link_drops"] == 1
        return _result("mavlink", v.cut_at, took, threshold, trace, _specs(platform), log_path, t_loop0,
                       vehicle_logged=logged, landed=v.backup.phase == "landed", link_drops=v.counters["link_drops"],
                       z_end=float(v.phys.pos[2]))
    finally:
        v.conn.close()


def _result(vehicle, cut, took, threshold, trace, specs, log_path, t_read0, **extra) -> dict:
    """t_read0: vehicle time of the host's first state read in the loop (its log's t = 0)."""
    log = read_log(log_path)
    events = [(float(t), e) for t, e in zip(log["t"], log["event"]) if str(e).startswith("watchdog: link silent")]
    host_event_t = t_read0 + events[0][0] if events else None
    return {"vehicle": vehicle, "cut_at": cut, "takeover_at": took,
            "latency_from_cut_ms": None if took is None else 1e3 * (took - cut),
            "latency_from_threshold_ms": None if took is None else 1e3 * (took - threshold),
            "min_robustness": trace.min_robustness(specs, 1.0 / RATE_HZ),
            "host_logged": host_event_t is not None and -1e-9 <= host_event_t - cut <= 0.02 + 1e-9,
            "host_event_after_cut_ms": None if host_event_t is None else 1e3 * (host_event_t - cut),
            "log": str(log_path), **extra}


def summarize(results: list[dict]) -> dict:
    lc = np.array([r["latency_from_cut_ms"] for r in results if r["latency_from_cut_ms"] is not None])
    lt = np.array([r["latency_from_threshold_ms"] for r in results if r["latency_from_threshold_ms"] is not None])
    rob = np.array([r["min_robustness"] for r in results])
    return {"runs": len(results), "took_over": int(lc.size),
            "latency_from_cut_ms": {"p50": float(np.median(lc)), "max": float(lc.max())} if lc.size else None,
            "latency_from_threshold_ms": {"p50": float(np.median(lt)), "max": float(lt.max())} if lt.size else None,
            "min_robustness": float(rob.min()), "left_safe_set": int(np.sum(rob < 0.0)),
            "vehicle_logged": int(sum(bool(r["vehicle_logged"]) for r in results)),
            "host_logged": int(sum(bool(r["host_logged"]) for r in results)),
            "landed": int(sum(bool(r["landed"]) for r in results))}


def jitter(seconds: float) -> dict:
    """Inter-arrival of the host's setpoints (the loop's and the keep-alive's repeats) at a simulated
    Crazyflie over udp://, real time, 100 Hz; gaps longer than the app's LINK_TIMEOUT_S, and the app's
    link backup episodes (each such gap is flown by the backup and handed back)."""
    from firmware_bridge.crazyflie.onboard import LINK_TIMEOUT_S
    from firmware_bridge.crazyflie import crtp
    from firmware_bridge.sim.crazyflie.sim_vehicle import CrazyflieSim
    from edgectl.runtime.crazyflie_link import CrazyflieOnboardLink
    bundle = load_bundle(BUNDLE)
    platform = _platform(bundle)
    sim = CrazyflieSim(bundle=BUNDLE)
    arrivals = []
    receive = sim.receive

    def timed(raw, link):
        if len(raw) > 1 and not crtp.is_bootloader(raw) and crtp.split(raw)[0] == crtp.GENERIC_SETPOINT:
            arrivals.append(time.monotonic())
        receive(raw, link)
    sim.receive = timed
    server = sim.serve_udp("127.0.0.1", 0)
    sim.start()
    try:
        link = CrazyflieOnboardLink(server.uri, platform)
        loop = ControlLoop(link, None, bundle.contract, BackupController(platform),
                           LoopConfig(rate_hz=RATE_HZ, seconds=seconds), ref=tuple(REF))
        rep = loop.run()  # take-off first, then `seconds` of hover: the gaps are the hover's
        drops = sim.onboard.link_drops
        arr = np.asarray(arrivals)
        gaps = 1e3 * np.diff(arr[arr >= arr[-1] - seconds])
        link.close()
    finally:
        sim.close()
    s = rep.summary()
    return {"seconds": seconds, "setpoints": int(gaps.size + 1),
            "interarrival_ms": {q: float(np.percentile(gaps, float(q[1:]))) for q in ("p50", "p99", "p99.9")} | {"max": float(gaps.max())},
            "gaps_over_link_timeout": int(np.sum(gaps > 1e3 * LINK_TIMEOUT_S)), "vehicle_link_drops": int(drops),
            "host_period_error_ms": s["period_error_ms"], "position_error_m": s["position_error_m"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vehicle", choices=("crazyflie", "mavlink", "both"), default="both")
    ap.add_argument("--no-shield", action="store_true", help="mavlink: fly the host loop without its shield")
    ap.add_argument("--jitter", action="store_true", help="measure the setpoint inter-arrival at the vehicle instead")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--vehicle-platform", default="crazyflie_2_1",
                    help="platform file the simulated vehicles fly (e.g. the bundle's own platform.toml)")
    args = ap.parse_args()
    if args.jitter:
        out = jitter(args.seconds)
        print(json.dumps(out) if args.json else
              f"host setpoints at the vehicle over udp://, {out['seconds']:g} s at {RATE_HZ:g} Hz: {out['setpoints']} setpoints; "
              f"inter-arrival p50 {out['interarrival_ms']['p50']:.2f} / p99 {out['interarrival_ms']['p99']:.2f} / "
              f"p99.9 {out['interarrival_ms']['p99.9']:.2f} / max {out['interarrival_ms']['max']:.2f} ms; gaps over the app's "
              f"link timeout: {out['gaps_over_link_timeout']}; link backup episodes on the vehicle (whole flight): "
              f"{out['vehicle_link_drops']}; host period error p99 {out['host_period_error_ms']['p99']:.2f} ms; distance to "
              f"the reference max {100 * out['position_error_m']['max']:.1f} cm")
        return 0
    cuts = np.random.default_rng(args.seed).uniform(0.5, HOVER_S - 0.5, args.runs)
    vehicles = ("crazyflie", "mavlink") if args.vehicle == "both" else (args.vehicle,)
    bundle = load_bundle(BUNDLE)
    summaries, ok = {}, True
    with tempfile.TemporaryDirectory(prefix="link_cut_") as tmp:
        for name in vehicles:
            t0 = time.perf_counter()
            if name == "crazyflie":
                from firmware_bridge.sim.crazyflie.host_app import AppImage
                policy = AppImage(bundle)  # the app compiled once; every run boots a fresh copy
                results = [run_crazyflie(float(c), bundle=bundle, policy=policy, seed=i, log_path=Path(tmp) / f"cf{i}.csv",
                                         vehicle_platform=args.vehicle_platform)
                           for i, c in enumerate(cuts)]
            else:
                results = [run_mavlink(float(c), bundle=bundle, shield=not args.no_shield, seed=i,
                                       vehicle_platform=args.vehicle_platform,
                                       log_path=Path(tmp) / f"mav{i}.csv") for i, c in enumerate(cuts)]
            s = summarize(results) | {"wall_s": time.perf_counter() - t0}
            summaries[name] = s
            ok &= s["left_safe_set"] == 0 and s["took_over"] == s["runs"] and s["host_logged"] == s["runs"] \
                and s["vehicle_logged"] == s["runs"] and s["latency_from_cut_ms"]["max"] <= 1e3 / RATE_HZ
            if not args.json:
                lc, lt = s["latency_from_cut_ms"], s["latency_from_threshold_ms"]
                print(f"{name}: {s['runs']} cuts (seed {args.seed}), backup took over in {s['took_over']}; latency from the cut "
                      f"p50 {lc['p50']:.1f} / max {lc['max']:.1f} ms, from the watchdog threshold p50 {lt['p50']:.1f} / max "
                      f"{lt['max']:.1f} ms (control period {1e3 / RATE_HZ:.0f} ms); min safe-set robustness "
                      f"{s['min_robustness']:.3f} m; left the safe set: {s['left_safe_set']}; landed: {s['landed']}; "
                      f"event in the vehicle's log: {s['vehicle_logged']}, in the host's flight log: {s['host_logged']} "
                      f"({s['wall_s']:.0f} s)")
    if args.json:
        print(json.dumps(summaries))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""The fixed-rate control loop: state in, policy (or shield) out, watchdogs around it.

Fail-safe order: the nominal policy flies; a predicted spec violation (shield), a NaN state, a policy
that raises or returns NaN, a silent or stale link, or `max_misses` deadline overruns in a row hand
control to the backup controller (level, hold, descend); a watchdog handover latches, and if the link
stays silent for `stop_after_s` the loop commands a safe stop and ends. Never silence: every tick
sends something until the stop.

A link with ``onboard = True`` (a Crazyflie whose app runs the policy) gets the same fixed-rate loop
without the policy: each tick streams the reference, reads the state and the app's status, runs the
host's STL monitors and logs; the vehicle's app reports which controller flies (its fault code), and
a silent link is logged as a watchdog event, but the rescue is the app's own (see _run_onboard).
"""
from __future__ import annotations

import gc
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .flightlog import FlightLog
from .protocol import Link
from .report import BACKUP, NOMINAL, STOPPED, FlightReport


def fixed_rate_ticks(rate_hz: float, seconds: float, realtime: bool = True):
    """(loop time, scheduled, actual start) of each tick at `rate_hz` for `seconds`; sleeps to each tick when
    `realtime`. The clock starts at the first tick."""
    period = 1.0 / rate_hz
    t0 = time.perf_counter()
    for k in range(int(round(seconds * rate_hz))):
        scheduled = t0 + k * period
        if realtime:
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        start = time.perf_counter()
        if start - scheduled > period:
            # more than a period late: re-anchor instead of bursting ticks to catch up (a burst would
            # send several commands within one motor time constant)
            t0 += start - scheduled
            scheduled = start
        yield k * period, scheduled, start


@contextmanager
def frozen_heap(enabled: bool = True):
    """A flight with no full garbage collection in it. The cyclic collector stops every thread while it scans: a
    full collection took 60-75 ms in a process that has imported JAX and the training code (147k objects,
    measured), longer than the 50 ms stale-state watchdog (LoopConfig.stale_s), and one fired in CI ("state 57 ms
    old"). So: collect once before the flight (before the link's first fresh state is awaited: 90 ms spent after
    it left that state stale on the first tick), then freeze what exists (gc.freeze: later collections skip it,
    0.0 ms measured); the flight's own short-lived objects are still collected. Unfrozen after, unless a caller
    had frozen the heap already."""
    was_frozen = gc.get_freeze_count() > 0
    if enabled:
        gc.collect()
        gc.freeze()
    try:
        yield
    finally:
        if enabled and not was_frozen:
            gc.unfreeze()


@dataclass
class LoopConfig:
    rate_hz: float
    seconds: float
    stale_s: float = 0.05  # a state older than this is not flown on
    stop_after_s: float = 1.0  # link silent this long while on backup: safe stop
    max_misses: int = 3  # consecutive deadline overruns before the watchdog hands over
    realtime: bool = True  # False: run ticks back to back (simulated links in tests)
    rt_priority: int | None = None  # Linux SCHED_FIFO priority for the loop's thread (needs CAP_SYS_NICE)


class ControlLoop:
    """`policy(obs (1, size)) -> action (1, 4)` flies; `shield` (edgectl.safety.shield.Shield) if given
    decides between it and its backup each tick; `backup` (BackupController) takes over on watchdog events."""

    def __init__(self, link: Link, policy: Callable, contract: dict, backup, config: LoopConfig, *,
                 shield=None, log: FlightLog | None = None, ref=(0.0, 0.0, 0.0), monitors=()):
        from edgectl.observation import check_contract, observation
        check_contract(contract)  # a field the host cannot build fails here, naming it, not on the first tick
        self.observation = observation
        self.link, self.policy, self.contract, self.backup = link, policy, contract, backup
        self.cfg, self.shield, self.log = config, shield, log
        self.ref = np.asarray(ref, np.float64)
        # A trajectory bundle (contract.reference, e.g. figure8) tracks a moving reference about `ref`: each tick
        # sets self.ref, ref_vel and ref_acc from it (edgectl.reference), as in training; else a fixed point.
        from edgectl.reference import trajectory
        self.centre, self.trajectory = self.ref.copy(), trajectory(contract)
        self.ref_vel = self.ref_acc = None
        if self.trajectory is not None and shield is not None:
            raise ValueError("--shield: the shield predicts about a fixed reference; fly this trajectory bundle "
                             "(contract.reference) with --no-shield")
        if self.trajectory is not None and getattr(link, "onboard", False):
            raise ValueError("a trajectory bundle (contract.reference) flies from the host (sim://, MAVLink); the "
                             "on-board app holds a fixed reference")
        history = sum(f["size"] for f in contract["observation"]["fields"] if f["name"] == "previous_actions")
        act = contract["action"]
        hover = act.get("hover_actions", [float(act.get("hover_action", 0.0))] * 4)  # ctbr: thrust at hover, zero rates
        self.prev = np.tile(np.asarray(hover, np.float64), history // 4)
        from edgectl.contract import PositionIntegral
        self.integral = PositionIntegral(contract)
        self.mode, self.latched, self.sensor_fault = NOMINAL, False, False
        from .sensor_guard import SensorGuard
        self.guard = SensorGuard(1.0 / config.rate_hz)  # non-finite or stuck state: the backup on the last good estimate
        self.monitors = list(monitors)  # edgectl.safety.monitor.OnlineMonitor: the host's view when it cannot shield
        self.report = FlightReport(vehicle="crazyflie (policy on board)" if getattr(link, "onboard", False)
                                   else "quadrotor", rate_hz=float(config.rate_hz))

    def _set_reference(self, t: float) -> None:
        if self.trajectory is not None:
            p, self.ref_vel, self.ref_acc = self.trajectory(t)
            self.ref = self.centre + p

    def _switch(self, t: float, to: str, reason: str) -> None:
        if to != self.mode:
            self.report.events.append((round(t, 4), self.mode, to, reason))
            self.mode = to

    def _nominal(self, s) -> tuple[np.ndarray, float, str | None]:
        """Action, robustness (nan without shield), and a reason to hand over (None: fly it)."""
        if self.shield is not None:
            a = self.shield.step(s.pos, s.quat, s.vel, s.omega, self.ref)
            rob = float(np.nanmin(self.shield.last_robustness)) if np.any(np.isfinite(self.shield.last_robustness)) else float("nan")
            from edgectl.safety.shield import NOMINAL as SHIELD_NOMINAL
            if self.shield.mode != SHIELD_NOMINAL:
                last = self.shield.log[-1] if self.shield.log else None
                return a, rob, getattr(last, "reason", "shield")
            return a, rob, None
        for name, v in (("pos", s.pos), ("quat", s.quat), ("vel", s.vel), ("omega", s.omega)):
            if not np.all(np.isfinite(v)):
                return np.zeros(4), float("nan"), f"state not finite: {name} = {np.asarray(v).tolist()}"
        integral = self.integral.update(np.asarray(s.pos, np.float64) - self.ref, self.ref)
        obs = self.observation(self.contract, s.pos, s.quat, s.vel, s.omega, self.prev, self.ref, self.ref_vel,
                               self.ref_acc, integral=integral)
        try:
            a = np.asarray(self.policy(obs[None]), np.float64).reshape(4)
        except Exception as e:  # noqa: BLE001  a backend failure must not leave the motors without a command
            return np.zeros(4), float("nan"), f"policy raised {type(e).__name__}: {e}"
        if not np.all(np.isfinite(a)):
            return a, float("nan"), f"policy returned non-finite action {a.tolist()}"
        return np.clip(a, -1.0, 1.0), float("nan"), None

    def _wait_for_fresh_state(self) -> None:
        """Start the clock on a fresh state: warming up (compiling, loading) can starve a link's reader
        thread, and a state gone stale meanwhile would latch the watchdog on tick 0 (it did, over MAVLink
        on a busy host: the whole flight on the backup). Gives up after stop_after_s; tick 0 judges then."""
        if not self.cfg.realtime:
            return
        deadline = time.monotonic() + self.cfg.stop_after_s
        while time.monotonic() < deadline:
            s = self.link.read_state()
            if s is not None and time.monotonic() - s.t <= 0.5 * self.cfg.stale_s:
                return
            time.sleep(0.002)

    def warm_up(self) -> None:
        """Compile (Numba) and load everything the first tick touches, so tick 0 is not seconds late."""
        s = self.link.read_state()
        if s is None or not all(np.all(np.isfinite(v)) for v in (s.pos, s.quat, s.vel, s.omega)):
            return
        self._set_reference(0.0)
        obs = self.observation(self.contract, s.pos, s.quat, s.vel, s.omega, self.prev, self.ref, self.ref_vel, self.ref_acc)
        self.policy(obs[None])
        if self.shield is not None:
            self.shield.predict(s.pos, s.quat, s.vel, s.omega, self.ref)

    def run(self) -> FlightReport:
        # A thread holding the GIL (a link's receiver, an in-process vehicle) keeps it up to the switch
        # interval, 5 ms by default, after the loop's sleep ended: half a period late at 100 Hz.
        switch = sys.getswitchinterval()
        sys.setswitchinterval(min(switch, 0.0005))
        policy = self._raise_priority()
        try:
            with frozen_heap(self.cfg.realtime):
                return self._run_onboard() if getattr(self.link, "onboard", False) else self._run()
        finally:
            sys.setswitchinterval(switch)
            if policy is not None:
                import os
                os.sched_setscheduler(0, *policy)

    def _raise_priority(self):
        """On a loaded CPU a woken loop waits its turn behind other processes; a real-time priority does
        not. Returns the policy to restore, None if not asked. Refused (no CAP_SYS_NICE): a ValueError
        that says what to do, not a quiet normal-priority run."""
        prio = self.cfg.rt_priority
        if prio is None or not self.cfg.realtime:
            return None
        import os
        if not hasattr(os, "sched_setscheduler"):
            raise ValueError("--rt-priority: real-time scheduling needs Linux (os.sched_setscheduler)")
        old = (os.sched_getscheduler(0), os.sched_getparam(0))
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(int(prio)))
        except PermissionError:
            raise ValueError(f"--rt-priority {prio}: not permitted; run as root or grant the interpreter CAP_SYS_NICE "
                             "(sudo setcap cap_sys_nice+ep $(readlink -f $(which python3)))") from None
        return old

    def _late_ms(self, start: float, scheduled: float) -> float | None:
        """How late a tick started, in ms; None when ticks run back to back (--as-fast-as-possible), where the
        schedule is not a clock the loop tries to keep (it reported 400-800 ms "errors" for ticks run early)."""
        return 1e3 * (start - scheduled) if self.cfg.realtime else None

    def _ticks(self):
        return fixed_rate_ticks(self.cfg.rate_hz, self.cfg.seconds, self.cfg.realtime)

    def _run(self) -> FlightReport:
        cfg, rep = self.cfg, self.report
        period = 1.0 / cfg.rate_hz
        self.warm_up()
        self._wait_for_fresh_state()
        last_good = 0.0  # loop time of the last usable state (loop time, so a back-to-back sim run judges the same)
        misses_in_row, link_down = 0, False
        for t, scheduled, start in self._ticks():
            self._set_reference(t)
            s = self.link.read_state()
            now = time.monotonic()
            link_event = ""
            if s is None or now - s.t > cfg.stale_s:
                silent = t - last_good
                why = "link silent" if s is None else f"state {1e3 * (now - s.t):.0f} ms old"
                link_event = "" if link_down else ("silent" if s is None else f"stale {1e3 * (now - s.t):.0f} ms")
                link_down = True
                self._switch(t, BACKUP, f"watchdog: {why}")
                self.latched = True
                if silent > cfg.stop_after_s:
                    self.link.stop()
                    self._switch(t, STOPPED, f"watchdog: no state for {silent:.2f} s while on backup: safe stop")
                    rep.tick(self.mode, self._late_ms(start, scheduled), 1e3 * (time.perf_counter() - start))
                    if self.log is not None:
                        self.log.write(t, self._late_ms(start, scheduled), rep.compute_ms[-1], self.mode, rep.event_at(t),
                                       None, self.ref, np.full(4, np.nan), float("nan"), link_event)
                    break
                # no usable estimate: the backup's open-loop hover-and-descend command
                nan3 = np.full(3, np.nan)
                a, rob = self.backup(nan3, np.full(4, np.nan), nan3, nan3), float("nan")
                s = None
            else:
                last_good = t
                if link_down:
                    link_event, link_down = "back", False
                g, why = self.guard.update(s.pos, s.quat, s.vel, s.omega)
                if why is not None and not self.sensor_fault:
                    self.sensor_fault = True
                    if not self.latched:
                        self.backup.engage(np.asarray(g[0], np.float64), target=np.asarray(g[0], np.float64))  # land in place
                        self.latched = True
                    self._switch(t, BACKUP, why)
                if self.latched:
                    a, rob = self.backup(*g), float("nan")
                else:
                    a, rob, why = self._nominal(s)
                    if why is not None and self.shield is None:
                        self.backup.engage(np.nan_to_num(np.asarray(s.pos, np.float64)), target=self.ref)
                        self._switch(t, BACKUP, why)
                        self.latched = True
                        a = self.backup(s.pos, s.quat, s.vel, s.omega)
                    elif self.shield is not None:
                        self._switch(t, NOMINAL if why is None else BACKUP, why or "shield: prediction safe again")
                    else:
                        self.backup.observe(s.quat, s.vel, s.omega, a)
            a = np.clip(np.nan_to_num(np.asarray(a, np.float64), nan=-1.0), -1.0, 1.0)
            compute = time.perf_counter() - start
            if compute > period:
                misses_in_row += 1
                if misses_in_row >= cfg.max_misses and not self.latched:
                    self._switch(t, BACKUP, f"watchdog: {misses_in_row} deadline overruns in a row ({1e3 * compute:.1f} ms > {1e3 * period:.1f} ms)")
                    self.latched = True
                    if s is not None:
                        self.backup.engage(np.asarray(s.pos, np.float64), target=self.ref)
            else:
                misses_in_row = 0
            self.link.send_action(a)
            if self.prev.size:
                self.prev = np.concatenate([a, self.prev[:-4]])
            rep.tick(self.mode, self._late_ms(start, scheduled), 1e3 * compute)
            if s is not None:
                rep.position_error_m.append(float(np.linalg.norm(np.asarray(s.pos) - self.ref)))
            if self.log is not None:
                self.log.write(t, self._late_ms(start, scheduled), 1e3 * compute, self.mode, rep.event_at(t), s, self.ref, a,
                               rob, link_event)
        rep.final_mode = self.mode
        return rep

    def _monitor(self, s) -> float:
        if not self.monitors:
            return float("nan")
        from edgectl.safety.signals import signals_from_state
        sig = {k: float(v) for k, v in signals_from_state(np.asarray(s.pos, float), np.asarray(s.quat, float),
                                                         np.asarray(s.vel, float), np.asarray(s.omega, float),
                                                         self.ref).items()}
        return min(m.update(sig) for m in self.monitors)

    def _run_onboard(self) -> FlightReport:
        """The policy flies on the vehicle; the host streams the reference and watches.

        Modes in the log and the report: nominal (the app's policy flies), backup (the app reports a
        fault: its backup flies; or the host hears nothing, when the app's link watchdog hands over on
        board), stopped (the host gave up after stop_after_s of silence; it sends no motors-off, which a
        vehicle landing itself must not get). The host cannot take over: it has no motor authority."""
        cfg, rep, link = self.cfg, self.report, self.link
        if hasattr(link, "start"):
            link.start(self.ref)
        last_good, fault_seen, silent_logged, drops0 = 0.0, 0, False, None
        for t, scheduled, start in self._ticks():
            link.send_reference(self.ref)
            s = link.read_state()
            st = link.vehicle_status() if hasattr(link, "vehicle_status") else None
            now = time.monotonic()
            rob = float("nan")
            a = np.full(4, np.nan)
            link_event = ""
            if s is None or now - s.t > cfg.stale_s:
                silent = t - last_good
                why = "link silent" if s is None else f"state {1e3 * (now - s.t):.0f} ms old"
                if not silent_logged:  # logged even when a vehicle fault had the backup flying already
                    link_event = "silent" if s is None else f"stale {1e3 * (now - s.t):.0f} ms"
                    rep.events.append((round(t, 4), self.mode, BACKUP,
                                       f"watchdog: {why}; the vehicle's own link watchdog hands its motors to the on-board backup"))
                    self.mode, silent_logged = BACKUP, True
                if silent > cfg.stop_after_s:
                    self._switch(t, STOPPED, f"watchdog: no state for {silent:.2f} s: host stops; the on-board backup lands the vehicle")
                    rep.tick(self.mode, self._late_ms(start, scheduled), 1e3 * (time.perf_counter() - start))
                    if self.log is not None:
                        self.log.write(t, self._late_ms(start, scheduled), rep.compute_ms[-1], self.mode, rep.events[-1][3],
                                       None, self.ref, a, rob, link_event)
                    break
                s = None
            else:
                last_good = t
                if silent_logged:
                    rep.events.append((round(t, 4), self.mode, self.mode, "watchdog: link back"))
                    silent_logged, link_event = False, "back"
                rob = self._monitor(s)
                rep.position_error_m.append(float(np.linalg.norm(np.asarray(s.pos) - self.ref)))
                if st is not None:
                    if "link_drops" in st:
                        drops0 = st["link_drops"] if drops0 is None else drops0
                        if rep.vehicle_link_drops is not None and st["link_drops"] - drops0 > rep.vehicle_link_drops:
                            link_event = (link_event + "; " if link_event else "") + \
                                f"vehicle link drops {st['link_drops'] - drops0}"
                        rep.vehicle_link_drops = st["link_drops"] - drops0
                    a = link.forces_to_action(st["forces"])
                    fault = st["fault"]
                    if fault and fault != fault_seen:  # logged even when a host watchdog event set backup already
                        from .crazyflie_link import FAULT_NAMES
                        rep.events.append((round(t, 4), self.mode, BACKUP,
                                           f"vehicle: fault {fault} ({FAULT_NAMES.get(fault, 'unknown')}): on-board backup flies"))
                        self.mode = BACKUP
                    elif not fault and st["engaged"]:
                        self._switch(t, NOMINAL, "vehicle: on-board policy flies")
                    fault_seen = fault
            compute = time.perf_counter() - start
            rep.tick(self.mode, self._late_ms(start, scheduled), 1e3 * compute)
            if self.log is not None:
                self.log.write(t, self._late_ms(start, scheduled), 1e3 * compute, self.mode, rep.event_at(t), s, self.ref, a,
                               rob, link_event)
        rep.final_mode = self.mode
        return rep

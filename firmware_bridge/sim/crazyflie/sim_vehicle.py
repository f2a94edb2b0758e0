"""A simulated Crazyflie 2.1 that stock cflib talks to.

Architecture, in cflib's own layering:
- ``CrazyflieSim`` is the vehicle core: CRTP packets in (``SimLink.send``), CRTP packets out (the
  link's deliver callback), no sockets, no cflib. Physics is edgectl's Numba quadrotor
  (edgectl/plant/quadrotor.py) with the platform file's constants, stepped at
  ``physics_hz`` in a thread, in real time times ``speed`` (or by hand with ``advance``).
- transports (``transports.py``): a UDP server (``udp://host:port``, one CRTP packet per datagram,
  cflib's UdpDriver format) and an in-process cflib driver (``cfsim://name``) registered in
  ``cflib.crtp.CLASSES``.

What it answers (see crtp.py for the numbers): link control (echo, source), platform (protocol
version 12, firmware version, device type), log (TOC, blocks, streaming), param (TOC, read, write,
misc), memory (memory.py: the memories of a deck-free Crazyflie 2.1, trajectory memory included),
commander (port 3, with the thrust lock), generic commander (port 7: stop, position, velocity,
z-distance, hover, manual), the high-level commander (port 8, high_level.py: take-off, land, go-to,
stop, trajectories in memory, flown through the same controller), the commander's priorities
(a low-level setpoint stops the high-level planner, notify-setpoint-stop hands back to it),
supervisor (port 9: arming, recovery, emergency stop, bitfield), the console (boot banner,
supervisor messages) and the 0xFF bootloader (bootloader.py). Localization (port 6) is not
simulated: its packets are counted and ignored. docs/cflib_examples.md lists which of cflib's
example scripts run against it. Firmware release followed: crazyflie-firmware 2026.08.

State estimate = simulated truth (optionally with the platform's sensor noise): the vehicle acts
as if it had a motion-capture or Lighthouse system.

Testing hooks: ``drop_link`` (go silent after N packets, once), ``stats``, ``advance``.

Fault injection, on request (constructor arguments; ``edgectl sim-vehicle crazyflie`` flags):
``loss`` (probability that a packet is lost, each direction), ``latency_s`` (one-way delay, each
direction), ``cut_at`` (vehicle time in s from which the link is silent both ways, for ``cut_for``
seconds or for good), ``stuck_sensor`` / ``nan_sensor`` (from ``sensor_fault_at`` s: a sensor frozen
at its value then, or reading NaN; names in SENSORS), ``weak_motor`` ((motor 1..4, fraction of its
thrust)). A sensor fault reaches what the firmware sees (stabilizer, on-board app, log variables),
never the physics.
"""
from __future__ import annotations

import logging
import math
import struct
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from firmware_bridge.crazyflie import crtp
from .bootloader import Stm32Bootloader
from .control import FlightController, quat_to_euler
from .firmware_vars import KalmanVariances, build_log_toc, build_param_toc, read_variables
from .high_level import HighLevelCommander
from .high_level import RATE_HZ as HL_RATE_HZ
from .memory import Memories
from .log_service import LogService
from .param_service import ParamService
from .ports import BOOTLOADER, DEVICE_TYPE_NAME, FIRMWARE, HANDLERS, bootloader_packet
from .setpoints import PRIORITY_CRTP, PRIORITY_HIGHLEVEL, Commander, MalformedSetpoint
from .supervisor import CAN_FLY, CRASHED, LOCKED, STATE_NAMES, Supervisor

log = logging.getLogger(__name__)

SENSORS = {"x": [0], "y": [1], "z": [2], "pos": [0, 1, 2], "quat": [3, 4, 5, 6], "vx": [7], "vy": [8], "vz": [9],
           "vel": [7, 8, 9], "gyro": [10, 11, 12], "gyro_x": [10], "gyro_y": [11], "gyro_z": [12]}
CONTROLLER_OOT = 6  # stabilizer.controller value of the out-of-tree controller (controller.h)
BATTERY_CAPACITY_AS = 0.25 * 3600  # 250 mAh
BATTERY_R_OHM = 0.15


@dataclass
class LinkStats:
    rx: int = 0  # packets from the host
    tx: int = 0  # packets to the host
    malformed: int = 0  # wrong length or content: ignored, as the firmware would at best
    unknown: int = 0  # ports/channels/commands the simulation does not serve
    dropped: int = 0  # lost on purpose (drop_link)
    errors: int = 0  # handler exceptions (a bug here; the link keeps going)
    last_error: str = ""


class SimLink:
    """One host connection (a cflib driver instance, a UDP client address)."""

    def __init__(self, sim: "CrazyflieSim", deliver: Callable[[bytes], None], name: str = ""):
        self.sim, self._deliver, self.name = sim, deliver, name
        self.open = True
        self.dead_until: float | None = None  # set when dropped; inf: until the host reconnects

    def send(self, raw: bytes) -> None:
        """A packet from the host (header byte first)."""
        self.sim.receive(bytes(raw), self)

    def deliver(self, raw: bytes) -> bool:
        if not self.open or self.dead:
            return False
        try:
            self._deliver(raw)
        except Exception as e:  # noqa: BLE001  a closed socket or queue: the host is gone, not our problem
            log.debug("link %s: deliver failed: %s", self.name, e)
            return False
        return True

    @property
    def dead(self) -> bool:
        if self.dead_until is None:
            return False
        if time.monotonic() >= self.dead_until:
            self.dead_until = None
            return False
        return True

    def close(self) -> None:
        self.open = False
        self.sim._forget(self)


class CrazyflieSim:
    """The simulated vehicle. Thread-safe: one lock guards everything.

    platform: a platform name or path (hardware/*.toml); speed: simulated seconds per wall second;
    realtime=False: no thread, call ``advance`` to move time.

    On-board app: ``bundle`` (a bundle path) with ``onboard_impl`` ("c", "numpy" or an `edgectl export
    --target c` folder), or ``onboard_policy``, an already built host_app.AppImage: the generated
    Crazyflie app compiled for this host, run as the out-of-tree controller when stabilizer.controller
    == 6, at 1 kHz (each stabilizer tick inside a physics step), its log and parameter variables in the
    TOCs (see host_app.py). ``link_timeout_s``: the boot value of its edgectl.linkMs, compiled in.
    ``policy_hz``: if given, checked against the app's compiled rate.
    """

    def __init__(self, platform: str = "crazyflie_2_1", *, speed: float = 1.0, realtime: bool = True,
                 physics_hz: float = 500.0, sensor_noise: bool = False, seed: int = 0, auto_arm: bool = True,
                 onboard_policy=None, policy_hz: float | None = None, bundle=None, onboard_impl: str = "c",
                 loss: float = 0.0, latency_s: float = 0.0, cut_at: float | None = None, cut_for: float | None = None,
                 stuck_sensor: str | None = None, nan_sensor: str | None = None, sensor_fault_at: float = 0.0,
                 weak_motor: tuple[int, float] | None = None, link_timeout_s: float | None = None):
        from edgectl.platforms import load_platform
        from edgectl.plant import quadrotor as qd

        if speed <= 0 or not math.isfinite(speed):
            raise ValueError(f"CrazyflieSim: speed must be a positive number, got {speed!r}")
        self._qd = qd
        self.platform = load_platform(platform)
        if self.platform.kind != "quadrotor":
            raise ValueError(f"CrazyflieSim: platform {self.platform.name} is a {self.platform.kind}, not a quadrotor")
        self.dt = 1.0 / physics_hz
        params = qd.params_from_platform(self.platform)
        params[qd.PARAM_INDEX["dt"]] = self.dt  # the training dt is coarser than a stabilizer loop
        self.params = params
        self._pdict = qd.params_as_dict(params)
        warm = qd.hover_state(params)
        qd.step_into(warm, np.zeros(4), params, warm)  # load/compile the kernel now, not mid-flight
        self.speed, self.realtime = float(speed), realtime
        self.sensor_noise = sensor_noise
        self._rng = np.random.default_rng(seed)
        self._lock = threading.RLock()
        self._links: list[SimLink] = []
        self._active: SimLink | None = None
        self._drop: int | None = None
        self._drop_duration: float | None = None
        self.stats = LinkStats()
        self.bootloader = Stm32Bootloader()
        self.memories = Memories(None)  # the EEPROM outlives a reboot; the trajectory RAM does not
        self.boot_count = 0
        from .host_app import AppImage
        if bundle is not None:
            if onboard_policy is not None:
                raise ValueError("CrazyflieSim: give bundle= or onboard_policy=, not both")
            onboard_policy = AppImage(bundle, onboard_impl, link_timeout_ms=None if link_timeout_s is None
                                      else round(1000.0 * link_timeout_s))
        elif link_timeout_s is not None:
            raise ValueError("CrazyflieSim: link_timeout_s is compiled into the app: give it with bundle=")
        if onboard_policy is not None and not isinstance(onboard_policy, AppImage):
            raise TypeError("CrazyflieSim: onboard_policy: expected the compiled app, "
                            f"firmware_bridge.sim.crazyflie.host_app.AppImage(bundle, impl), got {type(onboard_policy).__name__}")
        if onboard_policy is not None and policy_hz is not None and float(policy_hz) != onboard_policy.rate_hz:
            raise ValueError(f"CrazyflieSim: policy_hz {policy_hz:g}, but the app runs its policy at "
                             f"{onboard_policy.rate_hz:g} Hz (compiled in)")
        self.onboard_policy = self.onboard_image = onboard_policy
        self._app_state = np.zeros(16, np.float32)  # host_app.ST_SIZE: the stabilizer's state for the app
        self._app_banner = ""
        self._controller_type = None
        self._faults(loss, latency_s, cut_at, cut_for, stuck_sensor, nan_sensor, sensor_fault_at, weak_motor)
        self._auto_arm = auto_arm
        self._build_tocs()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._closers: list[Callable[[], None]] = []  # transports to shut down with the vehicle
        self._pollers: list[Callable[[], None]] = []  # transports the physics thread reads before each tick
        self._power_on()

    def _faults(self, loss, latency_s, cut_at, cut_for, stuck_sensor, nan_sensor, sensor_fault_at, weak_motor):
        if not 0.0 <= loss < 1.0:
            raise ValueError(f"CrazyflieSim: loss must be a probability in [0, 1), got {loss!r}")
        if not (latency_s >= 0.0 and math.isfinite(latency_s)):
            raise ValueError(f"CrazyflieSim: latency_s must be >= 0 s, got {latency_s!r}")
        for name, sensor in (("stuck_sensor", stuck_sensor), ("nan_sensor", nan_sensor)):
            if sensor is not None and sensor not in SENSORS:
                raise ValueError(f"CrazyflieSim: {name} {sensor!r}: expected one of {', '.join(SENSORS)}")
        if weak_motor is not None:
            m, k = weak_motor
            if int(m) not in (1, 2, 3, 4) or not 0.0 <= float(k) <= 1.0:
                raise ValueError(f"CrazyflieSim: weak_motor {weak_motor!r}: expected (motor 1..4, thrust fraction 0..1)")
            weak_motor = (int(m), float(k))
        self.loss, self.latency_s = float(loss), float(latency_s)
        self.cut_at, self.cut_for = cut_at, cut_for
        self.stuck_sensor, self.nan_sensor = stuck_sensor, nan_sensor
        self.sensor_fault_at, self.weak_motor = float(sensor_fault_at), weak_motor
        self._fault_rng = np.random.default_rng(self._rng.integers(1 << 31))
        self._stuck: np.ndarray | None = None
        self._inbox: list = []  # (due vehicle time, seq, raw, link), latency on the way in
        self._outbox: list = []  # the same on the way out
        self._seq = 0

    def link_cut(self) -> bool:
        """The injected cut is in force now (vehicle time)."""
        if self.cut_at is None or self.t < self.cut_at:
            return False
        return self.cut_for is None or self.t < self.cut_at + self.cut_for

    def measured(self) -> np.ndarray:
        """The state as the firmware's sensors and estimator report it: the truth with the injected
        sensor faults (noise, if on, is added where the log variables are read)."""
        x = self.x
        if (self.stuck_sensor is None and self.nan_sensor is None) or self.t < self.sensor_fault_at:
            return x
        m = x.copy()
        if self.stuck_sensor is not None:
            idx = SENSORS[self.stuck_sensor]
            if self._stuck is None:
                self._stuck = x[idx].copy()
            m[idx] = self._stuck
        if self.nan_sensor is not None:
            m[SENSORS[self.nan_sensor]] = np.nan
        return m

    # ----------------------------------------------------------------------------------------
    # Lifecycle
    # ----------------------------------------------------------------------------------------
    def _power_on(self, position=(0.0, 0.0, 0.0)):
        qd = self._qd
        self.t = 0.0
        self.ticks = 0
        self.x = np.zeros(qd.STATE_SIZE)
        self.x[qd.POS] = position
        self.x[3] = 1.0
        self._acc_world = np.zeros(3)
        self.motors = [0.0] * 4
        self.battery_used_as = 0.0
        self.vbat = 4.2
        self._boot(FIRMWARE)

    def _boot(self, mode: str):
        """A (re)boot: firmware state back to its power-on values; the airframe stays where it is."""
        self.mode = mode
        self.boot_count += 1
        self.commander = Commander()
        self.hl = HighLevelCommander(console=self.console)
        self.memories.attach(self.hl)
        self.kalman = KalmanVariances()  # the estimator starts from its initial variances
        self.kalman.reset(self.t)
        self.supervisor = Supervisor(auto_arm=self._auto_arm)
        self.supervisor.on_transition = self._on_supervisor_transition
        self.controller = FlightController(self._pdict, self.dt)
        self.logs.reset()
        self.onboard_reset()  # a fresh app first: the parameters below are its variables
        self.params_service.reboot()
        self._snapshot_tick = -1
        self._banner_sent = False
        self.firmware_sha256 = (self.bootloader.firmware_sha256() if self.bootloader.pages_written else None)

    def reboot(self, to_bootloader: bool = False):
        with self._lock:
            self.motors = [0.0] * 4
            self._boot(BOOTLOADER if to_bootloader else FIRMWARE)

    def start(self) -> "CrazyflieSim":
        if not self.realtime:
            raise RuntimeError("CrazyflieSim(realtime=False) has no thread: call advance(seconds)")
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="crazyflie-sim", daemon=True)
            self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    def close(self):
        self.stop()
        self._pollers.clear()
        closers, self._closers = self._closers, []
        for closer in closers:
            closer()
        with self._lock:
            for link in list(self._links):
                link.open = False
            self._links.clear()

    def __enter__(self):
        if self.realtime:
            self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def advance(self, seconds: float):
        """Step the simulation by hand (realtime=False)."""
        if self._thread is not None:
            raise RuntimeError("advance() while the real-time thread runs")
        n = max(0, round(seconds / self.dt))
        with self._lock:
            for _ in range(n):
                self._tick()

    def _run(self):
        wall0, sim0 = time.monotonic(), self.t
        # More than 4 ms behind (the process was descheduled): slip, do not race. A burst advances
        # vehicle time with no packet taken in (the host's were all read before its first tick), and the
        # on-board app's 6 ms link watchdog reads a burst longer than that as a silent host. For the
        # same reason the lock is taken per tick, so the transport threads get in between.
        max_burst = max(1, int(0.004 / self.dt))
        while not self._stop.is_set():
            target = sim0 + (time.monotonic() - wall0) * self.speed
            n = int((target - self.t) / self.dt)
            if n > max_burst:
                wall0, sim0, n = time.monotonic(), self.t, 1
            for _ in range(max(n, 1)):
                for poll in self._pollers:
                    poll()
                if n <= 0:
                    break
                with self._lock:
                    self._tick()
            self._stop.wait(min(0.002, self.dt / self.speed))

    # ----------------------------------------------------------------------------------------
    # Links
    # ----------------------------------------------------------------------------------------
    def open_link(self, deliver: Callable[[bytes], None], name: str = "") -> SimLink:
        """A new host connection; deliver(raw) gets every packet for the host."""
        link = SimLink(self, deliver, name)
        with self._lock:
            self._links.append(link)
        return link

    def _forget(self, link: SimLink):
        with self._lock:
            if link in self._links:
                self._links.remove(link)
            if self._active is link:
                self._active = None

    def drop_link(self, after_packets: int, duration_s: float | None = None):
        """Lose the link once: after ``after_packets`` more packets from the host, every open link
        goes silent both ways (a radio out of range, a USB cable pulled) until the host opens a new
        link, or for ``duration_s`` seconds if given."""
        with self._lock:
            self._drop, self._drop_duration = int(after_packets), duration_s

    def serve_udp(self, host: str = "127.0.0.1", port: int = 19850):
        """Answer on udp://host:port (port 0: any free port); returns the server (``.uri``)."""
        from .udp import UdpServer

        server = UdpServer(self, host, port)
        self._pollers.append(server.poll)
        self._closers.append(server.close)
        return server

    @property
    def polls_transports(self) -> bool:
        """The physics thread runs and reads the transports itself (see UdpServer.poll)."""
        return self._thread is not None

    def serve_inprocess(self, name: str = "crazyflie/0") -> str:
        """Register as ``cfsim://name`` for cflib (in-process, lossless); returns the URI."""
        from firmware_bridge.crazyflie.transports import register_vehicle, unregister_vehicle

        uri = register_vehicle(name, self)
        self._closers.append(lambda: unregister_vehicle(name, self))
        return uri

    # ----------------------------------------------------------------------------------------
    # Packets from the host
    # ----------------------------------------------------------------------------------------
    def receive(self, raw: bytes, link: SimLink):
        with self._lock:
            self.stats.rx += 1
            if self.link_cut() or (self.loss and self._fault_rng.random() < self.loss):
                self.stats.dropped += 1
                return
            if self.latency_s > 0.0:
                self._seq += 1
                self._inbox.append((self.t + self.latency_s, self._seq, bytes(raw), link))
                return
            self._receive(raw, link)

    def _receive(self, raw: bytes, link: SimLink):
        with self._lock:
            if link.dead:
                self.stats.dropped += 1
                return
            if self._drop is not None:
                self._drop -= 1
                if self._drop < 0:
                    until = math.inf if self._drop_duration is None else time.monotonic() + self._drop_duration
                    for other in self._links:
                        other.dead_until = until
                    self._drop = None
                    self.stats.dropped += 1
                    return
            self._active = link
            port = channel = None
            try:
                if len(raw) == 1 and raw[0] in (0xFF, 0xF3):
                    self._reply(link, raw[:1])  # null packet (cflib's UDP scan probe): any answer
                elif crtp.is_bootloader(raw):
                    bootloader_packet(self, raw, link)
                elif self.mode == BOOTLOADER or not raw:
                    self.stats.unknown += 1  # the bootloader only speaks 0xFF packets
                else:
                    port, channel, payload = crtp.split(raw)
                    if len(payload) > crtp.MAX_DATA:
                        raise ValueError(f"{len(payload)} payload bytes, CRTP allows {crtp.MAX_DATA}")
                    handler = HANDLERS.get(port)
                    if handler is None:
                        self.stats.unknown += 1
                    else:
                        handler(self, channel, payload, link)
                    if not self._banner_sent and port != crtp.LINK:
                        self._banner_sent = True
                        self.console(f"SYS: {DEVICE_TYPE_NAME} (edgectl simulation) is up and running!\n")
                        if self._app_banner:  # what the app's appMain printed at boot
                            self.console(self._app_banner)
            except (MalformedSetpoint, ValueError, IndexError, struct.error) as e:
                self.stats.malformed += 1
                self.stats.last_error = f"port {port} channel {channel}: {e}"
            except Exception as e:  # never let a packet take the vehicle down
                self.stats.errors += 1
                self.stats.last_error = f"port {port} channel {channel}: {type(e).__name__}: {e}"
                log.exception("crazyflie sim: packet %r", raw)

    def _reply(self, link: SimLink, raw: bytes, delayed: bool = False):
        if not delayed:
            if self.link_cut() or (self.loss and self._fault_rng.random() < self.loss):
                self.stats.dropped += 1
                return
            if self.latency_s > 0.0:
                self._seq += 1
                self._outbox.append((self.t + self.latency_s, self._seq, raw, link))
                return
        if link.deliver(raw):
            self.stats.tx += 1

    def _flush_delayed(self):
        """Packets whose injected latency is over, in arrival order."""
        for box, on_due in ((self._inbox, lambda raw, link: self._receive(raw, link)),
                            (self._outbox, lambda raw, link: self._reply(link, raw, delayed=True))):
            if box and box[0][0] <= self.t:
                due = [p for p in box if p[0] <= self.t]
                box[:] = [p for p in box if p[0] > self.t]
                for _, _, raw, link in due:
                    on_due(raw, link)

    def _send(self, link: SimLink | None, port: int, channel: int, payload: bytes):
        if link is not None:
            self._reply(link, crtp.packet(port, channel, payload))

    def console(self, text: str):
        """Print on the host's console (port 0), as the firmware's DEBUG_PRINT does."""
        data = text.encode()
        for i in range(0, len(data), crtp.MAX_DATA):
            self._send(self._active, crtp.CONSOLE, 0, data[i:i + crtp.MAX_DATA])

    # ----------------------------------------------------------------------------------------
    # Simulation step
    # ----------------------------------------------------------------------------------------
    def _tick(self):
        qd, x, dt = self._qd, self.x, self.dt
        sup = self.supervisor
        if self._inbox or self._outbox:
            self._flush_delayed()
        meas = self.measured()
        if self.mode == FIRMWARE:
            self._high_level(meas)
            f_body = self._specific_force_body()
            sup.update(self.t, self.commander.setpoint, any(m > 0.0 for m in self.motors), acc_z=f_body[2],
                       free_fall=bool(np.all(np.abs(f_body) < 0.1)))
            sp = sup.override(self.commander.setpoint)
            if self._oot_active():  # called on every stabilizer tick, motors allowed or not, as the firmware does
                u = self._onboard_step(meas, f_body)
            elif not sup.motors_allowed:
                u = self.controller.motors_off()
            else:
                u = self.controller.step(sp, meas)
        else:
            u = self.controller.motors_off()
        self.motors = u
        mmin = self._pdict["motor_min"]
        if self.weak_motor is not None:  # thrust ~ speed^2: a rotor giving k of its thrust turns sqrt(k) as fast
            m, k = self.weak_motor
            u = list(u)
            u[m - 1] = mmin + (u[m - 1] - mmin) * math.sqrt(k)
        action = np.nan_to_num(np.array([2.0 * (m - mmin) / (1.0 - mmin) - 1.0 for m in u]), nan=-1.0)
        v_before = x[qd.VEL].copy()
        qd.step_into(x, action, self.params, x)
        self._ground_contact()
        self._acc_world = (x[qd.VEL] - v_before) / dt
        self._battery(u, dt)
        self.ticks += 1
        self.t = self.ticks * dt  # not a running sum: no drift over hours
        if self.mode == FIRMWARE and self.logs.blocks:
            for data in self.logs.due(self.t):
                self._send(self._active, crtp.LOG, crtp.LOG_DATA_CH, data)

    def _estimate(self, meas):
        """Position, velocity, yaw (rad) of the state estimate, as the commander sees it."""
        return meas[0:3], meas[7:10], quat_to_euler(*meas[3:7])[2]

    def hl_tell_state(self):
        """commanderRelaxPriority -> crtpCommanderHighLevelTellState: the last state estimate."""
        self.hl.tell_state(*self._estimate(self.measured()))

    def _high_level(self, meas):
        """stabilizer.c: the high-level commander is blocked while the supervisor forbids flight; when it
        may fly, its setpoint (100 Hz) is offered at the high-level priority."""
        can_fly = self.supervisor.state in CAN_FLY
        self.hl.block(not can_fly)
        if can_fly and self.ticks % max(1, round(1.0 / (HL_RATE_HZ * self.dt))) == 0:
            sp = self.hl.setpoint(self.t, *self._estimate(meas))
            if sp is not None:
                self.commander.offer(sp, PRIORITY_HIGHLEVEL)
        self.supervisor.hl_bits = self.hl.info_bits(self.t)

    def _ground_contact(self):
        """A flat floor at z = 0: no penetration, no sliding, no tipping over."""
        x = self.x
        if x[2] >= 0.0:
            return
        x[2] = 0.0
        if x[9] < 0.0:
            x[7:10] = 0.0
            x[10:13] = 0.0
            _, _, yaw = quat_to_euler(*x[3:7])
            x[3:7] = (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))

    def _battery(self, u, dt):
        # ~2.2 A at hover (u ~ 0.67) for a 250 mAh cell: a few minutes of flight, as on the real one
        current = 0.1 + sum(1.8 * m ** 3 for m in u)
        self.battery_used_as += current * dt
        open_circuit = 4.2 - 0.9 * min(1.0, self.battery_used_as / BATTERY_CAPACITY_AS)
        self.vbat = open_circuit - BATTERY_R_OHM * current

    def _specific_force_body(self) -> np.ndarray:
        """What the accelerometer reads, in g, body frame (1 g up when resting level)."""
        qw, qx, qy, qz = self.x[3:7]
        f = self._acc_world + np.array([0.0, 0.0, self._pdict["gravity"]])
        rot = np.array([[1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qw * qz), 2 * (qx * qz + qw * qy)],
                        [2 * (qx * qy + qw * qz), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qw * qx)],
                        [2 * (qx * qz - qw * qy), 2 * (qy * qz + qw * qx), 1 - 2 * (qx * qx + qy * qy)]])
        return rot.T @ f / self._pdict["gravity"]

    def _on_supervisor_transition(self, old: int, new: int, now: float):
        messages = {LOCKED: "SUPERVISOR: Locked, reboot required\n", CRASHED: "SUPERVISOR: Crashed, recovery required\n"}
        if new in messages:
            self.console(messages[new])

    # ----------------------------------------------------------------------------------------
    # On-board app (the export issue's out-of-tree controller app, compiled for the host), see host_app.py
    # ----------------------------------------------------------------------------------------
    def _oot_active(self) -> bool:
        if self.onboard is None:
            return False
        ctrl = self.params_service.get("stabilizer.controller")
        if ctrl != self._controller_type:  # stabilizer.c: controllerInit() when the selected controller changes
            self._controller_type = ctrl
            if ctrl == CONTROLLER_OOT:
                self.onboard.init()
        return ctrl == CONTROLLER_OOT

    def onboard_reset(self):
        """Power-on of the app: a fresh copy of the compiled library; its appMain prints its boot line."""
        self._controller_type = None
        self._app_banner = ""
        if self.onboard_image is None:
            self.onboard = None
            return
        # With battery compensation (the firmware's default) a normalized force of 1 is the firmware's
        # per-motor maximum thrust; here that is the simulated rotor's, the platform's thrust_max.
        app = self.onboard_image.boot(max_thrust_n=4.0 * float(self._pdict["thrust_max"]))
        app.t_boot = self.t
        self._app_banner = app.app_main()
        self.onboard = app

    def _onboard_step(self, meas, f_body) -> list[float]:
        """The stabilizer ticks (1 kHz) inside this physics step: controllerOutOfTree with the state
        estimate (the measured state: position, velocity, quaternion x-y-z-w), the sensors (gyro in deg/s,
        accelerometer in g) and the commander's setpoint after the supervisor's override; a setpoint the
        app feeds the commander is the one the next tick gets. The last tick's forces drive the motors."""
        app, sup, st = self.onboard, self.supervisor, self._app_state
        x = meas
        st[0:3] = x[0:3]
        st[3:6] = x[7:10]
        st[6:9] = x[4:7]
        st[9] = x[3]
        st[10:13] = np.degrees(x[10:13])
        st[13:16] = f_body
        for tick in range(app.ms(self.t), app.ms(self.t + self.dt)):
            fed = app.step(tick, tick + 1, sup.motors_allowed, st, sup.override(self.commander.setpoint))
            if fed is not None:  # the app feeds at COMMANDER_PRIORITY_CRTP, which stops the high-level planner
                self.commander.offer(fed, PRIORITY_CRTP)
                self.hl.stop()
        if not sup.motors_allowed:
            return self.controller.motors_off()
        return self.controller.forces_to_motors(app.forces)

    # ----------------------------------------------------------------------------------------
    # Firmware variables (log TOC) and parameters
    # ----------------------------------------------------------------------------------------
    def _variables(self) -> dict:
        """The vehicle's loggable variables right now (computed on demand, once per tick)."""
        if self._snapshot_tick != self.ticks:
            self._snapshot, self._snapshot_tick = read_variables(self), self.ticks
        return self._snapshot

    def _build_tocs(self):
        # the app's log groups: its LOG_ADD variables, read from its compiled C
        extra = [(g, t & 0x0F, n) for g, n, t in self.onboard_image.log_vars] if self.onboard_image else ()
        self.logs = LogService(build_log_toc(extra), self._variables)
        self.params_service = ParamService(build_param_toc(self))

    # ----------------------------------------------------------------------------------------
    # Inspection (tests, the CLI)
    # ----------------------------------------------------------------------------------------
    def log_names(self) -> list[str]:
        return [v.full_name for v in self.logs.toc.items]

    def param_names(self) -> list[str]:
        return [p.full_name for p in self.params_service.toc.items]

    def param(self, name: str):
        with self._lock:
            return self.params_service.get(name)

    def set_param(self, name: str, value):
        with self._lock:
            return self.params_service.set(name, value)

    def variables(self) -> dict:
        with self._lock:
            return dict(self._variables())

    @property
    def supervisor_state(self) -> str:
        return STATE_NAMES[self.supervisor.state]

    def state(self) -> np.ndarray:
        with self._lock:
            return self.x.copy()

    def place(self, position=(0.0, 0.0, 0.0)):
        """Put the airframe at rest at position (a test fixture, not a firmware feature)."""
        with self._lock:
            self.x[:] = 0.0
            self.x[0:3] = position
            self.x[3] = 1.0

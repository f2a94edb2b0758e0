"""A simulated MAVLink vehicle that behaves like a minimal PX4 multicopter, flying edgectl's
Numba dynamics, so the bridge, the runtime and the HIL suite can be exercised without hardware.

What it does, PX4-style:
- HEARTBEAT 1 Hz (autopilot PX4, type quadrotor, PX4 custom mode, armed flag), SYS_STATUS 2 Hz
  (battery), ATTITUDE_QUATERNION 50 Hz, HIGHRES_IMU 50 Hz, LOCAL_POSITION_NED 30 Hz; rates in sim
  time, changeable with MAV_CMD_SET_MESSAGE_INTERVAL.
- COMMAND_LONG: COMPONENT_ARM_DISARM (disarm in the air needs the force code 21196, as in PX4),
  DO_SET_MODE (PX4 custom modes MANUAL, OFFBOARD, AUTO.LOITER, AUTO.LAND), SET_MESSAGE_INTERVAL;
  every command gets a COMMAND_ACK; SET_MODE (msg 11) too.
- OFFBOARD needs a recent setpoint first (newer than the offboard timeout, as PX4's offboardCheck.cpp),
  else TEMPORARILY_REJECTED and STATUSTEXT "Switching to Offboard is currently not available".
  Losing the stream for ``offboard_timeout`` (PX4: COM_OF_LOSS_T, 1 s) is a failsafe: AUTO.LAND
  (default) or AUTO.LOITER (altitude hold). Landed in AUTO.LAND -> disarm after 0.5 s (as "px4" and
  "ardupilot": what the real ones took, DISARM_AFTER_LANDING_S).
- Setpoints: SET_ATTITUDE_TARGET (attitude quaternion + thrust, or body rates + thrust; NED/FRD)
  through ``control.AttitudeController``; SET_ACTUATOR_CONTROL_TARGET group 0, controls[0..3] =
  the platform's motors M1..M4, 0..1 of full speed (this vehicle's convention: on real PX4 the
  meaning depends on the version, ArduPilot ignores the message).
- A direct-motor stream (actuator controls) is stale much sooner than an attitude one: a held motor
  command diverges within ~0.1 s. Its watchdog, checked every physics tick, has two stages:
  - ``actuator_timeout`` (6 ms): while the newest actuator setpoint is older than this, edgectl's backup
    controller (edgectl.safety.backup: level, hold, descend, land; the law the host's shield and the
    Crazyflie app fall back to) flies the motors, on the vehicle, since a lost link carries nothing.
    Not latched: setpoints back within ``actuator_latch`` fly again (the mode stays OFFBOARD). Each
    episode counts in ``counters["link_drops"]`` (and its ticks in ``"link_drop_ticks"``); the newest
    began at ``link_drop_at``. Why 6 ms: the host (runtime.links.MavlinkMotorLink) repeats its newest
    command every 2 ms between its 10 ms control periods (runtime.keepalive), so 6 ms of silence is
    three repeats missed, leaving 4 ms for the host's jitter, and the backup flies within one control
    period of a cut (the last repeat <= 2 ms before it, + 6 ms, + one 2 ms tick). A host late by more
    than that starts a short episode: benign (the backup holds a few ms, then hands back) and counted.
  - ``actuator_latch`` (0.1 s): silence this long is the failsafe: mode AUTO.LAND, the backup flying
    on (latched: it holds, then lands), ``failsafe_reason``, ``counters["failsafes"]``, a STATUSTEXT.
    ``failsafe_at`` is when the backup took over (the start of that episode), not when it latched.
  The backup's first command comes at the takeover tick, then one per platform control period (10 ms);
  while the host flies, its observers follow the motor stream, so a weak rotor is known at the switch.
  ``failsafe_at`` / ``link_drop_at`` / ``last_setpoint_t`` are sim s. Real PX4 cannot do this: its
  offboard-loss timeout (COM_OF_LOSS_T) is set in seconds and it carries no backup of ours; this
  vehicle is what a firmware with an on-board backup would do.
- Identity (``identity``): "edgectl" (default) is the vehicle above, which declares that it takes motor
  commands (parameter EDGECTL_MOTOR_IN = 1, AUTOPILOT_VERSION 0.0.0 with custom version "edgectl"). "px4"
  (``version``, default 1.15.0) and "ardupilot" (default 4.5.7, HEARTBEAT autopilot ARDUPILOTMEGA, Copter modes
  STABILIZE / GUIDED_NOGPS / ALT_HOLD / LAND) behave as those releases do toward a companion computer
  (firmware_bridge/mavlink/autopilots.py): both ignore SET_ACTUATOR_CONTROL_TARGET (counted in
  ``counters["ignored SET_ACTUATOR_CONTROL_TARGET"]``); PX4 leaves OFFBOARD after COM_OF_LOSS_T (param, default
  1 s) for COM_OBL_RC_ACT: 0 (default) POSCTL, which without RC descends at MPC_LAND_SPEED and disarms on the
  ground, as real PX4 SITL did; 5 Hold: AUTO.LOITER, holding; others AUTO.LAND; ArduPilot enters GUIDED_NOGPS without a
  stream, reads SET_ATTITUDE_TARGET.thrust as a climb rate unless GUID_OPTIONS has bit 3 (8), and after
  GUID_TIMEOUT (3 s) without setpoints levels and holds its altitude in GUIDED_NOGPS (``counters["guided_timeouts"]``).
  Every identity answers AUTOPILOT_VERSION (MAV_CMD_REQUEST_MESSAGE 148 or REQUEST_AUTOPILOT_CAPABILITIES) and
  PARAM_REQUEST_READ / PARAM_SET for its parameters (none other: a real autopilot does not answer an unknown name).
- Body-rate setpoints fly through the platform's [rate_controller] loop (edgectl/rate_control.py: the
  Crazyflie's, PX4's or ArduPilot's rate PID with their cited defaults and mixers), one tick per physics tick;
  a platform without one uses ``control.AttitudeController``.
- Signing: with a key, unsigned and wrong-key messages are dropped (``counters``).
- Faults, on request: ``loss`` (probability a message is lost, each direction), ``latency_s`` (one-way
  delay, each direction), ``cut_at`` / ``cut_for`` (sim time from which nothing passes either way, for
  how long), ``stuck_sensor`` / ``nan_sensor`` from ``sensor_fault_at`` (pos, x, y, z, vel, vx, vy, vz,
  quat, gyro: what the vehicle reports and its backup flies on, never the physics), ``weak_motor``
  ((motor 1..4, fraction of its thrust)).
- Malformed input: pymavlink's parser turns bad CRC / bad prefix / bad length into BAD_DATA,
  which is counted and ignored.

Time: everything (setpoint timeouts, stream rates, message timestamps) runs on sim time; ``speed``
is sim seconds per wall second (``speed <= 0``: as fast as the host allows). The physics, the link
reads and the watchdogs run at ``physics_hz`` (default 500 Hz), so a timeout is honoured to one
physics tick: the 6 ms motor-stream threshold needs ticks of 2 ms (``physics_hz=None``, the
platform's 100 Hz, would take the backup up to 10 ms later). A tick costs ~0.2 ms (one core of a
small host, flying or on the backup): 500 Hz is a tenth of a core in real time.
"""
from __future__ import annotations

import collections
import math
import select
import threading
import time
from dataclasses import dataclass

import numpy as np

from firmware_bridge.mavlink._mav import mavlink, mavutil
from .control import AttitudeController, level_with_yaw
from firmware_bridge.mavlink.frames import (enu_to_ned, flu_to_frd, frd_to_flu, quat_enu_flu_to_ned_frd,
                     quat_ned_frd_to_enu_flu, quat_mul)
from .physics import Battery, QuadPhysics, platform_params
from edgectl.plant import quadrotor as qd

MAIN_MANUAL, MAIN_ALTCTL, MAIN_POSCTL, MAIN_AUTO, MAIN_OFFBOARD = 1, 2, 3, 4, 6  # px4_custom_mode.h
SUB_LOITER, SUB_LAND = 3, 6
FORCE_DISARM = 21196  # PX4/ArduPilot magic param2 for disarming in the air
IDLE_THRUST = 0.05  # collective thrust fraction while armed and idle (PX4: spinning at idle)
LAND_SPEED = 0.7  # m/s, PX4 MPC_LAND_SPEED default
AP_LAND_SPEED = 0.5  # m/s, ArduCopter LAND_SPEED default (50 cm/s, below LAND_ALT_LOW); real SITL descended 0.52
# Touchdown to disarmed, s, from the real SITL builds (bench/autopilot_sitl.py land_and_wait, 2026-12-07): from the
# height estimate's first 5 cm to the first disarmed HEARTBEAT, PX4 v1.17.0-alpha1 took 3.4-3.8 s (AUTO.LAND and the
# no-stick descent below: its land detector's stages, then COM_DISARM_LAND 2 s), ArduCopter 4.7.0-dev 2.9-3.1 s in
# LAND. HEARTBEAT comes at 1 Hz, half a second late on average, and this vehicle's gear settles for ~0.2 s: hence
# 3.1 and 2.5 here (tests/test_autopilot_failsafes.py measures both the same way). The edgectl identity keeps 0.5 s.
DISARM_AFTER_LANDING_S = {"px4": 3.1, "ardupilot": 2.5}

# identity -> default version (AUTOPILOT_VERSION); "edgectl" reports 0.0.0 with custom version "edgectl"
IDENTITIES = {"edgectl": (0, 0, 0), "px4": (1, 15, 0), "ardupilot": (4, 5, 7)}
# ArduCopter custom modes (mavutil.mode_mapping_acm) <-> this vehicle's PX4-style modes
AP_STABILIZE, AP_ALT_HOLD, AP_LAND, AP_GUIDED_NOGPS = 0, 2, 9, 20

# stream name -> (message id, default rate Hz)
STREAMS = {
    "HEARTBEAT": (mavlink.MAVLINK_MSG_ID_HEARTBEAT, 1.0),
    "SYS_STATUS": (mavlink.MAVLINK_MSG_ID_SYS_STATUS, 2.0),
    "ATTITUDE_QUATERNION": (mavlink.MAVLINK_MSG_ID_ATTITUDE_QUATERNION, 50.0),
    "HIGHRES_IMU": (mavlink.MAVLINK_MSG_ID_HIGHRES_IMU, 50.0),
    "LOCAL_POSITION_NED": (mavlink.MAVLINK_MSG_ID_LOCAL_POSITION_NED, 30.0),
}
_STREAM_BY_ID = {mid: name for name, (mid, _) in STREAMS.items()}


def px4_custom_mode(main: int, sub: int = 0) -> int:
    return (main << 16) | (sub << 24)


@dataclass
class _Setpoint:
    kind: str  # "attitude" | "rates" | "actuators"
    quat: np.ndarray | None = None  # ENU/FLU
    rates: np.ndarray | None = None  # FLU
    thrust: float = 0.0
    controls: np.ndarray | None = None
    climb_rate: bool = False  # ArduPilot without GUID_OPTIONS bit 3: thrust is a climb rate, 0.5 = hold


PX4_COMMANDER_LOOP_S = 0.01  # src/modules/commander/Commander.hpp COMMANDER_MONITORING_INTERVAL (10 ms)

class SimVehicle:
    def __init__(self, uri: str = "udpin:127.0.0.1:14550", *, speed: float = 1.0,
                 signing_key: bytes | None = None, platform: str = "crazyflie_2_1",
                 params: np.ndarray | None = None, system_id: int = 1, component_id: int = 1,
                 offboard_timeout: float = 1.0, failsafe: str = "land", noise: bool = True,
                 seed: int = 0, battery: Battery | None = None, actuator_timeout: float = 0.006,
                 actuator_latch: float = 0.1,
                 loss: float = 0.0, latency_s: float = 0.0, cut_at: float | None = None, cut_for: float | None = None,
                 stuck_sensor: str | None = None, nan_sensor: str | None = None, sensor_fault_at: float = 0.0,
                 weak_motor: tuple[int, float] | None = None, physics_hz: float | None = 500.0,
                 identity: str = "edgectl", version: tuple[int, int, int] | None = None, parameters: dict | None = None):
        if identity not in IDENTITIES:
            raise ValueError(f"sim vehicle: identity must be one of {', '.join(IDENTITIES)}, got {identity!r}")
        if failsafe not in ("land", "hold", "descend_posctl", "descend_altctl"):
            raise ValueError(f"failsafe must be 'land', 'hold', 'descend_posctl' or 'descend_altctl', got {failsafe!r}")
        if not 0.0 < actuator_timeout <= actuator_latch:
            raise ValueError(f"sim vehicle: need 0 < actuator_timeout <= actuator_latch, "
                             f"got {actuator_timeout!r}, {actuator_latch!r}")
        if physics_hz is not None and not (physics_hz > 0 and math.isfinite(physics_hz)):
            raise ValueError(f"sim vehicle: physics_hz must be positive, got {physics_hz!r}")
        if signing_key is not None and len(signing_key) != 32:
            raise ValueError(f"{uri}: MAVLink 2 signing key must be 32 bytes, got {len(signing_key)}")
        self.uri, self.speed = uri, float(speed)
        self.system_id, self.component_id = system_id, component_id
        self.offboard_timeout, self.failsafe_action = float(offboard_timeout), failsafe
        # Mode names (as the HEARTBEAT shows them) this vehicle refuses, as an autopilot whose checks for them
        # fail: a test of clients that must not take the mode's first COMMAND_ACK for the answer.
        self.unavailable_modes: set[str] = set()
        # physics_hz: step the physics (and read the link) faster than the platform's control period. At
        # 100 Hz a host loop that is not in step with the vehicle flies on states up to a period old and
        # its commands wait up to a period: the hover policy, trained without delay, wobbled.
        params = np.array(params if params is not None else platform_params(platform), dtype=np.float64)
        control_dt = float(params[qd.PARAM_INDEX["dt"]])  # the platform's control period (its sim_rate)
        if physics_hz is not None:
            params[qd.PARAM_INDEX["dt"]] = 1.0 / physics_hz
        self.phys = QuadPhysics(params, battery)
        self.ctl = AttitudeController(self.phys.params)
        QuadPhysics(self.phys.params).step(-np.ones(4))  # load the Numba kernel now, not on the first tick
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        self._noise_std = self._platform_noise(platform) if noise else None
        try:
            self.conn = mavutil.mavlink_connection(uri, source_system=system_id, source_component=component_id)
        except (OSError, ValueError) as e:
            raise OSError(f"sim vehicle: cannot open {uri}: {e}") from e
        if signing_key is not None:
            self.conn.setup_signing(bytes(signing_key), sign_outgoing=True, allow_unsigned_callback=None, link_id=0)
        self.armed = False
        self.main_mode, self.sub_mode = MAIN_MANUAL, 0
        self.failsafe_reason: str | None = None
        self.counters = collections.Counter()
        self._setpoint: _Setpoint | None = None
        self._setpoint_times: collections.deque[float] = collections.deque(maxlen=64)
        self._hold_z = 0.0
        self._peers: set[tuple[int, int]] = set()
        self._landed_time = 0.0
        self._interval = {name: 1.0 / hz for name, (_, hz) in STREAMS.items()}
        self._next_due = {name: 0.0 for name in STREAMS}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.actuator_timeout, self.actuator_latch = float(actuator_timeout), float(actuator_latch)
        from edgectl.safety.backup import BackupController, model_from_params
        # the backup runs at the platform's control rate (its observers and motor model are tuned per 10 ms
        # period), holding its command in between, as a policy's is held
        self._backup_every = max(1, round(control_dt / self.phys.dt))
        self._backup_tick = 0  # ticks since the backup took over or handed back: it steps / observes on multiples
        self._backup_action = None
        self.backup = BackupController(model_from_params(qd.params_as_dict(self.phys.params), dt=self._backup_every * self.phys.dt))
        self.backup_active = False  # flying the motors: a paused motor stream (OFFBOARD) or the failsafe (AUTO.LAND)
        self.failsafe_at: float | None = None
        self.link_drop_at: float | None = None
        self.last_setpoint_t: float | None = None
        self._faults(loss, latency_s, cut_at, cut_for, stuck_sensor, nan_sensor, sensor_fault_at, weak_motor)
        self._identify(identity, version, parameters, platform)

    # ------------------------------------------------------------------ identity, parameters, rate loop
    def _identify(self, identity, version, parameters, platform) -> None:
        from firmware_bridge.mavlink.autopilots import GUID_OPTIONS_THRUST, MOTOR_PARAM, OFFBOARD_LOSS  # noqa: F401
        self.identity = identity
        self.version = tuple(version) if version is not None else IDENTITIES[identity]
        table = {"edgectl": {MOTOR_PARAM: 1.0, "COM_OF_LOSS_T": self.offboard_timeout},
                 "px4": {"COM_OF_LOSS_T": self.offboard_timeout, "COM_OBL_RC_ACT": 0.0},
                 "ardupilot": {"GUID_OPTIONS": 0.0, "GUID_TIMEOUT": 3.0}}[identity]
        for k, v in (parameters or {}).items():
            if k not in table:
                raise ValueError(f"sim vehicle ({identity}): unknown parameter {k!r}; known: {', '.join(table)}")
            table[k] = float(v)
        self.parameters = table
        self._apply_parameters()
        self.rate_loop, self._pid, self._pid_active = None, None, False
        try:
            from edgectl.platforms import load_platform
            from edgectl.rate_control import from_platform
            self.rate_loop = from_platform(load_platform(platform))
        except (ValueError, OSError):  # params given directly, or a platform without [rate_controller]
            self.rate_loop = None
        self.guided_timed_out = False

    def _apply_parameters(self) -> None:
        p = self.parameters
        if "COM_OF_LOSS_T" in p:
            self.offboard_timeout = p["COM_OF_LOSS_T"]
        if self.identity == "px4":
            # COM_OBL_RC_ACT (PX4 failsafe.cpp fromOffboardLossActParam): 0 Position and 1 Altitude need sticks; this
            # vehicle has no RC, and real PX4 SITL without one (v1.17.0-alpha1, tests/data/autopilot_sitl_setpoint_loss.json)
            # showed POSCTL while its flight-mode manager, the position task unable to run, fell back to its Descend
            # task: level, heading kept, down at MPC_LAND_SPEED, then disarmed on the ground. 5 Hold: AUTO.LOITER,
            # holding (measured too). 2 Stabilized, 3 Return, 4 Land, 6 Terminate, 7 Disarm: land here (not measured).
            act = int(p["COM_OBL_RC_ACT"])
            self.failsafe_action = {0: "descend_posctl", 1: "descend_altctl", 5: "hold"}.get(act, "land")
        if self.identity == "ardupilot":
            self.offboard_timeout = p["GUID_TIMEOUT"]

    # ------------------------------------------------------------------ fault injection
    SENSORS = {"x": (0, [0]), "y": (0, [1]), "z": (0, [2]), "pos": (0, [0, 1, 2]), "vx": (1, [0]), "vy": (1, [1]),
               "vz": (1, [2]), "vel": (1, [0, 1, 2]), "quat": (2, [0, 1, 2, 3]), "gyro": (3, [0, 1, 2])}

    def _faults(self, loss, latency_s, cut_at, cut_for, stuck_sensor, nan_sensor, sensor_fault_at, weak_motor):
        if not 0.0 <= loss < 1.0:
            raise ValueError(f"sim vehicle: loss must be a probability in [0, 1), got {loss!r}")
        if not (latency_s >= 0.0 and math.isfinite(latency_s)):
            raise ValueError(f"sim vehicle: latency_s must be >= 0 s, got {latency_s!r}")
        for name, sensor in (("stuck_sensor", stuck_sensor), ("nan_sensor", nan_sensor)):
            if sensor is not None and sensor not in self.SENSORS:
                raise ValueError(f"sim vehicle: {name} {sensor!r}: expected one of {', '.join(self.SENSORS)}")
        if weak_motor is not None:
            m, k = weak_motor
            if int(m) not in (1, 2, 3, 4) or not 0.0 <= float(k) <= 1.0:
                raise ValueError(f"sim vehicle: weak_motor {weak_motor!r}: expected (motor 1..4, thrust fraction 0..1)")
            weak_motor = (int(m), float(k))
        self.loss, self.latency_s, self.cut_at, self.cut_for = float(loss), float(latency_s), cut_at, cut_for
        self.stuck_sensor, self.nan_sensor = stuck_sensor, nan_sensor
        self.sensor_fault_at, self.weak_motor = float(sensor_fault_at), weak_motor
        self._fault_rng = np.random.default_rng(self.rng.integers(1 << 31))
        self._stuck = None
        self._in_delay: collections.deque = collections.deque()
        self._out_delay: collections.deque = collections.deque()
        self._commander_acks: collections.deque = collections.deque()  # (sim time due, COMMAND_ACK arguments)
        mav = self.conn.mav
        self._mav_send = mav.send
        mav.send = self._send_filtered  # every *_send of this connection goes through here

    def link_cut(self) -> bool:
        if self.cut_at is None or self.phys.t < self.cut_at:
            return False
        return self.cut_for is None or self.phys.t < self.cut_at + self.cut_for

    def _lost(self) -> bool:
        return self.link_cut() or (self.loss > 0.0 and self._fault_rng.random() < self.loss)

    def _send_filtered(self, msg, force_mavlink1=False):
        if self._lost():
            self.counters["dropped_out"] += 1
            return
        if self.latency_s > 0.0:
            self._out_delay.append((self.phys.t + self.latency_s, msg))
            return
        self._mav_send(msg, force_mavlink1=force_mavlink1)

    def measured(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(pos, vel, quat, omega) as the vehicle's estimator reports them: the truth with the injected
        sensor faults."""
        p = self.phys
        out = [p.pos.copy(), p.vel.copy(), p.quat.copy(), p.omega.copy()]
        if (self.stuck_sensor is None and self.nan_sensor is None) or p.t < self.sensor_fault_at:
            return tuple(out)
        if self.stuck_sensor is not None:
            k, idx = self.SENSORS[self.stuck_sensor]
            if self._stuck is None:
                self._stuck = out[k][idx].copy()
            out[k][idx] = self._stuck
        if self.nan_sensor is not None:
            k, idx = self.SENSORS[self.nan_sensor]
            out[k][idx] = np.nan
        return tuple(out)

    # ------------------------------------------------------------------ lifecycle
    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the vehicle listens on (udpin/tcpin) or sends to (udpout/tcp)."""
        c = self.conn
        if hasattr(c, "listen"):  # tcpin
            return c.listen.getsockname()[:2]
        if getattr(c, "udp_server", False):  # udpin
            return c.port.getsockname()[:2]
        return c.destination_addr  # udpout, tcp

    def start(self) -> "SimVehicle":
        self._thread = threading.Thread(target=self._run_guarded, name=f"sim-vehicle {self.uri}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self.conn.close()
        if self.error is not None:
            raise RuntimeError(f"sim vehicle on {self.uri} failed: {self.error!r}") from self.error

    def __enter__(self) -> "SimVehicle":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def run(self, duration: float | None = None) -> None:
        """Run in this thread for ``duration`` sim seconds (None: until ``stop`` or Ctrl-C)."""
        self._run(duration)

    def _run_guarded(self) -> None:
        try:
            self._run(None)
        except BaseException as e:  # noqa: BLE001  surfaced by stop()
            self.error = e

    def _run(self, duration: float | None) -> None:
        next_wall = time.monotonic()
        t_end = None if duration is None else self.phys.t + duration
        while not self._stop.is_set() and (t_end is None or self.phys.t < t_end - 1e-9):
            self.tick()
            if self.speed > 0:
                next_wall += self.phys.dt / self.speed
                delay = next_wall - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                elif delay < -min(0.02, 0.5 * self.actuator_timeout):
                    # Too far behind (descheduled): run late rather than in bursts. A burst advances sim
                    # time with no new message from the host, and as much as the motor-stream threshold
                    # of it starts the backup (50 ms of it latched the failsafe on a loaded 2-core host).
                    next_wall = time.monotonic()

    # ------------------------------------------------------------------ one step
    def tick(self) -> None:
        self._receive()
        self._supervise()
        action = self._control()
        if self.weak_motor is not None:  # thrust ~ speed^2: a rotor giving k of its thrust turns sqrt(k) as fast
            m, k = self.weak_motor
            action = np.array(action, dtype=np.float64)
            mmin = self.phys.params[qd.PARAM_INDEX["motor_min"]]
            u = mmin + (action[m - 1] + 1.0) * 0.5 * (1.0 - mmin)
            action[m - 1] = 2.0 * (mmin + (u - mmin) * math.sqrt(k) - mmin) / (1.0 - mmin) - 1.0
        with self._lock:
            self.phys.step(action)
        self._publish()

    @property
    def mode_name(self) -> str:
        if getattr(self, "identity", "edgectl") == "ardupilot":
            return mavutil.mode_mapping_acm[self._ardupilot_mode()]
        return mavutil.interpret_px4_mode(0, px4_custom_mode(self.main_mode, self.sub_mode))

    def snapshot(self) -> dict:
        """Ground truth, edgectl frames: t (sim s), pos/vel (ENU), quat (ENU/FLU), omega (FLU)."""
        with self._lock:
            p = self.phys
            return {"t": p.t, "pos": p.pos.copy(), "vel": p.vel.copy(), "quat": p.quat.copy(),
                    "omega": p.omega.copy(), "armed": self.armed, "mode": self.mode_name}

    # ------------------------------------------------------------------ input
    def _receive(self) -> None:
        for _ in range(500):  # bounded: a flood must not stall the physics
            try:
                m = self.conn.recv_msg()
            except (OSError, ValueError) as e:
                self.counters["receive_errors"] += 1
                self.counters[f"receive_error {type(e).__name__}"] += 1
                return
            if m is None:
                fd = getattr(self.conn, "fd", None)
                if fd is None or not select.select([fd], [], [], 0)[0]:
                    break
                continue
            if self._lost():
                self.counters["dropped_in"] += 1
            elif self.latency_s > 0.0:
                self._in_delay.append((self.phys.t + self.latency_s, m))
            else:
                self._handle(m)
        while self._in_delay and self._in_delay[0][0] <= self.phys.t:
            self._handle(self._in_delay.popleft()[1])
        while self._out_delay and self._out_delay[0][0] <= self.phys.t:
            self._mav_send(self._out_delay.popleft()[1])
        while self._commander_acks and self._commander_acks[0][0] <= self.phys.t:
            self.conn.mav.command_ack_send(*self._commander_acks.popleft()[1])

    def _for_us(self, m) -> bool:
        return getattr(m, "target_system", 0) in (0, self.system_id)

    def _handle(self, m) -> None:
        mtype = m.get_type()
        if mtype == "BAD_DATA":
            reason = getattr(m, "reason", "")
            self.counters["rejected_signature" if "signature" in reason else "bad_frames"] += 1
            return
        self.counters[f"rx {mtype}"] += 1
        if mtype == "HEARTBEAT":
            src = (m.get_srcSystem(), m.get_srcComponent())
            if src not in self._peers:  # answer a new ground station at once, not up to 1 s later
                self._peers.add(src)
                self._send_heartbeat()
        elif mtype == "COMMAND_LONG" and self._for_us(m):
            self._command(m)
        elif mtype == "SET_MODE" and self._for_us(m):
            self._set_custom_mode(m.custom_mode)
        elif mtype == "SET_ATTITUDE_TARGET" and self._for_us(m):
            self._attitude_target(m)
        elif mtype in ("PARAM_REQUEST_READ", "PARAM_SET") and self._for_us(m):
            self._param_message(m)
        elif mtype == "SET_ACTUATOR_CONTROL_TARGET" and self.identity != "edgectl":
            self.counters["ignored SET_ACTUATOR_CONTROL_TARGET"] += 1  # PX4 >= 1.14 and ArduPilot drive no motor from it
        elif mtype == "SET_ACTUATOR_CONTROL_TARGET" and self._for_us(m) and m.group_mlx == 0:
            u = np.asarray(m.controls[:4], dtype=np.float64)
            if np.all(np.isfinite(u)):
                self._new_setpoint(_Setpoint("actuators", controls=np.clip(u, 0.0, 1.0)))
            else:
                self.counters["rejected_setpoints"] += 1

    def _attitude_target(self, m) -> None:
        mask = m.type_mask
        q = np.asarray(m.q, dtype=np.float64)
        rates = np.array([m.body_roll_rate, m.body_pitch_rate, m.body_yaw_rate])
        thrust = float(m.thrust)
        use_att = not mask & mavlink.ATTITUDE_TARGET_TYPEMASK_ATTITUDE_IGNORE
        ok = math.isfinite(thrust) and 0.0 <= thrust <= 1.0 and not (
            mask & mavlink.ATTITUDE_TARGET_TYPEMASK_THROTTLE_IGNORE)
        if use_att:
            ok = ok and np.all(np.isfinite(q)) and np.linalg.norm(q) > 0.5
        else:
            rates = np.where([mask & 1, mask & 2, mask & 4], 0.0, rates)
            ok = ok and np.all(np.isfinite(rates))
        if not ok:
            self.counters["rejected_setpoints"] += 1
            return
        climb = self.identity == "ardupilot" and not int(self.parameters["GUID_OPTIONS"]) & 8
        if use_att:
            self._new_setpoint(_Setpoint("attitude", quat=quat_ned_frd_to_enu_flu(q), thrust=thrust, climb_rate=climb))
        else:
            self._new_setpoint(_Setpoint("rates", rates=frd_to_flu(rates), thrust=thrust, climb_rate=climb))

    def _new_setpoint(self, sp: _Setpoint) -> None:
        self._setpoint = sp
        self._setpoint_times.append(self.phys.t)
        self.last_setpoint_t = self.phys.t
        self.counters["setpoints"] += 1

    def _motor_stream(self) -> bool:
        return self._setpoint is not None and self._setpoint.kind == "actuators"

    def _setpoint_age(self) -> float:
        # sim time is a sum of ticks: a margin keeps "older than 6 ms" from flipping on rounding
        return self.phys.t - self._setpoint_times[-1] - 1e-9 if self._setpoint_times else math.inf

    def _stream_fresh(self) -> bool:
        """Not yet the failsafe (the motor stream's short pauses fly the backup, see _supervise)."""
        return self._setpoint_age() <= (self.actuator_latch if self._motor_stream() else self.offboard_timeout)

    def _stream_alive(self) -> bool:
        """PX4's condition to enter OFFBOARD (HealthAndArmingChecks/checks/offboardCheck.cpp): a setpoint newer than
        COM_OF_LOSS_T. One is enough: real PX4 SITL (v1.17.0-alpha1) entered OFFBOARD on a single setpoint sent 0.2 s
        before and stayed in LOITER with none ("Switching to Offboard is currently not available"). The "> 2 Hz" of
        PX4's docs is advice for staying in OFFBOARD, not a check."""
        return self._stream_fresh()

    # ------------------------------------------------------------------ commands
    def _command(self, m) -> None:
        cmd = m.command
        if cmd == mavlink.MAV_CMD_COMPONENT_ARM_DISARM:
            result = self._arm(m.param1 > 0.5, force=int(round(m.param2)) == FORCE_DISARM)
        elif cmd == mavlink.MAV_CMD_DO_SET_MODE:
            if self.identity == "px4":
                # PX4's MAVLink receiver acknowledges the command as it hands it on (mavlink_receiver.cpp
                # handle_message_command_both: result starts ACCEPTED, DO_SET_MODE keeps send_ack); the commander's
                # answer below is a second ACK. Real PX4 SITL answered a refused OFFBOARD switch this way.
                self.conn.mav.command_ack_send(cmd, mavlink.MAV_RESULT_ACCEPTED, 0, 0, m.get_srcSystem(),
                                               m.get_srcComponent())
            if not int(m.param1) & mavlink.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED:
                result = mavlink.MAV_RESULT_UNSUPPORTED
            elif self.identity == "ardupilot":
                result = self._set_custom_mode(int(m.param2))
            else:
                result = self._set_mode(int(m.param2), int(m.param3))
        elif cmd in (mavlink.MAV_CMD_REQUEST_MESSAGE, mavlink.MAV_CMD_REQUEST_AUTOPILOT_CAPABILITIES):
            wanted = cmd == mavlink.MAV_CMD_REQUEST_AUTOPILOT_CAPABILITIES or int(m.param1) == mavlink.MAVLINK_MSG_ID_AUTOPILOT_VERSION
            result = mavlink.MAV_RESULT_ACCEPTED if wanted else mavlink.MAV_RESULT_UNSUPPORTED
            if wanted:
                self.conn.mav.command_ack_send(cmd, result, 0, 0, m.get_srcSystem(), m.get_srcComponent())
                self._send_autopilot_version()
                return
        elif cmd == mavlink.MAV_CMD_SET_MESSAGE_INTERVAL:
            result = self._set_interval(int(m.param1), m.param2)
        else:
            result = mavlink.MAV_RESULT_UNSUPPORTED
        ack = (cmd, result, 0, 0, m.get_srcSystem(), m.get_srcComponent())
        if cmd == mavlink.MAV_CMD_DO_SET_MODE and self.identity == "px4":
            # the commander answers from its own loop, after the receiver's ACCEPTED: up to one idle sleep later
            # (Commander.cpp: px4_usleep(COMMANDER_MONITORING_INTERVAL), 10 ms)
            self._commander_acks.append((self.phys.t + PX4_COMMANDER_LOOP_S, ack))
            return
        self.conn.mav.command_ack_send(*ack)

    def _arm(self, arm: bool, force: bool) -> int:
        if arm:
            if self.identity == "px4" and self.main_mode == MAIN_OFFBOARD and not self._stream_alive():
                # PX4 arms only in a mode that can run (Commander arm(): TEMPORARILY_REJECTED)
                self._statustext("Arming denied: Offboard mode without a setpoint stream")
                return mavlink.MAV_RESULT_TEMPORARILY_REJECTED
            self.armed = True
            self._landed_time = 0.0
            return mavlink.MAV_RESULT_ACCEPTED
        if not self.phys.on_ground and not force:
            self._statustext("Disarming denied: not landed")
            return mavlink.MAV_RESULT_DENIED
        self.armed = False
        return mavlink.MAV_RESULT_ACCEPTED

    def _set_custom_mode(self, custom: int) -> int:
        if self.identity != "ardupilot":
            return self._set_mode((custom >> 16) & 0xFF, (custom >> 24) & 0xFF)
        if mavutil.mode_mapping_acm.get(int(custom)) in self.unavailable_modes:
            return mavlink.MAV_RESULT_FAILED  # GCS_Common.cpp GCS_MAVLINK::_set_mode_common: set_mode() false
        mapped = {AP_STABILIZE: (MAIN_MANUAL, 0), AP_GUIDED_NOGPS: (MAIN_OFFBOARD, 0), AP_LAND: (MAIN_AUTO, SUB_LAND),
                  AP_ALT_HOLD: (MAIN_AUTO, SUB_LOITER)}.get(int(custom))
        return mavlink.MAV_RESULT_UNSUPPORTED if mapped is None else self._set_mode(*mapped)

    def _set_mode(self, main: int, sub: int) -> int:
        name = mavutil.interpret_px4_mode(0, px4_custom_mode(main, sub))
        if self.identity != "ardupilot" and name in self.unavailable_modes:  # a failing check (PX4's words)
            self._statustext(f"Switching to {name.title()} is currently not available")
            return mavlink.MAV_RESULT_TEMPORARILY_REJECTED
        if main == MAIN_OFFBOARD:
            # ArduPilot enters GUIDED_NOGPS without a stream; PX4 any mode while disarmed (UserModeIntention::change)
            disarmed_px4 = self.identity == "px4" and not self.armed
            if self.identity != "ardupilot" and not disarmed_px4 and not self._stream_alive():
                self._statustext("Switching to Offboard is currently not available")
                return mavlink.MAV_RESULT_TEMPORARILY_REJECTED
        elif not (main == MAIN_MANUAL or (main == MAIN_AUTO and sub in (SUB_LOITER, SUB_LAND))):
            return mavlink.MAV_RESULT_UNSUPPORTED
        self.main_mode, self.sub_mode = main, (sub if main == MAIN_AUTO else 0)
        self._hold_z = float(self.phys.pos[2])
        self.failsafe_reason = None
        self.backup_active = False
        self.guided_timed_out = False
        return mavlink.MAV_RESULT_ACCEPTED

    def _set_interval(self, msg_id: int, interval_us: float) -> int:
        name = _STREAM_BY_ID.get(msg_id)
        if name is None or not math.isfinite(interval_us):
            return mavlink.MAV_RESULT_UNSUPPORTED
        if interval_us < 0:
            self._interval[name] = math.inf
        elif interval_us == 0:
            self._interval[name] = 1.0 / STREAMS[name][1]
        else:
            self._interval[name] = max(interval_us * 1e-6, self.phys.dt)
        self._next_due[name] = self.phys.t
        return mavlink.MAV_RESULT_ACCEPTED

    # ------------------------------------------------------------------ behaviour
    def _supervise(self) -> None:
        motors = self._motor_stream()
        if self.main_mode == MAIN_OFFBOARD:  # here the backup flies only while the motor stream pauses
            paused = motors and self._setpoint_age() > self.actuator_timeout
            if paused and not self.backup_active:  # not latched yet: the stream may come back
                self.counters["link_drops"] += 1
                self.link_drop_at = self.phys.t
                self.backup_active, self._backup_tick = True, 0  # its first command at this tick
                self.backup.engage(self.measured()[0])  # hold where levelling ends
            elif not paused and self.backup_active:
                self.backup_active, self._backup_tick = False, 0  # the host flies again
            self.counters["link_drop_ticks"] += self.backup_active
        if self.identity == "ardupilot":
            # GUID_TIMEOUT: no mode change; level, zero rates, hold altitude until setpoints come back
            late = self.main_mode == MAIN_OFFBOARD and not self._stream_fresh()
            if late and not self.guided_timed_out:
                self.counters["guided_timeouts"] += 1
                self._hold_z = float(self.phys.pos[2])
            self.guided_timed_out = late
        elif self.main_mode == MAIN_OFFBOARD and not self._stream_fresh() and (self.armed or self.identity != "px4"):
            self.counters["failsafes"] += 1
            if motors or self.failsafe_action == "land":
                self._set_mode(MAIN_AUTO, SUB_LAND)
            elif self.failsafe_action == "hold":
                self._set_mode(MAIN_AUTO, SUB_LOITER)
            else:  # Position / Altitude mode without sticks: their task cannot run, PX4 descends (see _apply_parameters)
                self.main_mode, self.sub_mode = (MAIN_POSCTL if self.failsafe_action == "descend_posctl" else MAIN_ALTCTL), 0
                self.guided_timed_out = False
            self.failsafe_reason = "offboard setpoints lost"
            self.failsafe_at = self.phys.t
            if motors:
                # the backup has flown since the pause began: it flies on, latched, from where it is
                self.backup_active, self.failsafe_at = True, self.link_drop_at
                self._statustext("Failsafe: motor setpoints lost, backup controller lands")
            else:
                self._statustext("Failsafe: offboard setpoints lost, " + {"land": "landing", "hold": "holding altitude"}.get(
                    self.failsafe_action, "no manual control: descending"))
        descending = (self.main_mode == MAIN_AUTO and self.sub_mode == SUB_LAND) or self.main_mode in (MAIN_POSCTL, MAIN_ALTCTL)
        if self.armed and descending and self.phys.on_ground:
            self._landed_time += self.phys.dt
            if self._landed_time >= DISARM_AFTER_LANDING_S.get(self.identity, 0.5):
                self.armed = False
                self._statustext("Landing detected, disarmed")

    def _control(self) -> np.ndarray:
        sp = self._setpoint
        flying_rates = (self.armed and self.main_mode == MAIN_OFFBOARD and not self.backup_active and not self.guided_timed_out
                        and sp is not None and sp.kind == "rates")
        if not flying_rates:
            self._pid_active = False  # the rate loop starts afresh (integrators reset) when rates fly again
        return self._control_inner()

    def _control_inner(self) -> np.ndarray:
        p, ctl = self.phys, self.ctl
        if not self.armed:
            return -np.ones(4)
        pos, vel, quat, omega = self.measured()
        if self.backup_active:  # one command per control period, the first at the takeover tick
            if self._backup_tick % self._backup_every == 0:
                self._backup_action = self.backup(pos, quat, vel, omega)
            self._backup_tick += 1
            return self._backup_action
        if self.main_mode == MAIN_OFFBOARD and self.guided_timed_out:
            vz_des = float(np.clip(1.0 * (self._hold_z - p.pos[2]), -1.0, 1.0))
            return ctl.attitude(quat, omega, level_with_yaw(quat), self._vertical_thrust(vz_des))
        if self.main_mode == MAIN_OFFBOARD and self._setpoint is not None:
            sp = self._setpoint
            thrust = sp.thrust
            if sp.climb_rate:  # ArduPilot: (thrust - 0.5) * 2 of WPNAV_SPEED_UP 2.5 m/s / WPNAV_SPEED_DN 1.5 m/s
                vz_des = (sp.thrust - 0.5) * 2.0 * (2.5 if sp.thrust >= 0.5 else 1.5)
                thrust = self._vertical_thrust(vz_des)
            if sp.kind == "attitude":
                return ctl.attitude(quat, omega, sp.quat, thrust)
            if sp.kind == "rates":
                if self.rate_loop is None:
                    return ctl.motor_actions(omega, sp.rates, thrust)
                return self._rate_loop_action(omega, sp.rates, thrust if not sp.climb_rate else self._firmware_thrust(thrust))
            a = 2.0 * sp.controls - 1.0
            if self._backup_tick % self._backup_every == 0:
                self.backup.observe(quat, vel, omega, a)
            self._backup_tick += 1
            return a
        if self.main_mode in (MAIN_POSCTL, MAIN_ALTCTL):  # no sticks: PX4's Descend task (level, heading kept)
            return ctl.attitude(p.quat, p.omega, level_with_yaw(p.quat), self._vertical_thrust(-LAND_SPEED))
        if self.main_mode == MAIN_AUTO:
            if self.sub_mode == SUB_LAND:
                vz_des = -(AP_LAND_SPEED if self.identity == "ardupilot" else LAND_SPEED)
            else:
                vz_des = float(np.clip(1.0 * (self._hold_z - p.pos[2]), -1.0, 1.0))
            return ctl.attitude(p.quat, p.omega, level_with_yaw(p.quat), self._vertical_thrust(vz_des))
        return ctl.motor_actions(p.omega, np.zeros(3), IDLE_THRUST)

    def _rate_loop_action(self, omega, rates, thrust) -> np.ndarray:
        """The platform's cited rate loop, one tick per physics tick; re-initialized when it starts flying."""
        from edgectl import rate_control as rc
        if not self._pid_active or self._pid is None:
            self._pid = rc.pid_init(self.rate_loop, np.asarray(omega, np.float64))
        self._pid_active = True
        out, self._pid = rc.pid_step(self.rate_loop, self._pid, np.clip(rates, -30.0, 30.0), omega, self.phys.dt)
        u = rc.mix(self.rate_loop, float(np.clip(thrust, 0.0, 1.0)), out)
        return 2.0 * u - 1.0

    def _firmware_thrust(self, fraction: float) -> float:
        """The rate loop's thrust setpoint for a collective of ``fraction`` of the maximum thrust."""
        from edgectl import rate_control as rc
        from edgectl.platforms import motor_for_fraction
        i = qd.PARAM_INDEX
        u = motor_for_fraction(fraction, self.phys.params[i["thrust_shape_0"]], self.phys.params[i["thrust_shape_1"]])
        return float(rc.thrust_setpoint_for_motor(self.rate_loop, u))

    def _vertical_thrust(self, vz_des: float) -> float:
        p = self.phys
        qw, qx, qy, qz = p.quat
        r22 = max(1 - 2 * (qx * qx + qy * qy), 0.5)
        accel = 2.0 * (vz_des - p.vel[2])
        return p.hover_thrust_fraction() * (1.0 + accel / p.gravity) / r22

    # ------------------------------------------------------------------ output
    def _publish(self) -> None:
        t = self.phys.t
        for name in STREAMS:
            if t + 1e-9 >= self._next_due[name]:
                self._next_due[name] = max(self._next_due[name] + self._interval[name], t)
                getattr(self, f"_send_{name.lower()}")()

    def _ardupilot_mode(self) -> int:
        if self.main_mode == MAIN_OFFBOARD:
            return AP_GUIDED_NOGPS
        if self.main_mode == MAIN_AUTO:
            return AP_LAND if self.sub_mode == SUB_LAND else AP_ALT_HOLD
        return AP_STABILIZE

    def _send_heartbeat(self) -> None:
        status = (mavlink.MAV_STATE_CRITICAL if self.failsafe_reason else
                  mavlink.MAV_STATE_ACTIVE if self.armed else mavlink.MAV_STATE_STANDBY)
        armed = mavlink.MAV_MODE_FLAG_SAFETY_ARMED if self.armed else 0
        if self.identity == "ardupilot":
            base = mavlink.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED | mavlink.MAV_MODE_FLAG_STABILIZE_ENABLED | armed
            self.conn.mav.heartbeat_send(mavlink.MAV_TYPE_QUADROTOR, mavlink.MAV_AUTOPILOT_ARDUPILOTMEGA, base,
                                         self._ardupilot_mode(), status)
            return
        base = mavutil.px4_map.get(self.mode_name, (mavlink.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED,))[0] | armed
        self.conn.mav.heartbeat_send(mavlink.MAV_TYPE_QUADROTOR, mavlink.MAV_AUTOPILOT_PX4, base,
                                     px4_custom_mode(self.main_mode, self.sub_mode), status)

    def _send_autopilot_version(self) -> None:
        from firmware_bridge.mavlink.autopilots import encode_version
        caps = (mavlink.MAV_PROTOCOL_CAPABILITY_MAVLINK2 | mavlink.MAV_PROTOCOL_CAPABILITY_SET_ATTITUDE_TARGET
                | mavlink.MAV_PROTOCOL_CAPABILITY_PARAM_FLOAT | mavlink.MAV_PROTOCOL_CAPABILITY_COMMAND_INT)
        custom = list(b"edgectl\x00") if self.identity == "edgectl" else [0] * 8
        self.conn.mav.autopilot_version_send(caps, encode_version(*self.version), 0, 0, 0, custom, [0] * 8, [0] * 8,
                                             0, 0, 0)

    def _param_message(self, m) -> None:
        name = m.param_id.decode(errors="replace") if isinstance(m.param_id, bytes) else str(m.param_id)
        name = name.rstrip("\x00")
        if name not in self.parameters:
            self.counters["unknown parameter"] += 1
            return  # as PX4 and ArduPilot: no answer for a name they do not have
        if m.get_type() == "PARAM_SET" and math.isfinite(m.param_value):
            self.parameters[name] = float(m.param_value)
            self._apply_parameters()
        names = list(self.parameters)
        self.conn.mav.param_value_send(name.encode(), self.parameters[name], mavlink.MAV_PARAM_TYPE_REAL32,
                                       len(names), names.index(name))

    def _send_sys_status(self) -> None:
        b = self.phys.battery
        sensors = (mavlink.MAV_SYS_STATUS_SENSOR_3D_GYRO | mavlink.MAV_SYS_STATUS_SENSOR_3D_ACCEL
                   | mavlink.MAV_SYS_STATUS_SENSOR_ABSOLUTE_PRESSURE | mavlink.MAV_SYS_STATUS_SENSOR_BATTERY)
        self.conn.mav.sys_status_send(sensors, sensors, sensors, 0, int(b.voltage * 1000),
                                      int(b.current_a * 100), int(round(100 * b.remaining)),
                                      0, self.counters["bad_frames"] % 65536, 0, 0, 0, 0)

    def _send_attitude_quaternion(self) -> None:
        _, _, q, w = self.measured()
        if self._noise_std is not None:
            s = self._noise_std
            dq = np.concatenate([[1.0], 0.5 * self.rng.normal(0, s["orientation"], 3)])
            q = quat_mul(q, dq / np.linalg.norm(dq))
            w = w + self.rng.normal(0, s["omega"], 3)
        # a NaN attitude (an injected sensor fault) goes out as NaN, as an estimator that lost it would send it
        qn = quat_enu_flu_to_ned_frd(q) if np.all(np.isfinite(q)) else np.full(4, np.nan)
        wn = flu_to_frd(w)
        self.conn.mav.attitude_quaternion_send(self._boot_ms(), *(float(c) for c in qn), *(float(c) for c in wn))

    def _send_highres_imu(self) -> None:
        p = self.phys
        acc, gyro = flu_to_frd(p.specific_force_body()), flu_to_frd(self.measured()[3])
        if self._noise_std is not None:
            acc = acc + self.rng.normal(0, 0.05, 3)
            gyro = gyro + self.rng.normal(0, self._noise_std["omega"], 3)
        alt = float(p.pos[2])
        pressure = 1013.25 * (1.0 - 2.25577e-5 * alt) ** 5.25588
        fields = 0b111111  # accel and gyro xyz; no magnetometer on this vehicle
        for f in ("ABS_PRESSURE", "PRESSURE_ALT", "TEMPERATURE"):
            fields |= getattr(mavlink, f"HIGHRES_IMU_UPDATED_{f}")
        self.conn.mav.highres_imu_send(int(p.t * 1e6), *map(float, acc), *map(float, gyro),
                                       0.0, 0.0, 0.0, pressure, 0.0, alt, 25.0, fields)

    def _send_local_position_ned(self) -> None:
        pos, vel, _, _ = self.measured()
        if self._noise_std is not None:
            pos = pos + self.rng.normal(0, self._noise_std["position"], 3)
            vel = vel + self.rng.normal(0, self._noise_std["velocity"], 3)
        pn, vn = enu_to_ned(pos), enu_to_ned(vel)
        self.conn.mav.local_position_ned_send(self._boot_ms(), *map(float, pn), *map(float, vn))

    def _statustext(self, text: str) -> None:
        self.counters["statustext"] += 1
        self.conn.mav.statustext_send(mavlink.MAV_SEVERITY_WARNING, text.encode()[:50])

    def _boot_ms(self) -> int:
        return int(self.phys.t * 1000) & 0xFFFFFFFF

    @staticmethod
    def _platform_noise(platform: str) -> dict[str, float]:
        defaults = {"position": 0.001, "velocity": 0.002, "orientation": 0.001, "omega": 0.002}
        try:
            from edgectl.platforms import load_platform

            g = load_platform(platform).get
            return {"position": g("sensors.position_noise_std"), "velocity": g("sensors.velocity_noise_std"),
                    "orientation": g("sensors.orientation_noise_std"),
                    "omega": g("sensors.angular_velocity_noise_std")}
        except Exception:  # noqa: BLE001  params given directly, or a platform without a [sensors] section
            return defaults

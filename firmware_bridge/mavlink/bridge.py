"""MAVLink offboard control of PX4 / ArduPilot vehicles through pymavlink.

``MavlinkLink(url)`` opens the connection (any pymavlink URL: ``udpin:0.0.0.0:14540``,
``udpout:host:port``, ``tcp:host:port``, ``/dev/ttyACM0``...), waits for an autopilot HEARTBEAT,
then keeps two threads: one sends our HEARTBEAT (2 Hz, a GCS), one receives and folds state
messages into a thread-safe ``VehicleState`` (edgectl frames, see ``frames``):

- ATTITUDE_QUATERNION (or ATTITUDE) -> ``quat_wxyz`` (body FLU -> world ENU), ``omega`` (FLU)
- LOCAL_POSITION_NED -> ``pos``, ``vel`` (ENU: x = east = NED y, y = north = NED x, z = up =
  -NED z; origin the autopilot's local origin)
- HIGHRES_IMU -> ``accel`` (FLU specific force), HEARTBEAT -> ``armed``/``mode``, SYS_STATUS ->
  ``battery_voltage``; COMMAND_ACK -> the command waiting for it.

Offboard setpoints go out in the autopilot's frames (NED/FRD), converted from ours here.
PX4: OFFBOARD needs the setpoint stream running before the switch and kept above 2 Hz.
ArduPilot: GUIDED_NOGPS accepts SET_ATTITUDE_TARGET; its ``thrust`` is a climb-rate demand unless
GUID_OPTIONS bit 3 ("thrust as thrust") is set.

Signing (MAVLink 2): with ``signing_key`` every message we send is signed and unsigned or
wrong-key messages from the vehicle are dropped (a wrong key then shows as a connect timeout that
counts the rejected messages).
"""
from __future__ import annotations

import hashlib
import math
import threading
import time
from dataclasses import dataclass, field, replace

import numpy as np

from ._mav import mavlink, mavutil
from .frames import (enu_to_ned, flu_to_frd, frd_to_flu, ned_to_enu, quat_enu_flu_to_ned_frd,
                     quat_from_euler, quat_ned_frd_to_enu_flu)

# Heartbeats from these are other ground stations / companions, not the vehicle.
_NOT_VEHICLES = {mavlink.MAV_TYPE_GCS, mavlink.MAV_TYPE_ONBOARD_CONTROLLER}


class MavlinkError(RuntimeError):
    pass


class MavlinkTimeout(MavlinkError, TimeoutError):
    pass


class CommandRejected(MavlinkError):
    def __init__(self, message: str, command: int, result: int):
        super().__init__(message)
        self.command, self.result = command, result


@dataclass(frozen=True)
class VehicleState:
    """Latest vehicle state in edgectl frames. ``t``: host ``time.monotonic()`` of the newest
    field; ``t_attitude``/``t_position``: of those groups (None: never received)."""
    t: float = 0.0
    pos: np.ndarray = field(default_factory=lambda: np.zeros(3))
    vel: np.ndarray = field(default_factory=lambda: np.zeros(3))
    quat_wxyz: np.ndarray = field(default_factory=lambda: np.array([1.0, 0.0, 0.0, 0.0]))
    omega: np.ndarray = field(default_factory=lambda: np.zeros(3))
    accel: np.ndarray = field(default_factory=lambda: np.zeros(3))
    t_attitude: float | None = None
    t_position: float | None = None
    armed: bool = False
    mode: str = "UNKNOWN"
    battery_voltage: float | None = None


def signing_key_from_text(text: str) -> bytes:
    """64 hex digits -> those 32 bytes; anything else is a passphrase -> SHA-256 of it (what
    MAVProxy's ``signing setup <passphrase>`` does)."""
    t = text.strip()
    if len(t) == 64:
        try:
            return bytes.fromhex(t)
        except ValueError:
            pass
    return hashlib.sha256(t.encode()).digest()


def _enum_name(enum: str, value: int) -> str:
    e = mavlink.enums.get(enum, {}).get(value)
    return e.name if e is not None else f"{enum}({value})"


class MavlinkLink:
    def __init__(self, url: str, *, system_id: int = 255, component_id: int = 190,
                 signing_key: bytes | None = None, connect_timeout: float = 5.0,
                 heartbeat_hz: float = 2.0, target_system: int | None = None):
        if signing_key is not None and len(signing_key) != 32:
            raise ValueError(f"{url}: MAVLink 2 signing key must be 32 bytes, got {len(signing_key)}")
        if heartbeat_hz < 1.0:
            raise ValueError(f"{url}: heartbeat_hz must be >= 1 (autopilots time out GCS links), got {heartbeat_hz}")
        self.url = url
        self.signed = signing_key is not None
        self.target_system, self.target_component = target_system, 1
        self.autopilot: str | None = None  # "px4" | "ardupilot" | "other"
        self.vehicle_type: int | None = None
        self._t0 = time.monotonic()
        deadline = self._t0 + connect_timeout
        try:
            self.conn = mavutil.mavlink_connection(
                url, source_system=system_id, source_component=component_id,
                retries=max(1, int(connect_timeout / 0.25)), reconnect_delay=0.25)
        except (OSError, ValueError) as e:
            raise MavlinkError(f"{url}: cannot open MAVLink connection: {e}") from e
        if signing_key is not None:
            self.conn.setup_signing(bytes(signing_key), sign_outgoing=True, allow_unsigned_callback=None)
        self._send_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._ack_cond = threading.Condition()
        self._acks: dict[int, tuple[int, float]] = {}
        self._state = VehicleState()
        self._connected = threading.Event()
        self._stop = threading.Event()
        self.statustexts: list[str] = []
        self.autopilot_version_msg = None  # AUTOPILOT_VERSION, once asked for (autopilot_version())
        self._params: dict[str, tuple[float, float]] = {}  # PARAM_VALUE: name -> (value, host time)
        self.last_heartbeat = None  # the vehicle's, as received (get_msgbuf() shows the wire bytes)
        self.rejected = 0  # BAD_DATA: bad CRC, bad signature, garbage
        self._heartbeat_period = 1.0 / heartbeat_hz
        self._send_heartbeat()  # udpin vehicles learn our address from it
        self._rx = threading.Thread(target=self._rx_loop, name=f"mavlink-rx {url}", daemon=True)
        self._hb = threading.Thread(target=self._hb_loop, name=f"mavlink-hb {url}", daemon=True)
        self._rx.start()
        self._hb.start()
        if not self._connected.wait(max(0.0, deadline - time.monotonic())):
            rejected = self.rejected
            self.close()
            hint = f"; {rejected} message(s) rejected (bad CRC or signature)" if rejected else ""
            if self.signed:
                hint += "; signing is on: unsigned or wrong-key vehicles are not heard"
            raise MavlinkTimeout(f"{url}: no autopilot HEARTBEAT within {connect_timeout:.1f} s{hint}")

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self._stop.set()
        for t in (getattr(self, "_rx", None), getattr(self, "_hb", None)):
            if t is not None and t.is_alive() and t is not threading.current_thread():
                t.join(timeout=2.0)
        self.conn.close()

    def __enter__(self) -> "MavlinkLink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def wire_protocol(self) -> str:
        return self.conn.WIRE_PROTOCOL_VERSION

    # ------------------------------------------------------------------ state
    def state(self) -> VehicleState:
        with self._state_lock:
            return self._state

    def wait_state(self, predicate=lambda s: s.t_attitude is not None and s.t_position is not None,
                   timeout: float = 2.0) -> VehicleState:
        """Block until ``predicate(state)``; default: attitude and position both received."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.state()
            if predicate(s):
                return s
            if time.monotonic() > deadline:
                raise MavlinkTimeout(f"{self.url}: vehicle state condition not met within {timeout:.1f} s (last: {s})")
            time.sleep(0.005)

    def _update(self, **kw) -> None:
        with self._state_lock:
            self._state = replace(self._state, t=time.monotonic(), **kw)

    # ------------------------------------------------------------------ threads
    def _send_heartbeat(self) -> None:
        with self._send_lock:
            self.conn.mav.heartbeat_send(mavlink.MAV_TYPE_GCS, mavlink.MAV_AUTOPILOT_INVALID, 0, 0,
                                         mavlink.MAV_STATE_ACTIVE)

    def _hb_loop(self) -> None:
        while not self._stop.wait(self._heartbeat_period):
            try:
                self._send_heartbeat()
            except OSError:
                pass  # link down: the rx side reports it through staleness

    def _rx_loop(self) -> None:
        while not self._stop.is_set():
            try:
                m = self.conn.recv_match(blocking=True, timeout=0.05)
            except (OSError, ValueError):
                if self._stop.is_set():
                    return
                time.sleep(0.05)
                continue
            if m is not None:
                self._handle(m)

    def _handle(self, m) -> None:
        mtype = m.get_type()
        if mtype == "BAD_DATA":
            self.rejected += 1
            return
        src = m.get_srcSystem()
        if mtype == "HEARTBEAT":
            if m.type in _NOT_VEHICLES or m.autopilot == mavlink.MAV_AUTOPILOT_INVALID:
                return
            if self.target_system is None:
                self.target_system = src
            if src != self.target_system:
                return
            self.target_component = m.get_srcComponent()
            self.vehicle_type = m.type
            self.last_heartbeat = m
            self.autopilot = {mavlink.MAV_AUTOPILOT_PX4: "px4",
                              mavlink.MAV_AUTOPILOT_ARDUPILOTMEGA: "ardupilot"}.get(m.autopilot, "other")
            self._update(armed=bool(m.base_mode & mavlink.MAV_MODE_FLAG_SAFETY_ARMED),
                         mode=mavutil.mode_string_v10(m))
            self._connected.set()
            return
        if self.target_system is not None and src != self.target_system:
            return
        now = time.monotonic()
        if mtype == "ATTITUDE_QUATERNION":
            q = np.array([m.q1, m.q2, m.q3, m.q4])
            if np.all(np.isfinite(q)) and np.linalg.norm(q) > 0.5:
                self._update(quat_wxyz=quat_ned_frd_to_enu_flu(q), t_attitude=now,
                             omega=frd_to_flu([m.rollspeed, m.pitchspeed, m.yawspeed]))
        elif mtype == "ATTITUDE":
            if not all(math.isfinite(v) for v in (m.roll, m.pitch, m.yaw)):
                return  # as a NaN ATTITUDE_QUATERNION: the attitude goes stale, the loop's watchdog acts
            self._update(quat_wxyz=quat_ned_frd_to_enu_flu(quat_from_euler(m.roll, m.pitch, m.yaw)),
                         omega=frd_to_flu([m.rollspeed, m.pitchspeed, m.yawspeed]), t_attitude=now)
        elif mtype == "LOCAL_POSITION_NED":
            self._update(pos=ned_to_enu([m.x, m.y, m.z]), vel=ned_to_enu([m.vx, m.vy, m.vz]), t_position=now)
        elif mtype == "HIGHRES_IMU":
            self._update(accel=frd_to_flu([m.xacc, m.yacc, m.zacc]))
        elif mtype == "SYS_STATUS":
            if m.voltage_battery != 65535:
                self._update(battery_voltage=m.voltage_battery / 1000.0)
        elif mtype == "COMMAND_ACK":
            with self._ack_cond:
                self._acks[m.command] = (m.result, now)
                self._ack_cond.notify_all()
        elif mtype == "STATUSTEXT":
            self.statustexts = (self.statustexts + [str(m.text)])[-50:]
        elif mtype == "AUTOPILOT_VERSION":
            with self._ack_cond:
                self.autopilot_version_msg = m
                self._ack_cond.notify_all()
        elif mtype == "PARAM_VALUE":
            name = m.param_id.decode(errors="replace") if isinstance(m.param_id, bytes) else str(m.param_id)
            with self._ack_cond:
                self._params[name.rstrip("\x00")] = (float(m.param_value), now)
                self._ack_cond.notify_all()

    # ------------------------------------------------------------------ commands
    def command_long(self, command: int, *params: float, timeout: float = 1.0, retries: int = 3) -> int:
        """Send COMMAND_LONG (resent with a growing ``confirmation`` if unanswered) and return the
        COMMAND_ACK result. IN_PROGRESS acks keep the wait going."""
        p = list(params) + [0.0] * (7 - len(params))
        name = _enum_name("MAV_CMD", command)
        for attempt in range(retries):
            with self._ack_cond:
                self._acks.pop(command, None)
            with self._send_lock:
                self.conn.mav.command_long_send(self.target_system, self.target_component, command,
                                                attempt, *p)
            deadline = time.monotonic() + timeout
            with self._ack_cond:
                while True:
                    ack = self._acks.get(command)
                    if ack is not None and ack[0] != mavlink.MAV_RESULT_IN_PROGRESS:
                        return ack[0]
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._ack_cond.wait(left)
        raise MavlinkTimeout(f"{self.url}: no COMMAND_ACK for {name} after {retries} tries of {timeout:.1f} s")

    def _command_ok(self, command: int, *params: float, what: str, **kw) -> None:
        result = self.command_long(command, *params, **kw)
        if result != mavlink.MAV_RESULT_ACCEPTED:
            raise CommandRejected(f"{self.url}: {what} rejected by the vehicle: {_enum_name('MAV_RESULT', result)}",
                                  command, result)

    def arm(self, **kw) -> None:
        self._command_ok(mavlink.MAV_CMD_COMPONENT_ARM_DISARM, 1, what="arm", **kw)

    def disarm(self, force: bool = False, **kw) -> None:
        """``force``: the 21196 code PX4 and ArduPilot require to disarm in the air (motors stop)."""
        self._command_ok(mavlink.MAV_CMD_COMPONENT_ARM_DISARM, 0, 21196 if force else 0, what="disarm", **kw)

    def set_mode(self, name: str, confirm: float = 0.0, **kw) -> None:
        """Flight mode by name: PX4 names from ``mavutil.px4_map`` (OFFBOARD, LAND, LOITER...),
        ArduPilot names from its mode table (GUIDED_NOGPS, LAND...).

        The COMMAND_ACK alone does not say the mode was entered: PX4's MAVLink receiver acknowledges DO_SET_MODE
        with ACCEPTED as it hands the command on (src/modules/mavlink/mavlink_receiver.cpp,
        ``handle_message_command_both``: ``result`` starts ACCEPTED and DO_SET_MODE keeps ``send_ack``), and the
        commander's own answer follows as a second ACK; real PX4 SITL (v1.17.0-alpha1) answered a refused OFFBOARD
        switch ACCEPTED, then TEMPORARILY_REJECTED. With ``confirm`` > 0 this waits up to that many seconds for the
        HEARTBEAT to show the mode (``mode_entered``); a later rejection raises CommandRejected, silence MavlinkTimeout."""
        if self.autopilot == "px4":
            if name not in mavutil.px4_map:
                raise ValueError(f"{self.url}: unknown PX4 mode {name!r}; known: {sorted(mavutil.px4_map)}")
            base, main, sub = mavutil.px4_map[name]
            self._command_ok(mavlink.MAV_CMD_DO_SET_MODE, base, main, sub, what=f"mode {name}", **kw)
        else:
            table = mavutil.mode_mapping_byname(self.vehicle_type) or {}
            if name not in table:
                raise ValueError(f"{self.url}: unknown mode {name!r} for vehicle type {self.vehicle_type}; known: {sorted(table)}")
            self._command_ok(mavlink.MAV_CMD_DO_SET_MODE, mavlink.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED, table[name],
                             what=f"mode {name}", **kw)
        if confirm > 0:
            deadline = time.monotonic() + confirm
            while not self.mode_entered(name):
                if time.monotonic() > deadline:
                    raise MavlinkTimeout(self.mode_not_shown(name, confirm))
                time.sleep(0.01)

    def mode_entered(self, name: str) -> bool:
        """Whether the vehicle's HEARTBEAT shows mode ``name``, without waiting; CommandRejected if the newest
        COMMAND_ACK of DO_SET_MODE refused a switch (PX4's commander answers after its receiver's ACCEPTED)."""
        with self._ack_cond:
            ack = self._acks.get(mavlink.MAV_CMD_DO_SET_MODE)
        if ack is not None and ack[0] not in (mavlink.MAV_RESULT_ACCEPTED, mavlink.MAV_RESULT_IN_PROGRESS):
            raise CommandRejected(f"{self.url}: mode {name} rejected by the vehicle after it was acknowledged: "
                                  f"{_enum_name('MAV_RESULT', ack[0])} (HEARTBEAT shows {self.state().mode})",
                                  mavlink.MAV_CMD_DO_SET_MODE, ack[0])
        return self.state().mode == name

    def mode_not_shown(self, name: str, waited: float) -> str:
        return (f"{self.url}: mode {name} was acknowledged but the vehicle's HEARTBEAT still shows "
                f"{self.state().mode} after {waited:.1f} s")

    def start_offboard(self, **kw) -> None:
        """PX4: OFFBOARD (stream setpoints first); ArduPilot: GUIDED_NOGPS."""
        self.set_mode("OFFBOARD" if self.autopilot == "px4" else "GUIDED_NOGPS", **kw)

    def autopilot_version(self, timeout: float = 1.0) -> tuple[int, int, int, int] | None:
        """(major, minor, patch, type) from AUTOPILOT_VERSION, asked for with MAV_CMD_REQUEST_MESSAGE (then the
        older MAV_CMD_REQUEST_AUTOPILOT_CAPABILITIES); None if the vehicle does not answer within ``timeout``."""
        from .autopilots import decode_version
        for cmd, params in ((mavlink.MAV_CMD_REQUEST_MESSAGE, (mavlink.MAVLINK_MSG_ID_AUTOPILOT_VERSION,)),
                            (mavlink.MAV_CMD_REQUEST_AUTOPILOT_CAPABILITIES, (1,))):
            if self.autopilot_version_msg is not None:
                break
            try:
                self.command_long(cmd, *params, timeout=timeout / 2, retries=1)
            except MavlinkTimeout:
                continue
            deadline = time.monotonic() + timeout / 2
            with self._ack_cond:
                while self.autopilot_version_msg is None and time.monotonic() < deadline:
                    self._ack_cond.wait(deadline - time.monotonic())
        m = self.autopilot_version_msg
        return None if m is None else decode_version(m.flight_sw_version)

    def param(self, name: str, timeout: float = 1.0) -> float | None:
        """A vehicle parameter by name (PARAM_REQUEST_READ), or None if it does not answer (no such parameter)."""
        with self._ack_cond:
            self._params.pop(name, None)
        with self._send_lock:
            self.conn.mav.param_request_read_send(self.target_system, self.target_component, name.encode(), -1)
        deadline = time.monotonic() + timeout
        with self._ack_cond:
            while name not in self._params:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._ack_cond.wait(left)
            return self._params[name][0]

    def request_message_interval(self, message: str | int, hz: float, **kw) -> None:
        """Ask for ``message`` (name or id) at ``hz`` (0: stop)."""
        msg_id = message if isinstance(message, int) else getattr(mavlink, f"MAVLINK_MSG_ID_{message}")
        interval = -1 if hz <= 0 else 1e6 / hz
        self._command_ok(mavlink.MAV_CMD_SET_MESSAGE_INTERVAL, msg_id, interval, what=f"interval of {message}", **kw)

    # ------------------------------------------------------------------ setpoints
    def _boot_ms(self) -> int:
        return int((time.monotonic() - self._t0) * 1000) & 0xFFFFFFFF

    def send_attitude_target(self, quat_wxyz, thrust: float) -> None:
        """Attitude (body FLU -> world ENU, w x y z) and collective thrust in [0, 1]."""
        q = quat_enu_flu_to_ned_frd(quat_wxyz)
        mask = (mavlink.ATTITUDE_TARGET_TYPEMASK_BODY_ROLL_RATE_IGNORE
                | mavlink.ATTITUDE_TARGET_TYPEMASK_BODY_PITCH_RATE_IGNORE
                | mavlink.ATTITUDE_TARGET_TYPEMASK_BODY_YAW_RATE_IGNORE)
        self._send_attitude(mask, q, (0.0, 0.0, 0.0), thrust)

    def send_body_rates(self, omega_flu, thrust: float) -> None:
        """Body rates (FLU, rad/s) and collective thrust in [0, 1]."""
        rates = flu_to_frd(omega_flu)
        self._send_attitude(mavlink.ATTITUDE_TARGET_TYPEMASK_ATTITUDE_IGNORE, (1.0, 0.0, 0.0, 0.0), rates, thrust)

    def _send_attitude(self, mask: int, q, rates, thrust: float) -> None:
        if not 0.0 <= thrust <= 1.0:
            raise ValueError(f"{self.url}: thrust must be in [0, 1], got {thrust}")
        if not (np.all(np.isfinite(q)) and np.all(np.isfinite(rates))):
            raise ValueError(f"{self.url}: non-finite setpoint q={list(q)} rates={list(rates)}")
        with self._send_lock:
            self.conn.mav.set_attitude_target_send(self._boot_ms(), self.target_system, self.target_component,
                                                   mask, [float(c) for c in q], *map(float, rates), float(thrust))

    def send_actuator_controls(self, controls, group: int = 0) -> None:
        """SET_ACTUATOR_CONTROL_TARGET: up to 8 values. Meaning depends on the receiver: our sim
        vehicle takes controls[0..3] as motors M1..M4 in [0, 1]; PX4 <= 1.13 takes group 0 as
        pre-mixer [roll, pitch, yaw, thrust]; ArduPilot ignores the message."""
        c = np.zeros(8)
        v = np.asarray(controls, dtype=np.float64).ravel()
        if v.size > 8 or not np.all(np.isfinite(v)):
            raise ValueError(f"{self.url}: actuator controls must be <= 8 finite values, got {v.tolist()}")
        c[:v.size] = v
        with self._send_lock:
            self.conn.mav.set_actuator_control_target_send(int((time.monotonic() - self._t0) * 1e6), group,
                                                           self.target_system, self.target_component,
                                                           [float(x) for x in c])

    def send_position_target_enu(self, pos_enu) -> None:
        """Position setpoint (world ENU, m) as SET_POSITION_TARGET_LOCAL_NED (PX4 offboard /
        ArduPilot GUIDED). Not handled by the sim vehicle."""
        p = enu_to_ned(pos_enu)
        mask = 0
        for ignored in ("VX", "VY", "VZ", "AX", "AY", "AZ", "YAW", "YAW_RATE"):  # position only
            mask |= getattr(mavlink, f"POSITION_TARGET_TYPEMASK_{ignored}_IGNORE")
        with self._send_lock:
            self.conn.mav.set_position_target_local_ned_send(self._boot_ms(), self.target_system,
                                                             self.target_component, mavlink.MAV_FRAME_LOCAL_NED,
                                                             mask, *map(float, p), 0, 0, 0, 0, 0, 0, 0, 0)

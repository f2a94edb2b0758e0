"""Vehicle links as the control loop sees them: read the latest state, send actions, stop.

A link is a driver in cflib's sense: the loop never asks which vehicle it talks to. Actions are the
contract's, in [-1, 1]: normalized motor commands (motor-level bundles) or collective thrust and body rates
(``ctbr`` bundles); each link maps them to what its vehicle takes. Real autopilots take only the second from a
companion computer (MavlinkRateLink); the motor-level MAVLink link refuses them (MavlinkMotorLink).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from .protocol import Link, State  # noqa: F401  (re-exported: edgectl.runtime.links.State / Link)
from .uri import parse_uri


@dataclass
class SimLink:
    """An in-process simulated vehicle on the Numba dynamics the policy was trained on.

    Physics advances one control period per `send_action` (lockstep), so a run is reproducible; the
    state is stamped with the wall clock, as a real link's would be. `drop_after` stops answering
    after that many states (a link loss, for tests); `nan_at` reports NaN in the position once.
    """
    platform: object
    start_pos: tuple = (0.0, 0.0, 0.0)
    start_tilt_rad: float = 0.0
    seed: int = 0
    drop_after: int | None = None
    nan_at: int | None = None
    name: str = "sim"
    contract: dict | None = None  # a ctbr contract: the platform's [rate_controller] loop flies the actions
    reads: int = field(default=0, init=False)

    def __post_init__(self):
        from edgectl.plant import quadrotor as nq
        self.nq = nq
        self.params = nq.params_from_platform(self.platform)
        self.x = nq.hover_state(self.params)
        self.x[0:3] = self.start_pos
        half = 0.5 * self.start_tilt_rad
        self.x[3:7] = [np.cos(half), np.sin(half), 0.0, 0.0]  # a roll: the start the backup must recover from
        self.stopped = False
        self._lock = threading.Lock()
        self.rate_loop = None
        if self.contract is not None and self.contract["action"]["mapping"].get("kind") == "ctbr":
            from edgectl import rate_control as rc
            self.rate_loop = rc.from_platform(self.platform)
            self._ticks = self.rate_loop.substeps(1.0 / float(self.params[self.nq.PARAM_INDEX["dt"]]))
            self._tick_params = self.params.copy()
            self._tick_params[self.nq.PARAM_INDEX["dt"]] /= self._ticks
            self._pid = rc.pid_init(self.rate_loop, self.x[10:13])

    def read_state(self) -> State | None:
        self.reads += 1
        if self.drop_after is not None and self.reads > self.drop_after:
            return None
        with self._lock:
            x = self.x.copy()
        pos = x[0:3].copy()
        if self.nan_at is not None and self.reads == self.nan_at:
            pos[2] = np.nan
        return State(time.monotonic(), pos, x[3:7], x[7:10], x[10:13])

    def send_action(self, action: np.ndarray) -> None:
        a = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        if self.rate_loop is not None:
            self._fly_rates(a)
            return
        if self.stopped:
            a = np.full(4, -1.0)  # motors off
        with self._lock:
            self.x = self.nq.step(self.x, a, self.params)

    def _fly_rates(self, a: np.ndarray) -> None:
        """One control period of the autopilot's rate loop (the training simulator's, train_fast/sims/rate_loop.py;
        RK4 per tick here). Stopped: zero thrust."""
        from edgectl import rate_control as rc
        thrust, rates = rc.ctbr_setpoint(a, self.rate_loop)
        if self.stopped:
            thrust, rates = 0.0, np.zeros(3)
        dt = float(self._tick_params[self.nq.PARAM_INDEX["dt"]])
        with self._lock:
            for _ in range(self._ticks):
                out, self._pid = rc.pid_step(self.rate_loop, self._pid, rates, self.x[10:13], dt)
                u = rc.mix(self.rate_loop, thrust, out)
                self.x = self.nq.step(self.x, 2.0 * u - 1.0, self._tick_params)

    def stop(self) -> None:
        self.stopped = True

    def close(self) -> None:
        pass


class ModeThenArm:
    """The offboard handshake both MAVLink links share, one step per setpoint sent, never blocking the control loop:
    after ``min_sent`` setpoints over ``stream_before_s``, ask for ``mode``; then arm once the vehicle's HEARTBEAT
    shows it. The mode's COMMAND_ACK is not the answer: PX4's MAVLink receiver acknowledges DO_SET_MODE ACCEPTED as
    it hands it on and its commander answers after (MavlinkLink.set_mode). A later rejection raises CommandRejected,
    no such HEARTBEAT within ``timeout_s`` MavlinkTimeout, both before arming. ``trust_ack``: arm on the ACK (a
    vehicle that answers once, with the real result: edgectl's own)."""

    def __init__(self, link, mode: str, *, who: str, stream_before_s: float = 0.0, min_sent: int = 5,
                 timeout_s: float = 3.0, trust_ack: bool = False):
        self.link, self.mode, self.who = link, mode, who
        self.stream_before_s, self.min_sent, self.timeout_s, self.trust_ack = stream_before_s, min_sent, timeout_s, trust_ack
        self.engaged, self._sent, self._t_first, self._switch_at = False, 0, None, None

    def sent(self, now: float) -> None:
        """One setpoint went out at ``now`` (time.monotonic())."""
        self._sent += 1
        self._t_first = now if self._t_first is None else self._t_first
        if self.engaged:
            return
        if self._switch_at is None:
            if self._sent >= self.min_sent and now - self._t_first >= self.stream_before_s:
                self.link.set_mode(self.mode)
                self._switch_at = now
            if self._switch_at is None or not self.trust_ack:
                return
        # the stream goes on meanwhile (the heartbeat comes at 1 Hz; PX4 leaves OFFBOARD without setpoints)
        if self.trust_ack or self.link.mode_entered(self.mode):  # raises if the autopilot refused after all
            self.link.arm()
            self.engaged = True
        elif now - self._switch_at > self.timeout_s:
            from firmware_bridge.mavlink.bridge import MavlinkTimeout
            raise MavlinkTimeout(self.link.mode_not_shown(self.mode, now - self._switch_at) + f" ({self.who}); not arming")


class MavlinkMotorLink:
    """A PX4-style vehicle over MAVLink (pymavlink): streams the policy's motor commands as actuator
    controls, then enters offboard and arms (PX4 wants the stream first).

    `motor_scale`: "speed" sends (a + 1) / 2, the fraction of full rotor speed (the contract's rpm_linear
    mapping; what `edgectl sim-vehicle mavlink` takes); "force" sends ((a + 1) / 2)^2, the fraction of full
    thrust, for autopilots configured with a linear thrust model (PX4 >= 1.14 with THR_MDL_FAC = 0).

    Between control periods a KeepAlive repeats the newest command every 2 ms (for 20 ms at most), so the
    vehicle can tell a cut link from a quiet one within a period (the simulated vehicle's actuator_timeout)."""

    def __init__(self, url: str, *, signing_key: bytes | None = None, connect_timeout: float = 5.0,
                 motor_scale: str = "speed", motor_firmware: str | None = None):
        from firmware_bridge.mavlink.bridge import MavlinkLink
        if motor_scale not in ("speed", "force"):
            raise ValueError(f"motor_scale: expected 'speed' or 'force', got {motor_scale!r}")
        self.name, self.motor_scale = f"mavlink {url}", motor_scale
        self.link = MavlinkLink(url, signing_key=signing_key, connect_timeout=connect_timeout)
        # Before anything is armed: only a vehicle that takes SET_ACTUATOR_CONTROL_TARGET as motors is flown so.
        # ``motor_firmware``: the user names such a firmware (a PX4 fork with a motor-input module...); no check.
        self.motor_firmware = motor_firmware
        if motor_firmware is None:
            refusal = motor_level_check(self.link)
            if refusal is not None:
                self.link.close()
                raise ValueError(f"{url}: {refusal}")
        self._stopped = False
        # edgectl's own vehicle answers the mode once, with the real result; a firmware the user names may be a PX4
        # fork, whose receiver acknowledges a switch before its commander decides: there, wait for the HEARTBEAT
        from firmware_bridge.mavlink.autopilots import OFFBOARD_MODE
        mode = OFFBOARD_MODE.get(self.link.autopilot, OFFBOARD_MODE["ardupilot"])  # as MavlinkLink.start_offboard
        self.handshake = ModeThenArm(self.link, mode, who=motor_firmware or "edgectl's vehicle",
                                     trust_ack=motor_firmware is None)
        from .keepalive import KeepAlive
        self.keepalive = KeepAlive(self.link.send_actuator_controls, name=f"edgectl-keepalive {url}")
        # The policy was trained on a fresh state every 10 ms; autopilots stream attitude and position at
        # 30-50 Hz by default, and a 20 ms-old state made the hover policy oscillate (measured on the sim vehicle).
        for msg in ("ATTITUDE_QUATERNION", "LOCAL_POSITION_NED", "HIGHRES_IMU"):
            try:
                self.link.request_message_interval(msg, 200.0)
            except Exception as e:  # noqa: BLE001  an autopilot that refuses keeps its own rate: say so
                import warnings
                warnings.warn(f"{url}: could not raise the {msg} rate ({e}); flying on the autopilot's default rate",
                              stacklevel=2)

    def read_state(self) -> State | None:
        s = self.link.state()
        if s.t_attitude is None or s.t_position is None:
            return None
        return State(min(s.t_attitude, s.t_position), s.pos, s.quat_wxyz, s.vel, s.omega)

    def send_action(self, action: np.ndarray) -> None:
        if self._stopped:
            return
        u = (np.clip(np.asarray(action, np.float64), -1.0, 1.0) + 1.0) / 2.0
        controls = u if self.motor_scale == "speed" else u ** 2
        self.link.send_actuator_controls(controls)
        self.keepalive.update(controls)
        if self._stopped:  # stop() ran meanwhile (another thread): no repeats after it
            self.keepalive.pause()
            return
        self.handshake.sent(time.monotonic())  # PX4 wants a setpoint stream before offboard, then arming

    def stop(self) -> None:
        """Stop streaming motor commands and leave the vehicle to its offboard-loss failsafe (on the
        simulated vehicle: the backup controller, which lands it). Zero motors and a forced disarm, sent
        after the host lost the state, would drop a vehicle whose command link still works."""
        self.keepalive.pause()
        self._stopped = True
        self.keepalive.pause()  # again: a send_action in another thread may have updated it in between

    def close(self) -> None:
        self.keepalive.close()
        self.link.close()


def motor_level_check(link) -> str | None:
    """None if the vehicle behind ``link`` (a MavlinkLink) takes motor commands, else why not (one line):
    HEARTBEAT names the autopilot, AUTOPILOT_VERSION its release; a PX4 release or ArduPilot is refused
    outright, anything else must declare EDGECTL_MOTOR_IN = 1 (firmware_bridge/mavlink/autopilots.py)."""
    from firmware_bridge.mavlink.autopilots import MOTOR_PARAM, motor_level_refusal
    version = link.autopilot_version(timeout=1.0)
    declares = False
    if link.autopilot != "ardupilot" and (version is None or version[:3] == (0, 0, 0)):
        declares = link.param(MOTOR_PARAM, timeout=1.0) == 1.0
    return motor_level_refusal(link.autopilot, version, declares)


class MavlinkRateLink:
    """A real autopilot's rate-level offboard interface, over MAVLink (pymavlink): the ctbr policy's collective
    thrust and body rates streamed as SET_ATTITUDE_TARGET (attitude ignored; rates FLU -> FRD in
    firmware_bridge/mavlink/frames.py), then the mode switch and arming: PX4 OFFBOARD (it takes the switch only
    with a setpoint newer than COM_OF_LOSS_T: ``stream_before_s`` of them go first), ArduPilot GUIDED_NOGPS (its
    thrust field is a thrust only with GUID_OPTIONS bit 3; without it the link refuses, naming the parameter).
    It arms only once the vehicle's HEARTBEAT shows that mode, not on the mode's COMMAND_ACK (which real PX4 gives
    for a switch it then refuses); a refusal, or no such HEARTBEAT within ``mode_timeout_s``, raises before arming.

    Losing the stream is the autopilot's own failsafe (PX4: COM_OF_LOSS_T, default 1 s, then COM_OBL_RC_ACT;
    ArduPilot: GUID_TIMEOUT, default 3 s, then level and hold altitude); ``stop`` leaves it to that, ``close``
    asks for the autopilot's LAND mode first."""

    def __init__(self, url: str, contract: dict, *, signing_key: bytes | None = None, connect_timeout: float = 5.0,
                 stream_before_s: float = 0.5, mode_timeout_s: float = 3.0):
        from firmware_bridge.mavlink.autopilots import GUID_OPTIONS_THRUST, OFFBOARD_MODE, version_text
        from firmware_bridge.mavlink.bridge import MavlinkLink
        mapping = contract["action"]["mapping"]
        if mapping.get("kind") != "ctbr":
            raise ValueError(f"{url}: MavlinkRateLink flies ctbr bundles; this contract's action mapping is {mapping.get('kind')!r}")
        self.max_rate = np.asarray(mapping["max_rate"], np.float64)
        self.name, self.stream_before_s = f"mavlink {url}", float(stream_before_s)
        self.link = MavlinkLink(url, signing_key=signing_key, connect_timeout=connect_timeout)
        ap = self.link.autopilot
        self.version = self.link.autopilot_version(timeout=1.0)
        self.autopilot = {"px4": "PX4", "ardupilot": "ArduPilot"}.get(ap or "", f"autopilot {ap!r}") + " " + version_text(self.version)
        try:
            if ap not in OFFBOARD_MODE:
                raise ValueError(f"{url}: {self.autopilot}: edgectl knows the rate-level offboard handshake of PX4 "
                                 "(OFFBOARD) and ArduPilot (GUIDED_NOGPS) only")
            if ap == "ardupilot":
                opts = self.link.param("GUID_OPTIONS", timeout=2.0)
                if opts is None or not int(opts) & GUID_OPTIONS_THRUST:
                    raise ValueError(f"{url}: {self.autopilot} reads SET_ATTITUDE_TARGET.thrust as a climb rate unless "
                                     f"GUID_OPTIONS has bit 3 (+8, SetAttitudeTarget_ThrustAsThrust); GUID_OPTIONS is "
                                     f"{'unreadable' if opts is None else int(opts)}: set it, then fly")
        except ValueError:
            self.link.close()
            raise
        self.mode = OFFBOARD_MODE[ap]
        self._stopped = False
        self.handshake = ModeThenArm(self.link, self.mode, who=self.autopilot, stream_before_s=float(stream_before_s),
                                     timeout_s=float(mode_timeout_s))
        for msg in ("ATTITUDE_QUATERNION", "LOCAL_POSITION_NED", "HIGHRES_IMU"):
            try:
                self.link.request_message_interval(msg, 200.0)
            except Exception as e:  # noqa: BLE001
                import warnings
                warnings.warn(f"{url}: could not raise the {msg} rate ({e}); flying on the autopilot's default rate", stacklevel=2)

    def read_state(self) -> State | None:
        s = self.link.state()
        if s.t_attitude is None or s.t_position is None:
            return None
        return State(min(s.t_attitude, s.t_position), s.pos, s.quat_wxyz, s.vel, s.omega)

    def setpoint(self, action) -> tuple[float, np.ndarray]:
        """(collective thrust in [0, 1], body rates FLU rad/s) of a ctbr action (the contract's formula)."""
        a = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        return float(0.5 * (a[0] + 1.0)), a[1:] * self.max_rate

    def send_action(self, action: np.ndarray) -> None:
        if self._stopped:
            return
        thrust, rates = self.setpoint(action)
        self.link.send_body_rates(rates, thrust)
        self.handshake.sent(time.monotonic())

    def stop(self) -> None:
        """Stop streaming: the autopilot's offboard-loss failsafe takes over after its timeout."""
        self._stopped = True

    def close(self) -> None:
        from firmware_bridge.mavlink.autopilots import LAND_MODE
        try:
            if self.handshake.engaged and self.link.state().armed:
                self.link.set_mode(LAND_MODE[self.link.autopilot], timeout=0.5, retries=2)
        except Exception:  # noqa: BLE001  the offboard-loss failsafe covers a vehicle that did not answer
            pass
        self.link.close()


def refused_by_vehicle(e: BaseException) -> bool:
    """A MAVLink vehicle's refusal (a rejected command, a mode its HEARTBEAT never showed): what `edgectl run` reports
    as one line instead of a traceback."""
    try:
        from firmware_bridge.mavlink.bridge import MavlinkError
    except ImportError:  # pymavlink missing: then no MAVLink link was open
        return False
    return isinstance(e, MavlinkError)


QUADROTOR_ADAPTERS = ("sim", "mavlink", "crazyflie")  # edgectl/runtime/uri.py: what a hover/figure8 bundle flies


def flies_on_board(uri: str) -> bool:
    """True for a Crazyflie URI (the policy flies in the vehicle's app, the host streams references), as
    open_link decides it, without connecting."""
    return parse_uri(uri).for_vehicle(QUADROTOR_ADAPTERS, "a quadrotor hover/figure8 bundle") == "crazyflie"


def open_link(uri: str, platform, bundle=None, contract: dict | None = None, motor_firmware: str | None = None) -> Link:
    """sim://[x,y,z] (in-process dynamics, host flies the motors, or with a ctbr contract the platform's rate
    loop), a pymavlink URL (udpout:, udpin:, tcp:, serial device: a ctbr contract streams body rates to PX4 /
    ArduPilot, a motor-level one flies only a vehicle that takes motor commands, or ``motor_firmware`` named),
    or a cflib URI (radio://, usb://, udp://host:port, cfsim://NAME of an in-process simulated Crazyflie): a
    Crazyflie flies the exported policy on board and the host streams the reference; given ``bundle``, its app
    must have been exported from that bundle (checked before arming)."""
    ctbr = contract is not None and contract["action"]["mapping"].get("kind") == "ctbr"
    parsed = parse_uri(uri)
    adapter = parsed.for_vehicle(QUADROTOR_ADAPTERS, "a quadrotor hover/figure8 bundle")
    if adapter == "sim":
        rest = parsed.rest
        start = tuple(float(v) for v in rest.split(",")) if rest else (0.0, 0.0, 0.0)
        if len(start) != 3:
            raise ValueError(f"--uri {uri}: expected sim:// or sim://x,y,z")
        return SimLink(platform, start_pos=start, contract=contract if ctbr else None)
    if adapter == "crazyflie":
        if ctbr:
            raise ValueError(f"--uri {uri}: a Crazyflie flies a motor-level bundle's exported app on board; a ctbr bundle "
                             "flies through an autopilot's rate loop over MAVLink (or sim://)")
        from .crazyflie_link import CrazyflieOnboardLink
        return CrazyflieOnboardLink(uri, platform, bundle=bundle)
    return MavlinkRateLink(uri, contract) if ctbr else MavlinkMotorLink(uri, motor_firmware=motor_firmware)

"""A cflib link to a Crazyflie (real or simulated) for edgectl's runtime.

    with CrazyflieLink("radio://0/80/2M/E7E7E7E7E7") as cf:
        cf.unlock_thrust()
        state = cf.read_state()          # latest VehicleState, or None if stale
        cf.send_attitude(0, 0, 0, 40000) # or send_position(x, y, z, yaw)
        cf.stop()

Connecting waits for cflib's full connection (TOCs and parameter values), then starts one log block
with the whole state, stateEstimateZ (the firmware's compressed state: mm, mm/s, smallest-three
quaternion, mrad/s) plus pm.vbat: 26 bytes, exactly one log packet, so position, attitude and rates
in a VehicleState come from the same firmware tick. Everything is bounded by ``connect_timeout``:
cflib has no timeout of its own, and over UDP a silent peer leaves it waiting forever.

Units: VehicleState is SI and edgectl's frames (world z up, body x forward, z up; quaternion
w-x-y-z body to world; omega body rad/s). Setpoints take cflib's units and conventions (degrees,
cflib's pitch sign, firmware thrust 0..65535), since that is what Crazyflie users know.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

import numpy as np

# Without a cache_dir cflib warns "Could not save cache, no writable directory" on every connect, on
# stderr, in the middle of `edgectl run`'s output; having no TOC cache is a choice, not a fault.
logging.getLogger("cflib.crazyflie.toccache").setLevel(logging.ERROR)

STATE_VARIABLES = ("stateEstimateZ.x", "stateEstimateZ.y", "stateEstimateZ.z", "stateEstimateZ.vx",
                   "stateEstimateZ.vy", "stateEstimateZ.vz", "stateEstimateZ.quat", "stateEstimateZ.rateRoll",
                   "stateEstimateZ.ratePitch", "stateEstimateZ.rateYaw", "pm.vbat")


class LinkError(RuntimeError):
    pass


class ConnectTimeout(LinkError, TimeoutError):
    pass


@dataclass(frozen=True)
class VehicleState:
    t: float  # host time.monotonic() when the sample arrived
    pos: np.ndarray  # (3,) m, world
    quat_wxyz: np.ndarray  # (4,) body to world
    vel: np.ndarray  # (3,) m/s, world
    omega: np.ndarray  # (3,) rad/s, body
    vbat: float  # V
    vehicle_ms: int  # the firmware's 24-bit millisecond timestamp of the sample


@dataclass(frozen=True)
class LinkStatistics:
    uri: str
    packets_sent: int
    packets_received: int
    states: int  # state samples received
    state_rate_hz: float  # over the last second or so
    latency_ms: float | None  # cflib's 95th percentile ping round trip; None before the first
    link_quality: float | None  # 0..100 from drivers that report it (radio, sim://); None otherwise
    state_age_s: float | None  # age of the latest state


def decode_state(data: dict, t: float, vehicle_ms: int) -> VehicleState:
    """A VehicleState from one log sample of STATE_VARIABLES (firmware conventions undone:
    stateEstimateZ.ratePitch is the legacy, sign-inverted pitch rate)."""
    from cflib.utils.encoding import decompress_quaternion

    x, y, z, w = decompress_quaternion(int(data["stateEstimateZ.quat"]))
    return VehicleState(
        t=t,
        pos=np.array([data["stateEstimateZ.x"], data["stateEstimateZ.y"], data["stateEstimateZ.z"]]) / 1000.0,
        quat_wxyz=np.array([w, x, y, z]),
        vel=np.array([data["stateEstimateZ.vx"], data["stateEstimateZ.vy"], data["stateEstimateZ.vz"]]) / 1000.0,
        omega=np.array([data["stateEstimateZ.rateRoll"], -data["stateEstimateZ.ratePitch"],
                        data["stateEstimateZ.rateYaw"]]) / 1000.0,
        vbat=float(data["pm.vbat"]),
        vehicle_ms=int(vehicle_ms),
    )


class CrazyflieLink:
    """Connect on construction; ``close()`` (or a with-block) disconnects.

    period_ms: state log period (10 = 100 Hz); stale_after: read_state() returns None for a sample
    older than this (default: 5 periods, at least 50 ms); cache_dir: cflib's TOC cache (makes
    reconnects to the same firmware fast).
    """

    def __init__(self, uri: str, *, connect_timeout: float = 5.0, period_ms: int = 10,
                 stale_after: float | None = None, cache_dir: str | None = None):
        from cflib.crazyflie import Crazyflie

        from .transports import ensure_drivers

        deadline = time.monotonic() + connect_timeout
        if not 10 <= period_ms <= 2540 or period_ms % 10:
            raise ValueError(f"{uri}: period_ms must be a multiple of 10 in 10..2540 (cflib's log period), got {period_ms}")
        self.uri = uri
        self.period_ms = period_ms
        self.stale_after = stale_after if stale_after is not None else max(0.05, 5 * period_ms / 1000.0)
        self._lock = threading.Condition()
        self._state: VehicleState | None = None
        self._states = 0
        self._rate_window: list[float] = []
        self._sent = self._received = 0
        self._quality: float | None = None
        self._lost: str | None = None
        self._closed = False
        self._connected = threading.Event()
        self._failure: str | None = None

        ensure_drivers(uri)
        cf = self._cf = Crazyflie(rw_cache=cache_dir)
        cf.fully_connected.add_callback(lambda _uri: self._connected.set())
        cf.connection_failed.add_callback(self._on_failed)
        cf.connection_lost.add_callback(self._on_lost)
        cf.packet_sent.add_callback(self._count_sent)
        cf.packet_received.add_callback(self._count_received)
        cf.link_statistics.link_quality_updated.add_callback(self._on_quality)
        try:
            cf.open_link(uri)
            if not self._connected.wait(max(0.0, deadline - time.monotonic())):
                raise ConnectTimeout(f"{uri}: no Crazyflie completed the connection within {connect_timeout:.1f} s "
                                     "(nothing answering there, or only part of the TOC/parameter download got through)")
            if self._failure:
                raise LinkError(f"{uri}: connection failed: {self._failure}")
            self._start_state_log()
            with self._lock:
                while self._state is None and self._failure is None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise ConnectTimeout(f"{uri}: connected, but no state sample arrived within "
                                             f"{connect_timeout:.1f} s of connecting")
                    self._lock.wait(left)
            if self._failure:
                raise LinkError(f"{uri}: {self._failure}")
        except BaseException:
            self._abandon()
            raise

    # -- connection -------------------------------------------------------------------------------
    def _on_failed(self, _uri, msg):
        self._failure = str(msg).strip().splitlines()[0] if msg else "unknown error"
        self._connected.set()
        with self._lock:
            self._lock.notify_all()

    def _on_lost(self, _uri, msg):
        self._lost = str(msg).strip().splitlines()[0] if msg else "link lost"

    def _count_sent(self, _pk):
        self._sent += 1

    def _count_received(self, _pk):
        self._received += 1

    def _on_quality(self, quality):
        self._quality = float(quality)

    def _abandon(self):
        """Give up a half-open connection without making the caller wait: cflib's close joins
        its reader thread, which may sit in a one-second receive."""
        self._closed = True
        threading.Thread(target=self._cf.close_link, name="crazyflie-link-close", daemon=True).start()

    def _start_state_log(self):
        from cflib.crazyflie.log import LogConfig

        config = LogConfig(name="edgectl_state", period_in_ms=self.period_ms)
        for name in STATE_VARIABLES:
            config.add_variable(name)
        config.data_received_cb.add_callback(self._on_state)
        config.error_cb.add_callback(self._on_log_error)
        try:
            self._cf.log.add_config(config)
        except (KeyError, AttributeError) as e:
            raise LinkError(f"{self.uri}: the firmware cannot log the state ({e}); edgectl needs "
                            f"{', '.join(STATE_VARIABLES)}") from None
        config.start()
        self._config = config

    def _on_log_error(self, _config, msg):
        self._failure = f"the firmware refused the state log block: {msg}"
        with self._lock:
            self._lock.notify_all()

    def _on_state(self, timestamp, data, _config):
        now = time.monotonic()
        state = decode_state(data, now, timestamp)
        with self._lock:
            self._state = state
            self._states += 1
            self._rate_window.append(now)
            if len(self._rate_window) > 200:
                del self._rate_window[:100]
            self._lock.notify_all()

    def close(self, stop_motors: bool = True):
        """stop_motors=False: leave the vehicle to its own devices (an on-board app landing it after a lost
        link must not get a motors-off setpoint when the link comes back)."""
        if self._closed:
            return
        self._closed = True
        try:
            if stop_motors:
                self.stop()
        finally:
            self._cf.close_link()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- state ------------------------------------------------------------------------------------
    def read_state(self, max_age: float | None = None) -> VehicleState | None:
        """The latest state, or None if it is older than max_age (default stale_after)."""
        limit = self.stale_after if max_age is None else max_age
        with self._lock:
            s = self._state
        if s is None or time.monotonic() - s.t > limit:
            return None
        return s

    def next_state(self, timeout: float = 1.0) -> VehicleState | None:
        """Block until a sample newer than the current one arrives (None on timeout): a control
        loop can run at the vehicle's log rate this way."""
        deadline = time.monotonic() + timeout
        with self._lock:
            seen = self._states
            while self._states == seen:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return None
                self._lock.wait(left)
            return self._state

    # -- commands ---------------------------------------------------------------------------------
    def _check(self):
        if self._closed:
            raise LinkError(f"{self.uri}: the link is closed")
        if self._lost:
            raise LinkError(f"{self.uri}: link lost: {self._lost}")

    def unlock_thrust(self):
        """The firmware ignores attitude/thrust setpoints until one with thrust 0 arrives."""
        self.send_attitude(0.0, 0.0, 0.0, 0)

    def send_attitude(self, roll_deg: float, pitch_deg: float, yawrate_deg_s: float, thrust: int):
        """cflib's send_setpoint: roll, pitch (positive = forward) in degrees, yaw rate in deg/s,
        thrust 0..65535 (firmware units; the firmware caps it at 60000 and ignores < 1000)."""
        self._check()
        thrust = int(thrust)
        if not 0 <= thrust <= 0xFFFF:
            raise ValueError(f"{self.uri}: thrust must be 0..65535, got {thrust}")
        for name, v in (("roll", roll_deg), ("pitch", pitch_deg), ("yaw rate", yawrate_deg_s)):
            if not math.isfinite(v):
                raise ValueError(f"{self.uri}: {name} setpoint is {v}")
        self._cf.commander.send_setpoint(float(roll_deg), float(pitch_deg), float(yawrate_deg_s), thrust)

    def send_position(self, x: float, y: float, z: float, yaw_deg: float = 0.0):
        """Absolute position setpoint (m, world) and heading (deg)."""
        self._check()
        values = (x, y, z, yaw_deg)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"{self.uri}: position setpoint {values} is not finite")
        self._cf.commander.send_position_setpoint(*(float(v) for v in values))

    def send_velocity(self, vx: float, vy: float, vz: float, yawrate_deg_s: float = 0.0):
        """World-frame velocity setpoint (m/s) and yaw rate (deg/s)."""
        self._check()
        values = (vx, vy, vz, yawrate_deg_s)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"{self.uri}: velocity setpoint {values} is not finite")
        self._cf.commander.send_velocity_world_setpoint(*(float(v) for v in values))

    def stop(self, repeats: int = 3):
        """Stop setpoints (motors off). Repeated: over UDP a single packet may be lost."""
        if self._lost:
            return
        for _ in range(repeats):
            self._cf.commander.send_stop_setpoint()

    def arm(self, on: bool = True):
        self._check()
        self._cf.supervisor.send_arming_request(bool(on))

    def emergency_stop(self):
        self._cf.supervisor.send_emergency_stop()

    def set_param(self, name: str, value):
        self._check()
        try:
            self._cf.param.set_value(name, value)
        except KeyError:
            raise KeyError(f"{self.uri}: no parameter {name!r} on this firmware") from None

    def get_param(self, name: str) -> str:
        self._check()
        try:
            return self._cf.param.get_value(name)
        except KeyError:
            raise KeyError(f"{self.uri}: no parameter {name!r} on this firmware") from None

    @property
    def cf(self):
        """The underlying cflib Crazyflie, for what this class does not wrap."""
        return self._cf

    def stats(self) -> LinkStatistics:
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._rate_window if now - t <= 1.0]
            rate = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and recent[-1] > recent[0] else 0.0
            state = self._state
            states = self._states
        latency = self._cf.link_statistics.latency.latency
        return LinkStatistics(uri=self.uri, packets_sent=self._sent, packets_received=self._received, states=states,
                              state_rate_hz=rate, latency_ms=float(latency) if latency else None,
                              link_quality=self._quality, state_age_s=(now - state.t) if state else None)

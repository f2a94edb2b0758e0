"""Vehicle links as the control loop sees them: read the latest state, send motor actions, stop.

A link is a driver in cflib's sense: the loop never asks which vehicle it talks to. Actions are the
contract's normalized motor commands in [-1, 1]; each link maps them to what its vehicle takes.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from .protocol import Link, State  # noqa: F401  (re-exported: edgectl.runtime.links.State / Link)


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
        if self.stopped:
            a = np.full(4, -1.0)  # motors off
        with self._lock:
            self.x = self.nq.step(self.x, a, self.params)

    def stop(self) -> None:
        self.stopped = True

    def close(self) -> None:
        pass


class MavlinkMotorLink:
    """A PX4-style vehicle over MAVLink (pymavlink): streams the policy's motor commands as actuator
    controls, then enters offboard and arms (PX4 wants the stream first).

    `motor_scale`: "speed" sends (a + 1) / 2, the fraction of full rotor speed (the contract's rpm_linear
    mapping; what `edgectl sim-vehicle mavlink` takes); "force" sends ((a + 1) / 2)^2, the fraction of full
    thrust, for autopilots configured with a linear thrust model (PX4 >= 1.14 with THR_MDL_FAC = 0).

    Between control periods a KeepAlive repeats the newest command every 2 ms (for 20 ms at most), so the
    vehicle can tell a cut link from a quiet one within a period (the simulated vehicle's actuator_timeout)."""

    def __init__(self, url: str, *, signing_key: bytes | None = None, connect_timeout: float = 5.0,
                 motor_scale: str = "speed"):
        from firmware_bridge.mavlink.bridge import MavlinkLink
        if motor_scale not in ("speed", "force"):
            raise ValueError(f"motor_scale: expected 'speed' or 'force', got {motor_scale!r}")
        self.name, self.motor_scale = f"mavlink {url}", motor_scale
        self.link = MavlinkLink(url, signing_key=signing_key, connect_timeout=connect_timeout)
        self._armed, self._sent, self._stopped = False, 0, False
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
        self._sent += 1
        if not self._armed and self._sent >= 5:  # PX4 wants a setpoint stream before offboard, then arming
            self.link.start_offboard()
            self.link.arm()
            self._armed = True

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


def _is_sim_start(rest: str) -> bool:
    try:
        return not rest or all(float(v) == float(v) for v in rest.split(","))
    except ValueError:
        return False


def flies_on_board(uri: str) -> bool:
    """True for a Crazyflie URI (the policy flies in the vehicle's app, the host streams references), as
    open_link decides it, without connecting."""
    if uri.startswith("sim://") and _is_sim_start(uri[len("sim://"):]):
        return False
    return "://" in uri and uri.split("://", 1)[0] in ("radio", "usb", "udp", "sim")


def open_link(uri: str, platform, bundle=None) -> Link:
    """sim://[x,y,z] (in-process dynamics, host flies the motors), a pymavlink URL (udpout:, udpin:, tcp:,
    serial device), or a cflib URI (radio://, usb://, udp://host:port, sim://NAME of an in-process simulated
    Crazyflie): a Crazyflie flies the exported policy on board and the host streams the reference; given
    ``bundle``, its app must have been exported from that bundle (checked before arming)."""
    if uri.startswith("sim://") and _is_sim_start(uri[len("sim://"):]):
        rest = uri[len("sim://"):]
        start = tuple(float(v) for v in rest.split(",")) if rest else (0.0, 0.0, 0.0)
        if len(start) != 3:
            raise ValueError(f"--uri {uri}: expected sim:// or sim://x,y,z")
        return SimLink(platform, start_pos=start)
    if flies_on_board(uri):
        from .crazyflie_link import CrazyflieOnboardLink
        return CrazyflieOnboardLink(uri, platform, bundle=bundle)
    if uri.split(":", 1)[0] in ("udpout", "udpin", "udp", "tcp", "tcpin") or uri.startswith("/dev/"):
        return MavlinkMotorLink(uri)
    raise ValueError(f"--uri {uri}: unknown link; expected sim://, a MAVLink URL such as udpout:127.0.0.1:14550, "
                     "or a Crazyflie URI (radio://0/80/2M/E7E7E7E7E7, usb://0, udp://127.0.0.1:19850)")

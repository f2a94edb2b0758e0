"""Simulator side for real autopilot SITL builds, physics from edgectl's Numba dynamics.

PX4 (``Px4SitlServer``): the simulator listens on TCP 4560 and PX4 connects to it. Until PX4's
first HIL_ACTUATOR_CONTROLS the simulator free-runs at real time, sending sensors so PX4's clock
starts; from then on it is lockstep: each HIL_ACTUATOR_CONTROLS advances physics by one step
(``dt``, 4 ms by default, PX4's usual 250 Hz) and is answered by exactly one HIL_SENSOR (its
``time_usec`` is PX4's clock), plus HIL_STATE_QUATERNION (ground truth) every step and HIL_GPS at
10 Hz. Units as PX4's simulator_mavlink reads them: accel m/s^2 (specific force, FRD), gyro
rad/s FRD, mag gauss FRD, abs_pressure hPa, pressure_alt m; GPS degE7, mm, cm/s, cm.
Actuators: controls[0..3] are Quad-X motors 1..4 in [0, 1] (PX4 >= 1.14 pwm_out_sim scaling for
non-reversible motors), zero unless the ``mode`` armed flag (128) is set.

ArduPilot (``ArduPilotJsonServer``): UDP 9002, replies go to whoever sent the frame. In: binary
servo frames, little endian ``uint16 magic=18458, uint16 frame_rate, uint32 frame_count,
uint16 pwm[16]`` (or magic 29569 with pwm[32]); out: one JSON line per frame, wrapped in "\\n",
{"timestamp" s, "imu": {"gyro" rad/s FRD, "accel_body" m/s^2 FRD}, "position" m NED,
"velocity" m/s NED, "quaternion" [w, x, y, z] FRD->NED, "attitude" [roll, pitch, yaw]}, compact
(ArduPilot's parser expects the value right after ``"key":``). PWM 1000..2000 us on channels 1..4
= Quad-X motors 1..4. A repeated frame_count (ArduPilot resends after 1 s without a reply) is
answered again without stepping; a smaller one means SITL restarted and resets the vehicle.

The default vehicle is ``physics.generic_quad_params()`` (iris-sized), laid out as Quad-X.
"""
from __future__ import annotations

import json
import math
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass

import numpy as np

from firmware_bridge.mavlink._mav import mavlink
from firmware_bridge.mavlink.frames import enu_to_ned, flu_to_frd, ned_to_enu, quat_enu_flu_to_ned_frd, quat_to_euler, quat_to_rotmat
from .physics import QuadPhysics, generic_quad_params

EARTH_RADIUS = 6378137.0
ARDUPILOT_MAGIC_16, ARDUPILOT_MAGIC_32 = 18458, 29569
_AP16 = struct.Struct("<HHI16H")
_AP32 = struct.Struct("<HHI32H")
HIL_SENSOR_ALL = 0x1FFF  # accel, gyro, mag, abs/diff pressure, pressure alt, temperature


@dataclass(frozen=True)
class Home:
    """Where local (0, 0, 0) is. Default: PX4's SITL home (Zurich) and its magnetic field."""
    lat: float = 47.397742
    lon: float = 8.545594
    alt: float = 488.0  # m AMSL
    mag_ned: tuple[float, float, float] = (0.21523, 0.00771, 0.42741)  # gauss

    def geodetic(self, pos_enu: np.ndarray) -> tuple[float, float, float]:
        lat = self.lat + math.degrees(pos_enu[1] / EARTH_RADIUS)
        lon = self.lon + math.degrees(pos_enu[0] / (EARTH_RADIUS * math.cos(math.radians(self.lat))))
        return lat, lon, self.alt + float(pos_enu[2])


def pressure_hpa(alt_amsl: float) -> float:
    """ISA barometric pressure."""
    return 1013.25 * (1.0 - 2.25577e-5 * alt_amsl) ** 5.25588


def _i16(x: float) -> int:
    return int(max(-32768, min(32767, round(x))))


class _Server:
    """Thread + stop plumbing shared by both servers."""

    def __init__(self, params: np.ndarray | None, seed: int, noise: bool):
        self.phys = QuadPhysics(params if params is not None else generic_quad_params())
        self.rng = np.random.default_rng(seed)
        self.noise = noise
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.stats: dict[str, int] = {}

    def _count(self, key: str, n: int = 1) -> None:
        self.stats[key] = self.stats.get(key, 0) + n

    def start(self):
        self._thread = threading.Thread(target=self._guarded, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def _guarded(self) -> None:
        try:
            self.serve()
        except BaseException as e:  # noqa: BLE001  surfaced by stop()
            self.error = e

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self.close()
        if self.error is not None:
            raise RuntimeError(f"{type(self).__name__} failed: {self.error!r}") from self.error

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _imu(self) -> tuple[np.ndarray, np.ndarray]:
        """(specific force, gyro), FRD body."""
        acc, gyro = flu_to_frd(self.phys.specific_force_body()), flu_to_frd(self.phys.omega)
        if self.noise:
            acc = acc + self.rng.normal(0.0, 0.05, 3)
            gyro = gyro + self.rng.normal(0.0, 0.003, 3)
        return acc, gyro


class Px4SitlServer(_Server):
    def __init__(self, host: str = "127.0.0.1", port: int = 4560, *, params: np.ndarray | None = None,
                 home: Home = Home(), seed: int = 0, noise: bool = True, gps_rate: float = 10.0,
                 lockstep_timeout: float = 2.0, sensor_sysid: int = 1, sensor_compid: int = 200, speed: float = 1.0):
        super().__init__(params, seed, noise)
        # Lockstep runs as fast as PX4 answers (7x real time here, PX4 v1.17.0-alpha1 SITL); a MAVLink client on the
        # wall clock (an offboard policy, a ground station) needs simulated time paced to it, as Gazebo's real-time
        # factor 1 does. speed: simulated seconds per wall second; 0 = unpaced.
        self.speed = float(speed)
        self.home, self.gps_rate, self.lockstep_timeout = home, gps_rate, lockstep_timeout
        self.mav = mavlink.MAVLink(None, srcSystem=sensor_sysid, srcComponent=sensor_compid)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.listener.bind((host, port))
        except OSError as e:
            raise OSError(f"PX4 SITL server: cannot listen on tcp {host}:{port}: {e}") from e
        self.listener.listen(1)
        self.address = self.listener.getsockname()[:2]

    def close(self) -> None:
        self.listener.close()

    def serve(self) -> None:
        """Accept PX4 connections one after another until stopped (each starts a fresh vehicle)."""
        while not self._stop.is_set():
            if not select.select([self.listener], [], [], 0.1)[0]:
                continue
            conn, _ = self.listener.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._count("connections")
            try:
                self._session(conn)
            except (ConnectionError, OSError):
                self._count("disconnects")
            finally:
                conn.close()

    def _session(self, conn: socket.socket) -> None:
        self.phys.reset()
        mav = mavlink.MAVLink(None)  # own parser per connection
        mav.robust_parsing = True
        self.phys.step(-np.ones(4))  # start the clock at one step: PX4 reads timestamp 0 as "never"
        lockstep, steps, wall_next, pace0 = False, 1, time.monotonic() + self.phys.dt, None
        self._send(conn, self._sensor_messages(steps))  # get PX4's clock going
        while not self._stop.is_set():
            wait = self.lockstep_timeout if lockstep else max(0.0, wall_next - time.monotonic())
            readable = select.select([conn], [], [], min(wait, 0.1))[0]
            if readable:
                data = conn.recv(65536)
                if not data:
                    return
                for m in mav.parse_buffer(data) or []:
                    if m.get_type() == "HIL_ACTUATOR_CONTROLS":
                        lockstep = True
                        steps += 1
                        self._count("actuator_msgs")
                        self._step(m)
                        if self.speed > 0:  # hold the reply until the wall clock catches up with the simulation
                            if pace0 is None:
                                pace0 = time.monotonic() - self.phys.t / self.speed
                            late = pace0 + self.phys.t / self.speed - time.monotonic()
                            if late > 0:
                                time.sleep(late)
                        self._send(conn, self._sensor_messages(steps))
                    elif m.get_type() == "BAD_DATA":
                        self._count("bad_frames")
            elif not lockstep and time.monotonic() >= wall_next:
                # Free run until PX4 answers: zero motors, real time.
                self.phys.step(-np.ones(4))
                steps += 1
                self._send(conn, self._sensor_messages(steps))
                wall_next += self.phys.dt

    def _step(self, m) -> None:
        armed = bool(m.mode & mavlink.MAV_MODE_FLAG_SAFETY_ARMED)
        u = np.nan_to_num(np.asarray(m.controls[:4], dtype=np.float64), nan=0.0)
        u = np.clip(u, 0.0, 1.0) if armed else np.zeros(4)
        self.phys.step(2.0 * u - 1.0)

    def _send(self, conn: socket.socket, msgs) -> None:
        conn.sendall(b"".join(bytes(m.pack(self.mav)) for m in msgs))
        self._count("hil_sensor")  # one per call: lockstep is one HIL_SENSOR per actuator message

    def _sensor_messages(self, step: int) -> list:
        p, home, mav = self.phys, self.home, self.mav
        t_us = int(round(p.t * 1e6))
        acc, gyro = self._imu()
        r = quat_to_rotmat(p.quat)  # FLU -> ENU
        mag = flu_to_frd(r.T @ ned_to_enu(home.mag_ned))  # earth field NED -> ENU -> body FLU -> FRD
        alt = home.alt + float(p.pos[2])
        press = pressure_hpa(alt)
        if self.noise:
            # PX4's sensor voting (DataValidator) declares a sensor stale when its value repeats exactly: real PX4
            # SITL (v1.17.0-alpha1) stopped publishing vehicle_magnetometer and vehicle_air_data after about 1 s on
            # noise-free mag and baro here, and its EKF never aligned (arming denied). Gazebo's sensors are noisy too.
            mag = mag + self.rng.normal(0.0, 0.002, 3)  # gauss
            press = press + float(self.rng.normal(0.0, 0.002))  # hPa, ~2 cm of altitude
        msgs = [mav.hil_sensor_encode(t_us, *map(float, acc), *map(float, gyro), *map(float, mag),
                                      press, 0.0, alt, 15.0 - 0.0065 * (alt - home.alt), HIL_SENSOR_ALL, 0)]
        lat, lon, alt_m = home.geodetic(p.pos)
        vel_ned = enu_to_ned(p.vel)
        q_ned = quat_enu_flu_to_ned_frd(p.quat)
        gyro_true = flu_to_frd(p.omega)
        acc_mg = flu_to_frd(p.specific_force_body()) * 1000.0 / 9.80665
        msgs.append(mav.hil_state_quaternion_encode(
            t_us, [float(c) for c in q_ned], *map(float, gyro_true), int(lat * 1e7), int(lon * 1e7),
            int(alt_m * 1000), *(_i16(v * 100) for v in vel_ned), 0, 0, *(_i16(a) for a in acc_mg)))
        every = max(1, int(round(1.0 / (self.gps_rate * p.dt))))
        if step % every == 0:
            ground = math.hypot(vel_ned[0], vel_ned[1])
            cog = int(round(math.degrees(math.atan2(vel_ned[1], vel_ned[0])) % 360 * 100)) if ground > 0.2 else 65535
            msgs.append(mav.hil_gps_encode(t_us, 3, int(lat * 1e7), int(lon * 1e7), int(alt_m * 1000), 30, 40,
                                           int(min(ground * 100, 65534)), *(_i16(v * 100) for v in vel_ned),
                                           cog, 10, 0, 0))
        return msgs


class ArduPilotJsonServer(_Server):
    def __init__(self, host: str = "127.0.0.1", port: int = 9002, *, params: np.ndarray | None = None,
                 seed: int = 0, noise: bool = False, max_dt: float = 0.02):
        super().__init__(params, seed, noise)
        self.max_dt = max_dt
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind((host, port))
        except OSError as e:
            raise OSError(f"ArduPilot JSON server: cannot bind udp {host}:{port}: {e}") from e
        self.address = self.sock.getsockname()[:2]
        self._last_count: int | None = None
        self._last_reply = b""

    def close(self) -> None:
        self.sock.close()

    def serve(self) -> None:
        while not self._stop.is_set():
            if not select.select([self.sock], [], [], 0.1)[0]:
                continue
            data, addr = self.sock.recvfrom(2048)
            reply = self.handle_frame(data)
            if reply is not None:
                self.sock.sendto(reply, addr)

    def handle_frame(self, data: bytes) -> bytes | None:
        """One servo frame in, one JSON state line out (None: not a servo frame, ignored)."""
        if len(data) == _AP16.size and _AP16.unpack_from(data)[0] == ARDUPILOT_MAGIC_16:
            fields = _AP16.unpack(data)
        elif len(data) == _AP32.size and _AP32.unpack_from(data)[0] == ARDUPILOT_MAGIC_32:
            fields = _AP32.unpack(data)
        else:
            self._count("bad_frames")
            return None
        _, frame_rate, frame_count = fields[:3]
        pwm = np.asarray(fields[3:7], dtype=np.float64)
        if self._last_count is not None and frame_count == self._last_count:
            self._count("duplicate_frames")
            return self._last_reply
        if self._last_count is None or frame_count < self._last_count:
            if self._last_count is not None:
                self._count("resets")
            self.phys.reset()
        elif frame_count > self._last_count + 1:
            self._count("lost_frames", frame_count - self._last_count - 1)
        self._last_count = frame_count
        if frame_rate > 0:
            self.phys.dt = min(1.0 / frame_rate, self.max_dt)
        u = np.clip((pwm - 1000.0) / 1000.0, 0.0, 1.0)
        self.phys.step(2.0 * u - 1.0)
        self._count("frames")
        self._last_reply = self._state_line()
        return self._last_reply

    def _state_line(self) -> bytes:
        p = self.phys
        acc, gyro = self._imu()
        q = quat_enu_flu_to_ned_frd(p.quat)
        state = {
            "timestamp": round(p.t, 9),
            "imu": {"gyro": _rounded(gyro), "accel_body": _rounded(acc)},
            "position": _rounded(enu_to_ned(p.pos)),
            "attitude": _rounded(quat_to_euler(q)),
            "quaternion": _rounded(q),
            "velocity": _rounded(enu_to_ned(p.vel)),
        }
        return ("\n" + json.dumps(state, separators=(",", ":")) + "\n").encode()


def _rounded(v) -> list[float]:
    return [round(float(x), 7) for x in v]

"""A simulated RC car MCU on a pseudo-terminal (or a TCP socket), driven by edgectl's car dynamics.

The host opens the pty path with pyserial exactly as it would open /dev/ttyACM0; on the other
side runs the car-side link logic (``car_core.CarCore``, or the compiled C core with
``core="c"``) and the vehicle: ``edgectl.plant.car`` on the platform file, stepped in real
time (times ``speed``) at the platform's control rate (50 Hz), telemetry every step, heartbeats at
5 Hz and in answer to the host's. No COMMAND within its timeout -> the core's failsafe: neutral
steering, full brake.

Without numba (the ``bridge`` extra does not pull it in) the car falls back to a kinematic bicycle
stand-in with the same state layout, and says so in the log.
"""
from __future__ import annotations

import errno
import logging
import math
import os
import select
import socket
import threading
import time
import tty
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edgectl.plant.car_model import load_dynamics

from .car_core import CarCore, Sensors
from firmware_bridge.rccar.protocol import Flag

log = logging.getLogger(__name__)

ERPM_PER_MPS = 4614.0  # F1TENTH vesc.yaml speed_to_erpm_gain (stock Slash gearing, 4-pole-pair motor)
BATTERY_FULL_MV, BATTERY_SAG_MV, BATTERY_LOW_MV = 8200, 600, 7000  # 2S LiPo; sag at full throttle


# --------------------------------------------------------------------------------------------
# byte transports the car can sit behind
# --------------------------------------------------------------------------------------------
class _Pty:
    """The car holds the master; the host opens ``path``. Writes never block: like a UART with
    nobody listening, bytes are dropped when the slave's buffer is full."""

    def __init__(self):
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no CR/LF translation before pyserial configures it
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self._slave)
        self.dropped = 0

    def read(self, timeout: float) -> bytes:
        r, _, _ = select.select([self.master], [], [], max(timeout, 0.0))
        if not r:
            return b""
        try:
            return os.read(self.master, 4096)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as e:  # EIO: no slave open right now (we keep one, so rare)
            if e.errno == errno.EIO:
                time.sleep(min(timeout, 0.01))
                return b""
            raise

    def write(self, data: bytes) -> None:
        try:
            n = os.write(self.master, data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as e:
            if e.errno != errno.EIO:
                raise
            n = 0
        self.dropped += len(data) - n

    def close(self) -> None:
        for fd in (self.master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass


class _Tcp:
    """One host at a time on a TCP port (pyserial ``socket://host:port``)."""

    def __init__(self, host: str, port: int):
        self._srv = socket.create_server((host, port))
        self._srv.setblocking(False)
        self.address = self._srv.getsockname()[:2]
        self.path = f"socket://{self.address[0]}:{self.address[1]}"
        self._conn: socket.socket | None = None
        self.dropped = 0

    def read(self, timeout: float) -> bytes:
        sock = self._conn or self._srv
        r, _, _ = select.select([sock], [], [], max(timeout, 0.0))
        if not r:
            return b""
        if self._conn is None:
            self._conn, _ = self._srv.accept()
            self._conn.setblocking(False)
            self._conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return b""
        try:
            data = self._conn.recv(4096)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError:
            data = b""
        if not data:  # host went away: wait for the next one
            self._conn.close()
            self._conn = None
        return data

    def write(self, data: bytes) -> None:
        if self._conn is None:
            self.dropped += len(data)
            return
        try:
            n = self._conn.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            n = 0
        self.dropped += len(data) - n

    def close(self) -> None:
        for s in (self._conn, self._srv):
            if s is not None:
                s.close()


# --------------------------------------------------------------------------------------------
# the car
# --------------------------------------------------------------------------------------------
@dataclass
class SimStats:
    steps: int = 0
    rx_bytes: int = 0
    tx_frames: int = 0
    tx_hooked_out: int = 0     # frames the tx_hook dropped (fault injection)
    overruns: int = 0          # ticks late by more than a period (the host machine was busy)
    internal_errors: int = 0   # exceptions caught in the loop: must stay 0 whatever the host sends
    last_error: str = ""
    failsafe_steps: int = 0
    extra: dict = field(default_factory=dict)


class SimCar:
    """``SimCar(platform).open_pty()`` -> path for ``serial.Serial(path)``; ``start()``; ``close()``.

    ``tx_hook(frame) -> frame | None`` sees every frame the car sends (drop or corrupt on purpose).
    ``state`` is the vehicle state (``STATE_NAMES`` of the dynamics), ``t`` the simulated time.
    Faults, on request: ``loss`` (probability that a received chunk of bytes or a sent frame is lost; a
    lost chunk mid-frame is what a noisy UART does, and the CRC rejects the frame), ``cut_at`` /
    ``cut_for`` (simulated time from which nothing passes either way, for how long).
    """

    def __init__(self, platform: str = "rc_car_1_10", *, speed: float = 1.0, core: str = "python",
                 telemetry_hz: float | None = None, heartbeat_hz: float = 5.0, x: float = 0.0, y: float = 0.0,
                 yaw: float = 0.0, loss: float = 0.0, cut_at: float | None = None, cut_for: float | None = None,
                 seed: int = 0):
        if not 0.0 <= loss < 1.0:
            raise ValueError(f"loss={loss!r}: a probability in [0, 1)")
        self.loss, self.cut_at, self.cut_for = float(loss), cut_at, cut_for
        self._fault_rng = np.random.default_rng(seed)
        if not speed > 0:
            raise ValueError(f"speed={speed!r}: must be > 0")
        self.dyn, self.params, self.model = load_dynamics(platform)
        self.names = tuple(self.dyn.STATE_NAMES)
        self._i = {n: self.names.index(n) for n in ("x", "y", "yaw", "vx", "vy", "yaw_rate")}
        dt_i = list(self.dyn.PARAM_NAMES).index("dt")
        self.dt = float(self.params[dt_i])
        self.rate_hz = 1.0 / self.dt
        self.speed = float(speed)
        self._tel_every = max(1, round(self.rate_hz / (telemetry_hz or self.rate_hz)))
        self._hb_every = max(1, round(self.rate_hz / heartbeat_hz))
        if core == "python":
            self.core = CarCore(self._write)
        elif core == "c":
            from .ccore import CCore
            self.core = CCore(self._write)
        else:
            raise ValueError(f"core={core!r}: 'python' (car_core.py) or 'c' (firmware/car_link.c via ctypes)")
        self.core_kind = core
        self._state = np.asarray(self.dyn.initial_state(x, y, yaw), dtype=np.float64)
        self.dyn.step(self._state, np.zeros(2), self.params)  # JIT/cache load now, not in the first 20 ms tick
        self._prev_v = (0.0, 0.0)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._io: _Pty | _Tcp | None = None
        self.tx_hook: Callable[[bytes], bytes | None] | None = None
        self.stats = SimStats()
        self.t = 0.0
        self.battery_mv = BATTERY_FULL_MV
        self.sensors = Sensors(flags=int(Flag.SIMULATED))

    # --- transports -----------------------------------------------------------------------------
    def open_pty(self) -> str:
        self._io = _Pty()
        return self._io.path

    def serve_tcp(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen for one pyserial ``socket://`` client; returns that URL."""
        self._io = _Tcp(host, port)
        return self._io.path

    @property
    def path(self) -> str | None:
        return None if self._io is None else self._io.path

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> "SimCar":
        if self._io is None:
            self.open_pty()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sim-car", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self._io is not None:
            self._io.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    @property
    def state(self) -> dict[str, float]:
        with self._lock:
            return dict(zip(self.names, map(float, self._state)))

    def now_ms(self) -> int:
        return int(self.t * 1000.0)

    # --- the loop -------------------------------------------------------------------------------
    def link_cut(self) -> bool:
        if self.cut_at is None or self.t < self.cut_at:
            return False
        return self.cut_for is None or self.t < self.cut_at + self.cut_for

    def _lost(self) -> bool:
        return self.link_cut() or (self.loss > 0.0 and self._fault_rng.random() < self.loss)

    def _write(self, frame: bytes) -> None:
        if self._lost():
            self.stats.tx_hooked_out += 1
            return
        if self.tx_hook is not None:
            frame = self.tx_hook(frame)
            if not frame:
                self.stats.tx_hooked_out += 1
                return
        self.stats.tx_frames += 1
        self._io.write(frame)

    def _run(self) -> None:
        period = self.dt / self.speed
        t0 = time.monotonic()
        next_tick = t0
        while not self._stop.is_set():
            now = time.monotonic()
            self.t = (now - t0) * self.speed  # continuous between steps: the watchdog runs on it
            try:
                data = self._io.read(next_tick - now)
                if data and self._lost():
                    data = b""
                if data:
                    self.stats.rx_bytes += len(data)
                    self.t = (time.monotonic() - t0) * self.speed
                    self.core.feed(data, self.now_ms())
                if time.monotonic() >= next_tick:
                    self._step()
                    next_tick += period
                    if time.monotonic() - next_tick > period:
                        self.stats.overruns += 1
                        next_tick = time.monotonic() + period
            except Exception as e:  # a sim car must never die on what the host sends
                self.stats.internal_errors += 1
                self.stats.last_error = f"{type(e).__name__}: {e}"
                log.exception("sim car: loop error")
                time.sleep(period)

    def _step(self) -> None:
        now_ms = self.now_ms()
        core = self.core
        core.tick(now_ms)
        steer, throttle, brake = core.outputs()
        # Brake = full brake in the model (its brake force fades at standstill: never reverses).
        action = np.array([steer / 1000.0, -1.0 if brake else throttle / 1000.0])
        s = self.dyn.step(self._state, action, self.params)
        i = self._i
        vx, vy, r = float(s[i["vx"]]), float(s[i["vy"]]), float(s[i["yaw_rate"]])
        # body-frame acceleration of the CG (what an IMU there reads, gravity aside)
        ax = (vx - self._prev_v[0]) / self.dt - vy * r
        ay = (vy - self._prev_v[1]) / self.dt + vx * r
        self._prev_v = (vx, vy)
        with self._lock:
            self._state = s
        self.stats.steps += 1
        if core.flags & Flag.FAILSAFE:
            self.stats.failsafe_steps += 1
        self.battery_mv = int(BATTERY_FULL_MV - BATTERY_SAG_MV * max(throttle, 0) / 1000.0)
        flags = int(Flag.SIMULATED) | (int(Flag.LOW_BATTERY) if self.battery_mv < BATTERY_LOW_MV else 0)
        self.sensors = Sensors(_i16(vx * 1000.0), int(max(-2**31, min(2**31 - 1, vx * ERPM_PER_MPS))),
                               self.battery_mv, _i16(r * 1000.0), _i16(ax * 1000.0), _i16(ay * 1000.0), flags)
        n = self.stats.steps
        if n % self._tel_every == 0:
            core.send_telemetry(now_ms, self.sensors)
        if n % self._hb_every == 0:
            core.send_heartbeat(now_ms)


def _i16(x: float) -> int:
    return int(max(-32768, min(32767, round(x)))) if math.isfinite(x) else 0

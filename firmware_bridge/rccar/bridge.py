"""Host side of the RC car link: ``RcCarLink`` (our protocol, PROTOCOL.md) and ``VescLink`` (a VESC
speed controller's own UART protocol, for cars without our MCU).

Both take anything pyserial's ``serial_for_url`` opens: a device (/dev/ttyACM0), a pty path
(``sim_car``), ``socket://host:port``, ``loop://``.

    with RcCarLink("/dev/ttyACM0") as car:     # opens, waits for a HEARTBEAT, arms
        car.send_command(0.1, 0.2)              # steer, throttle in [-1, 1]; again within 200 ms,
        s = car.state()                         # or the car brakes (failsafe)
    # leaving the block: neutral command, DISARM, close
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import serial

from . import protocol as P
from . import vesc as V
from .protocol import Flag, FrameError


class RcCarLinkError(RuntimeError):
    pass


@dataclass(frozen=True)
class CarState:
    """Latest telemetry. ``t``: host time.monotonic() at receipt; SI units; steer/throttle in [-1, 1]."""
    t: float
    t_car: float
    speed: float
    erpm: int
    yaw_rate: float
    accel: tuple[float, float]
    steer: float
    throttle: float
    battery: float
    failsafe: bool
    armed: bool
    brake: bool
    low_battery: bool
    simulated: bool
    last_cmd_seq: int
    car_rx_errors: int
    n: int

    @classmethod
    def from_telemetry(cls, m: P.Telemetry, t: float, n: int) -> "CarState":
        f = Flag(m.flags)
        return cls(t, m.t_ms / 1000.0, m.speed_mm_s / 1000.0, m.erpm, m.yaw_rate_mrad_s / 1000.0,
                   (m.accel_x_mm_s2 / 1000.0, m.accel_y_mm_s2 / 1000.0), m.steer / 1000.0, m.throttle / 1000.0,
                   m.battery_mv / 1000.0, Flag.FAILSAFE in f, Flag.ARMED in f, Flag.BRAKE in f,
                   Flag.LOW_BATTERY in f, Flag.SIMULATED in f, m.last_cmd_seq, m.rx_errors, n)


@dataclass
class LinkStats:
    frames_ok: int = 0
    frames_bad: int = 0
    bad_by_kind: dict = field(default_factory=dict)
    drops: int = 0            # car frames missing by seq
    duplicates: int = 0
    late: int = 0             # reordered
    car_restarts: int = 0     # car uptime went backwards
    frames_sent: int = 0
    telemetry: int = 0
    telemetry_hz: float = 0.0  # over the last second
    rtt_ms: dict = field(default_factory=dict)  # heartbeat echo round trip: n, last, mean, p50, p95, max
    car_errors: dict = field(default_factory=dict)  # ERROR frames from the car, by code name
    unexpected: int = 0       # valid frames the car should not send (COMMAND, ARM, ...)


class RcCarLink:
    def __init__(self, port_or_url: str, baud: int = 115200, *, command_timeout_ms: int = 200,
                 connect_timeout: float = 2.0, heartbeat_hz: float = 5.0, arm: bool = True):
        if not P.TIMEOUT_MIN_MS <= command_timeout_ms <= P.TIMEOUT_MAX_MS:
            raise ValueError(f"command_timeout_ms={command_timeout_ms} outside [{P.TIMEOUT_MIN_MS}, {P.TIMEOUT_MAX_MS}]")
        self.port, self.baud = port_or_url, baud
        self.command_timeout_ms = command_timeout_ms
        self.connect_timeout, self.heartbeat_hz, self.arm_on_connect = connect_timeout, heartbeat_hz, arm
        self._ser: serial.SerialBase | None = None
        self._dec = P.FrameDecoder()
        self._seq_rx = P.SeqTracker()
        self._tx_seq = 0
        self._tx_lock = threading.Lock()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._state: CarState | None = None
        self._car_flags = 0
        self._car_uptime: int | None = None
        self._heartbeats = 0
        self._pending_hb: dict[int, float] = {}
        self._rtt: deque[float] = deque(maxlen=1000)
        self._tel_times: deque[float] = deque(maxlen=256)
        self._stats = LinkStats()
        self._rx_bytes = 0
        self.read_error: str | None = None
        self.on_telemetry: Callable[[CarState], None] | None = None
        self.errors: deque[tuple[float, P.Error]] = deque(maxlen=100)

    # --- lifecycle ------------------------------------------------------------------------------
    def connect(self) -> "RcCarLink":
        try:
            self._ser = serial.serial_for_url(self.port, baudrate=self.baud, timeout=0.02, write_timeout=1.0)
        except (serial.SerialException, ValueError, OSError) as e:
            raise RcCarLinkError(f"{self.port}: cannot open at {self.baud} baud: {e}") from None
        try:
            self._ser.reset_input_buffer()  # telemetry queued before we came is stale
        except (serial.SerialException, OSError, NotImplementedError):
            pass
        self._stop.clear()
        self._write(b"\x00")  # end whatever partial frame the car's decoder holds
        for target, name in ((self._reader, "rccar-rx"), (self._heartbeat_loop, "rccar-hb")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        if not self._wait(lambda: self._heartbeats > 0, self.connect_timeout):
            n_bytes, bad = self._rx_bytes, self._dec.bad
            self.close(stop_car=False)
            hint = ("nothing at all: is the car powered and this the right port?" if n_bytes == 0 else
                    f"{n_bytes} bytes, {bad} malformed frames: baud rate ({self.baud}) or firmware version?")
            raise RcCarLinkError(f"{self.port}: no HEARTBEAT from the car within {self.connect_timeout:g} s; got {hint}")
        if self.arm_on_connect:
            self.arm()
        return self

    def close(self, stop_car: bool = True) -> None:
        if self._ser is None:
            return
        if stop_car and self.read_error is None:
            try:
                self.stop()
            except (RcCarLinkError, serial.SerialException, OSError):
                pass
        self._stop.set()
        for t in self._threads:
            t.join(timeout=1.0)
        self._threads.clear()
        self._ser.close()
        self._ser = None

    def __enter__(self):
        return self.connect()

    def __exit__(self, *exc):
        self.close()

    # --- commands -------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if self._ser is None:
            raise RcCarLinkError(f"{self.port}: link is not open")
        try:
            self._ser.write(data)
        except (serial.SerialException, OSError) as e:
            raise RcCarLinkError(f"{self.port}: write failed: {e}") from None

    def _send(self, msg: P.Message) -> int:
        with self._tx_lock:  # seq order == wire order, whichever thread sends
            seq = self._tx_seq
            frame = P.encode(msg, seq)
            if isinstance(msg, P.Heartbeat):
                self._pending_hb[seq] = time.monotonic()
            self._write(frame)
            self._tx_seq = (seq + 1) & 0xFFFF
            self._stats.frames_sent += 1
        return seq

    def send_command(self, steer: float, throttle: float) -> int:
        """steer (+ = left), throttle (+ = drive, - = brake) in [-1, 1]. Send again within
        command_timeout_ms or the car brakes. Returns the frame's seq."""
        return self._send(P.Command(P.to_permille(steer, "steer"), P.to_permille(throttle, "throttle"),
                                    self.command_timeout_ms))

    def arm(self, timeout: float = 1.0) -> None:
        self._send(P.Arm())
        if not self._wait(lambda: self._car_flags & Flag.ARMED, timeout):
            raise RcCarLinkError(f"{self.port}: car did not report ARMED within {timeout:g} s")

    def disarm(self, timeout: float = 1.0) -> None:
        self._send(P.Disarm())
        if not self._wait(lambda: not self._car_flags & Flag.ARMED, timeout):
            raise RcCarLinkError(f"{self.port}: car did not report DISARMED within {timeout:g} s")

    def stop(self) -> None:
        """Neutral steering and throttle, then DISARM (the car holds its brake)."""
        if self._car_flags & Flag.ARMED:  # a disarmed car would refuse the command (ERROR NOT_ARMED)
            self.send_command(0.0, 0.0)
        self.disarm()

    # --- state ----------------------------------------------------------------------------------
    def state(self) -> CarState | None:
        with self._cond:
            return self._state

    @property
    def car_flags(self) -> Flag:
        return Flag(self._car_flags)

    def wait_state(self, pred: Callable[[CarState], bool], timeout: float = 1.0) -> CarState:
        if not self._wait(lambda: self._state is not None and pred(self._state), timeout):
            raise TimeoutError(f"{self.port}: telemetry condition not met within {timeout:g} s (last: {self._state})")
        return self._state

    def _wait(self, pred, timeout: float) -> bool:
        with self._cond:
            return bool(self._cond.wait_for(lambda: pred() or self.read_error is not None, timeout)) and \
                self.read_error is None

    def stats(self) -> LinkStats:
        with self._cond:
            s = LinkStats(**{k: getattr(self._stats, k) for k in ("frames_sent", "telemetry", "unexpected",
                                                                    "car_restarts")})
            s.frames_ok, s.frames_bad, s.bad_by_kind = self._dec.ok, self._dec.bad, dict(self._dec.errors)
            s.drops, s.duplicates, s.late = self._seq_rx.gaps, self._seq_rx.dups, self._seq_rx.late
            s.car_errors = dict(self._stats.car_errors)
            now = time.monotonic()
            recent = [t for t in self._tel_times if now - t <= 1.0]
            s.telemetry_hz = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 2 else 0.0
            if self._rtt:
                r = sorted(self._rtt)
                s.rtt_ms = {"n": len(r), "last": self._rtt[-1], "mean": sum(r) / len(r), "p50": r[len(r) // 2],
                            "p95": r[min(len(r) - 1, int(0.95 * len(r)))], "max": r[-1]}
        return s

    # --- threads --------------------------------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        period = 1.0 / self.heartbeat_hz
        while not self._stop.is_set():
            try:
                self._send(P.Heartbeat(int(time.monotonic() * 1000) & 0xFFFFFFFF, 0, 0))
            except RcCarLinkError:
                pass
            now = time.monotonic()
            with self._tx_lock:
                for seq in [s for s, t in self._pending_hb.items() if now - t > 5.0]:
                    del self._pending_hb[seq]  # never echoed: lost
            self._stop.wait(period)

    def _reader(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._ser.read(max(1, self._ser.in_waiting))
            except (serial.SerialException, OSError, TypeError, AttributeError) as e:
                if self._stop.is_set():
                    return
                with self._cond:
                    self.read_error = f"{self.port}: read failed: {e}"
                    self._cond.notify_all()
                return
            if not data:
                continue
            t = time.monotonic()
            fresh = []
            with self._cond:
                self._rx_bytes += len(data)
                for item in self._dec.feed(data):
                    if not isinstance(item, FrameError) and self._handle(item, t):
                        fresh.append(self._state)
                self._cond.notify_all()
            if self.on_telemetry is not None:
                for st in fresh:  # every frame, not just the last of a chunk: odometry integrates each one
                    self.on_telemetry(st)

    def _handle(self, pkt: P.Packet, t: float) -> bool:
        """Book one frame; True if it was telemetry."""
        msg = pkt.msg
        if isinstance(msg, P.Heartbeat):
            if self._car_uptime is not None and msg.uptime_ms < self._car_uptime:
                self._stats.car_restarts += 1
                self._seq_rx.reset()
            self._car_uptime = msg.uptime_ms
            self._seq_rx.update(pkt.seq)
            self._heartbeats += 1
            self._car_flags = msg.flags
            if msg.flags & Flag.ECHO:
                with self._tx_lock:
                    t_sent = self._pending_hb.pop(msg.echo_seq, None)
                if t_sent is not None:  # the car repeats its last echo in periodic heartbeats: count once
                    self._rtt.append((t - t_sent) * 1000.0)
            return False
        self._seq_rx.update(pkt.seq)
        if isinstance(msg, P.Telemetry):
            self._stats.telemetry += 1
            self._car_flags = msg.flags
            self._tel_times.append(t)
            self._state = CarState.from_telemetry(msg, t, self._stats.telemetry)
            return True
        elif isinstance(msg, P.Error):
            name = P.ErrorCode(msg.code).name
            self._stats.car_errors[name] = self._stats.car_errors.get(name, 0) + 1
            self.errors.append((t, msg))
        else:
            self._stats.unexpected += 1
        return False


# ------------------------------------------------------------------------------------------------
# VESC
# ------------------------------------------------------------------------------------------------
class VescLink:
    """A VESC on a UART/USB port, spoken to directly (VESC packets, see vesc.py).

    Car mapping for ``send_command``: throttle >= 0 -> duty ``throttle * max_duty``; throttle < 0 ->
    brake current ``-throttle * max_brake_current``; steer -> the VESC's servo output
    ``0.5 + 0.5 * steer * servo_sign`` (0..1). The VESC's own timeout (app config, default 1 s)
    releases the motor if commands stop. ``speed`` = eRPM / erpm_per_mps.
    """

    def __init__(self, port_or_url: str, baud: int = 115200, *, timeout: float = 0.5, max_duty: float = 0.3,
                 max_brake_current: float = 20.0, servo_sign: float = 1.0, erpm_per_mps: float = 4614.0):
        self.port, self.timeout = port_or_url, timeout
        self.max_duty, self.max_brake_current = max_duty, max_brake_current
        self.servo_sign, self.erpm_per_mps = servo_sign, erpm_per_mps
        self._dec = V.VescDecoder()
        self._lock = threading.Lock()
        try:
            self._ser = serial.serial_for_url(port_or_url, baudrate=baud, timeout=0.02, write_timeout=1.0)
        except (serial.SerialException, ValueError, OSError) as e:
            raise RcCarLinkError(f"{port_or_url}: cannot open VESC at {baud} baud: {e}") from None

    def close(self) -> None:
        self._ser.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.stop()
        finally:
            self.close()

    @property
    def stats(self) -> dict:
        return {"packets_ok": self._dec.ok, "packets_bad": self._dec.bad, "bad_by_kind": dict(self._dec.errors)}

    def send(self, payload: bytes) -> None:
        try:
            self._ser.write(V.pack(payload))
        except (serial.SerialException, OSError) as e:
            raise RcCarLinkError(f"{self.port}: VESC write failed: {e}") from None

    def set_duty(self, duty: float) -> None:
        self.send(V.set_duty(duty))

    def set_current(self, amps: float) -> None:
        self.send(V.set_current(amps))

    def set_brake_current(self, amps: float) -> None:
        self.send(V.set_current_brake(amps))

    def set_rpm(self, erpm: float) -> None:
        self.send(V.set_rpm(erpm))

    def set_servo(self, pos: float) -> None:
        self.send(V.set_servo_pos(pos))

    def alive(self) -> None:
        self.send(V.alive())

    def get_values(self) -> V.VescValues:
        with self._lock:  # one request in flight: replies carry no request id
            self._ser.reset_input_buffer()
            self._dec.reset()
            self.send(V.get_values())
            t_end = time.monotonic() + self.timeout
            while time.monotonic() < t_end:
                data = self._ser.read(max(1, self._ser.in_waiting))
                for item in self._dec.feed(data):
                    if isinstance(item, bytes) and item[:1] == bytes([V.Comm.GET_VALUES]):
                        return V.decode_values(item)
        raise RcCarLinkError(f"{self.port}: no COMM_GET_VALUES reply within {self.timeout:g} s "
                             f"({self._dec.bad} bad packets so far)")

    def speed(self, values: V.VescValues) -> float:
        return values.erpm / self.erpm_per_mps

    def send_command(self, steer: float, throttle: float) -> None:
        steer, throttle = P.to_permille(steer, "steer") / 1000.0, P.to_permille(throttle, "throttle") / 1000.0
        self.set_servo(0.5 + 0.5 * steer * self.servo_sign)
        if throttle >= 0:
            self.set_duty(throttle * self.max_duty)
        else:
            self.set_brake_current(-throttle * self.max_brake_current)

    def stop(self) -> None:
        self.set_current(0.0)
        self.set_servo(0.5)

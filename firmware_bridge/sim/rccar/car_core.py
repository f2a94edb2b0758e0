"""The car-side link logic in Python: a line-for-line twin of ``firmware/car_link.c``.

``sim_car`` runs it (or the compiled C core, same interface, via ``ccore.CCore``) so the host
talks to the same state machine a real car runs. The tests feed both the same byte streams and
compare every verdict, output and counter.

Interface (shared with ``ccore.CCore``)
- ``CarCore(write)``: ``write(bytes)`` is called with every frame the car sends.
- ``feed(data, now_ms) -> list[int]``: one verdict per completed frame, as ``cl_feed`` returns them
  (message type > 0 for a valid frame handled, 0 for an ignored one, -ErrorCode for a rejected one).
- ``tick(now_ms)``: the command watchdog. ``outputs() -> (steer, throttle, brake)`` in per mille.
- ``send_heartbeat(now_ms)``, ``send_telemetry(now_ms, Sensors)``; ``flags``; ``counters()``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from firmware_bridge.rccar import protocol as P
from firmware_bridge.rccar.protocol import ErrorCode, Flag, FrameError, MsgType

COUNTERS = ("rx_ok", "crc", "cobs", "length", "type", "version", "value", "overflow",
            "not_armed", "late", "gaps", "failsafe", "tx")
_LINE_ERRORS = ("crc", "cobs", "length", "type", "version", "value", "overflow")


@dataclass
class Sensors:
    speed_mm_s: int = 0
    erpm: int = 0
    battery_mv: int = 0
    yaw_rate_mrad_s: int = 0
    accel_x_mm_s2: int = 0
    accel_y_mm_s2: int = 0
    flags: int = 0  # LOW_BATTERY, SIMULATED


class CarCore:
    def __init__(self, write: Callable[[bytes], None] | None = None):
        self.write = write
        self._buf = bytearray()
        self._overflow = False
        self.tx_seq = 0
        self.rx_seq: int | None = None
        self.echo_seq: int | None = None
        self.armed = self.failsafe = self.cmd_valid = False
        self.last_cmd_seq = 0
        self.cmd_timeout_ms = 200
        self.last_cmd_ms = 0
        self.extra_flags = 0
        self.c = dict.fromkeys(COUNTERS, 0)
        self._neutral()

    def _neutral(self) -> None:
        self.steer_out, self.throttle_out, self.brake = 0, 0, True

    # --- outputs and status -------------------------------------------------------------------
    @property
    def flags(self) -> int:
        return (self.extra_flags | (Flag.ARMED if self.armed else 0) | (Flag.FAILSAFE if self.failsafe else 0)
                | (Flag.BRAKE if self.brake else 0))

    def outputs(self) -> tuple[int, int, bool]:
        return self.steer_out, self.throttle_out, self.brake

    def counters(self) -> dict[str, int]:
        return dict(self.c)

    # --- sending --------------------------------------------------------------------------------
    def _send(self, msg: P.Message) -> None:
        frame = P.encode(msg, self.tx_seq)
        self.tx_seq = (self.tx_seq + 1) & 0xFFFF
        self.c["tx"] += 1
        if self.write is not None:
            self.write(frame)

    def send_heartbeat(self, now_ms: int) -> None:
        f = self.flags | (Flag.ECHO if self.echo_seq is not None else 0)
        self._send(P.Heartbeat(now_ms & 0xFFFFFFFF, int(f), self.echo_seq or 0))

    def send_telemetry(self, now_ms: int, s: Sensors) -> None:
        self.extra_flags = s.flags & (Flag.LOW_BATTERY | Flag.SIMULATED)
        errs = sum(self.c[k] for k in _LINE_ERRORS) & 0xFFFF
        self._send(P.Telemetry(now_ms & 0xFFFFFFFF, s.speed_mm_s, s.erpm, self.steer_out, self.throttle_out,
                               s.battery_mv, s.yaw_rate_mrad_s, s.accel_x_mm_s2, s.accel_y_mm_s2,
                               int(self.flags), self.last_cmd_seq, errs))

    # --- receiving ------------------------------------------------------------------------------
    def feed(self, data: bytes, now_ms: int) -> list[int]:
        out = []
        for b in data:  # byte-wise, as the MCU sees them
            if b:
                if not self._overflow:
                    self._buf.append(b)
                    self._overflow = len(self._buf) > P.MAX_ENCODED
                continue
            frame, overflow = bytes(self._buf), self._overflow
            self._buf.clear()
            self._overflow = False
            if overflow:
                out.append(self._reject(ErrorCode.OVERFLOW, 0xFFFF, False))
            elif frame:
                out.append(self._frame(frame, now_ms))
        return out

    def _reject(self, code: ErrorCode, ref_seq: int, reply: bool) -> int:
        self.c[code.name.lower()] += 1
        if reply:  # only frames that passed the CRC (the host really sent them) get an ERROR back
            self._send(P.Error(int(code), ref_seq))
        return -int(code)

    def _frame(self, frame: bytes, now_ms: int) -> int:
        try:
            pkt = P.decode_frame(frame)
        except FrameError as e:
            code = ErrorCode[e.kind.upper()]
            if e.kind == "value" and frame and P.cobs.decode(frame)[1] == MsgType.TELEMETRY:
                code = ErrorCode.TYPE  # the C core refuses the direction before looking at values
            return self._reject(code, 0xFFFF if e.seq is None else e.seq, e.seq is not None)
        seq, msg = pkt.seq, pkt.msg
        if isinstance(msg, P.Telemetry):  # car -> host only
            return self._reject(ErrorCode.TYPE, seq, True)
        self.c["rx_ok"] += 1
        if isinstance(msg, P.Arm):
            self.rx_seq = seq  # a new session starts here: rebase the gap counter
            self.armed, self.failsafe, self.cmd_valid = True, True, False
            self._neutral()
            return MsgType.ARM
        self._track(seq)
        if isinstance(msg, P.Command):
            return self._command(msg, seq, now_ms)
        if isinstance(msg, P.Heartbeat):
            self.echo_seq = seq
            self.send_heartbeat(now_ms)
            return MsgType.HEARTBEAT
        if isinstance(msg, P.Disarm):
            self.armed = self.failsafe = self.cmd_valid = False
            self._neutral()
            return MsgType.DISARM
        return MsgType.ERROR

    def _track(self, seq: int) -> None:
        if self.rx_seq is None:
            self.rx_seq = seq
            return
        d = (seq - self.rx_seq) & 0xFFFF
        if d == 0:
            return
        if d < 0x8000:
            self.c["gaps"] += d - 1
            self.rx_seq = seq
        elif d < 0x10000 - P.SeqTracker.REORDER_WINDOW:
            self.rx_seq = seq  # the host restarted

    def _command(self, msg: P.Command, seq: int, now_ms: int) -> int:
        if not self.armed:
            self.c["not_armed"] += 1
            self._send(P.Error(ErrorCode.NOT_ARMED, seq))
            return -ErrorCode.NOT_ARMED
        d = (seq - self.last_cmd_seq) & 0xFFFF
        if self.cmd_valid and (d == 0 or d >= 0x10000 - P.SeqTracker.REORDER_WINDOW):
            self.c["late"] += 1  # never apply a command older than one already applied
            return 0
        self.steer_out, self.throttle_out, self.brake = msg.steer, msg.throttle, False
        self.failsafe, self.cmd_valid = False, True
        self.last_cmd_seq, self.last_cmd_ms, self.cmd_timeout_ms = seq, now_ms, msg.timeout_ms
        return MsgType.COMMAND

    def tick(self, now_ms: int) -> None:
        if self.armed and not self.failsafe and ((now_ms - self.last_cmd_ms) & 0xFFFFFFFF) > self.cmd_timeout_ms:
            self.failsafe = True
            self.c["failsafe"] += 1
            self._neutral()
            self._send(P.Error(ErrorCode.WATCHDOG, self.last_cmd_seq))

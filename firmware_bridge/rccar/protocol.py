"""The RC car serial protocol (see PROTOCOL.md): framing, messages, strict decoding, sequence tracking.

frame   = COBS(payload + CRC-16/CCITT-FALSE(payload), little-endian) + 0x00
payload = version u8 | type u8 | seq u16 LE | body (fixed length per type)

The car-side twin of this file is ``firmware/car_link.c``; the tests hold the two to the same
bytes, the same verdicts and the same error counters. Any change here needs the same change there
and a new ``VERSION``.
"""
from __future__ import annotations

import binascii
import struct
from collections import Counter
from dataclasses import astuple, dataclass, fields
from enum import IntEnum, IntFlag
from typing import ClassVar

from cobs import cobs

VERSION = 1
HEADER = struct.Struct("<BBH")
CRC_LEN = 2
PERMILLE = 1000
TIMEOUT_MIN_MS, TIMEOUT_MAX_MS = 20, 5000
# Largest payload (TELEMETRY) + CRC; COBS adds exactly one byte below 254 bytes, so anything longer
# than MAX_ENCODED between two delimiters is garbage and is dropped without buffering it.
MAX_BODY = 28
MAX_DECODED = HEADER.size + MAX_BODY + CRC_LEN
MAX_ENCODED = MAX_DECODED + 1


class MsgType(IntEnum):
    HEARTBEAT = 1
    COMMAND = 2
    TELEMETRY = 3
    ARM = 4
    DISARM = 5
    ERROR = 6


class Flag(IntFlag):
    ARMED = 0x01
    FAILSAFE = 0x02     # armed, but no valid COMMAND within its timeout: neutral throttle + brake
    ECHO = 0x04         # HEARTBEAT.echo_seq is valid
    LOW_BATTERY = 0x08
    SIMULATED = 0x10    # sent by sim_car, never by a real car
    BRAKE = 0x20


FLAG_MASK = int(sum(Flag))


class ErrorCode(IntEnum):
    NONE = 0
    CRC = 1
    COBS = 2
    LENGTH = 3
    TYPE = 4
    VERSION = 5
    VALUE = 6
    OVERFLOW = 7
    NOT_ARMED = 8   # a COMMAND while disarmed: refused, the car stays still
    WATCHDOG = 9    # the command watchdog tripped (ref_seq = last COMMAND's seq)


class FrameError(ValueError):
    """A rejected frame. ``kind`` is one of ERROR_KINDS; the message names the field and value."""

    def __init__(self, kind: str, message: str, seq: int | None = None):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.seq = seq


ERROR_KINDS = ("cobs", "overflow", "length", "crc", "version", "type", "value")


def _check_range(name: str, value: int, lo: int, hi: int, seq: int | None = None) -> None:
    if not lo <= value <= hi:
        raise FrameError("value", f"{name}={value} outside [{lo}, {hi}]", seq)


@dataclass(frozen=True)
class Heartbeat:
    TYPE: ClassVar[MsgType] = MsgType.HEARTBEAT
    FMT: ClassVar[struct.Struct] = struct.Struct("<IHH")
    uptime_ms: int
    flags: int = 0
    echo_seq: int = 0


@dataclass(frozen=True)
class Command:
    """steer, throttle: per mille of full scale, [-1000, 1000]; the car goes to failsafe if the
    next COMMAND does not arrive within timeout_ms."""
    TYPE: ClassVar[MsgType] = MsgType.COMMAND
    FMT: ClassVar[struct.Struct] = struct.Struct("<hhH")
    steer: int
    throttle: int
    timeout_ms: int = 200


@dataclass(frozen=True)
class Telemetry:
    TYPE: ClassVar[MsgType] = MsgType.TELEMETRY
    FMT: ClassVar[struct.Struct] = struct.Struct("<IhihhHhhhHHH")
    t_ms: int                # car clock
    speed_mm_s: int          # wheel speed, forward positive
    erpm: int                # motor electrical RPM (0 when the car has no such sensor)
    steer: int               # actual output, per mille
    throttle: int            # actual output, per mille (0 in failsafe)
    battery_mv: int
    yaw_rate_mrad_s: int     # body z, counter-clockwise (left turn) positive
    accel_x_mm_s2: int       # body x forward
    accel_y_mm_s2: int       # body y left
    flags: int
    last_cmd_seq: int        # seq of the last accepted COMMAND
    rx_errors: int           # frames the car rejected so far (wraps at 65536)


@dataclass(frozen=True)
class Arm:
    TYPE: ClassVar[MsgType] = MsgType.ARM
    FMT: ClassVar[struct.Struct] = struct.Struct("<")


@dataclass(frozen=True)
class Disarm:
    TYPE: ClassVar[MsgType] = MsgType.DISARM
    FMT: ClassVar[struct.Struct] = struct.Struct("<")


@dataclass(frozen=True)
class Error:
    TYPE: ClassVar[MsgType] = MsgType.ERROR
    FMT: ClassVar[struct.Struct] = struct.Struct("<BH")
    code: int
    ref_seq: int = 0xFFFF   # seq of the offending frame, 0xFFFF when unknown


Message = Heartbeat | Command | Telemetry | Arm | Disarm | Error
MESSAGES: dict[int, type] = {int(m.TYPE): m for m in (Heartbeat, Command, Telemetry, Arm, Disarm, Error)}


@dataclass(frozen=True)
class Packet:
    seq: int
    msg: Message
    version: int = VERSION


def _validate(msg: Message, seq: int | None = None) -> None:
    """Value checks shared by encode and decode (both ends refuse what the other must not send)."""
    name = type(msg).__name__.upper()
    if isinstance(msg, Command):
        _check_range(f"{name}.steer", msg.steer, -PERMILLE, PERMILLE, seq)
        _check_range(f"{name}.throttle", msg.throttle, -PERMILLE, PERMILLE, seq)
        _check_range(f"{name}.timeout_ms", msg.timeout_ms, TIMEOUT_MIN_MS, TIMEOUT_MAX_MS, seq)
    elif isinstance(msg, Telemetry):
        _check_range(f"{name}.steer", msg.steer, -PERMILLE, PERMILLE, seq)
        _check_range(f"{name}.throttle", msg.throttle, -PERMILLE, PERMILLE, seq)
    elif isinstance(msg, Error):
        _check_range(f"{name}.code", msg.code, 1, max(ErrorCode), seq)
    if isinstance(msg, (Heartbeat, Telemetry)) and msg.flags & ~FLAG_MASK:
        raise FrameError("value", f"{name}.flags=0x{msg.flags:04x} has reserved bits 0x{msg.flags & ~FLAG_MASK:04x} set", seq)


_INT_RANGE = {"B": (0, 0xFF), "H": (0, 0xFFFF), "h": (-0x8000, 0x7FFF), "I": (0, 0xFFFFFFFF),
              "i": (-0x80000000, 0x7FFFFFFF)}


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor)."""
    return binascii.crc_hqx(data, 0xFFFF)


def encode_payload(msg: Message, seq: int) -> bytes:
    _check_range("seq", seq, 0, 0xFFFF)
    _validate(msg)
    for f, code in zip(fields(msg), msg.FMT.format[1:]):  # name the field a wire type cannot hold
        lo, hi = _INT_RANGE[code]
        v = getattr(msg, f.name)
        if not isinstance(v, int):
            raise FrameError("value", f"{type(msg).__name__.upper()}.{f.name}={v!r} is not an integer")
        _check_range(f"{type(msg).__name__.upper()}.{f.name}", v, lo, hi)
    body = msg.FMT.pack(*astuple(msg))
    return HEADER.pack(VERSION, int(msg.TYPE), seq) + body


def encode(msg: Message, seq: int) -> bytes:
    """One complete frame, delimiter included."""
    payload = encode_payload(msg, seq)
    return cobs.encode(payload + crc16(payload).to_bytes(2, "little")) + b"\x00"


def decode_payload(decoded: bytes) -> Packet:
    """Check a COBS-decoded frame (payload + CRC) in the order the C core does: length, CRC,
    version, type, length for the type, values."""
    if len(decoded) < HEADER.size + CRC_LEN:
        raise FrameError("length", f"frame of {len(decoded)} bytes is shorter than header + CRC ({HEADER.size + CRC_LEN})")
    payload, crc_rx = decoded[:-CRC_LEN], int.from_bytes(decoded[-CRC_LEN:], "little")
    crc = crc16(payload)
    if crc != crc_rx:
        raise FrameError("crc", f"CRC 0x{crc_rx:04x} received, 0x{crc:04x} computed over {len(payload)} bytes")
    version, mtype, seq = HEADER.unpack_from(payload)
    if version != VERSION:
        raise FrameError("version", f"version {version}, this end speaks {VERSION}", seq)
    cls = MESSAGES.get(mtype)
    if cls is None:
        raise FrameError("type", f"unknown message type {mtype} (known: {', '.join(f'{int(t)}={t.name}' for t in MsgType)})", seq)
    body = payload[HEADER.size:]
    if len(body) != cls.FMT.size:
        raise FrameError("length", f"{cls.TYPE.name} body of {len(body)} bytes, expected {cls.FMT.size}", seq)
    msg = cls(*cls.FMT.unpack(body))
    _validate(msg, seq)
    return Packet(seq, msg, version)


def decode_frame(frame: bytes) -> Packet:
    """Decode one frame given without its 0x00 delimiter; raises FrameError."""
    if len(frame) > MAX_ENCODED:
        raise FrameError("overflow", f"{len(frame)} bytes between delimiters, at most {MAX_ENCODED} in a valid frame")
    try:
        decoded = cobs.decode(frame)
    except cobs.DecodeError as e:
        raise FrameError("cobs", f"bad COBS in {len(frame)}-byte frame: {e}") from None
    return decode_payload(decoded)


class FrameDecoder:
    """Stream decoder: ``feed(bytes)`` returns the packets and FrameErrors completed by those bytes.

    Resynchronises on every 0x00. Empty frames (0x00 0x00) are idle fill, not errors. A frame that
    grows past MAX_ENCODED is dropped as it arrives (bounded memory) and reported at its delimiter.
    """

    def __init__(self):
        self._buf = bytearray()
        self._overflow = 0
        self.ok = 0
        self.errors: Counter[str] = Counter()

    @property
    def bad(self) -> int:
        return sum(self.errors.values())

    def feed(self, data: bytes) -> list[Packet | FrameError]:
        out: list[Packet | FrameError] = []
        start = 0
        while True:
            end = data.find(0, start)
            chunk = data[start:] if end < 0 else data[start:end]
            if self._overflow or len(self._buf) + len(chunk) > MAX_ENCODED:
                self._overflow += len(self._buf) + len(chunk)
                self._buf.clear()
            else:
                self._buf += chunk
            if end < 0:
                return out
            item: Packet | FrameError | None = None
            if self._overflow:
                n, self._overflow = self._overflow, 0
                item = FrameError("overflow", f"more than {MAX_ENCODED} bytes without a delimiter ({n} dropped)")
            elif self._buf:
                try:
                    item = decode_frame(bytes(self._buf))
                except FrameError as e:
                    item = e
            self._buf.clear()
            if isinstance(item, FrameError):
                self.errors[item.kind] += 1
            elif item is not None:
                self.ok += 1
            if item is not None:
                out.append(item)
            start = end + 1


class SeqTracker:
    """Counts gaps (dropped frames), duplicates and late (reordered) frames in one peer's seq stream.

    A frame more than REORDER_WINDOW behind is taken as the peer having restarted (resync), since
    frames on a serial line are never that late.
    """
    REORDER_WINDOW = 1024

    def __init__(self):
        self.last: int | None = None
        self.received = self.gaps = self.dups = self.late = self.resyncs = 0

    def reset(self) -> None:
        self.last = None

    def update(self, seq: int) -> str:
        self.received += 1
        if self.last is None:
            self.last = seq
            return "first"
        d = (seq - self.last) & 0xFFFF
        if d == 0:
            self.dups += 1
            return "dup"
        if d < 0x8000:
            self.gaps += d - 1
            self.last = seq
            return "ok" if d == 1 else "gap"
        if d >= 0x10000 - self.REORDER_WINDOW:
            self.late += 1
            return "late"
        self.resyncs += 1
        self.last = seq
        return "resync"


def to_permille(x: float, name: str = "value") -> int:
    """[-1, 1] -> [-1000, 1000]; refuses NaN and values outside (a bug upstream, not noise)."""
    xf = float(x)
    if not -1.0 - 1e-9 <= xf <= 1.0 + 1e-9:  # NaN fails both comparisons
        raise ValueError(f"{name}={x!r} outside [-1, 1]")
    return max(-PERMILLE, min(PERMILLE, int(round(xf * PERMILLE))))


def describe(item: Packet | FrameError) -> str:
    if isinstance(item, FrameError):
        return f"rejected frame ({item})"
    vals = ", ".join(f"{f.name}={getattr(item.msg, f.name)}" for f in fields(item.msg))
    return f"{item.msg.TYPE.name} seq={item.seq} {vals}"

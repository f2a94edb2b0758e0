"""VESC UART protocol: packets, the few commands a car needs, COMM_GET_VALUES.

Written from the protocol as the VESC firmware (vedderb/bldc: comm/packet.c, comm/commands.c,
datatypes.h) defines it; pyvesc is not used (broken on fresh installs: wrong CRC dependency,
GetValues encode/decode bugs).

packet  = 0x02 len u8 payload crc16 0x03          (payload up to 255 bytes)
        | 0x03 len u16 BE payload crc16 0x03      (longer payloads)
crc16   = CRC-16/XMODEM of the payload (poly 0x1021, init 0), big-endian
payload = command id u8 | arguments, all integers big-endian, floats sent as scaled integers
"""
from __future__ import annotations

import binascii
import struct
from collections import Counter
from dataclasses import astuple, dataclass, fields
from enum import IntEnum


class Comm(IntEnum):  # datatypes.h COMM_PACKET_ID (the ones used here)
    FW_VERSION = 0
    GET_VALUES = 4
    SET_DUTY = 5
    SET_CURRENT = 6
    SET_CURRENT_BRAKE = 7
    SET_RPM = 8
    SET_SERVO_POS = 12
    ALIVE = 30


MAX_PAYLOAD = 512  # we never send or expect more; longer "packets" are noise


class VescError(ValueError):
    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind


def crc16(data: bytes) -> int:
    """CRC-16/XMODEM, as VESC's crc16()."""
    return binascii.crc_hqx(data, 0)


def pack(payload: bytes) -> bytes:
    n = len(payload)
    if not 1 <= n <= 0xFFFF:
        raise VescError("length", f"payload of {n} bytes (1..65535)")
    head = bytes([2, n]) if n <= 255 else bytes([3, n >> 8, n & 0xFF])
    return head + payload + crc16(payload).to_bytes(2, "big") + b"\x03"


def unpack(packet: bytes) -> bytes:
    """One whole packet -> payload; raises VescError."""
    items = VescDecoder().feed(packet)
    if len(items) == 1 and isinstance(items[0], bytes):
        return items[0]
    errors = [x for x in items if isinstance(x, VescError)]
    raise errors[0] if errors else VescError("length", f"{packet.hex()} is not one whole packet")


class VescDecoder:
    """Stream decoder. Like the VESC's own, it resynchronises by sliding one byte on any bad start,
    length, stop byte or CRC, so one corrupted packet never costs the next one."""

    def __init__(self):
        self._buf = bytearray()
        self.ok = 0
        self.errors: Counter[str] = Counter()

    @property
    def bad(self) -> int:
        return sum(self.errors.values())

    def reset(self) -> None:
        """Forget a partial packet (a false start byte can hold up to MAX_PAYLOAD bytes hostage)."""
        self._buf.clear()

    def _fail(self, out: list, kind: str, msg: str) -> None:
        self.errors[kind] += 1
        out.append(VescError(kind, msg))
        del self._buf[0]

    def feed(self, data: bytes) -> list[bytes | VescError]:
        self._buf += data
        out: list[bytes | VescError] = []
        b = self._buf
        while b:
            if b[0] not in (2, 3):
                # skip noise up to the next possible start byte in one go (counted once)
                i = next((k for k, c in enumerate(b) if c in (2, 3)), len(b))
                self.errors["start"] += 1
                out.append(VescError("start", f"{i} bytes without a start byte (0x02/0x03)"))
                del b[:i]
                continue
            hl = 2 if b[0] == 2 else 3
            if len(b) < hl:
                break
            n = b[1] if hl == 2 else (b[1] << 8 | b[2])
            if n == 0 or n > MAX_PAYLOAD or (hl == 3 and n <= 255):
                self._fail(out, "length", f"payload length {n} (start 0x{b[0]:02x})")
                continue
            if len(b) < hl + n + 3:
                break
            payload, crc_rx, stop = bytes(b[hl:hl + n]), b[hl + n] << 8 | b[hl + n + 1], b[hl + n + 2]
            if stop != 3:
                self._fail(out, "stop", f"stop byte 0x{stop:02x}, expected 0x03")
                continue
            if crc16(payload) != crc_rx:
                self._fail(out, "crc", f"CRC 0x{crc_rx:04x} received, 0x{crc16(payload):04x} computed")
                continue
            del b[:hl + n + 3]
            self.ok += 1
            out.append(payload)
        return out


# --- commands --------------------------------------------------------------------------------
def _scaled_i32(cmd: Comm, name: str, value: float, scale: float, lo: float, hi: float) -> bytes:
    v = float(value)
    if not lo <= v <= hi:
        raise ValueError(f"{cmd.name}: {name}={value!r} outside [{lo:g}, {hi:g}]")
    return bytes([cmd]) + struct.pack(">i", int(round(v * scale)))


def set_duty(duty: float) -> bytes:
    return _scaled_i32(Comm.SET_DUTY, "duty", duty, 1e5, -1.0, 1.0)


def set_current(amps: float) -> bytes:
    return _scaled_i32(Comm.SET_CURRENT, "current", amps, 1e3, -500.0, 500.0)


def set_current_brake(amps: float) -> bytes:
    return _scaled_i32(Comm.SET_CURRENT_BRAKE, "brake current", amps, 1e3, 0.0, 500.0)


def set_rpm(erpm: float) -> bytes:
    return _scaled_i32(Comm.SET_RPM, "erpm", erpm, 1.0, -2e6, 2e6)


def set_servo_pos(pos: float) -> bytes:
    p = float(pos)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"SET_SERVO_POS: pos={pos!r} outside [0, 1]")
    return bytes([Comm.SET_SERVO_POS]) + struct.pack(">h", int(round(p * 1000)))


def get_values() -> bytes:
    return bytes([Comm.GET_VALUES])


def alive() -> bytes:
    return bytes([Comm.ALIVE])


def decode_command(payload: bytes) -> tuple[Comm, float | None]:
    """What a VESC makes of a command payload: (command, value in SI units or None)."""
    try:
        cmd = Comm(payload[0])
    except (ValueError, IndexError):
        raise VescError("command", f"unknown command id {payload[:1].hex() or '(empty)'}") from None
    want = {Comm.SET_DUTY: 5, Comm.SET_CURRENT: 5, Comm.SET_CURRENT_BRAKE: 5, Comm.SET_RPM: 5,
            Comm.SET_SERVO_POS: 3}.get(cmd, 1)
    if len(payload) != want and cmd is not Comm.GET_VALUES:
        raise VescError("length", f"{cmd.name} payload of {len(payload)} bytes, expected {want}")
    if cmd is Comm.SET_SERVO_POS:
        return cmd, struct.unpack(">h", payload[1:])[0] / 1000.0
    if want == 5:
        scale = {Comm.SET_DUTY: 1e5, Comm.SET_CURRENT: 1e3, Comm.SET_CURRENT_BRAKE: 1e3, Comm.SET_RPM: 1.0}[cmd]
        return cmd, struct.unpack(">i", payload[1:])[0] / scale
    return cmd, None


# --- COMM_GET_VALUES ------------------------------------------------------------------------------
# (field, struct code, scale) in the order commands.c sends them (mask bits 0..21).
VALUE_FIELDS = (
    ("temp_fet", "h", 1e1), ("temp_motor", "h", 1e1),
    ("current_motor", "i", 1e2), ("current_in", "i", 1e2), ("id", "i", 1e2), ("iq", "i", 1e2),
    ("duty", "h", 1e3), ("erpm", "i", 1.0), ("v_in", "h", 1e1),
    ("amp_hours", "i", 1e4), ("amp_hours_charged", "i", 1e4),
    ("watt_hours", "i", 1e4), ("watt_hours_charged", "i", 1e4),
    ("tachometer", "i", 1.0), ("tachometer_abs", "i", 1.0), ("fault_code", "B", 1.0),
    ("pid_pos", "i", 1e6), ("controller_id", "B", 1.0),
    ("temp_mos1", "h", 1e1), ("temp_mos2", "h", 1e1), ("temp_mos3", "h", 1e1),
    ("vd", "i", 1e3), ("vq", "i", 1e3), ("status", "B", 1.0),
)
# Fields up to fault_code are always there in this layout; the firmware appended the later ones over
# the years, so a reply may stop after any of them (valid lengths below, command byte included).
# Firmware with an older layout (temp_mos1..6 first) is refused by length, not misread.
REQUIRED = 16
_BOUNDARIES = [1 + struct.calcsize(">" + "".join(c for _, c, _ in VALUE_FIELDS[:k]))
               for k in range(REQUIRED, len(VALUE_FIELDS) + 1)]


@dataclass(frozen=True)
class VescValues:
    temp_fet: float = 0.0
    temp_motor: float = 0.0
    current_motor: float = 0.0
    current_in: float = 0.0
    id: float = 0.0
    iq: float = 0.0
    duty: float = 0.0
    erpm: float = 0.0
    v_in: float = 0.0
    amp_hours: float = 0.0
    amp_hours_charged: float = 0.0
    watt_hours: float = 0.0
    watt_hours_charged: float = 0.0
    tachometer: float = 0.0
    tachometer_abs: float = 0.0
    fault_code: float = 0.0
    pid_pos: float | None = None
    controller_id: float | None = None
    temp_mos1: float | None = None
    temp_mos2: float | None = None
    temp_mos3: float | None = None
    vd: float | None = None
    vq: float | None = None
    status: float | None = None


def decode_values(payload: bytes) -> VescValues:
    if payload[:1] != bytes([Comm.GET_VALUES]):
        raise VescError("command", f"not a GET_VALUES reply (command id {payload[:1].hex() or '(empty)'})")
    if len(payload) not in _BOUNDARIES:
        raise VescError("length", f"GET_VALUES reply of {len(payload)} bytes; valid lengths {_BOUNDARIES}")
    k = REQUIRED + _BOUNDARIES.index(len(payload))
    raw = struct.unpack(">" + "".join(c for _, c, _ in VALUE_FIELDS[:k]), payload[1:])
    return VescValues(**{name: (r / scale if scale != 1.0 else r) for (name, _, scale), r in zip(VALUE_FIELDS, raw)})


def encode_values(v: VescValues) -> bytes:
    """The reply a VESC sends (for the simulated VESC); optional fields up to the last one set."""
    vals = astuple(v)
    k = max([i + 1 for i, x in enumerate(vals) if x is not None] + [REQUIRED])
    raw = []
    for (name, _code, scale), x in zip(VALUE_FIELDS[:k], vals[:k]):
        if x is None:
            raise ValueError(f"VescValues.{name} is None but a later field is set")
        raw.append(int(x * scale))  # truncation toward zero, as the firmware's (int) cast
    return bytes([Comm.GET_VALUES]) + struct.pack(">" + "".join(c for _, c, _ in VALUE_FIELDS[:k]), *raw)


assert [f.name for f in fields(VescValues)] == [n for n, _, _ in VALUE_FIELDS]

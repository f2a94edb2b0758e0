"""Port 5 of the simulated Crazyflie: log TOC, log blocks, periodic log data (log.c behaviour).

Replies follow the firmware byte for byte: TOC info (3, count u16, crc u32, max blocks, max ops),
TOC item (2, id u16, type, group NUL name NUL) or (2,) past the end, control replies
(command, block id, errno). Log data on channel 2: block id, 24-bit millisecond timestamp, values.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Callable

from firmware_bridge.crazyflie import crtp
from .toc import LOG_TYPES, LogVar, Toc, pack_log

_OP = struct.Struct("<BH")  # fetch/storage type byte, variable id (ops_setting_v2)


@dataclass
class LogBlock:
    id: int
    ops: list = field(default_factory=list)  # (variable id, fetch type)
    period: float | None = None  # s; None: not started
    next_due: float = 0.0

    @property
    def length(self) -> int:
        return sum(struct.calcsize(LOG_TYPES[fetch]) for _, fetch in self.ops)


class LogService:
    def __init__(self, toc: Toc, values: Callable[[], dict]):
        self.toc = toc
        self._values = values  # -> {full name: value}, the vehicle's variables right now
        self.blocks: dict[int, LogBlock] = {}

    def reset(self):
        self.blocks.clear()

    # -- host requests ---------------------------------------------------------------------------
    def handle(self, channel: int, payload: bytes, now: float) -> list[tuple[int, bytes]]:
        """Replies as (channel, payload); may also return log data for a single-shot start."""
        if not payload:
            raise ValueError("log: empty packet")
        if channel == crtp.TOC_CH:
            return self._toc(payload)
        if channel == crtp.LOG_CONTROL_CH:
            cmd = payload[0]
            block_id = payload[1] if len(payload) > 1 else 0
            err, extra = self._control(cmd, block_id, payload[2:], now)
            return [(crtp.LOG_CONTROL_CH, bytes((cmd, block_id, err)))] + extra
        return []  # channel 2 is vehicle-to-host only

    def _toc(self, payload: bytes):
        cmd = payload[0]
        if cmd == crtp.TOC_GET_INFO_V2:
            return [(crtp.TOC_CH, struct.pack("<BHIBB", cmd, len(self.toc), self.toc.crc,
                                             crtp.LOG_MAX_BLOCKS, crtp.LOG_MAX_OPS))]
        if cmd == crtp.TOC_GET_ITEM_V2:
            if len(payload) < 3:
                raise ValueError("log TOC item request without a 16-bit id")
            ident = struct.unpack_from("<H", payload, 1)[0]
            if ident >= len(self.toc):
                return [(crtp.TOC_CH, bytes((cmd,)))]
            return [(crtp.TOC_CH, struct.pack("<BH", cmd, ident) + self.toc.entry(ident))]
        return []  # version-1 TOC commands are gone from the firmware; it does not answer them

    def _control(self, cmd: int, block_id: int, args: bytes, now: float):
        if cmd == crtp.LOG_RESET:
            self.reset()
            return 0, []
        if cmd in (crtp.LOG_CREATE_V2, crtp.LOG_APPEND_V2):
            if cmd == crtp.LOG_CREATE_V2:
                if block_id in self.blocks:
                    return crtp.EEXIST, []
                if len(self.blocks) >= crtp.LOG_MAX_BLOCKS:
                    return crtp.ENOMEM, []
                self.blocks[block_id] = LogBlock(block_id)
            block = self.blocks.get(block_id)
            if block is None:
                return crtp.ENOENT, []
            return self._append(block, args), []
        block = self.blocks.get(block_id)
        if cmd not in (crtp.LOG_DELETE, crtp.LOG_START, crtp.LOG_STOP, crtp.LOG_START_V2):
            return crtp.ENOEXEC, []
        if block is None:
            return crtp.ENOENT, []
        if cmd == crtp.LOG_DELETE:
            del self.blocks[block_id]
            return 0, []
        if cmd == crtp.LOG_STOP:
            block.period = None
            return 0, []
        if cmd == crtp.LOG_START:
            period_ms = args[0] * 10 if args else 0
        else:
            period_ms = struct.unpack_from("<H", args)[0] if len(args) >= 2 else 0
        if period_ms == 0:  # single shot
            block.period = None
            return 0, [(crtp.LOG_DATA_CH, self.data(block, now))]
        block.period = period_ms / 1000.0
        block.next_due = now + block.period
        return 0, []

    def _append(self, block: LogBlock, args: bytes) -> int:
        n_ops = sum(len(b.ops) for b in self.blocks.values())
        for off in range(0, len(args) - _OP.size + 1, _OP.size):
            type_byte, ident = _OP.unpack_from(args, off)
            fetch = type_byte & 0x0F
            if ident >= len(self.toc) or fetch not in LOG_TYPES:
                return crtp.ENOENT  # also raw-memory variables (id 0xFFFF): nothing to read here
            if block.length + struct.calcsize(LOG_TYPES[fetch]) > crtp.LOG_MAX_LEN:
                return crtp.E2BIG
            if n_ops >= crtp.LOG_MAX_OPS:
                return crtp.ENOMEM
            block.ops.append((ident, fetch))
            n_ops += 1
        return 0

    # -- streaming ---------------------------------------------------------------------------------
    def data(self, block: LogBlock, now: float) -> bytes:
        values = self._values()
        ts = int(now * 1000.0) & 0xFFFFFF
        out = bytearray((block.id, ts & 0xFF, (ts >> 8) & 0xFF, ts >> 16))
        for ident, fetch in block.ops:
            var: LogVar = self.toc.get(ident)
            out += pack_log(fetch, values.get(var.full_name, 0))
        return bytes(out)

    def due(self, now: float) -> list[bytes]:
        """Log data payloads (channel 2) due at vehicle time now."""
        out = []
        for block in self.blocks.values():
            if block.period is None or now + 1e-9 < block.next_due:
                continue
            out.append(self.data(block, now))
            block.next_due += block.period
            if block.next_due <= now:  # fell behind (host stalled the sim): do not burst
                block.next_due = now + block.period
        return out

"""Port 2 of the simulated Crazyflie: parameter TOC, read, write and the misc channel
(param_task.c / param_logic.c behaviour, version-2 ids).

  TOC   ch0: (3,) -> (3, count u16, crc u32); (2, id u16) -> (2, id u16, type, group NUL name NUL)
  read  ch1: (id u16) -> (id u16, 0, value) or (id u16, ENOENT)
  write ch2: (id u16, value) -> the same packet back; unknown id -> (id u16, 2); read-only: no reply
  misc  ch3: set by name, extended type, persistent store/state/clear, default value (v1 and v2)
"""
from __future__ import annotations

import struct
from typing import Any

from firmware_bridge.crazyflie import crtp
from .toc import EXTENDED_PERSISTENT, PARAM_TYPES, Param, Toc, coerce


class ParamService:
    def __init__(self, toc: Toc):
        self.toc = toc

    # -- the vehicle's side --------------------------------------------------------------------
    def set(self, full_name: str, value: Any) -> Any:
        p: Param = self.toc.by_name(full_name)
        p.assign(coerce(p.fmt, value))
        if p.on_change:
            p.on_change(p.current())
        return p.current()

    def get(self, full_name: str) -> Any:
        return self.toc.by_name(full_name).current()

    def reboot(self):
        """Values back to their defaults, or to what persistent storage holds."""
        for p in self.toc.items:
            self.set(p.full_name, p.stored if p.stored is not None else p.default)

    # -- host requests -------------------------------------------------------------------------
    def handle(self, channel: int, payload: bytes) -> list[tuple[int, bytes]]:
        if channel == crtp.TOC_CH:
            return self._toc(payload)
        if len(payload) < 2:
            raise ValueError(f"param channel {channel}: packet of {len(payload)} bytes")
        if channel == crtp.PARAM_READ_CH:
            ident = struct.unpack_from("<H", payload)[0]
            p = self.toc.get(ident)
            if p is None:
                return [(channel, payload[:2] + bytes((crtp.ENOENT,)))]
            return [(channel, payload[:2] + b"\0" + struct.pack(p.fmt, p.current()))]
        if channel == crtp.PARAM_WRITE_CH:
            ident = struct.unpack_from("<H", payload)[0]
            p = self.toc.get(ident)
            if p is None:
                return [(channel, payload[:2] + bytes((crtp.PARAM_NOT_FOUND,)))]
            if p.read_only:
                return []
            size = struct.calcsize(p.fmt)
            if len(payload) != 2 + size:
                raise ValueError(f"param write {p.full_name}: {len(payload) - 2} value bytes, "
                                 f"its type needs {size}")
            self.set(p.full_name, struct.unpack_from(p.fmt, payload, 2)[0])
            return [(channel, payload[:2] + struct.pack(p.fmt, p.current()))]
        if channel == crtp.PARAM_MISC_CH:
            return self._misc(payload)
        return []

    def _toc(self, payload: bytes):
        if not payload:
            raise ValueError("param TOC: empty packet")
        cmd = payload[0]
        if cmd == crtp.TOC_GET_INFO_V2:
            return [(crtp.TOC_CH, struct.pack("<BHI", cmd, len(self.toc), self.toc.crc))]
        if cmd == crtp.TOC_GET_ITEM_V2:
            if len(payload) < 3:
                raise ValueError("param TOC item request without a 16-bit id")
            ident = struct.unpack_from("<H", payload, 1)[0]
            if ident >= len(self.toc):
                return [(crtp.TOC_CH, bytes((cmd,)))]
            return [(crtp.TOC_CH, struct.pack("<BH", cmd, ident) + self.toc.entry(ident))]
        return []

    def _misc(self, payload: bytes):
        cmd = payload[0]
        ch = crtp.PARAM_MISC_CH
        if cmd == crtp.MISC_SETBYNAME:
            return [(ch, self._set_by_name(payload))]
        if len(payload) < 3:
            raise ValueError(f"param misc command {cmd}: no 16-bit id")
        head = payload[:3]
        p: Param | None = self.toc.get(struct.unpack_from("<H", payload, 1)[0])
        if cmd in (crtp.MISC_GET_EXTENDED_TYPE, crtp.MISC_GET_EXTENDED_TYPE_V2):
            ext = EXTENDED_PERSISTENT if (p is not None and p.persistent) else 0
            if cmd == crtp.MISC_GET_EXTENDED_TYPE:
                return [(ch, head + bytes((ext if p is not None else crtp.PARAM_NOT_FOUND,)))]
            return [(ch, head + (bytes((0, ext)) if p is not None else bytes((crtp.ENOENT,))))]
        if cmd in (crtp.MISC_GET_DEFAULT_VALUE, crtp.MISC_GET_DEFAULT_VALUE_V2):
            if p is None:
                return [(ch, head + bytes((crtp.ENOENT,)))]
            value = struct.pack(p.fmt, coerce(p.fmt, p.default))
            return [(ch, head + (b"\0" + value if cmd == crtp.MISC_GET_DEFAULT_VALUE_V2 else value))]
        if p is None or not p.persistent:
            return [(ch, head + bytes((crtp.ENOENT,)))]
        if cmd == crtp.MISC_PERSISTENT_STORE:
            p.stored = p.current()
            return [(ch, head + b"\0")]
        if cmd == crtp.MISC_PERSISTENT_CLEAR:
            p.stored = None
            return [(ch, head + b"\0")]
        if cmd == crtp.MISC_PERSISTENT_GET_STATE:
            default = struct.pack(p.fmt, coerce(p.fmt, p.default))
            if p.stored is None:
                return [(ch, head + b"\0" + default)]
            return [(ch, head + b"\1" + default + struct.pack(p.fmt, p.stored))]
        return []

    def _set_by_name(self, payload: bytes) -> bytes:
        parts = payload[1:].split(b"\0", 2)
        if len(parts) < 3 or not parts[2]:
            raise ValueError("param set-by-name: expected group NUL name NUL type value")
        group, name, rest = parts[0].decode(errors="replace"), parts[1].decode(errors="replace"), parts[2]
        type_code, raw = rest[0], rest[1:]
        head = payload[:1 + len(parts[0]) + 1 + len(parts[1]) + 1]
        full = f"{group}.{name}"
        if full not in self.toc:
            err = crtp.ENOENT
        else:
            p: Param = self.toc.by_name(full)
            if type_code != p.type or len(raw) < struct.calcsize(PARAM_TYPES.get(type_code, "<B")):
                err = crtp.EINVAL
            elif p.read_only:
                err = crtp.EACCES
            else:
                self.set(full, struct.unpack_from(p.fmt, raw)[0])
                err = 0
        return head + bytes((err,))

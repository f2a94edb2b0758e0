"""Log and parameter tables of the simulated Crazyflie: types, TOC entries, value packing.

Type codes are the firmware's (log.h LOG_UINT8.., param.h PARAM_UINT8..), which cflib decodes
with its own tables (cflib/crazyflie/log.py LogTocElement.types, param.py ParamTocElement.types).
A TOC entry on the wire is: type byte, group NUL name NUL (log.c / param_logic.c GET_ITEM_V2).
"""
from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

# log type code -> (struct format, size)
LOG_TYPES = {1: "<B", 2: "<H", 3: "<I", 4: "<b", 5: "<h", 6: "<i", 7: "<f", 8: "<e"}
LOG_UINT8, LOG_UINT16, LOG_UINT32, LOG_INT8, LOG_INT16, LOG_INT32, LOG_FLOAT, LOG_FP16 = range(1, 9)
LOG_TYPE_NAMES = {"uint8": 1, "uint16": 2, "uint32": 3, "int8": 4, "int16": 5, "int32": 6, "float": 7, "fp16": 8}

# param type byte: bits 1-0 size (1, 2, 4, 8 bytes), bit 2 float, bit 3 unsigned
PARAM_TYPES = {0x08: "<B", 0x09: "<H", 0x0A: "<I", 0x0B: "<Q", 0x00: "<b", 0x01: "<h", 0x02: "<i",
               0x03: "<q", 0x05: "<e", 0x06: "<f", 0x07: "<d"}
PARAM_TYPE_NAMES = {"uint8": 0x08, "uint16": 0x09, "uint32": 0x0A, "int8": 0x00, "int16": 0x01,
                    "int32": 0x02, "float": 0x06}
PARAM_EXTENDED, PARAM_CORE, PARAM_RONLY = 0x10, 0x20, 0x40
EXTENDED_PERSISTENT = 1


def _is_float(fmt: str) -> bool:
    return fmt[-1] in "efd"


def coerce(fmt: str, value: Any):
    """A value as the C variable of that type would hold it (ints wrap, floats round to f32)."""
    if _is_float(fmt):
        v = float(value)
        return struct.unpack(fmt, struct.pack(fmt, v))[0] if math.isfinite(v) else v
    bits = struct.calcsize(fmt) * 8
    iv = int(value) & ((1 << bits) - 1)
    if fmt[-1].islower() and iv >= 1 << (bits - 1):  # signed
        iv -= 1 << bits
    return iv


def pack_log(fetch: int, value: Any) -> bytes:
    """Pack a variable's value as the log type the host asked for (log.c logRunBlock): floats are
    truncated toward zero when fetched as integers, integers keep their low bytes."""
    fmt = LOG_TYPES[fetch]
    if _is_float(fmt):
        return struct.pack(fmt, float(value))
    v = float(value)
    iv = int(v) if math.isfinite(v) else 0  # C's float-to-int conversion truncates
    return struct.pack(fmt, coerce(fmt, iv))


def toc_entry(type_byte: int, group: str, name: str) -> bytes:
    return bytes((type_byte,)) + group.encode() + b"\0" + name.encode() + b"\0"


def toc_crc(entries: list[bytes]) -> int:
    # The firmware chains a CRC32 over its entries; any stable hash of the table does the job
    # (cflib only uses it as the TOC cache key).
    crc = 0
    for e in entries:
        crc = zlib.crc32(e, crc)
    return crc & 0xFFFFFFFF


@dataclass
class LogVar:
    group: str
    name: str
    type: int  # LOG_* code (storage type)

    @property
    def full_name(self) -> str:
        return f"{self.group}.{self.name}"


@dataclass
class Param:
    group: str
    name: str
    type: int  # PARAM_* type code (low nibble)
    default: Any
    read_only: bool = False
    persistent: bool = False
    core: bool = False
    on_change: Callable[[Any], None] | None = None
    value: Any = None
    stored: Any = None  # persistent value in the simulated EEPROM, None when not stored
    # A variable that lives elsewhere (the on-board app's, in its compiled C): read and write it there.
    read: Callable[[], Any] | None = None
    write: Callable[[Any], None] | None = None

    def __post_init__(self):
        self.value = coerce(self.fmt, self.default)

    def current(self) -> Any:
        return self.read() if self.read is not None else self.value

    def assign(self, value: Any) -> None:
        self.value = value
        if self.write is not None:
            self.write(value)

    @property
    def fmt(self) -> str:
        return PARAM_TYPES[self.type]

    @property
    def full_name(self) -> str:
        return f"{self.group}.{self.name}"

    @property
    def type_byte(self) -> int:
        return (self.type | (PARAM_EXTENDED if self.persistent else 0) | (PARAM_CORE if self.core else 0)
                | (PARAM_RONLY if self.read_only else 0))


@dataclass
class Toc:
    """An ordered table (the index in the list is the 16-bit TOC id)."""
    items: list = field(default_factory=list)

    def __post_init__(self):
        self._by_name = {}
        self._crc = None

    def add(self, item):
        if item.full_name in self._by_name:
            raise ValueError(f"TOC: duplicate entry {item.full_name}")
        if len(item.group) + len(item.name) + 2 > 26:  # the firmware asserts the same limit
            raise ValueError(f"TOC: {item.full_name} is too long for one CRTP packet")
        self._by_name[item.full_name] = len(self.items)
        self.items.append(item)
        self._crc = None
        return item

    def __len__(self):
        return len(self.items)

    def get(self, ident: int):
        return self.items[ident] if 0 <= ident < len(self.items) else None

    def ident(self, full_name: str) -> int:
        return self._by_name[full_name]

    def by_name(self, full_name: str):
        return self.items[self._by_name[full_name]]

    def __contains__(self, full_name: str) -> bool:
        return full_name in self._by_name

    def entry(self, ident: int) -> bytes:
        it = self.items[ident]
        type_byte = it.type if isinstance(it, LogVar) else it.type_byte
        return toc_entry(type_byte, it.group, it.name)

    @property
    def crc(self) -> int:
        if self._crc is None:
            self._crc = toc_crc([self.entry(i) for i in range(len(self.items))])
        return self._crc

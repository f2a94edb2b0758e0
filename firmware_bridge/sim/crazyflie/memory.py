"""The memory subsystem of the simulated Crazyflie (CRTP port 4), as a Crazyflie 2.1 with no deck
answers it.

Written from crazyflie-firmware 2026.08 (commit 2a18fc29), not copied from it:
- src/modules/src/crtp_mem.c: channel 0 "number of memories" (1, n) and "memory info"
  (2, id, type, size u32, serial: at least 8 bytes, zeros without one); channel 1 read request (id,
  addr u32, length) answered (id, addr, status, data...) with status 0 or EIO and no data; channel 2
  write (id, addr u32, data...) answered (id, addr, status).
- The handlers a deck-free Crazyflie 2.1 registers, in registration order (system.c systemTask):
  0 EEPROM (drivers/src/eeprom.c, 0x1FFF bytes; configblockInit runs in systemInit),
  1 trajectory memory (crtp_commander_high_level.c, 4096 bytes, commanderInit),
  2 memory tester (mem.c memInit, 0x1000 bytes: reads give addr & 0xFF, writes are verified and
    counted in the log variable memTst.errCntW),
  3 deck memory (deck/core/deck_memory.c, 0x10000000 x 5 bytes: the info section reads version 3
    and then no deck; any deck section answers EIO, the firmware's answer when no deck is there),
  4 deck-controller DFU memory (deck/core/deckctrl_dfu_memory.c, 0x18000 bytes; its reads and writes
    go to a deck's I2C bootloader, absent here: EIO).
  Decks register more (one-wire memories, the LED ring's, Loco's, Lighthouse's, the uSD card's):
  without the deck they do not exist, and a request for an id past the table answers EIO (the
  firmware ASSERTs on it and reboots; the simulation stays up and counts the packet).
- EEPROM content: the config block that cflib's I2CElement reads (utils/src/configblockeeprom.c):
  magic "0xBC", version 1, radio channel 80, speed 2 (2M), pitch and roll trim 0.0, radio address
  0xE7E7E7E7E7, and a one-byte checksum (sum of the bytes before it, mod 256).
"""
from __future__ import annotations

import struct

from firmware_bridge.crazyflie import crtp

# mem.h MemoryType_t
MEM_TYPE_EEPROM, MEM_TYPE_OW, MEM_TYPE_LED12, MEM_TYPE_LOCO, MEM_TYPE_TRAJ, MEM_TYPE_LOCO2, MEM_TYPE_LH = (
    0x00, 0x01, 0x10, 0x11, 0x12, 0x13, 0x14)
MEM_TYPE_TESTER, MEM_TYPE_USD, MEM_TYPE_LEDMEM, MEM_TYPE_APP, MEM_TYPE_DECK_MEM = 0x15, 0x16, 0x17, 0x18, 0x19
MEM_TYPE_DECKCTRL_DFU, MEM_TYPE_DECKCTRL = 0x20, 0x21
EEPROM_SIZE = 0x1FFF
MEM_TESTER_SIZE = 0x1000
DECK_MEM_SECTION = 0x10000000
DECK_MAX_COUNT = 4
DECK_MEM_VERSION = 3
DFU_MEM_SIZE = 0x10000 + 0x8000
SERIAL_LEN = 8


def config_block(channel: int = 80, speed: int = 2, pitch_trim: float = 0.0, roll_trim: float = 0.0,
                 address: int = 0xE7E7E7E7E7) -> bytes:
    body = b"0xBC" + struct.pack("<BBBffBI", 1, channel, speed, pitch_trim, roll_trim, address >> 32,
                                 address & 0xFFFFFFFF)
    return body + bytes((sum(body) & 0xFF,))


class Memories:
    """The memory table; ``trajectory`` is the high-level commander's memory (mem_read / mem_write)."""

    def __init__(self, trajectory_memory):
        self.eeprom = bytearray(b"\xff" * EEPROM_SIZE)
        block = config_block()
        self.eeprom[:len(block)] = block
        self.trajectory = trajectory_memory  # replaced on reboot: see attach()
        self.tester_errors = 0  # memTst.errCntW
        self.tester_reset = 0  # memTst.resetW
        self.table = [
            (MEM_TYPE_EEPROM, EEPROM_SIZE, self._eeprom_read, self._eeprom_write),
            (MEM_TYPE_TRAJ, 4096, lambda a, n: self.trajectory.mem_read(a, n),
             lambda a, d: self.trajectory.mem_write(a, d)),
            (MEM_TYPE_TESTER, MEM_TESTER_SIZE, self._tester_read, self._tester_write),
            (MEM_TYPE_DECK_MEM, DECK_MEM_SECTION * (DECK_MAX_COUNT + 1), self._deck_read, lambda a, d: False),
            (MEM_TYPE_DECKCTRL_DFU, DFU_MEM_SIZE, lambda a, n: None, lambda a, d: False),
        ]

    def attach(self, trajectory_memory):
        """A reboot: the high-level commander (and its RAM) is new; the EEPROM keeps its content."""
        self.trajectory = trajectory_memory
        self.tester_errors = 0

    # -- handlers ---------------------------------------------------------------------------------
    def _eeprom_read(self, addr, n):
        return bytes(self.eeprom[addr:addr + n]) if addr + n <= EEPROM_SIZE else None

    def _eeprom_write(self, addr, data):
        if addr + len(data) > EEPROM_SIZE:
            return False
        self.eeprom[addr:addr + len(data)] = data
        return True

    @staticmethod
    def _tester_read(addr, n):
        return bytes((addr + i) & 0xFF for i in range(n))

    def _tester_write(self, addr, data):
        if self.tester_reset:
            self.tester_reset = 0
            self.tester_errors = 0
        if any(b != (addr + i) & 0xFF for i, b in enumerate(data)):
            self.tester_errors += 1
        return True

    @staticmethod
    def _deck_read(addr, n):
        if addr >= DECK_MEM_SECTION:
            return None  # a deck's section: no deck
        return bytes(DECK_MEM_VERSION if addr + i == 0 else 0 for i in range(n))

    # -- CRTP ---------------------------------------------------------------------------------------
    def handle(self, channel: int, payload: bytes) -> list[tuple[int, bytes]]:
        if not payload:
            raise ValueError("memory: empty packet")
        if channel == crtp.MEM_INFO_CH:
            cmd = payload[0]
            if cmd == crtp.MEM_CMD_GET_NBR:
                return [(channel, bytes((cmd, len(self.table))))]
            if cmd == crtp.MEM_CMD_GET_INFO and len(payload) >= 2:
                ident = payload[1]
                if ident >= len(self.table):
                    raise ValueError(f"memory info for id {ident}: {len(self.table)} memories (the firmware asserts)")
                kind, size = self.table[ident][:2]
                return [(channel, bytes((cmd, ident, kind)) + struct.pack("<I", size) + bytes(SERIAL_LEN))]
            raise ValueError(f"memory channel 0: command {cmd}")
        if channel == crtp.MEM_READ_CH:
            if len(payload) < 6:
                raise ValueError("memory read: expected id, address u32, length")
            ident, addr, n = payload[0], struct.unpack_from("<I", payload, 1)[0], payload[5]
            data = self.table[ident][2](addr, n) if ident < len(self.table) and n <= crtp.MAX_DATA - 6 else None
            if data is None:
                return [(channel, payload[:5] + bytes((crtp.EIO,)))]
            return [(channel, payload[:5] + b"\0" + data)]
        if channel == crtp.MEM_WRITE_CH:
            if len(payload) < 5:
                raise ValueError("memory write: expected id, address u32, data")
            ident, addr = payload[0], struct.unpack_from("<I", payload, 1)[0]
            ok = ident < len(self.table) and self.table[ident][3](addr, bytes(payload[5:]))
            return [(channel, payload[:5] + bytes((0 if ok else crtp.EIO,)))]
        raise ValueError(f"memory: channel {channel}")

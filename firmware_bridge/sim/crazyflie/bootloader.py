"""The Crazyflie 2.x STM32 bootloader, simulated: flash memory and the 0xFF-header protocol
(firmware_bridge/crazyflie/bootloader.py has the protocol's numbers and packets). Writing the first page of a
sector erases the whole sector, as the real bootloader does; programming can only clear bits (flash AND data), as
on the real chip, so a flasher that writes out of order gets a corrupt image here too.
"""
from __future__ import annotations

import hashlib
import struct

from firmware_bridge.crazyflie.bootloader import (BUFFER_PAGES, CMD_FLASH_STATUS, CMD_GET_INFO, CMD_GET_MAPPING,
                                                  CMD_LOAD_BUFFER, CMD_READ_BUFFER, CMD_READ_FLASH, CMD_WRITE_FLASH,
                                                  CPU_ID, FLASH_PAGES, FLASH_START, PAGE_SIZE, PROTOCOL_VERSION,
                                                  READ_CHUNK, SECTOR_MAP, TARGET_STM32)


def _sector_starts() -> frozenset[int]:
    starts, page = set(), 0
    for count, pages in SECTOR_MAP:
        for _ in range(count):
            starts.add(page)
            page += pages
    assert page == FLASH_PAGES
    return frozenset(starts)


SECTOR_STARTS = _sector_starts()


def _sector_of(page: int) -> tuple[int, int]:
    """(first page, number of pages) of the sector holding page."""
    start = max(s for s in SECTOR_STARTS if s <= page)
    end = min((s for s in SECTOR_STARTS if s > page), default=FLASH_PAGES)
    return start, end - start


class Stm32Bootloader:
    """Flash + RAM buffer + command handler. Not thread-safe: the vehicle holds its lock."""

    def __init__(self):
        self.flash = bytearray(b"\xff" * (FLASH_PAGES * PAGE_SIZE))
        self.flash[:FLASH_START * PAGE_SIZE] = bytes(FLASH_START * PAGE_SIZE)  # "the bootloader"
        self.buffer = bytearray(BUFFER_PAGES * PAGE_SIZE)
        self.last_status = (1, 0)
        self.image_end = FLASH_START * PAGE_SIZE  # end of the highest page ever programmed
        self.pages_written = 0

    # -- what a flasher left behind ------------------------------------------------------------
    def firmware(self) -> bytes:
        """Flash contents from the firmware start to the end of the last programmed page."""
        return bytes(self.flash[FLASH_START * PAGE_SIZE:self.image_end])

    def firmware_sha256(self) -> str:
        return hashlib.sha256(self.firmware()).hexdigest()

    # -- protocol ------------------------------------------------------------------------------
    def handle(self, data: bytes) -> bytes | None:
        """data: the payload after the 0xFF header (target, command, args). Returns the reply
        payload or None (no reply, as the bootloader sends none for loads and unknown commands)."""
        target, cmd, args = data[0], data[1], data[2:]
        if target != TARGET_STM32:
            return None
        if cmd == CMD_GET_INFO:
            info = struct.pack("<HHHH", PAGE_SIZE, BUFFER_PAGES, FLASH_PAGES, FLASH_START)
            return bytes((target, cmd)) + info + CPU_ID + bytes((PROTOCOL_VERSION,))
        if cmd == CMD_GET_MAPPING:
            return bytes((target, cmd)) + bytes(v for pair in SECTOR_MAP for v in pair)
        if len(args) < 4:
            return None  # the real bootloader would read garbage; we ignore short packets
        if cmd == CMD_LOAD_BUFFER:
            page, addr = struct.unpack_from("<HH", args)
            start = page * PAGE_SIZE + addr
            payload = args[4:][:max(0, len(self.buffer) - start)]
            self.buffer[start:start + len(payload)] = payload
            return None
        if cmd == CMD_READ_BUFFER:
            page, addr = struct.unpack_from("<HH", args)
            start = page * PAGE_SIZE + addr
            return bytes(data[:6]) + bytes(self.buffer[start:start + READ_CHUNK])
        if cmd == CMD_READ_FLASH:
            page, addr = struct.unpack_from("<HH", args)
            start = page * PAGE_SIZE + addr
            return bytes(data[:6]) + bytes(self.flash[start:start + READ_CHUNK])
        if cmd == CMD_WRITE_FLASH:
            if len(args) < 6:
                return None
            done, error = self._write(*struct.unpack_from("<HHH", args))
            self.last_status = (done, error)
            return bytes((target, cmd, done, error))
        if cmd == CMD_FLASH_STATUS:
            return bytes((target, cmd)) + bytes(self.last_status)
        return None

    def _write(self, buffer_page: int, flash_page: int, n_pages: int) -> tuple[int, int]:
        if (flash_page < FLASH_START or flash_page >= FLASH_PAGES or flash_page + n_pages > FLASH_PAGES
                or buffer_page >= BUFFER_PAGES or buffer_page + n_pages > BUFFER_PAGES):
            # The real bootloader does not check the end of the buffer; refusing is the safe side.
            return 0, 1
        for p in range(flash_page, flash_page + n_pages):
            if p in SECTOR_STARTS:
                start, n = _sector_of(p)
                self.flash[start * PAGE_SIZE:(start + n) * PAGE_SIZE] = b"\xff" * (n * PAGE_SIZE)
        dst = flash_page * PAGE_SIZE
        src = self.buffer[buffer_page * PAGE_SIZE:(buffer_page + n_pages) * PAGE_SIZE]
        old = self.flash[dst:dst + len(src)]
        anded = int.from_bytes(old, "little") & int.from_bytes(src, "little")
        self.flash[dst:dst + len(src)] = anded.to_bytes(len(src), "little")
        self.image_end = max(self.image_end, dst + len(src))
        self.pages_written += n_pages
        return 1, 0

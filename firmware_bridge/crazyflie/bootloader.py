"""The Crazyflie 2.x STM32 bootloader's 0xFF-header protocol: its numbers, as the flasher (flash.py) and the
simulated bootloader (firmware_bridge/sim/crazyflie/bootloader.py) use them.

Numbers from bitcraze/crazyflie2-stm-bootloader (include/config.h, loaderCommands.h, src/main.c):
1024-byte pages, 10 RAM buffer pages, 1024 flash pages (STM32F405, 1 MB), firmware from page 16
(0x08004000, after the 16 KB bootloader), protocol version 0x10, sector map [4 x 16, 1 x 64,
7 x 128] pages. Writing the first page of a sector erases the whole sector, as the real
bootloader does; programming can only clear bits (flash AND data), as on the real chip, so a
flasher that writes out of order gets a corrupt image here too.

Packets (header 0xFF, then target, command, arguments; little-endian):
  GET_INFO    0x10 -> pageSize u16, nBuffPages u16, nFlashPages u16, flashStart u16, cpuId[12], version u8
  GET_MAPPING 0x12 -> [count, pages] pairs
  LOAD_BUFFER 0x14 page u16, address u16, data...          (no reply)
  READ_BUFFER 0x15 page u16, address u16 -> same + up to 25 bytes
  WRITE_FLASH 0x18 bufferPage u16, flashPage u16, nPages u16 -> done u8, error u8
              (error 1: outside the firmware area, 2: erase failed, 3: programming failed)
  READ_FLASH  0x1C page u16, address u16 -> same + up to 25 bytes
Target 0xFE is the nRF51: RESET_INIT 0xFF (-> echo + radio address), RESET 0xF0 arg
(0: to the bootloader, 1: to the firmware; no reply).
"""
from __future__ import annotations

PAGE_SIZE = 1024
BUFFER_PAGES = 10
FLASH_PAGES = 1024
FLASH_START = 16
PROTOCOL_VERSION = 0x10
SECTOR_MAP = ((4, 16), (1, 64), (7, 128))  # (count, pages per sector)
TARGET_STM32, TARGET_NRF51 = 0xFF, 0xFE
CMD_GET_INFO, CMD_SET_ADDRESS, CMD_GET_MAPPING = 0x10, 0x11, 0x12
CMD_LOAD_BUFFER, CMD_READ_BUFFER, CMD_WRITE_FLASH, CMD_FLASH_STATUS, CMD_READ_FLASH = 0x14, 0x15, 0x18, 0x19, 0x1C
CMD_RESET_INIT, CMD_RESET = 0xFF, 0xF0
WRITE_ERRORS = {0: "no error", 1: "addresses outside of the firmware area", 2: "flash erase failed",
                3: "flash programming failed"}
READ_CHUNK = 25
CPU_ID = bytes(range(0x30, 0x3C))  # the bootloader no longer reports it ("legacy, ignore")
RADIO_ADDRESS = bytes((0xE7, 0xE7, 0xE7, 0xE7, 0xE7, 0x00))

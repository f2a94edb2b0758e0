"""CRTP numbers shared by the simulated Crazyflie, the bridge and the flasher.

Values checked against crazyflie-firmware (src/modules/interface/crtp.h, log.c, param_logic.c,
crtp_commander*.c, crtp_supervisor.h, platformservice.c, crtpservice.c) and against what cflib
0.1.34 sends and expects; see tests/test_crazyflie_sim.py for the exchanges exercised.

A CRTP packet is one header byte, port in bits 7-4 and channel in bits 1-0, then 0-30 payload
bytes (31 for the bootloader, whose 0xFF header is port 15 channel 3). Bits 3-2 are unused by the
firmware; cflib sets them for legacy reasons, so we never look at them.
"""
from __future__ import annotations

MAX_DATA = 30
MAX_BOOTLOADER_DATA = 31  # cflib's Cloader packs 6 header bytes + 25 data bytes into a radio packet
PROTOCOL_VERSION = 12  # crtp.h CRTP_PROTOCOL_VERSION at the firmware revision we checked (2026)

# Ports
CONSOLE, PARAM, COMMANDER, MEM, LOG, LOCALIZATION, GENERIC_SETPOINT, HIGH_LEVEL, SUPERVISOR = (
    0, 2, 3, 4, 5, 6, 7, 8, 9)
PLATFORM, LINK = 13, 15
PORT_NAMES = {CONSOLE: "console", PARAM: "param", COMMANDER: "commander", MEM: "mem", LOG: "log",
              LOCALIZATION: "localization", GENERIC_SETPOINT: "generic setpoint",
              HIGH_LEVEL: "high-level commander", SUPERVISOR: "supervisor", PLATFORM: "platform",
              LINK: "link"}

# Link control (port 15)
LINK_ECHO, LINK_SOURCE, LINK_SINK, LINK_NULL = 0, 1, 2, 3
SOURCE_MAGIC = b"Bitcraze Crazyflie"
BOOTLOADER_HEADER = 0xFF

# Log (port 5) and param (port 2) TOC channel commands, version 2 (16-bit ids)
TOC_CH = 0
TOC_GET_ITEM_V2, TOC_GET_INFO_V2 = 2, 3
LOG_CONTROL_CH, LOG_DATA_CH = 1, 2
LOG_DELETE, LOG_START, LOG_STOP, LOG_RESET, LOG_CREATE_V2, LOG_APPEND_V2, LOG_START_V2 = 2, 3, 4, 5, 6, 7, 8
LOG_MAX_BLOCKS, LOG_MAX_OPS, LOG_MAX_LEN = 16, 128, 26
PARAM_READ_CH, PARAM_WRITE_CH, PARAM_MISC_CH = 1, 2, 3
(MISC_SETBYNAME, MISC_VALUE_UPDATED, MISC_GET_EXTENDED_TYPE, MISC_PERSISTENT_STORE,
 MISC_PERSISTENT_GET_STATE, MISC_PERSISTENT_CLEAR, MISC_GET_DEFAULT_VALUE,
 MISC_GET_EXTENDED_TYPE_V2, MISC_GET_DEFAULT_VALUE_V2) = range(9)

# errno values the firmware puts in replies (newlib numbering, the same as Linux for these)
ENOENT, EIO, E2BIG, ENOEXEC, ENOMEM, EACCES, EEXIST, EINVAL = 2, 5, 7, 8, 12, 13, 17, 22
PARAM_NOT_FOUND = 2

# Setpoints
GENERIC_SETPOINT_CH, GENERIC_META_CH = 0, 1
(SP_STOP, SP_VELOCITY_WORLD_LEGACY, SP_ZDISTANCE_LEGACY, SP_CPPM, SP_ALTHOLD, SP_HOVER_LEGACY,
 SP_FULL_STATE, SP_POSITION, SP_VELOCITY_WORLD, SP_ZDISTANCE, SP_HOVER, SP_MANUAL) = range(12)
META_NOTIFY_SETPOINT_STOP = 0
RPYT_MIN_THRUST, RPYT_MAX_THRUST = 1000, 60000  # crtp_commander_rpyt.c

# Platform (port 13)
PLATFORM_COMMAND_CH, PLATFORM_VERSION_CH, PLATFORM_APP_CH = 0, 1, 2
VERSION_GET_PROTOCOL, VERSION_GET_FIRMWARE, VERSION_GET_DEVICE_TYPE = 0, 1, 2

# Supervisor (port 9, protocol >= 12)
SUPERVISOR_INFO_CH, SUPERVISOR_COMMAND_CH = 0, 1
SUP_ARM, SUP_RECOVER, SUP_EMERGENCY_STOP, SUP_EMERGENCY_WATCHDOG = 1, 2, 3, 4
SUP_GET_STATE_BITFIELD = 0x0C
SUP_RESPONSE = 0x80

# Memory (port 4)
MEM_INFO_CH, MEM_READ_CH, MEM_WRITE_CH = 0, 1, 2
MEM_CMD_GET_NBR, MEM_CMD_GET_INFO = 1, 2


def header(port: int, channel: int) -> int:
    """Header byte as the firmware writes it (CRTP_HEADER)."""
    return ((port & 0x0F) << 4) | (channel & 0x03)


def packet(port: int, channel: int, payload: bytes = b"") -> bytes:
    return bytes((header(port, channel),)) + bytes(payload)


def split(raw: bytes) -> tuple[int, int, bytes]:
    """(port, channel, payload) of a raw packet (header byte first)."""
    return (raw[0] >> 4) & 0x0F, raw[0] & 0x03, bytes(raw[1:])


def is_bootloader(raw: bytes) -> bool:
    # The STM32 bootloader answers header 0xFF with a target byte and a command byte.
    return len(raw) >= 3 and raw[0] == BOOTLOADER_HEADER

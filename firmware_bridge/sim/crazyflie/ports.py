"""CRTP port handlers of the simulated Crazyflie: one function per port, (sim, channel, payload,
link) in, replies through sim._send. Formats: crtp.py, and the firmware files named there.
"""
from __future__ import annotations

from firmware_bridge.crazyflie import crtp
from firmware_bridge.crazyflie.bootloader import CMD_RESET, CMD_RESET_INIT, RADIO_ADDRESS, TARGET_NRF51, TARGET_STM32

FIRMWARE, BOOTLOADER = "firmware", "bootloader"  # what the vehicle is running
DEVICE_TYPE_NAME = "Crazyflie 2.1"
FIRMWARE_VERSION = "edgectl-sim"


def on_link(sim, ch, payload, link):
    if ch == crtp.LINK_ECHO:
        sim._send(link, crtp.LINK, ch, payload)
    elif ch == crtp.LINK_SOURCE:
        sim._send(link, crtp.LINK, ch, crtp.SOURCE_MAGIC.ljust(crtp.MAX_DATA, b"\0"))


def on_platform(sim, ch, payload, link):
    if not payload:
        raise ValueError("platform: empty packet")
    cmd = payload[0]
    if ch == crtp.PLATFORM_VERSION_CH:
        if cmd == crtp.VERSION_GET_PROTOCOL:
            sim._send(link, crtp.PLATFORM, ch, bytes((cmd,)) + crtp.PROTOCOL_VERSION.to_bytes(4, "little"))
        elif cmd == crtp.VERSION_GET_FIRMWARE:
            version = FIRMWARE_VERSION + (f"+{sim.firmware_sha256[:8]}" if sim.firmware_sha256 else "")
            sim._send(link, crtp.PLATFORM, ch, bytes((cmd,)) + version.encode()[:crtp.MAX_DATA - 1])
        elif cmd == crtp.VERSION_GET_DEVICE_TYPE:
            sim._send(link, crtp.PLATFORM, ch, bytes((cmd,)) + DEVICE_TYPE_NAME.encode())
        else:
            sim.stats.unknown += 1
    elif ch == crtp.PLATFORM_COMMAND_CH:
        if cmd == 1:  # arm (deprecated, protocol < 12 clients)
            ok = sim.supervisor.request_arming(bool(payload[1]) if len(payload) > 1 else False)
            sim._send(link, crtp.PLATFORM, ch, bytes((cmd, ok, sim.supervisor.armed)))
        elif cmd == 2:  # crash recovery (deprecated)
            ok = sim.supervisor.request_crash_recovery()
            sim._send(link, crtp.PLATFORM, ch, bytes((cmd, ok, not sim.supervisor.crashed)))
        elif cmd == 0:  # continuous wave: a radio test mode, nothing to simulate
            sim._send(link, crtp.PLATFORM, ch, payload)
        elif cmd == 3:  # user notification (LED sequence): the firmware answers with an empty packet
            sim._send(link, crtp.PLATFORM, ch, b"")
    else:
        sim.stats.unknown += 1  # app channel: no app in the simulation


def on_log(sim, ch, payload, link):
    for rch, data in sim.logs.handle(ch, payload, sim.t):
        sim._send(link, crtp.LOG, rch, data)


def on_param(sim, ch, payload, link):
    for rch, data in sim.params_service.handle(ch, payload):
        sim._send(link, crtp.PARAM, rch, data)


def on_mem(sim, ch, payload, link):
    for rch, data in sim.memories.handle(ch, payload):
        sim._send(link, crtp.MEM, rch, data)


def on_commander(sim, ch, payload, link):
    if ch != 0:
        sim.stats.unknown += 1
        return
    sim.commander.rpyt(payload, sim.t)
    sim.hl.stop()  # commanderSetSetpoint: a setpoint above the high-level priority stops the planner


def on_generic(sim, ch, payload, link):
    if ch == crtp.GENERIC_SETPOINT_CH:
        sim.commander.generic(payload, sim.t)
        sim.hl.stop()
    elif ch == crtp.GENERIC_META_CH:
        if len(payload) != 5 or payload[0] != crtp.META_NOTIFY_SETPOINT_STOP:
            raise ValueError("generic commander meta command: expected notify-setpoint-stop, 5 bytes")
        # crtp_commander.c notifySetpointsStopDecoder -> commanderRelaxPriority: the high-level
        # commander learns the last state and takes over (stopped: the null setpoint, motors off).
        sim.hl_tell_state()
        sim.commander.relax()


def on_high_level(sim, ch, payload, link):
    """Port 8 (crtp_commander_high_level.c crtpCommanderHighLevelTask): every command is answered."""
    if ch != 0:
        sim.stats.unknown += 1
        return
    sim._send(link, crtp.HIGH_LEVEL, ch, sim.hl.handle(payload, sim.t))


def on_supervisor(sim, ch, payload, link):
    if not payload:
        raise ValueError("supervisor: empty packet")
    cmd, sup = payload[0], sim.supervisor
    if ch == crtp.SUPERVISOR_INFO_CH:
        if cmd == crtp.SUP_GET_STATE_BITFIELD:
            sim._send(link, crtp.SUPERVISOR, ch, bytes((crtp.SUP_RESPONSE | cmd,)) + sup.bitfield.to_bytes(2, "little"))
        elif 1 <= cmd <= 0x0B:
            bit = (sup.bitfield >> (cmd - 1)) & 1
            sim._send(link, crtp.SUPERVISOR, ch, bytes((crtp.SUP_RESPONSE | cmd, bit)))
        else:
            sim.stats.unknown += 1
    elif ch == crtp.SUPERVISOR_COMMAND_CH:
        if cmd == crtp.SUP_ARM:
            ok = sup.request_arming(bool(payload[1]) if len(payload) > 1 else False)
            sim._send(link, crtp.SUPERVISOR, ch, bytes((crtp.SUP_RESPONSE | cmd, ok, sup.armed)))
        elif cmd == crtp.SUP_RECOVER:
            ok = sup.request_crash_recovery()
            sim._send(link, crtp.SUPERVISOR, ch, bytes((crtp.SUP_RESPONSE | cmd, ok, not sup.crashed)))
        elif cmd == crtp.SUP_EMERGENCY_STOP:
            sup.emergency_requested = True
        elif cmd == crtp.SUP_EMERGENCY_WATCHDOG:
            sup.watchdog_tick = sim.t
        else:
            sim.stats.unknown += 1


def bootloader_packet(sim, raw: bytes, link):
    data = raw[1:]
    target, cmd = data[0], data[1]
    if target == TARGET_NRF51:
        if cmd == CMD_RESET_INIT:
            sim._reply(link, bytes((crtp.BOOTLOADER_HEADER, target, cmd)) + RADIO_ADDRESS)
        elif cmd == CMD_RESET and len(data) >= 3:
            sim.reboot(to_bootloader=data[2] == 0)
        else:
            sim.stats.unknown += 1
        return
    if target != TARGET_STM32:
        sim.stats.unknown += 1
        return
    if sim.mode != BOOTLOADER:
        # The firmware ignores STM32 bootloader packets: only the nRF51's reset (target 0xFE, above) or the
        # button starts the bootloader. (A shortcut that rebooted into it here let one random packet in the
        # fault matrix's CRTP fuzz drop a flying vehicle.)
        sim.stats.unknown += 1
        return
    if len(raw) > crtp.MAX_BOOTLOADER_DATA + 1:
        raise ValueError(f"bootloader packet of {len(raw) - 1} bytes")
    reply = sim.bootloader.handle(data)
    if reply is not None:
        sim._reply(link, bytes((crtp.BOOTLOADER_HEADER,)) + reply)


HANDLERS = {crtp.LINK: on_link, crtp.PLATFORM: on_platform, crtp.LOG: on_log, crtp.PARAM: on_param,
            crtp.MEM: on_mem, crtp.COMMANDER: on_commander, crtp.GENERIC_SETPOINT: on_generic,
            crtp.HIGH_LEVEL: on_high_level, crtp.SUPERVISOR: on_supervisor}

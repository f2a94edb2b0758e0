"""Setpoints as the firmware's commander sees them: decoding of ports 3 and 7, the thrust lock.

Conventions are the firmware's setpoint_t ones, on purpose, so the controller reads the same numbers
the real stabilizer would: angles in degrees with the legacy pitch sign (positive = nose up, the
opposite of the ZYX Euler pitch), yaw rate positive = counter-clockwise seen from above. cflib's
send_setpoint() already negates pitch, and the RPYT decoder negates the yaw rate ("legacy rate
input is inverted", crtp_commander_rpyt.c), so send_setpoint(pitch=+10) tilts the nose down and
flies forward (+x) and send_setpoint(yawrate=+30) turns clockwise.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from firmware_bridge.crazyflie import crtp

MODE_DISABLE, MODE_ABS, MODE_VELOCITY = 0, 1, 2
# commander.h COMMANDER_PRIORITY_*: a setpoint is taken when its priority is at least the current one
PRIORITY_DISABLE, PRIORITY_HIGHLEVEL, PRIORITY_CRTP = 0, 1, 2
RATE, ANGLE = 0, 1  # flightmode.stabModeRoll/Pitch/Yaw values


@dataclass
class Setpoint:
    mode_x: int = MODE_DISABLE
    mode_y: int = MODE_DISABLE
    mode_z: int = MODE_DISABLE
    mode_roll: int = MODE_DISABLE
    mode_pitch: int = MODE_DISABLE
    mode_yaw: int = MODE_DISABLE
    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    vx: float = 0.0
    vy: float = 0.0
    vz: float = 0.0
    velocity_body: bool = False
    ax: float = 0.0  # m/s^2, feed-forward (high-level commander, full state)
    ay: float = 0.0
    az: float = 0.0
    roll: float = 0.0  # deg
    pitch: float = 0.0  # deg, legacy sign
    yaw: float = 0.0  # deg
    roll_rate: float = 0.0  # deg/s
    pitch_rate: float = 0.0  # deg/s, legacy sign
    yaw_rate: float = 0.0  # deg/s
    thrust: float = 0.0  # firmware thrust units, 0..65535
    timestamp: float = 0.0  # vehicle time, s

    @property
    def is_null(self) -> bool:
        return (self.thrust == 0.0 and self.mode_x == self.mode_y == self.mode_z == MODE_DISABLE)


class MalformedSetpoint(ValueError):
    pass


_RPYT = struct.Struct("<fffH")
_FOUR_FLOATS = struct.Struct("<ffff")
_MANUAL = struct.Struct("<fffHB")
_FULL_STATE = struct.Struct("<9hi3h")  # crtp_commander_generic.c struct fullStatePacket_s


def decompress_quaternion(comp: int) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a smallest-three compressed quaternion (the firmware's quatcompress.h format:
    2 bits index of the largest component, then the other three in order, each a sign bit and a
    9-bit magnitude scaled by 1/sqrt(2); the largest is positive and recovered from the unit norm)."""
    comp &= 0xFFFFFFFF
    big = comp >> 30
    q = [0.0] * 4
    total = 0.0
    for i in (3, 2, 1, 0):
        if i == big:
            continue
        mag, negative = (comp & 0x1FF), bool(comp & 0x200)
        comp >>= 10
        q[i] = (-1.0 if negative else 1.0) * mag / 511.0 / math.sqrt(2.0)
        total += q[i] * q[i]
    q[big] = math.sqrt(max(0.0, 1.0 - total))
    return q[0], q[1], q[2], q[3]


def _need(payload: bytes, size: int, what: str) -> None:
    # The firmware ASSERTs (reboots) on a wrong-sized generic setpoint and reads garbage for RPYT;
    # the simulation refuses the packet and counts it instead.
    if len(payload) != size:
        raise MalformedSetpoint(f"{what}: expected {size} payload bytes, got {len(payload)}")


class Commander:
    """The commander's view: the latest setpoint, its priority and the RPYT thrust lock.

    Priorities as commander.c: the boot priority is DISABLE; a CRTP setpoint (ports 3 and 7) takes
    CRTP priority (and stops the high-level planner: the caller does that); the high-level commander's
    setpoints are taken only while the priority is at most HIGHLEVEL; notify-setpoint-stop relaxes the
    priority to LOWEST (= HIGHLEVEL), handing the vehicle back to the high-level commander.
    """

    def __init__(self):
        self.setpoint = Setpoint()  # the null setpoint: motors off
        self.priority = PRIORITY_DISABLE
        # Set at boot (the commander starts at priority DISABLE); a RPYT setpoint with thrust 0
        # releases it, and only a reboot sets it again.
        self.thrust_locked = True
        self.stab_mode = {"roll": ANGLE, "pitch": ANGLE, "yaw": RATE}

    def offer(self, sp: Setpoint, priority: int) -> bool:
        """commanderSetSetpoint: take sp if its priority is at least the current one."""
        if priority < self.priority:
            return False
        self.setpoint, self.priority = sp, priority
        return True

    def relax(self):
        """commanderRelaxPriority (the notify-setpoint-stop meta command)."""
        self.priority = PRIORITY_HIGHLEVEL

    def rpyt(self, payload: bytes, now: float) -> Setpoint:
        _need(payload, _RPYT.size, "commander (port 3) roll/pitch/yawrate/thrust")
        roll, pitch, yaw, thrust = _RPYT.unpack(payload)
        if thrust == 0:
            self.thrust_locked = False
        sp = Setpoint(timestamp=now)
        sp.thrust = 0.0 if (self.thrust_locked or thrust < crtp.RPYT_MIN_THRUST) else float(min(thrust, crtp.RPYT_MAX_THRUST))
        for axis, value in (("roll", roll), ("pitch", pitch)):
            if self.stab_mode[axis] == RATE:
                setattr(sp, f"mode_{axis}", MODE_VELOCITY)
                setattr(sp, f"{axis}_rate", value)
            else:
                setattr(sp, f"mode_{axis}", MODE_ABS)
                setattr(sp, axis, value)
        if self.stab_mode["yaw"] == RATE:
            sp.mode_yaw, sp.yaw_rate = MODE_VELOCITY, -yaw
        else:
            sp.mode_yaw, sp.yaw = MODE_ABS, yaw
        self.offer(sp, PRIORITY_CRTP)
        return sp

    def generic(self, payload: bytes, now: float) -> Setpoint:
        if not payload:
            raise MalformedSetpoint("generic setpoint (port 7): empty packet")
        kind, data = payload[0], payload[1:]
        sp = Setpoint(timestamp=now)  # the firmware zeroes the setpoint before decoding
        if kind == crtp.SP_STOP:
            pass
        elif kind == crtp.SP_POSITION:
            _need(data, 16, "position setpoint")
            sp.x, sp.y, sp.z, sp.yaw = _FOUR_FLOATS.unpack(data)
            sp.mode_x = sp.mode_y = sp.mode_z = sp.mode_yaw = MODE_ABS
        elif kind in (crtp.SP_VELOCITY_WORLD, crtp.SP_VELOCITY_WORLD_LEGACY):
            _need(data, 16, "velocity setpoint")
            sp.vx, sp.vy, sp.vz, rate = _FOUR_FLOATS.unpack(data)
            sp.mode_x = sp.mode_y = sp.mode_z = sp.mode_yaw = MODE_VELOCITY
            sp.yaw_rate = rate if kind == crtp.SP_VELOCITY_WORLD else -rate
        elif kind in (crtp.SP_ZDISTANCE, crtp.SP_ZDISTANCE_LEGACY):
            _need(data, 16, "z-distance setpoint")
            sp.roll, sp.pitch, rate, sp.z = _FOUR_FLOATS.unpack(data)
            sp.mode_z, sp.mode_roll, sp.mode_pitch, sp.mode_yaw = MODE_ABS, MODE_ABS, MODE_ABS, MODE_VELOCITY
            sp.yaw_rate = rate if kind == crtp.SP_ZDISTANCE else -rate
        elif kind in (crtp.SP_HOVER, crtp.SP_HOVER_LEGACY):
            _need(data, 16, "hover setpoint")
            sp.vx, sp.vy, rate, sp.z = _FOUR_FLOATS.unpack(data)
            sp.mode_x = sp.mode_y = sp.mode_yaw = MODE_VELOCITY
            sp.mode_z, sp.velocity_body = MODE_ABS, True
            sp.yaw_rate = rate if kind == crtp.SP_HOVER else -rate
        elif kind == crtp.SP_FULL_STATE:
            _need(data, _FULL_STATE.size, "full-state setpoint")
            x, y, z, vx, vy, vz, ax, ay, az, quat, _rr, _rp, _ry = _FULL_STATE.unpack(data)
            sp.x, sp.y, sp.z = x / 1000.0, y / 1000.0, z / 1000.0
            sp.vx, sp.vy, sp.vz = vx / 1000.0, vy / 1000.0, vz / 1000.0
            sp.ax, sp.ay, sp.az = ax / 1000.0, ay / 1000.0, az / 1000.0
            sp.mode_x = sp.mode_y = sp.mode_z = MODE_ABS
            # The firmware sets mode.quat absolute (roll, pitch and yaw modes disabled); the simulated
            # controller has no quaternion mode and follows the quaternion's heading instead.
            qx, qy, qz, qw = decompress_quaternion(quat)
            sp.mode_yaw = MODE_ABS
            sp.yaw = math.degrees(math.atan2(2.0 * (qw * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz)))
        elif kind == crtp.SP_MANUAL:
            _need(data, _MANUAL.size, "manual setpoint")
            roll, pitch, rate, thrust, is_rate = _MANUAL.unpack(data)
            mode = MODE_VELOCITY if is_rate else MODE_ABS
            sp.mode_roll = sp.mode_pitch = mode
            if is_rate:
                sp.roll_rate, sp.pitch_rate = roll, pitch
            else:
                sp.roll, sp.pitch = roll, pitch
            sp.mode_yaw, sp.yaw_rate, sp.thrust = MODE_VELOCITY, rate, float(thrust)
        else:
            raise MalformedSetpoint(f"generic setpoint type {kind} is not simulated")
        self.offer(sp, PRIORITY_CRTP)
        return sp

"""The high-level commander of the simulated Crazyflie (CRTP port 8) and its planner.

Written from crazyflie-firmware 2026.08 (commit 2a18fc29), not copied from it:
- src/modules/src/crtp_commander_high_level.c: the command numbers and packed layouts
  (TrajectoryCommand_e, struct data_*), the reply (the request's first three bytes with byte 3
  replaced by the command's return code, 4 bytes in all: crtpCommanderHighLevelTask), the
  supervisor block (crtpCommanderBlock: EBUSY while the vehicle cannot fly, and an active plan is
  stopped), the group mask test (isInGroup), the trajectory memory (4096 bytes,
  TRAJECTORY_MEMORY_SIZE; 31 trajectory definitions, NUM_TRAJECTORY_DEFINITIONS in
  crtp_commander_high_level.h) and the setpoint it produces (crtpCommanderHighLevelGetSetpoint: at
  100 Hz, RATE_HL_COMMANDER; absolute x, y, z and yaw with velocity and acceleration feed-forward while
  a plan runs,
  the null setpoint while the planner is stopped, nothing while it is disabled);
- src/modules/src/planner.c: idle / flying / landing states, take-off refused (return 1) unless
  idle, landing refused (1) while landing, a landing that ends goes idle (motors off), go-to from
  the current goal or, when idle, from the last known state; start trajectory with relative
  position / yaw;
- src/modules/src/pptraj.c: the poly4d piece (x, y, z, yaw: 8 coefficients each, lowest power
  first, then the duration; 132 bytes, little-endian floats), time scaling, the hold at the end of
  a trajectory, and the 7th-order rest-to-rest segment with zero jerk at both ends that take-off,
  landing and go-to fly (here solved as the linear boundary-value problem it is, with numpy).

- src/modules/src/pptraj_compressed.c: the compressed trajectory format (type 1): a start point
  (x, y, z in mm, yaw in 1/10 degree, int16 each), then pieces: one byte of storage types (2 bits each
  for x, y, z, yaw: constant, linear, cubic or 7th-degree Bezier with 0, 1, 3 or 7 stored control
  points, the first control point being the previous piece's end), the duration in ms (uint16; 0 ends
  the trajectory), the control points (int16, mm or 1/10 degree). Flown at time scale 1, forwards only
  (otherwise ENOEXEC, as the firmware), shifted in position only.

Not simulated, answered as the firmware answers an unknown command (ENOEXEC), with a console line:
spiral (11). Nothing is ignored silently.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

from firmware_bridge.crazyflie import crtp
from .setpoints import MODE_ABS, MODE_DISABLE, Setpoint

# planner.h enum trajectory_state
IDLE, FLYING, LANDING, DISABLED = 0, 1, 3, 4
(CMD_SET_GROUP_MASK, CMD_TAKEOFF, CMD_LAND, CMD_STOP, CMD_GO_TO, CMD_START_TRAJECTORY, CMD_DEFINE_TRAJECTORY,
 CMD_TAKEOFF_2, CMD_LAND_2, CMD_TAKEOFF_WITH_VELOCITY, CMD_LAND_WITH_VELOCITY, CMD_SPIRAL, CMD_GO_TO_2,
 CMD_START_TRAJECTORY_2) = range(14)
EBUSY = 16
TRAJECTORY_MEMORY_SIZE = 4096
NUM_TRAJECTORY_DEFINITIONS = 31
LOCATION_INVALID, LOCATION_MEM = 0, 1
TYPE_POLY4D, TYPE_POLY4D_COMPRESSED = 0, 1
POLY4D = struct.Struct("<33f")  # 4 x 8 coefficients, then the duration
RATE_HZ = 100.0
GRAVITY = 9.81

# The packed request layouts after the command byte (crtp_commander_high_level.c, struct data_*)
_LAYOUTS = {
    CMD_SET_GROUP_MASK: "<B", CMD_TAKEOFF: "<Bff", CMD_LAND: "<Bff", CMD_STOP: "<B",
    CMD_GO_TO: "<BBfffff", CMD_START_TRAJECTORY: "<BBBBf", CMD_DEFINE_TRAJECTORY: "<BBBIB",
    CMD_TAKEOFF_2: "<Bff?f", CMD_LAND_2: "<Bff?f", CMD_TAKEOFF_WITH_VELOCITY: "<Bf?f?f",
    CMD_LAND_WITH_VELOCITY: "<Bf?f?f", CMD_SPIRAL: "<BBBfffff", CMD_GO_TO_2: "<BBBfffff",
    CMD_START_TRAJECTORY_2: "<BBBBBf",
}


BEZIER_POINTS = (0, 1, 3, 7)  # stored control points per storage type (constant, linear, cubic, 7th)
MM, DECI_DEGREE = 1000.0, 1800.0 / math.pi


def _bezier_coefficients(points, duration: float) -> np.ndarray:
    """Power-basis coefficients in t (lowest first, padded to 8) of the Bezier curve through control
    points over duration seconds."""
    n = len(points) - 1
    out = np.zeros(8)
    if n == 0 or duration <= 0.0:
        out[0] = points[-1]
        return out
    poly_s = np.zeros(n + 1)
    for i, p in enumerate(points):  # C(n, i) s^i (1 - s)^(n - i)
        term = np.polynomial.polynomial.polypow([1.0, -1.0], n - i) if n - i else np.array([1.0])
        term = np.polynomial.polynomial.polymul(np.eye(i + 1)[i], term)
        poly_s[:len(term)] += math.comb(n, i) * p * term
    out[:n + 1] = poly_s / duration ** np.arange(n + 1)
    return out


def parse_compressed(memory: bytes, offset: int) -> list | None:
    """Pieces (coefficients [4, 8], duration) of a compressed trajectory at offset; None if it runs past
    the memory."""
    def i16(at):
        return struct.unpack_from("<h", memory, at)[0]

    try:
        start = [i16(offset + 2 * k) for k in range(4)]
        prev = [start[0] / MM, start[1] / MM, start[2] / MM, start[3] / DECI_DEGREE]
        at, pieces = offset + 8, []
        while True:
            kinds = memory[at]
            duration_ms = struct.unpack_from("<H", memory, at + 1)[0]
            at += 3
            if duration_ms == 0:
                break
            duration = duration_ms / 1000.0
            coeffs = np.zeros((4, 8))
            for dim in range(4):
                n = BEZIER_POINTS[(kinds >> (2 * dim)) & 0x03]
                scale = DECI_DEGREE if dim == 3 else MM
                points = [prev[dim]] + [i16(at + 2 * k) / scale for k in range(n)]
                at += 2 * n
                coeffs[dim] = _bezier_coefficients(points, duration)
                prev[dim] = points[-1]
            pieces.append((coeffs, duration))
    except (IndexError, struct.error):
        return None
    # the end of the trajectory holds its last point (the firmware's zero-duration constant piece)
    hold = np.zeros((4, 8))
    hold[:, 0] = prev
    return pieces + [(hold, 0.0)]


def _wrap(a: float) -> float:
    """An angle in (-pi, pi]."""
    return math.atan2(math.sin(a), math.cos(a))


_NOJERK = {}


def _rest_to_rest_matrix(T: float) -> np.ndarray:
    # Rows: position, velocity, acceleration and jerk of sum c_k t^k at t = 0 and at t = T.
    m = np.zeros((8, 8))
    for end, t in enumerate((np.float64(0.0), np.float64(T))):
        for d in range(4):
            for k in range(d, 8):
                m[4 * end + d, k] = math.factorial(k) / math.factorial(k - d) * t ** (k - d)
    return m


def poly7_no_jerk(T: float, x0: float, v0: float, a0: float, x1: float, v1: float, a1: float) -> np.ndarray:
    """Coefficients (lowest power first) of the degree-7 polynomial from (x0, v0, a0) to (x1, v1, a1) in
    T seconds with zero jerk at both ends; T <= 0: the end state at once."""
    if T <= 0.0:
        return np.array([x1, v1, a1 / 2.0, 0, 0, 0, 0, 0], dtype=float)
    with np.errstate(all="ignore"):  # absurd durations (a fuzzed packet): garbage in, NaN out, never an exception
        T = np.float64(T)
        key = float(T)
        if key not in _NOJERK:
            if len(_NOJERK) > 64:
                _NOJERK.clear()
            try:
                _NOJERK[key] = np.linalg.inv(_rest_to_rest_matrix(T))
            except np.linalg.LinAlgError:
                _NOJERK[key] = np.full((8, 8), np.nan)
        return _NOJERK[key] @ np.array([x0, v0, a0, 0.0, x1, v1, a1, 0.0])


def _polyval(c, t: float, d: int = 0) -> float:
    """d-th derivative of sum c_k t^k at t."""
    out = 0.0
    for k in range(len(c) - 1, d - 1, -1):
        out = out * t + c[k] * math.factorial(k) / math.factorial(k - d)
    return out


@dataclass
class Eval:
    pos: np.ndarray
    vel: np.ndarray
    acc: np.ndarray
    yaw: float  # rad
    yaw_rate: float  # rad/s


class Piecewise:
    """A piecewise 4-d polynomial: pieces are (coefficients [4, 8], duration)."""

    def __init__(self, pieces, t_begin: float = 0.0, timescale: float = 1.0):
        self.pieces = list(pieces)
        self.t_begin, self.timescale = t_begin, timescale
        self.shift = np.zeros(3)
        self.shift_yaw = 0.0
        self.reversed = False

    @property
    def duration(self) -> float:
        return sum(d for _, d in self.pieces) * self.timescale

    def finished(self, t: float) -> bool:
        return t - self.t_begin >= self.duration

    def _piece(self, p, d, t) -> Eval:
        s = self.timescale
        u = t / s  # stretching a piece by s evaluates it at t / s, each derivative scaled by 1 / s
        pos = np.array([_polyval(p[i], u) for i in range(3)])
        vel = np.array([_polyval(p[i], u, 1) for i in range(3)]) / s
        acc = np.array([_polyval(p[i], u, 2) for i in range(3)]) / s ** 2
        return Eval(pos, vel, acc, _polyval(p[3], u), _polyval(p[3], u, 1) / s)

    def _transform(self, ev: Eval) -> Eval:
        r = _wrap(self.shift_yaw)
        if r:
            c, s_ = math.cos(r), math.sin(r)
            rot = np.array([[c, -s_, 0.0], [s_, c, 0.0], [0.0, 0.0, 1.0]])
            ev.pos, ev.vel, ev.acc = rot @ ev.pos, rot @ ev.vel, rot @ ev.acc
            ev.yaw += r
        ev.pos = ev.pos + self.shift
        return ev

    def eval(self, t: float) -> Eval:
        with np.errstate(all="ignore"):  # a fuzzed plan evaluates to NaN (motors off), quietly
            return self._eval(t)

    def _eval(self, t: float) -> Eval:
        if self.reversed:
            return self._eval_reversed(t)
        t -= self.t_begin
        for p, d in self.pieces:
            if t <= d * self.timescale:
                return self._transform(self._piece(p, d, t))
            t -= d * self.timescale
        p, d = self.pieces[-1]
        ev = self._transform(self._piece(p, d, d * self.timescale))
        ev.vel, ev.acc, ev.yaw_rate = np.zeros(3), np.zeros(3), 0.0
        return ev

    def _eval_reversed(self, t: float) -> Eval:
        # Backwards in time from the end of the last piece; as the firmware, no yaw rotation here.
        t -= self.t_begin
        for p, d in reversed(self.pieces):
            if t <= d * self.timescale:
                ev = self._piece(p, d, d * self.timescale - t)
                ev.pos = ev.pos + self.shift
                ev.vel, ev.yaw_rate = -ev.vel, -ev.yaw_rate
                return ev
            t -= d * self.timescale
        p, d = self.pieces[0]
        ev = self._piece(p, d, 0.0)
        ev.pos = ev.pos + self.shift
        ev.vel, ev.acc, ev.yaw_rate = np.zeros(3), np.zeros(3), 0.0
        return ev


def _segment(duration, p0, yaw0, v0, w0, a0, p1, yaw1, v1, w1, a1) -> Piecewise:
    coeffs = np.array([poly7_no_jerk(duration, p0[i], v0[i], a0[i], p1[i], v1[i], a1[i]) for i in range(3)]
                      + [poly7_no_jerk(duration, yaw0, w0, 0.0, yaw1, w1, 0.0)])
    return Piecewise([(coeffs, duration)])


class HighLevelCommander:
    """Planner state, trajectory memory and definitions; one per boot of the vehicle."""

    def __init__(self, console=None):
        self.state = IDLE
        self.plan: Piecewise | None = None
        self.memory = bytearray(TRAJECTORY_MEMORY_SIZE)
        self.definitions: list[tuple | None] = [None] * NUM_TRAJECTORY_DEFINITIONS
        self.group_mask = 0  # hlCommander.groupmask
        self.v_takeoff = self.v_land = 0.5  # hlCommander.vtoff / vland, m/s
        self.blocked = False
        self.pos, self.vel, self.yaw = np.zeros(3), np.zeros(3), 0.0  # last known setpoint / state
        self.console = console or (lambda text: None)

    # -- the stabilizer's side ---------------------------------------------------------------------
    def tell_state(self, pos, vel, yaw_rad: float):
        self.pos, self.vel, self.yaw = np.array(pos, float), np.array(vel, float), float(yaw_rad)

    def block(self, do_block: bool):
        """crtpCommanderBlock: while the supervisor forbids flight, commands answer EBUSY and a running
        plan stops."""
        if do_block and not self.blocked and self.state not in (IDLE, DISABLED):
            self.state = IDLE
        self.blocked = do_block

    def stop(self):
        self.state = IDLE

    def finished(self, t: float) -> bool:
        return self.plan is None or self.plan.finished(t)

    def setpoint(self, t: float, pos, vel, yaw_rad: float) -> Setpoint | None:
        """The setpoint for this 100 Hz tick: a Setpoint, the null setpoint (stopped), or None."""
        if self.state in (IDLE, DISABLED):
            self.tell_state(pos, vel, yaw_rad)
            return Setpoint(timestamp=t) if self.state == IDLE else None
        if self.state == LANDING and self.plan.finished(t):
            self.state = IDLE  # the landing's last goal is still flown this tick
        ev = self.plan.eval(t)
        self.pos, self.vel, self.yaw = ev.pos, ev.vel, ev.yaw
        sp = Setpoint(mode_x=MODE_ABS, mode_y=MODE_ABS, mode_z=MODE_ABS, mode_yaw=MODE_ABS,
                      mode_roll=MODE_DISABLE, mode_pitch=MODE_DISABLE, timestamp=t)
        sp.x, sp.y, sp.z = (float(v) for v in ev.pos)
        sp.vx, sp.vy, sp.vz = (float(v) for v in ev.vel)
        sp.ax, sp.ay, sp.az = (float(v) for v in ev.acc)
        sp.yaw = math.degrees(ev.yaw)
        sp.yaw_rate = math.degrees(ev.yaw_rate)
        return sp

    def info_bits(self, t: float) -> int:
        """The supervisor info bits 8-10 (supervisor.c updateLogData)."""
        bits = 0x100 if self.state & FLYING else 0
        if self.finished(t):
            bits |= 0x200
        if self.state == DISABLED:
            bits |= 0x400
        return bits

    # -- trajectory memory (MEM_TYPE_TRAJ) ----------------------------------------------------------
    def mem_read(self, addr: int, length: int) -> bytes | None:
        if addr + length > len(self.memory):
            return None
        return bytes(self.memory[addr:addr + length])

    def mem_write(self, addr: int, data: bytes) -> bool:
        if addr + len(data) > len(self.memory):
            return False
        self.memory[addr:addr + len(data)] = data
        return True

    # -- CRTP --------------------------------------------------------------------------------------
    def handle(self, payload: bytes, t: float) -> bytes:
        """One port-8 packet; returns the reply payload."""
        if not payload:
            raise ValueError("high-level commander: empty packet")
        cmd = payload[0]
        layout = _LAYOUTS.get(cmd)
        if layout is None:
            ret = crtp.ENOEXEC
        else:
            size = struct.calcsize(layout)
            if len(payload) - 1 < size:
                raise ValueError(f"high-level commander command {cmd}: {len(payload) - 1} bytes, its layout needs {size}")
            ret = self._command(cmd, struct.unpack_from(layout, payload, 1), t)
        head = (bytes(payload[:3]) + b"\0\0")[:3]
        return head + bytes((ret & 0xFF,))

    def _in_group(self, g: int) -> bool:
        return g == 0 or (g & self.group_mask) != 0

    def _command(self, cmd: int, a: tuple, t: float) -> int:
        if cmd == CMD_SET_GROUP_MASK:
            self.group_mask = a[0]
            return 0
        if cmd == CMD_DEFINE_TRAJECTORY:
            ident, location, kind, offset, n_pieces = a
            if ident >= NUM_TRAJECTORY_DEFINITIONS:
                return crtp.ENOEXEC
            self.definitions[ident] = (location, kind, offset, n_pieces)
            return 0
        if cmd == CMD_STOP:
            if self._in_group(a[0]):
                self.state = IDLE
            return 0
        if cmd == CMD_SPIRAL:
            self.console("HL: spiral is not simulated (edgectl)\n")
            return crtp.ENOEXEC
        if self.blocked:
            return EBUSY
        if not self._in_group(a[0]):
            return 0
        if cmd in (CMD_TAKEOFF, CMD_TAKEOFF_2, CMD_TAKEOFF_WITH_VELOCITY):
            return self._takeoff_or_land(cmd, a, t, landing=False)
        if cmd in (CMD_LAND, CMD_LAND_2, CMD_LAND_WITH_VELOCITY):
            return self._takeoff_or_land(cmd, a, t, landing=True)
        if cmd in (CMD_GO_TO, CMD_GO_TO_2):
            if cmd == CMD_GO_TO:
                _, relative, x, y, z, yaw, duration = a
                linear = False
            else:
                _, relative, linear, x, y, z, yaw, duration = a
            return self._go_to(bool(relative), bool(linear), np.array([x, y, z]), yaw, duration, t)
        if cmd == CMD_START_TRAJECTORY:
            _, relative, reversed_, ident, timescale = a
            return self._start_trajectory(ident, timescale, bool(relative), False, bool(reversed_), t)
        if cmd == CMD_START_TRAJECTORY_2:
            _, rel_pos, rel_yaw, reversed_, ident, timescale = a
            return self._start_trajectory(ident, timescale, bool(rel_pos), bool(rel_yaw), bool(reversed_), t)
        return crtp.ENOEXEC

    def _takeoff_or_land(self, cmd, a, t, landing: bool) -> int:
        if cmd in (CMD_TAKEOFF, CMD_LAND):
            _, height, duration = a
            hover_yaw = 0.0
        elif cmd in (CMD_TAKEOFF_2, CMD_LAND_2):
            _, height, hover_yaw, use_current, duration = a
            hover_yaw = self.yaw if use_current else hover_yaw
        else:
            _, height, relative, hover_yaw, use_current, velocity = a
            hover_yaw = self.yaw if use_current else hover_yaw
            if relative:
                height = self.pos[2] - height if landing else height + self.pos[2]
            if velocity <= 0:
                velocity = self.v_land if landing else self.v_takeoff
            duration = abs(height - self.pos[2]) / velocity
        if (landing and self.state == LANDING) or (not landing and self.state != IDLE):
            return 1  # plan_land / plan_takeoff refuse
        goal = self.pos.copy()
        goal[2] = height
        yaw0 = _wrap(self.yaw)
        yaw1 = yaw0 + _wrap(_wrap(hover_yaw) - yaw0)
        z3 = np.zeros(3)
        self.plan = _segment(duration, self.pos, yaw0, z3, 0.0, z3, goal, yaw1, z3, 0.0, z3)
        self.plan.t_begin = t
        self.state = LANDING if landing else FLYING
        return 0

    def _go_to(self, relative: bool, linear: bool, goal, yaw, duration, t) -> int:
        if self.state in (IDLE, DISABLED):
            p0, v0, a0, y0, w0 = self.pos, self.vel, np.zeros(3), self.yaw, 0.0
        else:
            ev = self.plan.eval(t)
            if self.state == LANDING and self.plan.finished(t):
                self.state = IDLE
            p0, v0, a0, y0, w0 = ev.pos, ev.vel, ev.acc, ev.yaw, ev.yaw_rate
        if relative:
            goal, yaw = goal + p0, yaw + y0
        y0 = _wrap(y0)
        dyaw = _wrap(_wrap(yaw) - y0)
        z3 = np.zeros(3)
        if linear:
            v = (goal - p0) / duration if duration > 0 else z3
            w = dyaw / duration if duration > 0 else 0.0
            self.plan = _segment(duration, p0, y0, v, w, z3, goal, y0 + dyaw, v, w, z3)
        else:
            self.plan = _segment(duration, p0, y0, v0, w0, a0, goal, y0 + dyaw, z3, 0.0, z3)
        self.plan.t_begin = t
        self.state = FLYING
        return 0

    def _start_trajectory(self, ident, timescale, rel_pos, rel_yaw, reversed_, t) -> int:
        if ident >= NUM_TRAJECTORY_DEFINITIONS or self.definitions[ident] is None:
            return 0  # the firmware answers 0 and does nothing for an undefined trajectory
        location, kind, offset, n_pieces = self.definitions[ident]
        if location != LOCATION_MEM:
            return 0
        if kind == TYPE_POLY4D_COMPRESSED:
            if timescale != 1.0 or reversed_:
                return crtp.ENOEXEC  # crtp_commander_high_level.c: compressed: time scale 1, forwards only
            pieces = parse_compressed(self.memory, offset)
            if not pieces:
                self.console("HL: compressed trajectory runs past the trajectory memory\n")
                return crtp.ENOEXEC
            plan = Piecewise(pieces, t_begin=t)
            if rel_pos:
                plan.shift = self.pos - plan.eval(t).pos
            self.plan, self.state = plan, FLYING
            return 0
        if kind != TYPE_POLY4D:
            return 0
        pieces = []
        for i in range(n_pieces):
            start = offset + i * POLY4D.size
            if start + POLY4D.size > len(self.memory):
                break  # the firmware would read past its buffer; the simulation stops at its end
            v = POLY4D.unpack_from(self.memory, start)
            pieces.append((np.array(v[:32], dtype=float).reshape(4, 8), v[32]))
        if not pieces:
            return 0
        plan = Piecewise(pieces, t_begin=t, timescale=timescale)
        plan.reversed = reversed_
        if rel_pos:
            start = plan.eval(t)  # shift and rotation still zero
            plan.shift = self.pos - start.pos
            if rel_yaw:
                plan.shift_yaw = _wrap(_wrap(self.yaw) - _wrap(start.yaw))
        self.plan = plan
        self.state = FLYING
        return 0

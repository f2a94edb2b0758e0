"""The simulated Crazyflie's stabilizer: position and attitude loops, mixer, motor-lag compensation.

Not a copy of any firmware controller; a small cascaded design that flies the edgectl dynamics
(edgectl/plant/quadrotor.py) well enough for a host to test against:
  position (P) -> velocity (P) -> desired specific force -> tilt + collective thrust
  attitude (quaternion error, P) -> body rates (P) -> torques (J * alpha + w x Jw)
  mixer: the platform's rotor geometry inverted exactly, [T, tx, ty, tz] -> rotor forces
  motor lag: rotor speed follows its command with the platform's time constant (0.15 s for the
  paper's Crazyflie); the controller keeps its own model of the rotor speeds (from its own
  commands, as a firmware could) and leads the command so the closed loop sees ~40 ms instead.
Plain floats, not numpy: at 500 Hz a few dozen scalar operations cost less than array overhead.
"""
from __future__ import annotations

import math

import numpy as np

from edgectl.platforms import motor_for_fraction

from .setpoints import MODE_ABS, MODE_DISABLE, MODE_VELOCITY, Setpoint

MAX_TILT_DEG = 25.0
MAX_SPEED_XY, MAX_SPEED_Z = 1.0, 1.0  # m/s, position mode
THRUST_UNITS = 65535.0  # firmware thrust / motor ratio full scale


def quat_to_euler(qw, qx, qy, qz):
    """ZYX Euler angles (roll, pitch, yaw) in radians of a body-to-world quaternion."""
    roll = math.atan2(2.0 * (qw * qx + qy * qz), 1.0 - 2.0 * (qx * qx + qy * qy))
    pitch = math.asin(max(-1.0, min(1.0, 2.0 * (qw * qy - qz * qx))))
    yaw = math.atan2(2.0 * (qw * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz))
    return roll, pitch, yaw


def euler_to_quat(roll, pitch, yaw):
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    return (cr * cp * cy + sr * sp * sy, sr * cp * cy - cr * sp * sy,
            cr * sp * cy + sr * cp * sy, cr * cp * sy - sr * sp * cy)


def _wrap_deg(a: float) -> float:
    return (a + 180.0) % 360.0 - 180.0


def _clip(v, lo, hi):
    return lo if v < lo else (hi if v > hi else v)


class FlightController:
    """One controller step per physics step. Gains in continuous time (1/s)."""

    def __init__(self, params: dict, dt: float, *, att_gain=(6.0, 6.0, 3.0), rate_gain=(18.0, 18.0, 8.0),
                 pos_gain=(1.5, 1.5, 2.0), vel_gain=(3.0, 3.0, 5.0), lag_target_s=0.04):
        self.dt = dt
        self.mass = float(params["mass"])
        self.g = float(params["gravity"])
        self.inertia = [float(v) for v in params["inertia"]]
        self.tmax = float(params["thrust_max"])  # per rotor, N
        self.shape = tuple(float(v) for v in params.get("thrust_shape", (0.0, 0.0)))  # the thrust curve's b0, b1
        self.motor_tau = float(params["motor_tau"])
        self.motor_min = float(params["motor_min"])
        rx, ry, spin = (np.asarray(params[k], dtype=float) for k in ("rotor_x", "rotor_y", "spin"))
        # Wrench of rotor forces, as in the dynamics: thrust, roll, pitch, yaw torque.
        mix = np.array([np.ones(4), ry, -rx, float(params["torque_coefficient"]) * spin])
        self.unmix = np.linalg.inv(mix).tolist()
        self.att_gain, self.rate_gain = att_gain, rate_gain
        self.pos_gain, self.vel_gain = pos_gain, vel_gain
        # the rotors rise and fall with different time constants (rotors.motor_time_constant_up/_down):
        # the lead and the motor model follow each direction's own
        tau_down = float(params.get("motor_tau_down", self.motor_tau))
        self.lead = (self.motor_tau / lag_target_s, tau_down / lag_target_s)
        self.decay = (1.0 - math.exp(-dt / self.motor_tau), 1.0 - math.exp(-dt / tau_down))
        self.motor_model = [0.0] * 4
        self.yaw_desired = 0.0  # deg, ZYX yaw
        self.last = {"roll": 0.0, "pitch": 0.0, "yaw": 0.0, "thrust": 0.0}  # desired, firmware units

    def thrust_to_newton(self, thrust_units: float) -> float:
        """Collective thrust of a firmware thrust value. With battery compensation on (the default,
        CONFIG_ENABLE_THRUST_BAT_COMPENSATED) the firmware reads a motor's 16-bit thrust as a fraction of its
        per-motor maximum and drives the voltage that gives that force (crazyflie-firmware motors.c,
        motorsCompensateBatteryVoltage): force is linear in the value. 38.6k hovers the 27 g Crazyflie 2.1 at
        THRUST_MAX 0.1125 N per motor (the firmware's own PID_VEL_THRUST_BASE is 36000)."""
        r = _clip(thrust_units / THRUST_UNITS, 0.0, 1.0)
        return 4.0 * self.tmax * r

    def newton_to_thrust(self, newton: float) -> float:
        return THRUST_UNITS * _clip(max(newton, 0.0) / (4.0 * self.tmax), 0.0, 1.0)

    def reset(self, yaw_deg: float):
        self.yaw_desired = yaw_deg

    # ------------------------------------------------------------------------------------------
    def motors_off(self) -> list[float]:
        self._advance_model([self.motor_min] * 4)
        self.last["thrust"] = 0.0
        return [self.motor_min] * 4

    def step(self, sp: Setpoint, x) -> list[float]:
        """Rotor speed commands (fraction of max rpm, 0..1) for state x (the 17-vector)."""
        px, py, pz, qw, qx, qy, qz, vx, vy, vz, wx, wy, wz = (float(v) for v in x[:13])
        roll, pitch, yaw = quat_to_euler(qw, qx, qy, qz)
        yaw_deg = math.degrees(yaw)
        xy_on = sp.mode_x != MODE_DISABLE or sp.mode_y != MODE_DISABLE
        z_on = sp.mode_z != MODE_DISABLE
        if not z_on and sp.thrust <= 0.0:
            # Motors off; forget the heading target like the firmware's PID does at zero thrust.
            self.reset(yaw_deg)
            return self.motors_off()

        if sp.mode_yaw == MODE_ABS:
            self.yaw_desired = sp.yaw
        elif sp.mode_yaw == MODE_VELOCITY:
            self.yaw_desired = _wrap_deg(self.yaw_desired + sp.yaw_rate * self.dt)
        yd = math.radians(self.yaw_desired)

        # -- position / velocity loop: desired acceleration (world) --------------------------------
        ax = ay = az = 0.0
        if xy_on or z_on:
            kp, kv = self.pos_gain, self.vel_gain
            cyaw, syaw = math.cos(yaw), math.sin(yaw)
            vxd, vyd = sp.vx, sp.vy
            if sp.velocity_body:
                vxd, vyd = cyaw * sp.vx - syaw * sp.vy, syaw * sp.vx + cyaw * sp.vy
            # position mode: P on the position error, limited (the firmware's xyVelMax), plus the
            # setpoint's velocity and acceleration as feed-forward (zero for position setpoints; the
            # high-level commander's and full-state setpoints carry them)
            cx = kp[0] * (sp.x - px) if sp.mode_x == MODE_ABS else 0.0
            cy = kp[1] * (sp.y - py) if sp.mode_y == MODE_ABS else 0.0
            speed = math.hypot(cx, cy)
            if speed > MAX_SPEED_XY:
                cx, cy = cx * MAX_SPEED_XY / speed, cy * MAX_SPEED_XY / speed
            if sp.mode_x == MODE_ABS:
                vxd = cx + sp.vx
            if sp.mode_y == MODE_ABS:
                vyd = cy + sp.vy
            vzd = (_clip(kp[2] * (sp.z - pz), -MAX_SPEED_Z, MAX_SPEED_Z) + sp.vz) if sp.mode_z == MODE_ABS else sp.vz
            if xy_on:
                ax = kv[0] * (vxd - vx) + (sp.ax if sp.mode_x == MODE_ABS else 0.0)
                ay = kv[1] * (vyd - vy) + (sp.ay if sp.mode_y == MODE_ABS else 0.0)
            if z_on:
                az = _clip(kv[2] * (vzd - vz) + (sp.az if sp.mode_z == MODE_ABS else 0.0), -0.5 * self.g, 0.8 * self.g)

        # -- tilt and collective thrust --------------------------------------------------------
        max_tilt = math.radians(MAX_TILT_DEG)
        if xy_on:
            fx, fy, fz = ax, ay, self.g + az  # desired specific force
            cy_, sy_ = math.cos(yd), math.sin(yd)
            fxh, fyh = cy_ * fx + sy_ * fy, -sy_ * fx + cy_ * fy  # in the heading frame
            norm = math.sqrt(fxh * fxh + fyh * fyh + fz * fz)
            roll_d = _clip(math.asin(_clip(-fyh / norm, -1.0, 1.0)), -max_tilt, max_tilt)
            pitch_d = _clip(math.atan2(fxh, fz), -max_tilt, max_tilt)
        else:
            # Firmware attitude setpoints: legacy pitch (nose up positive) is minus the ZYX pitch.
            roll_d = math.radians(sp.roll) if sp.mode_roll == MODE_ABS else roll
            pitch_d = -math.radians(sp.pitch) if sp.mode_pitch == MODE_ABS else pitch
        b3z = 1.0 - 2.0 * (qx * qx + qy * qy)
        if z_on:
            thrust_n = self.mass * (self.g + az) / max(b3z, 0.5)
        else:
            thrust_n = self.thrust_to_newton(sp.thrust)
        thrust_n = _clip(thrust_n, 0.0, 4.0 * self.tmax)

        # -- attitude -> body rates -> torques -------------------------------------------------
        dw, dx, dy, dz = euler_to_quat(roll_d, pitch_d, yd)
        # error quaternion conj(q) * q_desired, in the body frame
        ew = qw * dw + qx * dx + qy * dy + qz * dz
        ex = qw * dx - qx * dw - qy * dz + qz * dy
        ey = qw * dy + qx * dz - qy * dw - qz * dx
        ez = qw * dz - qx * dy + qy * dx - qz * dw
        s = 2.0 if ew >= 0.0 else -2.0
        ka, kr = self.att_gain, self.rate_gain
        wxd, wyd, wzd = ka[0] * s * ex, ka[1] * s * ey, ka[2] * s * ez
        if sp.mode_roll == MODE_VELOCITY and not xy_on:
            wxd = math.radians(sp.roll_rate)
        if sp.mode_pitch == MODE_VELOCITY and not xy_on:
            wyd = -math.radians(sp.pitch_rate)  # legacy pitch rate sign
        ixx, iyy, izz = self.inertia
        tx = ixx * kr[0] * (wxd - wx) + (izz - iyy) * wy * wz
        ty = iyy * kr[1] * (wyd - wy) + (ixx - izz) * wz * wx
        tz = izz * kr[2] * (wzd - wz) + (iyy - ixx) * wx * wy

        forces = self._mix(thrust_n, tx, ty, tz)
        u = self._lead([float(motor_for_fraction(f / self.tmax, *self.shape)) for f in forces])
        self.last = {"roll": math.degrees(roll_d), "pitch": -math.degrees(pitch_d),
                     "yaw": self.yaw_desired, "thrust": self.newton_to_thrust(thrust_n)}
        return u

    def _mix(self, t, tx, ty, tz) -> list[float]:
        w = (t, tx, ty, tz)
        f = [sum(r[j] * w[j] for j in range(4)) for r in self.unmix]
        if min(f) < 0.0 or max(f) > self.tmax:
            # Saturated: give up yaw first (it has the least authority), then clip.
            w = (t, tx, ty, 0.0)
            f = [sum(r[j] * w[j] for j in range(4)) for r in self.unmix]
        return [_clip(v, 0.0, self.tmax) for v in f]

    def _lead(self, target: list[float]) -> list[float]:
        lo = self.motor_min
        u = [_clip(m + self.lead[t < m] * (t - m), lo, 1.0) for m, t in zip(self.motor_model, target)]
        self._advance_model(u)
        return u

    def _advance_model(self, u):
        self.motor_model = [m + (c - m) * self.decay[c < m] for m, c in zip(self.motor_model, u)]

    def forces_to_motors(self, forces) -> list[float]:
        """Normalized per-rotor forces (0..1 of the maximum) -> rotor speed commands, for a
        controller that drives the motors directly (the firmware's controlModeForce)."""
        u = [float(motor_for_fraction(_clip(float(f), 0.0, 1.0), *self.shape)) for f in forces]
        self._advance_model(u)
        return u

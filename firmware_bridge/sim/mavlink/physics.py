"""One simulated quadrotor for the MAVLink stand-ins: edgectl's Numba dynamics plus a ground,
an IMU model and a battery.

The dynamics (``edgectl.plant.quadrotor.step``) know no ground; a vehicle that starts on
the ground and must arm, idle, take off and land needs one. Below z = 0 the landing gear is a critically
damped spring (``GROUND_HZ``): it carries the weight a few millimetres down, stops a touchdown in tens of
milliseconds without a bounce, and holds the vehicle level (yaw kept) with its horizontal speed damped
(``GROUND_FRICTION_S``). Why not a hard floor: stopping a 0.7 m/s descent within one 4 ms physics step put a
17 g spike on the accelerometer; real PX4 SITL (v1.17.0-alpha1) landing on that floor lost its height
estimate (it read 2.9 m below the ground and 1.75 m/s down while the vehicle bounced on the floor) and never
detected the landing. On the gear it lands and disarms (docs/autopilot_sitl.md).
Frames are edgectl's: world ENU z up, body FLU.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgectl.plant import quadrotor as qd

from firmware_bridge.mavlink.frames import quat_to_rotmat

GRAVITY_VECTOR_UP = np.array([0.0, 0.0, 1.0])
# Landing gear: natural frequency of the critically damped contact spring. 6 Hz sinks g / (2 pi 6)^2 = 6.9 mm
# under the weight (any mass: the spring scales with it) and peaks at 2 * 2 pi 6 * v = 53 m/s^2 (5.4 g) for a
# 0.7 m/s touchdown (PX4's MPC_LAND_SPEED), inside a flight IMU's 16 g range; stable to steps of 20 ms.
GROUND_HZ = 6.0
GROUND_FRICTION_S = 0.05  # s, time constant of the horizontal speed while on the gear


def platform_params(platform: str = "crazyflie_2_1", dt: float | None = None) -> np.ndarray:
    """Params array of a platform file (hardware/<name>.toml or a path), optionally with another dt."""
    from edgectl.platforms import load_platform

    p = qd.params_from_platform(load_platform(platform))
    if dt is not None:
        p[qd.PARAM_INDEX["dt"]] = dt
    return p


def generic_quad_params(dt: float = 0.004) -> np.ndarray:
    """A 450-size quad like PX4's Gazebo Classic ``iris`` (1.52 kg, 5.84 N per rotor at full
    command, thrust ~ command^2), in the Quad-X motor order PX4 and ArduPilot share: M1 front-right
    CCW, M2 back-left CCW, M3 front-left CW, M4 back-right CW. Stock PX4/ArduPilot gains fly
    something of this size; they do not fly a 27 g Crazyflie."""
    a = 0.18  # m, rotor offset along x and y (0.25 m arms at 45 deg)
    return qd.params_to_array({
        "mass": 1.52, "inertia": [0.029125, 0.029125, 0.055225], "gravity": 9.81,
        "rotor_x": [a, -a, a, -a], "rotor_y": [-a, a, a, -a], "spin": [-1, -1, 1, 1],
        "thrust_max": 5.84, "thrust_shape": [0.0, 0.0], "torque_coefficient": 0.06, "motor_tau": 0.02,
        "motor_tau_down": 0.02, "drag": 0.0, "motor_min": 0.0,
        "dt": dt, "force": np.zeros(3), "torque": np.zeros(3),
    })


def quad_x_layout(params: np.ndarray) -> np.ndarray:
    """``params`` with its rotors moved to the PX4/ArduPilot Quad-X numbering and spin directions
    (see ``generic_quad_params``); arm lengths, mass and motor constants are kept. Needed because
    the autopilot's mixer assumes its own numbering: the Crazyflie's M1 (front-right) spins CCW like
    Quad-X motor 1, but the Crazyflie's M2 is back-right where Quad-X motor 2 is back-left,
    and a swapped yaw torque or motor diverges in seconds."""
    p = np.array(params, dtype=np.float64)
    ix, iy, isp = qd.PARAM_INDEX["rotor_x_0"], qd.PARAM_INDEX["rotor_y_0"], qd.PARAM_INDEX["spin_0"]
    ax, ay = float(np.mean(np.abs(p[ix:ix + 4]))), float(np.mean(np.abs(p[iy:iy + 4])))
    p[ix:ix + 4] = [ax, -ax, ax, -ax]
    p[iy:iy + 4] = [-ay, ay, ay, -ay]
    p[isp:isp + 4] = [-1, -1, 1, 1]
    return p


def _on_gear(z0: float, v0: float, acc: float, dt: float) -> tuple[float, float]:
    """(height, vertical speed) after ``dt`` s on the gear from (z0, v0): z'' = acc - w^2 z - 2 w z', w = 2 pi
    GROUND_HZ, solved exactly for a constant ``acc`` (an explicit step of this stiff a spring rang at 100 Hz)."""
    w = 2.0 * math.pi * GROUND_HZ
    z_eq = acc / (w * w)
    y0 = z0 - z_eq
    c = v0 + w * y0
    e = math.exp(-w * dt)
    return z_eq + (y0 + c * dt) * e, (v0 - w * c * dt) * e


@dataclass
class Battery:
    """A linear pack: voltage from state of charge, current from mean motor command."""
    cells: int = 1
    capacity_mah: float = 250.0
    idle_current_a: float = 0.2
    full_current_a: float = 8.0  # all motors at full command
    used_mah: float = 0.0
    current_a: float = 0.0

    def update(self, motor_command: np.ndarray, dt: float) -> None:
        self.current_a = self.idle_current_a + self.full_current_a * float(np.mean(motor_command))
        self.used_mah += self.current_a * dt / 3.6

    @property
    def remaining(self) -> float:
        return max(0.0, 1.0 - self.used_mah / self.capacity_mah)

    @property
    def voltage(self) -> float:
        return self.cells * (3.5 + 0.7 * self.remaining)  # LiPo 4.2 V full, 3.5 V empty


class QuadPhysics:
    """State (17,) in ``qd.STATE_NAMES`` order, stepped by ``step(action)`` with action in [-1, 1]
    per motor (the params' motor order)."""

    def __init__(self, params: np.ndarray, battery: Battery | None = None):
        self.params = np.array(params, dtype=np.float64)
        if self.params.shape != (qd.PARAM_SIZE,):
            raise ValueError(f"params must have shape ({qd.PARAM_SIZE},), got {self.params.shape}")
        self.battery = battery or Battery()
        self.reset()

    def reset(self) -> None:
        self.state = np.zeros(qd.STATE_SIZE)
        self.state[3] = 1.0
        self.state[qd.MOTOR] = self.params[qd.PARAM_INDEX["motor_min"]]
        self.state[2] = -self.gravity / (2.0 * math.pi * GROUND_HZ) ** 2  # resting on the gear, its weight on it
        self.t = 0.0
        self.accel = np.zeros(3)  # world acceleration over the last step, m/s^2 (ENU)
        self.battery.used_mah = 0.0

    @property
    def dt(self) -> float:
        return float(self.params[qd.PARAM_INDEX["dt"]])

    @dt.setter
    def dt(self, value: float) -> None:
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"dt must be positive and finite, got {value}")
        self.params[qd.PARAM_INDEX["dt"]] = value

    @property
    def mass(self) -> float:
        return float(self.params[qd.PARAM_INDEX["mass"]])

    @property
    def gravity(self) -> float:
        return float(self.params[qd.PARAM_INDEX["gravity"]])

    pos = property(lambda self: self.state[qd.POS])
    quat = property(lambda self: self.state[qd.QUAT])
    vel = property(lambda self: self.state[qd.VEL])
    omega = property(lambda self: self.state[qd.OMEGA])
    motors = property(lambda self: self.state[qd.MOTOR])

    @property
    def on_ground(self) -> bool:
        """Resting on the gear (compressed, not moving vertically faster than 5 cm/s)."""
        return self.state[2] <= 1e-6 and abs(self.state[9]) <= 0.05

    def step(self, action) -> None:
        a = np.clip(np.nan_to_num(np.asarray(action, dtype=np.float64), nan=-1.0), -1.0, 1.0)
        v0 = self.state[qd.VEL].copy()
        z0, vz0 = float(self.state[2]), float(self.state[9])
        new = qd.step(self.state, a, self.params)
        if new[2] < 0.0:  # on the gear: level and not turning (yaw kept), horizontal speed damped
            dt = self.dt
            acc = (new[9] - vz0) / dt  # vertical thrust and gravity over this step, without the ground
            t_in = dt if z0 <= 0.0 else dt - min(dt, z0 / max(-vz0, 1e-9))  # the part of the step on the gear
            new[2], new[9] = _on_gear(min(z0, 0.0), vz0 + acc * (dt - t_in), acc, t_in)
            new[7:9] *= math.exp(-dt / GROUND_FRICTION_S)
            new[10:13] = 0.0
            w, x, y, z = new[3:7]
            yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
            new[3:7] = (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))
        if not np.all(np.isfinite(new)):
            raise FloatingPointError(f"simulation diverged at t={self.t:.3f} s: state {new.tolist()}")
        self.accel = (new[qd.VEL] - v0) / self.dt
        self.state = new
        self.t += self.dt
        self.battery.update((a + 1.0) * 0.5, self.dt)

    def specific_force_body(self) -> np.ndarray:
        """What an accelerometer reads, FLU body, m/s^2: R^T (a - g), +g up when at rest."""
        r = quat_to_rotmat(self.quat)
        return r.T @ (self.accel + self.gravity * GRAVITY_VECTOR_UP)

    def hover_thrust_fraction(self) -> float:
        """Collective thrust / maximum collective thrust that carries the weight."""
        tmax = self.params[qd.PARAM_INDEX["thrust_max"]]
        return self.mass * self.gravity / (4.0 * tmax)

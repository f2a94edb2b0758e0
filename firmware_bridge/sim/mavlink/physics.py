"""One simulated quadrotor for the MAVLink stand-ins: edgectl's Numba dynamics plus a ground,
an IMU model and a battery.

The dynamics (``edgectl.plant.quadrotor.step``) know no ground; a vehicle that starts on
the ground and must arm, idle and take off needs one, so after every step a vehicle below z = 0 is
put back on it, at rest and level (yaw kept). Frames are edgectl's: world ENU z up, body FLU.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgectl.plant import quadrotor as qd

from firmware_bridge.mavlink.frames import quat_to_rotmat

GRAVITY_VECTOR_UP = np.array([0.0, 0.0, 1.0])


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
        return self.state[2] <= 1e-6 and self.state[9] <= 1e-6

    def step(self, action) -> None:
        a = np.clip(np.nan_to_num(np.asarray(action, dtype=np.float64), nan=-1.0), -1.0, 1.0)
        v0 = self.state[qd.VEL].copy()
        new = qd.step(self.state, a, self.params)
        if new[2] < 0.0:  # ground: stop there, at rest and level, yaw kept
            new[2] = 0.0
            new[7:10] = 0.0
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

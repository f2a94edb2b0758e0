"""Attitude and rate control with mixing from the platform geometry (the simulated vehicle's
"autopilot"). Everything in edgectl's frames: ENU world, FLU body, quaternions (w, x, y, z).

Cascade: attitude error -> body-rate command (P) -> angular acceleration (P on rate error) ->
torque (I alpha + omega x I omega) -> per-rotor thrust through the inverse allocation matrix ->
motor speed command (thrust = thrust_max * speed^2) -> action in [-1, 1].

Gains scale with the motor time constant: the motors are the slowest part of the loop (0.15 s on
the Crazyflie 2.1 model), and a rate loop much faster than 1/tau rings.
"""
from __future__ import annotations

import numpy as np

from edgectl.platforms import motor_for_fraction

from edgectl.plant import quadrotor as qd

from firmware_bridge.mavlink.frames import quat_conj, quat_mul


def allocation_matrix(params: np.ndarray) -> np.ndarray:
    """(4, 4): per-rotor thrust (N) -> [collective thrust (N), torque x, y, z (N m)], FLU body,
    the same torque model as the dynamics (tx = sum y_i f_i, ty = -sum x_i f_i, tz = c sum s_i f_i)."""
    i = qd.PARAM_INDEX
    rx = params[i["rotor_x_0"]:i["rotor_x_0"] + 4]
    ry = params[i["rotor_y_0"]:i["rotor_y_0"] + 4]
    spin = params[i["spin_0"]:i["spin_0"] + 4]
    return np.stack([np.ones(4), ry, -rx, params[i["torque_coefficient"]] * spin])


class AttitudeController:
    def __init__(self, params: np.ndarray, *, rate_gain: float | None = None,
                 attitude_gain: tuple[float, float, float] | None = None, max_rate: float = 6.0):
        i = qd.PARAM_INDEX
        self.params = np.asarray(params, dtype=np.float64)
        tau = float(self.params[i["motor_tau"]])
        self.rate_gain = rate_gain if rate_gain is not None else min(20.0, 0.8 / tau)
        k = self.rate_gain / 2.5
        self.attitude_gain = np.asarray(attitude_gain if attitude_gain is not None else (k, k, 0.5 * k))
        self.max_rate = max_rate
        self.inertia = self.params[i["inertia_x"]:i["inertia_x"] + 3]
        self.thrust_max = float(self.params[i["thrust_max"]])
        self.motor_min = float(self.params[i["motor_min"]])
        self.shape = (float(self.params[i["thrust_shape_0"]]), float(self.params[i["thrust_shape_1"]]))
        self.mix = np.linalg.pinv(allocation_matrix(self.params))  # (4 rotors, 4 wrench)

    def rates_for_attitude(self, quat: np.ndarray, quat_des: np.ndarray) -> np.ndarray:
        """Body-rate command (FLU, rad/s) that turns ``quat`` towards ``quat_des``."""
        qe = quat_mul(quat_conj(quat), quat_des)  # error in the body frame
        if qe[0] < 0:
            qe = -qe  # the short way round
        return np.clip(2.0 * self.attitude_gain * qe[1:], -self.max_rate, self.max_rate)

    def motor_actions(self, omega: np.ndarray, rates_des: np.ndarray, thrust: float) -> np.ndarray:
        """Actions in [-1, 1] for a body-rate command and a collective thrust in [0, 1] of maximum."""
        alpha = self.rate_gain * (np.asarray(rates_des) - omega)
        torque = self.inertia * alpha + np.cross(omega, self.inertia * omega)
        collective = float(np.clip(thrust, 0.0, 1.0)) * 4.0 * self.thrust_max
        f_thrust = self.mix[:, 0] * collective
        f_torque = self.mix[:, 1:] @ torque
        # Keep the collective and scale the torque down until every rotor is within [0, max].
        scale = 1.0
        for ft, fq in zip(f_thrust, f_torque):
            if fq > 1e-12:
                scale = min(scale, (self.thrust_max - ft) / fq)
            elif fq < -1e-12:
                scale = min(scale, -ft / fq)
        f = np.clip(f_thrust + max(scale, 0.0) * f_torque, 0.0, self.thrust_max)
        speed = motor_for_fraction(f / self.thrust_max, *self.shape)
        return 2.0 * (speed - self.motor_min) / (1.0 - self.motor_min) - 1.0

    def attitude(self, quat, omega, quat_des, thrust: float) -> np.ndarray:
        return self.motor_actions(omega, self.rates_for_attitude(quat, quat_des), thrust)


def level_with_yaw(quat: np.ndarray) -> np.ndarray:
    """Level attitude with the same heading as ``quat`` (ENU/FLU)."""
    w, x, y, z = quat
    yaw = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])

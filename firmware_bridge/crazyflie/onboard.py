"""The export issue's on-board policy app, as the simulated Crazyflie runs it.

Mirrors export/crazyflie/edgectl_controller.c.in (the out-of-tree controller, selected with
stabilizer.controller = 6): it drives the motors with normalized forces while the supervisor lets
the motors run and the setpoint asks for thrust (a z position/velocity setpoint, or thrust > 0);
its reference is the absolute position setpoint when x, y and z are all absolute, else the position
where it engaged; a non-finite input or output stops the motors and latches edgectl.fault
(1: observation, 2: action) until the setpoint asks for zero thrust. Same log group as the app.

The policy is a callable ``policy(vehicle) -> 4 forces in [0, 1]`` with vehicle a dict of the
app's edgectl_vehicle_t fields, in firmware units: position, velocity (m, m/s, world),
quaternion_xyzw, gyro_deg_s, ref_position, ref_velocity, ref_acceleration.
"""
from __future__ import annotations

import numpy as np

from .setpoints import MODE_ABS, MODE_DISABLE, Setpoint
from .toc import LOG_FLOAT, LOG_UINT8, LOG_UINT32

LOG_SPEC = [("edgectl", LOG_UINT8, "engaged fault"), ("edgectl", LOG_UINT32, "steps"),
            ("edgectl", LOG_FLOAT, "scale f1 f2 f3 f4")]


def thrust_requested(sp: Setpoint) -> bool:
    return sp.mode_z != MODE_DISABLE or sp.thrust > 0.0


class OnboardApp:
    def __init__(self, policy, every: int):
        self.policy, self.every = policy, every
        self.engaged = False
        self.fault = 0
        self.steps = 0
        self.forces = np.zeros(4)
        self.ref_position = np.zeros(3)
        self.ref_velocity = np.zeros(3)
        self.ref_acceleration = np.zeros(3)

    def disengage(self):
        self.engaged = False
        self.fault = 0
        self.forces[:] = 0.0

    def step(self, sp: Setpoint, truth: dict, tick: int) -> np.ndarray:
        if not thrust_requested(sp):
            self.disengage()
        elif self.fault == 0 and tick % self.every == 0:
            self._policy_step(sp, truth)
        return self.forces

    def _policy_step(self, sp: Setpoint, truth: dict):
        if not self.engaged:
            self.ref_position = truth["position"].copy()
            self.ref_velocity[:] = 0.0
            self.ref_acceleration[:] = 0.0
            self.engaged = True
        if sp.mode_x == sp.mode_y == sp.mode_z == MODE_ABS:
            self.ref_position = np.array([sp.x, sp.y, sp.z])
        else:
            self.ref_velocity[:] = 0.0
            self.ref_acceleration[:] = 0.0
        vehicle = dict(truth, ref_position=self.ref_position.copy(), ref_velocity=self.ref_velocity.copy(),
                       ref_acceleration=self.ref_acceleration.copy())
        if not all(np.all(np.isfinite(v)) for v in vehicle.values()):
            self.fault, self.forces[:] = 1, 0.0
            return
        try:
            forces = np.asarray(self.policy(vehicle), dtype=float).reshape(4)
        except Exception:
            forces = np.full(4, np.nan)  # a policy that fails is a policy that gave no action
        if not np.all(np.isfinite(forces)):
            self.fault, self.forces[:] = 2, 0.0
            return
        self.forces = np.clip(forces, 0.0, 1.0)
        self.steps += 1

    def log_values(self) -> dict:
        v = {"edgectl.engaged": int(self.engaged), "edgectl.fault": self.fault, "edgectl.steps": self.steps,
             "edgectl.scale": 1.0}
        for i in range(4):
            v[f"edgectl.f{i + 1}"] = float(self.forces[i])
        return v

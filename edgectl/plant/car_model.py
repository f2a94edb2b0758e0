"""The car dynamics a runtime or a simulated car steps: the Numba twin of the training dynamics
(``edgectl.plant.car``) where numba imports, else a kinematic bicycle stand-in with the same interface and
state layout. numpy only at import.
"""
from __future__ import annotations

import importlib
import logging
import math

import numpy as np

log = logging.getLogger(__name__)


class Bicycle:
    """Kinematic bicycle stand-in, the same interface and state layout as edgectl.plant.car."""
    STATE_NAMES = ("x", "y", "yaw", "vx", "vy", "yaw_rate", "steer", "throttle")
    PARAM_NAMES = ("wheelbase", "max_steer", "steer_tau", "max_accel", "max_brake", "max_speed", "throttle_tau", "dt")

    @staticmethod
    def params_from_platform(platform) -> np.ndarray:
        g, m = platform.get, platform.get("body.mass")
        return np.array([g("body.wheelbase"), g("steering.max_angle"), g("steering.time_constant"),
                         g("drive.max_force") / m, g("drive.max_brake_force") / m, g("drive.max_speed"),
                         g("drive.time_constant"), 1.0 / g("control.sim_rate")])

    @staticmethod
    def initial_state(x, y, yaw, speed=0.0):
        return np.array([x, y, yaw, speed, 0.0, 0.0, 0.0, 0.0])

    @staticmethod
    def step(s, a, p):
        wb, smax, stau, amax, abrk, vmax, ttau, dt = p
        steer = s[6] + (np.clip(a[0], -1, 1) * smax - s[6]) * (1 - math.exp(-dt / stau))
        thr = s[7] + (np.clip(a[1], -1, 1) - s[7]) * (1 - math.exp(-dt / ttau))
        v = s[3]
        acc = max(thr, 0.0) * amax * (1 - v / vmax) - max(-thr, 0.0) * abrk * min(max(v / 0.2, 0.0), 1.0)
        v = max(v + acc * dt, 0.0)
        r = v * math.tan(steer) / wb
        yaw = s[2] + r * dt
        return np.array([s[0] + v * math.cos(yaw) * dt, s[1] + v * math.sin(yaw) * dt, yaw, v, 0.0, r, steer, thr])


def load_dynamics(platform: str = "rc_car_1_10"):
    """(module-like dynamics, params, description): theirs when importable, else the stand-in."""
    from edgectl.platforms import load_platform

    plat = load_platform(platform)
    try:
        dyn = importlib.import_module("edgectl.plant.car")
        return dyn, dyn.params_from_platform(plat), f"edgectl.plant.car on {plat.name}"
    except ImportError as e:
        log.warning("car model: edgectl.plant.car unavailable (%s); using the kinematic bicycle stand-in", e)
        return Bicycle, Bicycle.params_from_platform(plat), f"kinematic bicycle stand-in on {plat.name}"

"""The quadrotor signals of edgectl/safety/signals.py in C, so onboard monitors read what the host's read.

    void edgectl_signals(const float pos[3], const float quat_wxyz[4], const float vel[3],
                         const float omega[3], const float ref[3], float out[EDGECTL_N_SIGNALS]);

writes QUADROTOR_SIGNALS in order (x, y, z, vx, vy, vz, roll, pitch, yaw, wx, wy, wz, ex, ey, ez, speed, tilt),
with the same formulas (ZYX Euler angles, half-angle tilt). C99 with <math.h>.
"""
from __future__ import annotations

from pathlib import Path

from edgectl.csource import render

from .signals import QUADROTOR_SIGNALS

TEMPLATES = Path(__file__).resolve().parent / "templates"


def generate() -> dict[str, str]:
    """The C is edgectl/safety/templates/edgectl_signals.{h,c}.in; only the signal count and order are filled in."""
    return {"edgectl_signals.h": render(TEMPLATES / "edgectl_signals.h.in", N_SIGNALS=len(QUADROTOR_SIGNALS),
                                        ORDER=", ".join(QUADROTOR_SIGNALS)),
            "edgectl_signals.c": render(TEMPLATES / "edgectl_signals.c.in")}

"""The reference a trajectory bundle tracks, as the host loop flies it: numpy, from the bundle's contract.

A contract with a ``reference`` entry (written by the training task that made the bundle, e.g. figure8) names a
moving reference about the run's start reference; without one the reference is the fixed point the user gives
(``edgectl run --ref``). The formula is the training task's (train_fast/tasks/quadrotor_tasks.py ``reference``),
and tests/test_runtime_reference.py holds the two equal, so a figure-eight bundle on the host is fed the same
position error, velocity error and feed-forward acceleration it was trained on (before, the host fed it a fixed
point and zero acceleration, and it hovered: issue 16).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

KINDS = ("figure8",)


def trajectory(contract: dict) -> Callable[[float], tuple[np.ndarray, np.ndarray, np.ndarray]] | None:
    """t [s since the first control period] -> (position offset [m], velocity [m/s], acceleration [m/s^2]),
    world frame; None for a fixed reference. A reference kind this module does not know is refused, named."""
    ref = contract.get("reference")
    if ref is None:
        return None
    kind = ref.get("kind")
    if kind not in KINDS:
        raise ValueError(f"contract.reference.kind {kind!r}: the host flies {', '.join(KINDS)} references only")
    amp, w = float(ref["amplitude_m"]), float(ref["omega_rad_s"])
    if not (math.isfinite(amp) and math.isfinite(w) and amp > 0 and w > 0):
        raise ValueError(f"contract.reference: amplitude_m {amp!r} and omega_rad_s {w!r} must be finite and > 0")

    def figure8(t: float):
        s1, c1, s2, c2 = math.sin(w * t), math.cos(w * t), math.sin(2 * w * t), math.cos(2 * w * t)
        p = np.array([amp * s1, 0.5 * amp * s2, 0.0])
        v = np.array([amp * w * c1, amp * w * c2, 0.0])
        a = np.array([-amp * w * w * s1, -2.0 * amp * w * w * s2, 0.0])
        return p, v, a
    return figure8


__all__ = ["KINDS", "trajectory"]

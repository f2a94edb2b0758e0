"""Observations from closed-loop simulator rollouts: the data int8 calibration and parity checks use.

Random vectors would miss the correlations a policy actually sees (a rotation matrix is orthonormal,
previous actions sit near hover), so both come from the simulator the bundle was trained in.
"""
from __future__ import annotations

import numpy as np

from .errors import TargetUnavailable


def rollout_observations(bundle, n: int = 10_000, seed: int = 0) -> np.ndarray:
    """(n, obs_size) float32 raw observations met while the bundle's float policy flies."""
    try:
        if bundle.task_name == "race":
            from train_fast.evaluate_car import collect_observations
        elif bundle.task_name == "avoid":
            from train_fast.evaluate_avoid import collect_observations
        else:
            from train_fast.evaluate import collect_observations
    except ImportError as e:
        raise TargetUnavailable(f"simulator rollouts need the training extras ({e.name} is missing): "
                                'pip install "edgectl[train]"') from None
    return collect_observations(bundle, n, seed)

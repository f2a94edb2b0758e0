"""Observations from closed-loop simulator rollouts: the data int8 calibration and parity checks use.

Random vectors would miss the correlations a policy actually sees (a rotation matrix is orthonormal,
previous actions sit near hover), so both come from the simulator the bundle was trained in.
"""
from __future__ import annotations

import numpy as np

from edgectl.tasks import task as registered

from .errors import ExportError, TargetUnavailable

SOURCES = ("rollouts", "random-states")


def rollout_observations(bundle, n: int = 10_000, seed: int = 0, source: str = "rollouts") -> np.ndarray:
    """(n, obs_size) float32 raw observations met while the bundle's float policy flies; source="random-states":
    observations of states drawn from the task's start distribution, the policy not flown (for a policy that
    crashes too often to be observed in flight)."""
    if source not in SOURCES:
        raise ExportError(f"--calibration {source!r}: expected one of {', '.join(SOURCES)}")
    try:
        collect_observations = registered(bundle.task_name).hook("observations")
    except ImportError as e:
        raise TargetUnavailable(f"simulator rollouts need the training extras ({e.name} is missing): "
                                'pip install "edgectl[train]"') from None
    from train_fast.evaluate import TooFewObservations
    try:
        return collect_observations(bundle, n, seed, source)
    except TooFewObservations as e:
        raise ExportError(
            f"{bundle.path.name}: the policy crashes too often to collect {e.wanted:,} in-flight observations: "
            f"{e.survived} of {e.episodes} episodes flew to the end ({e.got:,} observations); train longer (edgectl "
            f"train --seconds), or export with --calibration random-states (start-distribution states, the policy "
            f"not flown)") from None

"""The host plant: Numba twins of the training dynamics (train_fast/sims/), for the robot side and the
simulated vehicles. Ground floor: numpy and numba only, no JAX.

- ``quadrotor``: the quadrotor (``step``, ``step_into``, ``step_batch``, ``params_from_platform``, ...).
- ``car``: the RC car (the race task's dynamics).
- ``car_model``: the car dynamics a runtime or simulated car steps (``car`` where numba imports, else a
  kinematic bicycle stand-in).

The quadrotor's names are also reachable here (``edgectl.plant.step``); they load on first use, so
importing the package imports no numba.
"""
from __future__ import annotations

import importlib

_QUADROTOR = ("PARAM_FIELDS", "PARAM_NAMES", "PARAM_SIZE", "STATE_NAMES", "STATE_SIZE", "hover_action", "hover_motor",
              "hover_state", "params_from_platform", "params_to_array", "rollout_batch", "state_to_array", "step",
              "step_batch", "step_into")
__all__ = list(_QUADROTOR)


def __getattr__(name: str):
    if name in _QUADROTOR:
        return getattr(importlib.import_module(".quadrotor", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""edgectl's safety layer: STL specs, their robustness, online monitors (Python and C).

Runtime code here needs only the standard library and numpy; JAX is imported lazily by
``Formula.robustness_jax``.
"""
from edgectl.safety.monitor import OnlineMonitor
from edgectl.safety.signals import QUADROTOR_SIGNALS, signals_from_state
from edgectl.safety.stl import Formula, SpecError, parse

__all__ = ["Formula", "OnlineMonitor", "QUADROTOR_SIGNALS", "SpecError", "parse", "signals_from_state"]

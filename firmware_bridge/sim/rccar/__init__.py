"""The simulated car: ``SimCar`` (sim_car.py, a car MCU on a pty running ``car_core`` in Python or the real
firmware's C core compiled for the host, ``ccore``) and ``SimVesc`` (sim_vesc.py, a VESC speed controller).

Names load on first use.
"""
_LAZY = {"SimCar": "sim_car", "SimVesc": "sim_vesc", "CarCore": "car_core", "CCore": "ccore"}
__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

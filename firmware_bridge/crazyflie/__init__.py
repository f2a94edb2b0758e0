"""Crazyflie: a simulated vehicle that stock cflib talks to, a cflib bridge, over-the-air flashing.

    CrazyflieSim (sim_vehicle.py)            the vehicle core; .serve_udp() / .serve_inprocess()
    CrazyflieLink, VehicleState (bridge.py)  cflib link for the runtime
    flash.flash, FlashReport, FlashError (flash.py; ``flash`` is also the module's name, so import
                                         the function from firmware_bridge.crazyflie.flash)

Names load on first use, so importing the package pulls in neither cflib nor numba.
"""
from __future__ import annotations

import importlib

_EXPORTS = {"CrazyflieSim": "sim_vehicle", "CrazyflieLink": "bridge", "VehicleState": "bridge",
            "LinkStatistics": "bridge", "LinkError": "bridge", "ConnectTimeout": "bridge",
            "FlashReport": "flash", "FlashError": "flash"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)

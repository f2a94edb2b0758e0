"""Crazyflie link: a cflib bridge for the runtime, over-the-air flashing, the on-board app's constants.

    CrazyflieLink, VehicleState (bridge.py)  cflib link for the runtime
    flash.flash, FlashReport, FlashError (flash.py; ``flash`` is also the module's name, so import
                                         the function from firmware_bridge.crazyflie.flash)
    crtp.py, bootloader.py                  the protocols' numbers (CRTP, the STM32 bootloader)
    onboard.py                              the edgectl on-board app's constants
    transports.py                           cflib's drivers and the in-process ``sim://`` driver

The simulated Crazyflie (CrazyflieSim) lives in firmware_bridge/sim/crazyflie/: this package never imports it.
Names load on first use, so importing the package pulls in neither cflib nor numba.
"""
from __future__ import annotations

import importlib

_EXPORTS = {"CrazyflieLink": "bridge", "VehicleState": "bridge",
            "LinkStatistics": "bridge", "LinkError": "bridge", "ConnectTimeout": "bridge",
            "FlashReport": "flash", "FlashError": "flash"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)

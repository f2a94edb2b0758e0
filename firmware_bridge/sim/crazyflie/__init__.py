"""The simulated Crazyflie: ``CrazyflieSim`` (sim_vehicle.py; ``.serve_udp()`` / ``.serve_inprocess()``), its
STM32 bootloader (bootloader.py), firmware services (ports, log_service, param_service, setpoints, supervisor,
control, firmware_vars, toc) and the edgectl on-board app compiled for this host (host_app.py, host_firmware/).

Names load on first use, so importing the package pulls in neither cflib nor numba.
"""
from __future__ import annotations

import importlib

_EXPORTS = {"CrazyflieSim": "sim_vehicle", "AppImage": "host_app", "NoCompiler": "host_app",
            "Stm32Bootloader": "bootloader", "UdpServer": "udp"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)

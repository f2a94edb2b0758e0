"""RC car link: our framed serial protocol (PROTOCOL.md) to a car MCU running firmware/car_link.c,
a simulated car on a pty, and a direct VESC link. numpy + pyserial + cobs only (no JAX).

- ``RcCarLink``: host side of our protocol (connect, send_command, state, stop, stats).
- ``VescLink``: a VESC speed controller's own UART protocol.
- ``SimCar`` / ``SimVesc``: simulated car MCU / VESC on a pty (``open_pty()`` -> path for pyserial).
- ``protocol``: frames and messages; ``car_core``: the car-side logic in Python; ``ccore``: the C core
  compiled for the host (ctypes).

Names are imported on first use, so ``protocol`` works without pyserial and the simulators' car
dynamics (numba) load only when asked for.
"""
_LAZY = {
    "RcCarLink": "bridge", "RcCarLinkError": "bridge", "VescLink": "bridge", "CarState": "bridge",
    "LinkStats": "bridge", "SimCar": "sim_car", "SimVesc": "sim_vesc", "CarCore": "car_core",
    "FrameDecoder": "protocol", "FrameError": "protocol", "SeqTracker": "protocol",
}
__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""RC car link: our framed serial protocol (PROTOCOL.md) to a car MCU running firmware/car_link.c,
and a direct VESC link. numpy + pyserial + cobs only (no JAX).

- ``RcCarLink``: host side of our protocol (connect, send_command, state, stop, stats).
- ``VescLink``: a VESC speed controller's own UART protocol.
- ``protocol``: frames and messages; ``vesc``: the VESC's packets; ``firmware/``: the car MCU's C.

The simulated car MCU / VESC (``SimCar``, ``SimVesc``, ``car_core``, ``ccore``) live in firmware_bridge/sim/rccar/.
Names are imported on first use, so ``protocol`` works without pyserial.
"""
_LAZY = {
    "RcCarLink": "bridge", "RcCarLinkError": "bridge", "VescLink": "bridge", "CarState": "bridge",
    "LinkStats": "bridge",
    "FrameDecoder": "protocol", "FrameError": "protocol", "SeqTracker": "protocol",
}
__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The one place that imports pymavlink: MAVLink 2 is forced here, before ``mavutil`` loads.

``pymavlink.mavutil`` chooses its wire protocol when it is imported (and when ``set_dialect`` runs)
by looking for ``MAVLINK20`` in the environment; without it every message we send is MAVLink 1,
which has no signing and which PX4/ArduPilot only answer in kind. Everything in
``firmware_bridge.mavlink`` imports ``mavutil``/``mavlink`` from this module, never directly.
"""
from __future__ import annotations

import os

os.environ["MAVLINK20"] = "1"  # process-wide on purpose: mavutil re-reads it on set_dialect()

try:
    from pymavlink import mavutil  # noqa: E402
except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError("firmware_bridge.mavlink needs pymavlink>=2.4.50: pip install 'edgectl[bridge]'") from e

# Someone imported mavutil before us without MAVLINK20: reload the dialect as MAVLink 2.
if mavutil.mavlink.WIRE_PROTOCOL_VERSION != "2.0":
    mavutil.set_dialect(mavutil.current_dialect)

mavlink = mavutil.mavlink
assert mavlink.WIRE_PROTOCOL_VERSION == "2.0", "pymavlink did not switch to MAVLink 2"

__all__ = ["mavutil", "mavlink"]

"""MAVLink (PX4 / ArduPilot) for edgectl.

- ``bridge``: ``MavlinkLink`` offboard control and state (numpy + pymavlink only).
- ``frames``: NED/FRD <-> ENU/FLU conversions.
- ``sim_vehicle``: ``SimVehicle``, a PX4-like simulated vehicle on edgectl's Numba dynamics.
- ``sitl_server``: simulator side for real PX4 SITL (TCP 4560) and ArduPilot JSON SITL (UDP 9002).
- ``cli_hooks``: entry points for ``edgectl`` commands.

Importing this package forces pymavlink to MAVLink 2 (``_mav``). The simulators import Numba and
are not imported here, so a companion computer needs only numpy and pymavlink for the bridge.
"""
from .bridge import (CommandRejected, MavlinkError, MavlinkLink, MavlinkTimeout, VehicleState,
                     signing_key_from_text)

__all__ = ["MavlinkLink", "VehicleState", "MavlinkError", "MavlinkTimeout", "CommandRejected",
           "signing_key_from_text"]

"""MAVLink (PX4 / ArduPilot) for edgectl.

- ``bridge``: ``MavlinkLink`` offboard control and state (numpy + pymavlink only).
- ``frames``: NED/FRD <-> ENU/FLU conversions.
- ``cli_hooks``: entry points for ``edgectl`` commands.

The simulated vehicle (``SimVehicle``) and the SITL simulator side live in firmware_bridge/sim/mavlink/.
Importing this package forces pymavlink to MAVLink 2 (``_mav``). The simulators import Numba and
are not imported here, so a companion computer needs only numpy and pymavlink for the bridge.
"""
from .bridge import (CommandRejected, MavlinkError, MavlinkLink, MavlinkTimeout, VehicleState,
                     signing_key_from_text)

__all__ = ["MavlinkLink", "VehicleState", "MavlinkError", "MavlinkTimeout", "CommandRejected",
           "signing_key_from_text"]

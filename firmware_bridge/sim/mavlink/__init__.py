"""Simulated MAVLink vehicles on edgectl's Numba dynamics (edgectl.plant):

- ``sim_vehicle``: ``SimVehicle``, a PX4-like vehicle (offboard, actuator controls, the offboard-loss failsafe).
- ``sitl_server``: the simulator side of real PX4 SITL (TCP 4560) and ArduPilot JSON SITL (UDP 9002).
- ``physics`` / ``control``: the vehicle's physics and its attitude "autopilot".

Not imported by firmware_bridge.mavlink, so a companion computer needs only numpy and pymavlink for the link.
"""

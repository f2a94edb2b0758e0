"""Simulated vehicles: a room of their own, above the links (see ../shared/DESIGN.md's floors).

They speak the real protocols over loopback for the tests, the HIL suite and `edgectl sim-vehicle`, and run the
code that really ships where they can (the generated Crazyflie app, the car's C core, compiled for the host):

- ``crazyflie``: ``CrazyflieSim``, a Crazyflie that stock cflib talks to (UDP or the in-process ``sim://`` driver
  of firmware_bridge.crazyflie.transports), its bootloader, firmware services and the on-board app on the host.
- ``mavlink``: ``SimVehicle``, a PX4-like vehicle, and the simulator side of real PX4 / ArduPilot SITL.
- ``rccar``: ``SimCar`` / ``SimVesc``, a car MCU / VESC on a pty.

The vehicle links (firmware_bridge.crazyflie, .mavlink, .rccar) never import this package; it imports them (the
protocols' numbers) and the ground floor (edgectl.plant, edgectl.platforms). tests/test_layers.py holds both to it.
"""

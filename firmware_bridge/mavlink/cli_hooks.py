"""Entry points behind ``edgectl mavlink ...`` (the CLI wires them; they block until Ctrl-C)."""
from __future__ import annotations

import time
from typing import Callable


def _key(signing_key: str | bytes | None) -> bytes | None:
    if signing_key is None or isinstance(signing_key, bytes):
        return signing_key
    from .bridge import signing_key_from_text

    return signing_key_from_text(signing_key)


def sim_vehicle_main(uri: str = "udpin:127.0.0.1:14550", speed: float = 1.0,
                     signing_key: str | bytes | None = None, platform: str = "crazyflie_2_1",
                     offboard_timeout: float = 1.0, failsafe: str = "land",
                     echo: Callable[[str], None] = print, duration: float | None = None,
                     faults: dict | None = None, physics_hz: float | None = 500.0, identity: str = "edgectl",
                     parameters: dict | None = None) -> None:
    """Run a PX4-like simulated vehicle on ``uri``. Connect the bridge with the mirror URL
    (vehicle ``udpin:H:P`` <-> link ``udpout:H:P``; vehicle ``tcpin:H:P`` <-> link ``tcp:H:P``).
    ``signing_key``: 64 hex digits or a passphrase (SHA-256, as MAVProxy); ``faults``: SimVehicle's
    fault-injection arguments; ``physics_hz``: physics ticks per sim second (the motor-stream watchdog,
    6 ms, is checked once a tick: None, the platform's 100 Hz, makes it 10 ms coarse)."""
    from firmware_bridge.sim.mavlink.sim_vehicle import SimVehicle

    vehicle = SimVehicle(uri, speed=speed, signing_key=_key(signing_key), platform=platform,
                         offboard_timeout=offboard_timeout, failsafe=failsafe, physics_hz=physics_hz, identity=identity,
                         parameters=parameters, **(faults or {}))
    host, port = vehicle.address
    who = {"edgectl": "PX4-like, takes motor commands", "px4": "as PX4", "ardupilot": "as ArduCopter"}[identity]
    echo(f"sim vehicle ({platform}, {who} {'.'.join(map(str, vehicle.version))}, sysid 1) on {uri} -> {host}:{port}, speed x{speed:g}, "
         f"physics {1.0 / vehicle.phys.dt:g} Hz, "
         f"signing {'on' if signing_key else 'off'}"
         + "".join(f", {k}={v}" for k, v in (faults or {}).items() if v not in (None, 0.0)) + "; Ctrl-C to stop")
    import signal
    import threading

    def _interrupt(*_):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, _interrupt) if threading.current_thread() is threading.main_thread() else None
    try:
        vehicle.run(duration)
    except KeyboardInterrupt:
        pass
    finally:
        vehicle.conn.close()
        echo(f"sim vehicle stopped at t={vehicle.phys.t:.1f} s; counters: {dict(vehicle.counters)}")
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def sitl_server_main(kind: str = "px4", host: str = "127.0.0.1", port: int | None = None,
                     platform: str | None = None, echo: Callable[[str], None] = print, speed: float = 1.0) -> None:
    """Serve physics to a real PX4 SITL (``kind="px4"``, TCP 4560: start PX4 SITL without its own
    simulator, e.g. ``make px4_sitl none_iris``, and it connects here) or ArduPilot SITL
    (``kind="ardupilot"``, UDP 9002: ``sim_vehicle.py -v ArduCopter --model JSON:127.0.0.1``).
    ``platform``: a platform file to fly instead of the iris-sized generic quad (re-laid out as
    Quad-X; the autopilot's gains must suit it). ``speed``: PX4's lockstep paced to this many simulated seconds
    per wall second (0: as fast as PX4 runs); ArduPilot paces itself (its --speedup)."""
    from firmware_bridge.sim.mavlink.physics import platform_params, quad_x_layout
    from firmware_bridge.sim.mavlink.sitl_server import ArduPilotJsonServer, Px4SitlServer

    params = None
    if platform is not None:
        params = quad_x_layout(platform_params(platform, dt=0.004 if kind == "px4" else None))
    if kind == "px4":
        server = Px4SitlServer(host, 4560 if port is None else port, params=params, speed=speed)
        proto = "tcp"
    elif kind == "ardupilot":
        server = ArduPilotJsonServer(host, 9002 if port is None else port, params=params)
        proto = "udp"
    else:
        raise ValueError(f"sitl server kind must be 'px4' or 'ardupilot', got {kind!r}")
    h, p = server.address
    echo(f"{kind} SITL simulator listening on {proto} {h}:{p} ({platform or 'generic quad'}); Ctrl-C to stop")
    server.start()
    try:
        while server._thread is not None and server._thread.is_alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        echo(f"{kind} SITL simulator stopped; stats: {server.stats}")

"""Entry point behind ``edgectl sim-vehicle rc-car`` (the CLI wires it; blocks until Ctrl-C)."""
from __future__ import annotations

import threading
import time
from typing import Callable
from urllib.parse import urlparse


def sim_vehicle_main(uri: str | None = None, speed: float = 1.0, *, platform: str = "rc_car_1_10",
                     core: str = "python", duration: float | None = None,
                     stop_event: threading.Event | None = None, echo: Callable[[str], None] = print,
                     faults: dict | None = None) -> int:
    """Serve a simulated RC car MCU: on a new pty (``uri=None``; prints its path) or on TCP
    (``uri="tcp://127.0.0.1:5760"``; connect with pyserial ``socket://127.0.0.1:5760``).
    ``core``: "python" (car_core.py) or "c" (firmware/car_link.c compiled with gcc). Returns an
    exit code."""
    from ..cli_hooks import error
    from firmware_bridge.sim.rccar.sim_car import SimCar

    try:
        f = dict(faults or {})
        unsupported = sorted(k for k, v in f.items() if v not in (None, 0.0) and k not in ("loss", "cut_at", "cut_for"))
        if unsupported:
            error(f"sim-vehicle rc-car: faults {', '.join(unsupported)} are not simulated on the car (loss, cut are)")
            return 2
        car = SimCar(platform, speed=speed, core=core, **{k: f[k] for k in ("loss", "cut_at", "cut_for") if k in f})
        if uri is None:
            path = car.open_pty()
        else:
            u = urlparse(uri)
            if u.scheme != "tcp" or not u.hostname or u.port is None:
                error(f"sim-vehicle rc-car --uri {uri}: give no --uri for a pty, or tcp://HOST:PORT")
                return 2
            path = car.serve_tcp(u.hostname, u.port)
    except (OSError, ValueError, RuntimeError) as e:
        error(f"sim-vehicle rc-car: {e}")
        return 2
    car.start()
    echo(f"simulated RC car ({car.model}, {core} link core) at {speed:g}x real time\n"
         f"  serial port: {path}\n"
         f"  {car.rate_hz:g} Hz steps and telemetry, command watchdog -> failsafe (neutral + brake)\n"
         f"  connect: RcCarLink({path!r}) from firmware_bridge.rccar; Ctrl-C to stop")
    stop = stop_event or threading.Event()
    t_end = None if duration is None else time.monotonic() + duration
    try:
        while not stop.is_set() and (t_end is None or time.monotonic() < t_end):
            stop.wait(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        car.close()
    c, s = car.core.counters(), car.stats
    bad = sum(c[k] for k in ("crc", "cobs", "length", "type", "version", "value", "overflow"))
    echo(f"stopped after {car.t:.1f} s simulated: {c['rx_ok']} frames in ({bad} rejected), {s.tx_frames} out, "
         f"{c['failsafe']} failsafe trips")
    return 0

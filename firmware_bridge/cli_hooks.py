"""Functions behind ``edgectl sim-vehicle`` and ``edgectl flash`` (the CLI wires them up).

Both return a process exit code and print what they do; neither imports JAX.
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

SIM_KINDS = ("crazyflie",)


def _print(*args):
    print(*args, flush=True)


def error(message: str) -> None:
    """A command's error: one `error: ...` line on stderr (the CLI's convention; the caller returns 2)."""
    print(f"error: {message}", file=sys.stderr, flush=True)


def sim_vehicle_main(kind: str = "crazyflie", uri: str = "udp://127.0.0.1:19850", speed: float = 1.0,
                     platform: str = "crazyflie_2_1", duration: float | None = None,
                     stop_event: threading.Event | None = None, bundle=None, onboard: str = "c",
                     faults: dict | None = None) -> int:
    """Serve a simulated vehicle at uri until Ctrl-C (or ``duration`` seconds, or ``stop_event``).
    ``bundle``: the vehicle carries its policy as the on-board edgectl app (``onboard``: c, numpy or an
    export folder); ``faults``: CrazyflieSim's fault-injection arguments."""
    if kind not in SIM_KINDS:
        error(f"sim-vehicle: unknown vehicle kind {kind!r}; available: {', '.join(SIM_KINDS)}")
        return 2
    try:
        parsed = urlparse(uri)
        port = parsed.port
    except ValueError as e:  # a port that is not a number
        error(f"sim-vehicle crazyflie --uri {uri}: {e}")
        return 2
    if parsed.scheme != "udp" or not parsed.hostname or port is None:
        error(f"sim-vehicle crazyflie --uri {uri}: serve on a UDP URI such as udp://127.0.0.1:19850 "
              "(sim:// URIs only exist inside one Python process)")
        return 2
    from firmware_bridge.crazyflie.bootloader import FLASH_PAGES, FLASH_START, PAGE_SIZE
    from firmware_bridge.sim.crazyflie.host_app import NoCompiler
    from firmware_bridge.sim.crazyflie.sim_vehicle import CrazyflieSim

    try:
        sim = CrazyflieSim(platform, speed=speed, bundle=bundle, onboard_impl=onboard, **(faults or {}))
        server = sim.serve_udp(parsed.hostname, parsed.port)
    except NoCompiler as e:  # the on-board app is C compiled here: nothing to fly without a compiler
        error(f"sim-vehicle --bundle: {e}")
        return 2
    except ImportError:
        raise  # the CLI names the extra that brings the missing package
    except Exception as e:  # noqa: BLE001  a bad bundle, fault or port: one line, not a traceback
        error(f"sim-vehicle crazyflie: {e}")
        return 2
    stop = stop_event or threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # The physics thread must not hold the GIL for 5 ms (the default) while a setpoint waits in the
    # UDP thread: the on-board app's link watchdog runs on vehicle time.
    sys.setswitchinterval(0.0005)
    sim.start()
    _print(f"simulated {sim.platform.name} ({kind}) serving CRTP on {server.uri} at {speed:g}x real time\n"
           f"  log TOC: {len(sim.log_names())} variables (stateEstimate, stateEstimateZ, stabilizer, gyro, acc, "
           f"pm, motor, supervisor, ...); param TOC: {len(sim.param_names())} parameters\n"
           f"  bootloader: {PAGE_SIZE} B pages, firmware area pages {FLASH_START}-{FLASH_PAGES - 1}\n"
           f"  connect with cflib: SyncCrazyflie('{server.uri}'); flash: edgectl flash --uri {server.uri} FILE\n"
           + (f"  on-board app: {bundle}'s Crazyflie app, its C compiled for this host, {sim.onboard_image.impl} policy "
              f"(stabilizer.controller = 6 selects it; {sim.onboard_image.library})\n" if bundle is not None else "")
           + (f"  faults: {', '.join(f'{k}={v}' for k, v in (faults or {}).items() if v not in (None, 0.0))}\n"
              if any(v not in (None, 0.0) for v in (faults or {}).values()) else "")
           + "  Ctrl-C to stop")
    t_end = None if duration is None else time.monotonic() + duration
    try:
        while not stop.is_set() and (t_end is None or time.monotonic() < t_end):
            stop.wait(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        sim.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    s = sim.stats
    _print(f"stopped after {sim.t:.1f} s simulated: {s.rx} packets in, {s.tx} out, "
           f"{s.malformed} malformed, {s.unknown} not simulated")
    return 0


def flash_main(uri: str, path: str | Path, *, verify: bool = True, retries: int = 1,
               warm_boot: bool = True) -> int:
    """Flash a firmware image (a .bin or an app folder with build/cf2.bin) and print the report."""
    from firmware_bridge.crazyflie.flash import FlashError, flash

    def progress(stage, done, total):
        if done == total or done % 10 == 0:
            sys.stdout.write(f"\r  {stage}: {done}/{total} pages")
            sys.stdout.flush()
            if done == total:
                sys.stdout.write("\n")

    started = []

    def progress_and_mark(stage, done, total):
        started.append(stage)
        progress(stage, done, total)
    try:
        report = flash(uri, path, verify=verify, retries=retries, warm_boot=warm_boot, progress=progress_and_mark)
    except FlashError as e:
        if started:
            sys.stdout.write("\n")
        # 2: nothing was written (a bad file or URI, no radio); 1: the flash started and failed (it never reports
        # success: flash it again)
        error(f"flash {'failed' if started else 'refused'}: {e}")
        return 1 if started else 2
    _print(str(report))
    return 0

"""edgectl run: a bundle flown (or driven) in a fixed-rate loop under the shield and watchdogs."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import typer

from edgectl.cli.common import (RUNS, app, _console, _fail, latest_bundle, _print_json)


@app.command("run")
def run_cmd(
    bundle: Optional[Path] = typer.Argument(None, help="Bundle directory.", show_default="runs/latest"),
    uri: str = typer.Option("sim://", "--uri", metavar="<uri>", help="Vehicle link: every form it takes is listed above."),
    seconds: float = typer.Option(10.0, "--seconds", min=0.01, help="How long to fly."),
    policy: Optional[Path] = typer.Option(None, "--policy", help="Run an `edgectl export` folder of the bundle "
                                          "(c/stm32: compiled C, onnx, tflite) instead of the bundle itself."),
    shield: bool = typer.Option(True, "--shield/--no-shield", help="Predictive STL shield (specs from the platform file)."),
    ref: Optional[str] = typer.Option(None, "--ref", help="Reference position x,y,z in m (world, z up).",
                                      show_default="0,0,0; a Crazyflie 0,0,1 (its floor is z = 0)"),
    log: Optional[Path] = typer.Option(None, "--log", help="Flight log, one schema for every vehicle: MCAP for a .mcap "
                                      "suffix (JSON channels Foxglove opens; needs the mcap package), CSV for any other.",
                                      show_default="runs/flights/<time>.csv"),
    as_fast: bool = typer.Option(False, "--as-fast-as-possible", help="sim:// only: run ticks back to back."),
    rt_priority: Optional[int] = typer.Option(None, "--rt-priority", min=1, max=99, help="Linux: run the loop's thread "
                                              "SCHED_FIFO at this priority (root or CAP_SYS_NICE): steadier periods on a busy CPU."),
    json_out: bool = typer.Option(False, "--json", help="Make the last stdout line the run summary as one JSON object."),
    camera: Optional[str] = typer.Option(None, "--camera", help="Avoid (vision) bundles on a Crazyflie URI: field[:SEED] "
                                         "renders a simulated obstacle field from the position the vehicle reports; a "
                                         "device index or path (0, /dev/video0) reads a real camera through OpenCV.",
                                         show_default="field:0"),
    motor_firmware: Optional[str] = typer.Option(None, "--motor-firmware", help="MAVLink, motor-level bundles: the "
                                                 "firmware (your name for it) that takes SET_ACTUATOR_CONTROL_TARGET "
                                                 "group 0 as motors M1..M4; skips the check that refuses PX4 and ArduPilot "
                                                 "(which drive no motor from it) and vehicles not declaring EDGECTL_MOTOR_IN."),
) -> None:
    """Fly a policy in a fixed-rate loop under the shield and watchdogs, on a simulated or real vehicle.

    Link silence, a stale or NaN state, a failing policy or repeated deadline overruns hand control to the
    backup controller (level, hold, descend), then to a safe stop.

    --uri, by bundle (one parser, edgectl/runtime/uri.py; a scheme names one kind of vehicle):

    quadrotor hover/figure8: sim:// (the in-process simulator, from 0,0,0) or sim://x,y,z (from there);

    a MAVLink URL: udpout:HOST:PORT (udpout:127.0.0.1:14550 for `edgectl sim-vehicle mavlink`), udpin:HOST:PORT, udp:HOST:PORT, tcp:HOST:PORT, tcpin:HOST:PORT, or a serial device /dev/ttyACM0 (PX4, ArduPilot: ctbr bundles; a motor-level bundle needs a vehicle that takes motor commands, or --motor-firmware);

    a Crazyflie, which flies a motor-level bundle on board (its flashed edgectl app): radio://0/80/2M/E7E7E7E7E7, usb://0, udp://127.0.0.1:19850 (`edgectl sim-vehicle crazyflie`), cfsim://NAME (an in-process simulated one).

    avoid: sim:// or sim://SEED (an in-process obstacle field), or a Crazyflie URI (radio://, usb://, udp://, cfsim://NAME; see --camera).

    rc-car race: sim:// (in process), or a serial car: a port (/dev/ttyACM0, or the /dev/pts/N that `edgectl sim-vehicle rc-car` prints) or a pyserial URL: socket://HOST:PORT (socket://127.0.0.1:5760 for `edgectl sim-vehicle rc-car --uri tcp://127.0.0.1:5760`), rfc2217://HOST:PORT, loop://.
    """
    from edgectl.bundle import BundleError, load_bundle
    from edgectl.runtime.flightlog import check_writer
    from edgectl.tasks import TaskError, task as registered

    check_writer(log)  # a .mcap log without the mcap package: refused before anything is opened
    path = latest_bundle() if bundle is None else bundle
    try:
        b = load_bundle(path)
        fly = registered(b.task_name).hook("fly")  # this module's fly_quadrotor, fly_avoid or fly_race
    except (BundleError, TaskError) as e:
        _fail(str(e))
    fly(b, SimpleNamespace(uri=uri, seconds=seconds, policy=policy, shield=shield, ref=ref, log=log, as_fast=as_fast,
                           rt_priority=rt_priority, json_out=json_out, camera=camera, motor_firmware=motor_firmware))


def fly_avoid(b, o) -> None:
    _run_avoid(b, o.uri, o.seconds, o.policy, o.log, o.as_fast, o.json_out, o.camera)


def fly_race(b, o) -> None:
    _run_race(b, o.uri, o.seconds, o.policy, o.log, o.as_fast, o.json_out)


def fly_quadrotor(b, o) -> None:
    """A hover/figure8 bundle: the host loop (in process or over MAVLink), or on board a Crazyflie."""
    from edgectl.platforms import parse_platform

    uri, seconds, policy, shield, ref, log, as_fast, rt_priority, json_out, motor_firmware = (
        o.uri, o.seconds, o.policy, o.shield, o.ref, o.log, o.as_fast, o.rt_priority, o.json_out, o.motor_firmware)
    plat = parse_platform((b.path / "platform.toml").read_bytes(), b.path / "platform.toml")
    ctbr = b.contract["action"]["mapping"].get("kind") == "ctbr"
    if ctbr and shield:
        # the shield predicts motor-level policies; the autopilot's rate loop and failsafes fly a ctbr one
        _console(stderr=json_out).print("note: ctbr bundle: flying without the shield (it models motor-level policies); "
                                        "watchdogs hand over to the ctbr backup, the autopilot's failsafes stay")
        shield = False
    ref_xyz = None
    if ref is not None:
        try:
            ref_xyz = tuple(float(v) for v in ref.split(","))
            assert len(ref_xyz) == 3
        except (ValueError, AssertionError):
            _fail(f"--ref {ref!r}: expected three numbers x,y,z")
    from edgectl.runtime.backends import load_policy
    from edgectl.runtime.flightlog import FlightLog
    from edgectl.runtime.links import flies_on_board, open_link
    from edgectl.runtime.loop import ControlLoop, LoopConfig
    from edgectl.safety.backup import BackupController

    # Everything that can refuse the bundle or the policy is checked before the link is opened: a Crazyflie
    # link arms as it connects.
    try:
        onboard = flies_on_board(uri)  # and the URI names a vehicle a hover/figure8 bundle flies
    except ValueError as e:
        _fail(str(e))
    monitors, sh = (), None
    try:
        from edgectl.safety.shield import check_contract
        check_contract(b.contract)  # a field the host cannot build, named
        if onboard:
            if policy is not None:
                raise ValueError(f"--policy {policy}: {uri} flies the policy on board (its flashed edgectl app); "
                                 "the host runs none")
            act, backend = None, "on board (the vehicle's edgectl app)"
            # The host cannot shield a vehicle it has no motor authority over; it monitors the platform's
            # specs in the same past-time form the app checks on board.
            from edgectl.safety.monitor import OnlineMonitor
            from export.crazyflie_app import onboard_formulas
            monitors = [OnlineMonitor(f, 1.0 / float(b.contract["rate_hz"])) for f in onboard_formulas(plat)]
            shield = False
        else:
            act, backend = load_policy(policy if policy is not None else b.path, b)
            if shield:
                from edgectl.safety.shield import Shield
                sh = Shield(act, b.contract, plat)
    except (ValueError, OSError) as e:
        _fail(str(e))
    link = None
    try:
        link = open_link(uri, plat, bundle=b, contract=b.contract, motor_firmware=motor_firmware)
    except (ValueError, OSError) as e:
        _fail(str(e))
    if ref_xyz is None:
        ref_xyz = tuple(getattr(link, "default_ref", (0.0, 0.0, 0.0)))
    log_path = _log_path(log, "")
    try:
        flog = FlightLog(log_path, vehicle="crazyflie (policy on board)" if onboard else "quadrotor")
    except OSError as e:
        link.close()
        _fail(f"--log {log_path}: cannot write it ({e})")
    cfg = LoopConfig(rate_hz=float(b.contract["rate_hz"]), seconds=seconds, realtime=not as_fast, rt_priority=rt_priority)
    if ctbr:
        from edgectl.safety.ctbr_backup import CtbrBackup
        backup = CtbrBackup(b.contract)
        backend += f", {getattr(link, 'autopilot', 'simulated')} rate loop"
    else:
        backup = BackupController(plat)
    try:
        loop = ControlLoop(link, act, b.contract, backup, cfg, shield=sh, log=flog, ref=ref_xyz,
                           monitors=monitors)
    except ValueError as e:  # a contract field the host cannot build
        flog.close()
        link.close()
        _fail(str(e))
    console = _console(stderr=json_out)
    try:
        with console.status(f"flying {b.path.name} on {uri} for {seconds:g} s ({backend}, shield {'on' if shield else 'off'})"):
            rep = loop.run()
    except KeyboardInterrupt:
        link.stop()
        rep = loop.report
    except ValueError as e:  # e.g. --rt-priority refused: before the first tick
        flog.close()
        link.close()
        _fail(str(e))
    except RuntimeError as e:
        from edgectl.runtime.links import refused_by_vehicle
        if not refused_by_vehicle(e):
            raise
        flog.close()
        link.close()
        _fail(str(e))  # an autopilot that refused its mode or arming, before the vehicle armed
    finally:
        flog.close()
        link.close()
    summary = {"bundle": str(b.path), "uri": uri, "backend": backend, "shield": shield, "log": str(log_path), **rep.summary()}
    pe = summary["period_error_ms"] or {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    console.print(f"{summary['ticks']} ticks at {cfg.rate_hz:g} Hz, period error p50 {pe['p50']:.3f} / p99 {pe['p99']:.3f} / "
                  f"max {pe['max']:.3f} ms, {summary['deadline_misses']} deadline misses; nominal policy in control "
                  f"{100 * summary['nominal_fraction']:.1f} % of ticks; final: {summary['final_mode']}")
    pos_err = summary["position_error_m"]
    if pos_err["max"] is not None:
        console.print(f"distance to the reference {', '.join(f'{v:g}' for v in ref_xyz)}: max {100 * pos_err['max']:.1f} cm, "
                      f"RMS {100 * pos_err['rms']:.1f} cm over {pos_err['samples']} states")
    if summary.get("vehicle_link_drops"):
        console.print(f"the vehicle's link watchdog flew its backup through {summary['vehicle_link_drops']} short "
                      "silence(s) of the host and handed back (edgectl.linkdrops)")
    _print_run_end(console, summary, f"log: {log_path}  (edgectl plot {log_path})", json_out)


def _print_run_end(console, summary: dict, log_line: str, json_out: bool) -> None:
    """What every `edgectl run` ends with: the controller switches, where the log is, the JSON summary."""
    for sw in summary["switches"]:
        console.print(f"  t={sw['t']:.2f} s  {sw['from']} -> {sw['to']}: {sw['reason']}")
    console.print(log_line)
    if json_out:
        _print_json(summary)


AVOID_ADAPTERS = ("sim", "crazyflie")  # edgectl/runtime/uri.py: where an avoid bundle flies


def _run_avoid(b, uri: str, seconds: float, policy: Optional[Path], log: Optional[Path], as_fast: bool, json_out: bool,
               camera: Optional[str] = None) -> None:
    """`edgectl run` of an avoid (image) bundle: the in-process obstacle field, fed by the simulated camera.

    sim:// or sim://SEED picks the field (numpy-sampled, like training's distribution). The shield and the
    motor-level links do not apply: the policy commands velocity setpoints."""
    from edgectl.runtime.uri import parse_uri

    try:
        parsed = parse_uri(uri)
        adapter = parsed.for_vehicle(AVOID_ADAPTERS, "an avoid bundle commands velocity setpoints: it")
    except ValueError as e:
        _fail(str(e))
    if adapter == "crazyflie":
        _run_avoid_crazyflie(b, uri, seconds, policy, log, json_out, camera)
        return
    rest = parsed.rest
    if camera is not None:
        _fail(f"--camera: for a Crazyflie URI; --uri {uri} flies the in-process field with its own simulated camera")
    try:
        scene_seed = int(rest) if rest else 0
    except ValueError:
        _fail(f"--uri {uri!r}: expected sim:// or sim://SEED (an integer scene seed)")
    from edgectl.runtime.backends import load_policy
    from edgectl.runtime.camera import fly_avoid

    try:
        act, backend = load_policy(policy if policy is not None else b.path, b)
    except (ValueError, OSError) as e:
        _fail(str(e))
    console = _console(stderr=json_out)
    log_path, flog = _open_log(log, "avoid")
    try:
        with console.status(f"flying {b.path.name} through obstacle field {scene_seed} ({backend}, simulated camera)"):
            rep = fly_avoid(act, b.contract, b.manifest["task"], seconds=seconds, seed=scene_seed, realtime=not as_fast,
                            log=flog)
    finally:
        flog.close()
    o = rep.outcome
    outcome = "crossed the field" if o["crossed"] else ("COLLIDED" if o["collided"] else "time ran out")
    console.print(f"{rep.ticks} ticks at {rep.rate_hz:g} Hz through {o['obstacles']} obstacles: {outcome}; "
                  f"collision-free distance {o['collision_free_distance_m']:.2f} of {o['field_length_m']:g} m, "
                  f"min clearance {o['min_clearance_m']:.3f} m; latest tick {o['late_ms_max']:.1f} ms late")
    console.print(f"log: {log_path}  (edgectl plot {log_path})")
    if json_out:
        _print_json({"bundle": str(b.path), "uri": uri, "backend": backend, "camera": "sim", "log": str(log_path),
                     **rep.summary()})


def _log_path(log: Optional[Path], kind: str) -> Path:
    """--log, or runs/flights/[KIND-]<time>.csv."""
    return log if log is not None else RUNS / "flights" / f"{kind + '-' if kind else ''}{datetime.now().strftime('%Y%m%d-%H%M%S')}.csv"


def _open_log(log: Optional[Path], kind: str):
    """(path, FlightLog) of a run's flight log (edgectl.runtime.flightlog: the one schema, CSV or MCAP)."""
    from edgectl.runtime.flightlog import FlightLog

    path = _log_path(log, kind)
    try:
        return path, FlightLog(path, vehicle={"race": "rc car"}.get(kind, kind))
    except OSError as e:
        _fail(f"--log {path}: cannot write it ({e})")


def _run_avoid_crazyflie(b, uri: str, seconds: float, policy: Optional[Path], log: Optional[Path], json_out: bool,
                         camera: Optional[str]) -> None:
    """`edgectl run` of an avoid bundle on a Crazyflie: camera frames in, velocity setpoints out
    (edgectl/runtime/vision_link.py)."""
    from edgectl.runtime.backends import load_policy
    from edgectl.runtime.camera import AvoidSim, ImageSpec, OpenCVCamera, SimCamera
    from edgectl.runtime.vision_link import fly_vision
    from firmware_bridge.crazyflie.bridge import CrazyflieLink

    cam_arg = camera or "field:0"
    field, lateral = None, 0.0
    try:
        act, backend = load_policy(policy if policy is not None else b.path, b)
        spec = ImageSpec.from_contract(b.contract)
        if cam_arg == "field" or cam_arg.startswith("field:"):
            try:
                seed = int(cam_arg.split(":", 1)[1]) if ":" in cam_arg else 0
            except ValueError:
                _fail(f"--camera {cam_arg!r}: expected field, field:SEED (an integer), a device index or a path")
            field = AvoidSim(b.manifest["task"], seed)
            cam, lateral, cam_desc = SimCamera(field, spec), float(field.pos[1]), f"simulated field {seed}"
        else:
            cam = OpenCVCamera(spec, int(cam_arg) if cam_arg.isdigit() else cam_arg)
            cam_desc = f"camera {cam_arg}"
    except (ValueError, OSError, RuntimeError) as e:
        _fail(str(e))
    try:
        link = CrazyflieLink(uri, connect_timeout=10.0)
    except Exception as e:  # noqa: BLE001  cflib raises plain Exceptions for bad URIs
        cam.close()
        _fail(f"--uri {uri}: could not connect to a Crazyflie: {e}")
    console = _console(stderr=json_out)
    try:
        log_path, flog = _open_log(log, "avoid")
    except BaseException:
        cam.close()
        link.close()
        raise
    try:
        with console.status(f"flying {b.path.name} on {uri} ({backend}, {cam_desc})"):
            rep = fly_vision(act, b.contract, b.manifest["task"], link, cam, seconds=seconds, lateral=lateral, field=field,
                             log=flog)
    except ValueError as e:
        _fail(str(e))
    finally:
        flog.close()
        link.close()
    summary = {"bundle": str(b.path), "uri": uri, "backend": backend, "camera": cam_desc, "log": str(log_path),
               **rep.summary()}
    p99 = (summary["period_error_ms"] or {}).get("p99", float("nan"))
    o = rep.outcome
    clear = "" if o["min_clearance_m"] is None else f", min clearance {o['min_clearance_m']:.3f} m"
    console.print(f"{rep.ticks} ticks at {rep.rate_hz:g} Hz, period error p99 {p99:.2f} ms; {o['ended']}; "
                  f"{o['distance_m']:.2f} m along the field{clear}; held and landed")
    console.print(f"log: {log_path}  (edgectl plot {log_path})")
    if json_out:
        _print_json(summary)


def _run_race(b, uri: str, seconds: float, policy: Optional[Path], log: Optional[Path], as_fast: bool, json_out: bool) -> None:
    """`edgectl run` of a race bundle: sim:// (in process) or a serial car (odometry from its telemetry), from the
    start/finish line of the bundle's track, through its checkpoints; the backup brakes to a standstill."""
    from edgectl.platforms import parse_platform
    from edgectl.runtime.backends import load_policy
    from edgectl.runtime.race import LapTracker, drive, open_car
    from edgectl.runtime.uri import parse_uri
    from edgectl.tracks import TrackError, parse_track

    try:
        in_process = parse_uri(uri).adapters == ("sim",)
    except ValueError as e:
        _fail(str(e))
    if as_fast and not in_process:
        _fail(f"--as-fast-as-possible: sim:// only (a real or simulated serial car runs in real time), not {uri}")
    car = None
    try:
        plat = parse_platform((b.path / "platform.toml").read_bytes(), b.path / "platform.toml")
        track = parse_track((b.path / "track.csv").read_bytes(), b.path / "track.csv")
        tracker = LapTracker(track, b.contract, plat.get("body.length"), plat.get("body.width"))
        act, backend = load_policy(policy if policy is not None else b.path, b)
        start = (float(track.points[0, 0]), float(track.points[0, 1]), float(track.heading[0]))
        car = open_car(uri, str(b.path / "platform.toml"), start)
    except (ValueError, OSError, TrackError) as e:
        _fail(str(e))
    console = _console(stderr=json_out)
    try:
        log_path, flog = _open_log(log, "race")
    except BaseException:
        car.close()
        raise
    try:
        with console.status(f"driving {b.path.name} on {uri} for {seconds:g} s ({backend}, {car.kind})"):
            rep = drive(car, tracker, act, rate_hz=float(b.contract["rate_hz"]), seconds=seconds, realtime=not as_fast,
                        log=flog)
    except ValueError as e:
        _fail(str(e))
    finally:
        flog.close()
        car.close()
    summary = {"bundle": str(b.path), "uri": uri, "backend": backend, "car": car.kind, "track": track.name,
               "log": str(log_path), **rep.summary()}
    pe = summary["period_error_ms"]
    laps = ", ".join(f"{v:.2f} s" for v in summary["lap_times_s"]) or "none finished"
    timing = (f"period error p50 {pe['p50']:.3f} / p99 {pe['p99']:.3f} / max {pe['max']:.3f} ms" if pe else
              "as fast as possible")
    console.print(f"{summary['ticks']} ticks at {rep.rate_hz:g} Hz, {timing}; {summary['checkpoints_passed']} "
                  f"checkpoints, edge contacts {summary['edge_contacts']}, laps: {laps}")
    ex = summary["max_corridor_excess_m"]
    if ex is not None:
        console.print(f"closest to the corridor edge: {-100 * ex:.1f} cm to spare" if ex <= 0 else
                      f"left the corridor by {100 * ex:.1f} cm")
    _print_run_end(console, summary, f"log: {log_path}  (edgectl plot {log_path})", json_out)

"""Vehicles: edgectl sim-vehicle, sitl-server, flash, build-firmware."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgectl.cli.common import (app, choice, _console, _fail)


@app.command("build-firmware")
def build_firmware_cmd(
    app_dir: Path = typer.Argument(..., help="App folder written by `edgectl export --target crazyflie`."),
    firmware_dir: Optional[Path] = typer.Option(None, "--firmware-dir", help="A crazyflie-firmware checkout (with submodules)."),
) -> None:
    """Build a Crazyflie firmware image with the exported policy as its out-of-tree controller."""
    from export.crazyflie_app import build_firmware
    from export.errors import ExportError

    console = _console()
    try:
        with console.status(f"building {app_dir} against {firmware_dir}"):
            binary = build_firmware(app_dir, firmware_dir)
    except ExportError as e:
        _fail(str(e))
    console.print(f"built {binary}\nnext: edgectl flash --uri radio://0/80/2M/E7E7E7E7E7 {binary}")


SIM_VEHICLES = ("crazyflie", "mavlink", "rc-car")
MAVLINK_IDENTITIES = ("edgectl", "px4", "ardupilot")
SITL_KINDS = ("px4", "ardupilot")


@app.command("sim-vehicle")
def sim_vehicle_cmd(
    kind: str = typer.Argument(..., metavar="|".join(SIM_VEHICLES), help=f"One of: {', '.join(SIM_VEHICLES)}."),
    uri: Optional[str] = typer.Option(None, "--uri", help="Where the vehicle listens. crazyflie: udp://127.0.0.1:19850 "
                                      "(connect cflib to the same URI); mavlink: udpin:127.0.0.1:14550 (connect with udpout:...); "
                                      "rc-car: a new pty (path printed) or tcp://127.0.0.1:5760."),
    speed: float = typer.Option(1.0, "--speed", help="Simulated seconds per wall-clock second."),
    signing_key: Optional[str] = typer.Option(None, "--signing-key", envvar="EDGECTL_MAVLINK_KEY",
                                              help="mavlink: MAVLink 2 signing key (64 hex digits or a passphrase)."),
    platform: str = typer.Option("crazyflie_2_1", "--platform", help="Platform file whose dynamics the vehicle flies."),
    bundle: Optional[Path] = typer.Option(None, "--bundle", help="crazyflie: carry this bundle's policy as the on-board "
                                          "edgectl app (as if flashed with `edgectl export --target crazyflie`)."),
    onboard: str = typer.Option("c", "--onboard", help="crazyflie --bundle: the app (controller, observation, backup, "
                                "monitors) is its generated C compiled here with gcc; its policy: c (the generated float32 "
                                "C), numpy (the bundle's forward, called from the C app), or an `edgectl export --target c "
                                "[--int8]` folder."),
    loss: float = typer.Option(0.0, "--loss", min=0.0, max=0.99, help="Fault: probability that a packet is lost (each direction)."),
    latency_ms: float = typer.Option(0.0, "--latency-ms", min=0.0, help="Fault: one-way link latency added (each direction)."),
    cut_at: Optional[float] = typer.Option(None, "--cut-at", help="Fault: vehicle time (s) from which the link carries nothing either way."),
    cut_for: Optional[float] = typer.Option(None, "--cut-for", help="Fault: how long the cut lasts (s; default: for good)."),
    stuck_sensor: Optional[str] = typer.Option(None, "--stuck-sensor", help="Fault: a sensor frozen from --sensor-fault-at "
                                               "(x, y, z, pos, vx, vy, vz, vel, quat, gyro, gyro_x, gyro_y, gyro_z)."),
    nan_sensor: Optional[str] = typer.Option(None, "--nan-sensor", help="Fault: a sensor reading NaN from --sensor-fault-at (names as --stuck-sensor)."),
    sensor_fault_at: float = typer.Option(0.0, "--sensor-fault-at", help="Vehicle time (s) at which the sensor fault starts."),
    physics_hz: float = typer.Option(500.0, "--physics-hz", min=50.0, max=5000.0, help="mavlink: physics steps (and link "
                                     "reads) per simulated second; the Crazyflie's stabilizer runs at 500 Hz."),
    weak_motor: Optional[str] = typer.Option(None, "--weak-motor", help="Fault: MOTOR:FRACTION, e.g. 2:0.7 = motor 2 gives 70 % of its thrust."),
    identity: str = typer.Option("edgectl", "--identity", metavar=choice(*MAVLINK_IDENTITIES), help="mavlink: edgectl (takes motor commands, declares "
                                 "EDGECTL_MOTOR_IN), px4 (answers as PX4 1.15: OFFBOARD, COM_OF_LOSS_T) or ardupilot "
                                 "(ArduCopter 4.5.7: GUIDED_NOGPS, GUID_OPTIONS, GUID_TIMEOUT)."),
    param: Optional[list[str]] = typer.Option(None, "--param", help="mavlink: NAME=VALUE, a parameter of the identity "
                                              "(e.g. GUID_OPTIONS=8, COM_OF_LOSS_T=0.5); repeatable."),
) -> None:
    """Run a simulated vehicle that speaks the real protocol, driven by edgectl's simulator (Ctrl-C to stop).

    Point `edgectl run`, or your own cflib / pymavlink script, at it. Faults are injected on request.
    """
    weak = None
    if weak_motor is not None:
        try:
            m, k = weak_motor.split(":")
            weak = (int(m), float(k))
        except ValueError:
            _fail(f"--weak-motor {weak_motor!r}: expected MOTOR:FRACTION, e.g. 2:0.7")
    faults = dict(loss=loss, latency_s=latency_ms / 1000.0, cut_at=cut_at, cut_for=cut_for, stuck_sensor=stuck_sensor,
                  nan_sensor=nan_sensor, sensor_fault_at=sensor_fault_at, weak_motor=weak)
    if kind == "crazyflie":
        from firmware_bridge.cli_hooks import sim_vehicle_main as cf_main
        raise typer.Exit(cf_main("crazyflie", uri=uri or "udp://127.0.0.1:19850", speed=speed, platform=platform,
                                 bundle=bundle, onboard=onboard, faults=faults))
    elif kind == "mavlink":
        if bundle is not None:
            _fail("--bundle: only a simulated Crazyflie carries an on-board app; a MAVLink vehicle is flown by `edgectl run`")
        from firmware_bridge.mavlink.cli_hooks import sim_vehicle_main as mav_main
        params = {}
        for item in param or []:
            name, _, value = item.partition("=")
            try:
                params[name.strip()] = float(value)
            except ValueError:
                _fail(f"--param {item!r}: expected NAME=NUMBER, e.g. GUID_OPTIONS=8")
        try:
            mav_main(uri=uri or "udpin:127.0.0.1:14550", speed=speed, signing_key=signing_key, platform=platform,
                     echo=typer.echo, faults=faults, physics_hz=physics_hz, identity=identity, parameters=params or None)
        except (ValueError, OSError) as e:
            _fail(f"sim-vehicle mavlink: {e}")
    elif kind == "rc-car":
        from firmware_bridge.rccar.cli_hooks import sim_vehicle_main as car_main
        raise typer.Exit(car_main(uri=uri, speed=speed, platform="rc_car_1_10" if platform == "crazyflie_2_1" else platform,
                                  echo=typer.echo, faults=faults))
    else:
        _fail(f"sim-vehicle {kind!r}: unknown vehicle; expected one of {', '.join(SIM_VEHICLES)}")


@app.command("flash")
def flash_cmd(
    file: Path = typer.Argument(..., help="Firmware image (.bin) or an app folder with build/cf2.bin."),
    uri: str = typer.Option(..., "--uri", help="radio://0/80/2M/E7E7E7E7E7, udp://host:port (edgectl sim-vehicle), ..."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Read every page back and compare."),
    retries: int = typer.Option(1, "--retries", min=0, help="More attempts on a fresh link after a failure."),
    warm_boot: bool = typer.Option(True, "--warm-boot/--no-warm-boot", help="Reset into the bootloader first (off: it already runs)."),
) -> None:
    """Flash a Crazyflie over the air through cflib's bootloader and verify it by reading it back."""
    from firmware_bridge.cli_hooks import flash_main
    raise typer.Exit(flash_main(uri, file, verify=verify, retries=retries, warm_boot=warm_boot))


@app.command("sitl-server")
def sitl_server_cmd(
    kind: str = typer.Argument(..., metavar="|".join(SITL_KINDS), help="px4 (TCP 4560, PX4 SITL connects, lockstep HIL messages) or ardupilot (UDP 9002, JSON SITL)."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: Optional[int] = typer.Option(None, "--port", help="Default 4560 (px4) / 9002 (ardupilot)."),
    platform: Optional[str] = typer.Option(None, "--platform", help="Platform file instead of the iris-sized generic quad."),
    speed: float = typer.Option(1.0, "--speed", min=0.0, help="px4: simulated seconds per wall second (lockstep paced to the clock a MAVLink client flies on); 0: as fast as PX4 runs."),
) -> None:
    """Serve edgectl's physics to a real PX4 or ArduPilot SITL build (Ctrl-C to stop)."""
    if kind not in ("px4", "ardupilot"):
        _fail(f"sitl-server {kind!r}: expected px4 or ardupilot")
    from firmware_bridge.mavlink.cli_hooks import sitl_server_main
    sitl_server_main(kind=kind, host=host, port=port, platform=platform, echo=typer.echo, speed=speed)

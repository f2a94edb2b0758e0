"""Link cuts and injected faults on the simulated vehicles: the backup on the vehicle takes over, the
vehicle stays in the safe set, the logs record it; each fault has its effect; a Crazyflie flies its
policy on board under `edgectl run`. (bench/link_cut.py runs the cut with 100 random instants.)

The simulated Crazyflie runs the generated app's C compiled for this host (firmware_bridge/crazyflie/
host_app.py): these are the link watchdog, keep-alive, monitors and backup of the code that is flashed.
The simulated vehicles fly the platform file the fixture bundle was trained on (VEHICLE): the fixtures
predate the firmware's yaw convention in hardware/crazyflie_2_1.toml (e06d6be) and spin up there until
retrained."""
from __future__ import annotations

import importlib.util
import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cflib")
pytest.importorskip("pymavlink")

from firmware_bridge.crazyflie import crtp  # noqa: E402
from edgectl.runtime.keepalive import PERIOD_S as KEEPALIVE_PERIOD_S  # noqa: E402
from firmware_bridge.sim.crazyflie.host_app import AppImage  # noqa: E402
from firmware_bridge.crazyflie.onboard import FAULT_LINK, FAULT_OBSERVATION, LINK_PARAM, LINK_TIMEOUT_S  # noqa: E402
from firmware_bridge.sim.crazyflie.sim_vehicle import CrazyflieSim  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "tests" / "data" / "hover_bundle"
VEHICLE = str(BUNDLE / "platform.toml")  # the vehicle the fixture was trained for (see the docstring)
_spec = importlib.util.spec_from_file_location("link_cut", ROOT / "bench" / "link_cut.py")
link_cut = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(link_cut)


@pytest.fixture(scope="module")
def policy():
    return AppImage(BUNDLE, "c")  # the app compiled once; every simulated power-on loads a fresh copy


def _position(x, y, z) -> bytes:
    return crtp.packet(crtp.GENERIC_SETPOINT, 0, struct.pack("<Bffff", crtp.SP_POSITION, x, y, z, 0.0))


def _hover(policy, seconds=4.0, **faults):
    """A simulated Crazyflie carrying the hover bundle, taken off to 1 m by a host streaming at 100 Hz."""
    sim = CrazyflieSim(VEHICLE, realtime=False, onboard_policy=policy, seed=0, **faults)
    got = []
    link = sim.open_link(got.append)
    sim.set_param("stabilizer.controller", 6)
    sim.set_param(LINK_PARAM, round(1000 * LINK_TIMEOUT_S))  # as CrazyflieOnboardLink, which keeps it alive
    for k in range(round(seconds * 100)):
        _period(sim, link, _position(0.0, 0.0, min(1.0, 0.4 * (k + 1) / 100)))
    return sim, link, got


def _period(sim, link, packet: bytes):
    """One 10 ms control period of a host streaming `packet`, its keep-alive repeating it every 2 ms (with
    edgectl.linkMs at 6 ms a bare 100 Hz stream is a link episode every period: the policy flies only when its
    period happens to fall right after a setpoint, as on the real vehicle)."""
    for _ in range(5):
        link.send(packet)
        sim.advance(0.002)


# --- link cut: the on-board backup, the safe set, both logs ----------------------------------------
@pytest.mark.parametrize("vehicle", ["crazyflie", "mavlink"])
def test_link_cut_backup_takes_over_on_the_vehicle_and_stays_safe(vehicle, policy, tmp_path):
    cuts = np.random.default_rng(7).uniform(0.5, 2.0, 3)
    for i, cut in enumerate(cuts):
        kw = dict(policy=policy) if vehicle == "crazyflie" else dict(shield=False)
        r = getattr(link_cut, f"run_{vehicle}")(float(cut), seed=i, log_path=tmp_path / f"{vehicle}{i}.csv",
                                                vehicle_platform=VEHICLE, **kw)
        assert r["takeover_at"] is not None, r
        if vehicle == "crazyflie":
            # the first 2 ms physics tick past the threshold (6 ms after the last repeat): within one 10 ms
            # control period of the cut, and the only link episode of the flight
            assert -1e-6 <= r["latency_from_threshold_ms"] <= 2.0 + 1e-6, r
            assert 1e3 * (LINK_TIMEOUT_S - KEEPALIVE_PERIOD_S) - 1e-6 <= r["latency_from_cut_ms"] <= 10.0 - 1e-6, r
            assert r["link_drops"] == 1, r
        else:
            # the first 2 ms physics tick past the motor stream's 6 ms threshold
            assert -1e-6 <= r["latency_from_threshold_ms"] <= 2.0 + 1e-6, r
            assert r["latency_from_cut_ms"] <= 10.0 - 1e-6 and r["link_drops"] == 1, r
        assert r["min_robustness"] > 0.3, r  # the 1 m box and the tilt spec, with room to spare
        assert r["vehicle_logged"] and r["host_logged"] and r["landed"] and r["z_end"] < 0.06, r


def test_crazyflie_app_flies_the_backup_through_a_short_gap_then_hands_back(policy):
    """Host jitter, not a cut: 30 ms without a setpoint. The backup flies from the tick the silence passes
    LINK_TIMEOUT_S, the policy flies again once the host is heard, nothing latches, and the episode is
    counted in edgectl.linkdrops."""
    sim, link, _ = _hover(policy, seconds=3.0)
    app = sim.onboard
    assert app.fault == 0 and app.link_drops == 0
    steps, t_gap = app.steps, sim.t
    faults = []
    for _ in range(15):  # 30 ms of silence
        sim.advance(0.002)
        faults.append(app.fault)
    assert faults.index(FAULT_LINK) in (2, 3) and faults[-1] == FAULT_LINK  # 6-8 ms into the gap
    assert app.fault_at - t_gap <= LINK_TIMEOUT_S + 0.002 + 1e-9 and not app.link_latched
    assert app.steps <= steps + 1  # the policy stood aside (one period may have run before the threshold)
    packet = _position(0.0, 0.0, 1.0)
    for _ in range(50):
        for _ in range(5):
            link.send(packet)
            sim.advance(0.002)
    assert app.fault == 0 and app.steps >= steps + 49 and app.link_drops == 1
    assert sim.variables()["edgectl.linkdrops"] == 1
    assert abs(sim.state()[2] - 1.0) < 0.05


def _without_restart_rule(bundle):
    """The bundle's policy fed the integral of its observation without the restart rule: this one starts at 0 on
    the first period after engaging, then runs on whatever the reference does (the observation's other fields
    are the app's C's)."""
    from edgectl.contract import integral_spec, integral_update, observation_slices
    sl, spec, held = observation_slices(bundle.contract), integral_spec(bundle.contract), []

    def act(obs):
        obs = obs.copy()
        i = integral_update(held[-1], obs[sl["position_error"]], spec) if held else np.zeros(3)
        held.append(i)
        obs[sl["position_error_integral"]] = i
        return bundle.act(obs)
    return act


@pytest.mark.parametrize("restart_rule", [True, False])
def test_take_off_with_the_integral_holds_after_the_ramp(restart_rule):
    """tests/data/hover_bundle (tests/data/regenerate.py; the integral in its observation), on board, taken off
    at 0.4 m/s then settled 1 s, as CrazyflieOnboardLink.start does, with the integral's restart rule and without
    it (the policy given an integral that runs through the climb)."""
    from edgectl.bundle import load_bundle
    from edgectl.contract import integral_spec
    b = load_bundle(ROOT / "tests" / "data" / "hover_bundle")
    assert integral_spec(b.contract) is not None
    p = AppImage(b, "c") if restart_rule else AppImage(b, policy=_without_restart_rule(b))
    sim, link, _ = _hover(p, seconds=2.5)  # the ramp reaches 1 m at 2.5 s
    err = []
    for k in range(300):  # 1 s settle, then 2 s of hold
        for _ in range(5):
            link.send(_position(0.0, 0.0, 1.0))
            sim.advance(0.002)
        if k >= 100:
            err.append(float(np.linalg.norm(sim.state()[0:3] - np.array([0.0, 0.0, 1.0]))))
    assert sim.onboard.fault == 0
    # The fixture on the identified Crazyflie 2.1 (issue 13): with the rule the hold starts 4.3 cm off (the
    # climb's lag: the rotors fall 4.5x slower than they rise) and is at 2.6 cm after 2 s (max 5.8 cm); without
    # it 5.4 cm max, 1.7 cm last. With the paper's model the rule made the difference (1.6 against 4.0 cm); here
    # the lag of the take-off dominates both, so only the hold itself is asserted.
    assert max(err) < 0.07 and err[-1] < 0.03, (max(err), err[-1])


def test_crazyflie_app_link_timeout_is_a_parameter_50_ms_at_boot(policy):
    """edgectl.linkMs: 50 at boot, so a 100 Hz setpoint source without a keep-alive (a script, the high-level
    commander) flies the policy with no link episode; `edgectl run` sets 6 (with its 2 ms keep-alive), and a
    bare 100 Hz stream then has one between every two setpoints."""
    sim = CrazyflieSim(VEHICLE, realtime=False, onboard_policy=policy, seed=0)
    assert sim.params_service.get(LINK_PARAM) == 50 and "edgectl.linkMs" in sim.param_names()
    link = sim.open_link(lambda raw: None)
    sim.set_param("stabilizer.controller", 6)
    for k in range(300):
        link.send(_position(0.0, 0.0, min(1.0, 0.4 * (k + 1) / 100)))
        sim.advance(0.01)
    app = sim.onboard
    assert app.engaged and app.fault == 0 and app.link_drops == 0 and app.steps >= 290
    sim.set_param(LINK_PARAM, 6)
    for _ in range(20):
        link.send(_position(0.0, 0.0, 1.0))
        sim.advance(0.01)
    assert app.link_drops >= 19 and not app.link_latched


def test_crazyflie_app_keeps_the_supervisor_fed_until_landed(policy):
    sim, link, _ = _hover(policy, cut_at=4.0)
    sim.advance(0.5)
    app = sim.onboard
    assert app.fault == FAULT_LINK and sim.supervisor_state == "Flying"
    assert sim.commander.setpoint.mode_z == 1 and abs(sim.commander.setpoint.z - 1.0) < 1e-6  # the app's hold setpoint
    sim.advance(3.0)  # past the supervisor's 2 s: without the keep-alive it would have cut the motors
    assert sim.supervisor_state == "Flying" and abs(sim.state()[2] - 1.0) < 0.1 and min(sim.motors) > 0.3
    sim.advance(6.0)
    assert app.backup.phase == "landed" and sim.state()[2] < 0.01


# --- each injected fault has its effect -----------------------------------------------------------
def test_crazyflie_loss_latency_and_cut(policy):
    sim = CrazyflieSim(realtime=False, loss=0.2, seed=1)
    link = sim.open_link(lambda raw: None)
    for _ in range(1000):
        link.send(_position(0, 0, 0.5))
    assert 120 < sim.stats.dropped < 280  # 20 % of 1000

    sim = CrazyflieSim(realtime=False, latency_s=0.02)
    got = []
    link = sim.open_link(got.append)
    link.send(_position(0.1, 0.2, 0.3))
    sim.advance(0.01)
    assert sim.commander.setpoint.z == 0.0  # still on its way
    sim.advance(0.02)
    assert sim.commander.setpoint.z == pytest.approx(0.3)
    sim.advance(0.03)  # the boot banner the first setpoint triggered, 20 ms late too
    assert got and b"SYS" in got[0]
    got.clear()
    link.send(crtp.packet(crtp.LINK, 0, b"ping"))  # link echo: 20 ms in, 20 ms out
    sim.advance(0.03)
    assert not got
    sim.advance(0.02)
    assert got and got[-1].endswith(b"ping")

    sim = CrazyflieSim(realtime=False, cut_at=0.05)
    got = []
    link = sim.open_link(got.append)
    link.send(crtp.packet(crtp.LINK, 0, b"a"))
    assert got
    sim.advance(0.06)
    link.send(_position(0, 0, 0.7))
    link.send(crtp.packet(crtp.LINK, 0, b"b"))
    assert len(got) == 1 and sim.commander.setpoint.z == 0.0 and sim.link_cut()


def test_crazyflie_sensor_faults_reach_the_firmware_not_the_physics(policy):
    sim, link, _ = _hover(policy, seconds=3.0, stuck_sensor="z", sensor_fault_at=3.0)
    z_stuck = sim.variables()["stateEstimate.z"]
    for _ in range(50):
        _period(sim, link, _position(0.0, 0.0, 1.3))  # the policy climbs, but the estimate does not move
    assert sim.variables()["stateEstimate.z"] == z_stuck and sim.state()[2] > z_stuck + 0.05

    # NaN in z: the app's sensor guard (a non-finite component is fault 1, before the monitor sees it) hands over to
    # the backup, which flies on the last good estimate; the motors keep running
    sim, link, _ = _hover(policy, seconds=3.0, nan_sensor="z", sensor_fault_at=3.0)
    for _ in range(100):
        _period(sim, link, _position(0.0, 0.0, 1.0))
    v = sim.variables()
    assert v["edgectl.fault"] == FAULT_OBSERVATION and math.isnan(v["stateEstimate.z"]) and v["stateEstimateZ.z"] == 0
    assert all(v[f"edgectl.f{i}"] > 0.05 for i in range(1, 5)) and sim.state()[2] > 0.8


def test_weak_motor(policy):
    # 85 %: the identified Crazyflie 2.1 has a thrust-to-weight of 1.7, and a rotor at 70 % (the paper's model
    # flew that) leaves too little to balance roll, pitch and yaw at once: the fixture sank to the floor.
    sim, link, _ = _hover(policy, seconds=4.0, weak_motor=(2, 0.85))
    from edgectl.plant import quadrotor as qd
    rotor = sim.state()[qd.MOTOR]
    # motor 2 turns sqrt(0.85) as fast as commanded (above idle): the policy has to command it harder than the
    # others to hold (its rotor state lags the command, with a 0.249 s fall, so compare the commands)
    assert sim.motors[1] > max(sim.motors[i] for i in (0, 2, 3)) and rotor[1] < sim.motors[1] + 0.05
    assert abs(sim.state()[2] - 1.0) < 0.15
    with pytest.raises(ValueError, match="weak_motor"):
        CrazyflieSim(realtime=False, weak_motor=(5, 0.5))
    with pytest.raises(ValueError, match="nan_sensor 'q'"):
        CrazyflieSim(realtime=False, nan_sensor="q")


def test_mavlink_faults_and_nan_sensor_fails_safe(tmp_path):
    from pymavlink import mavutil

    from edgectl.bundle import load_bundle
    from edgectl.runtime.loop import BACKUP, ControlLoop, LoopConfig
    from edgectl.safety.backup import BackupController
    from firmware_bridge.sim.mavlink.sim_vehicle import SimVehicle

    v = SimVehicle("udpin:127.0.0.1:0", speed=0, loss=0.5, seed=0)
    try:
        host, port = v.address
        gcs = mavutil.mavlink_connection(f"udpout:{host}:{port}", source_system=255)
        for _ in range(200):
            gcs.mav.heartbeat_send(6, 8, 0, 0, 0)
        for _ in range(5):
            v.tick()
        assert 60 < v.counters["dropped_in"] < 140 and v.counters["dropped_out"] > 0
        gcs.close()
    finally:
        v.conn.close()

    # NaN altitude from the vehicle: the host loop hands over to its backup (latched), never motors off
    bundle = load_bundle(BUNDLE)
    platform = link_cut._platform(bundle)
    v = SimVehicle("udpin:127.0.0.1:0", speed=0, seed=0, nan_sensor="z", sensor_fault_at=1.0)
    try:
        from edgectl.plant import quadrotor as qd
        v.phys.state[0:3] = link_cut.REF
        v.phys.state[qd.MOTOR] = BackupController(platform).model.hover_motor
        link = link_cut.LockstepMavlink(v, link_cut.Trace())
        loop = ControlLoop(link, bundle.act, bundle.contract, BackupController(platform),
                           LoopConfig(rate_hz=100, seconds=2.0, realtime=False), ref=tuple(link_cut.REF))
        rep = loop.run()
        assert rep.final_mode == BACKUP and any("not finite" in e[3] for e in rep.events)  # the sensor guard names the component
        assert rep.events[0][0] == pytest.approx(1.0, abs=0.02)
        assert v.armed and v.phys.pos[2] > 0.7 and np.all(v.phys.state[qd.MOTOR] > 0.3)
    finally:
        v.conn.close()


# --- edgectl run on a Crazyflie: the policy on board ---------------------------------------------
def test_cli_run_flies_the_policy_on_board_of_a_simulated_crazyflie(tmp_path):
    from typer.testing import CliRunner

    from edgectl.cli import app
    from edgectl.runtime.flightlog import read_log

    sim = CrazyflieSim(VEHICLE, bundle=BUNDLE, onboard_impl="numpy")
    uri = sim.serve_inprocess("test/onboard")
    sim.start()
    try:
        log = tmp_path / "cf.mcap"  # the one schema as MCAP (tests/test_flightlog.py: as CSV too)
        r = CliRunner().invoke(app, ["run", str(BUNDLE), "--uri", uri, "--seconds", "1.5", "--ref", "0,0,0.4",
                                     "--log", str(log), "--json"])
        assert r.exit_code == 0, r.output
        s = json.loads(r.stdout.strip().splitlines()[-1])
        assert s["backend"].startswith("on board") and s["ticks"] == 150 and s["final_mode"] == "nominal"
        assert s["position_error_m"]["max"] < 0.1
        assert sim.param("stabilizer.controller") == 6 and sim.variables()["edgectl.steps"] > 150
        d = read_log(log)
        # a1..a4: the app's forces as actions (NaN on a tick whose log sample had not arrived)
        assert np.all(d["ref_z"] == 0.4) and np.isfinite(d["a1"]).mean() > 0.9 and np.nanmax(np.abs(d["z"] - 0.4)) < 0.1
        assert np.isfinite(d["robustness"]).mean() > 0.9 and np.nanmin(d["robustness"]) > 0.3  # the host's monitor
        assert sim.state()[2] < 0.1  # landed at the end of the run
        assert len(d["t"]) == 150 and d["controller"][-1] == "nominal"
        from test_flightlog import plot_both
        plot_both(log, tmp_path)
    finally:
        sim.close()

    bare = CrazyflieSim()  # stock firmware: no edgectl app
    uri = bare.serve_inprocess("test/bare")
    bare.start()
    try:
        r = CliRunner().invoke(app, ["run", str(BUNDLE), "--uri", uri, "--seconds", "1"])
        assert r.exit_code == 2 and f"--uri {uri}: the vehicle does not carry the edgectl app" in r.output
        assert "flash an app built with edgectl export --target crazyflie" in r.output
    finally:
        bare.close()


def test_sim_vehicle_cli_hook_reports_the_app_and_the_faults(capsys):
    from firmware_bridge.cli_hooks import sim_vehicle_main
    rc = sim_vehicle_main("crazyflie", uri="udp://127.0.0.1:0", bundle=BUNDLE, onboard="numpy", duration=0.2,
                          faults={"loss": 0.1, "cut_at": 5.0, "weak_motor": (2, 0.7)})
    out = capsys.readouterr().out
    assert rc == 0 and "C compiled for this host, numpy (bundle) policy" in out and "loss=0.1" in out
    assert "weak_motor=(2, 0.7)" in out
    assert sim_vehicle_main("crazyflie", uri="udp://127.0.0.1:0", faults={"nan_sensor": "nope"}, duration=0.1) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: sim-vehicle crazyflie:") and "nan_sensor 'nope'" in err


def test_rc_car_cut_brakes_on_the_car_and_loss_shows_as_gaps():
    pytest.importorskip("serial")
    pytest.importorskip("cobs")
    import time

    from firmware_bridge.rccar.bridge import RcCarLink
    from firmware_bridge.sim.rccar.sim_car import SimCar

    def drive(link, seconds):
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            link.send_command(0.0, 0.6)
            time.sleep(0.02)

    with SimCar(seed=3) as car, RcCarLink(car.path, command_timeout_ms=100) as link:
        car.loss = 0.2  # after arming: a lost ARM would only fail the connect
        drive(link, 0.6)
        assert link.stats().drops > 0 and car.stats.tx_hooked_out > 0
    with SimCar() as car, RcCarLink(car.path, command_timeout_ms=100) as link:
        drive(link, 0.6)
        assert car.state["vx"] > 0.5
        car.cut_at = car.t  # nothing either way from now on: the car's own watchdog brakes it
        n = link.stats().telemetry
        drive(link, 0.8)
        assert link.stats().telemetry <= n + 1 and car.core.counters()["failsafe"] == 1
        assert abs(car.state["vx"]) < 0.05


def test_onboard_policy_refuses_what_it_cannot_fly(tmp_path):
    with pytest.raises(ValueError, match="expected c, numpy, or an `edgectl export --target c` folder"):
        AppImage(BUNDLE, str(tmp_path))
    (tmp_path / "report.json").write_text(json.dumps({"bundle_weights_sha256": "0" * 64}))
    (tmp_path / "edgectl_policy.c").write_text("")
    with pytest.raises(ValueError, match="exported from another bundle"):
        AppImage(BUNDLE, str(tmp_path))

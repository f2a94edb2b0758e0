"""edgectl run: the fixed-rate loop hands over to the backup on every failure it can see, and logs it."""
import json
import time
from pathlib import Path

import numpy as np
import pytest

from edgectl.bundle import load_bundle
from edgectl.platforms import parse_platform
from edgectl.runtime.flightlog import FlightLog, read_log
from edgectl.runtime.links import SimLink
from edgectl.runtime.loop import BACKUP, NOMINAL, STOPPED, ControlLoop, LoopConfig
from edgectl.safety.backup import BackupController

BUNDLE = Path(__file__).parent / "data" / "hover_bundle"
LINK_BUNDLE = Path(__file__).parent / "data" / "hover_bundle"  # trained with 0-1 period of actuation delay (the platform's range): host-flown links


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(BUNDLE)


@pytest.fixture(scope="module")
def platform():
    return parse_platform((BUNDLE / "platform.toml").read_bytes(), BUNDLE / "platform.toml")


def _loop(bundle, platform, link, policy=None, seconds=2.0, realtime=False, shield=None, log=None, **cfg):
    config = LoopConfig(rate_hz=100.0, seconds=seconds, realtime=realtime, **cfg)
    return ControlLoop(link, policy or bundle.act, bundle.contract, BackupController(platform), config, shield=shield, log=log)


def test_policy_flies_the_sim_link_to_the_reference_and_logs_every_tick(bundle, platform, tmp_path):
    link = SimLink(platform, start_pos=(0.15, -0.1, -0.1))
    log = FlightLog(tmp_path / "f.csv")
    rep = _loop(bundle, platform, link, seconds=3.0, log=log).run()
    log.close()
    assert rep.ticks == 300 and rep.final_mode == NOMINAL and not rep.events
    assert np.linalg.norm(link.x[0:3]) < 0.06  # from 21 cm off to a few cm
    data = read_log(tmp_path / "f.csv")
    assert len(data["t"]) == 300 and np.all(data["controller"] == "nominal")
    assert abs(data["x"][0] - 0.15) < 1e-6 and np.all(np.abs(data["a1"]) <= 1.0)


def test_link_loss_hands_over_to_backup_then_safe_stop(bundle, platform):
    link = SimLink(platform, drop_after=50)
    loop = _loop(bundle, platform, link, seconds=3.0, stop_after_s=0.5)
    rep = loop.run()
    kinds = [(a, b) for _, a, b, _ in rep.events]
    assert kinds == [(NOMINAL, BACKUP), (BACKUP, STOPPED)]
    assert "link silent" in rep.events[0][3] and "safe stop" in rep.events[1][3]
    assert rep.events[0][0] == pytest.approx(0.50, abs=0.011)  # the first silent tick, not later
    assert rep.events[1][0] - rep.events[0][0] == pytest.approx(0.5, abs=0.011)  # stop_after_s of silence
    assert link.stopped and rep.final_mode == STOPPED


def test_nan_state_and_failing_policy_hand_over_to_backup(bundle, platform):
    rep = _loop(bundle, platform, SimLink(platform, nan_at=30), seconds=1.0).run()
    assert rep.events[0][2] == BACKUP and "sensor: pos[2] not finite" in rep.events[0][3]  # sensor_guard.py names the component

    calls = {"n": 0}

    def flaky(obs):
        calls["n"] += 1
        if calls["n"] > 20:
            raise RuntimeError("onnxruntime session lost")
        return bundle.act(obs)
    link = SimLink(platform)
    rep = _loop(bundle, platform, link, policy=flaky, seconds=2.0).run()
    assert rep.events[0][2] == BACKUP and "RuntimeError: onnxruntime session lost" in rep.events[0][3]
    assert abs(link.x[2]) < 0.3 and np.all(np.isfinite(link.x))  # the backup kept it flying level

    rep = _loop(bundle, platform, SimLink(platform), policy=lambda o: np.full((1, 4), np.nan), seconds=0.5).run()
    assert "non-finite action" in rep.events[0][3]


def test_deadline_overruns_hand_over_to_backup(bundle, platform):
    def slow(obs):
        time.sleep(0.013)  # longer than the 10 ms period
        return bundle.act(obs)
    rep = _loop(bundle, platform, SimLink(platform), policy=slow, seconds=0.3, realtime=True, max_misses=3).run()
    assert rep.misses >= 3
    assert rep.events[0][2] == BACKUP and "3 deadline overruns in a row" in rep.events[0][3]
    s = rep.summary()
    assert s["period_error_ms"]["max"] > 0 and s["nominal_fraction"] < 0.2


def test_shielded_run_keeps_nominal_policy_in_control(bundle, platform):
    from edgectl.safety.shield import Shield
    link = SimLink(platform, start_pos=(0.1, 0.0, 0.0))
    rep = _loop(bundle, platform, link, seconds=2.0, shield=Shield(bundle.act, bundle.contract, platform)).run()
    assert rep.summary()["nominal_fraction"] >= 0.95


def test_cli_run_with_exported_c_policy_and_plot(tmp_path):
    from typer.testing import CliRunner

    from edgectl.cli import app
    from export.targets import export
    exp = tmp_path / "c"
    export(BUNDLE, "c", exp, samples=200)
    log = tmp_path / "flight.csv"
    r = CliRunner().invoke(app, ["run", str(BUNDLE), "--uri", "sim://0.1,0,0", "--seconds", "1", "--policy", str(exp),
                                 "--no-shield", "--as-fast-as-possible", "--log", str(log), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["backend"] == "compiled C (float32)" and summary["ticks"] == 100 and summary["final_mode"] == "nominal"
    r = CliRunner().invoke(app, ["plot", str(log)])
    assert r.exit_code == 0 and log.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = CliRunner().invoke(app, ["run", str(BUNDLE), "--uri", "radio://0/80/2M/E7E7E7E7E7", "--seconds", "1"])
    # A Crazyflie URI opens the on-board link (cflib); without a Crazyradio that fails, naming the URI.
    assert r.exit_code == 2 and "radio://0/80/2M/E7E7E7E7E7: could not connect to a Crazyflie" in r.output


@pytest.mark.flaky(reruns=2, reruns_delay=1)  # real time on a shared VM: a descheduled thread fails it (conftest.REALTIME)
def test_cli_run_flies_a_simulated_mavlink_vehicle_to_the_reference(tmp_path):
    """The same command against a vehicle speaking MAVLink 2 over UDP (arm, offboard, actuator controls)."""
    from typer.testing import CliRunner

    from edgectl.cli import app
    from firmware_bridge.sim.mavlink.sim_vehicle import SimVehicle
    v = SimVehicle("udpin:127.0.0.1:0", seed=0).start()
    try:
        host, port = v.address
        r = CliRunner().invoke(app, ["run", str(LINK_BUNDLE), "--uri", f"udpout:{host}:{port}", "--seconds", "3",
                                     "--ref", "0,0,0.3", "--log", str(tmp_path / "m.csv"), "--json"])
        snap = v.snapshot()
    finally:
        v.stop()
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["ticks"] == 300 and summary["final_mode"] == "nominal"
    from test_flightlog import plot_both
    plot_both(tmp_path / "m.csv", tmp_path)  # the MAVLink run's log, as CSV and MCAP
    assert snap["armed"] and snap["mode"] == "OFFBOARD"
    assert abs(snap["pos"][2] - 0.3) < 0.1 and np.linalg.norm(snap["pos"][:2]) < 0.1  # took off to the reference

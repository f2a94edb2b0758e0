"""bench/faults.py, the fault matrix, at a size CI can afford: the rows that meet the goal must report
0 crashes, 0 corrupted frames accepted, 0 silent failures (and 0 failed checks); the known misses are
strict xfails, so fixing one fails here until the test is moved to the goal set.

The full matrix: `python3 bench/faults.py` (figures in README's Measured table); a subset in under 5
minutes: `python3 bench/faults.py --quick --json`."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("cflib")
pytest.importorskip("pymavlink")
pytest.importorskip("serial")

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("faults", ROOT / "bench" / "faults.py")
faults = importlib.util.module_from_spec(_spec)
sys.modules["faults"] = faults  # its dataclasses look their module up
_spec.loader.exec_module(faults)

ZEROS = ("crashes", "corrupted_accepted", "silent_failures", "failures")


def _assert_zeros(rows):
    assert rows
    for r in rows:
        assert all(r[k] == 0 for k in ZEROS), r


@pytest.mark.parametrize("section", ["link", "fuzz", "bundles", "flash", "signing", "sigkill"])
def test_tiny_matrix_meets_the_goal(section):
    out = faults.run_matrix(faults.TINY, seed=0, only=(section,))
    _assert_zeros(out["rows"])
    assert out["goal_met"] and all(out[k] == 0 for k in ZEROS)


def test_flight_log_rows_reach_the_file_at_their_tick(tmp_path):
    """What the sigkill row measures: each row is in the file when its tick logs it (before, ~8 KB of rows sat in
    the process's buffer, about 25 ticks lost at a kill); a torn last row (power loss) is dropped, a malformed
    middle row refused with its line."""
    import numpy as np

    from edgectl.runtime.flightlog import FlightLog, read_log
    from edgectl.runtime.links import State
    log = tmp_path / "f.csv"
    fl = FlightLog(log)
    s = State(0.0, np.zeros(3), np.array([1.0, 0, 0, 0]), np.zeros(3), np.zeros(3))
    for k in range(3):
        fl.write(k / 100, 0.0, 0.0, "nominal", "", s, (0, 0, 1), np.zeros(4), 0.0)
        assert faults._complete_rows(log) == k + 1
    raw = log.read_bytes()
    log.write_bytes(raw + raw.splitlines(keepends=True)[-1][:40])  # a torn fourth row
    assert len(read_log(log)["t"]) == 3
    lines = raw.splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:2] + [lines[2][:40] + b"\n"] + lines[3:]))
    with pytest.raises(ValueError, match="line 3: .* fields, expected 27"):
        read_log(log)
    fl.close()


@pytest.mark.xfail(strict=True, reason="known miss: a Crazyflie flown from the host (stock firmware, velocity "
                   "setpoints) falls when the link is cut: the firmware levels it out at 0.5 s and cuts the motors at 2 s")
def test_known_miss_crazyflie_host_flown_link_cut():
    _assert_zeros(faults.section_link(replace(faults.TINY, link_vehicles=("crazyflie host-flown",)), seed=0))


@pytest.mark.xfail(strict=True, reason="known miss: the rc car's watchdog (200 ms) then neutral steering and full "
                   "brake leaves a curve: the first cut of seed 0 (6.1 s) touches the corridor edge")
def test_known_miss_rc_car_link_cut():
    _assert_zeros(faults.section_link(replace(faults.TINY, link_vehicles=("rc car",)), seed=0))


def test_nan_sensor_on_board():
    """The app's sensorGuard (export/crazyflie/edgectl_controller.c.in): the backup holds the last good estimate of
    the bad component and lands in place (drift was 15.6 m when it dropped the whole state)."""
    _assert_zeros(faults.section_sensors(replace(faults.TINY, sensors=(("nan", "z"),),
                                                 sensor_vehicles=("crazyflie on board",)), seed=0))


@pytest.mark.xfail(strict=True, reason="known miss: the on-board app does not check for a stuck sensor "
                   "(EDGECTL_STUCK_SAMPLES 0: with 5 it faulted healthy noise-free simulated hovers)")
def test_known_miss_stuck_sensor_on_board():
    _assert_zeros(faults.section_sensors(replace(faults.TINY, sensors=(("stuck", "z"),),
                                                 sensor_vehicles=("crazyflie on board",)), seed=0))


def test_stuck_and_nan_sensors_host_loop():
    """edgectl/runtime/sensor_guard.py: a frozen z is told after 5 samples, a NaN at once; the backup lands in
    place on the last good estimate (dead reckoning)."""
    _assert_zeros(faults.section_sensors(replace(faults.TINY, sensors=(("stuck", "z"), ("nan", "z")),
                                                 sensor_vehicles=("mavlink",)), seed=0))


def test_cli_json_last_line_and_exit_status(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "faults.py"), "--only", "fuzz,signing", "--quick", "--json"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=600)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 0, r.stdout + r.stderr
    assert all(isinstance(out[k], int) and out[k] == 0 for k in ZEROS)
    assert {row["section"] for row in out["rows"]} == {"fuzz", "signing"} and out["quick"] is True
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "faults.py"), "--only", "nope"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error: --only nope")

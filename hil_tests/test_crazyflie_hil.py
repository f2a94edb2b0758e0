"""Hardware-in-the-loop: connect, log and flash-read-back checks against a Crazyflie.

    pytest -m hil hil_tests --hil radio://0/80/2M/E7E7E7E7E7   # a real vehicle (or EDGECTL_CF_URI=...)
    pytest -m hil hil_tests                                     # the simulated one

Without --hil (or EDGECTL_CF_URI) the same checks run against edgectl's simulated Crazyflie (in-process),
so the suite itself stays tested. Nothing here spins a motor. Flashing a real vehicle needs a real
image, EDGECTL_CF_IMAGE=path/to/cf2.bin (or an app folder with build/cf2.bin), and is skipped
without one: random bytes would leave a real Crazyflie without firmware.
"""
from __future__ import annotations

import itertools
import os
import random
import time

import numpy as np
import pytest

pytestmark = pytest.mark.hil
cflib = pytest.importorskip("cflib", reason="the Crazyflie checks need cflib")


@pytest.fixture(scope="module")
def target(cf_uri):
    """(uri, simulated vehicle or None)."""
    if cf_uri:
        yield cf_uri, None
        return
    from firmware_bridge.sim.crazyflie.sim_vehicle import CrazyflieSim

    sim = CrazyflieSim()
    uri = sim.serve_inprocess("hil/default")
    sim.start()
    yield uri, sim
    sim.close()


def test_connects_and_the_tocs_have_what_edgectl_needs(target):
    from cflib.crazyflie import Crazyflie
    from cflib.crazyflie.syncCrazyflie import SyncCrazyflie

    from firmware_bridge.crazyflie.bridge import STATE_VARIABLES
    from firmware_bridge.crazyflie.transports import ensure_drivers

    uri, _ = target
    ensure_drivers(uri)
    with SyncCrazyflie(uri, cf=Crazyflie()) as scf:
        scf.wait_for_params()
        assert scf.cf.platform.get_protocol_version() >= 4, "edgectl uses the version-2 TOC and log protocol"
        toc = scf.cf.log.toc
        missing = [n for n in STATE_VARIABLES if toc.get_element_by_complete_name(n) is None]
        assert not missing, f"{uri}: the firmware does not log {missing}"
        assert scf.cf.param.get_value("stabilizer.controller") is not None


def test_streams_state_at_the_log_rate(target):
    from firmware_bridge.crazyflie.bridge import CrazyflieLink

    uri, _ = target
    with CrazyflieLink(uri, connect_timeout=10.0, period_ms=10) as link:
        states, t0 = [], time.monotonic()
        while time.monotonic() - t0 < 1.0:
            state = link.next_state(timeout=1.0)
            if state is None:
                break
            states.append(state)
        stats = link.stats()
    assert len(states) > 50, f"{uri}: {len(states)} state samples in 1 s at a 10 ms period"
    last = states[-1]
    assert abs(np.linalg.norm(last.quat_wxyz) - 1.0) < 5e-3
    assert 3.0 < last.vbat < 4.35, f"{uri}: battery at {last.vbat:.2f} V"
    assert stats.latency_ms is None or stats.latency_ms < 100.0


def test_param_write_reads_back(target):
    from firmware_bridge.crazyflie.bridge import CrazyflieLink

    uri, _ = target
    with CrazyflieLink(uri, connect_timeout=10.0) as link:
        before = link.get_param("stabilizer.controller")
        link.set_param("stabilizer.controller", int(before))  # write the same value: nothing changes
        deadline = time.monotonic() + 2.0
        while link.get_param("stabilizer.controller") != before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert link.get_param("stabilizer.controller") == before


def test_flash_reads_back_equal(target):
    from firmware_bridge.crazyflie.flash import flash

    uri, sim = target
    if sim is None:
        image = os.environ.get("EDGECTL_CF_IMAGE")
        if not image:
            pytest.skip("set EDGECTL_CF_IMAGE to a real cf2.bin to flash a real Crazyflie")
        report = flash(uri, image, verify=True, retries=1)
    else:
        image = random.Random(5).randbytes(50 * 1024)
        report = flash(uri, image, verify=True, reply_timeout=0.2)
        assert sim.mode == "firmware"  # booted back into the (new) firmware
    assert report.verified and report.booted, str(report)
    # the vehicle comes back up and answers again
    from firmware_bridge.crazyflie.bridge import CrazyflieLink

    for attempt in itertools.count():
        try:
            with CrazyflieLink(uri, connect_timeout=5.0):
                break
        except Exception:
            if attempt >= 2:
                raise

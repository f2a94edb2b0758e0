"""MAVLink against a real vehicle or SITL: connect, heartbeat, state. Never arms.

    EDGECTL_MAVLINK_URL=udpin:0.0.0.0:14540 pytest -m hil hil_tests/test_mavlink_hil.py
    (optional) EDGECTL_MAVLINK_KEY=<64 hex digits or passphrase> for a signed link

The vehicle should be powered, at rest on the bench (the accelerometer check assumes it).
"""
from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest

pytestmark = pytest.mark.hil

URL = os.environ.get("EDGECTL_MAVLINK_URL")
if not URL:
    pytest.skip("EDGECTL_MAVLINK_URL not set (e.g. udpin:0.0.0.0:14540)", allow_module_level=True)
pytest.importorskip("pymavlink")

from firmware_bridge.mavlink import MavlinkLink, signing_key_from_text  # noqa: E402

KEY = os.environ.get("EDGECTL_MAVLINK_KEY")


@pytest.fixture(scope="module")
def link():
    with MavlinkLink(URL, signing_key=signing_key_from_text(KEY) if KEY else None, connect_timeout=10.0) as ln:
        yield ln


def test_heartbeat_identifies_an_autopilot(link):
    assert link.autopilot in ("px4", "ardupilot"), f"{URL}: autopilot {link.autopilot!r}"
    assert link.wire_protocol == "2.0"
    assert link.last_heartbeat.get_msgbuf()[0] == 0xFD, f"{URL}: vehicle answers in MAVLink 1"
    if KEY:
        assert link.last_heartbeat.get_signed(), f"{URL}: signing requested but the vehicle's heartbeat is unsigned"
    t = link.state().t
    time.sleep(2.5)  # heartbeats (1 Hz) keep coming
    assert link.state().t > t


def test_state_arrives_and_is_sane(link):
    s = link.wait_state(lambda s: s.t_attitude is not None, timeout=5.0)
    assert abs(np.linalg.norm(s.quat_wxyz) - 1.0) < 1e-3
    assert np.all(np.isfinite(s.omega)) and np.all(np.abs(s.omega) < 0.5), f"at rest, but omega {s.omega}"
    tilt = math.degrees(math.acos(np.clip(1 - 2 * (s.quat_wxyz[1] ** 2 + s.quat_wxyz[2] ** 2), -1, 1)))
    assert tilt < 30, f"vehicle tilted {tilt:.0f} deg: on the bench, body z (up, FLU) should point up (ENU)"
    try:
        s = link.wait_state(lambda s: s.t_position is not None, timeout=5.0)
        assert np.all(np.isfinite(s.pos)) and np.all(np.isfinite(s.vel))
    except TimeoutError:
        pytest.skip(f"{URL}: no LOCAL_POSITION_NED (no position estimate yet); attitude checked only")


def test_accelerometer_reads_plus_g_up_at_rest(link):
    try:
        link.request_message_interval("HIGHRES_IMU", 20)
    except Exception:
        pass  # ArduPilot may refuse; it streams RAW_IMU instead
    try:
        s = link.wait_state(lambda s: np.linalg.norm(s.accel) > 1.0, timeout=3.0)
    except TimeoutError:
        pytest.skip(f"{URL}: no HIGHRES_IMU")
    assert abs(s.accel[2] - 9.81) < 1.5, f"FLU specific force should be about +g on z at rest, got {s.accel}"

"""RC car link against a real car MCU (firmware/edgectl_car.ino) on a serial port.

    EDGECTL_RCCAR_PORT=/dev/ttyACM0 pytest -m hil hil_tests/test_rccar_hil.py
    (optional) EDGECTL_RCCAR_BAUD=115200
    (optional) EDGECTL_RCCAR_ALLOW_MOTION=1   also drive: WHEELS OFF THE GROUND (car on a stand)

Without EDGECTL_RCCAR_ALLOW_MOTION=1 no COMMAND with a non-zero value is ever sent: the tests arm
(neutral + brake), send neutral commands, let the watchdog trip and disarm.
Works against `edgectl sim-vehicle rc-car` too (point the port at the pty it prints).
"""
from __future__ import annotations

import os
import struct
import time

import pytest

pytestmark = pytest.mark.hil

PORT = os.environ.get("EDGECTL_RCCAR_PORT")
if not PORT:
    pytest.skip("EDGECTL_RCCAR_PORT not set (e.g. /dev/ttyACM0)", allow_module_level=True)
pytest.importorskip("serial")
pytest.importorskip("cobs")

from firmware_bridge.rccar import protocol as P  # noqa: E402
from firmware_bridge.rccar.bridge import RcCarLink  # noqa: E402
from firmware_bridge.rccar.protocol import MsgType  # noqa: E402

BAUD = int(os.environ.get("EDGECTL_RCCAR_BAUD", "115200"))
MOTION = os.environ.get("EDGECTL_RCCAR_ALLOW_MOTION") == "1"


@pytest.fixture(scope="module")
def link():
    with RcCarLink(PORT, BAUD, arm=False, connect_timeout=5.0, command_timeout_ms=200) as ln:
        yield ln


def neutral_for(link, seconds):
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        link.send_command(0.0, 0.0)
        time.sleep(0.02)


def test_heartbeats_keep_coming_and_echo(link):
    n0 = link.stats().frames_ok
    time.sleep(1.5)
    st = link.stats()
    assert st.frames_ok > n0 and st.car_restarts == 0
    assert st.rtt_ms and st.rtt_ms["n"] >= 3, f"{PORT}: the car does not echo heartbeats ({st.rtt_ms})"
    assert st.rtt_ms["p95"] < 50.0, f"{PORT}: heartbeat round trip p95 {st.rtt_ms['p95']:.1f} ms"
    print(f"{PORT}: heartbeat RTT {st.rtt_ms}")


def test_telemetry_rate_and_values_at_rest(link):
    s = link.wait_state(lambda s: True, 1.0)
    time.sleep(1.2)
    st = link.stats()
    assert 45.0 < st.telemetry_hz < 55.0, f"{PORT}: telemetry at {st.telemetry_hz:.1f} Hz, expected 50"
    assert st.frames_bad == 0 and st.drops <= 1, st
    s = link.state()
    assert not s.armed and s.brake and s.steer == 0 and s.throttle == 0
    assert abs(s.speed) < 0.05, f"{PORT}: car at rest reports {s.speed} m/s"
    if s.battery > 0:
        assert 5.0 < s.battery < 30.0, f"{PORT}: battery {s.battery} V"
    print(f"{PORT}: telemetry {st.telemetry_hz:.1f} Hz, battery {s.battery:.2f} V, sim={s.simulated}")


def test_arm_neutral_watchdog_disarm(link):
    link.arm()
    s = link.wait_state(lambda s: s.armed, 1.0)
    assert s.failsafe and s.brake, "armed but not commanded: must hold neutral + brake"
    neutral_for(link, 0.3)
    s = link.wait_state(lambda s: not s.failsafe, 0.5)
    t_stop = time.monotonic()
    s = link.wait_state(lambda s: s.failsafe, 1.0)
    assert s.t - t_stop < 0.2 + 0.1, f"{PORT}: failsafe {s.t - t_stop:.3f} s after the last command (timeout 0.2 s)"
    assert s.throttle == 0 and s.brake
    assert link.stats().car_errors.get("WATCHDOG", 0) >= 1
    link.disarm()
    assert not link.state().armed or link.wait_state(lambda s: not s.armed, 0.5)


def test_bad_frames_are_refused_and_counted(link):
    before = link.state().car_rx_errors
    errs = dict(link.stats().car_errors)
    payload = bytes([P.VERSION, MsgType.COMMAND]) + struct.pack("<HhhH", 60000, 0, 3000, 200)  # throttle 3000
    bad_value = P.cobs.encode(payload + P.crc16(payload).to_bytes(2, "little")) + b"\x00"
    bad_crc = bytearray(P.encode(P.Arm(), 60001))
    bad_crc[2] ^= 0x01
    link._write(bad_value + bytes(bad_crc))
    s = link.wait_state(lambda s: s.car_rx_errors >= before + 2, 1.0)
    assert not s.armed, "a corrupted ARM must not arm the car"
    assert link.stats().car_errors.get("VALUE", 0) == errs.get("VALUE", 0) + 1


@pytest.mark.skipif(not MOTION, reason="set EDGECTL_RCCAR_ALLOW_MOTION=1 (wheels off the ground) to drive")
def test_drive_briefly_then_failsafe(link):
    link.arm()
    t_end = time.monotonic() + 1.0
    while time.monotonic() < t_end:
        link.send_command(0.3, 0.15)
        time.sleep(0.02)
    s = link.state()
    assert s.throttle == pytest.approx(0.15) and s.steer == pytest.approx(0.3) and not s.failsafe
    if s.speed == 0 and s.erpm == 0:
        pytest.skip(f"{PORT}: no wheel speed sensor reporting; outputs checked only")
    assert s.speed > 0 or s.erpm > 0
    s = link.wait_state(lambda s: s.failsafe, 1.0)  # stop commanding: the car must brake by itself
    assert s.throttle == 0 and s.brake
    link.stop()

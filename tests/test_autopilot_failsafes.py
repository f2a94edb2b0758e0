"""edgectl's simulated PX4 and ArduPilot (firmware_bridge/sim/mavlink/sim_vehicle.py, what CI flies instead of the
autopilots) against what the real ones did when the companion computer fell silent mid-manoeuvre.

The recording, tests/data/autopilot_sitl_setpoint_loss.json, comes from real PX4 (v1.17.0-alpha1) and ArduCopter
(4.7.0-dev) SITL builds flying edgectl's X500 physics (`python3 bench/autopilot_sitl.py px4|ardupilot --build DIR
--setpoint-loss F`, docs/autopilot_sitl.md). The same probe (bench/autopilot_sitl.py setpoint_loss: a hold, a yaw
turn at 0.3 rad/s, then silence, through edgectl's MavlinkLink) flies the simulated vehicle here, from the same
height, so the two are compared like for like:
- how long the autopilot keeps flying the last rate setpoint (PX4 COM_OF_LOSS_T 1 s: 1.3 s measured; ArduPilot
  GUID_TIMEOUT 3 s: 3.3 s);
- the mode that follows (PX4 without RC: POSCTL, which cannot run without sticks, so PX4 descends at
  MPC_LAND_SPEED and disarms on the ground; with COM_OBL_RC_ACT 5: AUTO.LOITER, holding; ArduPilot: none, it
  levels and holds its height in GUIDED_NOGPS);
- whether the height holds, or how fast it descends, and whether and when it disarms;
- then, where the real one was still in the air, its own LAND mode (bench/autopilot_sitl.py land_and_wait): the
  descent rate (PX4 MPC_LAND_SPEED 0.7 m/s: 0.68 measured; ArduCopter LAND_SPEED 0.5 m/s: 0.52) and the time from
  touchdown to the disarm (PX4 3.7 s, ArduCopter 3.1 s).
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RECORDING = REPO / "tests" / "data" / "autopilot_sitl_setpoint_loss.json"
_spec = importlib.util.spec_from_file_location("autopilot_sitl_bench", REPO / "bench" / "autopilot_sitl.py")
B = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(B)

# recording key -> (sim identity, its version as recorded, platform the real SITL flew, autopilot parameters)
CASES = {
    "px4": ("px4", (1, 17, 0), "px4_x500_v2", {}),
    "px4_hold": ("px4", (1, 17, 0), "px4_x500_v2", {"COM_OBL_RC_ACT": 5}),
    "ardupilot": ("ardupilot", (4, 7, 0), "x500_v2_ardupilot", {"GUID_OPTIONS": 8, "GUID_TIMEOUT": 3}),
}


def test_the_recording_is_of_the_real_autopilots_and_says_what_they_did():
    rec = json.loads(RECORDING.read_text())
    assert set(rec["runs"]) == set(CASES)
    for key, run in rec["runs"].items():
        assert run["version"].startswith("PX4 1.17" if key.startswith("px4") else "ArduCopter 4.7"), run["version"]
        assert run["samples"] > 300 and run["watch_s"] > 9.5
    # the facts the simulated vehicle was rewritten from (session 14): PX4 without RC does not hold, it descends
    px4, hold, ap = (rec["runs"][k] for k in ("px4", "px4_hold", "ardupilot"))
    assert px4["failsafe_mode"] == "POSCTL" and px4["descent_m_s"] > 0.5 and px4["disarmed_s"] is not None
    assert hold["failsafe_mode"] == "LOITER" and abs(hold["height_change_after_fallback_m"]) < 0.1 and hold["disarmed_s"] is None
    assert ap["failsafe_mode"] is None and abs(ap["height_change_after_fallback_m"]) < 0.1 and 3.0 < ap["held_setpoint_s"] < 3.6


@pytest.mark.realtime
@pytest.mark.parametrize("case", list(CASES))
def test_the_simulated_autopilot_falls_back_as_the_real_one_did(case):
    from edgectl.platforms import load_platform
    from firmware_bridge.sim.mavlink.sim_vehicle import SimVehicle
    from train_fast.tasks.ctbr_action import hover_actions
    real = json.loads(RECORDING.read_text())["runs"][case]
    identity, version, platform, params = CASES[case]
    hover = 0.5 * (hover_actions(load_platform(platform))[0] + 1.0)  # edgectl's model of the autopilot's hover thrust
    v = SimVehicle("udpin:127.0.0.1:0", seed=0, identity=identity, version=version, parameters=params,
                   platform=platform).start()
    try:
        host, port = v.address
        # from the ground (the real ones were hovering after their own take-off): climb to the recorded height first
        sim = B.setpoint_loss(f"udpout:{host}:{port}", climb_to=real["height_at_loss_m"], hold_s=8.0, hover_thrust=hover,
                              watch_s=real["watch_s"])
        landing = _land(v, identity) if real["landing"]["descent_m_s"] is not None else None
    finally:
        v.stop()
    brief = {k: sim[k] for k in sim if k != "series"}
    assert sim["mode_engaged"] == real["mode_engaged"], brief
    assert sim["failsafe_mode"] == real["failsafe_mode"], brief
    assert abs(sim["held_setpoint_s"] - real["held_setpoint_s"]) < 0.4, brief
    if real["mode_changed_s"] is not None:  # HEARTBEAT at 1 Hz, on both
        assert abs(sim["mode_changed_s"] - real["mode_changed_s"]) < 1.1, brief
    if real["descent_m_s"] is not None:
        assert sim["descent_m_s"] is not None and abs(sim["descent_m_s"] / real["descent_m_s"] - 1.0) < 0.25, brief
    else:
        assert sim["descent_m_s"] is None and abs(sim["height_change_after_fallback_m"]) < 0.1, brief
    assert (sim["disarmed_s"] is None) == (real["disarmed_s"] is None), brief
    if real["disarmed_s"] is not None:
        assert abs(sim["disarmed_s"] - real["disarmed_s"]) < 1.5, brief
    if landing is not None:  # the real one was still flying: its own LAND mode, and the simulated one's
        want = real["landing"]
        assert abs(landing["descent_m_s"] / want["descent_m_s"] - 1.0) < 0.15, (landing, want)
        after = landing["disarmed_after_s"] - landing["touchdown_s"]
        assert abs(after - (want["disarmed_after_s"] - want["touchdown_s"])) < 0.8, (landing, want)


def _land(v, identity: str) -> dict:
    """The autopilot's LAND mode (PX4 AUTO.LAND, ArduCopter LAND) asked for over a plain pymavlink link, measured by
    the bench's own land_and_wait."""
    from pymavlink import mavutil
    host, port = v.address
    m = mavutil.mavlink_connection(f"udpout:{host}:{port}", source_system=250)
    try:
        m.mav.heartbeat_send(mavutil.mavlink.MAV_TYPE_GCS, mavutil.mavlink.MAV_AUTOPILOT_INVALID, 0, 0, 0)
        m.wait_heartbeat(timeout=5)
        mode = (4, 6) if identity == "px4" else (9, 0)  # px4_custom_mode.h AUTO / AUTO_LAND; ArduCopter LAND = 9
        return B.land_and_wait(m, lambda: m.mav.command_long_send(
            m.target_system, 1, mavutil.mavlink.MAV_CMD_DO_SET_MODE, 0,
            mavutil.mavlink.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED, *mode, 0, 0, 0, 0), timeout=20.0)
    finally:
        m.close()

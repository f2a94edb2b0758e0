"""Real autopilot SITL bench: ArduCopter and PX4 built from their sources, flying edgectl's physics, and an edgectl
ctbr policy flying them over MAVLink the way a companion computer does.

The autopilots are the real programs (their EKF, attitude and rate loops, mixers, failsafes, MAVLink); the
vehicle's physics is edgectl's, served by `edgectl sitl-server ardupilot|px4 --platform P` (ArduPilot's JSON
interface, PX4's simulator_mavlink lockstep). Nothing here is built by CI: point the bench at your builds.

  ardupilot: ./waf configure --board sitl && ./waf copter (in an ArduPilot checkout; here: master of 2025-07,
             4.7.0-dev, configured with DroneCAN and littlefs off because those submodules were not to be had);
  px4:       make px4_sitl_default (PX4 v1.17.0-alpha1; GIT_SUBMODULES_ARE_EVIL=1 for a checkout without git
             submodules).

    python3 bench/autopilot_sitl.py ardupilot --build ~/ardupilot [--bundle CTBR_BUNDLE] [--hold 30]
    python3 bench/autopilot_sitl.py ardupilot --build ~/ardupilot --record-steps steps.csv
    python3 bench/autopilot_sitl.py px4 --build ~/PX4-Autopilot [--bundle CTBR_BUNDLE] [--hold 30]
    python3 bench/autopilot_sitl.py px4 --build ~/PX4-Autopilot --neural   (PX4 built with CONFIG_MODULES_MC_NN_CONTROL and
                                                                       an `edgectl export --target px4` control_net.cpp)

Each run: the autopilot's own take-off (ArduPilot GUIDED + NAV_TAKEOFF; PX4 NAV_TAKEOFF) and hold, then with
`--bundle` edgectl's MavlinkRateLink + ControlLoop (what `edgectl run BUNDLE --uri udpin:...` runs) takes over in
the air (ArduPilot GUIDED_NOGPS, PX4 OFFBOARD) with its reference `--offset` from where it took over, and holds it
`--hold` seconds. Printed: the hover error (median, p95, max) after `--settle` s, the modes seen, the autopilot's
version. `--record-steps` flies body-rate steps in GUIDED_NOGPS and writes the response (the recording behind
tests/test_rate_control.py::test_ardupilot_loop_matches_real_arducopter_sitl_rate_steps). `--setpoint-loss F` flies
setpoint_loss() (a hold, a yaw turn, then silence) and records what the autopilot did in F under `--key` (the
recording behind tests/test_autopilot_failsafes.py); `--param NAME=VALUE` sets an autopilot parameter for the run.
Every run ends with the autopilot's own landing, waited for until it disarms.

Exit 0 after a run, 2 with a one-line error for bad input (no build at the path, a bundle that is not ctbr).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

EXTRA_ARDUPILOT_PARAMS = "FRAME_CLASS 1\nFRAME_TYPE 1\nGUID_OPTIONS 8\nGUID_TIMEOUT 3\n"  # Quad-X, thrust as thrust


def wait_msg(m, kind, timeout, cond=lambda x: True):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        x = m.recv_match(type=kind, blocking=True, timeout=0.5)
        if x is not None and cond(x):
            return x
    raise TimeoutError(f"no {kind} in {timeout} s")


def version_of(m, request, param1) -> str:
    """"major.minor.patch" from AUTOPILOT_VERSION, asked for with ``request`` (the one this autopilot answers)."""
    from firmware_bridge.mavlink.autopilots import decode_version, version_text
    m.mav.command_long_send(m.target_system, m.target_component, request, 0, param1, 0, 0, 0, 0, 0, 0)
    return version_text(decode_version(wait_msg(m, "AUTOPILOT_VERSION", 10).flight_sw_version))


def arm_until_accepted(m, before=lambda: None, timeout=120.0) -> float:
    """Ask to arm every 2 s until the HEARTBEAT says armed (EKF alignment and GPS take 5-45 s); the seconds taken."""
    from pymavlink import mavutil
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        before()
        m.mav.command_long_send(m.target_system, m.target_component, mavutil.mavlink.MAV_CMD_COMPONENT_ARM_DISARM,
                                0, 1, 0, 0, 0, 0, 0, 0)
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            x = m.recv_match(type="HEARTBEAT", blocking=True, timeout=0.5)
            if x is not None and x.get_srcSystem() == m.target_system and x.base_mode & mavutil.mavlink.MAV_MODE_FLAG_SAFETY_ARMED:
                return time.monotonic() - t0
    raise RuntimeError(f"the autopilot did not arm in {timeout:.0f} s")


def hold_error(m, seconds: float) -> dict:
    """Distance from where the vehicle was when the hold began, over `seconds` of LOCAL_POSITION_NED."""
    p0 = wait_msg(m, "LOCAL_POSITION_NED", 5)
    target, errs, end = np.array([p0.x, p0.y, p0.z]), [], time.monotonic() + seconds
    while time.monotonic() < end:
        p = m.recv_match(type="LOCAL_POSITION_NED", blocking=True, timeout=1)
        if p is not None:
            errs.append(float(np.linalg.norm(np.array([p.x, p.y, p.z]) - target)))
    e = np.asarray(errs)
    return {"seconds": seconds, "alt_m": float(-target[2]), "median_m": float(np.median(e)),
            "p95_m": float(np.percentile(e, 95)), "max_m": float(e.max())}


def fly_policy(bundle, url: str, seconds: float, offset, settle: float) -> dict:
    """The ctbr policy takes over where the vehicle hovers: MavlinkRateLink + ControlLoop, as `edgectl run` flies."""
    from edgectl.runtime.flightlog import FlightLog, read_log
    from edgectl.runtime.links import MavlinkRateLink
    from edgectl.runtime.loop import ControlLoop, LoopConfig
    from edgectl.safety.ctbr_backup import CtbrBackup
    link = MavlinkRateLink(url, bundle.contract)
    modes, stop = set(), threading.Event()

    def watch():
        while not stop.is_set():
            modes.add(str(link.link.state().mode))
            time.sleep(0.1)
    try:
        start = np.asarray(link.link.wait_state(timeout=10.0).pos, float)
        ref = tuple(float(x) for x in start + np.asarray(offset, float))
        log = Path(tempfile.mkdtemp(prefix="autopilot-sitl-")) / "flight.csv"
        flog = FlightLog(log)
        threading.Thread(target=watch, daemon=True).start()
        rep = ControlLoop(link, bundle.act, bundle.contract, CtbrBackup(bundle.contract),
                          LoopConfig(rate_hz=float(bundle.contract["rate_hz"]), seconds=seconds), log=flog, ref=ref).run()
        stop.set()
        flog.close()
        d = read_log(log)
        e = np.sqrt((d["x"] - d["ref_x"]) ** 2 + (d["y"] - d["ref_y"]) ** 2 + (d["z"] - d["ref_z"]) ** 2)
        after = e[d["t"] >= settle]
        return {"autopilot": link.autopilot, "modes": sorted(modes), "start_error_m": float(e[0]), "settle_s": settle,
                "seconds": seconds, "median_m": float(np.median(after)), "p95_m": float(np.percentile(after, 95)),
                "max_m": float(after.max()), "backup_switches": rep.summary().get("switches"), "log": str(log)}
    finally:
        stop.set()
        link.close()


def hover_throttle(m, seconds: float = 3.0) -> float:
    """The autopilot's throttle while it hovers (VFR_HUD, %), as a 0..1 thrust setpoint."""
    thr, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        v = m.recv_match(type="VFR_HUD", blocking=True, timeout=0.5)
        if v is not None:
            thr.append(v.throttle / 100.0)
    return float(np.mean(thr))


def record_steps(m, out: Path, amp: float = 1.5, engage=None, resume=None, target_component=None) -> dict:
    """Body-rate steps from a hover, thrust at the hover throttle (VFR_HUD), ATTITUDE at 100 Hz: ArduPilot GUIDED_NOGPS
    (default), PX4 OFFBOARD (``engage``/``resume`` switch the mode; setpoints stream from the start, as PX4 needs)."""
    from pymavlink import mavutil
    comp = m.target_component if target_component is None else target_component
    engage = engage or (lambda: m.set_mode(20))  # GUIDED_NOGPS
    resume = resume or (lambda: m.set_mode("GUIDED"))
    hover = hover_throttle(m)
    m.mav.request_data_stream_send(m.target_system, comp, mavutil.mavlink.MAV_DATA_STREAM_EXTRA1, 100, 1)
    m.mav.command_long_send(m.target_system, comp, mavutil.mavlink.MAV_CMD_SET_MESSAGE_INTERVAL, 0,
                            mavutil.mavlink.MAVLINK_MSG_ID_ATTITUDE, 10000, 0, 0, 0, 0, 0)  # PX4 answers this one
    seq = [(1.0, 0, 0, 0), (0.2, amp, 0, 0), (0.2, -amp, 0, 0), (1.0, 0, 0, 0), (0.2, 0, amp, 0), (0.2, 0, -amp, 0),
           (1.0, 0, 0, 0), (0.4, 0, 0, amp / 2), (0.4, 0, 0, -amp / 2), (1.0, 0, 0, 0)]
    sched, t = [], 0.0
    for d, p, q, r in seq:
        sched.append((t, t + d, p, q, r))
        t += d
    rows, t0, next_send, mode_set = [], time.monotonic(), time.monotonic(), False
    while (now := time.monotonic() - t0) <= t:
        cmd = next(((p, q, r) for a, b, p, q, r in sched if a <= now < b), (0, 0, 0))
        if time.monotonic() >= next_send:
            m.mav.set_attitude_target_send(0, m.target_system, comp, 128, [1, 0, 0, 0],
                                           float(cmd[0]), float(cmd[1]), float(cmd[2]), hover)
            next_send += 0.01
            if not mode_set and now > 0.3:
                engage()
                mode_set = True
        x = m.recv_match(type="ATTITUDE", blocking=True, timeout=0.005)
        if x is not None:
            rows.append((now, *cmd, x.roll, x.pitch, x.yaw, x.rollspeed, x.pitchspeed, x.yawspeed))
    resume()
    np.savetxt(out, np.asarray(rows), delimiter=",", fmt="%.5f",
               header=f"t,cmd_p,cmd_q,cmd_r,roll,pitch,yaw,p,q,r (FRD rad, rad/s); hover thrust {hover:.4f}")
    return {"steps_csv": str(out), "rows": len(rows), "hover_thrust": hover}


def setpoint_loss(url: str, *, climb_to: float = 1.0, hold_s: float = 4.0, yaw_rate: float = 0.3, yaw_s: float = 1.0,
                  watch_s: float = 10.0, hover_thrust: float = 0.5, rate_hz: float = 50.0) -> dict:
    """What the autopilot does when the companion computer falls silent mid-manoeuvre.

    Through edgectl's MavlinkLink (firmware_bridge/mavlink/bridge.py, the link `edgectl run` flies), a small
    level-and-altitude-hold law streams body rates and thrust (SET_ATTITUDE_TARGET) at ``rate_hz``: the offboard
    handshake (0.5 s of setpoints, then OFFBOARD / GUIDED_NOGPS and arming, no-ops where already so), ``hold_s``
    holding the altitude it found (or ``climb_to`` m from the ground), then ``yaw_s`` of a ``yaw_rate`` rad/s
    yaw turn (FLU), then nothing. For ``watch_s`` after the last setpoint it samples the mode, armed flag,
    height, yaw rate and tilt. The same function measures the real SITL builds and, in tests/test_autopilot_failsafes.py,
    edgectl's simulated vehicles, so the recording (tests/data/autopilot_sitl_setpoint_loss.json) is compared
    like for like: how long the last rate setpoint is still flown, which mode follows and when, and whether
    the height holds."""
    from firmware_bridge.mavlink.autopilots import OFFBOARD_MODE
    from firmware_bridge.mavlink.bridge import MavlinkLink
    link = MavlinkLink(url, connect_timeout=30.0)
    try:
        for msg in ("ATTITUDE_QUATERNION", "LOCAL_POSITION_NED"):
            try:
                link.request_message_interval(msg, 50.0)
            except Exception:  # noqa: BLE001  the default rate still shows the outcome
                pass
        s0 = link.wait_state(timeout=10.0)
        z_ref = float(s0.pos[2]) if s0.pos[2] > 0.3 else float(climb_to)
        thrust_i, period = float(hover_thrust), 1.0 / rate_hz
        t0 = time.monotonic()
        engaged, rows = False, []
        nxt = t0
        while (now := time.monotonic() - t0) < 0.5 + hold_s + yaw_s:
            s = link.state()
            up_b = _world_up_in_body(s.quat_wxyz)
            rates = 3.0 * np.cross([0.0, 0.0, 1.0], up_b)  # level: rotate body z toward world up
            turning = now >= 0.5 + hold_s
            rates[2] = yaw_rate if turning else 0.0
            ez, vz = z_ref - float(s.pos[2]), float(s.vel[2])
            if engaged and not turning:
                thrust_i = float(np.clip(thrust_i + 0.15 * ez * period, 0.1, 0.9))
            # while turning, the hover thrust the hold found, alone: the last setpoint carries no P or D term that would
            # climb or sink the vehicle while the autopilot keeps flying it after the silence
            thrust = float(np.clip(thrust_i + (0.0 if turning else 0.25 * ez - 0.2 * vz), 0.05, 0.95)) / max(up_b[2], 0.5)
            link.send_body_rates(rates, min(thrust, 1.0))
            if not engaged and now >= 0.5:
                link.set_mode(OFFBOARD_MODE[link.autopilot])
                if not link.state().armed:
                    link.arm()
                engaged = True
            nxt += period
            time.sleep(max(0.0, nxt - time.monotonic()))
        mode0, t_last = link.state().mode, time.monotonic()
        while (now := time.monotonic() - t_last) < watch_s:
            s = link.state()
            up_b = _world_up_in_body(s.quat_wxyz)
            rows.append((now, s.mode, bool(s.armed), float(s.pos[2]), float(s.omega[2]),
                         float(np.degrees(np.arccos(np.clip(up_b[2], -1.0, 1.0))))))
            time.sleep(0.02)
        return loss_summary(rows, mode0, yaw_rate, link.autopilot)
    finally:
        link.close()


def _world_up_in_body(q) -> np.ndarray:
    w, x, y, z = (float(c) for c in q)
    return np.array([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)])


def loss_summary(rows, mode0: str, yaw_rate: float, autopilot: str) -> dict:
    """The figures of a setpoint_loss run: rows (s after the last setpoint, mode, armed, height m ENU, yaw rate
    rad/s FLU, tilt deg)."""
    t = np.array([r[0] for r in rows])
    z, wz, tilt = (np.array([r[i] for r in rows], float) for i in (3, 4, 5))
    still = t[wz > 0.5 * yaw_rate]
    changed = next((r for r in rows if r[1] != mode0), None)
    disarmed = next((r for r in rows if not r[2]), None)
    dz = z - z[0]
    falling = np.flatnonzero(dz < -0.3)  # the descent rate where it is under way: from 0.3 m down to 0.3 m above the end
    low = np.flatnonzero(dz < dz.min() + 0.3)
    fallback = np.flatnonzero(t >= (float(still.max()) if still.size else 0.0) + 0.5)  # the autopilot's own from here
    rate = None
    if falling.size and low.size and t[low[0]] - t[falling[0]] > 0.5:
        a, b = falling[0], low[0]
        rate = float((dz[a] - dz[b]) / (t[b] - t[a]))
    return {"autopilot": autopilot, "mode_engaged": mode0, "held_setpoint_s": float(still.max()) if still.size else 0.0,
            "yaw_turned_rad": float(np.sum(0.5 * (wz[1:] + wz[:-1]) * np.diff(t))),
            "failsafe_mode": None if changed is None else changed[1],
            "mode_changed_s": None if changed is None else float(changed[0]),
            "disarmed_s": None if disarmed is None else float(disarmed[0]),
            "height_at_loss_m": float(z[0]), "height_change_m": float(dz[-1]), "min_height_change_m": float(dz.min()),
            "height_change_after_fallback_m": float(dz[-1] - dz[fallback[0]]) if fallback.size else None,
            "descent_m_s": rate, "max_tilt_deg": float(tilt.max()), "watch_s": float(t[-1]), "samples": len(rows),
            "series": [[round(r[0], 2), r[1], bool(r[2]), round(float(r[3] - z[0]), 3), round(float(r[4]), 3), round(float(r[5]), 1)]
                       for r in rows[::10]]}  # every 10th sample (~0.2 s): s, mode, armed, height change m, yaw rate, tilt


def land_and_wait(m, land, timeout: float = 40.0) -> dict:
    """Ask the autopilot to land (``land()``) and wait for it to disarm on the ground: the seconds taken, the descent
    rate between 0.3 m below the start and 0.3 m above the ground, the touchdown (the first estimate within 5 cm of
    the ground), the height estimate (LOCAL_POSITION_NED) at the end and its lowest."""
    from pymavlink import mavutil
    while m.recv_match(blocking=False) is not None:  # what queued up while nobody read this link is old news
        pass
    track, t0 = [], time.monotonic()
    land()
    disarmed = None
    while time.monotonic() - t0 < timeout and disarmed is None:
        x = m.recv_match(type=["LOCAL_POSITION_NED", "HEARTBEAT"], blocking=True, timeout=0.5)
        if x is None:
            continue
        if x.get_type() == "LOCAL_POSITION_NED":
            track.append((time.monotonic() - t0, -x.z))
        elif x.get_srcSystem() == m.target_system and x.get_srcComponent() == 1 \
                and not x.base_mode & mavutil.mavlink.MAV_MODE_FLAG_SAFETY_ARMED:
            disarmed = round(time.monotonic() - t0, 1)
    t, z = (np.array([r[i] for r in track]) for i in (0, 1))
    out = {"disarmed_after_s": disarmed, "from_m": float(z[0]), "height_estimate_m": float(z[-1]),
           "lowest_estimate_m": float(min(0.0, z.min())), "descent_m_s": None, "touchdown_s": None}
    a, b = np.flatnonzero(z < z[0] - 0.3), np.flatnonzero(z < 0.3)
    if a.size and b.size and t[b[0]] > t[a[0]]:
        out["descent_m_s"] = float((z[a[0]] - z[b[0]]) / (t[b[0]] - t[a[0]]))
    down = np.flatnonzero(z < 0.05)
    out["touchdown_s"] = float(t[down[0]]) if down.size else None
    return out


def in_the_air(a, m, res: dict, companion_url: str, land, neural: bool = False) -> dict:
    """After the autopilot's own take-off: its hold, then what was asked (PX4's mc_nn_control, the ctbr policy, the
    setpoint-loss probe, over the companion link ``companion_url``), then its own landing, to the disarm."""
    res["own_hold"] = hold_error(m, a.hold)
    if neural:
        res["neural"] = fly_neural(m, a.hold)
    if a.bundle is not None:
        res["policy"] = fly_policy(a.bundle, companion_url, a.hold, a.offset, a.settle)
    if a.setpoint_loss:
        res["setpoint_loss"] = dict(setpoint_loss(companion_url, hover_thrust=hover_throttle(m)), version=res["autopilot"])
    res["landing"] = land_and_wait(m, land)
    return res


def run_ardupilot(a, work: Path, procs: list) -> dict:
    from pymavlink import mavutil
    binary = a.build / "build" / "sitl" / "bin" / "arducopter"
    if not binary.is_file():
        raise SystemExit(f"error: {binary}: no ArduCopter SITL build (./waf configure --board sitl && ./waf copter)")
    (work / "edgectl.parm").write_text(EXTRA_ARDUPILOT_PARAMS + "".join(f"{k} {v}\n" for k, v in a.param))
    procs.append(subprocess.Popen([sys.executable, "-m", "edgectl", "sitl-server", "ardupilot", "--platform", a.platform],
                                  stdout=open(work / "server.log", "w"), stderr=subprocess.STDOUT))
    time.sleep(3.0)
    defaults = f"{a.build / 'Tools/autotest/default_params/copter.parm'},{work / 'edgectl.parm'}"
    procs.append(subprocess.Popen([str(binary), "--model", "JSON:127.0.0.1", "--speedup", "1", "--defaults", defaults, "-I0",
                                   "--serial1", "udpclient:127.0.0.1:14551"], cwd=work,
                                  stdout=open(work / "arducopter.log", "w"), stderr=subprocess.STDOUT))
    time.sleep(2.0)
    m = mavutil.mavlink_connection("tcp:127.0.0.1:5760", source_system=250)
    m.wait_heartbeat(timeout=30)
    m.mav.request_data_stream_send(m.target_system, m.target_component, mavutil.mavlink.MAV_DATA_STREAM_ALL, 20, 1)
    res = {"autopilot": "ArduCopter " + version_of(m, mavutil.mavlink.MAV_CMD_REQUEST_MESSAGE, mavutil.mavlink.MAVLINK_MSG_ID_AUTOPILOT_VERSION)}
    res["arm_after_s"] = round(arm_until_accepted(m, before=lambda: m.set_mode("GUIDED")), 1)
    alt = 10.0 if a.record_steps else a.alt
    m.mav.command_long_send(m.target_system, m.target_component, mavutil.mavlink.MAV_CMD_NAV_TAKEOFF, 0, 0, 0, 0, 0, 0, 0, alt)
    wait_msg(m, "LOCAL_POSITION_NED", 60, lambda p: -p.z > 0.96 * alt)
    time.sleep(5.0)
    if a.record_steps:
        res["steps"] = record_steps(m, a.record_steps)
        return res
    return in_the_air(a, m, res, "udpin:127.0.0.1:14551", land=lambda: m.set_mode("LAND"))


def fly_neural(m, seconds: float) -> dict:
    """PX4's own mc_nn_control (built with an `edgectl export --target px4` model in place of its control_net.cpp)
    takes over: its "Neural Control" external mode, the first registered (AUTO / EXTERNAL1), holds where it began."""
    from pymavlink import mavutil
    main_auto, sub_external1 = 4, 11  # px4_custom_mode.h PX4_CUSTOM_MAIN_MODE_AUTO, PX4_CUSTOM_SUB_MODE_EXTERNAL1
    want = (main_auto << 16) | (sub_external1 << 24)
    for _ in range(10):
        m.mav.command_long_send(m.target_system, 1, mavutil.mavlink.MAV_CMD_DO_SET_MODE, 0,
                                mavutil.mavlink.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED, main_auto, sub_external1, 0, 0, 0, 0)
        hb = m.recv_match(type="HEARTBEAT", blocking=True, timeout=1.5)
        if hb is not None and hb.get_srcComponent() == 1 and hb.custom_mode == want:
            break
    else:
        raise RuntimeError("PX4 did not enter its Neural Control mode (AUTO / EXTERNAL1): is mc_nn_control built and running?")
    out = hold_error(m, seconds)
    hb = wait_msg(m, "HEARTBEAT", 3, lambda h: h.get_srcComponent() == 1)
    out["still_neural"] = hb.custom_mode == want
    return out


def run_px4(a, work: Path, procs: list) -> dict:
    from pymavlink import mavutil
    build = a.build / "build" / "px4_sitl_default"
    if not (build / "bin" / "px4").is_file():
        raise SystemExit(f"error: {build / 'bin/px4'}: no PX4 SITL build (make px4_sitl_default)")
    procs.append(subprocess.Popen([sys.executable, "-m", "edgectl", "sitl-server", "px4", "--platform", a.platform],
                                  stdout=open(work / "server.log", "w"), stderr=subprocess.STDOUT))
    time.sleep(3.0)
    (work / "rootfs").mkdir()
    env = dict(os.environ, PX4_SYS_AUTOSTART="10016", PX4_SIM_MODEL="none_iris")  # simulator_mavlink, TCP 4560
    procs.append(subprocess.Popen([str(build / "bin" / "px4"), "-d", str(build / "etc")], cwd=work / "rootfs", env=env,
                                  stdout=open(work / "px4.log", "w"), stderr=subprocess.STDOUT))
    m = mavutil.mavlink_connection("udpin:127.0.0.1:14550", source_system=250)
    hb = m.wait_heartbeat(timeout=60)
    while hb is not None and hb.get_srcComponent() != 1:  # the autopilot, not a camera or gimbal
        hb = m.wait_heartbeat(timeout=10)
    m.target_system, m.target_component = hb.get_srcSystem(), 1
    res = {"autopilot": "PX4 " + version_of(m, mavutil.mavlink.MAV_CMD_REQUEST_AUTOPILOT_CAPABILITIES, 1)}
    for k, v in a.param:  # PX4's own shell client, as `param set` in its console
        subprocess.run([str(build / "bin" / "px4-param"), "set", k, v], cwd=work / "rootfs", check=True, capture_output=True, timeout=10)
    takeoff = lambda: m.mav.command_long_send(m.target_system, 1, mavutil.mavlink.MAV_CMD_NAV_TAKEOFF, 0,  # noqa: E731
                                              0, 0, 0, float("nan"), float("nan"), float("nan"), float("nan"))
    res["arm_after_s"] = round(arm_until_accepted(m, before=takeoff), 1)
    wait_msg(m, "LOCAL_POSITION_NED", 60, lambda p: -p.z > 2.2)  # MIS_TAKEOFF_ALT 2.5 m
    wait_msg(m, "LOCAL_POSITION_NED", 60, lambda p: -p.z > 2.4 and abs(p.vz) < 0.05)
    time.sleep(3.0)
    if a.record_steps:
        px4_mode = lambda main, sub=0: m.mav.command_long_send(  # noqa: E731
            m.target_system, 1, mavutil.mavlink.MAV_CMD_DO_SET_MODE, 0, mavutil.mavlink.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED,
            main, sub, 0, 0, 0, 0)
        # OFFBOARD: px4_custom_mode.h main mode 6; back to AUTO (4) / LOITER (3)
        res["steps"] = record_steps(m, a.record_steps, engage=lambda: px4_mode(6), resume=lambda: px4_mode(4, 3),
                                    target_component=1)
        return res
    land = lambda: m.mav.command_long_send(m.target_system, 1, mavutil.mavlink.MAV_CMD_NAV_LAND, 0, 0, 0, 0, 0, 0, 0, 0)  # noqa: E731
    return in_the_air(a, m, res, "udpin:127.0.0.1:14540", land=land, neural=a.neural)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("autopilot", choices=["ardupilot", "px4"])
    ap.add_argument("--build", required=True, type=Path, help="the autopilot's source checkout, built for SITL")
    ap.add_argument("--platform", default="px4_x500_v2", help="the physics edgectl sitl-server serves")
    ap.add_argument("--bundle", type=Path, help="a ctbr bundle to fly over MAVLink after the autopilot's own take-off")
    ap.add_argument("--hold", type=float, default=30.0)
    ap.add_argument("--alt", type=float, default=2.0, help="ArduPilot take-off altitude (PX4: MIS_TAKEOFF_ALT)")
    ap.add_argument("--offset", default="0.3,0,0", help="the policy's reference: where it took over plus this (m, ENU)")
    ap.add_argument("--settle", type=float, default=5.0)
    ap.add_argument("--record-steps", type=Path, help="fly body-rate steps (ArduPilot GUIDED_NOGPS, PX4 OFFBOARD) and write the response here")
    ap.add_argument("--setpoint-loss", type=Path, help="after the hold: stream a hold and a yaw turn, fall silent, and record "
                    "what the autopilot did (setpoint_loss()) in this JSON file, under --key, beside the runs already there")
    ap.add_argument("--key", help="the run's name in the --setpoint-loss file (default: the autopilot)")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="an autopilot parameter for the run (ArduPilot: defaults file; PX4: param set), repeatable")
    ap.add_argument("--neural", action="store_true", help="px4: hand over to PX4's mc_nn_control (a build with an exported model)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    try:
        a.offset = [float(x) for x in a.offset.split(",")]
        assert len(a.offset) == 3
    except (ValueError, AssertionError):
        print(f"error: --offset {a.offset!r}: expected x,y,z in metres", file=sys.stderr)
        return 2
    try:
        a.param = [(k.strip(), v.strip()) for k, v in (x.split("=", 1) for x in a.param)]
        assert all(k and v for k, v in a.param)
    except (ValueError, AssertionError):
        print(f"error: --param {a.param!r}: expected NAME=VALUE", file=sys.stderr)
        return 2
    if not 0.0 <= a.settle < a.hold:  # the error is measured from --settle to the end of the --hold
        print(f"error: --settle {a.settle:g} s: must be >= 0 and shorter than --hold ({a.hold:g} s)", file=sys.stderr)
        return 2
    if a.bundle is not None:
        from edgectl.bundle import BundleError, load_bundle
        try:
            a.bundle = load_bundle(a.bundle)
        except BundleError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if a.bundle.contract["action"]["mapping"].get("kind") != "ctbr":
            print(f"error: {a.bundle.path}: not a ctbr bundle (train with --action ctbr)", file=sys.stderr)
            return 2
    work, procs = Path(tempfile.mkdtemp(prefix=f"{a.autopilot}-sitl-")), []
    try:
        res = (run_ardupilot if a.autopilot == "ardupilot" else run_px4)(a, work, procs)
    except SystemExit as e:
        print(e, file=sys.stderr)
        return 2
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
    res.update(platform=a.platform, logs=str(work))
    if "own_hold" in res:
        h = res["own_hold"]
        print(f"{res['autopilot']}: its own hold at {h['alt_m']:.1f} m for {h['seconds']:.0f} s: median {h['median_m'] * 100:.1f} cm, "
              f"p95 {h['p95_m'] * 100:.1f} cm, max {h['max_m'] * 100:.1f} cm")
    if "policy" in res:
        p = res["policy"]
        print(f"edgectl ctbr policy over MAVLink ({', '.join(p['modes'])}): from {p['start_error_m'] * 100:.0f} cm off, after "
              f"{p['settle_s']:.0f} s of {p['seconds']:.0f} s: median {p['median_m'] * 100:.1f} cm, p95 {p['p95_m'] * 100:.1f} cm, "
              f"max {p['max_m'] * 100:.1f} cm")
    if "neural" in res:
        h = res["neural"]
        print(f"PX4 mc_nn_control (Neural Control mode{'' if h['still_neural'] else ', left before the end'}), {h['seconds']:.0f} s: "
              f"median {h['median_m'] * 100:.1f} cm, p95 {h['p95_m'] * 100:.1f} cm, max {h['max_m'] * 100:.1f} cm from where it took over")
    if "setpoint_loss" in res:
        x = res["setpoint_loss"]
        rec = json.loads(a.setpoint_loss.read_text()) if a.setpoint_loss.is_file() else {}
        rec.setdefault("what", "bench/autopilot_sitl.py --setpoint-loss: real autopilot SITL on edgectl's physics, the probe "
                       "setpoint_loss() (a hold, a 0.3 rad/s yaw turn, then silence; times in s after the last setpoint), then "
                       "the autopilot's own landing (land_and_wait(); times in s after the LAND command)")
        rec.setdefault("runs", {})[a.key or a.autopilot] = dict(x, platform=a.platform, params=dict(a.param),
                                                                 date=time.strftime("%Y-%m-%d"), landing=res.get("landing"))
        runs = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(rec["runs"].items()))  # a line a run
        a.setpoint_loss.write_text(f'{{\n "what": {json.dumps(rec["what"])},\n "runs": {{\n{runs}\n }}\n}}\n')
        then = "no mode change" if x["failsafe_mode"] is None else f"{x['failsafe_mode']} from {x['mode_changed_s']:.1f} s"
        down = "" if x["descent_m_s"] is None else f", descending {x['descent_m_s']:.2f} m/s"
        off = "" if x["disarmed_s"] is None else f", disarmed at {x['disarmed_s']:.1f} s"
        print(f"setpoint loss: the last setpoint flown {x['held_setpoint_s']:.2f} s, then {then}{down}{off}; "
              f"height {x['height_change_m']:+.2f} m over {x['watch_s']:.0f} s -> {a.setpoint_loss}")
    if "landing" in res:
        x = res["landing"]
        rate = "" if x["descent_m_s"] is None else f"descending {x['descent_m_s']:.2f} m/s, "
        down = "" if x["touchdown_s"] is None else f"down at {x['touchdown_s']:.1f} s, "
        off = "not disarmed" if x["disarmed_after_s"] is None else f"disarmed at {x['disarmed_after_s']:.1f} s"
        print(f"landing from {x['from_m']:.1f} m: {rate}{down}{off}; height estimate {x['height_estimate_m']:+.2f} m "
              f"(lowest {x['lowest_estimate_m']:+.2f} m)")
    if "steps" in res:
        print(f"rate steps: {res['steps']['rows']} rows -> {res['steps']['steps_csv']}")
    if a.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

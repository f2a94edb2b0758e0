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
tests/test_rate_control.py::test_ardupilot_loop_matches_real_arducopter_sitl_rate_steps).

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


def record_steps(m, out: Path, amp: float = 1.5, engage=None, resume=None, target_component=None) -> dict:
    """Body-rate steps from a hover, thrust at the hover throttle (VFR_HUD), ATTITUDE at 100 Hz: ArduPilot GUIDED_NOGPS
    (default), PX4 OFFBOARD (``engage``/``resume`` switch the mode; setpoints stream from the start, as PX4 needs)."""
    from pymavlink import mavutil
    comp = m.target_component if target_component is None else target_component
    engage = engage or (lambda: m.set_mode(20))  # GUIDED_NOGPS
    resume = resume or (lambda: m.set_mode("GUIDED"))
    thr, end = [], time.monotonic() + 3.0
    while time.monotonic() < end:
        v = m.recv_match(type="VFR_HUD", blocking=True, timeout=0.5)
        if v is not None:
            thr.append(v.throttle / 100.0)
    hover = float(np.mean(thr))
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


def run_ardupilot(a, work: Path, procs: list) -> dict:
    from pymavlink import mavutil
    binary = a.build / "build" / "sitl" / "bin" / "arducopter"
    if not binary.is_file():
        raise SystemExit(f"error: {binary}: no ArduCopter SITL build (./waf configure --board sitl && ./waf copter)")
    (work / "edgectl.parm").write_text(EXTRA_ARDUPILOT_PARAMS)
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
    res["own_hold"] = hold_error(m, a.hold)
    if a.bundle is not None:
        res["policy"] = fly_policy(a.bundle, "udpin:127.0.0.1:14551", a.hold, a.offset, a.settle)
    m.set_mode("LAND")
    return res


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
    res["own_hold"] = hold_error(m, a.hold)
    if a.neural:
        res["neural"] = fly_neural(m, a.hold)
    if a.bundle is not None:
        res["policy"] = fly_policy(a.bundle, "udpin:127.0.0.1:14540", a.hold, a.offset, a.settle)
    m.mav.command_long_send(m.target_system, 1, mavutil.mavlink.MAV_CMD_NAV_LAND, 0, 0, 0, 0, 0, 0, 0, 0)
    return res


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
    ap.add_argument("--neural", action="store_true", help="px4: hand over to PX4's mc_nn_control (a build with an exported model)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    try:
        a.offset = [float(x) for x in a.offset.split(",")]
        assert len(a.offset) == 3
    except (ValueError, AssertionError):
        print(f"error: --offset {a.offset!r}: expected x,y,z in metres", file=sys.stderr)
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
    if "steps" in res:
        print(f"rate steps: {res['steps']['rows']} rows -> {res['steps']['steps_csv']}")
    if a.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

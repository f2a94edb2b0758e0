"""The simulated Crazyflie's firmware variables: log TOC, parameter TOC, and what each log
variable reads (names, types and conventions of crazyflie-firmware: stabilizer.c, motors.c,
pm_stm32f4.c, supervisor.c; stateEstimate.pitch and stabilizer.pitch carry the firmware's legacy
sign, nose up positive; stateEstimateZ is the firmware's compressed state).

Groups cflib's examples touch, from crazyflie-firmware 2026.08 (commit 2a18fc29):
- kalman (estimator/estimator_kalman.c LOG_GROUP / PARAM_GROUP kalman): stateX/Y/Z (position),
  statePX/PY/PZ (body-frame velocity), stateD0-2 (attitude error, zero between updates), varX..varD2
  (covariance diagonal), q0-q3 (w, x, y, z); params resetEstimation, robustTdoa, robustTwr, the noise
  parameters and initialX/Y/Z/Yaw with kalman_core_params_defaults.h's defaults. The estimate is the
  simulated truth (as with motion capture); a reset restarts the variances at the filter's initial
  standard deviations (position 100 m in x-y, 1 m in z, velocity and attitude 0.01) and they settle
  within about a second, which is what cflib's reset_estimator waits for.
- hlCommander (crtp_commander_high_level.c): vtoff, vland, groupmask.
- pid_attitude (controller/attitude_pid_controller.c) with platform_defaults_cf2.h's gains: stored and
  read back; the simulated controller (control.py) is not the firmware's PID and does not read them.
- cpu.flash (system.c, read-only: 1024 kB on the STM32F405).
- deck.bc* (deck/drivers/src/*.c): read-only, 1 when the deck's driver initialized; the drivers
  enabled by default in deck/drivers/src/Kconfig, all 0 here: no deck is attached.
- memTst (mem.c): the memory tester's resetW parameter and errCntW log variable.
- ring (deck/drivers/src/ledring12.c): in the TOC whenever the LED-ring driver is built (the
  default), deck or not; ring.neffect is set by the driver's init only, so it reads 0 here.
"""
from __future__ import annotations

import math

import numpy as np

from .control import THRUST_UNITS, quat_to_euler
from .setpoints import ANGLE
from .supervisor import CAN_FLY
from .toc import LOG_TYPE_NAMES, PARAM_TYPE_NAMES, LogVar, Param, Toc


def compress_quaternion(qx: float, qy: float, qz: float, qw: float) -> int:
    """Smallest-three quaternion compression of the firmware's stateEstimateZ.quat: index of the
    largest component (2 bits), then the other three, each a sign bit and a 9-bit magnitude scaled
    by 1/sqrt(2) (the largest component is made positive)."""
    q = (qx, qy, qz, qw)
    big = max(range(4), key=lambda i: abs(q[i]))
    negate = q[big] < 0
    comp = big
    for i in range(4):
        if i != big:
            v = 511 * abs(q[i]) * math.sqrt(2.0) + 0.5
            mag = min(511, int(v)) if v == v else 0  # NaN: VCVT's 0
            comp = (comp << 10) | (int((q[i] < 0) != negate) << 9) | mag
    return comp & 0xFFFFFFFF


def _i16(v: float) -> int:
    # C float -> int16_t: truncation toward zero; saturate instead of the undefined overflow; NaN -> 0,
    # what the Cortex-M4's VCVT gives
    if v != v:
        return 0
    return max(-32768, min(32767, int(v)))


# deck.* parameters of the deck drivers crazyflie-firmware builds by default (deck/drivers/src/Kconfig)
DECKS = ("bcActiveMarker", "bcAI", "bcBuzzer", "bcCam", "bcCamLink", "bcColorLedBot", "bcColorLedTop",
         "bcDWM1000", "bcFlow", "bcFlow2", "bcLedRing", "bcLighthouse4", "bcLoco", "bcMultiranger", "bcOA",
         "bcUSD", "bcZRanger2")
# kalman_core.c initial standard deviations: position x-y, z; velocity; attitude
KALMAN_INITIAL_STD = (100.0, 1.0, 0.01, 0.01)
KALMAN_SETTLED_VAR = 1e-6  # position / velocity variance with an external position (motion capture) input
KALMAN_SETTLE_S = 0.2


class KalmanVariances:
    """kalman.var* of the simulated estimator: the filter's initial variances after a reset, settling
    with a time constant of KALMAN_SETTLE_S (what a filter fed an external position at 100 Hz does)."""

    def __init__(self):
        self.reset_at = -math.inf

    def reset(self, now: float):
        self.reset_at = now

    def values(self, now: float) -> dict:
        k = math.exp(-(now - self.reset_at) / KALMAN_SETTLE_S) if now >= self.reset_at else 1.0
        xy, z, vel, att = (KALMAN_SETTLED_VAR + (s * s - KALMAN_SETTLED_VAR) * k for s in KALMAN_INITIAL_STD)
        return {"kalman.varX": xy, "kalman.varY": xy, "kalman.varZ": z, "kalman.varPX": vel,
                "kalman.varPY": vel, "kalman.varPZ": vel, "kalman.varD0": att, "kalman.varD1": att,
                "kalman.varD2": att}


def build_log_toc(extra=()) -> Toc:
    """extra: more (group, type, \"name name ...\") rows, e.g. an app's log group."""
    logs = Toc()
    f, i16, u8, u16, u32, i8 = (LOG_TYPE_NAMES[k] for k in ("float", "int16", "uint8", "uint16", "uint32", "int8"))
    spec = [
        ("stateEstimate", f, "x y z vx vy vz ax ay az roll pitch yaw qx qy qz qw"),
        ("stateEstimateZ", i16, "x y z vx vy vz ax ay az"), ("stateEstimateZ", u32, "quat"),
        ("stateEstimateZ", i16, "rateRoll ratePitch rateYaw"),
        ("stabilizer", f, "roll pitch yaw thrust"), ("gyro", f, "x y z"), ("acc", f, "x y z"),
        ("pm", f, "vbat"), ("pm", u16, "vbatMV"), ("pm", i8, "state"), ("pm", u8, "batteryLevel"),
        ("motor", u16, "m1 m2 m3 m4"), ("supervisor", u16, "info"),
        ("sys", u8, "canfly isFlying isTumbled"),
        ("ctrltarget", f, "x y z vx vy vz roll pitch yaw thrust"),
        ("controller", f, "roll pitch yaw"),
        ("kalman", f, "stateX stateY stateZ statePX statePY statePZ stateD0 stateD1 stateD2 varX varY varZ "
                      "varPX varPY varPZ varD0 varD1 varD2 q0 q1 q2 q3"),
        ("memTst", u32, "errCntW"),
    ]
    spec += list(extra)
    for group, type_code, names in spec:
        for name in names.split():
            logs.add(LogVar(group, name, type_code))
    return logs


def build_param_toc(sim) -> Toc:
    """Parameters; their callbacks act on the vehicle's current supervisor and commander."""
    params = Toc()
    u8p, u16p, u32p, fp = (PARAM_TYPE_NAMES[k] for k in ("uint8", "uint16", "uint32", "float"))
    sup = lambda: sim.supervisor  # noqa: E731 - the supervisor is replaced on reboot
    cmd = lambda: sim.commander  # noqa: E731
    for p in [
        Param("commander", "enHighLevel", u8p, 0, core=True),  # deprecated no-op in the firmware too
        Param("stabilizer", "estimator", u8p, 0, core=True),
        Param("stabilizer", "controller", u8p, 0, core=True),
        Param("stabilizer", "stop", u8p, 0, core=True,
              on_change=lambda v: setattr(sup(), "param_stop", bool(v))),
        Param("flightmode", "stabModeRoll", u8p, ANGLE, core=True,
              on_change=lambda v: cmd().stab_mode.__setitem__("roll", v)),
        Param("flightmode", "stabModePitch", u8p, ANGLE, core=True,
              on_change=lambda v: cmd().stab_mode.__setitem__("pitch", v)),
        Param("flightmode", "stabModeYaw", u8p, 0, core=True,
              on_change=lambda v: cmd().stab_mode.__setitem__("yaw", v)),
        Param("supervisor", "tmblChckEn", u8p, 1, persistent=True,
              on_change=lambda v: setattr(sup(), "tumble_check", bool(v))),
        Param("supervisor", "landedTimeout", u16p, 3000, persistent=True,
              on_change=lambda v: setattr(sup(), "landing_timeout_s", v / 1000.0)),
        Param("supervisor", "prefltTimeout", u16p, 30000, persistent=True,
              on_change=lambda v: setattr(sup(), "preflight_timeout_s", v / 1000.0)),
        # cflib's reset_estimator writes 1 then 0; the estimate is the simulated truth (as with motion
        # capture): a reset restarts the variances only (KalmanVariances).
        Param("kalman", "resetEstimation", u8p, 0, core=True,
              on_change=lambda v: sim.kalman.reset(sim.t) if v else None),
        Param("kalman", "robustTdoa", u8p, 0, core=True),
        Param("kalman", "robustTwr", u8p, 0, core=True),
        *[Param("kalman", n, fp, d, core=True, persistent=True) for n, d in (
            ("pNAcc_xy", 0.5), ("pNAcc_z", 1.0), ("pNVel", 0.0), ("pNPos", 0.0), ("pNAtt", 0.0),
            ("mNBaro", 2.0), ("mNGyro_rollpitch", 0.1), ("mNGyro_yaw", 0.1))],
        *[Param("kalman", n, fp, 0.0, core=True) for n in ("initialX", "initialY", "initialZ", "initialYaw")],
        Param("hlCommander", "vtoff", fp, 0.5, core=True, on_change=lambda v: setattr(sim.hl, "v_takeoff", v)),
        Param("hlCommander", "vland", fp, 0.5, core=True, on_change=lambda v: setattr(sim.hl, "v_land", v)),
        Param("hlCommander", "groupmask", u8p, 0, core=True, on_change=lambda v: setattr(sim.hl, "group_mask", v)),
        *[Param("pid_attitude", f"{axis}_{k}", fp, d, persistent=True) for axis, gains in (
            ("roll", (6.0, 3.0, 0.0, 0.0)), ("pitch", (6.0, 3.0, 0.0, 0.0)), ("yaw", (6.0, 1.0, 0.35, 0.0)))
          for k, d in zip(("kp", "ki", "kd", "kff"), gains)],
        Param("cpu", "flash", u16p, 1024, read_only=True, core=True),
        *[Param("deck", name, u8p, 0, read_only=True) for name in DECKS],
        # ledring12.c's parameters exist whenever the driver is built (the default), deck or not; only
        # ring.neffect is set by the driver's init, so it reads 0 without the deck
        Param("ring", "effect", u8p, 6, core=True, persistent=True),
        Param("ring", "neffect", u32p, 0, core=True, read_only=True),
        *[Param("ring", n, u8p, d, core=True) for n, d in (
            ("solidRed", 20), ("solidGreen", 20), ("solidBlue", 20), ("headlightEnable", 0))],
        Param("ring", "emptyCharge", fp, 3.1, core=True),
        Param("ring", "fullCharge", fp, 4.2, core=True),
        Param("ring", "fadeColor", u32p, 0, core=True),
        Param("ring", "fadeTime", fp, 0.5, core=True),
        Param("memTst", "resetW", u8p, 0, on_change=lambda v: setattr(sim.memories, "tester_reset", v)),
        Param("crtpsrv", "echoDelay", u16p, 0),
        Param("firmware", "revision0", u32p, 0x5EED, read_only=True, core=True),
        Param("firmware", "modified", u8p, 0, read_only=True, core=True),
    ]:
        params.add(p)
    image = getattr(sim, "onboard_image", None)
    if image is not None:  # the on-board app's parameter groups: its PARAM_ADD variables, in its compiled C
        for group, name, type_code, default in image.param_vars:
            full = f"{group}.{name}"
            params.add(Param(group, name, type_code & 0x0F, default, read_only=bool(type_code & 0x40),
                             persistent=bool(type_code & 0x100), core=bool(type_code & 0x20),
                             read=lambda full=full: sim.onboard.param_get(full),
                             write=lambda v, full=full: sim.onboard.param_set(full, v)))
    return params


def read_variables(sim) -> dict:
    """Every log variable's value now, as the firmware would log it."""
    x = sim.measured()
    pos, vel, quat, omega = x[0:3].copy(), x[7:10].copy(), x[3:7].copy(), x[10:13].copy()
    if sim.sensor_noise:
        g = sim.platform.get
        rng = sim._rng
        pos += rng.normal(0.0, g("sensors.position_noise_std"), 3)
        vel += rng.normal(0.0, g("sensors.velocity_noise_std"), 3)
        omega += rng.normal(0.0, g("sensors.angular_velocity_noise_std"), 3)
        quat += rng.normal(0.0, g("sensors.orientation_noise_std"), 4)
        quat /= np.linalg.norm(quat)
    qw, qx, qy, qz = (float(v) for v in quat)
    roll, pitch, yaw = (math.degrees(a) for a in quat_to_euler(qw, qx, qy, qz))
    gyro = np.degrees(omega)
    acc_body = sim._specific_force_body()
    acc_world = sim._acc_world / sim._pdict["gravity"]
    sp, sup, ctrl = sim.commander.setpoint, sim.supervisor, sim.controller.last
    deg2mrad = math.pi * 1000.0 / 180.0
    v = {
        "stateEstimate.x": pos[0], "stateEstimate.y": pos[1], "stateEstimate.z": pos[2],
        "stateEstimate.vx": vel[0], "stateEstimate.vy": vel[1], "stateEstimate.vz": vel[2],
        "stateEstimate.ax": acc_world[0], "stateEstimate.ay": acc_world[1], "stateEstimate.az": acc_world[2],
        "stateEstimate.roll": roll, "stateEstimate.pitch": -pitch, "stateEstimate.yaw": yaw,
        "stateEstimate.qx": qx, "stateEstimate.qy": qy, "stateEstimate.qz": qz, "stateEstimate.qw": qw,
        "stateEstimateZ.x": _i16(pos[0] * 1000), "stateEstimateZ.y": _i16(pos[1] * 1000),
        "stateEstimateZ.z": _i16(pos[2] * 1000), "stateEstimateZ.vx": _i16(vel[0] * 1000),
        "stateEstimateZ.vy": _i16(vel[1] * 1000), "stateEstimateZ.vz": _i16(vel[2] * 1000),
        "stateEstimateZ.ax": _i16(acc_world[0] * 9.81 * 1000), "stateEstimateZ.ay": _i16(acc_world[1] * 9.81 * 1000),
        "stateEstimateZ.az": _i16((acc_world[2] + 1) * 9.81 * 1000),
        "stateEstimateZ.quat": compress_quaternion(qx, qy, qz, qw),
        "stateEstimateZ.rateRoll": _i16(gyro[0] * deg2mrad), "stateEstimateZ.ratePitch": _i16(-gyro[1] * deg2mrad),
        "stateEstimateZ.rateYaw": _i16(gyro[2] * deg2mrad),
        "stabilizer.roll": roll, "stabilizer.pitch": -pitch, "stabilizer.yaw": yaw,
        "stabilizer.thrust": ctrl["thrust"],
        "gyro.x": gyro[0], "gyro.y": gyro[1], "gyro.z": gyro[2],
        "acc.x": acc_body[0], "acc.y": acc_body[1], "acc.z": acc_body[2],
        "pm.vbat": sim.vbat, "pm.vbatMV": int(sim.vbat * 1000), "pm.state": 3 if sim.vbat < 3.2 else 0,
        "pm.batteryLevel": int(max(0.0, min(1.0, (sim.vbat - 3.0) / 1.2)) * 100),
        "supervisor.info": sup.bitfield,
        "sys.canfly": int(sup.state in CAN_FLY), "sys.isFlying": int(sup.is_flying),
        "sys.isTumbled": int(sup.tumbled),
        "ctrltarget.x": sp.x, "ctrltarget.y": sp.y, "ctrltarget.z": sp.z,
        "ctrltarget.vx": sp.vx, "ctrltarget.vy": sp.vy, "ctrltarget.vz": sp.vz,
        "ctrltarget.roll": ctrl["roll"], "ctrltarget.pitch": ctrl["pitch"], "ctrltarget.yaw": sp.yaw_rate,
        "ctrltarget.thrust": sp.thrust,
    }
    # kalman: position, body-frame velocity, quaternion (w, x, y, z), attitude error 0 between updates
    rot = np.array([[1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qw * qz), 2 * (qx * qz + qw * qy)],
                    [2 * (qx * qy + qw * qz), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qw * qx)],
                    [2 * (qx * qz - qw * qy), 2 * (qy * qz + qw * qx), 1 - 2 * (qx * qx + qy * qy)]])
    v_body = rot.T @ vel
    v.update({"kalman.stateX": pos[0], "kalman.stateY": pos[1], "kalman.stateZ": pos[2],
              "kalman.statePX": v_body[0], "kalman.statePY": v_body[1], "kalman.statePZ": v_body[2],
              "kalman.stateD0": 0.0, "kalman.stateD1": 0.0, "kalman.stateD2": 0.0,
              "kalman.q0": qw, "kalman.q1": qx, "kalman.q2": qy, "kalman.q3": qz,
              "controller.roll": ctrl["roll"], "controller.pitch": ctrl["pitch"], "controller.yaw": ctrl["yaw"],
              "memTst.errCntW": sim.memories.tester_errors})
    v.update(sim.kalman.values(sim.t))
    for i, m in enumerate(sim.motors):
        v[f"motor.m{i + 1}"] = int(round(m * THRUST_UNITS))
    if sim.onboard is not None:
        v.update(sim.onboard.log_values())
    return v


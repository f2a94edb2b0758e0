"""Autopilot body-rate loops: what flies a rate-level (``ctbr``) policy's command to the motors.

A ``ctbr`` policy commands a normalized collective thrust and body rates, the setpoint every autopilot
accepts from a companion computer (MAVLink SET_ATTITUDE_TARGET with the attitude ignored). The autopilot
closes its own rate loop and mixes; the simulator must do the same, with the same structure and default
gains, or a policy learns a vehicle that does not exist. Each loop below is written from its source
(file and parameter named beside every number; tests/test_rate_control.py checks the table against them):

- ``crazyflie``: crazyflie-firmware controller_pid.c -> attitude_pid_controller.c
  ``attitudeControllerCorrectRatePID`` -> pid.c ``pidUpdate`` at ATTITUDE_RATE (500 Hz), gains
  PID_*_RATE_* of platform_defaults_cf2.h, on gyro rates in deg/s; output saturated to int16
  (``saturateSignedInt16``); mixed by power_distribution_quadrotor.c ``powerDistributionLegacy``
  (m = thrust -/+ roll/2 -/+ pitch/2 -/+ yaw, in UINT16 counts), capped by lowering all motors by the
  excess (``powerDistributionCap``); battery compensation (motors.c) makes a count a thrust fraction.
- ``px4``: PX4 mc_rate_control (RateControl.cpp ``RateControl::update``) at the gyro rate IMU_GYRO_RATEMAX
  (400 Hz): torque = K (P e + I_int) - K D d(omega)/dt + FF sp; I_int += i_factor K I e dt with
  i_factor = 1 - (e / 400 deg/s)^2, clamped to +-MC_*_INT_LIM; the derivative of the gyro rate low-passed
  at IMU_DGYRO_CUTOFF (30 Hz), yaw torque low-passed at MC_YAW_TQ_CUTOFF (2 Hz); defaults of
  mc_rate_control_params.yaml. Control allocation (ControlAllocationPseudoInverse.cpp): the pseudo-inverse
  of the rotor effectiveness, roll/pitch columns scaled by sqrt(|col|^2 / (n / 2)), yaw by the column
  maximum, thrust to 1; motor output -> thrust by THR_MDL_FAC (default 0: linear).
- ``ardupilot``: ArduCopter AC_AttitudeControl_Multi rate PIDs (AC_PID) at the main loop rate
  SCHED_LOOP_RATE (400 Hz), defaults AC_ATC_MULTI_RATE_* of AC_AttitudeControl_Multi.h (ATC_RAT_RLL/PIT/YAW_*):
  target low-passed at FLTT (20 Hz), error at FLTE (yaw 2.5 Hz), derivative of the error at FLTD (20 Hz),
  I term clamped to IMAX (0.5), outputs +-1; AP_MotorsMatrix factors normalized to +-0.5
  (``normalise_rpy_factors``); thrust -> actuator by MOT_THST_EXPO (default 0.65).

What is not modelled (documented approximations): PX4's and ArduPilot's saturation-aware anti-windup and
their airmode/yaw-headroom desaturation (all three lower the collective to fit, the Crazyflie's rule),
PX4's second-order D-term filter (first order here), ArduPilot's slew-rate limiter and notch filters,
gyro filtering before the loop.

Frames: everything here is edgectl's body FLU (x forward, y left, z up), rad/s at the interface. A PID
with the same gain on every sign is unchanged by the FRD -> FLU flip of the y and z axes, so each
firmware's loop runs in FLU; its mixer is laid out from the platform's rotor positions and spins (which
the loader has checked against that firmware's motor table, edgectl/mixers.py).

The step functions take ``xp`` (numpy or jax.numpy) and use plain arithmetic, so the JAX simulator, the
host plant and the simulated MAVLink vehicle run this one implementation (the platforms.motor_for_fraction
pattern). Stdlib + numpy at import: this module runs on the robot side too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

DEG = 180.0 / math.pi
UINT16_MAX = 65535.0
INT16_MAX = 32767.0

# One table per firmware, each number beside its source. Gains are per axis (roll, pitch, yaw) in the
# firmware's own units (its error unit in, its output unit out); the mixer turns outputs into motor
# thrust fractions. "i_limit_on": "integral" = the limit bounds the integral of the error (Crazyflie
# pid.c: integ clamped to iLimit, output ki * integ); "output" = it bounds the I term itself (PX4
# rate_int, ArduPilot IMAX).
FIRMWARES: dict[str, dict] = {
    "crazyflie": {
        "name": "Crazyflie firmware PID rate controller (controller_pid)",
        "rate_hz": 500.0,  # platform_defaults.h / stabilizer_types.h ATTITUDE_RATE = RATE_500_HZ; controller_pid.c RATE_DO_EXECUTE(ATTITUDE_RATE)
        "input_scale": DEG,  # sensorData_t.gyro in deg/s; rate setpoints in deg/s
        "kp": (250.0, 250.0, 120.0),  # platform_defaults_cf2.h PID_ROLL_RATE_KP, PID_PITCH_RATE_KP, PID_YAW_RATE_KP
        "ki": (500.0, 500.0, 16.7),  # PID_ROLL_RATE_KI, PID_PITCH_RATE_KI, PID_YAW_RATE_KI
        "kd": (2.5, 2.5, 0.0),  # PID_ROLL_RATE_KD, PID_PITCH_RATE_KD, PID_YAW_RATE_KD
        "kff": (0.0, 0.0, 0.0),  # PID_*_RATE_KFF
        "k": (1.0, 1.0, 1.0),
        "i_limit": (33.3, 33.3, 166.7),  # PID_ROLL/PITCH/YAW_RATE_INTEGRATION_LIMIT (on integ, deg)
        "i_limit_on": "integral",
        "i_taper": 0.0,
        "out_limit": (INT16_MAX, INT16_MAX, INT16_MAX),  # attitude_pid_controller.c saturateSignedInt16
        "d_on_error": False,  # pid.c: "derivative of the measured process variable instead of the error"
        "sp_cutoff": (0.0, 0.0, 0.0),
        "err_cutoff": (0.0, 0.0, 0.0),
        "d_cutoff": (0.0, 0.0, 0.0),  # ATTITUDE_RATE_LPF_ENABLE false (platform_defaults.h): no D filter
        "out_cutoff": (0.0, 0.0, 0.0),
        "mixer": "crazyflie_legacy",
        "thrust_model": "platform",  # motors.c motorsCompensateBatteryVoltage: a count is a thrust fraction
        "source": "bitcraze/crazyflie-firmware src/platform/interface/platform_defaults_cf2.h (PID_*_RATE_*), "
                  "src/modules/src/controller/attitude_pid_controller.c, src/utils/src/pid.c, "
                  "src/modules/src/power_distribution_quadrotor.c powerDistributionLegacy / powerDistributionCap",
    },
    "px4": {
        "name": "PX4 mc_rate_control",
        "rate_hz": 400.0,  # src/modules/sensors/vehicle_angular_velocity/imu_gyro_parameters.yaml IMU_GYRO_RATEMAX default 400
        "input_scale": 1.0,  # rad/s
        "kp": (0.15, 0.15, 0.2),  # mc_rate_control_params.yaml MC_ROLLRATE_P, MC_PITCHRATE_P, MC_YAWRATE_P
        "ki": (0.2, 0.2, 0.1),  # MC_ROLLRATE_I, MC_PITCHRATE_I, MC_YAWRATE_I
        "kd": (0.003, 0.003, 0.0),  # MC_ROLLRATE_D, MC_PITCHRATE_D, MC_YAWRATE_D
        "kff": (0.0, 0.0, 0.0),  # MC_ROLLRATE_FF, MC_PITCHRATE_FF, MC_YAWRATE_FF
        "k": (1.0, 1.0, 1.0),  # MC_ROLLRATE_K, MC_PITCHRATE_K, MC_YAWRATE_K (scale P, I and D)
        "i_limit": (0.3, 0.3, 0.3),  # MC_RR_INT_LIM, MC_PR_INT_LIM, MC_YR_INT_LIM (on the I term)
        "i_limit_on": "output",
        "i_taper": math.radians(400.0),  # RateControl.cpp updateIntegral: i_factor = 1 - (e / 400 deg/s)^2
        "out_limit": (1.0, 1.0, 1.0),  # normalized torque setpoint (vehicle_torque_setpoint)
        "d_on_error": False,  # RateControl::update: - gain_d * angular_accel
        "sp_cutoff": (0.0, 0.0, 0.0),
        "err_cutoff": (0.0, 0.0, 0.0),
        "d_cutoff": (30.0, 30.0, 30.0),  # imu_gyro_parameters.yaml IMU_DGYRO_CUTOFF default 30 Hz
        "out_cutoff": (0.0, 0.0, 2.0),  # mc_rate_control_params.yaml MC_YAW_TQ_CUTOFF default 2 Hz
        "mixer": "px4",
        "thrust_model": 0.0,  # THR_MDL_FAC default 0: thrust linear in the motor output
        "source": "PX4/PX4-Autopilot src/modules/mc_rate_control/mc_rate_control_params.yaml, "
                  "RateControl/RateControl.cpp, control_allocator/ControlAllocation/ControlAllocationPseudoInverse.cpp",
    },
    "ardupilot": {
        "name": "ArduCopter AC_AttitudeControl_Multi rate PIDs",
        "rate_hz": 400.0,  # Copter SCHED_LOOP_RATE default 400 Hz (rate_controller_run in the fast loop)
        "input_scale": 1.0,  # rad/s
        "kp": (0.135, 0.135, 0.18),  # AC_AttitudeControl_Multi.h AC_ATC_MULTI_RATE_RP_P, _YAW_P (ATC_RAT_RLL/PIT/YAW_P)
        "ki": (0.135, 0.135, 0.018),  # AC_ATC_MULTI_RATE_RP_I, _YAW_I
        "kd": (0.0036, 0.0036, 0.0),  # AC_ATC_MULTI_RATE_RP_D, _YAW_D
        "kff": (0.0, 0.0, 0.0),  # ATC_RAT_*_FF default 0
        "k": (1.0, 1.0, 1.0),
        "i_limit": (0.5, 0.5, 0.5),  # AC_ATC_MULTI_RATE_RP_IMAX, _YAW_IMAX
        "i_limit_on": "output",
        "i_taper": 0.0,
        "out_limit": (1.0, 1.0, 1.0),  # AP_Motors roll/pitch/yaw inputs in [-1, 1]
        "d_on_error": True,  # AC_PID: derivative of the filtered error
        "sp_cutoff": (20.0, 20.0, 20.0),  # ATC_RAT_*_FLTT = AC_ATC_MULTI_RATE_RP_FILT_HZ 20 Hz
        "err_cutoff": (0.0, 0.0, 2.5),  # ATC_RAT_YAW_FLTE = AC_ATC_MULTI_RATE_YAW_FILT_HZ 2.5 Hz
        "d_cutoff": (20.0, 20.0, 0.0),  # ATC_RAT_RLL/PIT_FLTD 20 Hz
        "out_cutoff": (0.0, 0.0, 0.0),
        "mixer": "ardupilot",
        # GUIDED(_NOGPS) body rates do not reach the rate PIDs as sent: AC_AttitudeControl::input_rate_bf_roll_pitch_yaw_rads
        # slews the rate target at most ATC_ACCEL_R/P/Y_MAX (input_shaping_ang_vel; ACRO_RP_RATE_TC and PILOT_Y_RATE_TC
        # default 0, so no time constant), integrates it into an attitude target, and attitude_controller_run_quat adds
        # ATC_ANG_RLL/PIT/YAW_P x the attitude error (limited to AC_ATTITUDE_THRUST_ERROR_ANGLE_RAD, 30 deg) to it.
        # Measured in real ArduCopter 4.7.0-dev SITL (tests/data/ardupilot_sitl_rate_steps.csv): a 1.5 rad/s roll step
        # rises at ~19 rad/s^2, and after a +-step pair the vehicle holds the attitude the shaped target reached.
        # AC_AttitudeControl.h AC_ATTITUDE_CONTROL_ACCEL_RP_MAX_DEFAULT_CDSS 110000, _ACCEL_Y_MAX_DEFAULT_CDSS 27000 cdeg/s^2
        "sp_accel_max": tuple(math.radians(c / 100.0) for c in (110000.0, 110000.0, 27000.0)),  # 19.2, 19.2, 4.7 rad/s^2
        "angle_p": (4.5, 4.5, 4.5),  # AC_AttitudeControl.h AC_ATTITUDE_CONTROL_ANGLE_P (ATC_ANG_RLL/PIT/YAW_P)
        "angle_err_max": math.radians(30.0),  # AC_AttitudeControl.h AC_ATTITUDE_THRUST_ERROR_ANGLE_RAD
        "thrust_model": 0.65,  # MOT_THST_EXPO default 0.65: thrust = (1 - e) u + e u^2
        "source": "ArduPilot/ardupilot libraries/AC_AttitudeControl/AC_AttitudeControl_Multi.h (AC_ATC_MULTI_RATE_*), "
                  "libraries/AC_PID/AC_PID.cpp, libraries/AP_Motors/AP_MotorsMatrix.cpp normalise_rpy_factors",
    },
}
PID_STATE_SIZE = 24  # setpoint filter, error filter, last D input, D filter, I term, output filter, shaped setpoint, attitude error (3 each)


@dataclass(frozen=True)
class RateLoop:
    """A firmware's rate loop laid out for one platform. Arrays are float64 numpy (constants under JAX)."""
    firmware: str
    name: str
    rate_hz: float
    input_scale: float
    kp: np.ndarray
    ki: np.ndarray
    kd: np.ndarray
    kff: np.ndarray
    i_limit: np.ndarray  # bound on the I term, output units
    i_taper: float
    out_limit: np.ndarray
    d_on_error: bool
    sp_cutoff: np.ndarray
    err_cutoff: np.ndarray
    d_cutoff: np.ndarray
    out_cutoff: np.ndarray
    mixer: np.ndarray  # (4 motors, 4): columns collective thrust, roll, pitch, yaw output -> motor thrust fraction
    thrust_shape: np.ndarray  # (b0, b1): the firmware's assumed thrust(u) = b0 + b1 u + (1 - b0 - b1) u^2
    max_rate: np.ndarray  # rad/s per axis: the ctbr action range
    source: str = field(default="", compare=False)
    # The autopilot's shaping of body-rate setpoints before its rate PIDs (ArduPilot's attitude controller; zeros:
    # the setpoint reaches the PIDs as sent, as in PX4's mc_rate_control and the Crazyflie's rate mode).
    sp_accel_max: np.ndarray = field(default_factory=lambda: np.zeros(3))  # rad/s^2 per axis
    angle_p: np.ndarray = field(default_factory=lambda: np.zeros(3))  # 1/s, attitude error -> rate
    angle_err_max: float = 0.0  # rad

    @property
    def shapes_setpoint(self) -> bool:
        return bool(np.any(self.sp_accel_max > 0))

    def substeps(self, sim_rate: float) -> int:
        """Rate-loop ticks per simulator step (at least 1)."""
        return max(1, int(round(self.rate_hz / sim_rate)))

    def describe(self) -> dict:
        """JSON-able record for a bundle contract (what flew the policy in training)."""
        r = lambda a: [float(v) for v in np.ravel(a)]  # noqa: E731
        return {"firmware": self.firmware, "name": self.name, "rate_hz": self.rate_hz,
                "gains": {"p": r(self.kp), "i": r(self.ki), "d": r(self.kd), "ff": r(self.kff),
                          "input_unit": "deg/s" if self.input_scale != 1.0 else "rad/s"},
                "source": self.source}


def mixer_matrix(kind: str, positions, spin, torque_coefficient: float) -> np.ndarray:
    """(4, 4) motor thrust fraction per unit of (collective, roll, pitch, yaw output), FLU torque senses."""
    pos = np.asarray(positions, np.float64)
    x, y, s = pos[:, 0], pos[:, 1], np.asarray(spin, np.float64)
    m = np.zeros((4, 4))
    m[:, 0] = 1.0
    if kind == "crazyflie_legacy":
        # r = roll / 2, p = pitch / 2 in UINT16 counts; the signs are the motor's torque signs
        m[:, 1] = np.sign(y) * 0.5 / UINT16_MAX
        m[:, 2] = np.sign(-x) * 0.5 / UINT16_MAX
        m[:, 3] = np.sign(s) / UINT16_MAX
    elif kind == "px4":
        eff = np.stack([np.ones(4), y, -x, torque_coefficient * s])  # wrench per unit rotor thrust
        mix = np.linalg.pinv(eff)  # (4 rotors, [thrust, roll, pitch, yaw])
        n_r = np.count_nonzero(np.abs(mix[:, 1]) > 1e-3 * np.abs(mix[:, 1]).max())
        n_p = np.count_nonzero(np.abs(mix[:, 2]) > 1e-3 * np.abs(mix[:, 2]).max())
        rp = max(math.sqrt(np.sum(mix[:, 1] ** 2) / (n_r / 2.0)), math.sqrt(np.sum(mix[:, 2] ** 2) / (n_p / 2.0)))
        m[:, 1:3] = mix[:, 1:3] / rp
        m[:, 3] = mix[:, 3] / np.max(np.abs(mix[:, 3]))
        m[:, 0] = mix[:, 0] / np.mean(np.abs(mix[:, 0]))
    elif kind == "ardupilot":
        m[:, 1] = 0.5 * y / np.max(np.abs(y))
        m[:, 2] = 0.5 * -x / np.max(np.abs(x))
        m[:, 3] = 0.5 * np.sign(s)
    else:
        raise ValueError(f"unknown mixer {kind!r}")
    return m


def rate_loop(firmware: str, positions, spin, torque_coefficient: float, platform_thrust_shape, max_rate) -> RateLoop:
    if firmware not in FIRMWARES:
        raise ValueError(f"unknown rate controller firmware {firmware!r}; known: {', '.join(sorted(FIRMWARES))}")
    f = FIRMWARES[firmware]
    a = lambda k: np.asarray(f[k], np.float64)  # noqa: E731
    k = a("k")
    kp, ki, kd = k * a("kp"), k * a("ki"), k * a("kd")
    i_limit = ki * a("i_limit") if f["i_limit_on"] == "integral" else a("i_limit")
    tm = f["thrust_model"]
    shape = np.asarray(platform_thrust_shape, np.float64) if tm == "platform" else np.array([0.0, 1.0 - float(tm)])
    return RateLoop(firmware=firmware, name=f["name"], rate_hz=float(f["rate_hz"]), input_scale=float(f["input_scale"]),
                    kp=kp, ki=ki, kd=kd, kff=a("kff"), i_limit=i_limit, i_taper=float(f["i_taper"]),
                    out_limit=a("out_limit"), d_on_error=bool(f["d_on_error"]), sp_cutoff=a("sp_cutoff"),
                    err_cutoff=a("err_cutoff"), d_cutoff=a("d_cutoff"), out_cutoff=a("out_cutoff"),
                    mixer=mixer_matrix(f["mixer"], positions, spin, torque_coefficient), thrust_shape=shape,
                    max_rate=np.asarray(max_rate, np.float64), source=f["source"],
                    sp_accel_max=np.asarray(f.get("sp_accel_max", (0.0, 0.0, 0.0)), np.float64),
                    angle_p=np.asarray(f.get("angle_p", (0.0, 0.0, 0.0)), np.float64), angle_err_max=float(f.get("angle_err_max", 0.0)))


def from_platform(platform) -> RateLoop:
    """The platform's [rate_controller] loop; a ValueError naming the file if it has none."""
    if "rate_controller.firmware" not in platform.values:
        raise ValueError(f"{platform.path}: platform {platform.name!r} has no [rate_controller] section; a ctbr policy "
                         "needs the autopilot whose rate loop flies it (firmware = crazyflie | px4 | ardupilot, max_rate)")
    from .platforms import rotor_model
    g = platform.get
    return rate_loop(g("rate_controller.firmware"), g("rotors.positions"), g("rotors.spin"), g("rotors.torque_coefficient"),
                     rotor_model(platform)["thrust_shape"], g("rate_controller.max_rate"))


# --- the loop -----------------------------------------------------------------------------------
def _alpha(cutoff, dt, xp):
    """First-order low-pass coefficient; cutoff 0 passes the input through."""
    c = xp.asarray(cutoff)
    return xp.where(c > 0, dt / (dt + 1.0 / (2.0 * math.pi * xp.maximum(c, 1e-9))), 1.0)


def pid_init(loop: RateLoop, omega, xp=np):
    """PID state (..., 24) at rest with the gyro reading ``omega`` (no derivative kick on the first tick; a shaped
    setpoint starts at the rate the vehicle has, with no attitude error)."""
    w = xp.asarray(omega) * loop.input_scale
    z = xp.zeros_like(w)
    d0 = -w  # the D input: -measured (or error = 0 - measured)
    return xp.concatenate([z, z, d0, z, z, z, xp.asarray(omega) + z, z], axis=-1)


def pid_step(loop: RateLoop, state, rate_sp, omega, dt, gain=1.0, xp=np):
    """One rate-loop tick: (output per axis in firmware units, new state). rate_sp, omega: (..., 3) rad/s FLU;
    ``gain`` scales P, I and D (a vehicle tuned differently from the defaults)."""
    sp_f, err_f, d_prev, d_f, integ, out_f, shaped, att_err = (state[..., 3 * i:3 * i + 3] for i in range(8))
    if loop.shapes_setpoint:  # ArduPilot's attitude controller between the setpoint and the rate PIDs (see FIRMWARES)
        step = loop.sp_accel_max * dt
        shaped = shaped + xp.clip(xp.asarray(rate_sp) - shaped, -step, step)
        att_err = att_err + (shaped - xp.asarray(omega)) * dt  # attitude target minus attitude, body axes, small angles
        norm = xp.sqrt(xp.sum(att_err * att_err, axis=-1, keepdims=True))
        att_err = att_err * xp.minimum(1.0, loop.angle_err_max / xp.maximum(norm, 1e-9))
        rate_sp = shaped + loop.angle_p * att_err
    sp = xp.asarray(rate_sp) * loop.input_scale
    w = xp.asarray(omega) * loop.input_scale
    sp_f = sp_f + _alpha(loop.sp_cutoff, dt, xp) * (sp - sp_f)
    err = sp_f - w
    err_f = err_f + _alpha(loop.err_cutoff, dt, xp) * (err - err_f)
    d_in = err_f if loop.d_on_error else -w
    d_f = d_f + _alpha(loop.d_cutoff, dt, xp) * ((d_in - d_prev) / dt - d_f)
    ki = gain * loop.ki
    if loop.i_taper > 0:
        t = err_f / (loop.i_taper * loop.input_scale)
        ki = ki * xp.maximum(0.0, 1.0 - t * t)
    # the output uses the I term before this tick's integration (PX4's order; pid.c integrates first, one tick apart)
    out = gain * loop.kp * err_f + integ + gain * loop.kd * d_f + loop.kff * sp_f
    integ = xp.clip(integ + ki * err_f * dt, -loop.i_limit, loop.i_limit)
    out = xp.clip(out, -loop.out_limit, loop.out_limit)
    out_f = out_f + _alpha(loop.out_cutoff, dt, xp) * (out - out_f)
    return out_f, xp.concatenate([sp_f, err_f, d_in, d_f, integ, out_f, shaped, att_err], axis=-1)


def mix(loop: RateLoop, thrust, out, xp=np):
    """Motor commands u in [0, 1] (the simulator's motor input) for a collective thrust in [0, 1] and the
    loop's outputs: mixer -> thrust fractions -> lower all by the excess over full (the Crazyflie's
    powerDistributionCap) -> clip at 0 -> the firmware's thrust model inverted."""
    from .platforms import motor_for_fraction
    m = loop.mixer[:, 0] * thrust + loop.mixer[:, 1:] @ out
    m = xp.clip(m - xp.maximum(xp.max(m, axis=-1, keepdims=True) - 1.0, 0.0), 0.0, 1.0)
    return motor_for_fraction(m, loop.thrust_shape[0], loop.thrust_shape[1], xp=xp)


def ctbr_setpoint(action, loop: RateLoop, limit=1.0, xp=np):
    """(collective thrust in [0, 1], body rates FLU rad/s) from a ctbr action in [-1, 1]^4; ``limit`` (a
    factor <= 1) is the autopilot's own clamp on commanded rates."""
    a = xp.clip(xp.asarray(action), -1.0, 1.0)
    return 0.5 * (a[..., 0] + 1.0), a[..., 1:] * (loop.max_rate * limit)


def thrust_setpoint_for_motor(loop: RateLoop, u, xp=np):
    """The collective thrust setpoint that holds every motor at command ``u`` (no torque): the firmware's
    thrust model at u (its hover thrust when u is the hover motor command)."""
    b0, b1 = loop.thrust_shape[0], loop.thrust_shape[1]
    return b0 + u * (b1 + u * (1.0 - b0 - b1))

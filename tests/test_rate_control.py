"""Autopilot rate loops (edgectl/rate_control.py) against their sources, and the ctbr task built on them.

The gain tables are checked number by number against the defaults the sources ship (the files and
parameters named in rate_control.FIRMWARES); the PID against its structure (a step of error through one
tick, the integrator, the derivative on the measurement); the mixers against the firmware's own formulas;
the closed loop against a step response on the platforms that name each loop.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from edgectl import rate_control as rc
from edgectl.platforms import PlatformError, load_platform, parse_platform, rotor_model
from edgectl.plant import quadrotor as nq

CF = load_platform("crazyflie_2_1")
X500 = load_platform("px4_x500_v2")

# (firmware, field, axis) -> default, as the named source writes it
CITED = {
    # crazyflie-firmware src/platform/interface/platform_defaults_cf2.h
    ("crazyflie", "kp"): (250.0, 250.0, 120.0),  # PID_ROLL_RATE_KP, PID_PITCH_RATE_KP, PID_YAW_RATE_KP
    ("crazyflie", "ki"): (500.0, 500.0, 16.7),  # PID_*_RATE_KI
    ("crazyflie", "kd"): (2.5, 2.5, 0.0),  # PID_*_RATE_KD
    ("crazyflie", "i_limit"): (33.3, 33.3, 166.7),  # PID_*_RATE_INTEGRATION_LIMIT
    # PX4 src/modules/mc_rate_control/mc_rate_control_params.yaml
    ("px4", "kp"): (0.15, 0.15, 0.2),  # MC_ROLLRATE_P, MC_PITCHRATE_P, MC_YAWRATE_P
    ("px4", "ki"): (0.2, 0.2, 0.1),  # MC_*RATE_I
    ("px4", "kd"): (0.003, 0.003, 0.0),  # MC_*RATE_D
    ("px4", "k"): (1.0, 1.0, 1.0),  # MC_*RATE_K
    ("px4", "kff"): (0.0, 0.0, 0.0),  # MC_*RATE_FF
    ("px4", "i_limit"): (0.3, 0.3, 0.3),  # MC_RR_INT_LIM, MC_PR_INT_LIM, MC_YR_INT_LIM
    # ArduPilot libraries/AC_AttitudeControl/AC_AttitudeControl_Multi.h
    ("ardupilot", "kp"): (0.135, 0.135, 0.18),  # AC_ATC_MULTI_RATE_RP_P, AC_ATC_MULTI_RATE_YAW_P
    ("ardupilot", "ki"): (0.135, 0.135, 0.018),  # AC_ATC_MULTI_RATE_RP_I, _YAW_I
    ("ardupilot", "kd"): (0.0036, 0.0036, 0.0),  # AC_ATC_MULTI_RATE_RP_D, _YAW_D
    ("ardupilot", "i_limit"): (0.5, 0.5, 0.5),  # AC_ATC_MULTI_RATE_RP_IMAX, _YAW_IMAX
    # libraries/AC_AttitudeControl/AC_AttitudeControl.h: the attitude controller in front of the rate PIDs
    ("ardupilot", "sp_accel_max"): (110000 * math.pi / 18000, 110000 * math.pi / 18000, 27000 * math.pi / 18000),  # cdeg/s^2
    ("ardupilot", "angle_p"): (4.5, 4.5, 4.5),  # AC_ATTITUDE_CONTROL_ANGLE_P
}


def loop_on(firmware: str, platform=CF, max_rate=(6.0, 6.0, 3.0)) -> rc.RateLoop:
    return rc.rate_loop(firmware, platform.get("rotors.positions"), platform.get("rotors.spin"),
                        platform.get("rotors.torque_coefficient"), rotor_model(platform)["thrust_shape"], max_rate)


@pytest.mark.parametrize("key", sorted(CITED))
def test_gain_tables_are_the_cited_defaults(key):
    fw, name = key
    assert rc.FIRMWARES[fw][name] == pytest.approx(CITED[key], abs=0)


def test_loop_rates_and_units_are_the_firmwares():
    assert rc.FIRMWARES["crazyflie"]["rate_hz"] == 500.0 and rc.FIRMWARES["crazyflie"]["input_scale"] == pytest.approx(180 / math.pi)
    assert rc.FIRMWARES["px4"]["rate_hz"] == 400.0 and rc.FIRMWARES["ardupilot"]["rate_hz"] == 400.0
    assert rc.FIRMWARES["px4"]["i_taper"] == pytest.approx(math.radians(400.0))  # RateControl.cpp i_factor
    assert rc.FIRMWARES["crazyflie"]["out_limit"] == (32767.0,) * 3  # saturateSignedInt16


@pytest.mark.parametrize("fw", ["crazyflie", "px4", "ardupilot"])
def test_one_tick_of_a_rate_error_gives_p_times_the_error(fw):
    """From rest, a setpoint step e: the first output is P e (in the firmware's units), no I yet, no D kick
    (the derivative is on the measurement, which did not move)."""
    loop = loop_on(fw)
    st = rc.pid_init(loop, np.zeros(3))
    e = np.array([0.1, -0.2, 0.05])  # rad/s
    out, st = rc.pid_step(loop, st, e, np.zeros(3), 1.0 / loop.rate_hz)
    alpha_sp = np.array([rc._alpha(c, 1.0 / loop.rate_hz, np) for c in loop.sp_cutoff])  # ArduPilot's FLTT
    alpha_e = np.array([rc._alpha(c, 1.0 / loop.rate_hz, np) for c in loop.err_cutoff])
    alpha_out = np.array([rc._alpha(c, 1.0 / loop.rate_hz, np) for c in loop.out_cutoff])
    p = np.asarray(rc.FIRMWARES[fw]["kp"]) * np.asarray(rc.FIRMWARES[fw]["k"])
    expect = p * e * loop.input_scale * alpha_sp * alpha_e
    if not loop.d_on_error:
        np.testing.assert_allclose(out, alpha_out * expect, rtol=1e-9)
    else:  # ArduPilot differentiates the (filtered) error: the step is in it
        assert np.all(np.sign(out) == np.sign(e))


def test_crazyflie_integrator_is_limited_on_the_integral_of_the_error():
    """pid.c: integ += error * dt, clamped to +-iLimit (33.3 deg for roll), output ki * integ."""
    loop = loop_on("crazyflie")
    st = rc.pid_init(loop, np.zeros(3))
    dt = 1.0 / loop.rate_hz
    e = np.radians([10.0, 0.0, 0.0])  # 10 deg/s held
    for _ in range(1, 6):
        out, st = rc.pid_step(loop, st, e, np.zeros(3), dt)
    assert st[12] == pytest.approx(500.0 * 10.0 * dt * 5)  # I term = ki * integral of 10 deg/s over 5 ticks
    for _ in range(5000):  # long enough to hit the limit
        out, st = rc.pid_step(loop, st, e, np.zeros(3), dt)
    assert st[12] == pytest.approx(500.0 * 33.3)


def test_px4_derivative_acts_on_the_gyro_rate_and_integrator_clamps_at_int_lim():
    loop = loop_on("px4")
    dt = 1.0 / loop.rate_hz
    st = rc.pid_init(loop, np.zeros(3))
    # the measured roll rate ramps at 10 rad/s^2 with a zero setpoint: once the 30 Hz filter settled,
    # D contributes -MC_ROLLRATE_D * 10 on top of P's -0.15 * w (and the small I)
    for k in range(1, 200):
        w = np.array([10.0 * k * dt, 0.0, 0.0])
        out, st = rc.pid_step(loop, st, np.zeros(3), w, dt)
    d_term = st[9]  # filtered derivative of -w
    assert d_term == pytest.approx(-10.0, rel=1e-3)
    for _ in range(4000):
        out, st = rc.pid_step(loop, st, np.array([0.5, 0.0, 0.0]), np.zeros(3), dt)
    assert st[12] == pytest.approx(0.3)  # MC_RR_INT_LIM


def test_crazyflie_mixer_is_power_distribution_legacy():
    """m1 = T - r/2 + p/2 + yaw, m2 = T - r/2 - p/2 - yaw, m3 = T + r/2 - p/2 + yaw, m4 = T + r/2 + p/2 - yaw in
    UINT16 counts, with the firmware's roll = +x torque, pitch = nose up = -y torque, yaw = -z torque (its PID
    output negated in controller_pid.c)."""
    loop = loop_on("crazyflie")
    r, p, y = 1000.0, 2000.0, 3000.0  # firmware command counts
    out_flu = np.array([r, -p, -y])  # the same command as FLU torque senses
    m = loop.mixer[:, 1:] @ out_flu * rc.UINT16_MAX
    np.testing.assert_allclose(m, [-r / 2 + p / 2 + y, -r / 2 - p / 2 - y, r / 2 - p / 2 + y, r / 2 + p / 2 - y], atol=1e-9)
    assert np.all(loop.mixer[:, 0] == 1.0)


def test_px4_allocation_normalization_for_quad_x():
    """ControlAllocationPseudoInverse: a square Quad X has roll/pitch entries 1/sqrt(2), yaw and thrust 1."""
    loop = loop_on("px4", X500)
    np.testing.assert_allclose(np.abs(loop.mixer[:, 1:3]), 1 / math.sqrt(2), rtol=1e-9)
    np.testing.assert_allclose(np.abs(loop.mixer[:, 3]), 1.0, rtol=1e-9)
    np.testing.assert_allclose(loop.mixer[:, 0], 1.0, rtol=1e-9)
    # torque senses follow the motor table (edgectl/mixers.py px4 rows)
    from edgectl.mixers import MIXERS
    np.testing.assert_array_equal(np.sign(loop.mixer[:, 1:]), np.asarray(MIXERS["px4"]["signs"]))


def test_ardupilot_factors_are_normalised_to_half():
    loop = loop_on("ardupilot", X500)
    np.testing.assert_allclose(np.abs(loop.mixer[:, 1:]), 0.5)


def test_cap_lowers_all_motors_by_the_excess_and_thrust_models():
    loop = loop_on("px4", X500)
    u = rc.mix(loop, 0.95, np.array([0.2, 0.0, 0.0]))  # roll asks 0.95 +- 0.14: the top motor would exceed 1
    m = loop.mixer[:, 0] * 0.95 + loop.mixer[:, 1:] @ np.array([0.2, 0.0, 0.0])
    np.testing.assert_allclose(u, m - (m.max() - 1.0), atol=1e-12)  # THR_MDL_FAC 0: linear
    ap = loop_on("ardupilot", X500)
    u = rc.mix(ap, 0.5, np.zeros(3))
    assert 0.35 * u + 0.65 * u * u == pytest.approx(0.5)  # MOT_THST_EXPO 0.65
    cf = loop_on("crazyflie")
    assert rc.mix(cf, 0.49, np.zeros(3))[0] == pytest.approx(0.7)  # battery compensation: the platform's u^2 curve


def _hovering(loop, platform):
    """(plant params stepping at the loop's rate, dt, hover state, loop state at rest, hover thrust setpoint)."""
    p = nq.params_from_platform(platform)
    dt = 1.0 / loop.rate_hz
    p[nq.PARAM_INDEX["dt"]] = dt
    x = nq.hover_state(p)
    return p, dt, x, rc.pid_init(loop, x[10:13]), rc.thrust_setpoint_for_motor(loop, x[13])


@pytest.mark.parametrize("platform,fw", [(CF, "crazyflie"), (X500, "px4"), (X500, "ardupilot")])
def test_closed_loop_step_response(platform, fw):
    """A 1 rad/s roll-rate step on the hovering vehicle, the loop at its rate with the platform's motor lag:
    tracked within 15 % from 0.3 s (the Crazyflie, with its slow-falling brushed motors, rings at 12 %; ArduPilot within
    20 %: its attitude loop makes up the slewed start, as real ArduCopter SITL does, 1.72 rad/s after a 1.5 rad/s step
    in tests/data/ardupilot_sitl_rate_steps.csv), overshoot under 50 %, the other axes quiet."""
    loop = loop_on(fw, platform)
    p, dt, x, st, thrust = _hovering(loop, platform)
    w = []
    for _ in range(int(0.5 / dt)):
        out, st = rc.pid_step(loop, st, np.array([1.0, 0.0, 0.0]), x[10:13], dt)
        x = nq.step(x, 2.0 * rc.mix(loop, thrust, out) - 1.0, p)
        w.append(x[10:13].copy())
    w = np.array(w)
    after = w[int(0.3 / dt):]
    assert np.all(np.abs(after[:, 0] - 1.0) < (0.2 if fw == "ardupilot" else 0.15)), (after[:, 0].min(), after[:, 0].max())
    assert w[:, 0].max() < 1.5 and np.abs(w[:, 1:]).max() < 0.1


def test_platforms_name_their_loops_and_unknown_firmware_is_refused(tmp_path):
    assert rc.from_platform(CF).firmware == "crazyflie" and rc.from_platform(X500).firmware == "px4"
    bad = CF.raw.decode().replace('firmware = { value = "crazyflie", unit = ""', 'firmware = { value = "betaflight", unit = ""')
    with pytest.raises(PlatformError, match="rate_controller.firmware"):
        parse_platform(bad.encode(), tmp_path / "x.toml")
    without = load_platform("crazyflie_2_1_flow")
    with pytest.raises(ValueError, match="no \\[rate_controller\\] section"):
        rc.from_platform(without)


def test_jax_and_numpy_run_the_same_loop():
    jnp = pytest.importorskip("jax.numpy")
    loop = loop_on("px4", X500)
    rng = np.random.default_rng(0)
    st_n = rc.pid_init(loop, rng.normal(size=3))
    st_j = jnp.asarray(st_n, jnp.float32)
    for _ in range(20):
        sp, w = rng.normal(size=3), rng.normal(size=3)
        out_n, st_n = rc.pid_step(loop, st_n, sp, w, 0.0025, 1.1)
        out_j, st_j = rc.pid_step(loop, st_j, jnp.asarray(sp, jnp.float32), jnp.asarray(w, jnp.float32), 0.0025, 1.1, xp=jnp)
        np.testing.assert_allclose(np.asarray(out_j), out_n, rtol=2e-4, atol=2e-5)
        np.testing.assert_allclose(np.asarray(rc.mix(loop, 0.6, out_j, xp=jnp)), rc.mix(loop, 0.6, out_n), atol=2e-5)


def test_the_loader_knows_every_modelled_rate_loop():
    from edgectl.platforms import RATE_FIRMWARES
    assert sorted(rc.FIRMWARES) == sorted(RATE_FIRMWARES)


def _fly_recorded_rates(loop, platform, t, cmd_flu):
    """The platform's hover, its rate loop at its own rate fed the recorded setpoints (held between samples):
    (times, body rates FLU, roll angle)."""
    p, dt, x, st, thrust = _hovering(loop, platform)
    ts = np.arange(0.0, t[-1], dt)
    w, roll = np.zeros((ts.size, 3)), np.zeros(ts.size)
    for k, tk in enumerate(ts):
        i = np.searchsorted(t, tk, side="right") - 1
        out, st = rc.pid_step(loop, st, cmd_flu[i] if i >= 0 else np.zeros(3), x[10:13], dt)
        x = nq.step(x, 2.0 * rc.mix(loop, thrust, out) - 1.0, p)
        q = x[3:7]
        w[k], roll[k] = x[10:13], math.atan2(2 * (q[0] * q[1] + q[2] * q[3]), 1 - 2 * (q[1] ** 2 + q[2] ** 2))
    return ts, w, roll


def test_ardupilot_loop_matches_real_arducopter_sitl_rate_steps():
    """The witness is real ArduCopter: tests/data/ardupilot_sitl_rate_steps.csv is its SITL (4.7.0-dev) flying the X500
    in GUIDED_NOGPS, a +1.5 then -1.5 rad/s roll-rate step of 0.2 s each. ArduPilot slews the rate target at
    ATC_ACCEL_R_MAX and holds the attitude the slewed target reached (7.2 deg); a loop that flies the setpoint as sent
    (what edgectl modelled before) ends level and misses the rate trace by 0.74 rad/s RMS."""
    import dataclasses
    path = Path(__file__).parent / "data" / "ardupilot_sitl_rate_steps.csv"
    d = np.loadtxt(path, delimiter=",")
    t, cmd = d[:, 0], d[:, 1:4] * np.array([1.0, -1.0, -1.0])  # FRD -> FLU
    window = (t > 0.95) & (t < 1.9)  # the roll pair and its settling
    assert np.abs(cmd[window, 0]).max() == pytest.approx(1.5)
    real_p, real_roll = d[window, 7], np.interp(1.9, t, d[:, 4]) - d[0, 4]
    assert real_roll > np.radians(5.0)  # the recording shows the held attitude
    loop = loop_on("ardupilot", X500)
    ts, w, roll = _fly_recorded_rates(loop, X500, t, cmd)
    rms = float(np.sqrt(np.mean((np.interp(t[window], ts, w[:, 0]) - real_p) ** 2)))
    assert rms < 0.2, rms  # measured 0.11 rad/s
    assert abs(np.interp(1.9, ts, roll) - real_roll) < np.radians(1.5), (np.degrees(np.interp(1.9, ts, roll)), np.degrees(real_roll))
    unshaped = dataclasses.replace(loop, sp_accel_max=np.zeros(3), angle_p=np.zeros(3))
    ts, w, roll = _fly_recorded_rates(unshaped, X500, t, cmd)
    assert float(np.sqrt(np.mean((np.interp(t[window], ts, w[:, 0]) - real_p) ** 2))) > 0.5
    assert abs(np.interp(1.9, ts, roll)) < np.radians(2.0)


def test_px4_loop_matches_real_px4_sitl_rate_steps():
    """The witness is real PX4: tests/data/px4_sitl_rate_steps.csv is its SITL (v1.17.0-alpha1) flying the X500 in
    OFFBOARD, the same +-1.5 rad/s roll-rate pair. PX4 hands body-rate setpoints straight to mc_rate_control (no
    shaping, no attitude hold: the roll returns to level), and edgectl's PX4 loop follows the recording."""
    path = Path(__file__).parent / "data" / "px4_sitl_rate_steps.csv"
    d = np.loadtxt(path, delimiter=",")
    t, cmd = d[:, 0], d[:, 1:4] * np.array([1.0, -1.0, -1.0])  # FRD -> FLU
    window = (t > 0.95) & (t < 1.9)
    assert np.abs(cmd[window, 0]).max() == pytest.approx(1.5)
    real_p = d[window, 7]
    assert abs(np.interp(1.9, t, d[:, 4]) - d[0, 4]) < np.radians(1.0)  # PX4 ends level: nothing holds the attitude
    ts, w, roll = _fly_recorded_rates(loop_on("px4", X500), X500, t, cmd)
    # the setpoint reaches PX4 up to one 100 Hz period late (MAVLink, scheduling): the platform's action_delay range;
    # the best lag of 0-20 ms measured 10 ms and 0.033 rad/s (0.155 at no lag)
    rms = min(float(np.sqrt(np.mean((np.interp(t[window] - lag, ts, w[:, 0]) - real_p) ** 2))) for lag in (0.0, 0.005, 0.01, 0.015, 0.02))
    assert rms < 0.08, rms
    assert abs(np.interp(1.9, ts, roll)) < np.radians(1.5)
    ts, w, _ = _fly_recorded_rates(loop_on("ardupilot", X500), X500, t, cmd)  # a loop that shapes would not fit
    assert float(np.sqrt(np.mean((np.interp(t[window], ts, w[:, 0]) - real_p) ** 2))) > 0.4

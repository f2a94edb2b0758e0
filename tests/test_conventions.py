"""Motor order, spin and torque signs held to the real firmware's mixer, not to our own code.

The table below is bitcraze/crazyflie-firmware `src/modules/src/power_distribution_quadrotor.c`,
`powerDistributionForceTorque` (read 2026-12-06): with rollPart, pitchPart, yawPart the per-motor
shares of the commanded torques,
    M1 = T - roll - pitch - yaw,   M2 = T - roll + pitch + yaw,
    M3 = T + roll + pitch - yaw,   M4 = T + roll - pitch + yaw.
The mixer inverts the vehicle's allocation, so more thrust on motor i produces a torque of the sign
that motor is given for that axis (body x forward, y left, z up). Every implementation that
turns motor thrusts into torques, or torques into motor commands, is checked against it by what it
does (a step, a command), so a flipped sign in any one of them fails here: the platform file, the
JAX and Numba simulators, the shield's predictor, the Python and C backup controllers and the
simulated Crazyflie's stand-in of the firmware PID.
"""
from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgectl.platforms import PlatformError, load_platform, parse_platform
from edgectl.plant import quadrotor as nq

REPO = Path(__file__).resolve().parent.parent
# Rows M1..M4, columns (roll, pitch, yaw): the firmware's signs, copied from its source by hand.
FIRMWARE = np.array([[-1, -1, -1], [-1, +1, +1], [+1, +1, -1], [+1, -1, +1]])
CRAZYFLIE_PLATFORMS = sorted(p.stem for p in (REPO / "hardware").glob("crazyflie*.toml"))
# The simulated vehicle compiles the app with gcc too: a required tool (.ci/run installs it), not a skip.
GCC = shutil.which("gcc") or "gcc"


@pytest.fixture(scope="module", params=CRAZYFLIE_PLATFORMS)
def platform(request):
    return load_platform(request.param)


def _bumped_rates(step, x0, hover_action, params):
    """(4, 3): body-rate change after one step with one motor's command raised, minus the rest."""
    base = np.asarray(step(x0, hover_action, params))[10:13]
    out = []
    for i in range(4):
        a = hover_action.copy()
        a[i] += 0.2
        out.append(np.asarray(step(x0, a, params))[10:13] - base)
    return np.array(out)


def _assert_firmware_signs(d_omega, what):
    signs = np.sign(np.round(d_omega / np.abs(d_omega).max(axis=0), 6)).astype(int)
    assert (signs == FIRMWARE).all(), f"{what}: torque signs per motor (roll, pitch, yaw)\n{signs}\nfirmware\n{FIRMWARE}"


def test_numba_simulator_matches_firmware_mixer(platform):
    p = nq.params_from_platform(platform)
    x = nq.hover_state(p)
    a = np.full(4, float(nq.hover_action(p)))
    _assert_firmware_signs(_bumped_rates(nq.step, x, a, p), "Numba simulator")


def test_jax_simulator_matches_firmware_mixer(platform):
    import jax.numpy as jnp

    from train_fast.sims import quadrotor as jq

    p = jq.nominal_params(platform)
    x = jq.State(pos=jnp.zeros(3), quat=jnp.array([1.0, 0, 0, 0]), vel=jnp.zeros(3), omega=jnp.zeros(3),
                 motor=jnp.full(4, jq.hover_motor(p)))
    h = float(jq.motor_to_action(jq.hover_motor(p), p))

    def step(_x, a, params):
        s = jq.dynamics_step(x, jnp.asarray(a, jnp.float32), params)
        return np.concatenate([np.asarray(s.pos), np.asarray(s.quat), np.asarray(s.vel), np.asarray(s.omega)])

    _assert_firmware_signs(_bumped_rates(step, None, np.full(4, h), p), "JAX simulator")


def test_shield_predictor_params_match_firmware_mixer(platform):
    from edgectl.safety.shield import _random_params

    for p in [nq.params_from_platform(platform), *_random_params(platform, 3, 0)]:
        x = nq.hover_state(p)
        a = np.full(4, float(nq.hover_action(p)))
        _assert_firmware_signs(_bumped_rates(nq.step, x, a, p), "shield predictor")


def _torque_of(actions, hover):
    """Signed torque each axis would get from these motor commands, by the firmware's table."""
    return FIRMWARE.T @ (np.asarray(actions, np.float64) - hover)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_python_backup_opposes_a_body_rate_like_the_firmware(platform, axis):
    from edgectl.safety import backup as bk

    ctl = bk.BackupController(platform)
    omega = np.zeros(3)
    omega[axis] = 2.0
    ctl.engage(np.zeros(3))
    a = ctl(np.zeros(3), np.array([1.0, 0, 0, 0]), np.zeros(3), omega)
    tq = _torque_of(a, np.mean(a))
    assert tq[axis] < 0, f"backup answers +{'rpy'[axis]} rate with {tq} (firmware-signed torque)"


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_c_backup_opposes_a_body_rate_like_the_firmware(tmp_path, platform, axis):
    from edgectl.safety import backup as bk
    from edgectl.safety import c_backup

    c_backup.write(platform, tmp_path)
    so = tmp_path / "libb.so"
    r = subprocess.run([GCC, "-O1", "-shared", "-fPIC", "-DEDGECTL_BACKUP_DOUBLE", "-o", str(so),
                        str(tmp_path / "edgectl_backup.c"), "-lm"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lib = ctypes.CDLL(str(so))
    real = ctypes.c_double

    class S(ctypes.Structure):
        _fields_ = [("phase", ctypes.c_int), ("t_phase", real)] + [(n, real * k) for n, k in bk.STATE_FIELDS[2:]]

    P = ctypes.POINTER(real)
    lib.edgectl_backup_step.argtypes = [ctypes.POINTER(S), P, P, P, P, P]
    model = bk.model_from_platform(platform)
    st = bk.init_state(model, np.zeros(3))
    s = S()
    for name, _ in S._fields_:
        v = st[name]
        if np.ndim(v):
            getattr(s, name)[:] = [float(x) for x in np.ravel(v)]
        else:
            setattr(s, name, type(getattr(s, name))(v))
    arr = lambda v: (real * len(v))(*[float(x) for x in v])  # noqa: E731
    omega = [0.0, 0.0, 0.0]
    omega[axis] = 2.0
    out = (real * 4)()
    lib.edgectl_backup_step(ctypes.byref(s), arr([0, 0, 0]), arr([1, 0, 0, 0]), arr([0, 0, 0]), arr(omega), out)
    a = np.array(out[:])
    tq = _torque_of(a, np.mean(a))
    assert tq[axis] < 0, f"C backup answers +{'rpy'[axis]} rate with {tq}"


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_sim_vehicle_firmware_pid_mixes_like_the_firmware(platform, axis):
    """The simulated Crazyflie's stand-in of the firmware's PID + power distribution."""
    from firmware_bridge.sim.crazyflie.control import FlightController
    from firmware_bridge.sim.crazyflie.setpoints import MODE_ABS, Setpoint

    p = nq.params_from_platform(platform)
    fc = FlightController(nq.params_as_dict(p), 0.001)
    x = nq.hover_state(p)
    x[2] = 0.5
    x[10 + axis] = 0.5
    fc.motor_model = [float(m) for m in x[nq.MOTOR]]  # spun up: its lead compensation is not saturated
    sp = Setpoint(mode_x=MODE_ABS, mode_y=MODE_ABS, mode_z=MODE_ABS, z=0.5)
    cmd = np.asarray(fc.step(sp, x), np.float64)
    tq = _torque_of(cmd, np.mean(cmd))
    assert tq[axis] < 0, f"firmware PID stand-in answers +{'rpy'[axis]} rate with {tq}"


# --- the loader's own check ---------------------------------------------------------------------
OLD_SPIN = "value = [1, -1, 1, -1]"


def _variant(text: str, old: str, new: str) -> bytes:
    assert old in text
    return text.replace(old, new, 1).encode()


def test_loader_refuses_the_pre_issue_13_spin():
    """The convention every edgectl file used before issue 13 (M1 and M3 clockwise)."""
    path = REPO / "hardware" / "crazyflie_2_1.toml"
    text = path.read_text()
    new_spin = "value = [-1, 1, -1, 1]"
    with pytest.raises(PlatformError, match=r"rotors.spin.*crazyflie firmware: M1 gives \+yaw"):
        parse_platform(_variant(text, new_spin, OLD_SPIN), path)
    # Swapped motor order (M2 <-> M4 positions) is refused too.
    pos = "[[0.028, -0.028, 0.0], [-0.028, -0.028, 0.0], [-0.028, 0.028, 0.0], [0.028, 0.028, 0.0]]"
    if pos in text:
        with pytest.raises(PlatformError, match="roll|pitch"):
            parse_platform(_variant(text, pos, "[[0.028, -0.028, 0.0], [0.028, 0.028, 0.0], [-0.028, 0.028, 0.0], [-0.028, -0.028, 0.0]]"), path)


def test_every_shipped_quadrotor_names_its_firmware():
    import tomllib

    for f in sorted((REPO / "hardware").glob("*.toml")):
        doc = tomllib.loads(f.read_text())
        if doc["platform"]["kind"] == "quadrotor":
            assert doc["platform"].get("firmware"), f"{f.name}: [platform] firmware missing: its mixer is not checked"


def test_mixer_tables_agree_with_this_file():
    """edgectl/mixers.py carries its own copy for the loader; both were read off the firmware."""
    from edgectl.mixers import MIXERS

    assert (np.array(MIXERS["crazyflie"]["signs"]) == FIRMWARE).all()
    # PX4 / ArduPilot Quad X (PX4 Airframe Reference; ArduPilot "Connect ESCs and Motors"):
    # 1 front-right CCW, 2 back-left CCW, 3 front-left CW, 4 back-right CW.
    quad_x = np.array([[-1, -1, -1], [+1, +1, -1], [+1, -1, +1], [-1, +1, +1]])
    assert (np.array(MIXERS["px4"]["signs"]) == quad_x).all()
    assert (np.array(MIXERS["ardupilot"]["signs"]) == quad_x).all()


# --- the simulated Crazyflie's stand-in firmware headers ----------------------------------------
# crazyflie-firmware src/modules/interface/stabilizer_types.h: quaternion_t is a union of {q0, q1, q2, q3}
# and {x, y, z, w} (w last: the estimator's order), sensorData_t.gyro is in deg/s. The app the simulated
# vehicle compiles reads the state through these headers, so they must lay the fields out as the firmware.
def test_stand_in_quaternion_is_laid_out_as_the_firmwares(tmp_path):
    inc = REPO / "firmware_bridge" / "sim" / "crazyflie" / "host_firmware"
    src = tmp_path / "q.c"
    src.write_text('#include <stdio.h>\n#include <stddef.h>\n#include "stabilizer_types.h"\n'
                   "int main(void) { quaternion_t q = {0}; q.w = 4.0f; q.x = 1.0f;\n"
                   '  printf("%zu %zu %zu %zu %g %g\\n", offsetof(quaternion_t, x), offsetof(quaternion_t, y),'
                   " offsetof(quaternion_t, z), offsetof(quaternion_t, w), q.q0, q.q3); return 0; }\n")
    exe = tmp_path / "q"
    r = subprocess.run([GCC, "-I", str(inc), "-o", str(exe), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    x, y, z, w, q0, q3 = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    assert (int(x), int(y), int(z), int(w)) == (0, 4, 8, 12)  # x, y, z, then w
    assert float(q0) == 1.0 and float(q3) == 4.0  # q0 is x, q3 is w

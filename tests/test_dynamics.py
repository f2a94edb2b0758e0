"""Quadrotor dynamics: physics checks on the Numba simulator and JAX == Numba equivalence.

Conventions under test (train_fast/sims/quadrotor.py, hardware/crazyflie_2_1.toml): world z up;
body x forward, y left, z up; rotors M1 front-right (x+, y-), M2 back-right (x-, y-),
M3 back-left (x-, y+), M4 front-left (x+, y+); spin -1 on M1, M3 (counter-clockwise propellers,
crazyflie-firmware powerDistributionForceTorque) gives -z yaw torque on the body; tests/test_conventions.py
holds every implementation to the firmware's table.
"""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgectl.platforms import load_platform
from edgectl.plant import quadrotor as nq

REPO = Path(__file__).resolve().parent.parent
PLATFORM_FILE = REPO / "hardware" / "crazyflie_2_1.toml"


@pytest.fixture(scope="module")
def platform():
    return load_platform(PLATFORM_FILE)


@pytest.fixture(scope="module")
def nominal(platform):
    return nq.params_from_platform(platform)


def set_param(p: np.ndarray, name: str, value) -> np.ndarray:
    """Copy of a params array with field `name` (a Params field, all its components) replaced."""
    p = p.copy()
    i = 0
    for field, width in nq.PARAM_FIELDS:
        if field == name:
            p[i:i + width] = value
            return p
        i += width
    raise KeyError(name)


def run(x, action, params, n):
    for _ in range(n):
        x = nq.step(x, action, params)
    return x


def rot(q):
    """Body-to-world rotation matrix of a (w, x, y, z) unit quaternion."""
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def held_motors_state(params, motors, dtype=np.float64):
    """Level at rest with the motors already at `motors`, and the action that holds them there."""
    x = nq.hover_state(params, dtype)
    x[nq.MOTOR] = motors
    return x, np.asarray(nq.motor_to_action(np.asarray(motors), params), dtype=dtype)


# ---------------------------------------------------------------------------------------------
# Layout and conversions
# ---------------------------------------------------------------------------------------------

def test_layout_constants():
    assert nq.STATE_SIZE == 17
    assert nq.STATE_NAMES[:3] == ("px", "py", "pz") and nq.STATE_NAMES[3:7] == ("qw", "qx", "qy", "qz")
    assert nq.STATE_NAMES[13:] == ("m0", "m1", "m2", "m3")
    assert nq.PARAM_SIZE == len(nq.PARAM_NAMES) == sum(w for _, w in nq.PARAM_FIELDS) == 32
    assert len(set(nq.PARAM_NAMES)) == nq.PARAM_SIZE


def test_params_to_array_matches_jax_nominal_and_platform(platform, nominal):
    from train_fast.sims import quadrotor as jq

    jp = jq.nominal_params(platform)  # float32 JAX leaves
    arr = nq.params_to_array(jp)
    assert arr.shape == (nq.PARAM_SIZE,) and arr.dtype == np.float64
    np.testing.assert_allclose(arr, nominal, rtol=1e-6, atol=0)
    d = nq.params_as_dict(nominal)
    assert d["mass"] == 0.027
    np.testing.assert_array_equal(d["rotor_y"], [-0.0325, -0.0325, 0.0325, 0.0325])
    np.testing.assert_array_equal(d["spin"], [-1, 1, -1, 1])
    assert d["dt"] == 0.01
    # A dict with the Params field names works too, and field order is PARAM_FIELDS order.
    as_dict = {f.name: getattr(jp, f.name) for f in dataclasses.fields(jq.Params)}
    np.testing.assert_array_equal(nq.params_to_array(as_dict), arr)
    with pytest.raises(KeyError, match="mass"):
        nq.params_to_array({k: v for k, v in as_dict.items() if k != "mass"})


def test_params_to_array_batched(platform):
    import jax

    from train_fast.sims import quadrotor as jq

    nominal = jq.nominal_params(platform)
    ranges = jq.randomization_ranges(platform)
    keys = jax.random.split(jax.random.PRNGKey(3), 5)
    batched, _ = jax.vmap(lambda k: jq.sample_params(k, nominal, ranges, 0.01, 1e-6))(keys)
    arr = nq.params_to_array(batched)
    assert arr.shape == (5, nq.PARAM_SIZE)
    for i in range(5):
        one = jax.tree_util.tree_map(lambda leaf, i=i: leaf[i], batched)
        np.testing.assert_array_equal(arr[i], nq.params_to_array(one))
    # Unbatched fields (gravity, rotor geometry, dt) broadcast over the batch.
    assert np.all(arr[:, nq.PARAM_INDEX["gravity"]] == np.float32(9.81))
    assert len(np.unique(arr[:, nq.PARAM_INDEX["mass"]])) == 5


def test_numba_module_does_not_import_jax():
    code = ("import sys; import edgectl.plant.quadrotor as q; "
            "assert not any(m == 'jax' or m.startswith('jax.') for m in sys.modules), 'jax imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# ---------------------------------------------------------------------------------------------
# Physics
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("randomized", [False, True])
def test_hover_thrust_balances_gravity(nominal, dtype, randomized):
    p = nominal
    if randomized:  # any mass / thrust coefficient: hover_motor must still balance gravity
        p = set_param(set_param(p, "mass", 0.031), "thrust_max", nominal[nq.PARAM_INDEX["thrust_max"]] * 0.93)
    x = nq.hover_state(p, dtype)
    a = np.full(4, nq.hover_action(p), dtype=dtype)
    assert 0.0 < a[0] < 1.0  # the Crazyflie hovers below full thrust
    x = run(x, a, p, 100)
    assert x.dtype == dtype
    assert np.max(np.abs(x[nq.VEL])) < 1e-4
    assert np.max(np.abs(x[nq.POS])) < 1e-4
    np.testing.assert_allclose(x[nq.QUAT], [1, 0, 0, 0], atol=1e-7)
    np.testing.assert_allclose(x[nq.OMEGA], 0, atol=1e-6)


def test_below_hover_thrust_sinks(nominal):
    # The hover test above would also pass with thrust and gravity both missing: check thrust acts.
    x = nq.hover_state(nominal)
    a = np.full(4, nq.hover_action(nominal) - 0.2)
    x = run(x, a, nominal, 50)
    assert x[9] < -0.1 and x[2] < 0
    a = np.full(4, nq.hover_action(nominal) + 0.2)
    x = run(nq.hover_state(nominal), a, nominal, 50)
    assert x[9] > 0.1 and x[2] > 0


def test_free_fall(nominal):
    assert nominal[nq.PARAM_INDEX["motor_min"]] == 0.0  # min_rpm is 0: action -1 is zero thrust
    g = nominal[nq.PARAM_INDEX["gravity"]]
    x = np.zeros(17)
    x[3] = 1.0
    x[0:2] = (0.3, -0.7)
    a = -np.ones(4)
    n = 50
    t = n * nominal[nq.PARAM_INDEX["dt"]]
    assert t == pytest.approx(0.5)
    x = run(x, a, nominal, n)
    assert x[2] == pytest.approx(-0.5 * g * t * t, rel=1e-4)
    assert x[9] == pytest.approx(-g * t, rel=1e-4)
    assert (x[0], x[1]) == (0.3, -0.7)
    assert np.all(x[nq.MOTOR] == 0.0)
    np.testing.assert_array_equal(x[7:9], 0.0)


def test_torque_free_spin_conserves_angular_momentum_and_energy(nominal):
    inertia = np.array([1e-5, 2e-5, 3e-5])
    p = set_param(nominal, "inertia", inertia)
    x = np.zeros(17)
    x[3:7] = np.array([0.9, 0.1, -0.3, 0.2]) / np.linalg.norm([0.9, 0.1, -0.3, 0.2])
    x[10:13] = (3.0, -2.0, 5.0)
    a = -np.ones(4)  # motors at 0: no thrust, no rotor torque

    def momentum(s):
        return rot(s[3:7]) @ (inertia * s[10:13])

    def energy(s):
        return 0.5 * np.dot(s[10:13], inertia * s[10:13])

    l0, e0 = momentum(x), energy(x)
    worst_l = worst_e = 0.0
    omega_moved = 0.0
    for _ in range(1000):
        x = nq.step(x, a, p)
        worst_l = max(worst_l, np.linalg.norm(momentum(x) - l0) / np.linalg.norm(l0))
        worst_e = max(worst_e, abs(energy(x) - e0) / e0)
        omega_moved = max(omega_moved, np.linalg.norm(x[10:13] - (3.0, -2.0, 5.0)))
    assert worst_l < 1e-4, worst_l
    assert worst_e < 1e-4, worst_e
    # Not trivially conserved: the body rates themselves change (Euler's equations act).
    assert omega_moved > 0.5
    # A missing gyroscopic term would break conservation: check the test can see that.
    x1 = nq.step(np.r_[x[:10], 3.0, -2.0, 5.0, x[13:]], a, p)
    dw = (x1[10:13] - (3.0, -2.0, 5.0)) / p[nq.PARAM_INDEX["dt"]]
    expected = -np.cross((3.0, -2.0, 5.0), inertia * (3.0, -2.0, 5.0)) / inertia
    np.testing.assert_allclose(dw, expected, rtol=0.05)


def rotor_torques(params, motors):
    d = nq.params_as_dict(params)
    b0, b1 = d["thrust_shape"]
    m = np.asarray(motors)
    thrust = d["thrust_max"] * (b0 + b1 * m + (1 - b0 - b1) * m ** 2)
    tau = np.array([np.dot(d["rotor_y"], thrust), -np.dot(d["rotor_x"], thrust),
                    d["torque_coefficient"] * np.dot(d["spin"], thrust)])
    return tau, thrust


def test_left_rotors_up_rolls_positive(nominal):
    """tau_x = sum(y_i T_i): more thrust on M3, M4 (y > 0, the left side) lifts the left side,
    a positive rotation about +x (y toward z). Roll acceleration is positive, not negative."""
    hm = nq.hover_motor(nominal)
    motors = np.array([hm - 0.05, hm - 0.05, hm + 0.05, hm + 0.05])
    tau, _ = rotor_torques(nominal, motors)
    assert tau[0] > 0 and tau[1] == pytest.approx(0, abs=1e-15) and tau[2] == pytest.approx(0, abs=1e-15)
    x, a = held_motors_state(nominal, motors)
    dt = nominal[nq.PARAM_INDEX["dt"]]
    x1 = nq.step(x, a, nominal)
    ixx = nominal[nq.PARAM_INDEX["inertia_x"]]
    assert x1[10] > 0
    assert x1[10] == pytest.approx(tau[0] / ixx * dt, rel=1e-9)  # constant torque, from rest
    assert abs(x1[11]) < 1e-12 and abs(x1[12]) < 1e-12
    # Integrate on: the body's left (y) axis tilts up and the thrust pushes the vehicle right (-y).
    x = run(x, a, nominal, 10)
    body_y_in_world = rot(x[3:7])[:, 1]
    assert body_y_in_world[2] > 0.01
    assert x[4] > 0  # qx > 0: positive roll
    assert x[8] < 0


def test_back_rotors_up_pitches_positive(nominal):
    """tau_y = -sum(x_i T_i): more thrust on M2, M3 (x < 0, the back) gives positive pitch
    acceleration about +y, which puts the nose (body x) down."""
    hm = nq.hover_motor(nominal)
    motors = np.array([hm - 0.05, hm + 0.05, hm + 0.05, hm - 0.05])
    tau, _ = rotor_torques(nominal, motors)
    assert tau[1] > 0 and abs(tau[0]) < 1e-15
    x, a = held_motors_state(nominal, motors)
    x1 = nq.step(x, a, nominal)
    dt, iyy = nominal[nq.PARAM_INDEX["dt"]], nominal[nq.PARAM_INDEX["inertia_y"]]
    assert x1[11] == pytest.approx(tau[1] / iyy * dt, rel=1e-9) and x1[11] > 0
    x = run(x, a, nominal, 10)
    assert rot(x[3:7])[2, 0] < -0.01  # nose down
    assert x[7] > 0  # thrust tilted forward: accelerates forward (+x)


def test_spin_plus_rotors_give_positive_yaw_torque(nominal):
    """Spin +1 rotors (M2, M4, clockwise) speeding up, spin -1 (M1, M3) slowing: +z yaw torque only."""
    d = nq.params_as_dict(nominal)
    np.testing.assert_array_equal(d["spin"], [-1, 1, -1, 1])
    hm = nq.hover_motor(nominal)
    motors = np.array([hm - 0.05, hm + 0.05, hm - 0.05, hm + 0.05])
    tau, _ = rotor_torques(nominal, motors)
    assert tau[2] > 0 and abs(tau[0]) < 1e-15 and abs(tau[1]) < 1e-15
    x, a = held_motors_state(nominal, motors)
    x1 = nq.step(x, a, nominal)
    dt, izz = nominal[nq.PARAM_INDEX["dt"]], nominal[nq.PARAM_INDEX["inertia_z"]]
    assert x1[12] > 0
    assert x1[12] == pytest.approx(tau[2] / izz * dt, rel=1e-9)
    assert abs(x1[10]) < 1e-12 and abs(x1[11]) < 1e-12
    x = run(x, a, nominal, 10)
    assert x[6] > 0  # qz > 0: yawed left (counter-clockwise seen from above)


def test_motor_lag_is_first_order(nominal):
    x = nq.hover_state(nominal)
    x[nq.MOTOR] = 0.0
    a = np.ones(4)  # full command
    tau = nominal[nq.PARAM_INDEX["motor_tau"]]
    t = 0.0
    for _ in range(15):
        x = nq.step(x, a, nominal)
        t += nominal[nq.PARAM_INDEX["dt"]]
    np.testing.assert_allclose(x[nq.MOTOR], 1.0 - np.exp(-t / tau), rtol=1e-5)  # RK4 at dt / tau = 0.18
    # Falling, the motors follow the fall constant (Eschmann et al. 2024: slower, 0.249 s against 0.055 s).
    x[nq.MOTOR] = 1.0
    down = nominal[nq.PARAM_INDEX["motor_tau_down"]]
    assert down > tau
    for _ in range(15):
        x = nq.step(x, -np.ones(4), nominal)
    np.testing.assert_allclose(x[nq.MOTOR], np.exp(-t / down), rtol=1e-5)
    # Actions outside [-1, 1] are clipped, as in JAX.
    y = nq.step(nq.hover_state(nominal), np.full(4, 7.0), nominal)
    z = nq.step(nq.hover_state(nominal), np.ones(4), nominal)
    np.testing.assert_array_equal(y, z)


def test_thrust_curve_sets_the_hover_command():
    """thrust = c0 + c1 u + c2 u^2 (l2f's identified curve): the hover state carries the weight."""
    from edgectl.platforms import rotor_model

    p = nq.params_from_platform(load_platform(PLATFORM_FILE))
    c = (0.0035, 0.0144, 0.0922)
    p = set_param(set_param(p, "thrust_max", sum(c)), "thrust_shape", (c[0] / sum(c), c[1] / sum(c)))
    x = nq.hover_state(p)
    u = x[nq.MOTOR][0]
    assert 4 * (c[0] + c[1] * u + c[2] * u * u) == pytest.approx(p[nq.PARAM_INDEX["mass"]] * 9.81, rel=1e-9)
    x1 = run(x, np.full(4, nq.hover_action(p)), p, 50)
    assert abs(x1[9]) < 1e-9 and abs(x1[2]) < 1e-9  # stays put
    assert rotor_model(load_platform(PLATFORM_FILE))["thrust_max"] == pytest.approx(0.1125)


def test_rotor_drag_opposes_body_velocity(nominal):
    assert nominal[nq.PARAM_INDEX["drag"]] > 0
    x = nq.hover_state(nominal)
    x[7:10] = (1.0, -0.5, 0.0)
    x1 = nq.step(x, np.full(4, nq.hover_action(nominal)), nominal)
    dv = (x1[7:10] - x[7:10]) / nominal[nq.PARAM_INDEX["dt"]]
    # the mean over the step: the drag itself slows the vehicle within it (by about 0.1 %)
    np.testing.assert_allclose(dv[:2], -nominal[nq.PARAM_INDEX["drag"]] * np.array([1.0, -0.5]) / nominal[nq.PARAM_INDEX["mass"]], rtol=5e-3)
    none = set_param(nominal, "drag", 0.0)
    assert np.allclose(nq.step(x, np.full(4, nq.hover_action(none)), none)[7:9], x[7:9], atol=1e-12)


def test_disturbance_force_world_and_torque_body(nominal):
    nominal = set_param(nominal, "drag", 0.0)  # the disturbance alone
    p = set_param(set_param(nominal, "force", (0.01, -0.02, 0.0)), "torque", (0.0, 0.0, 3e-6))
    x = nq.hover_state(p)
    x[3:7] = (np.cos(0.5), 0.0, 0.0, np.sin(0.5))  # yawed by 1 rad: world and body x differ
    a = np.full(4, nq.hover_action(p))
    x1 = nq.step(x, a, p)
    dt, m = p[nq.PARAM_INDEX["dt"]], p[nq.PARAM_INDEX["mass"]]
    np.testing.assert_allclose(x1[7:9], np.array([0.01, -0.02]) / m * dt, rtol=1e-9)
    assert x1[12] == pytest.approx(3e-6 / p[nq.PARAM_INDEX["inertia_z"]] * dt, rel=1e-9)


# ---------------------------------------------------------------------------------------------
# JAX == Numba
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def x64():
    import jax

    with jax.enable_x64(True):
        yield


def random_state(rng, dtype=np.float64):
    q = rng.normal(size=4)
    return np.concatenate([rng.uniform(-1, 1, 3), q / np.linalg.norm(q), rng.uniform(-1, 1, 3),
                           rng.uniform(-2, 2, 3), rng.uniform(0.2, 0.9, 4)]).astype(dtype)


def jax_trajectory(x0, actions, params):
    import jax
    import jax.numpy as jnp

    from train_fast.sims import quadrotor as jq

    def body(s, a):
        s = jq.dynamics_step(s, a, params)
        return s, jnp.concatenate([s.pos, s.quat, s.vel, s.omega, s.motor])

    s0 = jq.State(pos=jnp.asarray(x0[0:3]), quat=jnp.asarray(x0[3:7]), vel=jnp.asarray(x0[7:10]),
                  omega=jnp.asarray(x0[10:13]), motor=jnp.asarray(x0[13:17]))
    _, traj = jax.jit(lambda s, acts: jax.lax.scan(body, s, acts))(s0, jnp.asarray(actions))
    return np.asarray(traj)


def test_jax_equals_numba_float64(platform, x64):
    import jax
    import jax.numpy as jnp

    from train_fast.sims import quadrotor as jq

    nominal = jq.nominal_params(platform, dtype=jnp.float64)
    jp, _ = jq.sample_params(jax.random.PRNGKey(7), nominal, jq.randomization_ranges(platform),
                             platform.get("disturbance.force_std"), platform.get("disturbance.torque_std"))
    assert jp.mass.dtype == jnp.float64
    assert np.all(np.asarray(jp.force) != 0) and np.all(np.asarray(jp.torque) != 0)
    p = nq.params_to_array(jp)
    assert not np.allclose(p, nq.params_from_platform(platform))  # really randomized

    rng = np.random.default_rng(11)
    x0 = random_state(rng)
    actions = rng.uniform(-1, 1, size=(1000, 4))
    ref = jax_trajectory(x0, actions, jp)
    assert ref.dtype == np.float64

    x = x0.copy()
    worst = np.empty(len(actions))
    for t in range(len(actions)):
        x = nq.step(x, actions[t], p)
        worst[t] = np.max(np.abs(x - ref[t]))
    assert np.max(worst) < 1e-5, (int(np.argmax(worst)), float(np.max(worst)))
    # The trajectory went somewhere (a wrong-but-frozen simulator would trivially agree).
    assert np.max(np.abs(ref[-1, 10:13] - x0[10:13])) > 1.0
    assert np.max(np.abs(ref[-1, 0:3] - x0[0:3])) > 1.0


def test_jax_equals_numba_float32(platform):
    """float32 runs stay float32 in Numba and track JAX float32 over a short flight."""
    import jax
    import jax.numpy as jnp

    from train_fast.sims import quadrotor as jq

    jp, _ = jq.sample_params(jax.random.PRNGKey(1), jq.nominal_params(platform), jq.randomization_ranges(platform),
                             platform.get("disturbance.force_std"), platform.get("disturbance.torque_std"))
    assert jp.mass.dtype == jnp.float32
    p = nq.params_to_array(jp, dtype=np.float32)
    rng = np.random.default_rng(5)
    x0 = random_state(rng, np.float32)
    hover = float(nq.hover_action(p))
    actions = np.clip(hover + rng.uniform(-0.1, 0.1, size=(100, 4)), -1, 1).astype(np.float32)
    ref = jax_trajectory(x0, actions, jp)
    assert ref.dtype == np.float32
    x = x0
    worst = 0.0
    for t in range(len(actions)):
        x = nq.step(x, actions[t], p)
        assert x.dtype == np.float32
        worst = max(worst, float(np.max(np.abs(x.astype(np.float64) - ref[t]))))
    assert worst < 1e-4, worst


@pytest.mark.parametrize("shared_params", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_step_batch_equals_step(platform, nominal, shared_params, dtype):
    rng = np.random.default_rng(2)
    n = 64
    states = np.stack([random_state(rng, dtype) for _ in range(n)])
    actions = rng.uniform(-1.2, 1.2, size=(n, 4)).astype(dtype)
    if shared_params:
        params = nominal.copy()
    else:
        params = np.repeat(nominal[None], n, axis=0)
        params[:, nq.PARAM_INDEX["mass"]] *= rng.uniform(0.9, 1.1, n)
        params[:, nq.PARAM_INDEX["torque_x"]] = rng.normal(0, 1e-6, n)
    out = np.empty_like(states)
    got = nq.step_batch(states, actions, params, out)
    assert got is out and out.dtype == dtype
    for i in range(n):
        pi = params if shared_params else params[i]
        np.testing.assert_array_equal(out[i], nq.step(states[i], actions[i], pi))
    # In place (out is states) gives the same result.
    inplace = states.copy()
    nq.step_batch(inplace, actions, params, inplace)
    np.testing.assert_array_equal(inplace, out)
    # step_into writes the same thing without allocating.
    buf = np.empty(17, dtype)
    nq.step_into(states[5], actions[5], params if shared_params else params[5], buf)
    np.testing.assert_array_equal(buf, out[5])


def test_step_batch_rejects_mismatched_params(nominal):
    states = np.tile(nq.hover_state(nominal), (4, 1))
    with pytest.raises(ValueError):
        nq.step_batch(states, np.zeros((4, 4)), np.tile(nominal, (3, 1)), np.empty_like(states))


@pytest.fixture
def one_numba_thread():
    """Long step-major rollouts open one parallel region per step; on a loaded 2-core machine each
    region's barrier can stall for a scheduler tick. Run them on one thread (same kernel)."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(before)


def test_rollout_batch(nominal, one_numba_thread):
    rng = np.random.default_rng(0)
    n = 256
    states = np.tile(nq.hover_state(nominal, np.float32), (n, 1))
    states[:, 0:3] += rng.uniform(-0.3, 0.3, (n, 3)).astype(np.float32)
    states[:, 10:13] += rng.uniform(-1, 1, (n, 3)).astype(np.float32)
    before = states.copy()
    exact = nq.rollout_batch(states, 300, nominal, seed=1)
    np.testing.assert_array_equal(states, before)  # input untouched
    assert exact.dtype == np.float32 and np.all(np.isfinite(exact))
    # The in-loop action law flies (it holds altitude and attitude, not x/y): the benchmark runs
    # vehicles in a bounded, flight-like regime rather than tumbling or falling.
    # z: the motors rise 4.5x faster than they fall (0.055 s / 0.249 s), so the law's sine dither is
    # rectified into extra thrust and the P-D altitude loop settles about 0.11 m high.
    assert np.max(np.abs(exact[:, 2])) < 0.15 and np.max(np.abs(exact[:, 9])) < 0.05
    assert np.max(np.abs(exact[:, 4:7])) < 0.05
    assert np.max(np.abs(exact[:, 10:13])) < 1.0
    assert np.max(np.abs(exact[:, 7:9])) < 2.0
    np.testing.assert_array_equal(nq.rollout_batch(states, 300, nominal, seed=1), exact)  # deterministic
    assert not np.array_equal(nq.rollout_batch(states, 300, nominal, seed=2), exact)  # seed matters
    np.testing.assert_array_equal(nq.rollout_batch(states, 0, nominal), states)
    # Vehicle-major order gives the same numbers as step-major.
    np.testing.assert_array_equal(nq.rollout_batch(states, 300, nominal, seed=1, order="vehicle"), exact)
    for order in ("step", "vehicle"):
        fast = nq.rollout_batch(states, 300, nominal, seed=1, fastmath=True, order=order)
        np.testing.assert_allclose(fast, exact, atol=1e-3)
    with pytest.raises(ValueError):
        nq.rollout_batch(states, 3, nominal, order="sideways")


def test_rollout_batch_is_step_batch_with_the_action_law(nominal):
    """rollout_batch computes its actions in the loop (documented law, BENCH_GAINS); its
    vectorized struct-of-arrays kernel gives exactly repeated step_batch, in both loop orders."""
    rng = np.random.default_rng(4)
    n, seed, n_steps = 300, 3, 5  # 300: more than one vehicle-major chunk, not a multiple of it
    states = np.stack([random_state(rng) for _ in range(n)])
    params = np.repeat(nominal[None], n, axis=0)
    params[:, nq.PARAM_INDEX["mass"]] *= rng.uniform(0.95, 1.05, n)
    params[:, nq.PARAM_INDEX["force_x"]] = rng.normal(0, 0.01, n)
    g = nq.BENCH_GAINS
    hover = nq.hover_action(params)
    x = states
    for t in range(n_steps):
        thr = hover - g["z"] * x[:, 2] - g["vz"] * x[:, 9]
        roll = -(g["att_p"] * x[:, 4] + g["att_d"] * x[:, 10])
        pitch = -(g["att_p"] * x[:, 5] + g["att_d"] * x[:, 11])
        yaw = -(g["yaw_p"] * x[:, 6] + g["yaw_d"] * x[:, 12])
        d = g["dither"] * np.sin(g["dither_rate"] * t + g["seed_phase"] * seed + np.array(g["dither_offsets"]))
        actions = np.clip(np.stack([thr - roll - pitch - yaw, thr - roll + pitch + yaw,
                                    thr + roll + pitch - yaw, thr + roll - pitch + yaw], axis=1) + d, -1, 1)
        x = nq.step_batch(x, actions, params, np.empty_like(x))
    for order in ("step", "vehicle"):
        np.testing.assert_array_equal(nq.rollout_batch(states, n_steps, params, seed=seed, order=order), x)

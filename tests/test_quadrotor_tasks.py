"""The hover task's training-only start draw and the optional actuation delay."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edgectl.platforms import load_platform
from train_fast.tasks import quadrotor_tasks as qt

PLAT = load_platform("crazyflie_2_1")


def _tilts(env, n=4000):
    s = jax.vmap(qt.reset, in_axes=(0, None))(jax.random.split(jax.random.PRNGKey(0), n), env)
    q = np.asarray(s.sim.quat)
    return np.degrees(np.arccos(np.clip(1 - 2 * (q[:, 1] ** 2 + q[:, 2] ** 2), -1, 1)))


def test_training_starts_are_harder_and_evaluation_starts_are_the_rltools_draw():
    cfg = qt.hover_config()
    assert cfg.train_tilt_exponent < 1.0
    ev_env, tr_env = qt.make_env(cfg, PLAT), qt.make_env(cfg, PLAT, training=True)
    ev_t, tr_t = _tilts(ev_env), _tilts(tr_env)
    assert ev_t.max() <= 90.0 + 1e-3 and tr_t.max() <= 90.0 + 1e-3
    # rotation angle uniform in [0, 90] deg: the eval draw equals the uniform one exactly
    uniform = _tilts(qt.make_env(dataclasses.replace(cfg, train_tilt_exponent=1.0), PLAT, training=True))
    np.testing.assert_array_equal(ev_t, uniform)
    assert np.mean(tr_t > 60) > np.mean(ev_t > 60) + 0.15


def _one_step(delay_cfg, delay, action):
    env = qt.make_env(qt.hover_config(action_delay=delay_cfg), PLAT, randomize=False, disturbances=False)
    s = qt.reset(jax.random.PRNGKey(3), env)
    s = dataclasses.replace(s, delay=jnp.asarray(delay, jnp.float32))
    s2, *_ = qt.step(None, s, jnp.asarray(action, jnp.float32), env)
    return np.asarray(s2.sim.motor), env


def test_a_full_period_of_delay_applies_the_previous_command():
    hover = qt.contract(qt.hover_config(), PLAT)["action"]["hover_action"]
    m_up, env = _one_step(1.0, 1.0, [1.0] * 4)
    m_down, _ = _one_step(1.0, 1.0, [-1.0] * 4)
    np.testing.assert_allclose(m_up, m_down)  # the new command has not reached the motors yet
    m_hover, _ = _one_step(0.0, 0.0, [hover] * 4)
    np.testing.assert_allclose(m_up, m_hover, atol=1e-6)  # the previous command (hover) flew
    half_up, _ = _one_step(1.0, 0.5, [1.0] * 4)
    nodelay_up, _ = _one_step(0.0, 0.0, [1.0] * 4)
    assert np.all(m_hover < half_up) and np.all(half_up < nodelay_up)
    # the critic sees the delay (the nominal vehicle has none; the platform's randomization draws 0-1 period)
    assert env.critic_size == qt.make_env(qt.hover_config(), PLAT, randomize=False).critic_size + 1
    assert qt.make_env(qt.hover_config(), PLAT).critic_size == env.critic_size


def test_velocity_and_position_exponents_change_training_starts_only():
    cfg = qt.hover_config(train_velocity_exponent=0.5, train_position_exponent=0.5)
    keys = jax.random.split(jax.random.PRNGKey(3), 4000)
    draw = lambda env: jax.vmap(qt.reset, in_axes=(0, None))(keys, env)  # noqa: E731
    ev, tr = draw(qt.make_env(cfg, PLAT)), draw(qt.make_env(cfg, PLAT, training=True))
    base = draw(qt.make_env(dataclasses.replace(cfg, train_velocity_exponent=1.0, train_position_exponent=1.0), PLAT,
                            training=True))
    for name, r in (("vel", cfg.init_velocity), ("pos", cfg.init_position)):
        e, t, b = (np.asarray(getattr(x.sim, name)) for x in (ev, tr, base))
        np.testing.assert_array_equal(e, b)  # evaluation and exponent 1: the uniform draw, bit for bit
        assert np.abs(t).max() <= r + 1e-6
        assert np.mean(np.abs(t) > 0.75 * r) > np.mean(np.abs(e) > 0.75 * r) + 0.15  # pushed toward the edge
        np.testing.assert_array_equal(np.sign(t), np.sign(e))  # same directions, larger magnitudes
    np.testing.assert_array_equal(np.asarray(tr.sim.quat), np.asarray(base.sim.quat))  # nothing else moved


def test_train_episode_seconds_cuts_training_episodes_only():
    cfg = qt.hover_config(train_episode_seconds=2.0)
    ev_env, tr_env = qt.make_env(cfg, PLAT), qt.make_env(cfg, PLAT, training=True)
    assert (ev_env.episode_steps, tr_env.episode_steps) == (500, 200)  # 100 Hz control
    assert qt.make_env(qt.hover_config(), PLAT, training=True).episode_steps == 500  # 0: episode_seconds
    s = dataclasses.replace(qt.reset(jax.random.PRNGKey(0), tr_env), t=jnp.asarray(199, jnp.int32))
    hover = jnp.full(4, qt.contract(cfg, PLAT)["action"]["hover_action"], jnp.float32)
    assert bool(qt.step(None, s, hover, tr_env)[3]) and not bool(qt.step(None, s, hover, ev_env)[3])


def test_delay_is_drawn_per_episode_within_bounds_without_moving_the_other_draws():
    keys = jax.random.split(jax.random.PRNGKey(1), 500)
    e0 = qt.make_env(qt.hover_config(), PLAT, randomize=False)
    e1 = qt.make_env(qt.hover_config(action_delay=0.7), PLAT, randomize=False)
    s0 = jax.vmap(qt.reset, in_axes=(0, None))(keys, e0)
    s1 = jax.vmap(qt.reset, in_axes=(0, None))(keys, e1)
    d = np.asarray(s1.delay)
    assert d.min() >= 0 and d.max() <= 0.7 and d.std() > 0.1
    assert np.all(np.asarray(s0.delay) == 0)
    np.testing.assert_array_equal(np.asarray(s0.sim.pos), np.asarray(s1.sim.pos))
    # randomizing, the platform's range (0-1 period) widens the task's
    lo, hi = PLAT.get("randomization.action_delay")
    s2 = jax.vmap(qt.reset, in_axes=(0, None))(keys, qt.make_env(qt.hover_config(action_delay=0.7), PLAT))
    d2 = np.asarray(s2.delay)
    assert d2.min() >= lo and d2.max() <= hi and d2.max() > 0.9


def test_position_error_integral_is_the_leaky_sum_the_contract_describes():
    cfg = qt.hover_config(integral_tau=2.0, integral_limit=0.1)
    env = qt.make_env(cfg, PLAT)
    c = qt.contract(cfg, PLAT)
    names = [f["name"] for f in c["observation"]["fields"]]
    assert names[-1] == "position_error_integral" and c["observation"]["size"] == env.obs_size == 37
    assert "exp(-dt/2 s)" in c["observation"]["fields"][-1]["description"]
    s = qt.reset(jax.random.PRNGKey(4), env)
    assert np.all(np.asarray(s.integral) == 0.0)
    step = jax.jit(lambda s, a: qt.step(jax.random.PRNGKey(0), s, a, env))
    dt, ref, integral = float(env.nominal.dt), np.zeros(3), np.zeros(3)
    for k in range(150):  # noqa: B007  (k: the steps flown, checked below) a constant, slightly unbalanced command drifts the vehicle: the integral must follow
        s, _, term, _ = step(s, jnp.full(4, -0.2).at[0].set(-0.15))
        if bool(term):
            break
        err = np.asarray(s.sim.pos) - ref
        integral = np.clip(integral * np.exp(-dt / 2.0) + err * dt, -0.1, 0.1)
        np.testing.assert_allclose(np.asarray(s.integral), integral, atol=1e-6)
        obs = np.asarray(qt._fields(env, s))
        np.testing.assert_allclose(obs[-3:], integral, atol=1e-6)
    assert k > 20 and np.abs(integral).max() > 0.005
    # on for hover (tau 2 s, any change of the reference restarts it) and for figure8 (a hop of > 2 cm in a period does)
    assert qt.hover_config().integral_tau == 2.0 and qt.figure8_config().integral_tau == 2.0
    fields = {f["name"]: f for f in qt.contract(qt.figure8_config(), PLAT)["observation"]["fields"]}
    assert fields["position_error_integral"]["reset_jump_m"] == 0.02
    assert "reset_jump_m" not in {f["name"]: f for f in qt.contract(qt.hover_config(), PLAT)["observation"]["fields"]}[
        "position_error_integral"]


def test_figure8_integral_runs_along_the_moving_reference_and_restarts_on_a_hop():
    """The figure-eight's reference moves every period (at most 5 mm): the integral must integrate along it (with hover's
    rule it was 0 throughout), the same in the JAX task and edgectl.contract.PositionIntegral; a hop restarts it."""
    from edgectl.contract import PositionIntegral

    cfg = qt.figure8_config()
    env = qt.make_env(cfg, PLAT, randomize=False)
    c = qt.contract(cfg, PLAT)
    step = jax.jit(lambda s, a: qt.step(jax.random.PRNGKey(0), s, a, env)[0])
    s = qt.reset(jax.random.PRNGKey(3), env)
    mirror = PositionIntegral(c)
    hover = np.asarray(s.prev_actions[:4])
    for k in range(80):
        p_ref = np.asarray(qt._ref_now(env, s)[0])
        got = mirror.update(np.float32(np.asarray(s.sim.pos)) - np.float32(p_ref), p_ref)
        np.testing.assert_allclose(np.asarray(s.integral), got, atol=2e-6, err_msg=f"step {k}")
        s = step(s, jnp.asarray(hover + 0.03 * np.sin(0.3 * k + np.arange(4)), jnp.float32))
    assert np.abs(np.asarray(s.integral)).max() > 1e-3  # integrating, not restarted every period
    hop = mirror.update(np.zeros(3), p_ref + np.array([0.0, 0.03, 0.0]))  # a 3 cm hop in one period
    assert np.all(hop == 0.0)


def test_runtime_shield_and_onboard_mirror_carry_the_integral_like_the_task():
    """The host loop's and the shield's observation builders (edgectl.contract.integral_update) follow the JAX task
    along a trajectory, and the shield's Numba prediction (the MLP kernel) equals its per-step path."""
    from edgectl.contract import integral_spec, integral_update
    from edgectl.observation import observation

    cfg = qt.hover_config(integral_tau=2.0)
    env = qt.make_env(cfg, PLAT, randomize=False)
    c = qt.contract(cfg, PLAT)
    spec = integral_spec(c)
    assert spec[1] == 0.1 and spec[2] == pytest.approx(0.01)
    step = jax.jit(lambda s, a: qt.step(jax.random.PRNGKey(0), s, a, env)[0])
    s = qt.reset(jax.random.PRNGKey(7), env)
    integral, first = np.zeros(3), True
    for k in range(60):
        if not first:
            integral = integral_update(integral, np.asarray(s.sim.pos), spec)
        first = False
        q = np.asarray(s.sim.quat)
        got = observation(c, np.asarray(s.sim.pos), q, np.asarray(s.sim.vel), np.asarray(s.sim.omega),
                          np.asarray(s.prev_actions), integral=integral)
        np.testing.assert_allclose(got, np.asarray(qt._fields(env, s)), atol=2e-6)
        if k % 20 == 0:  # the same builder on jax arrays: jax in, jax out (numpy/JAX-agnostic, edgectl.observation)
            got_jax = observation(c, s.sim.pos, s.sim.quat, s.sim.vel, s.sim.omega, s.prev_actions,
                                  integral=jnp.asarray(integral, jnp.float32))
            assert isinstance(got_jax, jax.Array)
            np.testing.assert_allclose(np.asarray(got_jax), np.asarray(qt._fields(env, s)), atol=2e-6)
        s = step(s, jnp.asarray(np.asarray(s.prev_actions[:4]) + 0.05 * np.sin(k + np.arange(4))))
    assert np.abs(integral).max() > 1e-3


def test_shield_prediction_carries_the_integral_in_its_kernel_as_step_by_step():
    from edgectl.safety.shield import Shield

    cfg = qt.hover_config(integral_tau=2.0)
    c = qt.contract(cfg, PLAT)
    rng = np.random.default_rng(0)
    sizes = [c["observation"]["size"], 16, 16, 4]
    layers = [(rng.normal(0, 0.5, (a, b)), rng.normal(0, 0.1, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    off = np.asarray(c["observation"]["normalization"]["offset"], float)
    scale = np.asarray(c["observation"]["normalization"]["scale"], float)

    class Tiny:  # duck-types a Bundle: the shield runs its MLP inside the Numba kernel
        manifest = {"policy": {"activation": "tanh"}}

        def __init__(self):
            self.layers = layers

        def act(self, obs):
            x = (np.asarray(obs, float) - off) / scale
            for w, b in self.layers[:-1]:
                x = np.tanh(x @ w + b)
            return x @ self.layers[-1][0] + self.layers[-1][1]

    tiny = Tiny()
    fused, stepped = Shield(tiny.act, c, PLAT), Shield(lambda o: tiny.act(o), c, PLAT)
    assert fused.mlp is not None and stepped.mlp is None
    state = (np.array([0.05, -0.03, 0.02]), np.array([0.99, 0.05, -0.05, 0.0]), np.array([0.2, 0.0, -0.1]), np.zeros(3))
    for sh in (fused, stepped):
        sh.integral = np.array([0.04, -0.02, 0.01])
    np.testing.assert_allclose(fused.predict(*state, np.zeros(3)), stepped.predict(*state, np.zeros(3)), atol=1e-9)
    without = Shield(tiny.act, c, PLAT)
    assert not np.allclose(fused.predict(*state, np.zeros(3)), without.predict(*state, np.zeros(3)))  # it is fed


def test_integral_restarts_when_the_reference_moves_in_the_shield_and_the_runtime():
    """The contract's rule (edgectl.contract.integral_spec): a period whose reference position changed starts
    the integral again at 0, in the shield's own copy as in PositionIntegral (host loop, on-board mirror), so
    a take-off ramp does not wind it up. The JAX task's references are fixed, where the rule changes nothing."""
    from edgectl.contract import PositionIntegral
    from edgectl.safety.shield import Shield

    c = qt.contract(qt.hover_config(integral_tau=2.0), PLAT)
    sh = Shield(lambda o: np.zeros((1, 4)), c, PLAT)
    mirror = PositionIntegral(c)
    quat, zero = np.array([1.0, 0.0, 0.0, 0.0]), np.zeros(3)
    refs = [np.array([0.0, 0.0, 0.01 * k]) for k in range(20)] + [np.array([0.0, 0.0, 0.19])] * 20
    for k, ref in enumerate(refs):
        pos = ref - np.array([0.01, 0.0, 0.05])
        sh.step(pos, quat, zero, zero, ref)
        want = mirror.update(pos - ref, ref)
        np.testing.assert_allclose(sh.integral, want, atol=1e-12)
        if k < 20:
            assert np.all(sh.integral == 0.0), k  # the ramp, then the first period at the final reference
    assert sh.integral[2] < -0.005  # 19 periods of a 5 cm lag


def test_task_integral_follows_the_restart_rule_on_a_moving_reference():
    """figure8 with hover's rule (reset_jump 0): its reference moves every period, so the task's integral stays 0, as
    every runtime's would (edgectl.contract.PositionIntegral); hover's fixed reference integrates, and so does figure8
    with its own rule (a restart only on a hop of more than 2 cm)."""
    for cfg, moving in ((qt.figure8_config(integral_tau=2.0, integral_reset_jump=0.0), True),
                        (qt.hover_config(integral_tau=2.0), False), (qt.figure8_config(), False)):
        env = qt.make_env(cfg, PLAT, randomize=False)
        step = jax.jit(lambda s, a, env=env: qt.step(jax.random.PRNGKey(0), s, a, env)[0])
        s = qt.reset(jax.random.PRNGKey(3), env)
        for _ in range(20):
            s = step(s, jnp.asarray(np.asarray(s.prev_actions[:4])))
        assert (np.abs(np.asarray(s.integral)).max() == 0.0) == moving, cfg.name

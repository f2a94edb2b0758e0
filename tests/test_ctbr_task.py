"""The ctbr action mapping of the quadrotor tasks: contract, simulator, host twin, bundle round trip (no PPO).

A policy of zero weights and the hover bias (what training starts from) is written as a real bundle and flown by
`edgectl eval`'s evaluator and by `edgectl run`'s in-process link, both through the platform's rate loop.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edgectl.contract import validate_contract
from edgectl.platforms import load_platform
from train_fast.sims import rate_loop
from train_fast.tasks import quadrotor_tasks as qt

CF = load_platform("crazyflie_2_1")
CFG = qt.hover_config(action="ctbr")


def level_start(env, s):
    sim = dataclasses.replace(s.sim, pos=jnp.zeros(3), quat=jnp.array([1.0, 0, 0, 0]), vel=jnp.zeros(3), omega=jnp.zeros(3))
    return dataclasses.replace(s, sim=sim, rate=rate_loop.init_state(env.rate_loop, jnp.zeros(3), 1.0, 1.0),
                               delay=jnp.zeros(()))


def test_contract_records_the_mapping_and_the_rate_loop():
    c = qt.contract(CFG, CF)
    validate_contract(c)
    a = c["action"]
    assert a["names"] == ["thrust", "roll_rate", "pitch_rate", "yaw_rate"] and a["mapping"]["kind"] == "ctbr"
    assert a["mapping"]["max_rate"] == [10.0, 10.0, 5.0]
    loop = a["mapping"]["rate_loop"]
    assert loop["firmware"] == "crazyflie" and loop["rate_hz"] == 500.0 and loop["gains"]["input_unit"] == "deg/s"
    assert loop["gains"]["p"] == [250.0, 250.0, 120.0] and "platform_defaults_cf2.h" in loop["source"]
    h = a["hover_actions"]
    assert h[1:] == [0.0, 0.0, 0.0] and a["hover_action"] == h[0]
    # battery compensation makes the Crazyflie's thrust setpoint a thrust fraction: hover = weight / full thrust
    assert a["mapping"]["hover_thrust"] == pytest.approx(0.027 * 9.81 / (4 * 0.1125), rel=1e-5)
    sl = {f["name"]: f for f in c["observation"]["fields"]}
    assert sl["previous_actions"]["frame"].startswith("ctbr")
    off = c["observation"]["normalization"]["offset"][-4 * CFG.action_history - 3:-3]
    assert off == pytest.approx(h * CFG.action_history)


def test_hover_action_holds_and_rate_commands_keep_their_sign():
    env = qt.make_env(CFG, CF, randomize=False, disturbances=False)
    s = level_start(env, qt.reset(jax.random.PRNGKey(0), env))
    hover = jnp.asarray(qt.contract(CFG, CF)["action"]["hover_actions"])
    step = jax.jit(lambda s, a: qt.step(None, s, a, env))
    for _ in range(100):
        s, *_ = step(s, hover)
    assert float(jnp.max(jnp.abs(s.sim.pos))) < 0.01 and float(jnp.max(jnp.abs(s.sim.omega))) < 0.01
    for axis, sign in ((1, 1.0), (2, -1.0), (3, 1.0)):
        s2 = s
        for _ in range(10):
            s2, *_ = step(s2, hover.at[axis].set(0.1 * sign))
        w = np.asarray(s2.sim.omega)
        assert np.sign(w[axis - 1]) == sign and abs(w[axis - 1]) > 0.3 * 0.1 * [10, 10, 5][axis - 1], (axis, w)


def test_actuation_delay_holds_the_previous_setpoint_inside_the_period():
    env = qt.make_env(CFG, CF, randomize=False, disturbances=False)
    s = level_start(env, qt.reset(jax.random.PRNGKey(0), env))
    hover = jnp.asarray(qt.contract(CFG, CF)["action"]["hover_actions"])
    roll = hover.at[1].set(0.5)
    late = jax.jit(lambda s: qt.step(None, dataclasses.replace(s, delay=jnp.ones(())), roll, env))(s)[0]
    now = jax.jit(lambda s: qt.step(None, s, roll, env))(s)[0]
    assert float(late.sim.omega[0]) == pytest.approx(0.0, abs=1e-6)  # a whole period late: nothing yet
    assert float(now.sim.omega[0]) > 0.05


def test_host_twin_flies_the_same_rate_loop_as_the_jax_simulator():
    """SimLink (`edgectl run --uri sim://`, RK4 per tick in Numba) against the training simulator (Euler per tick
    in JAX): the same PID, mixer and rotors, so 0.3 s of rate commands end within millimetres."""
    from edgectl.runtime.links import SimLink
    env = qt.make_env(CFG, CF, randomize=False, disturbances=False)
    s = level_start(env, qt.reset(jax.random.PRNGKey(0), env))
    c = qt.contract(CFG, CF)
    link = SimLink(CF, contract=c)
    link.x[13:17] = np.asarray(s.sim.motor)
    hover = np.asarray(c["action"]["hover_actions"])
    step = jax.jit(lambda s, a: qt.step(None, s, a, env))
    for k in range(30):
        a = hover + np.array([0.05, 0.2 * np.sin(k / 5), -0.1, 0.1 * np.cos(k / 7)])
        s, *_ = step(s, jnp.asarray(a, jnp.float32))
        link.send_action(a)
    np.testing.assert_allclose(link.x[0:3], np.asarray(s.sim.pos), atol=3e-3)
    np.testing.assert_allclose(link.x[10:13], np.asarray(s.sim.omega), atol=0.05)


@pytest.fixture(scope="module")
def untrained_bundle(tmp_path_factory):
    """Zero weights, hover bias: the policy PPO starts from, as a verified bundle."""
    from train_fast.train import TrainResult, save_bundle
    c = qt.contract(CFG, CF)
    sizes = (c["observation"]["size"], 32, 32, 4)
    layers = [(np.zeros((i, o), np.float32), np.zeros(o, np.float32)) for i, o in zip(sizes[:-1], sizes[1:])]
    layers[-1] = (layers[-1][0], np.asarray(c["action"]["hover_actions"], np.float32))
    r = TrainResult(actor_layers=layers, contract=c, task=dataclasses.asdict(CFG), ppo={}, seed=0, metrics={},
                    platform_name=CF.name, platform_toml=CF.raw)
    return save_bundle(r, tmp_path_factory.mktemp("ctbr") / "b")


def test_untrained_bundle_round_trips_and_is_evaluated_through_the_rate_loop(untrained_bundle):
    from edgectl.bundle import load_bundle
    from train_fast.evaluate import env_for_bundle, evaluate_bundle
    b = load_bundle(untrained_bundle)
    env = env_for_bundle(b)
    assert env.cfg.action == "ctbr" and env.rate_loop.firmware == "crazyflie" and env.rate_steps == 5
    summary, _ = evaluate_bundle(b, episodes=64)
    # zero rates never correct a tilted start: they drift out of the 0.6 m box within the 5 s (a structure check)
    assert summary["episodes"] == 64 and summary["survival_rate"] < 0.2 and summary["task"] == "hover"


def test_run_flies_a_ctbr_bundle_in_process_with_its_backup(untrained_bundle, tmp_path):
    import json
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "edgectl", "run", str(untrained_bundle), "--uri", "sim://0,0,0",
                        "--seconds", "1", "--as-fast-as-possible", "--json", "--log", str(tmp_path / "f.csv")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["shield"] is False and "rate loop" in out["backend"] and out["ticks"] == 100
    assert out["position_error_m"]["max"] < 0.05  # a level hover start: the hover bias holds it

"""The recoverability oracle (train_fast/recoverability.py): its witnesses are real episodes.

What could go wrong and would make the oracle lie: a witness flown without the evaluation's hard termination
(every start would look saved), or a search that cannot save anything (the bench would report physics where the search is to blame).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edgectl.bundle import load_bundle
from train_fast import evaluate as ev
from train_fast import recoverability as rc

FIXTURE = Path(__file__).parent / "data" / "hover_bundle"
EPISODES = 128
SEED = 12345
# a small search; chunk x restarts = 8 = the refine test's anchor episodes, so one compiled witness serves all
SEARCH = dict(horizon=60, steps=120, restarts=2, iterations=40, chunk=4)


@pytest.fixture(scope="module")
def setup():
    bundle = load_bundle(FIXTURE)
    env = ev.env_for_bundle(bundle)
    pp, apply = ev.bundle_policy(bundle)
    out, _ = ev.make_rollout(env, apply, EPISODES)(pp, jax.random.PRNGKey(SEED))
    survived = np.asarray(out["survived"])
    s0, _ = ev.starts(env, jax.random.PRNGKey(SEED), EPISODES)  # the evaluation's own starts
    return env, pp, apply, survived, s0


def test_the_oracle_saves_starts_the_fixture_loses_and_not_a_doomed_one(setup):
    env, pp, apply, survived, s0 = setup
    assert 0 < (~survived).sum() < EPISODES // 4, "the fixture should lose a few of these starts"
    lost = np.flatnonzero(~survived)[:2]
    # and one start nothing can save: 1 cm from the wall, 3 m/s outward (the first period leaves the box)
    batch = rc.take(s0, [*lost, int(lost[0])])
    pos = batch.sim.pos.at[-1].set(jnp.asarray([0.59, 0.0, 0.0]))
    vel = batch.sim.vel.at[-1].set(jnp.asarray([3.0, 0.0, 0.0]))
    batch = dataclasses.replace(batch, sim=dataclasses.replace(batch.sim, pos=pos, vel=vel))
    # SEARCH with demonstrations: the same compiled search and witness the refine test below flies
    saved, flown, final = rc.nudged_oracle(env, apply, pp, batch, jax.random.PRNGKey(SEED), demonstrations=[], **SEARCH)
    assert saved[:2].all(), f"lost starts {lost.tolist()}: the search flew {flown[:2].tolist()} steps"
    assert (flown[:2] == env.episode_steps).all() and (final[:2] < 0.1).all()
    assert not saved[2] and flown[2] <= 1 and np.isinf(final[2])


def test_refine_fits_the_saves_and_writes_a_bundle_that_flies(setup, tmp_path):
    """One small round of edgectl refine (train_fast/refine.py): the saves become teacher episodes, the fit lowers
    the actor's error on them, and the result is a bundle with the source's contract and platform that flies."""
    from train_fast import refine as rf

    env, pp, apply, survived, s0 = setup
    bundle = load_bundle(FIXTURE)
    layers, history = rf.refine(bundle, rounds=1, starts=EPISODES, seed=5, fit_steps=150, anchor_episodes=8,
                                perturbed=0.0, anchor_perturbed=False, search=SEARCH, policy=(pp, apply))
    (row,) = history
    assert row["lost"] > 0 and row["saved"] > 0 and row["teacher_episodes"] == row["saved"]
    assert row["teacher_error"] < 0.8 * row["teacher_error_before"], row

    out_dir = rf.save_refined(bundle, layers, history, tmp_path / "refined", command="test")
    refined = load_bundle(out_dir)
    assert refined.contract == bundle.contract and refined.platform_name == bundle.platform_name
    assert refined.manifest["metrics"]["refine"]["source_weights_sha256"] == bundle.manifest["weights"]["sha256"]
    # the bundle carries the fitted actor: its numpy act() is the refined JAX actor, not the source's
    obs = np.asarray(jax.vmap(ev.qt.observe, in_axes=(0, None, 0))(jax.random.split(jax.random.PRNGKey(1), 64), env,
                                                                    rc.take(s0, np.arange(64))))
    fitted = np.clip(np.asarray(apply([{"w": jnp.asarray(w), "b": jnp.asarray(b)} for w, b in layers], obs)), -1, 1)
    np.testing.assert_allclose(refined.act(obs), fitted, atol=1e-5)
    assert np.abs(refined.act(obs) - bundle.act(obs)).max() > 1e-3


def test_refine_splits_the_nominal_starts_evenly_over_the_platforms():
    from train_fast.refine import split_starts

    for n, parts in ((4000, 1), (4000, 3), (7, 3), (2, 3), (1000, 4)):
        share = split_starts(n, parts)
        assert share.sum() == n and len(share) == parts and share.max() - share.min() <= 1, (n, parts, share)


def test_the_search_gradient_stays_finite_when_the_rate_loop_drives_a_motor_to_its_floor():
    """The rate loop turns thrust fractions into motor states through the inverse thrust curve; the Crazyflie's
    curve is a pure quadratic, whose root has an infinite slope at 0. A motor at its floor made the gradient NaN,
    which the search zeroes: with that bug the oracle saved 20 of the 37 starts a ctbr policy lost, without it 35."""
    from edgectl.platforms import motor_for_fraction

    g = jax.grad(lambda f: motor_for_fraction(f, 0.0, 0.0, jnp))
    assert np.isfinite([g(0.0), g(-0.1), g(0.25)]).all() and float(g(0.25)) == pytest.approx(1.0)
    assert motor_for_fraction(0.0, 0.0, 0.0) == 0.0 and motor_for_fraction(0.25, 0.0, 0.0) == pytest.approx(0.5)

    bundle = load_bundle(Path(__file__).parent / "data" / "ctbr_hover_bundle")
    env = ev.env_for_bundle(bundle)
    pp, apply = ev.bundle_policy(bundle)
    s0, _ = ev.starts(env, jax.random.PRNGKey(SEED), 1)
    run = rc._closed_loop(env, apply, pp, 10, 20)
    # thrust -1 for ten periods: the collective setpoint 0, every motor at its floor
    d0 = jnp.zeros((10, 4)).at[:, 0].set(-3.0)
    grad = jax.grad(lambda d: jnp.sum(run(d, rc.take(s0, 0), jax.random.PRNGKey(0))[2] ** 2))(d0)
    assert np.isfinite(np.asarray(grad)).all()


def test_saving_offsets_are_the_teacher_minus_the_clipped_policy_per_channel():
    policy = lambda pp, obs: jnp.tile(jnp.asarray([2.0, 0.0, -0.5, 0.0]), (obs.shape[0], 1))  # noqa: E731
    obs = np.zeros((100, 3), np.float32)
    act = np.tile(np.asarray([0.5, 0.2, -0.5, -0.1], np.float32), (100, 1))
    act[60:] = 9.0  # after the horizon: not counted
    off = rc.saving_offsets(policy, (), [(obs, act), (obs, act)], horizon=60)
    assert off["episodes"] == 2
    np.testing.assert_allclose(off["mean"], [-0.5, 0.2, 0.0, -0.1], atol=1e-6)  # thrust: 0.5 - clip(2.0) = -0.5
    np.testing.assert_allclose(off["mean_abs"], [0.5, 0.2, 0.0, 0.1], atol=1e-6)
    assert rc.saving_offsets(policy, (), [], 60) == {"episodes": 0, "mean": None, "mean_abs": None}

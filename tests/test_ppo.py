"""The PPO trainer's value targets on a task whose answer is known in closed form.

A toy task pays 1 per step forever but is cut by a time limit every 4 steps, and its critic input is constant (it
cannot see the time). With gamma = 0.5 an unending task is worth 1 / (1 - 0.5) = 2 from every state: that is what a
critic learns when cut episodes are bootstrapped (PPOConfig.bootstrap_truncation). When the cut is an end, the
targets at steps 0..3 are 1.875, 1.75, 1.5 and 1, and a critic that cannot tell them apart learns their mean, 1.53.
"""
from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from train_fast.algos.ppo import PPOConfig, make_train, mlp

CUT = 4


def _toy_env():
    env = SimpleNamespace(obs_offset=np.zeros(1, np.float32), obs_scale=np.ones(1, np.float32), obs_size=1,
                          critic_size=1)

    def reset(key, env):
        return jnp.zeros((), jnp.int32)

    def step(key, t, action, env):
        t2 = t + 1
        return t2, jnp.float32(1.0), jnp.bool_(False), t2 >= CUT

    def observe(key, env, t):
        return jnp.zeros(1)

    def observe_critic(env, t):
        return jnp.ones(1)

    return env, reset, step, observe, observe_critic


def _learned_value(bootstrap: bool) -> float:
    env, reset, step, observe, observe_critic = _toy_env()
    cfg = PPOConfig(num_envs=16, num_steps=8, epochs=2, minibatches=2, gamma=0.5, actor_hidden=(4,),
                    critic_hidden=(8,), iters_per_chunk=25, bootstrap_truncation=bootstrap)
    init, train_chunk, _ = make_train(cfg, env, reset, step, observe, observe_critic, 1, 0.0)
    r = init(jax.random.PRNGKey(0))
    for _ in range(8):
        r, _ = train_chunk(r, np.float32(3e-3), np.float32(0.3))
    return float(mlp(r.params["critic"], jnp.ones((1, 1)))[0, 0])


@pytest.mark.parametrize("bootstrap, expected", [(True, 2.0), (False, (1.875 + 1.75 + 1.5 + 1.0) / 4)])
def test_critic_learns_the_return_the_time_limit_implies(bootstrap, expected):
    assert _learned_value(bootstrap) == pytest.approx(expected, abs=0.08)

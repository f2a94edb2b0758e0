"""Asymmetric PPO, PureJaxRL style: the actor sees the noisy onboard observation, the critic the
privileged state (true state, motor speeds, disturbance, randomized parameters, episode time).

Read top to bottom: networks, the rollout step, GAE, the PPO update, then `make_train`, which
returns pure functions. `train_chunk` runs `iters_per_chunk` full PPO iterations as one jitted
call; the driver (train_fast/train.py) calls it until the time budget is spent, so a progress bar
and a wall-clock budget fit around an otherwise fully compiled training run.

Why PPO and not TD3/SAC: measured on this 2-core CPU, jitted PPO ran at 150k+ env steps/s while
TD3 did 1.8k updates/s (../shared/FIELD_NOTES.md, section 1), and wall-clock is the budget.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax


@dataclass(frozen=True)
class PPOConfig:
    num_envs: int = 1024
    num_steps: int = 32
    epochs: int = 3  # 3 beat 4 at a fixed 20 s: more env steps (3.0-3.4 M vs 2.6-2.75 M), 98.2 vs 97.8 % survival
    minibatches: int = 16
    lr: float = 2e-3  # annealed linearly to lr_end over the training budget by the driver
    lr_end: float = 0.0
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    max_grad_norm: float = 0.5
    # 32x32 learned as well as 64x64 in 20 s (4.1 cm vs 12-17 cm median, 2 seeds each) and is 4x
    # cheaper on the microcontroller.
    actor_hidden: tuple = (32, 32)
    critic_hidden: tuple = (64, 64)
    # The actor's hidden activation ("tanh" or "relu"; the critic's stays tanh) and the observation elements it
    # never reads (indices into the observation, () = all read): their inputs are multiplied by 0 and their
    # first-layer rows start at 0, so their gradients, and with Adam their updates, are exactly 0 and the rows stay 0
    # (the trainer also zeroes them in the result). `edgectl train --for px4` sets both (train_fast/tasks/training.py).
    actor_activation: str = "tanh"
    actor_unread: tuple = ()
    init_std: float = 0.3
    final_std: float | None = None  # None: std is learned; else the driver anneals init_std -> final_std
    iters_per_chunk: int = 4
    eval_episodes: int = 256
    # True: an episode cut by its time limit (not terminated) is bootstrapped with the critic's value of the state it
    # reached, as an unending task should be (Pardo et al. 2018, "Time Limits in Reinforcement Learning"); False: the
    # time limit is an end, and the critic, which sees the episode time, predicts it. Off by default: on ctbr hover
    # (4.06 M env steps, seeds 0-2, 2000 episodes) it kept survival (98.10 / 98.05 / 97.95 % against 98.55 / 98.15 /
    # 98.00 %), improved the median (2.2 against 2.9 cm) and cost ~10 % of the steps per second; with 2 s or 3 s
    # training episodes (task.train_episode_seconds: more starts per step, the same objective) 98.15 / 97.90 / 98.05
    # and 98.20 / 98.10 / 97.85 %, with the median at 4-6 and 3.6-4 cm.
    bootstrap_truncation: bool = False

    @property
    def steps_per_iter(self) -> int:
        return self.num_envs * self.num_steps


# --- networks ----------------------------------------------------------------------------------
def _init_mlp(key, sizes, out_scale, out_bias=None):
    layers = []
    keys = jax.random.split(key, len(sizes) - 1)
    for i, (k, n_in, n_out) in enumerate(zip(keys, sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        w = jax.nn.initializers.orthogonal(out_scale if last else math.sqrt(2.0))(k, (n_in, n_out))
        b = jnp.zeros(n_out) if (not last or out_bias is None) else \
            jnp.broadcast_to(jnp.asarray(out_bias, jnp.float32), (n_out,))  # a scalar or one bias per output
        layers.append({"w": w, "b": b})
    return layers


ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}


def mlp(layers, x, activation: str = "tanh"):
    fn = ACTIVATIONS[activation]
    for layer in layers[:-1]:
        x = fn(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]


class Transition(NamedTuple):
    obs: jax.Array
    cobs: jax.Array
    action: jax.Array
    logp: jax.Array
    value: jax.Array
    reward: jax.Array
    done: jax.Array
    last_cobs: jax.Array  # the critic's input at the state the step reached (bootstrap_truncation), else a 0 column
    cut: jax.Array  # 1 where the episode was cut by its time limit, not terminated


class Runner(NamedTuple):
    params: dict
    opt_state: optax.OptState
    env_state: object
    obs: jax.Array
    cobs: jax.Array
    key: jax.Array
    step: jax.Array  # env steps so far
    ep_return: jax.Array  # running return per env
    ep_length: jax.Array


def _logp(mean, log_std, a):
    return jnp.sum(-0.5 * ((a - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * math.log(2 * math.pi), axis=-1)


def make_train(cfg: PPOConfig, env, reset: Callable, step: Callable, observe: Callable, observe_critic: Callable,
               action_size: int, action_bias):
    """Returns (init, train_chunk, evaluate, actor_apply): pure functions closed over the static env."""
    obs_offset, obs_scale = jnp.asarray(env.obs_offset), jnp.asarray(env.obs_scale)
    if cfg.actor_activation not in ACTIVATIONS:
        raise ValueError(f"actor_activation {cfg.actor_activation!r}: expected one of {', '.join(ACTIVATIONS)}")
    read = np.ones(env.obs_size, np.float32)
    read[list(cfg.actor_unread)] = 0.0  # an index out of range raises here, not in the jitted code
    read = jnp.asarray(read)

    def actor_apply(actor_layers, obs_raw):
        return mlp(actor_layers, (obs_raw - obs_offset) / obs_scale * read, cfg.actor_activation)

    # The learning rate is an argument of train_chunk, not a schedule over steps: the driver anneals
    # it over the wall-clock budget, so a slower machine still ends its run at a small step size.
    tx = optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.scale_by_adam(eps=1e-5))
    v_reset = jax.vmap(reset, in_axes=(0, None))
    v_step = jax.vmap(step, in_axes=(0, 0, 0, None))
    v_obs = jax.vmap(observe, in_axes=(0, None, 0))
    v_cobs = jax.vmap(observe_critic, in_axes=(None, 0))

    def init(key) -> Runner:
        ka, kc, ke, ko = jax.random.split(key, 4)
        actor = _init_mlp(ka, (env.obs_size, *cfg.actor_hidden, action_size), 0.01, action_bias)
        actor[0]["w"] = actor[0]["w"] * read[:, None]  # unread inputs: zero rows from the start
        params = {
            "actor": actor,
            "critic": _init_mlp(kc, (env.critic_size, *cfg.critic_hidden, 1), 1.0),
            "log_std": jnp.full(action_size, math.log(cfg.init_std)),
        }
        env_state = v_reset(jax.random.split(ke, cfg.num_envs), env)
        obs = v_obs(jax.random.split(ko, cfg.num_envs), env, env_state)
        zeros = jnp.zeros(cfg.num_envs)
        r = Runner(params, tx.init(params), env_state, obs, v_cobs(env, env_state), key,
                   jnp.zeros((), jnp.float32), zeros, zeros)
        # Weak-typed leaves (from Python scalars) would make the second train_chunk call recompile.
        return jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype=x.dtype), r)

    def log_std_of(params, std_arg):
        # A scheduled std (annealed by the driver like the learning rate) trades exploration early
        # for the small action noise that precise hovering needs late.
        return params["log_std"] if cfg.final_std is None else jnp.full(action_size, jnp.log(std_arg))

    def env_step(carry, _):
        r, std_arg, fresh, fresh_cobs = carry
        key, k_a, k_s, k_o = jax.random.split(r.key, 4)
        mean = actor_apply(r.params["actor"], r.obs)
        log_std = log_std_of(r.params, std_arg)
        action = mean + jnp.exp(log_std) * jax.random.normal(k_a, mean.shape)
        logp = _logp(mean, log_std, action)
        s2, reward, term, trunc = v_step(jax.random.split(k_s, cfg.num_envs), r.env_state, action, env)
        done = term | trunc
        cut = (trunc & ~term).astype(jnp.float32)
        cobs_reached = v_cobs(env, s2)  # before the restart: a cut episode's bootstrap value needs it
        # One fresh start per env per iteration, drawn before the rollout: sampling a reset for every
        # env at every step cost a third of the rollout. An env that ends twice in one iteration
        # restarts from the same state twice, which is harmless.
        s2 = jax.tree_util.tree_map(lambda a, b: jnp.where(done.reshape((-1,) + (1,) * (a.ndim - 1)), b, a), s2, fresh)
        obs2 = v_obs(jax.random.split(k_o, cfg.num_envs), env, s2)
        ep_ret = r.ep_return + reward
        ep_len = r.ep_length + 1
        info = (jnp.sum(jnp.where(done, ep_ret, 0.0)), jnp.sum(done), jnp.sum(term))
        cobs2 = jnp.where(done[:, None], fresh_cobs, cobs_reached)
        r2 = r._replace(env_state=s2, obs=obs2, cobs=cobs2, key=key, step=r.step + cfg.num_envs,
                        ep_return=jnp.where(done, 0.0, ep_ret), ep_length=jnp.where(done, 0, ep_len))
        # Time-limit truncation is treated as an end: the critic sees episode time, so it can predict it.
        # Values are filled in after the rollout, in one batched critic pass (zeros until then).
        last_cobs = cobs_reached if cfg.bootstrap_truncation else jnp.zeros((cfg.num_envs, 1))
        t = Transition(r.obs, r.cobs, action, logp, jnp.zeros_like(reward), reward, done.astype(jnp.float32),
                       last_cobs, cut)
        return (r2, std_arg, fresh, fresh_cobs), (t, info)

    def gae(traj: Transition, last_value):
        def back(carry, t):
            adv, next_v = carry
            delta = t.reward + cfg.gamma * next_v * (1.0 - t.done) - t.value
            adv = delta + cfg.gamma * cfg.gae_lambda * (1.0 - t.done) * adv
            return (adv, t.value), adv
        _, adv = jax.lax.scan(back, (jnp.zeros_like(last_value), last_value), traj, reverse=True)
        return adv, adv + traj.value

    def loss_fn(params, batch, std_arg):
        t, adv, ret = batch
        mean = actor_apply(params["actor"], t.obs)
        log_std = log_std_of(params, std_arg)
        logp = _logp(mean, log_std, t.action)
        ratio = jnp.exp(logp - t.logp)
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        pg = -jnp.mean(jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - cfg.clip, 1 + cfg.clip) * adv))
        value = mlp(params["critic"], t.cobs)[:, 0]
        v_loss = 0.5 * jnp.mean((value - ret) ** 2)
        entropy = jnp.sum(log_std) + 0.5 * action_size * (1 + math.log(2 * math.pi))
        return pg + cfg.vf_coef * v_loss - cfg.ent_coef * entropy, (pg, v_loss)

    def update(r: Runner, sched):
        lr, std_arg = sched[0], sched[1]
        key, k_fresh = jax.random.split(r.key)
        fresh = v_reset(jax.random.split(k_fresh, cfg.num_envs), env)
        carry = (r._replace(key=key), std_arg, fresh, v_cobs(env, fresh))
        (r, _, _, _), (traj, info) = jax.lax.scan(env_step, carry, None, cfg.num_steps)
        traj = traj._replace(value=mlp(r.params["critic"], traj.cobs)[..., 0])
        mean_reward = traj.reward.mean()
        if cfg.bootstrap_truncation:
            # the value of the state a cut episode reached, folded into its last reward (the GAE below ends it)
            v_cut = jax.lax.stop_gradient(mlp(r.params["critic"], traj.last_cobs)[..., 0])
            traj = traj._replace(reward=traj.reward + cfg.gamma * traj.cut * v_cut)
        last_value = mlp(r.params["critic"], r.cobs)[:, 0]
        adv, ret = gae(traj, last_value)
        traj = traj._replace(last_cobs=traj.cut)  # the loss does not read it: no need to shuffle its rows
        flat = jax.tree_util.tree_map(lambda x: x.reshape((cfg.steps_per_iter,) + x.shape[2:]), (traj, adv, ret))

        def epoch(carry, _):
            params, opt_state, key = carry
            key, kp = jax.random.split(key)
            perm = jax.random.permutation(kp, cfg.steps_per_iter)
            mbs = jax.tree_util.tree_map(lambda x: x[perm].reshape((cfg.minibatches, -1) + x.shape[1:]), flat)

            def minibatch(c, mb):
                p, o = c
                grads, aux = jax.grad(loss_fn, has_aux=True)(p, mb, std_arg)
                upd, o = tx.update(grads, o, p)
                return (jax.tree_util.tree_map(lambda w, u: w - lr * u, p, upd), o), aux

            (params, opt_state), aux = jax.lax.scan(minibatch, (params, opt_state), mbs)
            return (params, opt_state, key), aux

        key, ku = jax.random.split(r.key)
        (params, opt_state, _), (pg, vl) = jax.lax.scan(epoch, (r.params, r.opt_state, ku), None, cfg.epochs)
        ret_sum, n_done, n_term = (jnp.sum(x) for x in info)
        metrics = {"return_sum": ret_sum, "episodes": n_done, "terminated": n_term,
                   "mean_reward": mean_reward, "value_loss": vl.mean(), "policy_loss": pg.mean()}
        return r._replace(params=params, opt_state=opt_state, key=key), metrics

    def train_chunk(r: Runner, lr, std):
        sched = jnp.tile(jnp.stack([lr, std]).astype(jnp.float32), (cfg.iters_per_chunk, 1))
        r, metrics = jax.lax.scan(update, r, sched)
        return r, jax.tree_util.tree_map(jnp.sum, metrics)

    return jax.jit(init), jax.jit(train_chunk), actor_apply

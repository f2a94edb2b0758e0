"""Which hover starts can be recovered at all: a search beside the policy that returns witnesses.

Issue 13 asks for >= 99 % survival from the hover start distribution (tilt up to 90 deg, 1 m/s, within a
0.6 m box) on the identified Crazyflie 2.1, whose thrust-to-weight ratio (1.7) and slow rotor fall (0.249 s)
are harsher than the model the figure was first met on. Trained policies stop near 96 %, losing 60-90 deg
tilted starts; the question is whether any controller could save them.

The oracle answers per start with the task's own dynamics (qt.step: rigid body, motor lag, the episode's
disturbance force; deterministic given the start and the observation noise):
  1. search: offsets d_t added to the policy's commands for the first `horizon` steps, by Adam through the
     closed loop (the policy's feedback stays in the loop; observation noise fixed per try), from zero
     offsets and from random ones. The loss keeps every axis inside a margin of the box and ends level
     and still;
  2. witness: the whole episode flown with those offsets under the evaluation's rules (hard termination,
     the evaluation's final-error definition). A start that survives is recoverable, by construction.
Starts the search cannot save are not proven lost (a local search can miss a narrow trajectory);
`describe_starts` gives for each start the numbers a reader can check by hand.

An open-loop plan of motor commands (1.2-2 s, then the policy) was tried first and is not kept: through this
vehicle's lagged, unstable dynamics its gradient is badly conditioned and its end state did not suit the
policy; it saved 3 of 18 lost starts and lost 1-2 of 8 starts the policy itself survives (500 starts, seed
12345). Nudging the closed loop saved 18 of 18 and all 8.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from train_fast.sims import quadrotor as quad
from train_fast.tasks import quadrotor_tasks as qt


def take(tree, idx):
    return jax.tree_util.tree_map(lambda x: x[np.asarray(idx)], tree)


def describe_starts(env: qt.QuadEnv, s0) -> dict:
    """Per start, numbers a reader can check by hand: body tilt (deg), the room to the wall (m) and the outward
    speed (m/s) along the axis that is tightest, the vertical speed, and this episode's vehicle's full-thrust
    thrust-to-weight ratio (its own mass and thrust curve: the perturbed evaluation draws them)."""
    r22 = np.asarray(jax.vmap(quad.rotation_matrix)(s0.sim.quat))[:, 8]
    tilt = np.degrees(np.arccos(np.clip(r22, -1, 1)))
    pos = np.asarray(s0.sim.pos)
    vel = np.asarray(s0.sim.vel)
    room = env.cfg.termination_bound - np.abs(pos)
    outward = vel * np.sign(pos)
    worst = np.argmin(room - 0.3 * outward, axis=1)  # the axis that is tightest with its outward speed
    i = np.arange(len(pos))
    p = s0.params
    twr = 4.0 * np.asarray(p.thrust_max) / (np.asarray(p.mass) * np.asarray(p.gravity))
    return {"tilt_deg": tilt, "room_m": room[i, worst], "outward_mps": outward[i, worst], "axis": worst,
            "vz": vel[:, 2], "thrust_to_weight": twr}


# --- the closed-loop oracle: the policy, nudged -------------------------------------------------
# An open-loop plan through 1-2 s of this vehicle's dynamics is badly conditioned (the rotor lag and the
# attitude's instability amplify every early change) and must hand a calm vehicle to a policy at its end.
# Nudging the policy instead keeps its feedback in the loop: the search is over offsets d_t added to the
# policy's commands for the first `horizon` steps, the gradient flows through the closed loop (observation
# noise fixed by the key, so the episode is deterministic), and the witness is the same closed-loop episode
# flown with the evaluation's hard termination.

def _closed_loop(env: qt.QuadEnv, policy, pp, horizon: int, steps: int, record: bool = False):
    def run(d, s0, key):
        keys = jax.random.split(key, steps)

        def body(carry, inp):
            s, alive = carry
            t, k = inp
            obs = qt.observe(k, env, s)
            x = policy(pp, obs[None])[0] + jnp.where(t < horizon, d[jnp.minimum(t, horizon - 1)], 0.0)
            a = x + jax.lax.stop_gradient(jnp.clip(x, -1.0, 1.0) - x)  # exact clip forward, straight-through back
            s2, _, term, _ = qt.step(None, s, a, env)
            e_p = s2.sim.pos - qt._ref_now(env, s2)[0]
            return (s2, alive & ~term), (e_p, alive & ~term, *((obs, a) if record else ()))

        (s_end, alive), (e_p, alive_t, *seen) = jax.lax.scan(body, (s0, jnp.ones((), bool)), (jnp.arange(steps), keys))
        return (s_end, alive, e_p, alive_t, *seen)

    return run


@functools.partial(jax.jit, static_argnames=("env", "policy", "horizon", "steps", "iterations", "margin"))
def nudge(env: qt.QuadEnv, policy, pp, s0, d0, keys, horizon: int, steps: int, iterations: int = 200,
          lr: float = 0.05, margin: float = 0.05):
    """Adam on offsets d0 (B, horizon, 4) for starts s0 (B), the loss over `steps` closed-loop steps with fixed
    observation-noise keys (B,). Returns the lowest-cost offsets seen and their costs (B,)."""
    run = _closed_loop(env, policy, pp, horizon, steps)
    bound = env.cfg.termination_bound - margin

    def cost(d, s, k):
        s_end, _, e_p, _ = run(d, s, k)[:4]
        over = jax.nn.relu(jnp.abs(e_p) - bound)
        tilt = 1.0 - quad.rotation_matrix(s_end.sim.quat)[8]
        return (1e4 * jnp.mean(jnp.sum(over * over, axis=-1)) + jnp.mean(jnp.sum(e_p * e_p, axis=-1))
                + 10.0 * jnp.sum(s_end.sim.vel ** 2) + 10.0 * tilt + 0.01 * jnp.sum(d * d))

    vg = jax.vmap(jax.value_and_grad(cost), in_axes=(0, 0, 0))
    # Adam is elementwise, so one optax state over the (B, horizon, 4) batch is B independent searches
    opt = optax.adam(lr)

    def it(carry, _):
        d, st, best_d, best_c = carry
        c, g = vg(d, s0, keys)
        updates, st = opt.update(jnp.where(jnp.isfinite(g), g, 0.0), st)
        better = jnp.isfinite(c) & (c < best_c)
        best_d = jnp.where(better[:, None, None], d, best_d)
        best_c = jnp.where(better, c, best_c)
        return (optax.apply_updates(d, updates), st, best_d, best_c), c

    init = (d0, opt.init(d0), d0, jnp.full(d0.shape[0], jnp.inf))
    (_, _, best_d, best_c), _ = jax.lax.scan(it, init, None, length=iterations)
    return best_d, best_c


@functools.partial(jax.jit, static_argnames=("env", "policy", "horizon", "record"))
def witness(env: qt.QuadEnv, policy, pp, s0, d, keys, horizon: int, record: bool = False):
    """The whole episode, closed loop with the offsets, hard termination: (survived (B,), steps flown (B,),
    final error (B,) m, the evaluation's definition); with `record`, also what the actor saw and what was
    sent, (B, T, obs) and (B, T, 4): a teacher's demonstrations (train_fast/refine.py)."""
    n = env.episode_steps
    last = int(round(1.0 / float(env.nominal.dt)))
    run = jax.vmap(_closed_loop(env, policy, pp, horizon, n, record), in_axes=(0, 0, 0))
    _, alive, e_p, alive_t, *seen = run(d, s0, keys)
    err = jnp.linalg.norm(e_p, axis=-1)
    final = jnp.where(alive, jnp.mean(err[:, -last:], axis=1), jnp.inf)
    return (alive, jnp.sum(alive_t, axis=1), final, *seen)


def nudged_oracle(env: qt.QuadEnv, policy, pp, s0, key, horizon: int = 60, steps: int = 150, restarts: int = 4,
                  iterations: int = 200, lr: float = 0.05, chunk: int = 16, demonstrations: list | None = None):
    """Certify each start of s0 (N batched): recovered (N,) bool, steps flown by the best try (N,), final error (N,).
    Restart 0 starts from zero offsets (the policy as it is); the others from random offsets. `demonstrations`, a
    list: each saved start's witness (observations, actions) is appended to it."""
    n = int(s0.sim.pos.shape[0])
    recovered, flown, final = np.zeros(n, bool), np.zeros(n, int), np.full(n, np.inf)
    for lo in range(0, n, chunk):
        idx = np.arange(lo, min(n, lo + chunk))
        m = len(idx)
        # every chunk has the same shape (the last one padded with its own last start): one compilation, not one
        # per remainder (each took 10-20 s)
        padded = np.concatenate([idx, np.full(chunk - m, idx[-1])])
        s_rep = jax.tree_util.tree_map(lambda x, padded=padded: jnp.repeat(x[padded], restarts, axis=0), s0)
        kd, kn = jax.random.split(jax.random.fold_in(key, lo))
        d0 = 0.5 * jax.random.normal(kd, (chunk, restarts, horizon, 4)) * (jnp.arange(restarts) > 0)[None, :, None, None]
        keys = jax.random.split(kn, chunk * restarts)
        d, _ = nudge(env, policy, pp, s_rep, d0.reshape(chunk * restarts, horizon, 4), keys, horizon, steps, iterations, lr)
        alive, fl, fin, *seen = witness(env, policy, pp, s_rep, d, keys, horizon, demonstrations is not None)
        alive = np.asarray(alive).reshape(chunk, restarts)[:m]
        if demonstrations is not None:  # the first saving try of each saved start: (obs (T, n), actions (T, 4))
            obs, act = (np.asarray(x).reshape(chunk, restarts, *x.shape[1:]) for x in seen)
            demonstrations += [(obs[j, r], act[j, r]) for j, r in enumerate(np.argmax(alive, axis=1)) if alive[j, r]]
        recovered[idx] = alive.any(axis=1)
        flown[idx] = np.asarray(fl).reshape(chunk, restarts)[:m].max(axis=1)
        final[idx] = np.where(alive, np.asarray(fin).reshape(chunk, restarts)[:m], np.inf).min(axis=1)
    return recovered, flown, final


def saving_offsets(policy, pp, demonstrations: list, horizon: int) -> dict:
    """What the saves changed, per action channel, over the first `horizon` periods of each saving episode: the
    mean and the mean magnitude of (command sent - the policy's own clipped command on the same observation). A
    channel whose mean stays far from 0 is one the policy gets wrong the same way on the starts it loses. Measured on
    a 4 M-step ctbr hover policy (35 saves): small changes of either sign on every channel (mean magnitudes
    0.10-0.18), the thrust's mean leaning up (+0.01 to +0.08 per 0.1 s window after the first), the yaw rate's
    largest in the first 0.1 s (0.28 of its range, either sign): no one channel the policy gets wrong."""
    if not demonstrations:
        return {"episodes": 0, "mean": None, "mean_abs": None}
    d = np.stack([np.asarray(act[:horizon]) - np.clip(np.asarray(policy(pp, jnp.asarray(obs[:horizon]))), -1.0, 1.0)
                  for obs, act in demonstrations])
    return {"episodes": len(demonstrations), "mean": d.mean(axis=(0, 1)).tolist(),
            "mean_abs": np.abs(d).mean(axis=(0, 1)).tolist()}

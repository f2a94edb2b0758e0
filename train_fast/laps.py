"""The race task's lap protocol as code (train_fast/evaluate_car.py describes it): one jitted rollout of a batch of
controllers around the track, the per-run summary and the one-number score. Shared by the evaluation
(evaluate_car), the trainer's checkpoint choice and the pure-pursuit baseline's tuning."""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from train_fast.tasks import car_tasks as ct

MIN_AVERAGE_SPEED = 1.0  # m/s: the time limit of a lap evaluation is laps * length / this


def max_steps(env: ct.CarEnv, laps: int) -> int:
    return int(math.ceil(laps * env.track.length / MIN_AVERAGE_SPEED / float(env.nominal.dt)))


def make_lap_rollout(env: ct.CarEnv, policy: Callable, laps: int = 3, record: bool = False, batched: bool = True):
    """Jitted (policy_params, key) -> per-run results with a leading run axis: one run per entry of
    a batch of policy params (leading axis), or with `batched=False` one run of one policy (which
    may then be a host callback that cannot be vmapped).

    `policy(pp, key, env_state) -> action (2,)` sees the full state, so observation-driven policies
    build their (noisy) observation themselves: see `actor_policy`.
    """
    n_steps = max_steps(env, laps)
    m = len(env.checkpoints)

    def one(pp, key):
        s0 = ct.start_line(env)

        def body(carry, k):
            s, done_at = carry
            a = jnp.clip(policy(pp, k, s), -1.0, 1.0)
            s2, _, _, _ = ct.step(k, s, a, env)
            # The car parks once the laps are done, so nothing after them counts (the scan has a fixed length).
            finished = s.passed >= laps * m
            s2 = jax.tree_util.tree_map(lambda a_, b_: jnp.where(finished, a_, b_), s, s2)
            lap = s2.passed // m
            newly = (lap > s.passed // m) & (lap <= laps)
            done_at = jnp.where(newly, done_at.at[jnp.clip(lap - 1, 0, laps - 1)].set(s2.t), done_at)
            rec = (s2.sim.x, s2.sim.y, s2.sim.vx, a) if record else ()
            return (s2, done_at), rec

        init = (s0, jnp.full(laps, -1, jnp.int32))
        (s, done_at), rec = jax.lax.scan(body, init, jax.random.split(key, n_steps))
        return {"lap_steps": done_at, "collisions": s.collisions, "progress_m": s.prog - s0.prog, "passed": s.passed}, rec

    def run(pps, key):
        if batched:
            return jax.vmap(one, in_axes=(0, None))(pps, key)
        return jax.tree_util.tree_map(lambda x: x[None], one(pps, key))

    return jax.jit(run)


def actor_policy(env: ct.CarEnv, apply: Callable):
    """policy(pp, key, state) for an actor network `apply(pp, obs_raw (1, n)) -> action (1, 2)`."""
    def policy(pp, key, s):
        obs = ct.observe(key, env, s)
        return apply(pp, obs[None])[0]
    return policy


def summarize(out: dict, env: ct.CarEnv, laps: int, index: int = 0) -> dict:
    """Numbers for one run of the batch."""
    dt = float(env.nominal.dt)
    steps = np.asarray(out["lap_steps"])[index]
    coll = int(np.asarray(out["collisions"])[index])
    finished = int(np.sum(steps >= 0))
    lap_times = np.diff(np.concatenate([[0], steps[steps >= 0]])) * dt
    total = float(steps[-1] * dt) if finished == laps else math.inf
    return {
        "laps": laps,
        "laps_completed": finished,
        "lap_time_s": total / laps if finished == laps else math.inf,
        "lap_times_s": [float(t) for t in lap_times],
        "best_lap_s": float(lap_times.min()) if finished else math.inf,
        "collisions": coll,
        "collisions_per_lap": coll / finished if finished else float(coll),
        "progress_m": float(np.asarray(out["progress_m"])[index]),
        "track_length_m": env.track.length,
    }


def score(summary: dict, env: ct.CarEnv) -> float:
    """One number to pick checkpoints by (higher is better): seconds to finish the laps, an
    unfinished run charged the time limit plus its missing distance at 1 m/s, 10 s per collision."""
    laps = summary["laps"]
    if summary["laps_completed"] == laps:
        t = summary["lap_time_s"] * laps
    else:
        t = max_steps(env, laps) * float(env.nominal.dt) + max(laps * env.track.length - summary["progress_m"], 0.0)
    return -(t + 10.0 * summary["collisions"])

"""Lap evaluation for the race task: lap time and collisions per lap, against tuned pure pursuit.

Protocol (what `edgectl eval --json` reports for an rc-car bundle):
- the nominal car (no domain randomization) stands on the start/finish line, the first point of the
  demonstration lap, and drives `laps` laps (default 3); the actor gets its observation with the
  contract's sensor noise (fixed seed) and its action is the deterministic mean;
- a lap is done when the car has passed every checkpoint in order and the start/finish gate again;
- lap_time_s = time to finish all `laps` laps / laps (the standing start is included, the same for
  every controller); null if the laps are not finished within `laps * length / 1 m/s`;
- collisions_per_lap = collisions (each puts the car back, standing, just behind where it hit) /
  laps finished (all collisions if none was finished);
- baseline_lap_time_s: the same protocol for pure pursuit tuned on this track by grid search
  (train_fast/baselines/pure_pursuit.py), the fastest collision-free configuration.
"""
from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

# The lap protocol's rollout and scoring live in train_fast/laps.py (pure pursuit's tuning uses them too, and this
# module uses pure pursuit): re-exported here.
from train_fast.laps import (MIN_AVERAGE_SPEED, actor_policy, make_lap_rollout, max_steps,  # noqa: F401
                             score, summarize)
from train_fast.tasks import car_tasks as ct


def env_for_bundle(bundle) -> ct.CarEnv:
    """Rebuild the race environment from the bundle alone (its platform file and track.csv)."""
    import dataclasses

    from edgectl.platforms import parse_platform

    plat = parse_platform((bundle.path / "platform.toml").read_bytes(), bundle.path / "platform.toml")
    track_file = bundle.path / "track.csv"
    if not track_file.is_file():
        raise ValueError(f"{bundle.path}: no track.csv in the bundle (an rc-car race bundle carries its track)")
    track = ct.parse_track(track_file.read_bytes(), track_file)
    track = dataclasses.replace(track, name=str(bundle.manifest["task"].get("track", track.name)))
    known = {f.name for f in dataclasses.fields(ct.TaskConfig)}
    cfg = ct.TaskConfig(**{k: v for k, v in bundle.manifest["task"].items() if k in known})
    env = ct.make_env(cfg, plat, track=track, randomize=False)
    if env.obs_size != bundle.contract["observation"]["size"]:
        raise ValueError(f"{bundle.path}: the race task builds {env.obs_size} observations, "
                         f"the bundle's contract has {bundle.contract['observation']['size']}")
    return env


def evaluate_bundle(bundle, laps: int = 3, seed: int = 12345, baseline: bool = True, record: bool = False, policy=None):
    """(summary, recorded trajectory or None): the bundle's lap time and collisions, and with
    `baseline` the tuned pure-pursuit lap time on the same track.

    `policy`: (params, apply) to drive instead of the bundle's float actor, e.g.
    train_fast.evaluate.host_policy(fn, action_size=2) for a quantized or compiled export.
    """
    from train_fast.evaluate import bundle_policy

    env = env_for_bundle(bundle)
    params, apply = policy if policy is not None else bundle_policy(bundle)
    run = make_lap_rollout(env, actor_policy(env, apply), laps=laps, record=record, batched=False)
    out, rec = run(params, jax.random.PRNGKey(seed))
    summary = summarize(jax.device_get(out), env, laps)
    summary.update(task="race", track=env.track.name, track_sha256=env.track.sha256,
                   demo_lap_time_s=env.track.demo_lap_time, checkpoints=int(len(env.checkpoints)))
    if baseline:
        from train_fast.baselines.pure_pursuit import tune

        best = tune(env, laps=laps)
        summary["baseline_lap_time_s"] = best["lap_time_s"]
        summary["baseline_collisions_per_lap"] = best["collisions_per_lap"]
        summary["baseline_params"] = best["params"]
        summary["beats_baseline"] = bool(summary["lap_time_s"] < best["lap_time_s"])
    trajectory = None
    if record:
        x, y, v, a = (np.asarray(r)[0] for r in rec)
        trajectory = {"dt": float(env.nominal.dt), "x": x, "y": y, "speed": v, "action": a}
    return summary, trajectory


def collect_observations(bundle, n: int, seed: int = 0, source: str = "rollouts") -> np.ndarray:
    """`n` actor observations (raw, with sensor noise) met while the bundle's own policy drives
    randomized cars from the task's start distribution: what an exported policy will be fed
    (source="random-states": start states, not driven)."""
    from train_fast.evaluate import bundle_policy, random_state_observations

    env = env_for_bundle(bundle)
    env = ct.make_env(env.cfg, _platform(bundle), track=env.track, randomize=True)
    if source == "random-states":
        return random_state_observations(env, ct.reset, ct.observe, n, seed)
    params, apply = bundle_policy(bundle)
    episodes = max(16, -(-2 * n // env.episode_steps))

    @jax.jit
    def run(pp, key):
        k_reset, k_run = jax.random.split(key)
        s0 = jax.vmap(ct.reset, in_axes=(0, None))(jax.random.split(k_reset, episodes), env)

        def body(s, k):
            obs = jax.vmap(ct.observe, in_axes=(0, None, 0))(jax.random.split(k, episodes), env, s)
            a = jnp.clip(apply(pp, obs), -1.0, 1.0)
            s2, _, _, _ = jax.vmap(ct.step, in_axes=(None, 0, 0, None))(k, s, a, env)
            return s2, obs

        return jax.lax.scan(body, s0, jax.random.split(k_run, env.episode_steps))[1]

    pool = np.asarray(jax.device_get(run(params, jax.random.PRNGKey(seed))), np.float32).reshape(-1, env.obs_size)
    return pool[np.random.default_rng(seed).choice(len(pool), n, replace=False)]


def _platform(bundle):
    from edgectl.platforms import parse_platform

    return parse_platform((bundle.path / "platform.toml").read_bytes(), bundle.path / "platform.toml")


# --- figures (matplotlib on the Agg canvas through edgectl.plots' helpers) ---------------------
def training_curve_png(history: list[dict], *, title: str = "", budget_s: float | None = None) -> bytes:
    """PNG bytes: mean reward per step (train) and evaluation lap time / collisions against env steps."""
    from edgectl.plots import _col, _figure, _png

    steps = np.asarray(_col(history, "env_steps"))
    fig = _figure(10.0, 4.0, left=0.07, right=0.93, bottom=0.12, top=0.86, wspace=0.3)
    ax_r, ax_l = fig.subplots(1, 2)
    ax_r.plot(steps, _col(history, "mean_reward"), "o-", ms=3, color="tab:blue")
    ax_r.set_xlabel("env steps")
    ax_r.set_ylabel("mean reward per step (train)")
    ax_r.grid(alpha=0.3)
    ax_l.plot(steps, _col(history, "eval_lap_time_s"), "o-", ms=3, color="tab:red", label="lap time")
    ax_l.set_xlabel("env steps")
    ax_l.set_ylabel("eval lap time [s] (standing start)")
    ax_l.grid(alpha=0.3)
    ax_c = ax_l.twinx()
    ax_c.plot(steps, _col(history, "eval_collisions"), "^--", ms=3, color="tab:green", label="collisions")
    ax_c.set_ylabel("eval collisions", color="tab:green")
    best = [x for x, h in zip(steps, history) if h.get("best")]
    if best:
        for ax in (ax_r, ax_l):
            ax.axvline(best[-1], color="0.5", lw=0.8, ls=":")
    if budget_s is not None:
        title = f"{title}  (budget {budget_s:g} s)" if title else f"budget {budget_s:g} s"
    if title:
        fig.suptitle(title, fontsize=10)
    return _png(fig)


def lap_plot_png(env: ct.CarEnv, trajectory: dict, path, title: str = "") -> Path:
    """The corridor, the demonstration lap, the checkpoints and the evaluated drive coloured by speed."""

    from edgectl.plots import _figure

    tr = env.track
    pts = np.vstack([tr.points, tr.points[:1]])
    normal = np.stack([-np.sin(tr.heading), np.cos(tr.heading)], axis=1)
    fig = _figure(7.0, 6.0, left=0.08, right=0.98, bottom=0.08, top=0.92)
    ax = fig.subplots()
    for side in (1.0, -1.0):
        edge = tr.points + side * tr.half_width * normal
        ax.plot(*np.vstack([edge, edge[:1]]).T, color="0.3", lw=1.0)
    ax.plot(*pts.T, color="0.6", lw=0.8, ls="--", label="demonstration lap")
    for k, i in enumerate(env.checkpoints):  # gates across the corridor
        gate = tr.points[i] + np.outer([-tr.half_width, tr.half_width], normal[i])
        ax.plot(*gate.T, color="tab:orange", lw=1.5, label="checkpoints" if k == 0 else None)
    x, y, v = (np.asarray(trajectory[k]) for k in ("x", "y", "speed"))
    moving = np.concatenate([[True], (np.diff(x) != 0) | (np.diff(y) != 0)])  # drop the parked tail
    sc = ax.scatter(x[moving], y[moving], c=v[moving], s=3, cmap="viridis", label="drive")
    fig.colorbar(sc, ax=ax, label="speed [m/s]")
    ax.set_aspect("equal")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.legend(loc="upper right", fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out

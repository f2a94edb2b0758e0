"""Closed-loop evaluation of the avoid task: success rate and collision-free distance on unseen scenes,
against a straight-line baseline flown through the same scenes.

Definitions (what `edgectl eval --json` reports for an avoid bundle):
- success: the vehicle reaches x >= field length without touching anything;
- collision-free distance: x reached before the first collision (the field length on success, the
  distance flown when the episode's time ran out);
- straight-line baseline: hold the start's lateral position and the cruise height (velocity command
  (0, k (h_ref - h))), i.e. no avoidance: it shows how cluttered the scenes are.

Unseen scenes: evaluation draws its scenes from jax.random.fold_in(PRNGKey(eval_seed), EVAL_STREAM); a
training run draws them from PRNGKey(train_seed) splits (and its checkpoint evaluation from another
split of that key). Scenes are continuous random draws, so an evaluation scene equal to a training
scene has probability zero; the default eval seed (12345) is not a training seed either.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from edgectl.contract import observation_slices
from train_fast.tasks import avoid_tasks as at

EVAL_STREAM = 0xA401D  # folded into the eval key: a key stream training never uses
RECORD_FRAMES = (0, 20, 40)  # steps whose camera frames the eval plot shows


def make_rollout(env: at.AvoidEnv, policy: Callable, episodes: int, record: int = 0):
    """Jitted (policy_params, key) -> per-episode results; with record > 0 also the paths (and frames)
    of the first `record` episodes. `policy(params, obs_raw (N, size)) -> action (N, 2)`."""
    n_steps = env.episode_steps
    L = env.cfg.length

    def run(pp, key):
        k_reset, k_run = jax.random.split(key)
        s0 = jax.vmap(at.reset, in_axes=(0, None))(jax.random.split(k_reset, episodes), env)

        def body(carry, k):
            s, active, hit, dist = carry
            ko, ks = jax.random.split(k)
            obs = jax.vmap(at.observe, in_axes=(0, None, 0))(jax.random.split(ko, episodes), env, s)
            a = jnp.clip(policy(pp, obs), -1.0, 1.0)
            s2, _, term, _ = jax.vmap(at.step, in_axes=(0, 0, 0, None))(jax.random.split(ks, episodes), s, a, env)
            clear = jax.vmap(lambda st: at.cam.clearance(st.scene, st.pos))(s2) - env.cfg.vehicle_radius
            new_hit = active & (clear <= 0.0)
            dist = jnp.where(active, jnp.minimum(s2.pos[:, 0], L), dist)
            hit = hit | new_hit
            active = active & ~term
            rec = (s.pos[:record], obs[:record], a[:record]) if record else ()
            return (s2, active, hit, dist), rec

        init = (s0, jnp.ones(episodes, bool), jnp.zeros(episodes, bool), jnp.zeros(episodes))
        (_, _, hit, dist), rec = jax.lax.scan(body, init, jax.random.split(k_run, n_steps))
        success = ~hit & (dist >= L)
        out = {"success": success, "collided": hit, "distance": dist}
        if record:
            scenes = jax.tree_util.tree_map(lambda x: x[:record], s0.scene)
            return out, (rec, scenes)
        return out, ()

    return jax.jit(run)


def summarize(out: dict, length: float) -> dict:
    success = np.asarray(out["success"])
    collided = np.asarray(out["collided"])
    dist = np.asarray(out["distance"], np.float64)
    return {"episodes": int(success.size), "success_rate": float(success.mean()),
            "collision_rate": float(collided.mean()), "timeout_rate": float((~success & ~collided).mean()),
            "collision_free_distance_median_m": float(np.median(dist)),
            "collision_free_distance_mean_m": float(dist.mean()), "field_length_m": float(length)}


def score(summary: dict) -> float:
    """Checkpoint selection: success first, then how far the failures got."""
    return summary["success_rate"] + 0.1 * summary["collision_free_distance_mean_m"] / summary["field_length_m"]


def actor_policy(apply: Callable):
    return apply


def straight_line_policy(env: at.AvoidEnv, contract: dict):
    """(params, apply): the no-avoidance baseline on raw observations (height hold only)."""
    sl = observation_slices(contract)
    hs = sl["height"].start
    cfg = env.cfg

    def apply(_, obs):
        vz = jnp.clip(1.0 * (cfg.cruise_height - obs[:, hs]) / cfg.max_vertical_speed, -1.0, 1.0)
        return jnp.stack([jnp.zeros_like(vz), vz], axis=1)
    return (), apply


def env_for_bundle(bundle) -> at.AvoidEnv:
    import dataclasses

    known = {f.name for f in dataclasses.fields(at.TaskConfig)}
    cfg = at.avoid_config(**{k: v for k, v in bundle.manifest["task"].items() if k in known})
    env = at.make_env(cfg)
    if env.obs_size != bundle.contract["observation"]["size"]:
        raise ValueError(f"{bundle.path}: task 'avoid' builds {env.obs_size} observations, "
                         f"the bundle's contract has {bundle.contract['observation']['size']}")
    return env


def eval_key(seed: int):
    return jax.random.fold_in(jax.random.PRNGKey(seed), EVAL_STREAM)


def evaluate_bundle(bundle, episodes: int = 1000, seed: int = 12345, record: int = 0, policy=None,
                    baseline: bool = True):
    """(summary, recording or None) on `episodes` unseen scenes; the baseline flies the same scenes."""
    from train_fast.evaluate import bundle_policy

    env = env_for_bundle(bundle)
    params, apply = policy if policy is not None else bundle_policy(bundle)
    key = eval_key(seed)
    out, rec = make_rollout(env, apply, episodes, record=record)(params, key)
    summary = summarize(jax.device_get(out), env.cfg.length)
    if baseline:
        bp, ba = straight_line_policy(env, bundle.contract)
        b, _ = make_rollout(env, ba, episodes)(bp, key)
        bs = summarize(jax.device_get(b), env.cfg.length)
        summary.update({f"baseline_{k}": v for k, v in bs.items() if k not in ("episodes", "field_length_m")})
    summary.update(task="avoid", image=env.cfg.image, eval_scene_stream=f"fold_in(PRNGKey({seed}), {EVAL_STREAM:#x})")
    if record:
        (pos, obs, act), scenes = jax.device_get(rec)
        return summary, {"pos": np.asarray(pos), "obs": np.asarray(obs), "action": np.asarray(act),
                         "scenes": scenes, "success": np.asarray(out["success"])[:record],
                         "collided": np.asarray(out["collided"])[:record]}
    return summary, None


def collect_observations(bundle, n: int, seed: int = 0, source: str = "rollouts") -> np.ndarray:
    """`n` raw actor observations (rendered, noisy images + proprioception) met while the bundle's own
    policy flies: what an exported policy is checked on (source="random-states": start states, not flown)."""
    from train_fast.evaluate import TooFewObservations, bundle_policy, random_state_observations

    env = env_for_bundle(bundle)
    if source == "random-states":
        return random_state_observations(env, at.reset, at.observe, n, seed)
    params, apply = bundle_policy(bundle)
    episodes = max(16, -(-2 * n // (env.episode_steps // 2)))
    episodes = min(episodes, 4096)

    @jax.jit
    def run(pp, key):
        k_reset, k_run = jax.random.split(key)
        s0 = jax.vmap(at.reset, in_axes=(0, None))(jax.random.split(k_reset, episodes), env)

        def body(carry, k):
            s, active = carry
            ko, ks = jax.random.split(k)
            obs = jax.vmap(at.observe, in_axes=(0, None, 0))(jax.random.split(ko, episodes), env, s)
            a = jnp.clip(apply(pp, obs), -1.0, 1.0)
            s2, _, term, _ = jax.vmap(at.step, in_axes=(0, 0, 0, None))(jax.random.split(ks, episodes), s, a, env)
            return (s2, active & ~term), (obs, active)

        _, (obs, active) = jax.lax.scan(body, (s0, jnp.ones(episodes, bool)), jax.random.split(k_run, env.episode_steps))
        return obs, active

    obs, active = jax.device_get(run(params, jax.random.PRNGKey(seed)))
    pool = np.asarray(obs, np.float32)[np.asarray(active)]
    if len(pool) < n:
        raise TooFewObservations(len(pool), n, episodes, int(np.asarray(active)[-1].sum()))
    return pool[np.random.default_rng(seed).choice(len(pool), n, replace=False)]


# --- plots -------------------------------------------------------------------------------------------
def training_curve_png(history: list[dict], *, title: str = "", budget_s: float | None = None) -> bytes:
    from edgectl import plots

    steps = np.asarray([h["env_steps"] for h in history])
    fig = plots._figure(10.0, 4.0, left=0.07, right=0.93, bottom=0.12, top=0.85, wspace=0.3)
    ax_r, ax_s = fig.subplots(1, 2)
    ax_r.plot(steps, [h["mean_return"] if h["mean_return"] is not None else np.nan for h in history], "o-", ms=3)
    ax_r.set_xlabel("env steps")
    ax_r.set_ylabel("mean episode return (train)")
    ax_r.grid(alpha=0.3)
    ax_s.plot(steps, [100 * h["eval_success_rate"] for h in history], "o-", ms=3, color="tab:green", label="success")
    ax_s.plot(steps, [100 * h["eval_collision_rate"] for h in history], "s--", ms=3, color="tab:red", label="collision")
    ax_s.set_xlabel("env steps")
    ax_s.set_ylabel("eval episodes [%]")
    ax_s.set_ylim(-2, 102)
    ax_s.grid(alpha=0.3)
    ax_s.legend(loc="center right", fontsize=8)
    secs = history[-1]["elapsed_s"]
    fig.suptitle(f"{title}  ({secs:.0f} s{'' if budget_s is None else f' of {budget_s:g} s'})", fontsize=10)
    return plots._png(fig)


def eval_png(env: at.AvoidEnv, rec: dict, path, title: str = "") -> "Path":
    """Top-down paths through the first recorded scenes, and sample camera frames of episode 0."""

    from edgectl import plots

    n = rec["pos"].shape[1]
    cfg = env.cfg
    frames = [i for i in RECORD_FRAMES if i < rec["obs"].shape[0]]
    fig = plots._figure(12.0, 3.0 * n + 4.4, left=0.06, right=0.97, bottom=0.03, top=0.94, wspace=0.25, hspace=0.45)
    gs = fig.add_gridspec(n + 2, max(len(frames), 1))
    import matplotlib.patches as mp

    for e in range(n):
        ax = fig.add_subplot(gs[e, :])
        sc_ = jax.tree_util.tree_map(lambda x, e=e: np.asarray(x)[e], rec["scenes"])
        w = float(sc_.half_width)
        ax.axhspan(w, w + 0.3, color="0.6")
        ax.axhspan(-w - 0.3, -w, color="0.6")
        for (x, y), r in zip(sc_.obs_xy, sc_.obs_r):
            if r > 0:
                ax.add_patch(mp.Circle((x, y), r, color="tab:brown", alpha=0.8))
        p = rec["pos"][:, e]
        keep = p[:, 0] <= cfg.length + 0.2
        ax.plot(p[keep, 0], p[keep, 1], "-", color="tab:green" if rec["success"][e] else "tab:red", lw=1.5)
        ax.axvline(cfg.length, color="k", ls=":", lw=1)
        ax.set_xlim(-0.3, cfg.length + 0.5)
        ax.set_ylim(-w - 0.3, w + 0.3)
        ax.set_aspect("equal")
        ax.set_title(f"episode {e}: {'crossed' if rec['success'][e] else ('collision' if rec['collided'][e] else 'timeout')}",
                     fontsize=9)
    spec = cfg.camera()
    for j, i in enumerate(frames):
        ax = fig.add_subplot(gs[n, j])
        img = rec["obs"][i, 0, :spec.size].reshape(spec.height, spec.width)
        ax.imshow(img, cmap="viridis_r" if cfg.image == "depth" else "gray", interpolation="nearest",
                  vmin=0, vmax=spec.max_range if cfg.image == "depth" else 1.0)
        ax.set_title(f"policy input ({cfg.image}, noisy), step {i} (x = {rec['pos'][i, 0, 0]:.1f} m)", fontsize=8)
        ax.axis("off")
        # The same view in colour at 4x the resolution: the randomized textures, colours and light.
        from edgectl import scene as sc
        big = sc.CameraSpec(width=4 * spec.width, height=4 * spec.height, supersample=1, hfov_deg=spec.hfov_deg,
                            max_range=spec.max_range)
        sc0 = jax.tree_util.tree_map(lambda x: np.asarray(x)[0], rec["scenes"])
        rgb, _ = sc.render_rgb(np, sc0, rec["pos"][i, 0].astype(np.float64), big)
        ax = fig.add_subplot(gs[n + 1, j])
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(f"randomized appearance (RGB {big.width}x{big.height}), step {i}", fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    path = Path(path)
    path.write_bytes(plots._png(fig))
    return path

"""Time-budgeted training driver: compile, run PPO chunks until the wall-clock budget is spent,
keep the best checkpoint by closed-loop evaluation, and write the policy bundle.

The budget counts from `t_start` (the CLI passes its process start time), so JIT compilation,
evaluation and writing the bundle all come out of the user's `--seconds`.
"""
from __future__ import annotations

import dataclasses
import os
import platform as _pyplatform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgectl.fsutil import json_value

# Compiled programs are reused across runs: the second `edgectl train` skips most of the compile.
_CACHE = Path(os.environ.get("EDGECTL_JAX_CACHE", Path.home() / ".cache" / "edgectl" / "jax"))


def _setup_jax():
    import jax

    jax.config.update("jax_compilation_cache_dir", str(_CACHE))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return jax


@dataclass
class TrainResult:
    actor_layers: list  # [(W [in, out], b [out]), ...] float32 numpy
    contract: dict
    task: dict
    ppo: dict
    seed: int
    metrics: dict
    history: list = field(default_factory=list)  # one dict per chunk
    platform_name: str = ""
    platform_toml: bytes = b""
    extra_files: dict = field(default_factory=dict)  # name -> bytes written into the bundle (e.g. track.csv)
    # the budget and what replaced the platform's ranges: with task, ppo and seed, the bundle's config.toml
    settings: dict = field(default_factory=dict)


def train(platform_name: str | None = None, task: str = "hover", seconds: float = 20.0, seed: int = 0,
          t_start: float | None = None, progress: Callable[[dict], None] | None = None,
          reserve_seconds: float | None = None, ppo_overrides: dict | None = None, task_overrides: dict | None = None,
          max_env_steps: float | None = None, eval_from: float | None = None, robust: bool = False,
          track: str | None = None, randomization: dict | None = None, target: str | None = None) -> TrainResult:
    """PPO on any registered task against a wall-clock (or env-step) budget; returns the best checkpoint.

    The task's registry "setup" hook (train_fast/tasks/training.py) builds its environments, contract, checkpoint
    judge and PPO settings; the budgeted loop below is the same for every task. `reserve_seconds` and
    `eval_from` default to the task's own (see TaskSetup); `platform_name` to its vehicle's default platform.
    ``randomization`` replaces the platform's [randomization] fields (train_fast.config.patch_platform).
    `target` ("px4"): a policy that on-board runtime runs as it is (`edgectl train --for`; FOR_TARGETS in
    train_fast/tasks/training.py).
    """
    t_start = time.time() if t_start is None else t_start
    from edgectl.platforms import load_platform
    from edgectl.tasks import DEFAULT_PLATFORM, task as registered
    from train_fast.config import patch_platform

    entry = registered(task)
    plat = patch_platform(load_platform(platform_name or DEFAULT_PLATFORM[entry.vehicle]), randomization)
    if plat.kind != entry.platform_kind:
        raise ValueError(f"{plat.path}: platform {plat.name!r} is a {plat.kind}; the {task} task needs a "
                         f"{entry.platform_kind} platform")
    jax = _setup_jax()
    from train_fast.algos import ppo as ppo_mod

    setup = entry.hook("setup")(plat, task, task_overrides, robust=robust, track=track, target=target)
    deadline = t_start + seconds - (setup.reserve_seconds if reserve_seconds is None else reserve_seconds)
    pcfg = dataclasses.replace(ppo_mod.PPOConfig(), **{**setup.ppo, **(ppo_overrides or {})})
    fns = setup.fns
    init, train_chunk, actor_apply = ppo_mod.make_train(
        pcfg, setup.train_env, fns.reset, fns.step, fns.observe, fns.observe_privileged,
        action_size=setup.action_size, action_bias=setup.action_bias)
    best, history, chunk = _budgeted_ppo(jax, pcfg, init, train_chunk, setup.make_evaluate(actor_apply, pcfg),
                                         setup.judge, seed=seed, t_start=t_start, deadline=deadline,
                                         max_env_steps=max_env_steps, progress=progress,
                                         eval_from=setup.eval_from if eval_from is None else eval_from)
    layers, metrics = _result(best, history, chunk, t_start, *setup.history_keys)
    read = np.abs(layers[0][0][list(pcfg.actor_unread)]).max(initial=0.0)
    if read != 0.0:  # PPOConfig.actor_unread: zero inputs, zero rows at init, so zero gradients and Adam updates
        raise RuntimeError(f"actor_unread: first-layer weights on observation elements {list(pcfg.actor_unread)} "
                           f"reached {read:.3g}; they must stay exactly 0")
    return TrainResult(
        actor_layers=layers, contract=setup.contract, task=setup.task, ppo=dataclasses.asdict(pcfg), seed=seed,
        metrics=metrics, history=history, platform_name=plat.name, platform_toml=plat.raw,
        extra_files=dict(setup.extra_files),
        settings=_settings(seconds, max_env_steps, randomization, robust=robust))


def _settings(seconds: float, max_env_steps: float | None, randomization: dict | None, robust: bool = False) -> dict:
    return {"seconds": float(seconds), "max_env_steps": None if max_env_steps is None else int(max_env_steps),
            "robust": robust, "randomization": dict(randomization or {})}


def _budgeted_ppo(jax, pcfg, init, train_chunk, evaluate, judge: Callable, *, seed: int, t_start: float, deadline: float,
                  max_env_steps: float | None, progress: Callable[[dict], None] | None, eval_from: float = 0.0):
    """The loop every trainer shares: PPO chunks until the wall-clock deadline (or the env-step budget),
    learning rate and std annealed over the budget, each chunk's checkpoint evaluated on fixed episodes
    once `eval_from` of the budget is spent, the best kept. `judge(raw eval output) -> (summary, score)`.
    Returns (best actor params, history, chunks)."""
    k_init, k_eval = jax.random.split(jax.random.PRNGKey(seed))
    # Compile ahead of the loop, so the first chunk's time is a real chunk time. Concurrent XLA
    # compiles in threads measured slower here (25 s against 11 s cold), so they run in turn; the
    # persistent cache makes later runs cheap (about 2 s).
    t_compile = time.time()
    runner = init(k_init)
    lr_arg = np.float32(pcfg.lr)
    compiled = {"chunk": train_chunk.lower(runner, lr_arg, lr_arg).compile(),
                "eval": evaluate.lower(runner.params["actor"], k_eval).compile()}
    compile_s = time.time() - t_compile

    def budget_spent(t: float) -> float:
        # a step budget makes the schedule, and so the run, independent of machine speed
        if max_env_steps is None:
            return min(max((t - t_train) / max(deadline - t_train, 1e-3), 0.0), 1.0)
        return min(float(runner.step) / max_env_steps, 1.0)

    def judged():
        return judge(jax.device_get(compiled["eval"](runner.params["actor"], k_eval)[0]))

    best, best_score, history, chunk, t_train = None, -np.inf, [], 0, time.time()
    while True:
        t0 = time.time()
        frac = budget_spent(t0)
        lr = pcfg.lr + frac * (pcfg.lr_end - pcfg.lr)
        std = pcfg.init_std + frac * ((pcfg.final_std or pcfg.init_std) - pcfg.init_std)
        runner, m = compiled["chunk"](runner, np.float32(lr), np.float32(std))
        jax.block_until_ready(runner.params)
        te = time.time()
        ev, sc = judged() if budget_spent(te) >= eval_from else (None, -np.inf)
        t1 = time.time()
        chunk += 1
        m = jax.device_get(m)
        n_ep = float(m["episodes"])
        # Long episodes (a race lap) may end in no chunk at all: carry the last mean return over.
        ret = float(m["return_sum"]) / n_ep if n_ep > 0 else (history[-1]["mean_return"] if history else None)
        entry = {"chunk": chunk, "elapsed_s": t1 - t_start, "env_steps": float(runner.step), "lr": lr,
                 "mean_return": ret, "mean_reward": float(m["mean_reward"]) / pcfg.iters_per_chunk,
                 "termination_rate": float(m["terminated"]) / max(n_ep, 1.0), "value_loss": float(m["value_loss"])}
        if ev is not None:
            entry.update({f"eval_{k}": v for k, v in ev.items() if not isinstance(v, list)},
                         eval_score=sc, chunk_eval_s=t1 - te)
            if sc > best_score or best is None:
                best_score, best = sc, jax.device_get(runner.params["actor"])
                entry["best"] = True
        if chunk == 1:
            entry["compile_s"] = compile_s  # about 13 s on a fresh machine, 1-2 s from the persistent cache
        history.append(entry)
        if progress:
            progress(entry)
        est = (t1 - t0) if chunk > 1 else 0.0  # the first chunk includes compilation
        if t1 + est > deadline or (max_env_steps is not None and float(runner.step) >= max_env_steps):
            break
    if best is None:  # the budget ended before eval_from: keep the last policy, evaluated
        ev, sc = judged()
        best = jax.device_get(runner.params["actor"])
        history[-1].update({f"eval_{k}": v for k, v in ev.items() if not isinstance(v, list)}, eval_score=sc, best=True)
    return best, history, chunk


def _result(best, history: list[dict], chunks: int, t_start: float, *extra_keys: str) -> tuple[list, dict]:
    """The best actor as float32 (W, b) pairs and the metrics every bundle records about its training."""
    layers = [(np.asarray(layer["w"], np.float32), np.asarray(layer["b"], np.float32)) for layer in best]
    last_best = max((h for h in history if h.get("best")), key=lambda h: h["chunk"])
    metrics = {
        "train_seconds": time.time() - t_start,
        "env_steps": history[-1]["env_steps"],
        "chunks": chunks,
        "best_chunk": last_best["chunk"],
        "best_eval": {k[5:]: v for k, v in last_best.items() if k.startswith("eval_")},
        "final_mean_return": history[-1]["mean_return"],
        "first_mean_return": history[0]["mean_return"],
        "compile_seconds": history[0].get("compile_s"),
    }
    for key in extra_keys:
        metrics[f"first_{key}"], metrics[f"final_{key}"] = history[0][key], history[-1][key]
    return layers, metrics


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": _pyplatform.python_version()}
    for pkg in ("edgectl", "jax", "jaxlib", "numpy", "optax", "numba"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    commit = git_commit()
    if commit:
        out["edgectl_git_commit"] = commit
    return out


def git_commit() -> str | None:
    """The source tree's commit ("-dirty" with uncommitted changes), or None outside a git checkout: what
    made a bundle, so tests/data/regenerate.py's fixtures say which code trained them."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def save_bundle(result: TrainResult, out_dir, extra_files: dict | None = None, overwrite: bool = True,
                command: str | None = None):
    """Write a TrainResult as a verified policy bundle (edgectl.bundle does the checking); ``command``, the
    command line that trained it, is recorded in the manifest's versions beside the git commit."""
    from edgectl.bundle import write_bundle
    from train_fast.config import bundle_files

    weights, layers = {}, []
    for i, (w, b) in enumerate(result.actor_layers):
        weights[f"actor.{i}.weight"], weights[f"actor.{i}.bias"] = w, b
        layers.append({"weight": f"actor.{i}.weight", "bias": f"actor.{i}.bias"})
    policy = {"kind": "mlp", "activation": result.ppo.get("actor_activation", "tanh"), "output_activation": "clip",
              "layers": layers}
    metrics = dict(result.metrics, ppo=result.ppo, history=result.history)
    return write_bundle(out_dir, contract=result.contract, policy=policy, weights=weights,
                        platform_toml=result.platform_toml, platform_name=result.platform_name,
                        task=result.task, seed=result.seed, metrics=_json_safe(metrics),
                        versions=versions() | ({"command": command} if command else {}),
                        extra_files={**bundle_files(result), **result.extra_files, **(extra_files or {})},
                        overwrite=overwrite)


def _json_safe(x):
    """Bundles are strict JSON: inf/nan (a crashed evaluation) become null, tuples lists; anything else is left
    for write_bundle to refuse."""
    return json_value(x, other=None)

"""A sweep's trial (train a checked config, write its bundle, evaluate it on fresh episodes) and its results: the
table (CSV) and the plot of a metric against each swept value, seeds as error bars. `edgectl sweep` runs run_trial
as a Ray task (edgectl/cli/sweep.py); nothing here imports Ray, so a trial also runs in plain Python.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

from edgectl.tasks import DEFAULT_PLATFORM, task as registered
from train_fast.config import rows_csv

# Evaluation figures a trial reports (the first that a task has are in its row; see edgectl eval --json).
EVAL_KEYS = ("survival_rate", "final_error_median_m", "final_error_p95_m", "tracking_rmse_m", "success_rate",
             "collision_rate", "lap_time_s", "collisions_per_lap")


def run_trial(cfg: dict, out: str, episodes: int = 1000, eval_seed: int = 12345) -> dict:
    """Train `cfg` (train_fast.config.check's form) against its budget, counted from this call, write the bundle to
    `out` and evaluate it: the bundle's own figures and the trainer's, as one row of plain values."""
    t_start = time.time()
    from train_fast import train as tr
    from train_fast.config import trainer_kwargs

    t = cfg["train"]
    task = t["task"]
    entry = registered(task)
    kw = dict(platform_name=t.get("platform", DEFAULT_PLATFORM[entry.vehicle]), seed=t.get("seed", 0), t_start=t_start,
              seconds=t.get("seconds", 120.0 if t.get("robust") else 20.0), **trainer_kwargs(cfg))
    result = tr.train(task=task, robust=bool(t.get("robust", False)),
                      track=t.get("track", "oval") if "track" in entry.options else None, **kw)
    tr.save_bundle(result, out, overwrite=False, command=f"edgectl sweep (trial of {out})")
    to_bundle = time.time() - t_start
    from edgectl.bundle import load_bundle

    summary = entry.hook("eval_bundle")(load_bundle(out), episodes, eval_seed)
    m = result.metrics
    row = {"status": "ok", "seconds_to_bundle": to_bundle, "env_steps": m["env_steps"], "chunks": m["chunks"],
           "compile_s": m.get("compile_seconds"), "eval_s": time.time() - t_start - to_bundle}
    row.update({k: _plain(summary[k]) for k in EVAL_KEYS if k in summary})
    row.update({f"train_best_{k}": _plain(v) for k, v in m.get("best_eval", {}).items() if k in EVAL_KEYS})
    row["bundle"] = str(out)
    return row


def _plain(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def results_csv(rows: list[dict], keys: list[str]) -> bytes:
    """One row per trial, failed ones included (status, error)."""
    first = ["trial", *keys, "seed", "status"]
    cols = first + [c for c in dict.fromkeys(k for r in rows for k in r) if c not in first and c != "error"] + ["error"]
    return rows_csv(rows, cols)


def _stats(vals: list[float]) -> dict:
    if not vals:
        return {"mean": None, "std": None, "min": None, "max": None}
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(vals), "max": max(vals)}


def group_stats(rows: list[dict], keys: list[str], metric: str) -> list[dict]:
    """Per combination of swept values: trials ok and failed, the metric over seeds (mean, sample std, min, max)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(repr(r.get(k)) for k in keys), []).append(r)
    out = []
    for members in groups.values():
        ok = [r for r in members if r.get("status") == "ok"]
        vals = [r[metric] for r in ok if r.get(metric) is not None]
        steps = [r["env_steps"] for r in ok if r.get("env_steps") is not None]
        out.append({"values": {k: members[0].get(k) for k in keys}, "ok": len(ok), "failed": len(members) - len(ok),
                    **_stats(vals), "env_steps": _stats(steps)["mean"], "n": len(vals)})
    return out


def plot_results(rows: list[dict], keys: list[str], metric: str, path: str | Path, title: str = "") -> Path:
    """The metric against each swept value (mean over seeds, error bars one sample std, every seed a dot); with
    nothing swept, against the seed. Failed trials are counted in each panel's title."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes_keys = keys or ["seed"]
    fig, axs = plt.subplots(1, len(axes_keys), figsize=(5 * len(axes_keys), 3.6), squeeze=False)
    for ax, key in zip(axs[0], axes_keys):
        values = list(dict.fromkeys(repr(r.get(key)) for r in rows))
        labels = {repr(r.get(key)): str(r.get(key)) for r in rows}
        xs = range(len(values))
        ok = [r for r in rows if r.get("status") == "ok" and r.get(metric) is not None]
        for x, v in zip(xs, values):
            pts = [r[metric] for r in ok if repr(r.get(key)) == v]
            ax.plot([x] * len(pts), pts, ".", color="0.6", zorder=1)
            s = _stats(pts)
            if s["mean"] is not None and key != "seed":
                ax.errorbar([x], [s["mean"]], yerr=[s["std"]], fmt="o", color="C0", capsize=4, zorder=2)
        if key == "seed" and ok:
            s = _stats([r[metric] for r in ok])
            ax.axhline(s["mean"], color="C0", label=f"mean {s['mean']:.4g} +- {s['std']:.2g} (1 std)")
            ax.axhspan(s["mean"] - s["std"], s["mean"] + s["std"], color="C0", alpha=0.15)
            ax.legend(fontsize=8)
        failed = sum(r.get("status") != "ok" for r in rows)
        ax.set_xticks(list(xs), [labels[v] for v in values], rotation=30 if len(values) > 6 else 0)
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.set_title(f"{title}" + (f" ({failed} failed)" if failed else ""), fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)

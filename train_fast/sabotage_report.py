"""``edgectl eval BUNDLE --shield [--sabotage KIND]``: the sabotage demonstration as a report.

Flies the same episodes (same seed, same vehicles) twice, without and with the predictive shield,
prints a table and, with ``json_out``, one JSON object as the last stdout line. Imports JAX only
when called.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

from edgectl.fsutil import dumps_strict
from edgectl.tasks import task as registered

_ROWS = (
    ("violation_rate", "spec violations", "pct"),
    ("survival_rate", "survival (never past the task's bound)", "pct"),
    ("nominal_fraction", "ticks flown by the policy", "pct"),
    ("start_backup_fraction", "ticks on the backup from the start (until the prediction is safe)", "pct"),
    ("switches_to_backup", "switches policy -> backup after that (all episodes)", "int"),
    ("switches_per_episode_max", "most switches in one episode", "int"),
    ("episode_robustness_min", "worst episode robustness", "num"),
)


_SHARED = ("specs", "shield_margin", "shield_holdoff_s", "shield_horizon_s", "shield_samples", "start", "sabotage",
           "sabotage_description", "episodes", "eval_seed", "shield")


def _own(r: dict) -> dict:
    return {k: v for k, v in r.items() if k not in _SHARED}


def _fmt(v, kind: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{100 * v:.1f} %" if kind == "pct" else f"{v:d}" if kind == "int" else f"{v:.3f}"


def eval_shield_cli(bundle_path, episodes: int = 1000, seed: int = 12345, sabotage: str | None = None,
                    json_out: bool = False, specs: str = "demo") -> dict:
    """Returns {"bundle", "sabotage", "episodes", "eval_seed", "specs", ..., "without_shield": {...},
    "with_shield": {...}} (each as ``sabotage.evaluate_shielded`` reports). Raises BundleError for
    a bad bundle and ValueError for a bad sabotage kind, episode count or spec set (the CLI turns
    them into ``error:`` lines)."""
    from edgectl.bundle import load_bundle
    from train_fast.sabotage import SABOTAGES, evaluate_shielded

    if sabotage is not None and sabotage not in SABOTAGES:
        raise ValueError(f"--sabotage: unknown kind {sabotage!r}; choose one of {', '.join(SABOTAGES)}")
    if int(episodes) != episodes or episodes < 1:
        raise ValueError(f"--episodes: expected a positive integer, got {episodes!r}")
    b = load_bundle(Path(bundle_path))
    if b.contract["action"]["mapping"].get("kind") == "ctbr":
        raise ValueError(f"{b.path}: --shield predicts motor-level policies; this ctbr bundle flies through the autopilot's "
                         "rate loop: run edgectl eval without --shield")
    entry = registered(b.task_name)
    if not entry.motor_level or "reference" in entry.options:  # the shielded rollout holds a still reference
        raise ValueError(f"{b.path}: the shield demonstration flies the hover task, this bundle's task is {b.task_name!r}")
    t0 = time.time()
    runs = {}
    from rich.console import Console
    status = Console(stderr=True, highlight=False)  # progress on stderr: stdout stays the table (and the JSON line)
    for i, (key, shield) in enumerate((("without_shield", False), ("with_shield", True))):
        what = f"flying {episodes} episodes {'with' if shield else 'without'} the shield ({i + 1} of 2; compiling first)"
        with status.status(what):
            t1 = time.time()
            runs[key] = evaluate_shielded(b, episodes=episodes, seed=seed, sabotage=sabotage, shield=shield, specs=specs)
        status.print(f"{what.split(' (')[0]}: {time.time() - t1:.1f} s")
    first = runs["with_shield"]
    out = {"bundle": str(b.path.resolve()), "platform": b.platform_name, "sabotage": first["sabotage"],
           "sabotage_description": first["sabotage_description"], "episodes": episodes, "eval_seed": seed,
           "specs": first["specs"], "shield_margin": first["shield_margin"], "shield_holdoff_s": first["shield_holdoff_s"],
           "shield_horizon_s": first["shield_horizon_s"], "start": first["start"],
           "without_shield": _own(runs["without_shield"]), "with_shield": _own(first), "eval_seconds": time.time() - t0}
    _print_table(out)
    if json_out:
        sys.stdout.flush()
        print(dumps_strict(out, sanitize=True), flush=True)
    return out


def _print_table(out: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"edgectl eval --shield {out['bundle']}", title_justify="left")
    t.add_column("")
    t.add_column("without shield", justify="right")
    t.add_column("with shield", justify="right")
    for key, label, kind in _ROWS:
        t.add_row(label, _fmt(out["without_shield"].get(key), kind), _fmt(out["with_shield"].get(key), kind))
    con = Console(highlight=False)
    con.print(t)
    con.print(f"sabotage: {out['sabotage']} ({out['sabotage_description']})")
    con.print(f"specs (margin {', '.join(f'{m:g}' for m in out['shield_margin'])}, hold-off {out['shield_holdoff_s']:g} s, "
              f"horizon {out['shield_horizon_s']:g} s): " + "; ".join(out["specs"]))
    con.print(f"{out['episodes']} episodes, eval seed {out['eval_seed']}, start {out['start']}, "
              f"{out['eval_seconds']:.1f} s")
    w = out["with_shield"]
    if w.get("start_backup_fraction"):
        con.print(f"with the shield every episode starts on the backup (mid-air, observers cold) and hands to the "
                  f"policy once the prediction is safe: the policy flies {_fmt(w['nominal_fraction'], 'pct')} of the "
                  f"ticks, the backup {_fmt(w['start_backup_fraction'], 'pct')} from the start and "
                  f"{_fmt(max(0.0, 1.0 - w['nominal_fraction'] - w['start_backup_fraction']), 'pct')} after "
                  f"{w['switches_to_backup']} switch(es)")
    for ep in out["with_shield"].get("switch_log", [])[:1]:
        con.print(f"switch log, episode {ep['episode']}:")
        for e in ep["events"][:6]:
            con.print(f"  t={e['t']:.2f} s {e['direction']}: {e['reason']}")

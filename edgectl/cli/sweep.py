"""edgectl sweep (trainings and evaluations as Ray tasks), and what `edgectl train --config/--set` reads.

Configs are train_fast/config.py's; a trial is train_fast/sweep.py's run_trial (train, write the bundle, evaluate),
run as a Ray task: on this machine (`ray.init()`, one trial per core) or on a cluster (--address).
"""
from __future__ import annotations

import itertools
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Optional

import typer

from edgectl.cli.common import RUNS, _console, _fail, _print_json, app
from edgectl.tasks import task as registered_task, tasks as registered_tasks

# edgectl train's options -> the config field each stands for
TRAIN_OPTIONS = {"vehicle": "train.vehicle", "task": "train.task", "seconds": "train.seconds", "seed": "train.seed",
                 "platform": "train.platform", "robust": "train.robust", "track": "train.track",
                 "action": "task.action", "action_delay": "task.action_delay"}


def _explicit(name: str) -> bool:
    """Was the option given on the command line (not its default)?"""
    try:
        from typer._click.globals import get_current_context  # typer >= 0.26 carries its own click
    except ImportError:
        from click import get_current_context
    ctx = get_current_context(silent=True)
    if ctx is None:
        return True
    src = ctx.get_parameter_source(name)
    return src is not None and src.name not in ("DEFAULT", "DEFAULT_MAP")


class TrainConfig:
    """edgectl train's settings from --config FILE, --set KEY=VALUE and the options given (in that order)."""

    def __init__(self, cfg: dict, where: str):
        self.cfg, self.where = cfg, where

    def option(self, name: str, given):
        section, _, key = TRAIN_OPTIONS[name].partition(".")
        return self.cfg[section].get(key, given)

    def trainer_kwargs(self) -> dict:
        from train_fast.config import trainer_kwargs
        return {k: v for k, v in trainer_kwargs(self.cfg).items() if k != "task_overrides" and v is not None}

    def task_overrides(self, overrides: dict) -> dict:
        return {**self.cfg["task"], **overrides}

    def check_platform(self, plat) -> None:
        from train_fast.config import ConfigError, patch_platform
        try:
            patch_platform(plat, self.cfg["randomization"], where=self.where)
        except ConfigError as e:
            _fail(str(e))


def train_config(config: Optional[Path], sets: Optional[list[str]], options: dict) -> Optional[TrainConfig]:
    """None without --config and --set (edgectl train as before); else the checked config, exit 2 on bad input."""
    if config is None and not sets:
        return None
    from train_fast import config as tc

    where = str(config) if config is not None else "--set"
    try:  # each step checked where it comes from; the file's values as written, so a later vehicle picks its task
        raw = tc.read(config) if config is not None else {}
        for name in ("vehicle", "task"):  # first too: they choose the schema the file and each --set are checked in
            if options.get(name) is not None and _explicit(name):
                raw = tc.apply_set(raw, TRAIN_OPTIONS[name], options[name], f"--{name}")
        cfg = tc.check(raw, where)
        for text in sets or []:
            key, value = tc.parse_set(text)
            raw = tc.apply_set(raw, key, tc.parse_value(value), f"--set {text}")
            cfg = tc.check(raw, f"--set {text}")
        for name, value in options.items():
            if name in ("action", "action_delay") and name not in registered_task(cfg["train"]["task"]).options:
                continue  # not a field of the task: edgectl train refuses a non-default value itself
            if value is not None and _explicit(name):
                raw = tc.apply_set(raw, TRAIN_OPTIONS[name], value, f"--{name.replace('_', '-')}")
                cfg = tc.check(raw, f"--{name.replace('_', '-')} {value}")
    except tc.ConfigError as e:
        _fail(str(e))
    return TrainConfig(cfg, where)


def tensorboard_check(logdir: Optional[Path]) -> None:
    if logdir is None:
        return
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        _fail(f"--tensorboard {logdir}: the Python package tensorboard is not installed (pip install tensorboard); "
              "every chunk's metrics are in the bundle's metrics.csv without it")


def write_tensorboard(logdir: Optional[Path], out: Path, history: list, t_start: float) -> None:
    if logdir is not None:
        from train_fast.config import write_tensorboard as tb
        tb(Path(logdir) / Path(out).name, history, t_start)


# --- edgectl sweep ------------------------------------------------------------------------------------------------
def parse_seeds(text: str) -> list[int]:
    """0-9, 0,3,5 or 0-4,7 -> the seeds, in order, once each."""
    out: list[int] = []
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            rng = range(int(lo), int(hi) + 1) if dash else [int(lo)]
        except ValueError:
            raise ValueError(f"--seeds {text!r}: expected seeds like 0-9, 0,3,5 or 0-4,7") from None
        if not rng:
            raise ValueError(f"--seeds {text!r}: the range {part.strip()} is empty")
        out += [s for s in rng if s not in out]
    return out


DEFAULT_METRIC = {t.name: t.metric for t in registered_tasks()}  # the task registry's (edgectl/tasks.py)


@app.command("sweep")
def sweep_cmd(
    config: Path = typer.Argument(..., help="Training config (TOML, as edgectl train --config takes; a bundle folder: "
                                  "its config.toml)."),
    seeds: str = typer.Option("0", "--seeds", help="Training seeds: 0-9, 0,3,5 or 0-4,7."),
    sets: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=V1,V2,...", help="A config field and the "
                                             "values to sweep (e.g. ppo.lr=1e-3,2e-3 or task.w_position=10,20); "
                                             "repeatable: every combination, for every seed."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster to run on (e.g. ray://head:10001 or "
                                          "auto); edgectl\\[train,sweep] must be installed on its nodes.",
                                          show_default="a local Ray on this machine, one trial per core"),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for the trial bundles, results.csv and results.png.",
                                       show_default="runs/sweep-<time>"),
    metric: Optional[str] = typer.Option(None, "--metric", help="Evaluation metric to plot and summarize.",
                                         show_default="survival_rate (hover), tracking_rmse_m (figure8), "
                                         "success_rate (avoid), lap_time_s (race)"),
    episodes: int = typer.Option(1000, "--episodes", min=1, help="Evaluation episodes per trial (race: 3 laps)."),
    cpus_per_trial: float = typer.Option(1.0, "--cpus-per-trial", min=0.01, help="CPUs Ray reserves per trial."),
    json_out: bool = typer.Option(False, "--json", help="Make the last stdout line a JSON summary."),
) -> None:
    """Train and evaluate a config over seeds and swept values as Ray tasks; a table, results.csv and a plot.

    A trial that fails is a row of the table with its error, and the command exits 1. Needs Ray: pip install
    "edgectl\\[sweep]"."""
    from train_fast import config as tc

    try:
        seed_list = parse_seeds(seeds)
    except ValueError as e:
        _fail(str(e))
    try:
        raw = tc.read(config)
        base = tc.check(raw, str(config))
        axes: list[tuple[str, list]] = []
        for text in sets or []:
            key, values = tc.parse_set(text)
            key = tc.qualify(key, f"--set {text}")
            axes.append((key, [tc.parse_value(v) for v in tc.split_values(values)]))
        trials = []
        for combo in itertools.product(*(vals for _, vals in axes)):
            cfg = raw
            for (key, _), v in zip(axes, combo):
                cfg = tc.apply_set(cfg, key, v, f"--set {key}={v}")
            for s in seed_list:
                swept = dict(zip((k for k, _ in axes), combo))
                where = f"{config} with --set {_label(swept)}" if swept else str(config)
                trials.append((swept, tc.check(tc.apply_set(cfg, "train.seed", s, "--seeds"), where)))
        distinct = {json.dumps([c["train"].get("platform"), c["randomization"]], sort_keys=True): c for _, c in trials}
        for c in distinct.values():  # a platform that does not load is bad input, not a failed trial
            tc.check_platform(c, str(config))
    except tc.ConfigError as e:
        _fail(str(e))
    task = base["train"]["task"]
    metric = metric or DEFAULT_METRIC[task]
    out = out or RUNS / f"sweep-{task}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    if out.exists():
        _fail(f"--out {out}: already exists; choose another folder")

    import ray  # the sweep extra; a missing one is an error: line naming it (edgectl.cli.common.EXTRAS)

    from train_fast.sweep import plot_results, results_csv, run_trial

    console = _console()
    t0 = time.time()
    ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        res = ray.cluster_resources()
        console.print(f"ray: {len(trials)} trials on {res.get('CPU', 0):g} CPUs "
                      f"({'cluster ' + address if address else 'this machine'}), {cpus_per_trial:g} CPU each")
        task_fn = ray.remote(num_cpus=cpus_per_trial, max_retries=0)(run_trial)
        out.mkdir(parents=True)
        pending = {}
        for i, (swept, cfg) in enumerate(trials):
            name = f"trial{i:03d}-" + (_label(swept, sep="-") + "-" if swept else "") + f"seed{cfg['train']['seed']}"
            pending[task_fn.remote(cfg, str((out / name).resolve()), episodes)] = (i, swept, cfg, name)
        rows = []
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            i, swept, cfg, name = pending.pop(done[0])
            row = {"trial": i, **swept, "seed": cfg["train"]["seed"]}
            try:
                row.update(ray.get(done[0]))
            except Exception as e:  # noqa: BLE001  a failed trial is a row of the table, never dropped
                row.update(status="failed", error=" ".join(str(getattr(e, "cause", None) or e).split())[-300:])
            rows.append(row)
            console.print(f"[{len(rows)}/{len(trials)}] {name}: {row.get('status')}  "
                          + (f"{metric} {row.get(metric)}  env steps {row.get('env_steps', 0):,.0f}"
                             if row.get("status") == "ok" else row.get("error", "")), soft_wrap=True)
    finally:
        ray.shutdown()
    wall = time.time() - t0
    rows.sort(key=lambda r: r["trial"])
    keys = [k for k, _ in axes]
    (out / "results.csv").write_bytes(results_csv(rows, keys))
    plot_results(rows, keys, metric, out / "results.png", title=f"{task}: {metric} over seeds {seeds}")
    (out / "sweep.json").write_text(json.dumps({"config": str(config), "seeds": seed_list, "sets": sets or [],
                                                "address": address, "wall_s": wall}, indent=1) + "\n")
    failed = [r for r in rows if r.get("status") != "ok"]
    _print_summary(console, rows, keys, metric, wall, out)
    if json_out:
        _print_json({"out": str(out), "trials": len(rows), "failed": len(failed), "wall_s": wall, "metric": metric,
                     "rows": rows})
    if failed:
        raise typer.Exit(1)


def _label(swept: dict, sep: str = " ") -> str:
    """k=v pairs; with sep "-" a file-name-safe form."""
    text = sep.join(f"{k}={v}" for k, v in swept.items())
    return text if sep != "-" else "".join(c if c.isalnum() or c in "=.-_" else "_" for c in text)


def _print_summary(console, rows: list[dict], keys: list[str], metric: str, wall: float, out: Path) -> None:
    from rich.table import Table

    from train_fast.sweep import group_stats

    t = Table(title=f"edgectl sweep: {len(rows)} trials in {wall:.1f} s", title_justify="left")
    for k in keys:
        t.add_column(k)
    for col in ("trials ok", "failed", f"{metric} mean", "std", "min", "max", "env steps mean"):
        t.add_column(col, justify="right")
    for g in group_stats(rows, keys, metric):
        fmt = (lambda v: "n/a" if v is None else f"{v:.4g}")  # noqa: E731
        t.add_row(*(str(g["values"][k]) for k in keys), str(g["ok"]), str(g["failed"]), fmt(g["mean"]),
                  fmt(g["std"]), fmt(g["min"]), fmt(g["max"]), fmt(g["env_steps"]))
    console.print(t)
    for r in rows:
        if r.get("status") != "ok":
            console.print(f"[red]failed:[/] trial {r['trial']} (seed {r['seed']}): {r.get('error')}", soft_wrap=True)
    console.print(f"results: {out / 'results.csv'}, plot: {out / 'results.png'}", soft_wrap=True)

"""edgectl train (and warmup): a policy against a time budget, written as a verified bundle."""
from __future__ import annotations

import math
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import typer

from edgectl.cli.common import (CURVE_FILE, DEFAULT_PLATFORM, DEFAULT_TRACK, LATEST_LINK, PLATFORM_KIND, RUNS, VEHICLES,
                                app, _check_out, choice, _console, _default_out, _fail, _fmt_m, _fmt_pct, _fmt_s,
                                _fmt_steps, _print_json, process_start_time, _start_thread, update_latest,
                                _warm_up_plots)


from edgectl.tasks import task as registered, tasks as registered_tasks  # noqa: E402

TASKS = tuple(t.name for t in registered_tasks())  # hover, figure8, avoid, race
ACTIONS = ("motor", "ctbr")  # quadrotor hover/figure8: what the policy commands


@app.command()
def train(
    vehicle: Optional[str] = typer.Argument(None, metavar="|".join(VEHICLES), help=f"Vehicle kind: {', '.join(VEHICLES)}.",
                                            show_default="train.vehicle of --config"),
    task: Optional[str] = typer.Option(None, "--task", metavar=choice(*TASKS), help="Task: hover | figure8 | avoid (quadrotor, avoid: vision, CAD2RL-style), race (rc-car).",
                                       show_default="hover (quadrotor), race (rc-car)"),
    seconds: Optional[float] = typer.Option(None, "--seconds", help="Wall-clock budget in seconds, from process start "
                                            "(start-up, JIT compilation and writing the bundle included).",
                                            show_default="20, 120 with --robust"),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    out: Optional[Path] = typer.Option(None, "--out", help="Bundle directory to write.",
                                       show_default="runs/<vehicle>-<task>-seed<N>-<time>"),
    robust: bool = typer.Option(False, "--robust", help="quadrotor hover/figure8: the preset for a policy that must "
                                "survive what the platform file does not know: a 120 s budget, and checkpoints chosen "
                                "on vehicles drawn from the platform's randomization ranges (edgectl eval --perturb) "
                                "instead of its nominal vehicle. Both train across the full ranges."),
    platform: Optional[str] = typer.Option(None, "--platform", help="Platform name (hardware/<name>.toml) or "
                                           "path to a platform file.", show_default=DEFAULT_PLATFORM["quadrotor"]),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out if it is an existing bundle."),
    json_out: bool = typer.Option(False, "--json", help="Make the last stdout line a JSON summary "
                                  "(bundle, seconds_to_bundle, env_steps, best_eval)."),
    track: Optional[str] = typer.Option(None, "--track", help="rc-car: the course, a demonstration-lap CSV "
                                        "(hardware/tracks/<name>.csv by name, or a path).", show_default=DEFAULT_TRACK),
    action_delay: float = typer.Option(0.0, "--action-delay", help="quadrotor hover/figure8: train with an actuation "
                                       "delay drawn per episode up to at least this fraction of a control period (0-1); "
                                       "the platform's randomization.action_delay already draws 0-1 period (a host link "
                                       "such as MAVLink: 1-7 ms at 100 Hz)."),
    action: str = typer.Option("motor", "--action", metavar=choice(*ACTIONS), help="quadrotor hover/figure8: motor (four normalized motor "
                               "commands) or ctbr (collective thrust + body rates, flown through the platform's "
                               "[rate_controller] loop: what PX4 offboard and ArduPilot GUIDED_NOGPS accept over MAVLink)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Training config (TOML: sections train, task, "
                                          "randomization, ppo; a bundle's config.toml trains that run again). "
                                          "Options given beside it win."),
    sets: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="Set one config field, e.g. "
                                             "ppo.lr=1e-3, task.w_position=10, randomization.mass=\\[0.8,1.2], "
                                             "train.max_env_steps=2000000 (repeatable; after --config)."),
    tensorboard: Optional[Path] = typer.Option(None, "--tensorboard", help="Also write every chunk's metrics as "
                                               "TensorBoard scalars under DIR/<bundle name> (needs tensorboard; "
                                               "the bundle's metrics.csv has them either way)."),
    for_target: Optional[str] = typer.Option(None, "--for", metavar="px4", help="quadrotor hover on a PX4 platform: "
                                             "a policy PX4's mc_nn_control runs on the flight controller (edgectl "
                                             "export --target px4): ReLU layers, no previous actions, no integral, no "
                                             "weight on the rotation matrix's third row."),
) -> None:
    """Train a policy against a time budget and write a verified bundle (then: edgectl eval)."""
    t_start = process_start_time()
    from edgectl.cli.sweep import tensorboard_check, train_config, write_tensorboard

    tensorboard_check(tensorboard)
    run_cfg = train_config(config, sets, dict(vehicle=vehicle, task=task, seconds=seconds, seed=seed, platform=platform,
                                              robust=robust, track=track, action=action, action_delay=action_delay))
    if run_cfg is not None:
        vehicle, task, seconds, seed, platform, robust, track, action, action_delay = (run_cfg.option(k, v) for k, v in (
            ("vehicle", vehicle), ("task", task), ("seconds", seconds), ("seed", seed), ("platform", platform),
            ("robust", robust), ("track", track), ("action", action), ("action_delay", action_delay)))
    if vehicle is None:
        _fail("missing the vehicle: edgectl train quadrotor|rc-car, or --config FILE")
    if vehicle not in VEHICLES:
        _fail(f"unknown vehicle {vehicle!r}; supported vehicles: {', '.join(VEHICLES)}")
    task = task or VEHICLES[vehicle][0]
    if task not in VEHICLES[vehicle]:
        _fail(f"unknown task {task!r} for {vehicle}; supported tasks: {', '.join(VEHICLES[vehicle])}")
    entry = registered(task)
    if robust and "robust" not in entry.options:
        _fail(f"--robust applies to {_tasks_with('robust')}, not to {vehicle} {task}")
    seconds = seconds if seconds is not None else (120.0 if robust else 20.0)
    if track is not None and "track" not in entry.options:
        _fail(f"--track applies to {_tasks_with('track')}, not to {vehicle} {task}")
    if not (seconds > 0 and math.isfinite(seconds)):
        _fail(f"--seconds must be a positive number, got {seconds}")
    if action_delay and "action_delay" not in entry.options:
        _fail(f"--action-delay applies to {_tasks_with('action_delay')}, not to {vehicle} {task}")
    if action not in ACTIONS:
        _fail(f"--action {action!r}: expected motor or ctbr")
    if action == "ctbr" and "action" not in entry.options:
        _fail(f"--action ctbr applies to {_tasks_with('action')}, not to {vehicle} {task}")
    if for_target is not None and "for" not in entry.options:
        _fail(f"--for applies to {_tasks_with('for')}, not to {vehicle} {task}")
    if not (0.0 <= action_delay <= 1.0):
        _fail(f"--action-delay must be between 0 and 1 control period, got {action_delay}")
    from edgectl.platforms import PlatformError, load_platform

    platform = platform or DEFAULT_PLATFORM[vehicle]
    try:
        plat = load_platform(platform)
    except PlatformError as e:
        _fail(str(e))
    if plat.kind != PLATFORM_KIND.get(vehicle, vehicle):
        _fail(f"platform {plat.name!r} ({plat.path}) is a {plat.kind}, not a {vehicle}")
    if run_cfg is not None:
        run_cfg.check_platform(plat)
    if action == "ctbr" and "rate_controller.firmware" not in plat.values:
        _fail(f"--action ctbr: platform {plat.name!r} ({plat.path}) has no [rate_controller] section naming the autopilot "
              "whose rate loop flies the policy (firmware = crazyflie | px4 | ardupilot, max_rate)")
    if "track" in entry.options:
        from train_fast.tasks.car_tasks import TrackError, load_track

        try:
            track = str(load_track(track or DEFAULT_TRACK).path)
        except TrackError as e:
            _fail(str(e))
    if for_target is not None:
        from train_fast.tasks.training import for_target as check_for

        try:
            check_for(plat, task, for_target, {"action": action})
        except ValueError as e:
            _fail(str(e))
    default_out = out is None
    if out is None:
        out = _default_out(vehicle, task + ("-ctbr" if action == "ctbr" else "") + (f"-{for_target}" if for_target else ""),
                           seed)
    _check_out(out, overwrite)

    console = _console()
    if seconds < 10:
        console.print(f"[yellow]note:[/] --seconds {seconds:g} is short: start-up and JIT compilation alone "
                      "take about 5-10 s of it, so expect little training")
    overrides = ({"action_delay": action_delay} if action_delay else {}) | ({"action": action} if action != "motor" else {})
    if run_cfg is not None:
        overrides = run_cfg.task_overrides(overrides)
    tk = run_cfg.trainer_kwargs() if run_cfg is not None else {}
    target = for_target or tk.pop("target", None)  # --for, or a config's [train] for = "px4"
    result, written, latest = _run_training(console, plat, task, seconds, seed, out, overwrite, t_start, track=track,
                                            task_overrides=overrides or None, robust=robust, default_out=default_out,
                                            trainer_kwargs=tk, target=target)
    write_tensorboard(tensorboard, out, result.history, t_start)
    _print_train_summary(console, result, out, latest, seconds, written - t_start, json_out)


def _tasks_with(option: str) -> str:
    """'quadrotor hover and figure8': the registered tasks an option applies to, for an error message."""
    out = []
    for v in VEHICLES:
        names = [t.name for t in registered_tasks(v) if option in t.options]
        if names:
            out.append(f"{v} " + (" and ".join(names) if len(names) < 3 else ", ".join(names)))
    return "; ".join(out)


def failed_evaluation(best: dict, task: str) -> str | None:
    """Why the best checkpoint's own evaluation says the bundle does not fly (None: it does). The line is where
    the evaluation's own median stops being defined (each task's Goal in edgectl/tasks.py): half the episodes
    lost (hover, figure8), half the obstacle fields not crossed (avoid), no lap finished (race)."""
    return registered(task).fails(best)


def _run_training(console, plat, task: str, seconds: float, seed: int, out: Path, overwrite: bool, t_start: float,
                  track: Optional[str] = None, task_overrides: Optional[dict] = None, robust: bool = False,
                  default_out: bool = True, trainer_kwargs: Optional[dict] = None, target: Optional[str] = None):
    from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, TextColumn
    from rich.text import Text

    budget = seconds

    class _Clock(ProgressColumn):
        def render(self, task_):
            return Text(f"{time.time() - t_start:5.1f}/{budget:g} s")

    class _BudgetProgress(Progress):
        # The bar is the budget: its fill is recomputed from the clock at every refresh, so it
        # moves while a chunk (or the JIT compilation) runs, not only at the progress callbacks.
        def get_renderables(self):
            el = time.time() - t_start
            for tk in self.tasks:
                tk.completed = min(max(el, 0.0), tk.total or 0.0)
            yield from super().get_renderables()

    warm: list[threading.Thread] = []

    def on_chunk(entry: dict) -> None:
        if not warm:  # JIT compilation is over; import matplotlib beside the training from here on
            warm.append(_start_thread(_warm_up_plots))
        if "eval_success_rate" in entry:  # avoid: obstacle fields crossed
            stats = (f"{_fmt_steps(entry['env_steps'])} steps  return {entry['mean_return'] or 0.0:6.2f}  "
                     f"crossed {_fmt_pct(entry['eval_success_rate'])}  collisions {_fmt_pct(entry['eval_collision_rate'])}"
                     + ("  *" if entry.get("best") else ""))
            progress.update(tid, description=f"training (chunk {entry['chunk']})", stats=stats)
            return
        if "eval_lap_time_s" in entry:  # race: lap time from a standing start, collisions
            stats = (f"{_fmt_steps(entry['env_steps'])} steps  reward/step {entry['mean_reward']:5.2f}  "
                     f"lap {_fmt_s(entry['eval_lap_time_s'])}  collisions {entry['eval_collisions']}"
                     + ("  *" if entry.get("best") else ""))
            progress.update(tid, description=f"training (chunk {entry['chunk']})", stats=stats)
            return
        err = entry.get("eval_tracking_rmse_m", entry.get("eval_final_error_median_m"))
        err_name = "rmse" if "eval_tracking_rmse_m" in entry else "median err"
        stats = (f"{_fmt_steps(entry['env_steps'])} steps  return {entry['mean_return']:7.1f}  "
                 f"survival {_fmt_pct(entry.get('eval_survival_rate'))}  {err_name} {_fmt_m(err)}"
                 + ("  *" if entry.get("best") else ""))
        progress.update(tid, description=f"training (chunk {entry['chunk']})", stats=stats)

    from train_fast.train import save_bundle, train

    with _BudgetProgress(SpinnerColumn(), TextColumn("{task.description:<20}"), BarColumn(bar_width=24), _Clock(),
                         TextColumn("{task.fields[stats]}"), console=console, transient=False,
                         refresh_per_second=8) as progress:
        tid = progress.add_task("compiling (JIT)", total=budget, stats="")
        result = train(platform_name=str(plat.path), task=task, seconds=seconds, seed=seed, t_start=t_start,
                       progress=on_chunk, task_overrides=task_overrides, robust=robust, track=track,
                       target=target, **(trainer_kwargs or {}))
        trained = time.time()
        progress.update(tid, description="writing bundle")
        if warm:
            warm[0].join()
        detail = (f" on {Path(track).stem}" if track else "") + \
            (f" ({result.task['image']} camera)" if "image" in result.task else "")
        curve = registered(task).hook("curve")(result.history, title=f"{plat.name} {task}{detail}, seed {seed}",
                                               budget_s=seconds)
        from edgectl.bundle import BundleError

        try:
            import shlex
            save_bundle(result, out, extra_files={CURVE_FILE: curve}, overwrite=overwrite,
                        command=shlex.join(["edgectl", *sys.argv[1:]]))
        except (BundleError, OSError) as e:
            progress.stop()
            _fail(f"could not write the bundle: {e}", code=1)
        written = time.time()
        result.metrics["post_train_s"] = written - trained  # curve + bundle (the manifest is already written)
        progress.update(tid, description="done")
    latest, why_not = move_latest(out, default_out, result.metrics.get("best_eval", {}), task)
    if why_not is not None:
        result.metrics["latest_not_moved"] = why_not
    return result, written, latest


def move_latest(out: Path, default_out: bool, best: dict, task: str) -> tuple[Optional[Path], Optional[str]]:
    """runs/latest is what `edgectl eval/export/run` take without a BUNDLE: it moves only to a bundle written to the
    default place that passed its own evaluation. Returns (what was written, None) or (None, why it did not move)."""
    failed = failed_evaluation(best, task)
    if not default_out:
        return None, "--out was given"
    if failed is not None:
        return None, f"the bundle failed its own evaluation ({failed})"
    try:
        return update_latest(out), None
    except OSError as e:
        return None, f"could not update it ({e})"


def _print_train_summary(console, result, out: Path, latest, seconds: float, to_bundle: float, json_out: bool) -> None:
    from rich.table import Table

    m = result.metrics
    best = m.get("best_eval", {})
    over = to_bundle > seconds
    t = Table(title="edgectl train", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    t.add_row("task", f"{result.task.get('name')} on {result.platform_name}, seed {result.seed}")
    t.add_row("process start -> bundle", f"{to_bundle:.2f} s of {seconds:g} s" + ("  [red](over budget)[/]" if over else "")
              + f"  (curve + bundle {m['post_train_s']:.2f} s)")
    t.add_row("env steps", f"{m['env_steps']:,.0f} in {m['chunks']} chunks (best: chunk {m['best_chunk']})")
    comp = m.get("compile_seconds")
    if comp is not None:
        t.add_row("JIT compilation", f"{comp:.1f} s of the budget")
    if "success_rate" in best:  # avoid: obstacle fields crossed
        t.add_row("mean return", f"{m['first_mean_return'] or 0.0:.1f} -> {m['final_mean_return'] or 0.0:.1f}")
        t.add_row("best eval", f"{_fmt_pct(best.get('success_rate'))} of {best.get('episodes')} fields crossed, "
                  f"{_fmt_pct(best.get('collision_rate'))} collisions (training-time scenes; edgectl eval uses unseen ones)")
    elif "track" in result.task:  # race: laps
        t.add_row("track", str(result.task.get("track")))
        t.add_row("mean reward per step", f"{m['first_mean_reward']:.2f} -> {m['final_mean_reward']:.2f}")
        t.add_row("best eval lap time", f"{_fmt_s(best.get('lap_time_s'))} ({best.get('laps_completed')} of "
                  f"{best.get('laps')} laps from a standing start, {best.get('collisions')} collisions)")
    else:
        t.add_row("mean return", f"{m['first_mean_return']:.1f} -> {m['final_mean_return']:.1f}")
        n = best.get("episodes")
        t.add_row("best eval survival", _fmt_pct(best.get("survival_rate")) + (f" of {n} episodes" if n else ""))
        t.add_row("best eval final error", f"median {_fmt_m(best.get('final_error_median_m'))}, "
                  f"p95 {_fmt_m(best.get('final_error_p95_m'))}")
        if "tracking_rmse_m" in best:
            t.add_row("best eval tracking RMSE", _fmt_m(best.get("tracking_rmse_m")))
    t.add_row("bundle", str(out))
    console.print(t)
    why_not = m.get("latest_not_moved")
    if why_not is not None:
        link = RUNS / LATEST_LINK
        now = f"it still points at {link.resolve()}" if (link.is_symlink() or link.exists()) else "there is none yet"
        console.print(f"[yellow]note:[/] {link} not moved: {why_not}; {now}", soft_wrap=True)
    cmd = "edgectl eval" if latest is not None and Path(latest).name == LATEST_LINK else f"edgectl eval {out}"
    console.print(f"next: [bold]{cmd}[/]", soft_wrap=True)
    # a warm cache still traces and lowers the programs: 3-4.3 s on a loaded 2-core machine; a cold one compiles for 45 s
    if comp is not None and comp > max(6.0, 0.2 * seconds):
        console.print(f"[yellow]note:[/] JIT compilation took {comp:.1f} s of the {seconds:g} s budget: the compiled "
                      "programs were not in the cache (first run on this machine, or another jax version). They are "
                      f"cached now; `edgectl warmup` compiles them ahead for every task", soft_wrap=True)
    if json_out:
        summary = {"bundle": str(out), "seconds": seconds, "seconds_to_bundle": to_bundle,
                   "post_train_s": m["post_train_s"],
                   "env_steps": m["env_steps"], "chunks": m["chunks"], "compile_seconds": comp, "best_eval": best,
                   "task": result.task.get("name"), "platform": result.platform_name, "seed": result.seed,
                   "latest_moved": latest is not None, "latest_not_moved": why_not}
        if "track" in result.task:
            summary["track"] = result.task.get("track")
        _print_json(summary)


@app.command("warmup")
def warmup_cmd(
    vehicle: Optional[str] = typer.Argument(None, metavar="|".join(VEHICLES), help="quadrotor or rc-car; default: both."),
    task: Optional[str] = typer.Option(None, "--task", metavar=choice(*TASKS), help="One task (hover, figure8, avoid, race); default: every "
                                       "task of the vehicle except avoid (its 300 s budget absorbs its compile)."),
    action: Optional[str] = typer.Option(None, "--action", metavar=choice(*ACTIONS), help="quadrotor hover/figure8: motor or ctbr; default: both."),
) -> None:
    """Compile the training programs into the persistent cache once, so `edgectl train` spends its budget training.

    On a fresh machine `edgectl train quadrotor --seconds 20` would otherwise spend about 13 s of its 20 compiling.
    The cache is keyed by the exact program and jax version: run this again after upgrading jax."""
    from train_fast import train as tr

    vehicles = [vehicle] if vehicle else list(VEHICLES)
    for v in vehicles:
        if v not in VEHICLES:
            _fail(f"unknown vehicle {v!r}; supported vehicles: {', '.join(VEHICLES)}")
    jobs = []
    for v in vehicles:
        names = [task] if task else [t.name for t in registered_tasks(v) if t.warm_by_default]
        for t in names:
            if t not in VEHICLES[v]:
                _fail(f"unknown task {t!r} for {v}; supported tasks: {', '.join(VEHICLES[v])}")
            for a in ([action] if action else list(ACTIONS)) if "action" in registered(t).options else ["motor"]:
                if a not in ACTIONS:
                    _fail(f"--action {a!r}: expected motor or ctbr")
                jobs.append((v, t, a))
    console = _console()
    total = 0.0
    for v, t, a in jobs:
        from edgectl.platforms import load_platform
        plat = load_platform(DEFAULT_PLATFORM[v])
        label = f"{v} {t}" + (" --action ctbr" if a == "ctbr" else "")
        with console.status(f"compiling {label} (cache: {tr._CACHE})"):
            t0 = time.time()
            # One chunk: compiles init, the training chunk and the checkpoint evaluation, as `edgectl train` does.
            res = tr.train(platform_name=str(plat.path), task=t, seconds=600.0, max_env_steps=1,
                           task_overrides={"action": a} if a != "motor" else None,
                           track=DEFAULT_TRACK if "track" in registered(t).options else None)
        took = time.time() - t0
        total += took
        console.print(f"{label}: compiled in {res.metrics.get('compile_seconds') or 0.0:.1f} s ({took:.1f} s in all)")
    console.print(f"done in {total:.1f} s; cache: {tr._CACHE}")

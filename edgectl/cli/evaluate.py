"""edgectl eval: a bundle in closed loop in the simulator (hover/figure8, avoid, race)."""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Optional

import typer

from types import SimpleNamespace

from edgectl.cli.common import (RECORD_EPISODES, VEHICLES, app, choice, quadrotor_platform, _console, _fail, _fmt_m, _fmt_pct, _fmt_s, latest_bundle,
                                _print_json)


from edgectl.tasks import task as registered  # noqa: E402

VEHICLE_TASKS = tuple(t for ts in VEHICLES.values() for t in ts)
SABOTAGES = ("weak-motor", "noise", "undertrained")  # checked against train_fast.sabotage.SABOTAGES by the tests


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


@app.command("eval")
def eval_cmd(
    bundle: Optional[Path] = typer.Argument(None, help="Bundle directory.", show_default="runs/latest"),
    episodes: int = typer.Option(1000, "--episodes", min=1, help="Evaluation episodes (domain-randomized)."),
    seed: int = typer.Option(12345, "--seed", help="Evaluation seed (differs from training's)."),
    json_out: bool = typer.Option(False, "--json", help="Make the last stdout line one JSON object: episodes, "
                                  "survival_rate, final_error_median_m, final_error_p95_m (null: more than 5% "
                                  "of episodes crashed), tracking_rmse_m (figure8), ..."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Trajectory PNG to write (not inside the bundle).",
                                        show_default="<bundle>.eval.png beside it"),
    laps: int = typer.Option(3, "--laps", min=1, help="rc-car: laps from a standing start (reports lap_time_s, "
                             "baseline_lap_time_s of tuned pure pursuit, collisions_per_lap)."),
    shield: bool = typer.Option(False, "--shield", help="quadrotor: fly the episodes twice, without and with the "
                                "predictive STL shield (backup controller on a predicted spec violation); report "
                                "violations, survival, policy-in-control fraction and switches."),
    sabotage: Optional[str] = typer.Option(None, "--sabotage", metavar=choice(*SABOTAGES), help="With --shield: make the policy bad on purpose: "
                                           "weak-motor | noise | undertrained."),
    platform: Optional[str] = typer.Option(None, "--platform", help="quadrotor hover/figure8: fly the bundle on "
                                           "another platform file (name or .toml path) than it was trained on, "
                                           "e.g. crazyflie_2_1_flow or crazyflie_2_1_brushless."),
    perturb: bool = typer.Option(False, "--perturb", help="quadrotor hover/figure8: draw every episode's mass, "
                                 "inertia, thrust curve, yaw torque, motor lag, drag, actuation delay and gyro bias "
                                 "from the platform's [randomization] ranges (default: its nominal vehicle)."),
) -> None:
    """Evaluate a bundle in closed loop in the simulator: the platform's nominal vehicle with random starts,
    disturbances and sensor noise, or with --perturb every episode a vehicle drawn from its randomization ranges.

    Final error = mean |p - p_ref| over an episode's last second; a crashed episode counts as infinite, so a median (p95) is reported as null / n/a when more than 50% (5%) of episodes crashed.
    """
    from edgectl.bundle import BundleError, load_bundle

    path = latest_bundle() if bundle is None else bundle
    if sabotage is not None and not shield:
        _fail("--sabotage needs --shield")
    if shield:
        try:
            shield_task = load_bundle(path).task_name
        except BundleError:
            shield_task = None  # eval_shield_cli reports the bad bundle itself
        entry = registered(shield_task) if shield_task in VEHICLE_TASKS else None
        if entry is not None and not entry.motor_level:
            _fail(f"--shield applies to motor-level quadrotor policies (hover, figure8); {_a(shield_task)} bundle commands "
                  f"{entry.commands}: run edgectl eval without --shield")
        from train_fast.sabotage_report import eval_shield_cli
        try:
            eval_shield_cli(path, episodes=episodes, seed=seed, sabotage=sabotage, json_out=json_out)
        except ValueError as e:  # BundleError is a ValueError
            _fail(str(e))
        return
    try:
        b = load_bundle(path)
    except BundleError as e:
        _fail(str(e))
    root = b.path.resolve()
    plot_path = plot if plot is not None else root.parent / f"{root.name}.eval.png"
    if root in plot_path.resolve().parents:
        _fail(f"--plot {plot_path}: inside the bundle directory, whose files are hashed; write it elsewhere")
    name = b.manifest["task"].get("name")
    if name not in VEHICLE_TASKS:
        _fail(f"{path}: bundle task {name!r} is not a registered task ({', '.join(VEHICLE_TASKS)})")
    entry = registered(name)
    if (platform is not None or perturb) and "perturb" not in entry.options:
        _fail(f"--platform/--perturb fly motor-level quadrotor bundles (hover, figure8); {path} is a "
              f"{b.manifest['task'].get('name')!r} bundle")
    plat = quadrotor_platform(platform) if platform is not None else None
    entry.hook("evaluate")(b, SimpleNamespace(root=root, plot_path=plot_path, episodes=episodes, laps=laps, seed=seed,
                                              json_out=json_out, plat=plat, perturb=perturb))


def eval_race(b, o) -> None:
    _eval_race(b, o.root, o.plot_path, o.laps, o.seed, o.json_out)


def eval_avoid(b, o) -> None:
    _eval_avoid(b, o.root, o.plot_path, o.episodes, o.seed, o.json_out)


def eval_quadrotor(b, o) -> None:
    """`edgectl eval` of a hover/figure8 bundle: random starts on the nominal (or a perturbed, or another) vehicle."""
    root, plot_path, episodes, seed, json_out, plat, perturb = (o.root, o.plot_path, o.episodes, o.seed, o.json_out,
                                                                o.plat, o.perturb)
    console = _console()
    t0 = time.time()
    from train_fast.evaluate import FACTOR_LABELS, evaluate_bundle
    from train_fast.train import _setup_jax

    _setup_jax()  # the persistent compilation cache: a second eval of the same task skips most of the compile
    try:
        with console.status(f"evaluating {episodes} episodes (compiling first)..."):
            summary, rec = evaluate_bundle(b, episodes=episodes, seed=seed, record=min(RECORD_EPISODES, episodes),
                                           platform=plat, perturb=perturb)
    except ValueError as e:  # the bundle's task does not rebuild (e.g. an observation size mismatch)
        _fail(str(e))
    eval_s = time.time() - t0
    flown_on = (plat.name if plat is not None else b.platform_name) + (" (perturbed)" if perturb else " (nominal)")

    from edgectl import plots

    title = f"{root.name}: {summary['task']} on {flown_on}, eval seed {seed}"
    plots.eval_trajectories_png(rec, plot_path, title=title,
                                termination_bound=b.manifest["task"].get("termination_bound"),
                                hover_action=b.contract["action"].get("hover_action"))

    from rich.table import Table

    t = Table(title=f"edgectl eval {root}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    t.add_row("task", f"{summary['task']} on {flown_on} (bundle seed {b.seed}, trained on {b.platform_name})")
    t.add_row("episodes", f"{summary['episodes']} x {summary.get('episode_seconds', '?')} s, eval seed {seed}")
    t.add_row("survival", _fmt_pct(summary["survival_rate"]))
    t.add_row("final error median", _fmt_m(summary["final_error_median_m"]) + _na_reason(summary["final_error_median_m"], 50))
    t.add_row("final error p95", _fmt_m(summary["final_error_p95_m"]) + _na_reason(summary["final_error_p95_m"], 5))
    t.add_row("final error mean (survivors)", _fmt_m(summary["final_error_mean_survivors_m"]))
    if "tracking_rmse_m" in summary:
        t.add_row("tracking RMSE (survivors)", _fmt_m(summary["tracking_rmse_m"]))
    for name, rows in summary.get("by_factor", {}).items():  # --perturb: which drawn value the policy minds
        lo, hi = rows[0]["range"][0], rows[-1]["range"][1]
        span = f"{lo:g}-{hi:g} periods" if name == "action_delay" else f"x{lo:.2g}-{hi:.2g}"
        t.add_row(f"survival by {FACTOR_LABELS.get(name, name.replace('_', ' '))}",
                  f"{span}, low / mid / high third: " + " / ".join(
                      "n/a" if r["survival_rate"] is None else f"{r['survival_rate'] * 100:.1f}" for r in rows) + " %")
    t.add_row("evaluation time", f"{eval_s:.1f} s")
    t.add_row("trajectory plot", str(plot_path))
    console.print(t)
    if json_out:
        out = {"bundle": str(root), "platform": plat.name if plat is not None else b.platform_name,
               "trained_on": b.platform_name, "perturb": perturb, "bundle_seed": b.seed, "eval_seed": seed,
               **summary, "eval_seconds": eval_s, "plot": str(plot_path)}
        _print_json(out)


def _eval_avoid(b, root: Path, plot_path: Path, episodes: int, seed: int, json_out: bool) -> None:
    """`edgectl eval` of an avoid bundle: unseen obstacle fields, against the straight-line baseline."""
    console = _console()
    t0 = time.time()
    from train_fast.evaluate_avoid import env_for_bundle, eval_png, evaluate_bundle
    from train_fast.train import _setup_jax

    _setup_jax()
    try:
        with console.status(f"flying {episodes} unseen obstacle fields, policy and straight line (compiling first)..."):
            summary, rec = evaluate_bundle(b, episodes=episodes, seed=seed, record=min(RECORD_EPISODES, episodes))
    except ValueError as e:
        _fail(str(e))
    eval_s = time.time() - t0
    eval_png(env_for_bundle(b), rec, plot_path,
             title=f"{root.name}: avoid, {_fmt_pct(summary['success_rate'])} crossed (straight line "
                   f"{_fmt_pct(summary['baseline_success_rate'])}), eval seed {seed}")
    from rich.table import Table

    t = Table(title=f"edgectl eval {root}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    t.add_row("task", f"avoid ({summary['image']} camera) on {b.platform_name} (bundle seed {b.seed})")
    t.add_row("episodes", f"{summary['episodes']} unseen fields of {summary['field_length_m']:g} m, scenes from {summary['eval_scene_stream']}")
    t.add_row("crossed without collision", f"{_fmt_pct(summary['success_rate'])} (straight line: {_fmt_pct(summary['baseline_success_rate'])})")
    t.add_row("collisions", f"{_fmt_pct(summary['collision_rate'])} (straight line: {_fmt_pct(summary['baseline_collision_rate'])})")
    t.add_row("collision-free distance", f"median {_fmt_m(summary['collision_free_distance_median_m'], 2)}, mean "
              f"{_fmt_m(summary['collision_free_distance_mean_m'], 2)} (straight line: median "
              f"{_fmt_m(summary['baseline_collision_free_distance_median_m'], 2)})")
    t.add_row("evaluation time", f"{eval_s:.1f} s")
    t.add_row("plot", str(plot_path))
    console.print(t)
    if json_out:
        _print_json({"bundle": str(root), "platform": b.platform_name, "bundle_seed": b.seed, "eval_seed": seed,
                     **summary, "eval_seconds": eval_s, "plot": str(plot_path)})


def _eval_race(b, root: Path, plot_path: Path, laps: int, seed: int, json_out: bool) -> None:
    """`edgectl eval` of an rc-car race bundle: laps from a standing start, against tuned pure pursuit."""
    console = _console()
    t0 = time.time()
    from train_fast.evaluate_car import env_for_bundle, evaluate_bundle, lap_plot_png
    from train_fast.train import _setup_jax

    _setup_jax()
    try:
        with console.status(f"driving {laps} laps, then tuning pure pursuit on the same track (compiling first)..."):
            summary, rec = evaluate_bundle(b, laps=laps, seed=seed, record=True)
    except (ValueError, RuntimeError) as e:
        _fail(str(e))
    eval_s = time.time() - t0
    lap_plot_png(env_for_bundle(b), rec, plot_path,
                 title=f"{root.name}: race on {summary['track']}, lap {_fmt_s(summary['lap_time_s'])}")
    from rich.table import Table

    t = Table(title=f"edgectl eval {root}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    t.add_row("task", f"race on {summary['track']} ({summary['track_length_m']:.1f} m, {summary['checkpoints']} checkpoints), "
              f"{b.platform_name} (bundle seed {b.seed})")
    t.add_row("laps", f"{summary['laps_completed']} of {laps} from a standing start, eval seed {seed}")
    t.add_row("lap time", f"{_fmt_s(summary['lap_time_s'])} (laps: {', '.join(_fmt_s(x) for x in summary['lap_times_s'])})")
    t.add_row("collisions per lap", f"{summary['collisions_per_lap']:.2f} ({summary['collisions']} in all)")
    t.add_row("pure pursuit (tuned)", f"{_fmt_s(summary['baseline_lap_time_s'])} per lap, "
              f"{summary['baseline_collisions_per_lap']:.2f} collisions per lap")
    if summary.get("demo_lap_time_s"):
        t.add_row("demonstration lap", _fmt_s(summary["demo_lap_time_s"]))
    t.add_row("evaluation time", f"{eval_s:.1f} s")
    t.add_row("trajectory plot", str(plot_path))
    console.print(t)
    if json_out:
        out = {"bundle": str(root), "platform": b.platform_name, "bundle_seed": b.seed, "eval_seed": seed,
               **summary, "eval_seconds": eval_s, "plot": str(plot_path)}
        _print_json(out)



def _na_reason(v, pct: int) -> str:
    return "" if v is not None and math.isfinite(float(v)) else f"  (more than {pct}% of episodes crashed)"

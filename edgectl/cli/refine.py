"""edgectl refine: teach a hover policy the saves of the recoverability oracle (train_fast/refine.py)."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer

from edgectl.cli.common import _check_out, _console, _fail, _print_json, app, quadrotor_platform


def _cm(x) -> str:
    return "n/a" if x is None or x != x or x == float("inf") else f"{x * 100:.1f} cm"


@app.command("refine")
def refine_cmd(
    bundle: Path = typer.Argument(..., help="A hover bundle to refine (e.g. from `edgectl train quadrotor --robust`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Bundle directory to write (the source is never changed)."),
    rounds: int = typer.Option(3, "--rounds", min=1, help="Rounds: fly fresh starts, let the oracle save the lost "
                               "ones, fit the actor to the saves."),
    starts: int = typer.Option(4000, "--starts", min=16, help="Starts flown per round."),
    seed: int = typer.Option(777, "--seed", help="Seed of round 1's starts (round k: seed + k - 1); never the "
                             "evaluation's 12345."),
    perturbed: float = typer.Option(0.0, "--perturbed", min=0.0, max=1.0, help="Share of each round's starts flown "
                                    "on vehicles drawn from the platform's randomization ranges (the rest: its "
                                    "nominal vehicle). The actor keeps its own successful flights on both kinds as an anchor either way."),
    platform: Optional[list[str]] = typer.Option(None, "--platform", help="Another platform file (name or .toml "
                                                 "path; repeatable) whose nominal vehicle flies an equal share of the "
                                                 "nominal starts and joins the anchor, e.g. crazyflie_2_1_flow; the "
                                                 "evaluation at the end flies it too."),
    episodes: int = typer.Option(1000, "--episodes", min=1, help="Evaluation episodes of source and result at the end."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out bundle."),
    json_out: bool = typer.Option(False, "--json", help="Make the last stdout line one JSON object: the rounds and "
                                  "the evaluation before and after."),
) -> None:
    """Refine a hover policy with a teacher that knows the start: for the starts the policy loses, a search through
    the closed loop finds the nudges that save them (bench/recoverability.py), and the actor is fitted to those
    saving episodes and to its own successful ones, round after round (DAgger). Minutes, not seconds: about
    2-4 min a round on 2 cores."""
    from edgectl.bundle import BundleError, load_bundle
    from edgectl.tasks import TaskError, task as registered

    try:
        b = load_bundle(bundle)
    except BundleError as e:
        _fail(str(e))
    name = b.manifest["task"].get("name")
    try:
        entry = registered(name)
    except TaskError:
        entry = None
    if entry is None or "refine" not in entry.options:
        _fail(f"{bundle}: a {name!r} bundle; edgectl refine refines hover bundles")
    if out.resolve() == b.path.resolve():
        _fail(f"--out {out}: the source bundle itself; write the refined bundle elsewhere")
    _check_out(out, overwrite)
    plats = [quadrotor_platform(name) for name in platform or ()]
    from train_fast.evaluate import evaluate_bundle
    from train_fast.refine import EVAL_SEED, refine, save_refined
    from train_fast.train import _setup_jax

    _setup_jax()
    console = _console(stderr=json_out)
    t0 = time.time()

    def progress(row: dict) -> None:
        console.print(f"round {row['round']}/{rounds}: {row['starts']} starts ({row['perturbed']} perturbed), policy {row['survival'] * 100:.2f} %, "
                      f"{row['lost']} lost, oracle saved {row['saved']} ({row['teacher_episodes']} teacher episodes), "
                      f"actor's error on the saves {row.get('teacher_error_before', float('nan')):.2e} -> "
                      f"{row.get('teacher_error', float('nan')):.2e}, {row['seconds']} s")

    try:
        with console.status(f"refining {bundle} ({rounds} rounds of {starts} starts, compiling first)..."):
            layers, history = refine(b, rounds=rounds, starts=starts, seed=seed, perturbed=perturbed, progress=progress,
                                     platforms=tuple(plats))
    except ValueError as e:
        _fail(str(e))
    path = save_refined(b, layers, history, out, command=" ".join(["edgectl", *sys.argv[1:]]), overwrite=overwrite)
    refined = load_bundle(path)
    report = {"bundle": str(path), "source": str(b.path), "rounds": history}
    console.print(f"wrote {path}; evaluating source and result on {episodes} episodes (seed {EVAL_SEED})")
    flights = [("nominal", None, False), ("perturbed", None, True)] + [(p.name, p, False) for p in plats]
    for vehicle, plat, perturb in flights:
        # the other platforms' figures under "platforms", by name, beside "nominal" and "perturbed"
        row = (report.setdefault("platforms", {}) if plat is not None else report).setdefault(vehicle, {})
        for label, bb in (("before", b), ("after", refined)):
            summary, _ = evaluate_bundle(bb, episodes=episodes, seed=EVAL_SEED, perturb=perturb, platform=plat)
            row[label] = {k: summary[k] for k in ("episodes", "survival_rate", "final_error_median_m", "final_error_p95_m")}
        bf, af = row["before"], row["after"]
        console.print(f"  {vehicle}: survival {bf['survival_rate'] * 100:.2f} % -> {af['survival_rate'] * 100:.2f} %, "
                      f"median final error {_cm(bf['final_error_median_m'])} -> {_cm(af['final_error_median_m'])}")
    report["seconds"] = round(time.time() - t0, 1)
    if json_out:
        _print_json(report)


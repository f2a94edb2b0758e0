"""Benchmark: does `edgectl train rc-car --track T --seconds S` beat tuned pure pursuit on every track and seed?

For each track and seed it runs `edgectl train rc-car ...` as a fresh SUBPROCESS (the budget counts
from process start: interpreter start-up, imports and JIT compilation included), then
`edgectl eval <bundle> --json` (3 laps from a standing start, and the pure-pursuit baseline tuned by
grid search on the same track), and checks:

    all laps finished, 0 collisions, lap_time_s < baseline_lap_time_s, bundle written within S seconds

Runs go one after another: use an otherwise idle machine (the budget is wall-clock).

    python3 bench/train_car.py                          # oval + twisty, 3 seeds, 120 s
    python3 bench/train_car.py --tracks twisty --seeds 1 --seconds 60 --json

Exit status: 0 if every run passes, 1 if any fails, 2 if a run could not be made.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path



sys.path.insert(0, str(Path(__file__).resolve().parent))
from _edgectl_process import run_jobs, train_and_eval  # noqa: E402


def _s(v) -> str:
    return "  n/a " if v is None or not math.isfinite(v) else f"{v:6.2f}"


def passes(ev: dict, to_bundle: float, seconds: float) -> tuple[bool, list[str]]:
    why = []
    if not to_bundle <= seconds:
        why.append(f"bundle after {to_bundle:.2f} s > {seconds:g} s")
    if ev.get("laps_completed") != ev.get("laps"):
        why.append(f"{ev.get('laps_completed')} of {ev.get('laps')} laps")
    if ev.get("collisions", 1) != 0:
        why.append(f"{ev.get('collisions')} collisions")
    lap, base = ev.get("lap_time_s"), ev.get("baseline_lap_time_s")
    if lap is None or base is None or not lap < base:
        why.append(f"lap {_s(lap).strip()} s not below pure pursuit {_s(base).strip()} s")
    return not why, why


def run_one(track: str, seed: int, args, workdir: Path) -> dict:
    out = workdir / f"{Path(track).stem}-seed{seed}"
    train_summary, ev, wall = train_and_eval(workdir, out, ["rc-car", "--track", track, "--seconds", str(args.seconds),
                                                            "--seed", str(seed)], ["--laps", str(args.laps)])
    ok, why = passes(ev, train_summary["seconds_to_bundle"], args.seconds)
    return {"track": ev["track"], "seed": seed, "wall_s": wall, "seconds_to_bundle": train_summary["seconds_to_bundle"],
            "env_steps": train_summary["env_steps"], "lap_time_s": ev["lap_time_s"], "lap_times_s": ev["lap_times_s"],
            "baseline_lap_time_s": ev["baseline_lap_time_s"], "collisions_per_lap": ev["collisions_per_lap"],
            "laps_completed": ev["laps_completed"], "pass": ok, "why": why, "bundle": str(out)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tracks", nargs="+", default=["oval", "twisty"], help="track names or CSV paths (default: oval twisty)")
    ap.add_argument("--seeds", type=int, default=3, help="number of seeds, 0..N-1 (default 3)")
    ap.add_argument("--seconds", type=float, default=120.0, help="training budget per run (default 120)")
    ap.add_argument("--laps", type=int, default=3, help="evaluation laps (default 3)")
    ap.add_argument("--keep", type=Path, default=None, help="keep bundles and plots here (default: a temporary directory)")
    ap.add_argument("--json", action="store_true", help="make the last stdout line a JSON summary")
    args = ap.parse_args(argv)

    print(f"edgectl bench: rc-car race on {', '.join(args.tracks)}, {args.seeds} seeds, {args.seconds:g} s budget, "
          f"{args.laps} eval laps", flush=True)

    def line(row: dict) -> str:
        return (f"{row['track']:>8} seed {row['seed']}: bundle {row['seconds_to_bundle']:6.2f} s  steps "
                f"{row['env_steps'] / 1e6:5.2f} M  lap {_s(row['lap_time_s'])} s  pure pursuit "
                f"{_s(row['baseline_lap_time_s'])} s  collisions/lap {row['collisions_per_lap']:.2f}  "
                f"{'PASS' if row['pass'] else 'FAIL: ' + '; '.join(row['why'])}")

    jobs = [(track, seed) for track in args.tracks for seed in range(args.seeds)]
    rows = run_jobs(args.keep, "edgectl-bench-car-", jobs, lambda job, wd: run_one(*job, args, wd), line)
    if rows is None:
        return 2
    n_pass = sum(r["pass"] for r in rows)
    print(f"summary: {n_pass} of {len(rows)} runs pass (all {args.laps} laps, 0 collisions, lap time below tuned "
          f"pure pursuit, bundle within {args.seconds:g} s)")
    for track in dict.fromkeys(r["track"] for r in rows):
        laps = [r["lap_time_s"] for r in rows if r["track"] == track]
        base = next(r["baseline_lap_time_s"] for r in rows if r["track"] == track)
        ok = [x for x in laps if x is not None and math.isfinite(x)]
        if ok:
            print(f"  {track}: lap {min(ok):.2f}-{max(ok):.2f} s vs pure pursuit {base:.2f} s "
                  f"({100 * (1 - max(ok) / base):.1f}-{100 * (1 - min(ok) / base):.1f} % faster)")
    if args.json:
        print(json.dumps({"tracks": args.tracks, "seeds": args.seeds, "seconds": args.seconds, "laps": args.laps,
                          "passed": n_pass, "total": len(rows), "runs": rows}, allow_nan=False))
    return 0 if n_pass == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: does `edgectl train quadrotor --task avoid --seconds S` cross >= 90 % of unseen obstacle fields?

For each seed it runs `edgectl train quadrotor --task avoid ...` as a fresh SUBPROCESS (the budget counts
from process start: interpreter start-up, imports and JIT compilation included), then
`edgectl eval <bundle> --episodes N --json` (unseen scenes: the eval key stream, disjoint from training's;
the straight-line baseline flies the same scenes), and checks:

    success_rate >= 0.90 and the bundle written within S seconds

Runs go one after another: use an otherwise idle machine (the budget is wall-clock).

    python3 bench/train_avoid.py                        # 3 seeds, 300 s, 1000 eval episodes
    python3 bench/train_avoid.py --seeds 1 --seconds 120 --json

Exit status: 0 if every run passes, 1 if any fails, 2 if a run could not be made.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _edgectl_process import run_jobs, train_and_eval  # noqa: E402

TARGET = 0.90


def run_one(seed: int, args, workdir: Path) -> dict:
    out = workdir / f"avoid-seed{seed}"
    ts, ev, wall = train_and_eval(workdir, out, ["quadrotor", "--task", "avoid", "--seconds", str(args.seconds),
                                                 "--seed", str(seed)], ["--episodes", str(args.episodes)])
    why = []
    if not ts["seconds_to_bundle"] <= args.seconds:
        why.append(f"bundle after {ts['seconds_to_bundle']:.2f} s > {args.seconds:g} s")
    if not ev["success_rate"] >= TARGET:
        why.append(f"success {100 * ev['success_rate']:.1f} % < {100 * TARGET:.0f} %")
    return {"seed": seed, "wall_s": wall, "seconds_to_bundle": ts["seconds_to_bundle"], "env_steps": ts["env_steps"],
            "success_rate": ev["success_rate"], "collision_rate": ev["collision_rate"],
            "collision_free_distance_median_m": ev["collision_free_distance_median_m"],
            "collision_free_distance_mean_m": ev["collision_free_distance_mean_m"],
            "baseline_success_rate": ev["baseline_success_rate"],
            "baseline_collision_free_distance_median_m": ev["baseline_collision_free_distance_median_m"],
            "episodes": ev["episodes"], "pass": not why, "why": why, "bundle": str(out)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3, help="number of seeds, 0..N-1 (default 3)")
    ap.add_argument("--seconds", type=float, default=300.0, help="training budget per run (default 300)")
    ap.add_argument("--episodes", type=int, default=1000, help="unseen evaluation scenes per seed (default 1000)")
    ap.add_argument("--keep", type=Path, default=None, help="keep bundles and plots here (default: a temporary directory)")
    ap.add_argument("--json", action="store_true", help="make the last stdout line a JSON summary")
    args = ap.parse_args(argv)

    print(f"edgectl bench: quadrotor avoid, {args.seeds} seeds, {args.seconds:g} s budget, {args.episodes} unseen "
          f"fields each", flush=True)

    def line(row: dict) -> str:
        return (f"seed {row['seed']}: bundle {row['seconds_to_bundle']:6.1f} s  steps {row['env_steps'] / 1e6:5.2f} M  "
                f"crossed {100 * row['success_rate']:5.1f} %  (straight line {100 * row['baseline_success_rate']:5.1f} %)  "
                f"collision-free distance median {row['collision_free_distance_median_m']:5.2f} m, mean "
                f"{row['collision_free_distance_mean_m']:5.2f} m (straight line median "
                f"{row['baseline_collision_free_distance_median_m']:5.2f} m)  "
                f"{'PASS' if row['pass'] else 'FAIL: ' + '; '.join(row['why'])}")

    rows = run_jobs(args.keep, "edgectl-bench-avoid-", range(args.seeds), lambda k, wd: run_one(k, args, wd), line)
    if rows is None:
        return 2
    n_pass = sum(r["pass"] for r in rows)
    sr = [r["success_rate"] for r in rows]
    print(f"summary: {n_pass} of {len(rows)} seeds pass (>= {100 * TARGET:.0f} % of unseen fields crossed, bundle within "
          f"{args.seconds:g} s); crossed {100 * min(sr):.1f}-{100 * max(sr):.1f} % vs straight line "
          f"{100 * min(r['baseline_success_rate'] for r in rows):.1f} %; collision-free distance mean "
          f"{min(r['collision_free_distance_mean_m'] for r in rows):.2f}-{max(r['collision_free_distance_mean_m'] for r in rows):.2f} m")
    if args.json:
        print(json.dumps({"seeds": args.seeds, "seconds": args.seconds, "episodes": args.episodes, "target": TARGET,
                          "passed": n_pass, "total": len(rows), "runs": rows}, allow_nan=False))
    return 0 if n_pass == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())

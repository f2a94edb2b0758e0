"""Benchmark: does `edgectl train quadrotor --seconds S` meet the acceptance bar across seeds?

For each seed it runs `edgectl train quadrotor ...` as a fresh SUBPROCESS (so the time counts from
process start: interpreter start-up, imports and JIT compilation included, as a user sees it), then
`edgectl eval <bundle> --json` on held-out episodes, and checks:

    hover:   eval survival >= 0.99 and median final error <= 0.05 m, bundle written within S seconds
    figure8: eval tracking RMSE <= 0.05 m, bundle written within S seconds

"within S seconds" uses the time from process start to bundle written that `edgectl train --json`
reports (read from /proc); the wall column is measured here around the subprocess and also holds
interpreter shutdown. Seeds run one after another: run this on an otherwise idle machine.

    python3 bench/train_quadrotor.py                       # 5 seeds, hover, 20 s, 1000 eval episodes
    python3 bench/train_quadrotor.py --task figure8 --seeds 3 --json
    python3 bench/train_quadrotor.py --task figure8 --action ctbr --seeds 1 --seconds 60
    python3 bench/train_quadrotor.py --robust --seconds 120 --perturb --platforms crazyflie_2_1_flow,crazyflie_2_1_brushless

--perturb also flies each bundle on vehicles drawn from its platform's randomization ranges (edgectl eval
--perturb), --platforms on other platform files (edgectl eval --platform P); both print their figures beside
the nominal ones (the pass/fail verdict stays the nominal acceptance above).

Exit status: 0 if every seed passes, 1 if any fails, 2 if a run could not be made.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

# task -> metric -> (bound, "min" | "max", what it is called in the printout)
ACCEPT = {"hover": {"survival_rate": (0.99, "min", "survival"), "final_error_median_m": (0.05, "max", "median")},
          "figure8": {"tracking_rmse_m": (0.05, "max", "rmse")}}


sys.path.insert(0, str(Path(__file__).resolve().parent))
from _edgectl_process import edgectl, env, last_json, run_jobs, train_and_eval  # noqa: E402


def passes(task: str, ev: dict, to_bundle: float, seconds: float) -> tuple[bool, list[str]]:
    """(pass?, reasons for a failure)."""
    why = []
    if not to_bundle <= seconds:
        why.append(f"bundle after {to_bundle:.2f} s > {seconds:g} s")
    for key, (bound, kind, name) in ACCEPT[task].items():
        v = ev.get(key)
        if kind == "min" and not (v or 0.0) >= bound:
            why.append(f"{name} {v} < {bound}")
        if kind == "max" and (v is None or not v <= bound):
            why.append(f"{name} {_m(v).strip()} > {bound} m")
    return not why, why


def _m(v) -> str:
    """Metres, or n/a for null (a median/p95 of mostly crashed episodes, see edgectl eval --help)."""
    return "   n/a  " if v is None or not math.isfinite(v) else f"{v:.4f} m"


def run_seed(k: int, args, workdir: Path) -> dict:
    out = workdir / f"seed{k}"
    train_summary, ev, wall = train_and_eval(workdir, out, ["quadrotor", "--task", args.task, "--seconds", str(args.seconds),
                                                            "--seed", str(k), "--action", args.action,
                                                            *(["--robust"] if args.robust else [])],
                                             ["--episodes", str(args.episodes)])
    ok, why = passes(args.task, ev, train_summary["seconds_to_bundle"], args.seconds)
    extra = {}
    for name, flags in ([("perturbed", ["--perturb"])] if args.perturb else []) + \
            [(p, ["--platform", p]) for p in args.platforms]:
        import subprocess
        cmd = edgectl("eval", str(out), "--episodes", str(args.episodes), *flags, "--json",
                      "--plot", str(workdir / f"{out.name}.{name}.eval.png"))
        r = subprocess.run(cmd, cwd=workdir, env=env(), capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stderr[-4000:]}")
        e = last_json(r.stdout)
        extra[name] = {k: e[k] for k in ("survival_rate", "final_error_median_m", "final_error_p95_m")}
    return {"seed": k, "extra": extra, "wall_s": wall, "seconds_to_bundle": train_summary["seconds_to_bundle"],
            "post_train_s": train_summary.get("post_train_s"),
            "env_steps": train_summary["env_steps"], "survival_rate": ev["survival_rate"],
            "final_error_median_m": ev["final_error_median_m"], "final_error_p95_m": ev["final_error_p95_m"],
            "tracking_rmse_m": ev.get("tracking_rmse_m"), "pass": ok, "why": why, "bundle": str(out)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5, help="number of seeds, 0..N-1 (default 5)")
    ap.add_argument("--seconds", type=float, default=20.0, help="training budget per seed (default 20)")
    ap.add_argument("--task", choices=sorted(ACCEPT), default="hover")
    ap.add_argument("--action", choices=["motor", "ctbr"], default="motor",
                    help="motor commands, or collective thrust and body rates through the platform's rate loop")
    ap.add_argument("--episodes", type=int, default=1000, help="eval episodes per seed (default 1000)")
    ap.add_argument("--keep", type=Path, default=None, help="keep bundles and plots in this directory "
                    "(default: a temporary directory, removed at the end)")
    ap.add_argument("--json", action="store_true", help="make the last stdout line a JSON summary")
    ap.add_argument("--robust", action="store_true", help="train with edgectl train --robust")
    ap.add_argument("--perturb", action="store_true", help="also evaluate on perturbed vehicles (eval --perturb)")
    ap.add_argument("--platforms", type=lambda s: [p for p in s.split(",") if p], default=[],
                    help="comma-separated platform files to also evaluate on (eval --platform)")
    args = ap.parse_args(argv)

    print(f"edgectl bench: quadrotor {args.task} ({args.action}), {args.seconds:g} s budget, {args.seeds} seeds, "
          f"{args.episodes} eval episodes", flush=True)

    def line(row: dict) -> str:
        rmse = f"  rmse {_m(row['tracking_rmse_m'])}" if "tracking_rmse_m" in ACCEPT[args.task] else ""
        return (f"seed {row['seed']}: wall {row['wall_s']:5.1f} s  bundle {row['seconds_to_bundle']:5.2f} s  "
                f"steps {row['env_steps'] / 1e6:5.2f} M  survival {row['survival_rate']:.3f}  "
                f"median {_m(row['final_error_median_m'])}  p95 {_m(row['final_error_p95_m'])}{rmse}  "
                f"{'PASS' if row['pass'] else 'FAIL: ' + '; '.join(row['why'])}"
                + "".join(f"\n    {n}: survival {e['survival_rate']:.3f}  median {_m(e['final_error_median_m'])}  "
                          f"p95 {_m(e['final_error_p95_m'])}" for n, e in row["extra"].items()))

    rows = run_jobs(args.keep, "edgectl-bench-", range(args.seeds), lambda k, wd: run_seed(k, args, wd), line)
    if rows is None:
        return 2
    n_pass = sum(r["pass"] for r in rows)
    crit = ", ".join(f"{name} {'>=' if kind == 'min' else '<='} {bound:g}{'' if kind == 'min' else ' m'}"
                     for bound, kind, name in ACCEPT[args.task].values())
    print(f"summary: {n_pass} of {len(rows)} seeds pass ({args.task}: {crit}, bundle within {args.seconds:g} s)")
    if args.json:
        summary = {"task": args.task, "action": args.action, "seconds": args.seconds, "episodes": args.episodes, "passed": n_pass,
                   "total": len(rows), "acceptance": ACCEPT[args.task], "seeds": rows}
        print(json.dumps(summary, allow_nan=False))
    return 0 if n_pass == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())

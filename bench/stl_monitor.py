"""Per-sample cost of online STL monitoring: edgectl's monitor vs rtamt 0.4.10, plus the C monitor.

    python bench/stl_monitor.py [--samples 20000] [--repeats 3] [--json]

Each monitor gets the same past-time spec and the same random trace, one sample per call, the way
a control loop calls it:
  - ours: edgectl.safety.OnlineMonitor(formula, dt).update(dict), pure Python.
  - rtamt: StlDiscreteTimeSpecification().update(t, [(name, value), ...]), its Python backend
    (its C++ backend is not in the wheel); bounds given in samples (period 1).
  - C: edgectl.safety.c_monitor's code, compiled with gcc -O2, timed by a generated main over
    the same samples (no ctypes in the loop). Skipped without gcc.
Values are compared as well (max |ours - rtamt|). Times are the best of --repeats passes.
``shield_cost(H)`` reports the predictive shield's per-tick cost at horizon H (from
edgectl.safety.shield.shield_cost, seconds per tick), or None with the reason.
With --json the last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import importlib
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgectl.safety import OnlineMonitor, parse  # noqa: E402
from edgectl.safety.c_monitor import generate_monitor_c  # noqa: E402

DT = 0.01
GOAL_US = 2.0
# (ours, rtamt): the same spec, ours in seconds, rtamt's in samples
SPECS = [
    ("historically[0,1](z >= 0.2 and abs(roll) <= 0.6)", "historically[0:100]((z >= 0.2) and (abs(roll) <= 0.6))"),
    ("(z >= 0.2) since[0,0.2] (abs(roll) <= 0.1)", "(z >= 0.2) since[0:20] (abs(roll) <= 0.1)"),
]
SIGNALS = ["z", "roll"]

TIMING_MAIN = r"""#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "edgectl_stl.h"
static double now_s(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
int main(int argc, char **argv) {
    long n = 0, cap = 1 << 16, i, rep, reps = argc > 1 ? atol(argv[1]) : 3;
    float (*s)[2] = malloc(sizeof(float[2]) * cap), acc = 0.0f;
    double best = 1e9;
    while (n < cap && scanf("%f %f", &s[n][0], &s[n][1]) == 2) ++n;
    for (rep = 0; rep < reps; ++rep) {
        double t0 = now_s(), dt;
        edgectl_stl_reset();
        for (i = 0; i < n; ++i) acc += edgectl_stl_update(s[i]);
        dt = (now_s() - t0) / (double)n;
        if (dt < best) best = dt;
    }
    printf("%.3f %g\n", best * 1e9, (double)acc);
    return 0;
}
"""


def make_trace(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = 0.6 + 0.3 * np.sin(np.arange(n) * 0.01) + rng.normal(0, 0.1, n)
    roll = rng.normal(0, 0.3, n)
    return np.stack([z, roll], axis=1).astype(np.float32).astype(np.float64)


def time_ours(text: str, trace: np.ndarray, repeats: int) -> tuple[float, np.ndarray]:
    mon = OnlineMonitor(parse(text, SIGNALS), DT)
    samples = [dict(zip(SIGNALS, map(float, row))) for row in trace]
    best, out = float("inf"), None
    for _ in range(repeats):
        mon.reset()
        u = mon.update
        t0 = time.perf_counter()
        vals = [u(s) for s in samples]
        best = min(best, (time.perf_counter() - t0) / len(samples))
        out = np.array(vals)
    return best * 1e6, out


def time_rtamt(text: str, trace: np.ndarray, repeats: int) -> tuple[float | None, np.ndarray | None, str | None]:
    try:
        import rtamt
    except ImportError:
        return None, None, "rtamt not installed (pip install rtamt==0.4.10)"
    best, out = float("inf"), None
    for _ in range(repeats):
        spec = rtamt.StlDiscreteTimeSpecification()
        for s in SIGNALS:
            spec.declare_var(s, "float")
        spec.spec = text
        spec.parse()
        samples = [list(zip(SIGNALS, map(float, row))) for row in trace]
        t0 = time.perf_counter()
        vals = [spec.update(t, s) for t, s in enumerate(samples)]
        best = min(best, (time.perf_counter() - t0) / len(samples))
        out = np.array(vals)
    return best * 1e6, out, None


def time_c(text: str, trace: np.ndarray, repeats: int) -> tuple[float | None, str | None]:
    gcc = shutil.which("gcc")
    if gcc is None:
        return None, "gcc not found"
    files = generate_monitor_c([parse(text, SIGNALS)], DT, SIGNALS)
    with tempfile.TemporaryDirectory() as d:
        for name, src in files.items():
            (Path(d) / name).write_text(src)
        (Path(d) / "main.c").write_text(TIMING_MAIN)
        exe = Path(d) / "bench"
        subprocess.run([gcc, "-std=c99", "-O2", "-D_POSIX_C_SOURCE=199309L", "-o", str(exe), "main.c", "edgectl_stl.c"],
                       cwd=d, check=True, capture_output=True)
        stdin = "\n".join(f"{a:.9g} {b:.9g}" for a, b in trace)
        out = subprocess.run([str(exe), str(repeats * 3)], input=stdin, capture_output=True, text=True, check=True)
    return float(out.stdout.split()[0]), None


def shield_cost(H: int = 50) -> tuple[float | None, str | None]:
    """(us per shield tick at horizon H, why not): edgectl.safety.shield.shield_cost(H) returns
    seconds per tick; None where the shield module (or what it needs) is not there."""
    try:
        shield = importlib.import_module("edgectl.safety.shield")
        fn = shield.shield_cost
        return float(fn(H)) * 1e6, None
    except Exception as e:  # noqa: BLE001  an optional row of the table: report why, do not fail the bench
        return None, f"{type(e).__name__}: {e}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args(argv)
    trace = make_trace(args.samples)
    rows, unavailable = [], {}
    for ours_text, rtamt_text in SPECS:
        ours_us, ours_vals = time_ours(ours_text, trace, args.repeats)
        rt_us, rt_vals, why = time_rtamt(rtamt_text, trace, args.repeats)
        if why:
            unavailable["rtamt"] = why
        c_ns, why = time_c(ours_text, trace, args.repeats)
        if why:
            unavailable["c"] = why
        diff = None if rt_vals is None else float(np.max(np.abs(ours_vals - rt_vals)))
        rows.append(dict(spec=ours_text, ours_us_per_update=ours_us, rtamt_us_per_update=rt_us,
                         c_ns_per_update=c_ns, max_abs_diff_vs_rtamt=diff))
    shield_us, why = shield_cost(50)
    if why:
        unavailable["shield"] = why
    print(f"online STL monitoring, {args.samples} samples at dt = {DT} s, best of {args.repeats}; "
          f"Python {platform.python_version()}, {platform.machine()}")
    print(f"{'spec':52s} {'ours us':>9s} {'rtamt us':>9s} {'speed-up':>9s} {'C ns':>7s} {'max|diff|':>10s}")
    for r in rows:
        rt = r["rtamt_us_per_update"]
        fmt = lambda v, f: "n/a" if v is None else format(v, f)  # noqa: E731
        print(f"{r['spec']:52s} {r['ours_us_per_update']:9.2f} {fmt(rt, '9.2f'):>9s} "
              f"{fmt(None if rt is None else rt / r['ours_us_per_update'], '8.1f') + 'x':>9s} "
              f"{fmt(r['c_ns_per_update'], '7.1f'):>7s} {fmt(r['max_abs_diff_vs_rtamt'], '10.1e'):>10s}")
    print(f"goal: ours <= {GOAL_US} us per update on the first spec; shield tick at H = 50: "
          f"{'n/a (' + why + ')' if shield_us is None else f'{shield_us:.1f} us'}")
    if args.json:
        first = rows[0]
        print(json.dumps(dict(first, samples=args.samples, dt=DT, goal_us=GOAL_US, specs=rows,
                              shield_us_per_tick_h50=shield_us, unavailable=unavailable,
                              python=platform.python_version())))
    return 0


if __name__ == "__main__":
    sys.exit(main())

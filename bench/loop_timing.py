"""Control-loop jitter of `edgectl run`'s fixed-rate loop at 100, 500 and 1,000 Hz.

The hover bundle flies the in-process simulated vehicle (sim://) for a few seconds per rate with the
real-time scheduler on; prints the period error (start time minus scheduled time) p50/p99/max, compute
time per tick and deadline misses. Run it on an otherwise idle machine: the figure is the OS
scheduler's as much as ours.

    python3 bench/loop_timing.py [--bundle tests/data/hover_bundle] [--seconds 5] [--shield] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgectl.bundle import load_bundle  # noqa: E402
from edgectl.platforms import parse_platform  # noqa: E402
from edgectl.runtime.links import SimLink  # noqa: E402
from edgectl.runtime.loop import ControlLoop, LoopConfig  # noqa: E402
from edgectl.safety.backup import BackupController  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=str(ROOT / "tests" / "data" / "hover_bundle"))
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rates", default="100,500,1000")
    ap.add_argument("--shield", action="store_true", help="also run the predictive shield every tick")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    b = load_bundle(args.bundle)
    plat = parse_platform((b.path / "platform.toml").read_bytes(), b.path / "platform.toml")
    rows = []
    for rate in (float(r) for r in args.rates.split(",")):
        shield = None
        if args.shield:
            from edgectl.safety.shield import Shield
            shield = Shield(b.act, b.contract, plat)
        # the policy still sees one simulator step per tick: this measures the loop, not the flight
        loop = ControlLoop(SimLink(plat), b.act, b.contract, BackupController(plat),
                           LoopConfig(rate_hz=rate, seconds=args.seconds, realtime=True, max_misses=10**9), shield=shield)
        s = loop.run().summary()
        rows.append({"rate_hz": rate, "ticks": s["ticks"], "period_error_ms": s["period_error_ms"],
                     "compute_ms": s["compute_ms"], "deadline_misses": s["deadline_misses"]})
    print(f"loop jitter, {args.seconds:g} s per rate, shield {'on' if args.shield else 'off'}, bundle {b.path.name}")
    print(f"{'rate':>6} {'ticks':>6} {'err p50':>9} {'err p99':>9} {'err max':>9} {'compute p50':>12} {'compute p99':>12} {'misses':>7}")
    for r in rows:
        pe, ce = r["period_error_ms"], r["compute_ms"]
        print(f"{r['rate_hz']:6.0f} {r['ticks']:6d} {pe['p50']:8.3f}ms {pe['p99']:8.3f}ms {pe['max']:8.3f}ms "
              f"{ce['p50']:10.3f}ms {ce['p99']:10.3f}ms {r['deadline_misses']:7d}")
    if args.json:
        print(json.dumps({"shield": args.shield, "rates": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""An avoid (vision) bundle flown on the simulated Crazyflie through cflib, against the same fields in the
training model: how much of the policy survives the change of vehicle.

For each obstacle field (seeds 0..N-1): `fly_vision` (edgectl/runtime/vision_link.py, what `edgectl run
AVOID_BUNDLE --uri <cflib URI> --camera field:SEED` runs) takes the in-process simulated Crazyflie
(cfsim://NAME, stock cflib on our link driver, the firmware-like cascaded controller tracking world velocity
setpoints) off to the cruise height, then flies the policy at 20 Hz on the simulated camera rendered from
the position the vehicle reports; and `fly_avoid` flies the training model (first-order velocity lag) through
the same field. Real time for the Crazyflie (about 15 s a field), as fast as possible for the model.

    python3 bench/avoid_crazyflie.py [--bundle tests/data/avoid_bundle] [--fields 10] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgectl.bundle import load_bundle  # noqa: E402
from edgectl.runtime.backends import load_policy  # noqa: E402
from edgectl.runtime.camera import AvoidSim, ImageSpec, SimCamera, fly_avoid  # noqa: E402
from edgectl.runtime.vision_link import fly_vision  # noqa: E402


def one_field(b, act, seed: int) -> dict:
    from firmware_bridge.crazyflie.bridge import CrazyflieLink
    from firmware_bridge.sim.crazyflie.sim_vehicle import CrazyflieSim
    from firmware_bridge.crazyflie.transports import register_vehicle, unregister_vehicle
    task = b.manifest["task"]
    model = fly_avoid(act, b.contract, task, seconds=30.0, seed=seed, realtime=False)
    sim = CrazyflieSim()
    sim.start()
    name = f"avoid-bench-{seed}"
    link = None
    try:
        link = CrazyflieLink(register_vehicle(name, sim), connect_timeout=5.0)
        field = AvoidSim(task, seed)
        rep = fly_vision(act, b.contract, task, link, SimCamera(field, ImageSpec.from_contract(b.contract)),
                         seconds=30.0, lateral=float(field.pos[1]), field=field)
    finally:
        if link is not None:
            link.close()
        unregister_vehicle(name, sim)
        sim.close()
    s = rep.summary()
    return {"field": seed, "crazyflie": {k: s[k] for k in ("crossed", "collided", "distance_m", "min_clearance_m")}
            | {"period_error_p99_ms": s["period_error_ms"]["p99"]},
            "model": {"crossed": model.outcome["crossed"], "collided": model.outcome["collided"],
                      "distance_m": model.outcome["collision_free_distance_m"],
                      "min_clearance_m": model.outcome["min_clearance_m"]}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=ROOT / "tests" / "data" / "avoid_bundle")
    ap.add_argument("--fields", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    b = load_bundle(args.bundle)
    act, backend = load_policy(b.path, b)
    t0 = time.perf_counter()
    rows = []
    for seed in range(args.fields):
        r = one_field(b, act, seed)
        rows.append(r)
        if not args.json:
            c, m = r["crazyflie"], r["model"]
            print(f"field {seed}: crazyflie {'crossed' if c['crossed'] else 'COLLIDED' if c['collided'] else 'stopped'} "
                  f"({c['distance_m']:.2f} m, clearance {c['min_clearance_m']:.3f} m, p99 {c['period_error_p99_ms']:.2f} ms); "
                  f"model {'crossed' if m['crossed'] else 'COLLIDED'} (clearance {m['min_clearance_m']:.3f} m)")
    cf = sum(r["crazyflie"]["crossed"] for r in rows)
    md = sum(r["model"]["crossed"] for r in rows)
    summary = {"bundle": str(b.path), "backend": backend, "fields": len(rows), "crazyflie_crossed": cf, "model_crossed": md,
               "crazyflie_min_clearance_median_m": float(np.median([r["crazyflie"]["min_clearance_m"] for r in rows])),
               "wall_s": time.perf_counter() - t0, "rows": rows}
    print(json.dumps(summary) if args.json else
          f"crossed: simulated Crazyflie {cf} of {len(rows)}, training model {md} of {len(rows)} ({backend}; "
          f"{summary['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

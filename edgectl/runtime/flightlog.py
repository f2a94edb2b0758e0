"""Flight logs as CSV: one row per control tick, readable by any spreadsheet or pandas."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

COLUMNS = (["t", "period_error_ms", "compute_ms", "controller", "event"]
           + [f"{n}" for n in ("x", "y", "z")] + ["qw", "qx", "qy", "qz"] + ["vx", "vy", "vz"] + ["wx", "wy", "wz"]
           + ["ref_x", "ref_y", "ref_z"] + [f"a{i}" for i in range(1, 5)] + ["robustness"])


class FlightLog:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "w", newline="")
        self._w = csv.writer(self._f)
        self._w.writerow(COLUMNS)

    def write(self, t, period_error_ms, compute_ms, controller, event, state, ref, action, robustness) -> None:
        nan3, nan4 = [np.nan] * 3, [np.nan] * 4
        row = [f"{t:.5f}", f"{period_error_ms:.4f}", f"{compute_ms:.4f}", controller, event]
        for v, n in ((None if state is None else state.pos, nan3), (None if state is None else state.quat, nan4),
                     (None if state is None else state.vel, nan3), (None if state is None else state.omega, nan3)):
            row += [f"{x:.6g}" for x in (n if v is None else v)]
        row += [f"{x:.6g}" for x in ref] + [f"{x:.6g}" for x in action] + [f"{robustness:.6g}"]
        self._w.writerow(row)

    def close(self) -> None:
        self._f.close()


def read_log(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0] != COLUMNS:
        raise ValueError(f"{path}: not an edgectl flight log (header differs from {COLUMNS[:5]}...)")
    cols = list(zip(*rows[1:])) if len(rows) > 1 else [()] * len(COLUMNS)
    out = {}
    for name, values in zip(COLUMNS, cols):
        out[name] = np.asarray(values, dtype=object if name in ("controller", "event") else np.float64)
    return out

"""Flight logs as CSV: one row per control tick, readable by any spreadsheet or pandas.

Each row reaches the operating system as one write when its tick logs it (line buffering), so a host process
killed mid-flight (SIGKILL, an out-of-memory kill) leaves every tick up to the last one logged, and no torn row;
bench/faults.py (sigkill) checks it. A power loss can still tear the last row: `read_log` drops a last row without
its line end (a torn write is not a row) and refuses any other malformed row, naming its line."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

COLUMNS = (["t", "period_error_ms", "compute_ms", "controller", "event"]
           + [f"{n}" for n in ("x", "y", "z")] + ["qw", "qx", "qy", "qz"] + ["vx", "vy", "vz"] + ["wx", "wy", "wz"]
           + ["ref_x", "ref_y", "ref_z"] + [f"a{i}" for i in range(1, 5)] + ["robustness"])


class FlightLog:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "w", newline="", buffering=1)  # line buffered: a row per write, at its tick
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
        text = f.read()
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or rows[0] != COLUMNS:
        raise ValueError(f"{path}: not an edgectl flight log (header differs from {COLUMNS[:5]}...)")
    if len(rows) > 1 and not text.endswith("\n"):  # the last write was cut short (power loss): not a row
        rows.pop()
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != len(COLUMNS):
            raise ValueError(f"{path}: line {i}: {len(row)} fields, expected {len(COLUMNS)}")
    cols = list(zip(*rows[1:])) if len(rows) > 1 else [()] * len(COLUMNS)
    out = {}
    for name, values in zip(COLUMNS, cols):
        out[name] = np.asarray(values, dtype=object if name in ("controller", "event") else np.float64)
    return out


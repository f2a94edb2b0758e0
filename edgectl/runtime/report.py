"""One report for every flight loop: what `edgectl run` prints, and what `--json` makes its last stdout line.

Every loop returns a `FlightReport`: the quadrotor host loop and the on-board Crazyflie loop (edgectl.runtime.loop,
also over MAVLink), the rc car (edgectl.runtime.race.drive), and the avoid task in the in-process field
(edgectl.runtime.camera.fly_avoid) and on a Crazyflie (edgectl.runtime.vision_link.fly_vision). The fields every loop
fills are the same (ticks, timing, who flew, the switches); what only one task measures (laps, field crossed) goes in
`outcome`, whose keys `summary()` merges in at the top level, as the JSON summaries always had them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

NOMINAL, BACKUP, STOPPED = "nominal", "backup", "stopped"


def timing_stats(values_ms) -> dict:
    """p50 / p99 / max of per-tick timings in ms (NaN for none), as every run summary reports them."""
    v = np.asarray(values_ms or [np.nan], float)
    return {"p50": float(np.percentile(v, 50)), "p99": float(np.percentile(v, 99)), "max": float(v.max())}


@dataclass
class FlightReport:
    vehicle: str = "quadrotor"  # quadrotor, crazyflie (policy on board), rc car, avoid
    rate_hz: float = math.nan
    ticks: int = 0
    misses: int = 0  # ticks whose compute took longer than a period
    period_error_ms: list = field(default_factory=list)  # empty: ticks ran back to back, no timing to report
    compute_ms: list = field(default_factory=list)
    nominal_ticks: int = 0
    events: list = field(default_factory=list)  # (t, from, to, reason)
    final_mode: str = NOMINAL
    position_error_m: list = field(default_factory=list)  # |pos - ref| per tick with a state and a reference
    # on-board policy: the app's link backup episodes during the run (edgectl.linkdrops), as last heard
    vehicle_link_drops: int | None = None
    outcome: dict = field(default_factory=dict)  # the task's own results (laps, crossed, ...): summary keys
    # per tick, for callers that want the vehicle's own variables without reading the log back (rc car:
    # (t, x, y, yaw, speed, steer, throttle, mode)); the flight log (edgectl.runtime.flightlog) is the one schema
    path: list = field(default_factory=list)

    def summary(self) -> dict:
        pe = np.abs(self.period_error_ms).tolist()
        return {"vehicle": self.vehicle, "ticks": self.ticks, "rate_hz": self.rate_hz, "deadline_misses": self.misses,
                "period_error_ms": timing_stats(pe) if pe else None,
                "compute_ms": timing_stats(self.compute_ms) if self.compute_ms else None,
                "nominal_fraction": self.nominal_ticks / max(self.ticks, 1),
                "switches": [{"t": t, "from": a, "to": b, "reason": r} for t, a, b, r in self.events],
                "final_mode": self.final_mode, "position_error_m": self._error_summary(),
                **({} if self.vehicle_link_drops is None else {"vehicle_link_drops": self.vehicle_link_drops}),
                **self.outcome}

    def _error_summary(self) -> dict:
        e = np.asarray(self.position_error_m, float)
        e = e[np.isfinite(e)]
        if not e.size:
            return {"max": None, "rms": None, "samples": 0}
        return {"max": float(e.max()), "rms": float(np.sqrt(np.mean(e * e))), "samples": int(e.size)}

    def tick(self, mode: str, period_error_ms: float | None, compute_ms: float) -> None:
        """Count one tick flown by `mode` (period_error_ms None: back to back, not timed)."""
        self.ticks += 1
        self.nominal_ticks += mode == NOMINAL
        if period_error_ms is not None:
            self.period_error_ms.append(period_error_ms)
        self.compute_ms.append(compute_ms)
        if math.isfinite(self.rate_hz) and compute_ms > 1e3 / self.rate_hz:
            self.misses += 1

    def event_at(self, t: float) -> str:
        """The reason of the switch logged at loop time t, '' if none (the flight log's event column)."""
        return self.events[-1][3] if self.events and self.events[-1][0] == round(t, 4) else ""

"""The edgectl on-board app's constants, as the host side and the simulated Crazyflie use them.

The app is export/crazyflie/edgectl_controller.c.in (the out-of-tree controller, selected with
stabilizer.controller = 6); the simulated Crazyflie runs that C itself, compiled for this host
(firmware_bridge/sim/crazyflie/host_app.py). What it does, in short:
- it drives the motors with normalized forces while the supervisor lets the motors run and the
  setpoint asks for thrust (a z position/velocity setpoint, or thrust > 0); otherwise it disengages,
  which is also how a latched fault is cleared;
- its reference is the absolute position setpoint when x, y and z are all absolute, else the
  position where it engaged;
- faults hand the motors to the on-board backup controller (level, hold, descend, land:
  edgectl_backup.c, the law of edgectl.safety.backup) and latch edgectl.fault: 1 a non-finite
  observation, 2 a non-finite action, 3 a platform safety spec (past-time form) violated, 4 the link
  watchdog. The link check comes first, on every stabilizer tick: a cut link means no packets either
  way, so the host can neither fly nor rescue the vehicle. The backup flies from the first tick the
  newest host setpoint is older than the parameter edgectl.linkMs: DEFAULT_LINK_TIMEOUT_S at boot (any
  100 Hz setpoint source), LINK_TIMEOUT_S (6 ms) once `edgectl run` has set it, which repeats its newest
  setpoint every 2 ms (edgectl.runtime.keepalive): within one 10 ms control period of the cut. A silence
  that ends before LINK_LATCH_S (host jitter; the worst gap measured on a loaded host was 23 ms) hands
  back to the policy at its next period and is counted in edgectl.linkdrops; a longer one latches.
- while the host is silent the app feeds the commander its own hold setpoint every KEEPALIVE_S, or
  the firmware's supervisor would level the vehicle out at 0.5 s and cut the motors at 2 s, long
  before the backup has landed it (hold 5 s, then 0.3 m/s down); it stops feeding once landed.

The numbers here are the C's (EDGECTL_LINK_TIMEOUT_MS, EDGECTL_LINK_LATCH_MS, EDGECTL_KEEPALIVE_MS;
tests/test_crazyflie_host_app.py checks them against the compiled app).
"""
from __future__ import annotations

FAULT_OBSERVATION, FAULT_ACTION, FAULT_MONITOR, FAULT_LINK = 1, 2, 3, 4
FAULT_NAMES = {0: "none", FAULT_OBSERVATION: "non-finite observation", FAULT_ACTION: "non-finite action",
               FAULT_MONITOR: "on-board safety monitor", FAULT_LINK: "link watchdog"}
# The host repeats its setpoint every 2 ms (edgectl.runtime.keepalive.PERIOD_S): 6 ms is three missed
# repeats, and the backup flies 6-8 ms after a cut, inside one 10 ms control period (bench/link_cut.py).
# Host setpoint gaps measured at the simulated vehicle over udp:// on the loaded 2-core test machine
# (bench/link_cut.py --jitter, 100 Hz, before the keep-alive): p99.9 15 ms, max 16 and 23 ms. Gaps like
# those are flown by the backup and handed back; LINK_LATCH_S, four times the worst, latches.
LINK_TIMEOUT_S = 0.006  # what `edgectl run` sets in LINK_PARAM while its keep-alive runs
DEFAULT_LINK_TIMEOUT_S = 0.05  # the app's at boot: any 100 Hz setpoint source (a script, the high-level commander)
LINK_PARAM = "edgectl.linkMs"
LINK_LATCH_S = 0.1
KEEPALIVE_S = 0.1  # well inside the supervisor's 0.5 s level-out watchdog
# Read-only parameter: which bundle the app was exported from (the first 32 bits of the bundle's weights
# sha256). `edgectl run` reads it before it arms and refuses a vehicle that carries another bundle's app.
BUNDLE_PARAM = "edgectl.bundle"


def bundle_id(manifest: dict) -> int:
    """The app's edgectl.bundle value for a bundle manifest (bundle.json)."""
    return int(manifest["weights"]["sha256"][:8], 16)


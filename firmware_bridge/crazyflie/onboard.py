"""The export issue's on-board policy app, as the simulated Crazyflie runs it.

Mirrors export/crazyflie/edgectl_controller.c.in (the out-of-tree controller, selected with
stabilizer.controller = 6) step for step; keep the two equal:
- it drives the motors with normalized forces while the supervisor lets the motors run and the
  setpoint asks for thrust (a z position/velocity setpoint, or thrust > 0); otherwise it disengages,
  which is also how a latched fault is cleared;
- its reference is the absolute position setpoint when x, y and z are all absolute, else the
  position where it engaged;
- faults hand the motors to the on-board backup controller (level, hold, descend, land; the C is
  edgectl_backup.c, here edgectl.safety.backup) and latch edgectl.fault: 1 a non-finite
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

The policy is a callable ``policy(vehicle) -> 4 forces in [0, 1]`` with vehicle a dict of the
app's edgectl_vehicle_t fields, in firmware units: position, velocity (m, m/s, world),
quaternion_xyzw, gyro_deg_s, ref_position, ref_velocity, ref_acceleration. A policy with a
``reset()`` gets it when the app engages (the C app resets its action history there), and one with
``last_action`` lets the backup's observers see the policy's action (else it is recovered from the
forces).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .setpoints import MODE_ABS, MODE_DISABLE, Setpoint
from .toc import LOG_FLOAT, LOG_UINT8, LOG_UINT32

LOG_SPEC = [("edgectl", LOG_UINT8, "engaged fault"), ("edgectl", LOG_FLOAT, "robustness"),
            ("edgectl", LOG_UINT32, "steps linkdrops"), ("edgectl", LOG_FLOAT, "scale f1 f2 f3 f4")]

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


def thrust_requested(sp: Setpoint) -> bool:
    return sp.mode_z != MODE_DISABLE or sp.thrust > 0.0


class OnboardApp:
    """``every``: stabilizer ticks per policy step; ``platform``: for the backup controller and the
    on-board monitors (None: faults stop the motors, the app's behaviour before the backup existed,
    kept for policies without a platform); ``set_setpoint``: writes a setpoint into the commander (the
    firmware's commanderSetSetpoint), for the keep-alive."""

    def __init__(self, policy, every: int, *, platform=None, policy_dt: float = 0.01, set_setpoint=None,
                 link_timeout_s: float = DEFAULT_LINK_TIMEOUT_S, monitor: bool = True):
        self.policy, self.every = policy, every
        self.link_timeout_s = float(link_timeout_s)
        self.set_setpoint = set_setpoint
        self.backup = None
        self.monitors = []
        self.b0 = self.b1 = 0.0  # thrust curve of the model (edgectl.contract.thrust_curve)
        if platform is not None:
            from edgectl.safety.backup import BackupController, model_from_platform
            model = model_from_platform(platform)
            self.backup = BackupController(model)
            self.b0, self.b1 = model.thrust_shape
            if monitor:
                from edgectl.safety.monitor import OnlineMonitor
                from export.crazyflie_app import onboard_formulas
                self.monitors = [OnlineMonitor(f, policy_dt) for f in onboard_formulas(platform)]
        self.engaged = False
        self.fault = 0
        self.steps = 0
        self.link_drops = 0  # link backup episodes, handed back or not (edgectl.linkdrops)
        self.link_latched = False
        self._link_tick0 = 0
        self.robustness = 0.0
        self.forces = np.zeros(4)
        self.ref_position = np.zeros(3)
        self.ref_velocity = np.zeros(3)
        self.ref_acceleration = np.zeros(3)
        self._host_stamp = 0.0  # timestamp of the newest setpoint the host (not this app) wrote
        self._own_stamp = math.nan
        self._fed_at = -math.inf
        self.fault_at: float | None = None  # vehicle time the fault latched (for latency figures)

    def disengage(self):
        self.engaged = False
        self.fault = 0
        self.fault_at = None
        self.forces[:] = 0.0

    def step(self, sp: Setpoint, truth: dict, tick: int, now: float = 0.0) -> np.ndarray:
        if sp.timestamp != self._own_stamp:
            self._host_stamp = sp.timestamp
        if not thrust_requested(sp):
            self.disengage()
        elif self.engaged and self._link_step(sp, truth, tick, now):
            pass  # the link backup flew this tick
        elif tick % self.every == 0:
            self._policy_step(sp, truth, now)
        return self.forces

    def _link_step(self, sp: Setpoint, truth: dict, tick: int, now: float) -> bool:
        """The controller's linkStep, every stabilizer tick while engaged: True while the link backup flies."""
        silent = now - self._host_stamp
        if silent <= self.link_timeout_s:
            if self.fault == FAULT_LINK and not self.link_latched:
                self.fault, self.fault_at = 0, None  # heard again in time: the policy flies from its next period
            return False
        if silent > LINK_LATCH_S:
            self.link_latched = True
        if self.fault == 0:
            self._link_tick0 = tick
            self.link_drops += 1
        if self.fault == 0 or (self.fault == FAULT_LINK and (tick - self._link_tick0) % self.every == 0) or \
                (self.fault != FAULT_LINK and tick % self.every == 0):  # other faults keep the policy's period
            self._update_reference(sp)
            self._backup_step(FAULT_LINK if self.fault == 0 else self.fault, truth, now)
        self._keep_alive(now)
        return True

    def _update_reference(self, sp: Setpoint):
        if sp.mode_x == sp.mode_y == sp.mode_z == MODE_ABS:
            self.ref_position = np.array([sp.x, sp.y, sp.z])
        else:
            self.ref_velocity[:] = 0.0
            self.ref_acceleration[:] = 0.0

    # -- the controller's policyStep --------------------------------------------------------------
    def _engage(self, truth: dict):
        self.ref_position = truth["position"].copy()
        self.ref_velocity[:] = 0.0
        self.ref_acceleration[:] = 0.0
        if hasattr(self.policy, "reset"):
            self.policy.reset()
        if self.backup is not None:
            self.backup.state = None
            self.backup.engage(np.zeros(3))
        for m in self.monitors:
            m.reset()
        self.fault, self.fault_at = 0, None
        self._fed_at = -math.inf
        self.link_latched = False
        self.engaged = True

    def _si(self, truth: dict):
        q = truth["quaternion_xyzw"]
        return (np.asarray(truth["position"], float), np.array([q[3], q[0], q[1], q[2]], float),
                np.asarray(truth["velocity"], float), np.radians(np.asarray(truth["gyro_deg_s"], float)))

    def _backup_step(self, reason: int, truth: dict, now: float):
        if self.fault == 0:
            self.fault, self.fault_at = reason, now
            if self.backup is not None:
                self.backup.engage(np.zeros(3))
        if self.backup is None:
            self.forces[:] = 0.0
            return
        a = np.asarray(self.backup(*self._si(truth)), float).reshape(4)
        self.forces = self._action_to_forces(a)

    def _action_to_forces(self, a: np.ndarray) -> np.ndarray:
        from edgectl.platforms import thrust_fraction
        return np.clip(thrust_fraction((np.clip(a, -1.0, 1.0) + 1.0) * 0.5, self.b0, self.b1), 0.0, 1.0)

    def _forces_to_action(self, f: np.ndarray) -> np.ndarray:
        from edgectl.platforms import motor_for_fraction
        return np.clip(2.0 * motor_for_fraction(np.clip(f, 0.0, 1.0), self.b0, self.b1) - 1.0, -1.0, 1.0)

    def _keep_alive(self, now: float):
        if self.set_setpoint is None or (self.backup is not None and self.backup.phase == "landed"):
            return
        if now - self._fed_at >= KEEPALIVE_S:
            x, y, z = (float(v) for v in self.ref_position)
            sp = Setpoint(mode_x=MODE_ABS, mode_y=MODE_ABS, mode_z=MODE_ABS, mode_yaw=MODE_ABS, x=x, y=y, z=z,
                          timestamp=now)
            self.set_setpoint(sp)
            self._own_stamp, self._fed_at = sp.timestamp, now

    def _policy_step(self, sp: Setpoint, truth: dict, now: float):
        if not self.engaged:
            self._engage(truth)
        self._update_reference(sp)
        if self.fault != 0:
            self._backup_step(self.fault, truth, now)
            return
        vehicle = dict(truth, ref_position=self.ref_position.copy(), ref_velocity=self.ref_velocity.copy(),
                       ref_acceleration=self.ref_acceleration.copy())
        if self.monitors:
            from edgectl.safety.signals import signals_from_state
            pos, quat, vel, omega = self._si(truth)
            sig = {k: float(v) for k, v in signals_from_state(pos, quat, vel, omega, self.ref_position).items()}
            self.robustness = min(m.update(sig) for m in self.monitors)
            if not self.robustness >= 0.0:  # NaN is a violation too
                self._backup_step(FAULT_MONITOR, truth, now)
                return
        if not all(np.all(np.isfinite(v)) for v in vehicle.values()):
            self._backup_step(FAULT_OBSERVATION, truth, now)
            return
        try:
            forces = np.asarray(self.policy(vehicle), dtype=float).reshape(4)
        except Exception:
            forces = np.full(4, np.nan)  # a policy that fails is a policy that gave no action
        if not np.all(np.isfinite(forces)):
            self._backup_step(FAULT_ACTION, truth, now)
            return
        self.forces = np.clip(forces, 0.0, 1.0)
        if self.backup is not None:
            a = getattr(self.policy, "last_action", None)
            a = self._forces_to_action(self.forces) if a is None else np.asarray(a, float)
            pos, quat, vel, omega = self._si(truth)
            self.backup.observe(quat, vel, omega, a)
        self.steps += 1

    def log_values(self) -> dict:
        v = {"edgectl.engaged": int(self.engaged), "edgectl.fault": self.fault, "edgectl.steps": self.steps,
             "edgectl.linkdrops": self.link_drops,
             "edgectl.scale": 1.0, "edgectl.robustness": float(self.robustness)}
        for i in range(4):
            v[f"edgectl.f{i + 1}"] = float(self.forces[i])
        return v


class BundlePolicy:
    """A bundle's policy as the app runs it: observation from the vehicle (the contract's fields, the
    app's action history), the policy, the rpm_linear action -> normalized force mapping.
    ``impl``: "c" the float32 C the app links (export/c_codegen.py, compiled for this host), "numpy" the
    bundle's own forward, or the path of an `edgectl export --target c [--int8]` folder of the bundle
    (its edgectl_policy.c, the exact file an app would be built with)."""

    def __init__(self, bundle_path, impl: str = "c"):
        from edgectl.bundle import load_bundle
        from edgectl.safety.shield import check_contract, observation
        self.bundle = load_bundle(Path(bundle_path))
        c = self.contract = self.bundle.contract
        check_contract(c)
        self._observation = observation
        from edgectl.contract import thrust_curve
        self.mapping = c["action"]["mapping"]
        _, self.b0, self.b1 = thrust_curve(self.mapping, f"{bundle_path}: contract.action.mapping")
        self.hover = float(c["action"].get("hover_action", 0.0))
        self.history = sum(f["size"] for f in c["observation"]["fields"] if f["name"] == "previous_actions")
        from edgectl.contract import PositionIntegral
        self.integral = PositionIntegral(c)  # as edgectl_obs_integrate in the C app
        self.rate_hz = float(c["rate_hz"])
        if impl == "numpy":
            self.impl = "numpy (bundle)"
            self._act = lambda obs: np.asarray(self.bundle.act(obs[None]), float).reshape(4)
            self.last_action = None
            self.reset()
            return
        from export.hostc import load_host_policy
        if impl == "c":
            from export.c_codegen import generate_c
            files, self.impl = generate_c(self.bundle), "generated C (float32)"
        else:
            import json
            folder = Path(impl)
            if not (folder / "report.json").is_file() or not (folder / "edgectl_policy.c").is_file():
                raise ValueError(f"on-board policy {impl}: expected c, numpy, or an `edgectl export --target c` folder "
                                 "(report.json, edgectl_policy.c)")
            report = json.loads((folder / "report.json").read_text())
            if report.get("bundle_weights_sha256") != self.bundle.manifest["weights"]["sha256"]:
                raise ValueError(f"on-board policy {impl}: exported from another bundle than {bundle_path}")
            files = {n: (Path(impl) / n).read_text() for n in ("edgectl_policy.h", "edgectl_policy.c")}
            self.impl = f"exported C ({'int8' if report.get('int8') else 'float32'}, {impl})"
        host = load_host_policy(files, c["observation"]["size"], c["action"]["size"])

        def act(obs):
            rc, a = host.step(obs.astype(np.float32))
            return np.full(4, np.nan) if rc != 0 else a.astype(float)
        self._act = act
        self.last_action = None
        self.reset()

    def reset(self):
        self.prev = np.full(self.history, self.hover)
        self.integral.reset()
        self.last_action = None

    def __call__(self, v: dict) -> np.ndarray:
        q = v["quaternion_xyzw"]
        integral = self.integral.update(np.asarray(v["position"], float) - np.asarray(v["ref_position"], float),
                                        v["ref_position"])
        obs = self._observation(self.contract, v["position"], np.array([q[3], q[0], q[1], q[2]]), v["velocity"],
                                np.radians(v["gyro_deg_s"]), self.prev, v["ref_position"], v["ref_velocity"],
                                v["ref_acceleration"], integral=integral)
        a = self._act(np.asarray(obs, float))
        if not np.all(np.isfinite(a)):
            return np.full(4, np.nan)
        a = np.clip(a, -1.0, 1.0)
        if self.history:
            self.prev = np.concatenate([a, self.prev[:-4]])
        self.last_action = a
        u = (a + 1.0) * 0.5
        return self.b0 + u * (self.b1 + u * (1.0 - self.b0 - self.b1))

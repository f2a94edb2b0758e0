"""Transfer bench: fly exported edgectl policies in rotorpy, a multirotor simulator we did not write.

Every number edgectl reports about a policy comes from its own simulators, written from the same platform
file the policy was trained on; a wrong convention in that file (issue 13: the Crazyflie's yaw direction)
is then invisible. rotorpy (pip `rotorpy`, its own Crazyflie model with Förster's 2015 parameters, rotor
drag and motor lag) is an outside judge. The bench flies each bundle the way a vehicle would:

  - the policy is the ONNX model from the project's exporter (export.targets.export, parity-checked),
    run with onnxruntime;
  - its observation is built from rotorpy's state by the runtime's own builder
    (edgectl.observation.observation, edgectl.contract.PositionIntegral), noise-free;
  - its actions go through the contract's action mapping to newtons per rotor, then to rotorpy's
    `cmd_motor_thrusts` control abstraction (rotorpy turns them into rotor-speed commands and its own
    first-order motor lag acts), one command per contract period, rotorpy integrating in between;
  - motors are matched to rotorpy's rotors by position and spin direction, as each side declares them,
    never by index (map_motors).

RAPTOR (pip `foundation-policy`, Eschmann et al. 2025) flies through the same harness from the same
starts as the anchor. Starts are edgectl's hover evaluation distribution (train_fast/tasks/quadrotor_tasks.py,
TaskConfig: position +-0.2 m per axis, tilt up to 90 deg about a uniform axis, velocity +-1 m/s, body rates
+-1 rad/s, rotors at hover speed); an episode survives if the position error stays within the task's
termination bound (0.6 m per axis) and finite; its final error is the mean |p - p_ref| over the last second
(train_fast/evaluate.py's definition), over surviving episodes. Seeded and deterministic.

    python3 bench/transfer.py runs/latest
    python3 bench/transfer.py /tmp/b1 tests/data/hover_wrong_yaw_bundle --episodes 50 --ignore-spin --json

Exit status 0 after a run, 2 with a one-line error for bad input (missing bundle or package, a bundle that
is not a quadrotor's, motors that cannot be matched).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

INSTALL_HINT = 'pip install "edgectl[transfer]"'
VEHICLES = {"crazyflie": "crazyflie_params", "crazyflie_brushless": "crazyfliebrushless_params"}  # rotorpy/vehicles/*.py

# RAPTOR's declared conventions (foundation-policy 1.0.2 README, "Usage"): inputs position, rotation matrix
# (flattened row-major, body to world), linear velocity (world), angular velocity (body), previous action,
# FLU axes; 10 ms steps; previous action [0, 0, 0, 0] at the start; actions in [-1, 1] per motor in the
# order front-right, back-right, back-left, front-left. The package ships no vehicle model: its Crazyflie
# thrust curve and yaw directions are those of RAPTOR's own Crazyflie parameter file (rl-tools/raptor,
# choreo/parameters/crazyflie.json: rotor_thrust_coefficients [0.003525, 0.014373, 0.092230] N over
# throttle u in action_limit [0, 1], rotor_torque_directions z -1, +1, -1, +1), the l2f identification
# FIELD_NOTES section 8 lists.
RAPTOR_NAME = "raptor (foundation-policy)"
RAPTOR_POSITIONS = [[0.028, -0.028, 0.0], [-0.028, -0.028, 0.0], [-0.028, 0.028, 0.0], [0.028, 0.028, 0.0]]
RAPTOR_SPIN = [-1, 1, -1, 1]
RAPTOR_MAPPING = {"kind": "thrust_curve", "thrust_curve": [0.003525, 0.014373, 0.092230],
                  "source": "rl-tools/raptor choreo/parameters/crazyflie.json rotor_thrust_coefficients"}


class TransferError(ValueError):
    """Bad input: the bench prints it on one line and exits 2."""


# --- the two sides' motor tables -----------------------------------------------------------------------
def _quadrant(p) -> str:
    x, y = float(p[0]), float(p[1])
    if x == 0.0 or y == 0.0:
        return ""
    return ("front" if x > 0 else "back") + "-" + ("left" if y > 0 else "right")


def map_motors(positions, spin, rp_positions, rp_directions, *, rp_names=None, check_spin: bool = True,
               who: str = "platform") -> list[int]:
    """For each of the policy's motors (positions (n, 3), body x forward, y left, z up; spin +1 = +z yaw
    torque on the body), the index of the rotorpy rotor in the same body quadrant. rotorpy's rotor_directions
    use the same sign: its yaw moment is rotor_dir * k_m * w^2 about body z (rotorpy/vehicles/multirotor.py,
    Multirotor.compute_body_wrench). Refuses (TransferError) a rotor on an axis, two in one quadrant, a
    quadrant the other side lacks, or, with check_spin, a yaw direction the two sides disagree on."""
    pos, rp = np.asarray(positions, np.float64), np.asarray(rp_positions, np.float64)
    names = list(rp_names) if rp_names is not None else [f"r{j + 1}" for j in range(len(rp))]
    if pos.shape != rp.shape or pos.ndim != 2 or pos.shape[1] != 3:
        raise TransferError(f"{who}: {len(pos)} rotors, rotorpy's vehicle {len(rp)}: cannot map motors")
    theirs: dict[str, int] = {}
    for j, p in enumerate(rp):
        q = _quadrant(p)
        if not q or q in theirs:
            raise TransferError(f"rotorpy rotor {names[j]} at {p.tolist()}: "
                                f"{'on a body axis' if not q else 'shares the ' + q + ' quadrant'}: no unique match by position")
        theirs[q] = j
    out: list[int] = []
    for i, p in enumerate(pos):
        q = _quadrant(p)
        if not q or q not in theirs or theirs[q] in out:
            raise TransferError(f"{who}: M{i + 1} at {p.tolist()} has no unique rotorpy rotor in its quadrant "
                                f"({q or 'on a body axis'}; rotorpy's: {', '.join(f'{names[j]} {k}' for k, j in theirs.items())})")
        j = theirs[q]
        if check_spin and int(np.sign(spin[i])) != int(np.sign(rp_directions[j])):
            raise TransferError(f"{who}: M{i + 1} ({q}) has spin {int(spin[i]):+d} (yaw torque sign), rotorpy's {names[j]} "
                                f"there has rotor_direction {int(rp_directions[j]):+d}: the policy was trained with the "
                                f"wrong yaw for this vehicle (crazyflie-firmware powerDistributionForceTorque: M1 front-right "
                                f"counter-clockwise); --ignore-spin flies it anyway")
        out.append(j)
    return out


def action_to_thrust(mapping: dict, actions) -> np.ndarray:
    """Per-rotor thrust in newtons from actions in [-1, 1] by the contract's action.mapping:
    rpm_linear:   rpm = min_rpm + (clip(a) + 1) / 2 * (max_rpm - min_rpm); thrust = thrust_coefficient * rpm^2
    thrust_curve: u = (clip(a) + 1) / 2; thrust = c0 + c1 u + c2 u^2 (thrust_curve = [c0, c1, c2])."""
    a = np.clip(np.asarray(actions, np.float64), -1.0, 1.0)
    kind = mapping.get("kind")
    try:
        if kind == "rpm_linear":
            lo, hi, k = float(mapping["min_rpm"]), float(mapping["max_rpm"]), float(mapping["thrust_coefficient"])
            rpm = lo + (a + 1.0) * 0.5 * (hi - lo)
            return k * rpm * rpm
        if kind == "thrust_curve":
            c = [float(v) for v in mapping["thrust_curve"]]
            if len(c) != 3:
                raise TransferError(f"action.mapping.thrust_curve: expected [c0, c1, c2], got {mapping['thrust_curve']!r}")
            u = (a + 1.0) * 0.5
            return c[0] + c[1] * u + c[2] * u * u
    except KeyError as e:
        raise TransferError(f"action.mapping (kind {kind!r}): missing key {e.args[0]!r}") from None
    raise TransferError(f"action.mapping.kind {kind!r}: the bench knows 'rpm_linear' and 'thrust_curve'")


# --- rotorpy -----------------------------------------------------------------------------------------------
def _rotorpy():
    try:
        import rotorpy  # noqa: F401
        from rotorpy.vehicles.multirotor import Multirotor
    except ImportError:
        raise TransferError(f"the transfer bench needs rotorpy: {INSTALL_HINT}") from None
    return Multirotor


@dataclass
class Vehicle:
    name: str
    params: dict  # rotorpy quad_params
    names: list  # rotor names in rotorpy's order (the rotor_pos dict's, as Multirotor.extract_geometry stacks them)
    positions: np.ndarray  # (4, 3) m, body frame
    directions: np.ndarray  # (4,) rotor_directions
    min_thrust: float  # N per rotor: k_eta * rotor_speed_min^2
    max_thrust: float  # N per rotor: k_eta * rotor_speed_max^2
    hover_speed: float  # rad/s, each rotor carrying a quarter of the weight


def rotorpy_vehicle(name: str = "crazyflie") -> Vehicle:
    _rotorpy()
    import importlib
    if name not in VEHICLES:
        raise TransferError(f"--vehicle {name!r}: expected one of {', '.join(VEHICLES)}")
    p = importlib.import_module(f"rotorpy.vehicles.{VEHICLES[name]}").quad_params
    names = list(p["rotor_pos"])
    k = float(p["k_eta"])  # rotorpy: thrust = k_eta * w^2 per rotor (Multirotor.compute_body_wrench)
    return Vehicle(name=name, params=p, names=names, positions=np.array([p["rotor_pos"][n] for n in names], np.float64),
                   directions=np.asarray(p["rotor_directions"], np.float64),
                   min_thrust=k * float(p["rotor_speed_min"]) ** 2, max_thrust=k * float(p["rotor_speed_max"]) ** 2,
                   hover_speed=math.sqrt(float(p["mass"]) * 9.81 / (p["num_rotors"] * k)))  # rotorpy's g = 9.81


# --- starts --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StartDistribution:
    """edgectl's hover evaluation starts (train_fast/tasks/quadrotor_tasks.py TaskConfig defaults and reset();
    evaluation draws the tilt angle uniformly, exponent 1). Kept here as numbers so a RAPTOR-only run needs
    no JAX; tests/test_transfer.py checks them against TaskConfig."""
    position: float = 0.2  # m, uniform per axis
    tilt: float = math.pi / 2  # rad, uniform angle about a uniform random axis
    velocity: float = 1.0  # m/s, uniform per axis
    omega: float = 1.0  # rad/s, uniform per axis (body)
    bound: float = 0.6  # m, termination: any axis of the position error

    def sample(self, episodes: int, seed: int) -> list[dict]:
        """Start i is drawn from its own generator (seed, i): the first n starts are the same for any --episodes."""
        out = []
        for i in range(episodes):
            rng = np.random.default_rng([seed, i])
            pos = rng.uniform(-self.position, self.position, 3)
            axis = rng.normal(size=3)
            angle = self.tilt * rng.uniform()
            vel = rng.uniform(-self.velocity, self.velocity, 3)
            omega = rng.uniform(-self.omega, self.omega, 3)
            quat = np.concatenate([[math.cos(angle / 2)], math.sin(angle / 2) * axis / np.linalg.norm(axis)])  # w, x, y, z
            out.append({"pos": pos, "quat_wxyz": quat, "vel": vel, "omega": omega})
        return out


# --- controllers: reset(), then act(pos, quat_wxyz, vel, omega, ref) -> 4 actions in their own motor order ----
class BundleController:
    """The exported ONNX model fed as the runtime feeds it (edgectl/runtime/loop.py ControlLoop._nominal):
    integral updated before the observation, previous actions newest first, starting at hover_action."""

    def __init__(self, contract: dict, onnx_path: Path):
        import onnxruntime as ort

        from edgectl.contract import PositionIntegral
        from edgectl.observation import check_contract, observation
        try:
            check_contract(contract)
        except ValueError as e:
            raise TransferError(str(e)) from None
        self.contract, self.observation = contract, observation
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self.input, self.output = self.sess.get_inputs()[0].name, self.sess.get_outputs()[0].name
        self.history = sum(f["size"] for f in contract["observation"]["fields"] if f["name"] == "previous_actions")
        self.hover = float(contract["action"].get("hover_action", 0.0))
        self.integral = PositionIntegral(contract)
        self.reset()

    def reset(self) -> None:
        self.prev = np.full(self.history, self.hover)
        self.integral.reset()

    def act(self, pos, quat_wxyz, vel, omega, ref) -> np.ndarray:
        integ = self.integral.update(pos - ref, ref)
        obs = self.observation(self.contract, pos, quat_wxyz, vel, omega, self.prev, ref, integral=integ)
        a = self.sess.run([self.output], {self.input: obs[None].astype(np.float32)})[0].reshape(4)
        a = np.clip(np.asarray(a, np.float64), -1.0, 1.0)
        if self.history:
            self.prev = np.concatenate([a, self.prev[:-4]])
        return a


class RaptorController:
    """foundation-policy's RAPTOR: a GRU, so reset() per episode (Sequential.reset) and one evaluate_step a
    period. Its output layer is linear (checkpoint.h5: IDENTITY), so the action is clipped to [-1, 1] here,
    and the clipped action is what it sees as previous action (as l2f applies it)."""

    def __init__(self):
        try:
            from foundation_policy import Raptor
        except ImportError:
            raise TransferError(f"the RAPTOR anchor needs foundation-policy: {INSTALL_HINT} (or --no-raptor)") from None
        from scipy.spatial.transform import Rotation
        self.policy, self.Rotation = Raptor(), Rotation
        self.reset()

    def reset(self) -> None:
        self.policy.reset()
        self.prev = np.zeros(4)

    def act(self, pos, quat_wxyz, vel, omega, ref) -> np.ndarray:
        rot = self.Rotation.from_quat(np.asarray(quat_wxyz)[[1, 2, 3, 0]]).as_matrix().ravel()  # scipy: x, y, z, w
        obs = np.concatenate([pos - ref, rot, vel, omega, self.prev])[None]
        a = np.clip(np.asarray(self.policy.evaluate_step(obs), np.float64).reshape(4), -1.0, 1.0)
        self.prev = a
        return a


# --- the harness -------------------------------------------------------------------------------------------
@dataclass
class Result:
    name: str
    survived: np.ndarray  # (episodes,) bool
    final_error: np.ndarray  # (episodes,) m, nan where terminated
    flown_s: np.ndarray  # (episodes,) s flown before leaving the bound (the episode length for survivors)
    clipped: float  # fraction of rotor commands clipped to rotorpy's thrust range
    wall_s: float

    def summary(self) -> dict:
        ok = self.final_error[self.survived]
        return {"name": self.name, "episodes": int(self.survived.size), "survival_rate": float(self.survived.mean()),
                "final_error_median_m": float(np.median(ok)) if ok.size else None,
                "final_error_p95_m": float(np.percentile(ok, 95, method="higher")) if ok.size else None,
                "terminated_after_median_s": float(np.median(self.flown_s[~self.survived])) if (~self.survived).any() else None,
                "thrust_clipped_fraction": self.clipped, "wall_s": round(self.wall_s, 2)}


def _fly_episodes(make_controller, mapping: dict, motor_map: list[int], vehicle: Vehicle, starts: list[dict],
                  seconds: float, rate_hz: float, bound: float, aero: bool, ref: np.ndarray):
    """(survived, final_error, flown_s, clipped commands, commands) for `starts`, one after another."""
    Multirotor = _rotorpy()
    controller = make_controller()
    dt, steps = 1.0 / rate_hz, int(round(seconds * rate_hz))
    last = max(1, min(steps, int(round(rate_hz))))  # final error: the last second
    survived, final, flown = np.zeros(len(starts), bool), np.full(len(starts), np.nan), np.zeros(len(starts))
    n_clip = n_cmd = 0
    # rotorpy's default integrator (RK45, multirotor.py Multirotor.__init__) with its first step set to the
    # control period: scipy's initial-step search cost 2 of 8 derivative calls a period; trajectories agreed
    # to 1e-8 m on 8 starts (3 s, RAPTOR) and 27 % less wall time. Error control still rejects a bad step.
    integrator = {"method": "RK45", "first_step": dt}
    for e, s in enumerate(starts):
        w, x, y, z = s["quat_wxyz"]
        state = {"x": ref + s["pos"], "v": np.array(s["vel"], np.float64), "q": np.array([x, y, z, w], np.float64),
                 "w": np.array(s["omega"], np.float64), "wind": np.zeros(3),
                 "rotor_speeds": np.full(4, vehicle.hover_speed)}  # rotors at hover, as edgectl's reset()
        quad = Multirotor(vehicle.params, initial_state=state, control_abstraction="cmd_motor_thrusts", aero=aero,
                          integrator_kwargs=integrator)
        controller.reset()
        errs, alive = [], True
        for _ in range(steps):
            q = state["q"]  # rotorpy: scalar last (scipy's x, y, z, w); edgectl's contract: w, x, y, z
            a = controller.act(state["x"], np.array([q[3], q[0], q[1], q[2]]), state["v"], state["w"], ref)
            thrust = action_to_thrust(mapping, a)
            n_clip += int(np.sum((thrust > vehicle.max_thrust) | (thrust < vehicle.min_thrust)))
            n_cmd += thrust.size
            cmd = np.empty(4)
            cmd[motor_map] = np.clip(thrust, vehicle.min_thrust, vehicle.max_thrust)  # policy motor i -> rotorpy rotor motor_map[i]
            state = quad.step(state, {"cmd_motor_thrusts": cmd}, dt)
            err = state["x"] - ref
            if not (np.all(np.isfinite(err)) and np.all(np.isfinite(state["q"])) and np.all(np.abs(err) <= bound)):
                alive = False
                break
            errs.append(float(np.linalg.norm(err)))
        survived[e], flown[e] = alive, (len(errs) + (not alive)) * dt
        if alive:
            final[e] = float(np.mean(errs[-last:]))
    return survived, final, flown, n_clip, n_cmd


def fly(make_controller, mapping: dict, motor_map: list[int], vehicle: Vehicle, starts: list[dict], *, seconds: float,
        rate_hz: float, bound: float, aero: bool = True, name: str = "policy", ref=(0.0, 0.0, 0.0), jobs: int = 1) -> Result:
    """Each start flown for `seconds`: every 1 / rate_hz the controller (`make_controller()`: an object with
    reset() and act(pos, quat_wxyz, vel, omega, ref) -> 4 actions in its own motor order) acts on rotorpy's
    state; its actions become newtons (action_to_thrust), clipped to what rotorpy's rotors can give
    (k_eta * rotor_speed_min^2 .. k_eta * rotor_speed_max^2), routed to rotorpy's rotors by motor_map, and held
    while rotorpy's Multirotor.step integrates one period. `jobs` > 1 splits the starts over worker processes
    (spawned, not forked: the exporter has started JAX's threads by then; make_controller must pickle: a
    module-level class or a functools.partial of one); episodes are independent, so the figures do not depend on it."""
    ref = np.asarray(ref, np.float64)
    args = (mapping, motor_map, vehicle)
    t0 = time.perf_counter()
    if jobs > 1 and len(starts) > 1:
        import multiprocessing
        with multiprocessing.get_context("spawn").Pool(min(jobs, len(starts))) as pool:
            parts = pool.starmap(_fly_episodes, [(make_controller, *args, starts[k::jobs], seconds, rate_hz, bound, aero, ref)
                                                 for k in range(min(jobs, len(starts)))])
        survived, final, flown = np.zeros(len(starts), bool), np.full(len(starts), np.nan), np.zeros(len(starts))
        for k, (sv, fe, fl, _, _) in enumerate(parts):
            survived[k::jobs], final[k::jobs], flown[k::jobs] = sv, fe, fl
        n_clip, n_cmd = sum(p[3] for p in parts), sum(p[4] for p in parts)
    else:
        survived, final, flown, n_clip, n_cmd = _fly_episodes(make_controller, *args, starts, seconds, rate_hz, bound, aero, ref)
    return Result(name, survived, final, flown, n_clip / max(n_cmd, 1), time.perf_counter() - t0)


# --- bundles -----------------------------------------------------------------------------------------------
def load_quadrotor_bundle(path: Path):
    """(bundle, platform) or TransferError naming what is wrong."""
    from edgectl.bundle import BundleError, load_bundle
    from edgectl.platforms import PlatformError, load_platform
    try:
        bundle = load_bundle(path)
        platform = load_platform(bundle.path / "platform.toml")
    except (BundleError, PlatformError) as e:
        raise TransferError(str(e) if str(e).startswith(str(path)) else f"{path}: {e}") from None
    if platform.kind != "quadrotor" or bundle.contract["action"]["size"] != 4:
        raise TransferError(f"{path}: not a quadrotor bundle (platform kind {platform.kind!r}, task {bundle.task_name!r})")
    return bundle, platform


def export_onnx(path: Path, out_dir: Path) -> Path:
    """The project's own exporter (what `edgectl export BUNDLE --target onnx` runs), parity-checked."""
    from export.targets import ExportError, TargetUnavailable, export
    try:
        export(path, "onnx", out_dir, samples=2000)
    except (ExportError, TargetUnavailable) as e:
        raise TransferError(f"{path}: ONNX export: {e}") from None
    return out_dir / "policy.onnx"


def _fell(r: Result) -> str:
    t = r.summary()["terminated_after_median_s"]
    return "" if t is None else f"; the {int((~r.survived).sum())} terminated left the bound after {t:.2f} s (median)"


def _cm(v) -> str:
    return "  n/a" if v is None else f"{100 * v:.1f} cm"


def line(s: dict, vehicle: str, aero: bool) -> str:
    return (f"{s['name']}  survival {100 * s['survival_rate']:.1f} %  median {_cm(s['final_error_median_m'])}  "
            f"p95 {_cm(s['final_error_p95_m'])}  ({s['episodes']} episodes, rotorpy {vehicle}, aero {'on' if aero else 'off'})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundles", nargs="*", default=["runs/latest"], metavar="BUNDLE")
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vehicle", choices=sorted(VEHICLES), default="crazyflie")
    ap.add_argument("--no-raptor", action="store_true", help="skip the RAPTOR anchor")
    ap.add_argument("--no-aero", action="store_true", help="rotorpy without rotor and frame drag (aero=False)")
    ap.add_argument("--ignore-spin", action="store_true",
                    help="map motors by position only and fly a bundle whose yaw directions disagree with rotorpy's "
                         "(what the real vehicle would do with it)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (episodes are split; figures unchanged)")
    ap.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    args = ap.parse_args(argv)
    aero, t_start = not args.no_aero, time.perf_counter()
    try:
        if args.episodes < 1 or not args.seconds > 0 or args.jobs < 1:
            raise TransferError("--episodes and --jobs must be >= 1 and --seconds > 0")
        vehicle = rotorpy_vehicle(args.vehicle)
        dist = StartDistribution()
        starts = dist.sample(args.episodes, args.seed)
        # Check everything before flying anything: a bad bundle fails in seconds, not after a long run.
        jobs = []
        for b in args.bundles:
            bundle, platform = load_quadrotor_bundle(Path(b))
            mapping = bundle.contract["action"]["mapping"]
            action_to_thrust(mapping, np.zeros(4))  # an unknown mapping kind fails here
            spin = platform.get("rotors.spin")
            motor_map = map_motors(platform.get("rotors.positions"), spin, vehicle.positions, vehicle.directions,
                                   rp_names=vehicle.names, check_spin=not args.ignore_spin, who=f"{b}/platform.toml")
            agree = all(np.sign(spin[i]) == np.sign(vehicle.directions[j]) for i, j in enumerate(motor_map))
            jobs.append((b, bundle, mapping, motor_map, agree))
        if not args.no_raptor:
            RaptorController()  # foundation-policy installed and its checkpoint loads
            raptor_map = map_motors(RAPTOR_POSITIONS, RAPTOR_SPIN, vehicle.positions, vehicle.directions,
                                    rp_names=vehicle.names, who="RAPTOR (rl-tools/raptor crazyflie.json)")
        results, notes = [], []
        with tempfile.TemporaryDirectory(prefix="edgectl-transfer-") as tmp:
            for k, (b, bundle, mapping, motor_map, agree) in enumerate(jobs):
                make = functools.partial(BundleController, bundle.contract, export_onnx(Path(b), Path(tmp) / f"onnx{k}"))
                r = fly(make, mapping, motor_map, vehicle, starts, seconds=args.seconds, rate_hz=float(bundle.contract["rate_hz"]),
                        bound=dist.bound, aero=aero, name=b, jobs=args.jobs)
                results.append(r)
                routed = ", ".join(f"M{i + 1}->{vehicle.names[j]}" for i, j in enumerate(motor_map))
                notes.append(f"  {b}: {mapping['kind']} mapping, motors {routed}"
                             + ("" if agree else " BY POSITION ONLY (its spin disagrees with rotorpy's: --ignore-spin)")
                             + _fell(r) + f"; {100 * r.clipped:.2f} % of rotor commands clipped to rotorpy's "
                               f"[{vehicle.min_thrust:.4g}, {vehicle.max_thrust:.4g}] N; {r.wall_s:.0f} s")
        if not args.no_raptor:
            r = fly(RaptorController, RAPTOR_MAPPING, raptor_map, vehicle, starts, seconds=args.seconds, rate_hz=100.0, bound=dist.bound,
                    aero=aero, name=RAPTOR_NAME, jobs=args.jobs)
            results.append(r)
            routed = ", ".join(f"M{i + 1}->{vehicle.names[j]}" for i, j in enumerate(raptor_map))
            notes.append(f"  {RAPTOR_NAME}: thrust curve {RAPTOR_MAPPING['thrust_curve']} N ({RAPTOR_MAPPING['source']}), "
                         f"motors {routed}{_fell(r)}; {100 * r.clipped:.2f} % of rotor commands clipped; {r.wall_s:.0f} s")
    except TransferError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summaries = [r.summary() for r in results]
    for s in summaries:
        print(line(s, args.vehicle, aero))
    for n in notes:
        print(n)
    # rotorpy's aero=True (multirotor.py compute_body_wrench): parasitic frame drag c_D*, rotor drag k_d / induced
    # inflow k_z, translational lift k_h, flapping k_flap; its Crazyflie file sets only k_d and k_z nonzero.
    p = vehicle.params
    terms = ", ".join(k for k in ("c_Dx", "c_Dy", "c_Dz", "k_d", "k_z", "k_h", "k_flap") if p.get(k, 0.0))
    print(f"  rotorpy {args.vehicle}: aero={aero} ({'nonzero: ' + (terms or 'none') if aero else 'no drag'}), "
          f"mass {p['mass']} kg, tau_m {p['tau_m']} s; starts seed {args.seed}; {time.perf_counter() - t_start:.0f} s in all")
    if args.json:
        print(json.dumps({"policies": summaries, "vehicle": args.vehicle, "aero": aero, "episodes": args.episodes,
                          "seconds": args.seconds, "seed": args.seed,
                          "final_error": "mean |p - p_ref| over the last second, surviving episodes",
                          "start": dataclasses.asdict(dist)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The fault matrix: every fault the vehicles, links and tools are built to survive, injected and counted.

One table, one row per (fault, vehicle or parser), each with three counts that must be 0:
- crashes: a vehicle that left the safe set, hit the ground hard (> 1 m/s), flew away, or was still in the air
  when its backup should have landed it;
- corrupted_accepted: a corrupted frame a parser handed on as a valid message;
- silent_failures: a fault nobody noticed or said (no backup took over and nothing was logged; a bad bundle that
  was flown; a flash that reported success with the wrong bytes; a log that lost flushed rows or returned a torn one);
and failures (a check that failed loudly: a re-flash that did not work, a bench error).

Sections (sizes: full / --quick):
- link: the link cut both ways at random instants (100 / 5 per vehicle, fixed seed) of a 10 s flight, then the
  vehicle alone. Crazyflie with the policy on board (the generated app's C compiled for this host, in
  CrazyflieSim: bench/link_cut.run_crazyflie), MAVLink (the host's policy flies the motors of the PX4-like
  SimVehicle: bench/link_cut.run_mavlink), Crazyflie host-flown (stock firmware, the host streaming world velocity
  setpoints at the avoid contract's 20 Hz, as edgectl/runtime/vision_link.py does), rc car (the race bundle driven
  by edgectl.runtime.race.drive, its commands as protocol frames through the car core of `edgectl sim-vehicle
  rc-car`). All in lockstep in this process, faster than real time; the packets go through each vehicle's real
  receive path, where the cut drops them. Takeover latency in control periods of the vehicle's contract.
- fuzz: fuzzed frames per parser (1,000,000 / 20,000): CRTP into the simulated Crazyflie, MAVLink v1, v2, v2
  signed (pymavlink's parser as the bridge and the vehicle use it), the rc car's serial framing
  (bench/fuzz_parsers.py). Half random bytes, half single-bit flips of valid frames.
- bundles: corrupt or mismatched bundles given to `edgectl run` against a live simulated vehicle (MAVLink over
  UDP, Crazyflie in process through cflib): exit 2, one `error:` line, and the vehicle never armed.
- sensors: NaN, inf and stuck sensors (z, vel, gyro, quat / z, vel, stuck z) from 1 s into a hover: the backup
  takes over and lands (Crazyflie on board, MAVLink host-flown).
- flash: the link dropped at a random packet of a 50-page flash (100 / 10): the flash never reports success
  with other bytes on the vehicle, and a re-flash over a new link works.
- signing: a MAVLink vehicle with signing on gets unsigned (v1 and v2), wrong-key and replayed commands: none
  is accepted; a host with a key refuses an unsigned vehicle; the right key works.
- sigkill: `edgectl run --uri sim://` SIGKILLed mid-flight (10 / 2 times): the log holds every row that was on
  disk before the kill, in order, and no torn row.

    python3 bench/faults.py [--quick] [--json] [--only link,fuzz,...] [--seed 0] [--jobs N] [--link-vehicles A,B]

With --json the last stdout line is one JSON object: totals `crashes`, `corrupted_accepted`, `silent_failures`,
`failures`, and `rows` (every row's counts and figures). Exit status 0 when all four totals are 0.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("MAVLINK20", "1")

import fuzz_parsers  # noqa: E402  bench/fuzz_parsers.py
import link_cut  # noqa: E402  bench/link_cut.py

HOVER = ROOT / "tests" / "data" / "hover_bundle"
RACE = ROOT / "tests" / "data" / "race_bundle"
AVOID = ROOT / "tests" / "data" / "avoid_bundle"
VEHICLE = str(HOVER / "platform.toml")  # the simulated quadrotors fly the platform the fixture was trained for
HARD_LANDING_MPS = 1.0  # touchdown faster than this is a crash
SECTIONS = ("link", "fuzz", "bundles", "sensors", "flash", "signing", "sigkill")


@dataclass(frozen=True)
class Sizes:
    cuts: int  # link cuts per vehicle
    frames: int  # fuzzed frames per parser
    sensors: tuple  # (kind, sensor) per vehicle
    flash_cuts: int
    kills: int
    bundles: tuple | None = None  # bundle case names (None: all)
    link_vehicles: tuple | None = None  # LINK_VEHICLES names (None: all)
    sensor_vehicles: tuple | None = None  # "crazyflie on board", "mavlink" (None: both)


ALL_SENSORS = tuple((k, s) for k in ("nan", "inf", "stuck") for s in ("z", "vel", "gyro", "quat"))
FULL = Sizes(cuts=100, frames=1_000_000, sensors=ALL_SENSORS, flash_cuts=100, kills=10)
QUICK = Sizes(cuts=5, frames=20_000, sensors=(("nan", "z"), ("inf", "vel"), ("nan", "quat"), ("stuck", "z")),
              flash_cuts=10, kills=2)
# tests/test_faults.py: the rows that meet the goal, a few trials each (its known-miss tests run the others)
TINY = Sizes(cuts=1, frames=2_000, sensors=(), flash_cuts=2, kills=1,
             bundles=("weights byte flipped", "crazyflie carries another bundle's app", "race bundle on a MAVLink vehicle"),
             link_vehicles=("crazyflie on board", "mavlink"))


def make_row(section: str, name: str, trials: int, *, crashes: int = 0, corrupted: int = 0, silent: int = 0,
             failures: int = 0, figures: dict | None = None, note: str = "", seconds: float = 0.0) -> dict:
    return {"section": section, "row": name, "trials": int(trials), "crashes": int(crashes),
            "corrupted_accepted": int(corrupted), "silent_failures": int(silent), "failures": int(failures),
            "figures": figures or {}, "note": note, "seconds": round(seconds, 1)}


def _pcts(values) -> dict:
    v = np.asarray([x for x in values if x is not None], float)
    if not v.size:
        return {"p50": None, "max": None}
    return {"p50": round(float(np.median(v)), 2), "max": round(float(v.max()), 2)}


# ==================================================================================================
# link loss
# ==================================================================================================
_APP = {}


def _app_image():
    """The hover bundle's app compiled for this host, once per process (host_app caches the build on disk)."""
    if "app" not in _APP:
        from edgectl.bundle import load_bundle
        from firmware_bridge.sim.crazyflie.host_app import AppImage
        _APP["bundle"] = load_bundle(HOVER)
        _APP["app"] = AppImage(_APP["bundle"])
    return _APP["bundle"], _APP["app"]


def cut_crazyflie_onboard(cut_s: float, seed: int, tmp: str) -> dict:
    bundle, app = _app_image()
    r = link_cut.run_crazyflie(cut_s, bundle=bundle, policy=app, seed=seed, log_path=Path(tmp) / f"cf{seed}.csv",
                               vehicle_platform=VEHICLE)
    return _judge_cut(r, period_ms=10.0)


def cut_mavlink(cut_s: float, seed: int, tmp: str) -> dict:
    bundle, _ = _app_image()
    r = link_cut.run_mavlink(cut_s, bundle=bundle, shield=True, seed=seed, log_path=Path(tmp) / f"mav{seed}.csv",
                             vehicle_platform=VEHICLE)
    return _judge_cut(r, period_ms=10.0)


def _judge_cut(r: dict, period_ms: float) -> dict:
    took = r["takeover_at"] is not None
    crash = (not took) or r["min_robustness"] < 0.0 or not r["landed"] or r["z_end"] > 0.06
    return {"latency_periods": None if not took else r["latency_from_cut_ms"] / period_ms,
            "crash": bool(crash), "silent": not (took and r["vehicle_logged"] and r["host_logged"]),
            "detail": {k: r[k] for k in ("cut_at", "latency_from_cut_ms", "min_robustness", "landed", "z_end",
                                         "vehicle_logged", "host_logged")}}


def cut_crazyflie_host(cut_s: float, seed: int, tmp: str) -> dict:
    """Stock firmware flown from the host: take off with position setpoints (50 Hz, as vision_link's ramp), then
    world velocity setpoints at the avoid contract's rate, forward at its speed; the cut `cut_s` into that. The
    vehicle's only rescue is the firmware's commander watchdog (supervisor.c: level out at 0.5 s, motors off and
    locked at 2 s)."""
    from firmware_bridge.crazyflie import crtp
    from firmware_bridge.sim.crazyflie import supervisor as sup
    from firmware_bridge.sim.crazyflie.sim_vehicle import CrazyflieSim
    from edgectl.bundle import load_bundle
    b = load_bundle(AVOID)
    rate = float(b.contract["rate_hz"])
    task = b.manifest["task"]
    fwd, h = float(task["forward_speed"]), float(task["cruise_height"])
    sim = CrazyflieSim(VEHICLE, realtime=False, seed=seed)
    link = sim.open_link(lambda raw: None, "bench")
    sim.set_param("stabilizer.controller", 1)  # the firmware's PID, as vision_link sets it

    def sp(kind, x, y, z):
        return crtp.packet(crtp.GENERIC_SETPOINT, 0, struct.pack("<Bffff", kind, x, y, z, 0.0))
    n_ramp = int(math.ceil(h / 0.4 * 50))
    for k in range(n_ramp + 50):
        link.send(sp(crtp.SP_POSITION, 0.0, 0.0, min(1.0, (k + 1) / n_ramp) * h))
        sim.advance(0.02)
    sim.cut_at = sim.t + cut_s
    period = 1.0 / rate
    took = None
    touchdown = 0.0
    while sim.t < sim.cut_at + 4.0:
        link.send(sp(crtp.SP_VELOCITY_WORLD, fwd, 0.0, 0.0))
        for _ in range(round(period / sim.dt)):
            sim.advance(sim.dt)
            if took is None and sim.t >= sim.cut_at and sim.supervisor.state != sup.FLYING:
                took = sim.t
            x = sim.state()
            if x[2] < 0.1:
                touchdown = max(touchdown, -float(x[9]))
    x = sim.state()
    locked = sim.supervisor.state in (sup.LOCKED, sup.EXCEPT_FREE_FALL)
    crash = touchdown > HARD_LANDING_MPS or x[2] > 0.06 or locked and touchdown > HARD_LANDING_MPS
    return {"latency_periods": None if took is None else (took - sim.cut_at) / period, "crash": bool(crash),
            "silent": took is None,
            "detail": {"touchdown_mps": round(touchdown, 2), "supervisor": sup.STATE_NAMES[sim.supervisor.state]}}


class _Sink:
    """The car's UART output: telemetry frames the host would read (kept only as a count here)."""
    dropped = 0
    path = "lockstep"

    def __init__(self):
        self.bytes = 0

    def write(self, data: bytes) -> None:
        self.bytes += len(data)

    def close(self) -> None:
        pass


class LockstepCar:
    """edgectl.runtime.race.drive's car: each command goes out as a COMMAND frame (the protocol's encoder) into the
    car core of the simulated car (firmware_bridge/sim/rccar/sim_car.SimCar, as `edgectl sim-vehicle rc-car` runs it),
    unless the cut is in force; the car then steps one control period; the pose is the true one while the link is
    up (the odometry of a serial car is tested elsewhere) and nothing after the cut."""
    kind = "serial protocol (lockstep)"

    def __init__(self, car, cut_at: float, timeout_ms: int = 200):
        from firmware_bridge.rccar import protocol as P
        self.P, self.car, self.timeout_ms = P, car, timeout_ms
        car._io = _Sink()
        car.cut_at = cut_at
        self.seq = 0
        self._feed(P.Arm())
        self.failsafe_at = None

    def _feed(self, msg) -> None:
        frame = self.P.encode(msg, self.seq)
        self.seq = (self.seq + 1) & 0xFFFF
        if not self.car.link_cut():
            self.car.core.feed(frame, self.car.now_ms())

    def step(self) -> None:
        from firmware_bridge.rccar.protocol import Flag
        car = self.car
        car.t += car.dt
        car._step()
        if self.failsafe_at is None and car.core.flags & Flag.FAILSAFE:
            self.failsafe_at = car.t

    def read(self):
        from edgectl.runtime.race import CarPose
        if self.car.link_cut():
            return None
        s = self.car.state
        return CarPose(time.monotonic(), s["x"], s["y"], s["yaw"], s["vx"], s["yaw_rate"])

    def send(self, action) -> None:
        P = self.P
        self._feed(P.Command(P.to_permille(float(action[0]), "steer"), P.to_permille(float(action[1]), "throttle"),
                             self.timeout_ms))
        self.step()

    def close(self) -> None:
        pass


def cut_rc_car(cut_s: float, seed: int, tmp: str) -> dict:
    from edgectl.bundle import load_bundle
    from edgectl.platforms import parse_platform
    from edgectl.runtime.race import LapTracker, drive
    from firmware_bridge.sim.rccar.sim_car import SimCar
    from edgectl.tracks import parse_track
    b = load_bundle(RACE)
    plat = parse_platform((b.path / "platform.toml").read_bytes(), b.path / "platform.toml")
    track = parse_track((b.path / "track.csv").read_bytes(), b.path / "track.csv")
    tracker = LapTracker(track, b.contract, plat.get("body.length"), plat.get("body.width"))
    x0, y0, yaw0 = float(track.points[0, 0]), float(track.points[0, 1]), float(track.heading[0])
    car = SimCar(str(b.path / "platform.toml"), x=x0, y=y0, yaw=yaw0, seed=seed)
    rate = float(b.contract["rate_hz"])
    lc = LockstepCar(car, cut_at=cut_s)
    rep = drive(lc, tracker, b.act, rate_hz=rate, seconds=10.0, realtime=False)
    # the car alone after the host's loop: until it stands
    edge_after_cut, prev = 0.0, None
    for px, py, pyaw in [(p[1], p[2], p[3]) for p in rep.path if p[0] >= cut_s]:
        edge_after_cut = max(edge_after_cut, tracker.excess(px, py, pyaw))
    t_end = car.t + 3.0
    while car.t < t_end:
        s = car.state
        if prev is not None:
            tracker.update(prev[0], prev[1], s["x"], s["y"])
        prev = (s["x"], s["y"])
        edge_after_cut = max(edge_after_cut, tracker.excess(s["x"], s["y"], s["yaw"]))
        if abs(s["vx"]) < 0.02:
            break
        lc.step()
    stopped = abs(car.state["vx"]) < 0.05
    host_saw = any(e[2] == "backup" and cut_s - 1e-9 <= e[0] <= cut_s + 0.2 for e in rep.events)  # the host's log
    return {"latency_periods": None if lc.failsafe_at is None else (lc.failsafe_at - cut_s) * rate,
            "crash": bool(edge_after_cut > 0.0 or not stopped or lc.failsafe_at is None),
            "silent": not (lc.failsafe_at is not None and car.core.counters()["failsafe"] == 1 and host_saw),
            "detail": {"edge_excess_after_cut_m": round(edge_after_cut, 3), "stopped": stopped,
                       "host_event": host_saw}}


LINK_VEHICLES = {"crazyflie on board": cut_crazyflie_onboard, "crazyflie host-flown": cut_crazyflie_host,
                 "mavlink": cut_mavlink, "rc car": cut_rc_car}
LINK_CUT_RANGE = {"crazyflie on board": (0.5, 9.5), "mavlink": (0.5, 9.5), "crazyflie host-flown": (0.5, 9.5),
                  "rc car": (1.0, 9.0)}


def _cut_task(args):
    name, cut_s, seed, tmp = args
    t0 = time.perf_counter()
    try:
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            out = LINK_VEHICLES[name](cut_s, seed, tmp)
    except Exception as e:  # noqa: BLE001  a bench error is a failure of its row, with its message
        out = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc(limit=3)}
    out["seconds"] = time.perf_counter() - t0
    return name, out


def section_link(sizes: Sizes, seed: int, jobs: int = 1) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="faults_link_") as tmp:
        tasks = []
        vehicles = sizes.link_vehicles or tuple(LINK_VEHICLES)
        for name in vehicles:
            lo, hi = LINK_CUT_RANGE[name]
            cuts = np.random.default_rng(seed).uniform(lo, hi, sizes.cuts)
            tasks += [(name, float(c), i, tmp) for i, c in enumerate(cuts)]
        if jobs > 1:
            import multiprocessing as mp
            with mp.get_context("fork").Pool(jobs) as pool:
                results = pool.map(_cut_task, tasks, chunksize=1)
        else:
            results = [_cut_task(t) for t in tasks]
    for name in vehicles:
        rs = [r for n, r in results if n == name]
        errors = [r for r in rs if "error" in r]
        ok = [r for r in rs if "error" not in r]
        lat = _pcts(r["latency_periods"] for r in ok)
        figures = {"takeover_periods": lat, "took_over": sum(r["latency_periods"] is not None for r in ok)}
        if name == "crazyflie host-flown":
            figures["touchdown_mps_max"] = max((r["detail"]["touchdown_mps"] for r in ok), default=None)
        if name == "rc car":
            figures["edge_excess_after_cut_m_max"] = max((r["detail"]["edge_excess_after_cut_m"] for r in ok), default=None)
        if name in ("crazyflie on board", "mavlink"):
            figures["min_robustness_m"] = round(min((r["detail"]["min_robustness"] for r in ok), default=float("nan")), 3)
        rows.append(make_row("link", name, len(rs), crashes=sum(r["crash"] for r in ok),
                             silent=sum(r["silent"] for r in ok), failures=len(errors), figures=figures,
                             note="; ".join(e["error"] for e in errors[:2]),
                             seconds=sum(r["seconds"] for r in rs)))
    return rows


# ==================================================================================================
# fuzzing
# ==================================================================================================
def section_fuzz(sizes: Sizes, seed: int) -> list[dict]:
    rows = []
    n = sizes.frames
    runs = [("CRTP (simulated Crazyflie)", lambda: fuzz_parsers.fuzz_crtp(n, seed)),
            ("MAVLink v1", lambda: fuzz_parsers.fuzz_mavlink(n, seed, version=1)),
            ("MAVLink v2", lambda: fuzz_parsers.fuzz_mavlink(n, seed, version=2)),
            ("MAVLink v2 signed", lambda: fuzz_parsers.fuzz_mavlink(n, seed, version=2, signed=True)),
            ("rc car serial", lambda: fuzz_parsers.fuzz_serial(n, seed))]
    for name, fn in runs:
        t0 = time.perf_counter()
        try:
            r = fn()
        except Exception as e:  # noqa: BLE001
            rows.append(make_row("fuzz", name, n, failures=1, note=f"{type(e).__name__}: {e}"))
            continue
        raised = r.get("raised", r.get("parser_raised", 0))
        failures = 0
        note = ""
        if name.startswith("CRTP") and not r["still_answers"]:
            failures, note = 1, "the vehicle stopped answering after the fuzz"
        if "valid_accepted" in r and r["valid_accepted"].split("/")[0] != r["valid_accepted"].split("/")[1]:
            failures, note = 1, f"valid frames accepted {r['valid_accepted']}"
        rows.append(make_row("fuzz", name, n, crashes=raised, corrupted=r.get("corrupted_accepted", 0),
                             failures=failures, note=note, seconds=time.perf_counter() - t0,
                             figures={"uncaught_exceptions": raised, **{k: v for k, v in r.items()
                                                                        if k not in ("frames", "raised", "parser_raised")}}))
    return rows


# ==================================================================================================
# bundles: refused before arming
# ==================================================================================================
def _rewrite_manifest(root: Path, edit) -> None:
    m = json.loads((root / "bundle.json").read_text())
    edit(m)
    (root / "bundle.json").write_text(json.dumps(m, indent=1))


def _rehash(root: Path) -> None:
    from edgectl.bundle import sha256_file

    def edit(m):
        m["weights"]["sha256"] = sha256_file(root / m["weights"]["file"])
        m["platform"]["sha256"] = sha256_file(root / m["platform"]["file"])
    _rewrite_manifest(root, edit)


def _flip_byte(path: Path, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0x01
    path.write_bytes(bytes(data))


def _nan_weights(root: Path) -> None:
    with np.load(root / "weights.npz") as z:
        arrays = {k: z[k].copy() for k in z.files}
    k = sorted(arrays)[0]
    arrays[k].reshape(-1)[3] = np.nan
    np.savez(root / "weights.npz", **arrays)
    _rehash(root)


def _other_bundle(dst: Path) -> Path:
    """The hover bundle with its weights changed a little: the same contract, another policy."""
    from edgectl.bundle import load_bundle, write_bundle
    b = load_bundle(HOVER)
    m = b.manifest
    with np.load(HOVER / "weights.npz") as z:
        weights = {k: z[k] * np.float32(1.01) for k in z.files}
    return write_bundle(dst, contract=m["contract"], policy=m["policy"], weights=weights,
                        platform_toml=(HOVER / "platform.toml").read_bytes(), platform_name=m["platform"]["name"],
                        task=m["task"], seed=int(m["seed"]) + 1, metrics=m["metrics"], versions=m["versions"])


BUNDLE_CASES = {
    # name: (source bundle, edit(root), vehicle, extra CLI args)
    "weights byte flipped": (HOVER, lambda r: _flip_byte(r / "weights.npz"), "mavlink", ()),
    "weights truncated (hash updated)": (HOVER, lambda r: ((r / "weights.npz").write_bytes((r / "weights.npz").read_bytes()[:200]), _rehash(r)), "mavlink", ()),
    "weights NaN (hash updated)": (HOVER, _nan_weights, "mavlink", ()),
    "weights missing": (HOVER, lambda r: (r / "weights.npz").unlink(), "mavlink", ()),
    "bundle.json truncated": (HOVER, lambda r: (r / "bundle.json").write_text((r / "bundle.json").read_text()[:300]), "mavlink", ()),
    "bundle.json missing": (HOVER, lambda r: (r / "bundle.json").unlink(), "mavlink", ()),
    "platform.toml edited": (HOVER, lambda r: (r / "platform.toml").write_text((r / "platform.toml").read_text().replace("0.0306", "0.0406", 1)), "mavlink", ()),
    "contract action size changed": (HOVER, lambda r: _rewrite_manifest(r, lambda m: m["contract"]["action"].__setitem__("size", 3)), "mavlink", ()),
    "contract observation field renamed": (HOVER, lambda r: _rewrite_manifest(r, lambda m: m["contract"]["observation"]["fields"][0].__setitem__("name", "position_err")), "mavlink", ()),
    "race bundle on a MAVLink vehicle": (RACE, None, "mavlink", ()),
    "avoid bundle on a MAVLink vehicle": (AVOID, None, "mavlink", ()),
    "--policy export of another bundle": (HOVER, None, "mavlink", ("--policy", "{other_export}")),
    "crazyflie carries another bundle's app": (HOVER, None, "crazyflie:other", ()),
    "crazyflie without the edgectl app": (HOVER, None, "crazyflie:stock", ()),
    "corrupt bundle on a crazyflie": (HOVER, lambda r: _flip_byte(r / "weights.npz"), "crazyflie:own", ()),
}
CONTROL_CASE = ("the bundle on a crazyflie carrying its own app (control: must fly)", (HOVER, None, "crazyflie:own", ()))


def _run_cli(args: list[str]) -> tuple[int, str]:
    from typer.testing import CliRunner

    from edgectl.cli import app
    r = CliRunner().invoke(app, args)
    out = r.output
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        out += "".join(traceback.format_exception(r.exception))
    return r.exit_code, out


def _bundle_case(name: str, tmp: Path) -> dict:
    src, edit, vehicle, extra = BUNDLE_CASES[name] if name in BUNDLE_CASES else dict([CONTROL_CASE])[name]
    root = tmp / name.replace(" ", "_").replace("/", "_").replace("'", "")
    shutil.copytree(src, root)
    if edit is not None:
        edit(root)
    extra = list(extra)
    if "{other_export}" in extra:
        other = _other_bundle(tmp / "other_for_export")
        exp = tmp / "other_export"
        code, out = _run_cli(["export", str(other), "--target", "c", "--out", str(exp), "--overwrite"])
        if code != 0:
            raise RuntimeError(f"could not export the other bundle: {out[-500:]}")
        extra = [a.replace("{other_export}", str(exp)) for a in extra]
    armed = False
    if vehicle == "mavlink":
        from firmware_bridge.sim.mavlink.sim_vehicle import SimVehicle
        v = SimVehicle("udpin:127.0.0.1:0", platform=VEHICLE)
        v.start()
        try:
            host, port = v.address
            code, out = _run_cli(["run", str(root), "--uri", f"udpout:{host}:{port}", "--seconds", "0.5",
                                  "--log", str(tmp / "run.csv"), *extra])
            time.sleep(0.05)
            # connecting raises the stream rates (COMMAND_LONG); arming follows the first motor commands
            armed = bool(v.armed or v.counters["rx SET_ACTUATOR_CONTROL_TARGET"] or v.mode_name == "OFFBOARD")
        finally:
            v.stop()
    else:
        from firmware_bridge.sim.crazyflie.sim_vehicle import CrazyflieSim
        kind = vehicle.split(":")[1]
        kw = {}
        if kind == "other":
            kw = dict(bundle=_other_bundle(tmp / "other_onboard"), onboard_impl="numpy")
        elif kind == "own":
            kw = dict(bundle=HOVER, onboard_impl="numpy")
        sim = CrazyflieSim(VEHICLE, **kw)
        uri = sim.serve_inprocess(f"faults/{root.name}")
        sim.start()
        try:
            deadline = time.monotonic() + 3.0  # the Crazyflie 2.1 arms itself once its checks pass (auto-arming)
            while sim.supervisor.state < 4 and time.monotonic() < deadline:  # 4: ready to fly (supervisor.py)
                time.sleep(0.01)
            armed0 = sim.supervisor.armed
            code, out = _run_cli(["run", str(root), "--uri", uri, "--seconds", "0.5", "--log", str(tmp / "run.csv"), *extra])
            # the link selects the app (controller 6) and arms before the take-off
            armed = bool(sim.supervisor.armed != armed0 or sim.param("stabilizer.controller") == 6)
        finally:
            sim.close()
    lines = [ln for ln in out.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    refused = code == 2 and len(errors) == 1 and "Traceback" not in out and not armed
    return {"refused": refused, "armed": armed, "exit": code, "message": errors[0] if errors else out.strip()[-300:],
            "lines": len(lines)}


def section_bundles(sizes: Sizes, seed: int) -> list[dict]:
    names = sizes.bundles or tuple(BUNDLE_CASES)
    t0 = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory(prefix="faults_bundles_") as tmp:
        for name in names:
            case_dir = Path(tmp) / f"case{len(results)}"
            case_dir.mkdir()
            try:
                with redirect_stderr(io.StringIO()):
                    results[name] = _bundle_case(name, case_dir)
            except Exception as e:  # noqa: BLE001
                results[name] = {"error": f"{type(e).__name__}: {e}"}
        # the control: the checks above must be able to see a bundle that is flown
        try:
            with redirect_stderr(io.StringIO()):
                (Path(tmp) / "control").mkdir()
                control = _bundle_case(CONTROL_CASE[0], Path(tmp) / "control")
        except Exception as e:  # noqa: BLE001
            control = {"armed": False, "exit": None, "message": f"{type(e).__name__}: {e}"}
    errors = {n: r["error"] for n, r in results.items() if "error" in r}
    if not (control["armed"] and control["exit"] == 0):
        errors["control"] = f"the good bundle was not flown (exit {control['exit']}): {control['message']}"
    flown = [n for n, r in results.items() if "error" not in r and r["armed"]]
    unclear = [n for n, r in results.items() if "error" not in r and not r["armed"] and not r["refused"]]
    note = "; ".join([f"{n}: ARMED/FLOWN (exit {results[n]['exit']})" for n in flown]
                     + [f"{n}: exit {results[n]['exit']}, {results[n]['lines']} lines" for n in unclear]
                     + [f"{n}: {e}" for n, e in errors.items()])
    return [make_row("bundles", "corrupt or mismatched bundle, `edgectl run`", len(names), silent=len(flown),
                     failures=len(unclear) + len(errors), seconds=time.perf_counter() - t0, note=note,
                     figures={"refused_before_arming": sum(1 for r in results.values() if r.get("refused")),
                              "cases": {n: (r.get("message") or r.get("error", ""))[:160] for n, r in results.items()}})]


# ==================================================================================================
# sensors
# ==================================================================================================
def _inf_instead_of_nan(measured):
    def wrapped():
        out = measured()
        if isinstance(out, tuple):
            return tuple(np.where(np.isnan(a), np.inf, a) for a in out)
        return np.where(np.isnan(out), np.inf, out)
    return wrapped


def _judge_landing(trace: link_cut.Trace) -> dict:
    pos = np.array([r[0] for r in trace.rows])
    vel = np.array([r[2] for r in trace.rows])
    quat = np.array([r[1] for r in trace.rows])
    low = pos[:, 2] < 0.1
    touchdown = float(max(0.0, -vel[low, 2].min())) if np.any(low) else 0.0
    tilt = float(np.degrees(np.max(np.arccos(np.clip(1.0 - 2.0 * (quat[:, 1] ** 2 + quat[:, 2] ** 2), -1.0, 1.0)))))
    away = float(np.max(np.linalg.norm(pos[:, :2] - link_cut.REF[:2], axis=1)))
    landed = pos[-1, 2] < 0.06 and np.linalg.norm(vel[-1]) < 0.05
    crash = (not landed) or touchdown > HARD_LANDING_MPS or away > 1.0 or pos[:, 2].max() > link_cut.REF[2] + 1.0 or tilt > 90.0
    return {"landed": bool(landed), "touchdown_mps": round(touchdown, 2), "max_tilt_deg": round(tilt, 1),
            "max_horizontal_m": round(away, 2), "max_z_m": round(float(pos[:, 2].max()), 2), "crash": bool(crash)}


def sensor_crazyflie(kind: str, sensor: str, seed: int) -> dict:
    from edgectl.runtime.loop import ControlLoop, LoopConfig
    from edgectl.safety.backup import BackupController
    from firmware_bridge.sim.crazyflie.sim_vehicle import CrazyflieSim
    bundle, app = _app_image()
    platform = link_cut._platform(bundle)
    fault = {"stuck_sensor": sensor} if kind == "stuck" else {"nan_sensor": sensor}
    sim = CrazyflieSim(VEHICLE, realtime=False, onboard_policy=app, seed=seed, sensor_fault_at=1e9, **fault)
    if kind == "inf":
        sim.measured = _inf_instead_of_nan(sim.measured)
    sim.set_param("stabilizer.controller", 6)
    trace = link_cut.Trace()
    link = link_cut.LockstepCrazyflie(sim, trace, 1e9)
    _start = link.start

    def start(ref):  # the fault 1 s after the take-off, into the hover
        _start(ref)
        sim.sensor_fault_at = sim.t + 1.0
    link.start = start
    loop = ControlLoop(link, None, bundle.contract, BackupController(platform),
                       LoopConfig(rate_hz=100.0, seconds=3.0, realtime=False), ref=tuple(link_cut.REF))
    rep = loop.run()
    t_fault = sim.sensor_fault_at
    while sim.t < t_fault + 14.0:  # the host is done: the vehicle alone (its link watchdog too)
        link.tick(keepalive=False)
    a = sim.onboard
    took = a.fault not in (0, 4) or any("vehicle: fault" in e[3] for e in rep.events)
    took_at = a.fault_at if a.fault not in (0, 4) else None
    return {"took_over": bool(took), "latency_periods": None if took_at is None else (took_at - t_fault) * 100.0,
            "fault": int(a.fault), **_judge_landing(trace)}


def sensor_mavlink(kind: str, sensor: str, seed: int) -> dict:
    from edgectl.runtime.loop import BACKUP, ControlLoop, LoopConfig
    from edgectl.safety.backup import BackupController
    from edgectl.safety.shield import Shield
    from firmware_bridge.sim.mavlink.sim_vehicle import SimVehicle
    from edgectl.plant import quadrotor as qd
    bundle, _ = _app_image()
    platform = link_cut._platform(bundle)
    fault = {"stuck_sensor": sensor} if kind == "stuck" else {"nan_sensor": sensor}
    v = SimVehicle("udpin:127.0.0.1:0", speed=0, seed=seed, noise=True, platform=VEHICLE, sensor_fault_at=1.0, **fault)
    if kind == "inf":
        v.measured = _inf_instead_of_nan(v.measured)
    try:
        v.phys.state[0:3] = link_cut.REF
        v.phys.state[qd.MOTOR] = BackupController(platform).model.hover_motor
        trace = link_cut.Trace()
        link = link_cut.LockstepMavlink(v, trace)
        loop = ControlLoop(link, bundle.act, bundle.contract, BackupController(platform),
                           LoopConfig(rate_hz=100.0, seconds=15.0, realtime=False),
                           shield=Shield(bundle.act, bundle.contract, platform), ref=tuple(link_cut.REF))
        rep = loop.run()
        first = next((e for e in rep.events if e[2] == BACKUP), None)
        return {"took_over": first is not None, "latency_periods": None if first is None else (first[0] - 1.0) * 100.0,
                "reason": first[3][:80] if first else "", **_judge_landing(trace)}
    finally:
        v.conn.close()


def section_sensors(sizes: Sizes, seed: int) -> list[dict]:
    rows = []
    for vehicle, fn in (("crazyflie on board", sensor_crazyflie), ("mavlink", sensor_mavlink)):
        if sizes.sensor_vehicles is not None and vehicle not in sizes.sensor_vehicles:
            continue
        for kind in ("nan", "inf", "stuck"):
            cases = [s for k, s in sizes.sensors if k == kind]
            if not cases:
                continue
            t0 = time.perf_counter()
            res, errors = {}, {}
            for sensor in cases:
                try:
                    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
                        res[sensor] = fn(kind, sensor, seed)
                except Exception as e:  # noqa: BLE001
                    errors[sensor] = f"{type(e).__name__}: {e}"
            crashes = [s for s, r in res.items() if r["crash"]]
            silent = [s for s, r in res.items() if not r["took_over"]]
            note = "; ".join([f"{s}: no backup" for s in silent]
                             + [f"{s}: crash (touchdown {res[s]['touchdown_mps']} m/s, tilt {res[s]['max_tilt_deg']} deg, "
                                f"drift {res[s]['max_horizontal_m']} m, z max {res[s]['max_z_m']} m, landed {res[s]['landed']})"
                                for s in crashes]
                             + [f"{s}: {e}" for s, e in errors.items()])
            rows.append(make_row("sensors", f"{kind} sensor ({', '.join(cases)}), {vehicle}", len(cases),
                                 crashes=len(crashes), silent=len(silent), failures=len(errors), note=note,
                                 seconds=time.perf_counter() - t0,
                                 figures={"backup_took_over": len(res) - len(silent),
                                          "landed": sum(r["landed"] for r in res.values()),
                                          "takeover_periods": _pcts(r["latency_periods"] for r in res.values()),
                                          "touchdown_mps_max": max((r["touchdown_mps"] for r in res.values()), default=None),
                                          "drift_m_max": max((r["max_horizontal_m"] for r in res.values()), default=None)}))
    return rows


# ==================================================================================================
# flash
# ==================================================================================================
def section_flash(sizes: Sizes, seed: int) -> list[dict]:
    import logging
    quiet = logging.getLogger("firmware_bridge.crazyflie.flash")  # "flash attempt N failed": expected here
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return _flash_rows(sizes, seed)
    finally:
        quiet.setLevel(level)


def _flash_rows(sizes: Sizes, seed: int) -> list[dict]:
    from firmware_bridge.crazyflie.flash import FlashError, flash
    from firmware_bridge.sim.crazyflie.sim_vehicle import CrazyflieSim
    rng = random.Random(seed)
    t0 = time.perf_counter()
    image = rng.randbytes(50 * 1024)
    sim = CrazyflieSim(speed=4.0)
    uri = sim.serve_inprocess(f"faults/flash{seed}")
    sim.start()
    silent = failures = reported = 0
    pages, notes = [], []
    try:
        rx0 = sim.stats.rx
        flash(uri, image, reply_timeout=0.1, retries=0, boot_firmware=False)
        per_flash = sim.stats.rx - rx0  # packets from the host in one whole flash with read-back
        for i in range(sizes.flash_cuts):
            other = rng.randbytes(len(image))  # each attempt writes new bytes: old ones cannot pass for them
            sim.drop_link(after_packets=rng.randrange(1, per_flash))
            try:
                rep = flash(uri, other, reply_timeout=0.1, retries=0, boot_firmware=False)
            except FlashError as e:
                reported += 1
                pages.append(e.page)
            else:
                on_vehicle = bytes(sim.bootloader.flash[16 * 1024:16 * 1024 + len(other)])
                if on_vehicle != other or not rep.verified:
                    silent += 1
                    notes.append(f"cut {i}: reported success with other bytes on the vehicle")
            try:
                rep = flash(uri, other, reply_timeout=0.1, retries=0, boot_firmware=False)
                if bytes(sim.bootloader.flash[16 * 1024:16 * 1024 + len(other)]) != other:
                    silent += 1
                    notes.append(f"re-flash {i}: reported success, wrong bytes")
            except FlashError as e:
                failures += 1
                notes.append(f"re-flash {i} failed: {e}")
    finally:
        sim.close()
    return [make_row("flash", "link dropped at a random packet, then re-flashed", sizes.flash_cuts, silent=silent,
                     failures=failures, note="; ".join(notes[:3]), seconds=time.perf_counter() - t0,
                     figures={"interrupted_reported": reported, "packets_per_flash": per_flash,
                              "pages_hit": sorted(set(p for p in pages if p is not None))[:12],
                              "reflash_ok": sizes.flash_cuts - failures})]


# ==================================================================================================
# signing
# ==================================================================================================
def section_signing(sizes: Sizes, seed: int) -> list[dict]:
    from firmware_bridge.mavlink._mav import mavlink
    from firmware_bridge.sim.mavlink.sim_vehicle import SimVehicle
    t0 = time.perf_counter()
    key = hashlib.sha256(b"edgectl faults bench").digest()
    v = SimVehicle("udpin:127.0.0.1:0", signing_key=key, platform=VEHICLE)
    v.start()
    accepted, sent, notes = 0, 0, []
    host_silent = 0
    try:
        addr = v.address
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

        def sender(sign_key=None, v1=False, ts=None):
            mav = mavlink.MAVLink(None, srcSystem=255, srcComponent=190)
            if sign_key is not None:
                mav.signing.secret_key, mav.signing.sign_outgoing, mav.signing.link_id = sign_key, True, 2
                if ts is not None:
                    mav.signing.timestamp = ts
            return lambda msg: msg.pack(mav, force_mavlink1=v1)

        def commands(pack):
            m = mavlink.MAVLink(None)
            return [pack(m.command_long_encode(1, 1, mavlink.MAV_CMD_COMPONENT_ARM_DISARM, 0, 1, 0, 0, 0, 0, 0, 0)),
                    pack(m.set_mode_encode(1, 1, 0)),
                    pack(m.set_actuator_control_target_encode(0, 0, 1, 1, [0.9] * 4 + [0.0] * 4)),
                    pack(m.set_attitude_target_encode(0, 1, 1, 0, [1, 0, 0, 0], 0, 0, 0, 0.9))]
        kinds = {"unsigned v2": sender(), "unsigned v1": sender(v1=True), "wrong key": sender(bytes(32))}
        rx_types = ("COMMAND_LONG", "SET_MODE", "SET_ACTUATOR_CONTROL_TARGET", "SET_ATTITUDE_TARGET")
        reps = 25 if sizes.cuts >= 100 else 5
        for name, pack in kinds.items():
            before = sum(v.counters[f"rx {t}"] for t in rx_types)
            for _ in range(reps):
                for frame in commands(pack):
                    sock.sendto(frame, addr)
                    sent += 1
                time.sleep(0.005)
            time.sleep(0.1)
            got = sum(v.counters[f"rx {t}"] for t in rx_types) - before
            if got or v.armed:
                accepted += got + int(v.armed)
                notes.append(f"{name}: {got} accepted")
        # the right key works; a replay of that very frame afterwards does not
        good = sender(key, ts=int((time.time() - 1420070400) * 1e5))
        arm = good(mavlink.MAVLink(None).command_long_encode(1, 1, mavlink.MAV_CMD_COMPONENT_ARM_DISARM, 0, 1, 0, 0, 0, 0, 0, 0))
        sock.sendto(arm, addr)
        time.sleep(0.1)
        right_key_ok = bool(v.armed)
        if not right_key_ok:
            notes.append("the right key did not arm")
        disarm = good(mavlink.MAVLink(None).command_long_encode(1, 1, mavlink.MAV_CMD_COMPONENT_ARM_DISARM, 0, 0, 0, 0, 0, 0, 0, 0))
        sock.sendto(disarm, addr)
        time.sleep(0.1)
        before = v.counters["rx COMMAND_LONG"]
        for _ in range(reps):
            sock.sendto(arm, addr)  # replayed: its timestamp is no longer new
            sent += 1
        time.sleep(0.1)
        replayed = v.counters["rx COMMAND_LONG"] - before + int(v.armed)
        if replayed:
            accepted += replayed
            notes.append(f"replay: {replayed} accepted")
        sock.close()
    finally:
        v.stop()
    # the host side: a link with a key does not fly an unsigned vehicle
    from edgectl.runtime.links import MavlinkMotorLink
    plain = SimVehicle("udpin:127.0.0.1:0", platform=VEHICLE)
    plain.start()
    try:
        host, port = plain.address
        try:
            link = MavlinkMotorLink(f"udpout:{host}:{port}", signing_key=key, connect_timeout=1.0)
        except Exception as e:  # noqa: BLE001  refused, saying why
            host_msg = str(e)
        else:
            link.close()
            host_silent, host_msg = 1, "connected to an unsigned vehicle"
            notes.append("a host with a key flew an unsigned vehicle")
    finally:
        plain.stop()
    return [make_row("signing", "unsigned / wrong-key / replayed MAVLink to a signing vehicle", sent,
                     corrupted=accepted, silent=host_silent, failures=int(not right_key_ok),
                     note="; ".join(notes), seconds=time.perf_counter() - t0,
                     figures={"accepted": accepted, "right_key_armed": right_key_ok, "host_with_key_refuses": host_msg[:120]})]


# ==================================================================================================
# SIGKILL during a flight
# ==================================================================================================
def _complete_rows(path: Path) -> int:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return -1
    return data.count(b"\n") - 1  # the header line


# one row per tick (100 Hz) reaches the OS at its tick; the estimate of the ticks run is off by the polling
# (2 ms) and by ticks the loop ran late on a busy machine: 10 ticks is 0.1 s
LOST_TICKS_TOLERANCE = 10


def section_sigkill(sizes: Sizes, seed: int) -> list[dict]:
    from edgectl.runtime.flightlog import COLUMNS, read_log
    rng = random.Random(seed)
    t0 = time.perf_counter()
    silent, failures, notes, lost = 0, 0, [], []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    with tempfile.TemporaryDirectory(prefix="faults_kill_") as tmp:
        for i in range(sizes.kills):
            log = Path(tmp) / f"kill{i}.csv"
            p = subprocess.Popen([sys.executable, "-m", "edgectl", "run", str(HOVER), "--uri", "sim://", "--seconds", "60",
                                  "--log", str(log)], cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                deadline = time.monotonic() + 60.0
                while _complete_rows(log) < 20 and time.monotonic() < deadline and p.poll() is None:
                    time.sleep(0.01)
                # watch the log grow (every 2 ms) until a random instant, then kill: the ticks run by then are
                # about the rows at the last growth + the time since, one row per period
                until = time.monotonic() + rng.uniform(0.0, 2.0)
                last_rows, last_change = _complete_rows(log), time.monotonic()
                while time.monotonic() < until:
                    n_now = _complete_rows(log)
                    if n_now != last_rows:
                        last_rows, last_change = n_now, time.monotonic()
                    time.sleep(0.002)
                before = _complete_rows(log)
                os.kill(p.pid, signal.SIGKILL)
                ticks_run = last_rows + (time.monotonic() - last_change) * 100.0
            finally:
                if p.poll() is None:
                    os.kill(p.pid, signal.SIGKILL)
                p.wait()
            if before < 20:
                failures += 1
                notes.append(f"kill {i}: the flight did not start (rows {before})")
                continue
            raw = log.read_bytes()
            torn = not raw.endswith(b"\n")
            try:
                d = read_log(log)
            except Exception as e:  # noqa: BLE001  an unreadable log after a kill is a silent loss
                silent += 1
                notes.append(f"kill {i}: read_log failed: {e}")
                continue
            n = len(d["t"])
            complete = raw.count(b"\n") - 1
            bad = []
            if n < before:
                bad.append(f"{before - n} rows on disk before the kill are gone")
            if torn and n > complete:
                bad.append("a torn last row was returned as data")
            if len(d) != len(COLUMNS) or any(len(c) != n for c in d.values()):
                bad.append(f"columns {len(d)} / lengths differ")
            t = np.asarray(d["t"], float)
            if n > 1 and not np.allclose(np.diff(t), 0.01, atol=1e-4):
                bad.append("ticks not consecutive")
            lost.append(round(ticks_run - n, 1))
            if ticks_run - n > LOST_TICKS_TOLERANCE:
                bad.append(f"about {ticks_run - n:.0f} ticks run before the kill are not in the log")
            if bad:
                silent += 1
                notes.append(f"kill {i}: " + ", ".join(bad))
    return [make_row("sigkill", "`edgectl run` SIGKILLed mid-flight: the flight log", sizes.kills, silent=silent,
                     failures=failures, note="; ".join(notes[:3]), seconds=time.perf_counter() - t0,
                     figures={"ticks_lost_at_kill": _pcts(lost)})]


# ==================================================================================================
def run_matrix(sizes: Sizes, seed: int = 0, only=SECTIONS, jobs: int = 1, progress=None) -> dict:
    fns = {"link": lambda: section_link(sizes, seed, jobs), "fuzz": lambda: section_fuzz(sizes, seed),
           "bundles": lambda: section_bundles(sizes, seed), "sensors": lambda: section_sensors(sizes, seed),
           "flash": lambda: section_flash(sizes, seed), "signing": lambda: section_signing(sizes, seed),
           "sigkill": lambda: section_sigkill(sizes, seed)}
    rows = []
    t0 = time.perf_counter()
    for name in only:
        t1 = time.perf_counter()
        try:
            new = fns[name]()
        except Exception as e:  # noqa: BLE001
            new = [make_row(name, "(section)", 0, failures=1, note=f"{type(e).__name__}: {e}",
                            seconds=time.perf_counter() - t1)]
        rows += new
        if progress is not None:
            progress(name, new, time.perf_counter() - t1)
    totals = {k: sum(r[k] for r in rows) for k in ("crashes", "corrupted_accepted", "silent_failures", "failures")}
    return {**totals, "goal_met": not any(totals.values()), "wall_s": round(time.perf_counter() - t0, 1), "rows": rows}


def _fmt_figures(f: dict) -> str:
    parts = []
    for k, v in f.items():
        if k == "cases":
            continue
        if isinstance(v, dict) and set(v) == {"p50", "max"}:
            parts.append(f"{k} p50 {v['p50']} / max {v['max']}")
        else:
            parts.append(f"{k} {v}")
    return "; ".join(parts)


def print_rows(rows: list[dict]) -> None:
    for r in rows:
        flag = "ok  " if not (r["crashes"] or r["corrupted_accepted"] or r["silent_failures"] or r["failures"]) else "MISS"
        print(f"{flag} {r['section']:8s} {r['row'][:58]:58s} n={r['trials']:<8d} crashes {r['crashes']:<3d} "
              f"corrupted accepted {r['corrupted_accepted']:<3d} silent {r['silent_failures']:<3d} failures {r['failures']:<3d} "
              f"({r['seconds']:.0f} s)", flush=True)
        print(f"     {_fmt_figures(r['figures'])}" + (f"\n     note: {r['note']}" if r["note"] else ""), flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a subset: 5 cuts per vehicle, 20,000 frames per parser, ...")
    ap.add_argument("--json", action="store_true", help="make the last stdout line the matrix as one JSON object")
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {', '.join(SECTIONS)}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1, help="processes for the link cuts")
    ap.add_argument("--link-vehicles", default="", help=f"comma-separated subset of: {', '.join(LINK_VEHICLES)}")
    args = ap.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        print(f"error: --only {','.join(unknown)}: unknown section; expected some of {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    sizes = QUICK if args.quick else FULL
    if args.link_vehicles:
        chosen = tuple(v.strip() for v in args.link_vehicles.split(",") if v.strip())
        wrong = [v for v in chosen if v not in LINK_VEHICLES]
        if wrong:
            print(f"error: --link-vehicles {','.join(wrong)}: expected some of {', '.join(LINK_VEHICLES)}", file=sys.stderr)
            return 2
        from dataclasses import replace
        sizes = replace(sizes, link_vehicles=chosen)
    print(f"fault matrix ({'quick' if args.quick else 'full'}): {sizes.cuts} cuts per vehicle, {sizes.frames:,} frames per "
          f"parser, {len(sizes.sensors)} sensor faults per vehicle, {sizes.flash_cuts} interrupted flashes, "
          f"{sizes.kills} kills; seed {args.seed}", flush=True)
    out = run_matrix(sizes, args.seed, only, args.jobs, progress=lambda name, rows, s: print_rows(rows))
    print(f"total: crashes {out['crashes']}, corrupted frames accepted {out['corrupted_accepted']}, silent failures "
          f"{out['silent_failures']}, failures {out['failures']} ({out['wall_s']:.0f} s)"
          + ("" if out["goal_met"] else "  -- goal NOT met"), flush=True)
    if args.json:
        print(json.dumps({**out, "quick": args.quick, "seed": args.seed}, default=str))
    return 0 if out["goal_met"] else 1


if __name__ == "__main__":
    sys.exit(main())

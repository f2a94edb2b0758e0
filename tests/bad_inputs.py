"""Every bad input tried on the `edgectl` command line, and what the user sees: the one source of truth of
docs/bad_inputs.md (written from these rows and their real output by `python3 tests/bad_inputs.py --write`)
and of tests/test_bad_inputs.py (which runs every row again and holds its output to the document).

A row is run as a user runs it: `python -m edgectl ARGS` in a fresh process, in a scratch folder holding its
inputs; a row may first start a simulated vehicle in the calling process ({PORT} in ARGS) or block packages
(`block`, a sitecustomize on PYTHONPATH: an extra that is not installed). Each must end with exit status 2 and
exactly one line of output, `error: ...`, naming the file, field or value (`names`), no traceback, and nothing
on disk changed.

Faults that arrive in flight (a corrupted packet, a NaN or stuck sensor, a cut link) are no command-line input:
bench/faults.py measures them (README, Measured: the fault matrix).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
DOC = ROOT / "docs" / "bad_inputs.md"
BLOCKER = DATA / "block_imports"


@dataclass(frozen=True)
class Case:
    id: str
    kind: str  # bundle, platform, track, config, URI, extra, packet, sensor, flag
    what: str  # the bad input, in words
    args: tuple  # edgectl arguments; {PORT}: the vehicle's port
    names: str  # the error line must contain this (the file, field or value)
    setup: Callable[[Path], None] | None = None  # writes the inputs into the scratch folder
    vehicle: str = ""  # "mavlink" or "crazyflie-other": started first, in this process
    block: str = ""  # comma-separated packages the run cannot import


# --- inputs ------------------------------------------------------------------------------------------
def _copy(name: str, as_: str | None = None):
    def setup(d: Path) -> None:
        shutil.copytree(DATA / name, d / (as_ or name))
    return setup


def _then(*steps):
    def setup(d: Path) -> None:
        for s in steps:
            s(d)
    return setup


def _flip(rel: str):
    def setup(d: Path) -> None:
        p = d / rel
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 0x01
        p.write_bytes(bytes(data))
    return setup


def _write(rel: str, text: str | bytes):
    def setup(d: Path) -> None:
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return setup


def _edit(rel: str, old: str, new: str):
    def setup(d: Path) -> None:
        p = d / rel
        text = p.read_text()
        assert old in text, (rel, old)
        p.write_text(text.replace(old, new, 1))
    return setup


def _platform_copy(name: str, as_: str, old: str, new: str):
    def setup(d: Path) -> None:
        text = (ROOT / "hardware" / f"{name}.toml").read_text()
        assert old in text, old
        (d / as_).write_text(text.replace(old, new, 1))
    return setup


def _rehash(bundle: str):
    def setup(d: Path) -> None:
        from edgectl.bundle import sha256_file
        root = d / bundle
        m = json.loads((root / "bundle.json").read_text())
        m["weights"]["sha256"] = sha256_file(root / m["weights"]["file"])
        (root / "bundle.json").write_text(json.dumps(m, indent=1))
    return setup


def _nan_weights(bundle: str):
    def setup(d: Path) -> None:
        import numpy as np
        p = d / bundle / "weights.npz"
        with np.load(p) as z:
            arrays = {k: z[k].copy() for k in z.files}
        arrays["actor.0.bias"][3] = np.nan
        np.savez(p, **arrays)
        _rehash(bundle)(d)
    return setup


def _weights_changed(src: str, dst: str, *, bias: float | None = None, scale: float = 1.0):
    """Another bundle with the same contract: `src`'s weights scaled, or its last bias set (bias=-5: motors off,
    a policy that crashes in every episode)."""
    def setup(d: Path) -> None:
        import numpy as np

        from edgectl.bundle import load_bundle, write_bundle
        b = load_bundle(DATA / src)
        m = b.manifest
        with np.load(b.path / "weights.npz") as z:
            w = {k: z[k] * np.float32(scale) for k in z.files}
        if bias is not None:
            w[m["policy"]["layers"][-1]["bias"]][:] = bias
        write_bundle(d / dst, contract=m["contract"], policy=m["policy"], weights=w,
                     platform_toml=(b.path / "platform.toml").read_bytes(), platform_name=m["platform"]["name"],
                     task=m["task"], seed=int(m["seed"]) + 1, metrics=m["metrics"], versions=m["versions"])
    return setup


def _other_export(d: Path) -> None:
    """An export folder made from another bundle (its report names the other bundle's weights)."""
    _weights_changed("hover_bundle", "other", scale=1.01)(d)
    from edgectl.bundle import load_bundle
    other = load_bundle(d / "other")
    e = d / "other-c"
    e.mkdir()
    (e / "report.json").write_text(json.dumps({"target": "c", "int8": False, "bundle": "other",
                                               "bundle_weights_sha256": other.manifest["weights"]["sha256"]}))
    (e / "edgectl_policy.c").write_text("/* exported from another bundle */\n")
    (e / "edgectl_policy.h").write_text("/* exported from another bundle */\n")
    shutil.rmtree(d / "other")


def _flight_log(torn: bool) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        from edgectl.runtime.flightlog import COLUMNS
        row = ",".join(["0.01", "0", "0", "nominal", ""] + ["0"] * (len(COLUMNS) - 5))
        short = ",".join(["0.02", "0", "0", "nominal", ""] + ["0"] * 7)
        lines = [",".join(COLUMNS), row, short if torn else row, row]
        (d / "flight.csv").write_text("\n".join(lines) + "\n")
    return setup


HOVER, RACE, AVOID = "hover_bundle", "race_bundle", "avoid_bundle"

CASES: list[Case] = [
    # --- bundles ------------------------------------------------------------------------------------
    Case("bundle-missing", "bundle", "a bundle folder that does not exist", ("run", "nope", "--seconds", "1"),
         "nope"),
    Case("bundle-weights-flipped", "bundle", "one bit of weights.npz flipped", ("run", HOVER, "--seconds", "1"),
         "weights.npz: sha256 mismatch", _then(_copy(HOVER), _flip(f"{HOVER}/weights.npz"))),
    Case("bundle-weights-truncated", "bundle", "weights.npz cut short, its hash updated", ("eval", HOVER),
         "weights.npz: corrupt or truncated npz",
         _then(_copy(HOVER), lambda d: (d / HOVER / "weights.npz").write_bytes((d / HOVER / "weights.npz").read_bytes()[:300]),
               _rehash(HOVER))),
    Case("bundle-weights-nan", "bundle", "a NaN among the weights, its hash updated", ("export", HOVER, "--target", "c"),
         "non-finite value nan", _then(_copy(HOVER), _nan_weights(HOVER))),
    Case("bundle-json-truncated", "bundle", "bundle.json cut mid-way", ("run", HOVER, "--seconds", "1"),
         "bundle.json: not valid JSON",
         _then(_copy(HOVER), lambda d: (d / HOVER / "bundle.json").write_text(
             (d / HOVER / "bundle.json").read_text().split('"contract"')[0]))),
    Case("bundle-platform-edited", "bundle", "the bundle's platform.toml edited", ("eval", HOVER),
         "platform.toml: sha256 mismatch", _then(_copy(HOVER), _edit(f"{HOVER}/platform.toml", "0.027", "0.037"))),
    Case("bundle-contract-field", "bundle", "an observation field the host cannot build (renamed)",
         ("run", HOVER, "--seconds", "1"), "position_err",
         _then(_copy(HOVER), _edit(f"{HOVER}/bundle.json", '"name": "position_error"', '"name": "position_err"'))),
    Case("bundle-crashes-too-often", "bundle", "export of a policy that crashes in every episode (no calibration data)",
         ("export", "crashy", "--target", "c"), "--calibration random-states",
         _weights_changed(HOVER, "crashy", bias=-5.0)),
    Case("bundle-px4-crazyflie", "bundle", "export --target px4 (PX4 mc_nn_control) of a Crazyflie bundle",
         ("export", HOVER, "--target", "px4"), "platform: crazyflie_2_1", _copy(HOVER)),
    Case("bundle-race-on-mavlink", "bundle", "a race (rc car) bundle flown at a MAVLink vehicle",
         ("run", RACE, "--uri", "udpout:127.0.0.1:{PORT}", "--seconds", "1"), "rc-car bundle", _copy(RACE),
         vehicle="mavlink"),
    Case("bundle-avoid-on-mavlink", "bundle", "an avoid (vision) bundle flown at a MAVLink vehicle",
         ("run", AVOID, "--uri", "udpout:127.0.0.1:{PORT}", "--seconds", "1"), "avoid bundle", _copy(AVOID),
         vehicle="mavlink"),
    Case("bundle-other-export", "bundle", "--policy: an export folder made from another bundle",
         ("run", HOVER, "--policy", "other-c", "--seconds", "1"), "exported from another bundle",
         _then(_copy(HOVER), _other_export)),
    Case("bundle-other-app", "bundle", "a Crazyflie whose app was exported from another bundle",
         ("run", HOVER, "--uri", "udp://127.0.0.1:{PORT}", "--seconds", "1"), "edgectl.bundle",
         _copy(HOVER), vehicle="crazyflie-other"),
    Case("bundle-shield-avoid", "bundle", "eval --shield of an avoid bundle", ("eval", AVOID, "--shield"),
         "--shield", _copy(AVOID)),
    Case("bundle-sim-vehicle-corrupt", "bundle", "sim-vehicle crazyflie --bundle with a flipped weight",
         ("sim-vehicle", "crazyflie", "--uri", "udp://127.0.0.1:0", "--bundle", HOVER), "weights.npz",
         _then(_copy(HOVER), _flip(f"{HOVER}/weights.npz"))),
    Case("bundle-refine-race", "bundle", "refine of a race (rc car) bundle", ("refine", RACE, "--out", "r2"),
         "race", _copy(RACE)),
    Case("bundle-refine-onto-itself", "bundle", "refine --out the source bundle itself", ("refine", HOVER, "--out", HOVER),
         "the source bundle itself", _copy(HOVER)),
    Case("bundle-refine-platform-kind", "bundle", "refine --platform naming an rc car platform",
         ("refine", HOVER, "--out", "r3", "--platform", "rc_car_1_10"), "rc_car_1_10", _copy(HOVER)),
    # --- platforms ----------------------------------------------------------------------------------
    Case("platform-unknown", "platform", "a platform name that does not exist",
         ("train", "quadrotor", "--platform", "crazyflie_9"), "crazyflie_9"),
    Case("platform-section-typo", "platform", "a misspelled section ([saftey])",
         ("train", "quadrotor", "--platform", "typo.toml"), "saftey",
         _platform_copy("crazyflie_2_1", "typo.toml", "[safety]", "[saftey]")),
    Case("platform-key-typo", "platform", "a misspelled key (mas for mass)",
         ("train", "quadrotor", "--platform", "key.toml"), "mas", _platform_copy("crazyflie_2_1", "key.toml", "mass = {", "mas = {")),
    Case("platform-unit", "platform", "a value in the wrong unit (g for kg)",
         ("train", "quadrotor", "--platform", "unit.toml"), "body.mass",
         _platform_copy("crazyflie_2_1", "unit.toml", 'value = 0.027, unit = "kg"', 'value = 27, unit = "g"')),
    Case("platform-kind", "platform", "an rc car platform for a quadrotor",
         ("train", "quadrotor", "--platform", "rc_car_1_10"), "rc_car_1_10"),
    Case("platform-eval-kind", "platform", "eval --platform of an rc car for a hover bundle",
         ("eval", HOVER, "--platform", "rc_car_1_10"), "rc_car", _copy(HOVER)),
    # --- tracks -------------------------------------------------------------------------------------
    Case("track-unknown", "track", "a track that does not exist", ("train", "rc-car", "--track", "nurburgring"),
         "nurburgring"),
    Case("track-no-half-width", "track", "a lap CSV without its half_width line",
         ("train", "rc-car", "--track", "lap.csv"), "half_width",
         _write("lap.csv", "x,y\n" + "".join(f"{x},{y}\n" for x, y in ((0, 0), (5, 0), (5, 5), (0, 5), (0, 1),
                                                                          (1, 0), (3, 0), (4, 1), (2, 2))))),
    Case("track-bad-row", "track", "a lap CSV with a row that is not two numbers",
         ("train", "rc-car", "--track", "lap.csv"), "lap.csv",
         _write("lap.csv", "# half_width: 0.75 m\nx,y\n0,0\n5,zero\n5,5\n0,5\n")),
    Case("track-on-quadrotor", "track", "--track for a quadrotor", ("train", "quadrotor", "--track", "oval"), "--track"),
    # --- training configs (edgectl train --config / --set, edgectl sweep) ------------------------------------------
    Case("config-unit", "config", "a config value in the wrong unit (deg for rad)", ("train", "--config", "c.toml"),
         "task.init_tilt", _write("c.toml", '[task]\ninit_tilt = { value = 70, unit = "deg" }\n')),
    Case("config-key-typo", "config", "a misspelled config field (w_positon)", ("train", "--config", "c.toml"),
         "task.w_positon", _write("c.toml", "[task]\nw_positon = 3\n")),
    Case("config-range", "config", "a randomization range that leaves out the nominal vehicle",
         ("train", "--config", "c.toml"), "randomization.mass", _write("c.toml", "[randomization]\nmass = [1.2, 1.5]\n")),
    Case("config-set-value", "config", "--set of a PPO setting that is not a number",
         ("train", "quadrotor", "--set", "ppo.lr=abc"), "ppo.lr"),
    Case("config-sweep-value", "config", "a sweep over a negative learning rate",
         ("sweep", "c.toml", "--set", "ppo.lr=1e-3,-1"), "ppo.lr", _write("c.toml", '[train]\ntask = "hover"\n')),
    Case("config-sweep-seeds", "config", "sweep --seeds that are not numbers", ("sweep", "c.toml", "--seeds", "a-b"),
         "--seeds", _write("c.toml", '[train]\ntask = "hover"\n')),
    # --- URIs ---------------------------------------------------------------------------------------
    Case("uri-unknown-scheme", "URI", "a URI no link speaks", ("run", HOVER, "--uri", "ftp://x", "--seconds", "1"),
         "ftp://x", _copy(HOVER)),
    Case("uri-sim-start", "URI", "sim:// with two coordinates", ("run", HOVER, "--uri", "sim://1,2", "--seconds", "1"),
         "sim://1,2", _copy(HOVER)),
    Case("uri-radio-no-dongle", "URI", "radio:// with no Crazyradio plugged in (cflib's traceback: -v)",
         ("run", HOVER, "--uri", "radio://0/80/2M/E7E7E7E7E7", "--seconds", "1"), "Crazyradio", _copy(HOVER)),
    Case("uri-mavlink-silent", "URI", "a MAVLink URI where nothing answers",
         ("run", HOVER, "--uri", "udpout:127.0.0.1:9", "--seconds", "1"), "udpout:127.0.0.1:9", _copy(HOVER)),
    Case("uri-serial-missing", "URI", "a serial port that does not exist (race bundle)",
         ("run", RACE, "--uri", "/dev/ttyNOPE0", "--seconds", "1"), "/dev/ttyNOPE0", _copy(RACE)),
    Case("uri-sim-name", "URI", "sim://NAME: the in-process simulated Crazyflie is cfsim://NAME",
         ("run", HOVER, "--uri", "sim://crazyflie/0", "--seconds", "1"), "cfsim://crazyflie/0", _copy(HOVER)),
    Case("uri-avoid-seed", "URI", "sim://SEED that is not a number (avoid bundle)",
         ("run", AVOID, "--uri", "sim://abc", "--seconds", "1"), "sim://abc", _copy(AVOID)),
    Case("uri-flash-no-dongle", "URI", "flash over radio:// with no Crazyradio",
         ("flash", "cf2.bin", "--uri", "radio://0/80/2M/E7E7E7E7E7"), "Crazyradio", _write("cf2.bin", bytes(range(256)) * 8)),
    Case("uri-sim-crazyflie", "URI", "sim-vehicle crazyflie on a URI without a port",
         ("sim-vehicle", "crazyflie", "--uri", "udp://localhost"), "udp://localhost"),
    Case("uri-sim-rc-car", "URI", "sim-vehicle rc-car on a udp:// URI", ("sim-vehicle", "rc-car", "--uri", "udp://x:1"),
         "udp://x:1"),
    Case("uri-sim-mavlink", "URI", "sim-vehicle mavlink on a host that does not resolve",
         ("sim-vehicle", "mavlink", "--uri", "udpin:no.such.host.invalid:14550"), "no.such.host.invalid"),
    # --- extras not installed ----------------------------------------------------------------------
    Case("extra-sim-mavlink", "extra", "sim-vehicle mavlink without pymavlink", ("sim-vehicle", "mavlink"),
         'edgectl[bridge]', block="pymavlink"),
    Case("extra-run-mavlink", "extra", "run --uri udpout: without pymavlink",
         ("run", HOVER, "--uri", "udpout:127.0.0.1:14550", "--seconds", "1"), 'edgectl[bridge]', _copy(HOVER),
         block="pymavlink"),
    Case("extra-sim-rc-car", "extra", "sim-vehicle rc-car without pyserial and cobs", ("sim-vehicle", "rc-car"),
         'edgectl[bridge]', block="serial,cobs"),
    Case("extra-run-serial", "extra", "a serial race run without pyserial",
         ("run", RACE, "--uri", "/dev/ttyACM0", "--seconds", "1"), 'edgectl[bridge]', _copy(RACE), block="serial,cobs"),
    Case("extra-run-crazyflie", "extra", "run --uri radio:// without cflib",
         ("run", HOVER, "--uri", "radio://0/80/2M/E7E7E7E7E7", "--seconds", "1"), 'edgectl[bridge]', _copy(HOVER),
         block="cflib"),
    Case("extra-export-onnx", "extra", "export --target onnx without onnx", ("export", HOVER, "--target", "onnx"),
         'edgectl[export]', _copy(HOVER), block="onnx"),
    Case("extra-run-mcap", "extra", "run --log F.mcap without mcap", ("run", HOVER, "--log", "f.mcap", "--seconds", "1"),
         'edgectl[fly]', _copy(HOVER), block="mcap"),
    Case("extra-plot-mcap", "extra", "plot of an MCAP log without mcap", ("plot", "f.mcap"), 'edgectl[fly]',
         _write("f.mcap", b"\x89MCAP0\r\n"), block="mcap"),
    Case("extra-plot-ulog", "extra", "plot of a PX4 ULog without pyulog", ("plot", "f.ulg"), "pip install pyulog",
         _write("f.ulg", b"ULog\x01\x12\x35\x01" + bytes(8)), block="pyulog"),
    Case("extra-tensorboard", "extra", "train --tensorboard without tensorboard (not an extra: pip install tensorboard)",
         ("train", "quadrotor", "--tensorboard", "tb"), "tensorboard", block="tensorboard"),
    Case("extra-sweep-ray", "extra", "sweep without ray", ("sweep", "hover.toml", "--seeds", "0-1"), 'edgectl[sweep]',
         _write("hover.toml", '[train]\ntask = "hover"\n'), block="ray"),
    # --- packets: images and logs the tools read ---------------------------------------------------
    Case("packet-flash-missing", "packet", "flash of a firmware image that does not exist",
         ("flash", "cf2.bin", "--uri", "udp://127.0.0.1:19850"), "cf2.bin"),
    Case("packet-flash-empty", "packet", "flash of an empty image", ("flash", "cf2.bin", "--uri", "udp://127.0.0.1:19850"),
         "empty", _write("cf2.bin", b"")),
    Case("packet-flash-app-unbuilt", "packet", "flash of an app folder that was never built",
         ("flash", "app", "--uri", "udp://127.0.0.1:19850"), "build/cf2.bin", _write("app/Makefile", "")),
    Case("packet-log-torn", "packet", "plot of a flight log with a malformed row", ("plot", "flight.csv"),
         "line 3", _flight_log(torn=True)),
    Case("packet-log-foreign", "packet", "plot of a CSV that is not a flight log", ("plot", "other.csv"),
         "not an edgectl flight log", _write("other.csv", "a,b\n1,2\n")),
    Case("packet-log-mcap-corrupt", "packet", "plot of an MCAP log that is not one (its magic, then garbage)",
         ("plot", "flight.mcap"), "flight.mcap: not a readable MCAP flight log",
         _write("flight.mcap", b"\x89MCAP0\r\n" + bytes(range(256)) * 4)),
    Case("packet-log-ulog-corrupt", "packet", "plot of a PX4 ULog with a header and nothing after it",
         ("plot", "flight.ulg"), "flight.ulg", _write("flight.ulg", b"ULog\x01\x12\x35\x01" + bytes(100))),
    Case("packet-log-binary", "packet", "plot of a file that is not text, named .csv", ("plot", "flight.csv"),
         "flight.csv: not an edgectl flight log", _write("flight.csv", bytes(range(256)) * 4)),
    # --- sensor and fault flags ---------------------------------------------------------------------
    Case("sensor-nan-name", "sensor", "a NaN fault on a sensor that does not exist",
         ("sim-vehicle", "crazyflie", "--uri", "udp://127.0.0.1:0", "--nan-sensor", "altimeter"), "altimeter"),
    Case("sensor-stuck-name", "sensor", "a stuck fault on a sensor that does not exist (MAVLink)",
         ("sim-vehicle", "mavlink", "--uri", "udpin:127.0.0.1:0", "--stuck-sensor", "compass"), "compass"),
    Case("sensor-weak-motor", "sensor", "a weak motor 5 on a quadrotor",
         ("sim-vehicle", "crazyflie", "--uri", "udp://127.0.0.1:0", "--weak-motor", "5:0.5"), "weak_motor"),
    Case("sensor-weak-motor-form", "sensor", "--weak-motor not in MOTOR:FRACTION form",
         ("sim-vehicle", "crazyflie", "--weak-motor", "half"), "--weak-motor"),
    Case("sensor-loss", "sensor", "a packet loss probability above 1", ("sim-vehicle", "crazyflie", "--loss", "1.5"),
         "--loss"),
    Case("sensor-car-fault", "sensor", "a sensor fault the rc car does not simulate",
         ("sim-vehicle", "rc-car", "--nan-sensor", "z"), "nan_sensor"),
    # --- flags --------------------------------------------------------------------------------------
    Case("flag-unknown-vehicle", "flag", "an unknown vehicle", ("train", "boat"), "boat"),
    Case("flag-unknown-task", "flag", "an unknown task", ("train", "quadrotor", "--task", "loop"), "loop"),
    Case("flag-seconds-zero", "flag", "--seconds 0", ("train", "quadrotor", "--seconds", "0"), "--seconds"),
    Case("flag-seconds-text", "flag", "--seconds that is not a number", ("run", HOVER, "--seconds", "ten"), "--seconds",
         _copy(HOVER)),
    Case("flag-unknown-option", "flag", "an option no command has", ("run", HOVER, "--speed", "2"), "--speed", _copy(HOVER)),
    Case("flag-robust-car", "flag", "--robust for the rc car", ("train", "rc-car", "--robust"), "--robust"),
    Case("flag-sitl-speed-negative", "flag", "sitl-server --speed below 0", ("sitl-server", "px4", "--port", "0", "--speed", "-1"),
         "--speed"),
    Case("flag-action-delay", "flag", "--action-delay above one period", ("train", "quadrotor", "--action-delay", "2"),
         "--action-delay"),
    Case("flag-target", "flag", "an unknown export target", ("export", HOVER, "--target", "fpga"), "fpga", _copy(HOVER)),
    Case("flag-calibration", "flag", "an unknown --calibration source",
         ("export", HOVER, "--target", "c", "--calibration", "guess"), "guess", _copy(HOVER)),
    Case("flag-sabotage", "flag", "--sabotage without --shield", ("eval", HOVER, "--sabotage", "noise"), "--sabotage",
         _copy(HOVER)),
    Case("flag-ref", "flag", "--ref with two numbers", ("run", HOVER, "--ref", "0,1", "--seconds", "1"), "--ref",
         _copy(HOVER)),
    Case("flag-plot-inside", "flag", "eval --plot inside the bundle (its files are hashed)",
         ("eval", HOVER, "--plot", f"{HOVER}/eval.png"), "--plot", _copy(HOVER)),
    Case("flag-out-not-bundle", "flag", "train --out over a folder that is not a bundle",
         ("train", "quadrotor", "--out", "notes", "--overwrite"), "notes", _write("notes/todo.txt", "keep me")),
    Case("flag-no-latest", "flag", "eval without a BUNDLE and no runs/latest", ("eval",), "runs/latest"),
    Case("flag-log-unwritable", "flag", "run --log into a folder that cannot be made",
         ("run", HOVER, "--log", "blocker/flight.csv", "--seconds", "1"), "--log", _then(_copy(HOVER), _write("blocker", "a file"))),
]


# --- running a row -------------------------------------------------------------------------------------
def tree_digest(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


class _Vehicle:
    def __init__(self, kind: str, workdir: Path):
        self.kind, self.obj, self.port = kind, None, None
        if kind == "mavlink":
            from firmware_bridge.sim.mavlink.sim_vehicle import SimVehicle
            self.obj = SimVehicle("udpin:127.0.0.1:0", platform=str(DATA / HOVER / "platform.toml")).start()
            self.port = self.obj.address[1]
        elif kind == "crazyflie-other":
            import tempfile

            from firmware_bridge.sim.crazyflie.sim_vehicle import CrazyflieSim
            self._tmp = Path(tempfile.mkdtemp(prefix="bad_inputs_other_"))  # outside the row's folder
            _weights_changed(HOVER, "other", scale=1.01)(self._tmp)
            self.obj = CrazyflieSim(str(DATA / HOVER / "platform.toml"), bundle=self._tmp / "other", onboard_impl="numpy")
            server = self.obj.serve_udp("127.0.0.1", 0)
            self.obj.start()
            self.port = int(server.uri.rsplit(":", 1)[1])
        elif kind:
            raise ValueError(f"unknown vehicle {kind!r}")

    def close(self):
        if self.kind == "mavlink":
            self.obj.stop()
        elif self.kind == "crazyflie-other":
            self.obj.close()
            shutil.rmtree(self._tmp, ignore_errors=True)


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    changed: list
    vehicle_flown: bool

    @property
    def lines(self) -> list[str]:
        return [ln for ln in (self.stdout + self.stderr).splitlines() if ln.strip()]


def run_case(case: Case, workdir: Path, timeout: float = 180.0) -> Result:
    workdir.mkdir(parents=True, exist_ok=True)
    if case.setup is not None:
        case.setup(workdir)
    vehicle = _Vehicle(case.vehicle, workdir)
    try:
        before = tree_digest(workdir)
        args = [a.replace("{PORT}", str(vehicle.port)) for a in case.args]
        env = dict(os.environ)
        paths = [str(ROOT)] + ([str(BLOCKER)] if case.block else [])
        env["PYTHONPATH"] = os.pathsep.join(paths[::-1] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        env["EDGECTL_BLOCK_IMPORTS"] = case.block
        env["COLUMNS"] = "200"
        env.pop("CI", None)
        r = subprocess.run([sys.executable, "-m", "edgectl", *args], cwd=workdir, env=env, capture_output=True,
                           text=True, timeout=timeout)
        after = tree_digest(workdir)
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        flown = False
        if case.vehicle == "mavlink":
            flown = bool(vehicle.obj.armed or vehicle.obj.counters["rx SET_ACTUATOR_CONTROL_TARGET"])
        elif case.vehicle == "crazyflie-other":
            flown = vehicle.obj.param("stabilizer.controller") == 6
        return Result(r.returncode, r.stdout, r.stderr, changed, flown)
    finally:
        vehicle.close()


def normalize(line: str, workdir: Path) -> str:
    line = line.replace(str(workdir.resolve()), "<tmp>").replace(str(workdir), "<tmp>").replace(str(ROOT), "<repo>")
    line = re.sub(r"127\.0\.0\.1:\d{4,5}", "127.0.0.1:<port>", line)
    line = re.sub(r"/tmp/bad_inputs_other_\w+", "<tmp>", line)
    return line


def documented() -> dict[str, str]:
    """id -> the line docs/bad_inputs.md says the user sees."""
    rows = {}
    for ln in DOC.read_text().splitlines():
        m = re.match(r"\|\s*`([a-z0-9-]+)`\s*\|.*\|\s*`` (error: .*) ``\s*\|\s*$", ln)
        if m:
            rows[m.group(1)] = m.group(2).replace("\\|", "|")
    return rows


def _md(text: str) -> str:
    """Table-cell text (GFM: a | is escaped even in a code span)."""
    return text.replace("|", "\\|")


def write_doc(results: dict[str, str]) -> None:
    lines = ["# Bad inputs and what the user sees", "",
             "Every bad input tried on the command line: each row ran as `python -m edgectl ARGS` in a scratch "
             "folder holding its inputs, and ended with exit status 2 and this one line on stderr, no traceback, "
             "nothing on disk changed. Generated from the rows in `tests/bad_inputs.py` and their real output "
             "(`python3 tests/bad_inputs.py --write`); `tests/test_bad_inputs.py` runs every row again and holds it "
             "to this table. `<tmp>` is the scratch folder, `<port>` a simulated vehicle's port. An extra marked "
             "missing was blocked from import (the package not installed). Faults that arrive in flight (corrupted "
             "packets, NaN/inf/stuck sensors, a cut link, a killed host) are measured by `bench/faults.py`.", "",
             "| id | kind | bad input | command | what the user sees |", "|---|---|---|---|---|"]
    for c in CASES:
        cmd = "edgectl " + " ".join(c.args) + (f"  (missing: {c.block})" if c.block else "")
        # double backticks: the messages quote commands in single ones
        lines.append(f"| `{c.id}` | {c.kind} | {_md(c.what)} | `` {_md(cmd)} `` | `` {_md(results[c.id])} `` |")
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text("\n".join(lines) + "\n")


def main() -> int:
    import argparse
    import tempfile
    ap = argparse.ArgumentParser(description="run every bad-input row; --write: rewrite docs/bad_inputs.md from them")
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    results, bad = {}, 0
    for c in CASES:
        if args.only and c.id not in args.only.split(","):
            continue
        with tempfile.TemporaryDirectory(prefix="bad_inputs_") as tmp:
            w = Path(tmp) / "w"
            r = run_case(c, w)
            line = normalize(r.lines[0], w) if r.lines else ""
            ok = (r.code == 2 and len(r.lines) == 1 and line.startswith("error:") and c.names in line
                  and "Traceback" not in r.stdout + r.stderr and not r.changed and not r.vehicle_flown)
            bad += not ok
            results[c.id] = line
            print(f"{'ok  ' if ok else 'FAIL'} {c.id:28s} exit {r.code} lines {len(r.lines)} changed {r.changed[:3]} "
                  f"{'FLOWN ' if r.vehicle_flown else ''}| {line[:150]}", flush=True)
            if not ok and len(r.lines) > 1:
                print("     " + "\n     ".join(normalize(x, w) for x in r.lines[-6:]))
    if args.write:
        if args.only:
            results = {**documented(), **results}
        write_doc(results)
        print(f"wrote {DOC} ({len(CASES)} rows)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

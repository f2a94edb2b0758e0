"""The Crazyflie app compiled for this host (firmware_bridge/sim/crazyflie/host_app.py), which the simulated
Crazyflie runs: the build and its cache, the one-line refusal without a compiler, the app's log/param
tables as the vehicle's TOC entries, the app's policy step against the training side's observation and the
bundle's float MLP (differential), and the vehicle taking off and holding hover with it.

The vehicle flies the platform file the fixture bundles were trained on (VEHICLE): they predate the
firmware's yaw convention in hardware/crazyflie_2_1.toml (e06d6be) and spin up there until retrained."""
from __future__ import annotations

import json
import re
import struct
import time
from pathlib import Path

import numpy as np
import pytest


from edgectl.bundle import load_bundle  # noqa: E402
from firmware_bridge.crazyflie import crtp  # noqa: E402
from firmware_bridge.sim.crazyflie import host_app  # noqa: E402
from firmware_bridge.sim.crazyflie.host_app import AppImage, NoCompiler  # noqa: E402
from firmware_bridge.sim.crazyflie.setpoints import MODE_ABS, Setpoint  # noqa: E402
from firmware_bridge.sim.crazyflie.sim_vehicle import CrazyflieSim  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
# hover_wrong_yaw_bundle: trained before issue 13 (rpm_linear mapping, old spin): the app still builds the same
# observation and policy step for it, which is all the differential test compares.
HOVER, INTEGRAL = DATA / "hover_bundle", DATA / "hover_wrong_yaw_bundle"
VEHICLE = str(HOVER / "platform.toml")


def _position(x, y, z) -> bytes:
    return crtp.packet(crtp.GENERIC_SETPOINT, 0, struct.pack("<Bffff", crtp.SP_POSITION, x, y, z, 0.0))


# --- the build ---------------------------------------------------------------------------------------------
def test_build_is_cached_by_the_sha256_of_its_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECTL_CACHE", str(tmp_path))
    t0 = time.perf_counter()
    a = AppImage(HOVER)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    b = AppImage(HOVER)
    t_cached = time.perf_counter() - t0
    assert a.library == b.library and a.library.parent.parent == tmp_path / "crazyflie_host"
    assert re.fullmatch(r"[0-9a-f]{32}", a.library.parent.name) and t_cached < t_build
    build = (a.library.parent / "build.json").read_text()
    assert '"-O2"' in build and host_app.FIRMWARE_RELEASE in build and "CONFIG_ENABLE_THRUST_BAT_COMPENSATED=1" in build
    # another boot value of edgectl.linkMs is another compile-time define, so another library
    c = AppImage(HOVER, link_timeout_ms=20)
    assert c.library != a.library and dict(((g, n), d) for g, n, _, d in c.param_vars)[("edgectl", "linkMs")] == 20
    assert len(list((tmp_path / "crazyflie_host").glob("*/" + host_app.LIBRARY))) == 2


def test_no_compiler_is_one_line_and_exit_2(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from edgectl.cli import app
    monkeypatch.setenv("PATH", str(tmp_path))  # no gcc on it
    with pytest.raises(NoCompiler, match="no C compiler"):
        AppImage(HOVER)
    r = CliRunner().invoke(app, ["sim-vehicle", "crazyflie", "--bundle", str(HOVER), "--uri", "udp://127.0.0.1:0"])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no C compiler (gcc)" in lines[0], r.stderr
    assert "Traceback" not in r.output


# --- the app's variables are the vehicle's ------------------------------------------------------------------
def test_the_apps_log_and_param_variables_are_the_vehicles():
    from firmware_bridge.crazyflie import onboard
    sim = CrazyflieSim(VEHICLE, realtime=False, bundle=HOVER)
    image, src = sim.onboard_image, sim.onboard_image.sources["edgectl_controller.c"]
    # every LOG_ADD / PARAM_ADD of the generated controller, in order and with its type, is in the TOCs
    codes = {"LOG_UINT8": 1, "LOG_UINT32": 3, "LOG_FLOAT": 7, "PARAM_UINT16": 0x09, "PARAM_UINT32 | PARAM_RONLY": 0x4A}
    logs = [(n, codes[t]) for t, n in re.findall(r"LOG_ADD\((\w+), (\w+),", src)]
    assert [(n, t) for g, n, t in image.log_vars] == logs and {g for g, _, _ in image.log_vars} == {"edgectl"}
    assert [n for n in sim.log_names() if n.startswith("edgectl.")] == [f"edgectl.{n}" for n, _ in logs]
    assert [(f"{g}.{n}", t) for g, n, t, _ in image.param_vars] == \
        [(f"edgectl.{n}", codes[t]) for t, n in re.findall(r"PARAM_ADD\(([\w |]+), (\w+),", src)]
    # which bundle the app flies: read-only, the first 32 bits of its weights sha256 (edgectl run checks it)
    assert sim.param(onboard.BUNDLE_PARAM) == onboard.bundle_id(json.loads((HOVER / "bundle.json").read_text()))
    # the host side's constants are the C's
    assert sim.param(onboard.LINK_PARAM) == round(1000 * onboard.DEFAULT_LINK_TIMEOUT_S)
    for macro, value_s in (("EDGECTL_LINK_LATCH_MS", onboard.LINK_LATCH_S), ("EDGECTL_KEEPALIVE_MS", onboard.KEEPALIVE_S)):
        assert int(re.search(rf"#define {macro} (\d+)", src).group(1)) == round(1000 * value_s)
    # a parameter write, by name or over CRTP, lands in the app's C variable; reads come from there
    app = sim.onboard
    sim.set_param(onboard.LINK_PARAM, 7)
    assert app.status()["link_ms"] == 7 and app.link_timeout_s == pytest.approx(0.007)
    ident = sim.params_service.toc.ident(onboard.LINK_PARAM)
    sim.params_service.handle(crtp.PARAM_WRITE_CH, struct.pack("<HH", ident, 9))
    assert app.status()["link_ms"] == 9
    assert sim.params_service.handle(crtp.PARAM_READ_CH, struct.pack("<H", ident))[0][1] == struct.pack("<HBH", ident, 0, 9)
    # log variables read the app's memory: forceScale from controllerOutOfTreeInit (model thrust / vehicle's)
    sim.set_param("stabilizer.controller", 6)
    sim.advance(0.01)
    assert sim.variables()["edgectl.scale"] == pytest.approx(app.status()["force_scale"]) == pytest.approx(1.0, abs=1e-3)
    assert "edgectl policy (task hover) at 100 Hz" in sim._app_banner  # appMain's boot line
    # a reboot is a power-on: a fresh copy of the app, its variables back to their initial values
    sim.reboot()
    assert sim.onboard is not app and sim.param(onboard.LINK_PARAM) == 50 and app.status()["link_ms"] == 9


# --- differential: the app's policy step against the training side -------------------------------------------
def _random_quat_xyzw(rng, max_tilt: float) -> np.ndarray:
    """A random yaw times a tilt of up to max_tilt about a random horizontal axis (body to world, x y z w)."""
    yaw, tilt, ax = rng.uniform(-np.pi, np.pi), rng.uniform(0.0, max_tilt), rng.uniform(-np.pi, np.pi)
    qy = np.array([0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2)])
    qt = np.array([np.cos(ax) * np.sin(tilt / 2), np.sin(ax) * np.sin(tilt / 2), 0.0, np.cos(tilt / 2)])
    x1, y1, z1, w1 = qy
    x2, y2, z2, w2 = qt
    return np.array([w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2, w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
                     w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2, w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2])


@pytest.mark.parametrize("path", [HOVER, INTEGRAL], ids=["hover", "hover_rpm_linear"])
def test_policy_step_equals_the_training_observation_and_float_mlp(path):
    """300 policy periods from random states in firmware units (gyro deg/s, quaternion x y z w, position, velocity),
    the reference hopping every 60: the observation the app's C builds and the action its generated float32 policy
    returns equal edgectl's observation builder (edgectl.observation.observation, the integral by
    edgectl.contract.PositionIntegral) and the bundle's float MLP (Bundle.act, float64) on the same state.
    Measured: observation within 1.5e-7, action within 3.3e-7 (both bundles)."""
    from edgectl.contract import PositionIntegral
    from edgectl.observation import observation
    bundle = load_bundle(path)
    c = bundle.contract
    lo, hi = c["action"]["low"], c["action"]["high"]
    n_hist = sum(f["size"] for f in c["observation"]["fields"] if f["name"] == "previous_actions")
    app = AppImage(bundle).boot(max_thrust_n=4.0)
    app.init()
    rng = np.random.default_rng(11)
    integral, prev = PositionIntegral(c), np.full(n_hist, c["action"]["hover_action"])
    obs_err, act_err = [], []
    for k in range(300):
        if k % 60 == 0:
            ref = np.float32(rng.uniform([-1.0, -1.0, 0.5], [1.0, 1.0, 1.5])).astype(np.float64)
        # inside the platform's safety specs (box 0.5 m, tilt 1 rad), so the on-board monitors let the policy fly
        pos = ref + rng.uniform(-0.45, 0.45, 3)
        vel, gyro_deg = rng.uniform(-1.5, 1.5, 3), np.degrees(rng.uniform(-4.0, 4.0, 3))
        q = _random_quat_xyzw(rng, 0.9)
        st = np.float32(np.concatenate([pos, vel, q, gyro_deg, [0.0, 0.0, 1.0]]))
        tick = 10 * (k + 1)  # a policy period (RATE_DO_EXECUTE(100, step)), the host's setpoint fresh
        sp = Setpoint(mode_x=MODE_ABS, mode_y=MODE_ABS, mode_z=MODE_ABS, mode_yaw=MODE_ABS, x=ref[0], y=ref[1], z=ref[2],
                      timestamp=tick / 1000.0)
        app.step(tick, tick, True, st, sp)
        assert app.fault == 0 and app.steps == k + 1
        got_obs, got_act = app.policy_io()
        # the training side, on the state the app was given (float32 values, in float64)
        s = st.astype(np.float64)
        p, v, qx, g = s[0:3], s[3:6], s[6:10], np.radians(s[10:13])
        i = integral.update(p - ref, ref)
        want_obs = observation(c, p, qx[[3, 0, 1, 2]], v, g, prev, ref, integral=i)
        want_act = bundle.act(want_obs)
        obs_err.append(np.max(np.abs(got_obs - want_obs)))
        act_err.append(np.max(np.abs(got_act - want_act)))
        if n_hist:
            prev = np.concatenate([np.clip(got_act.astype(np.float64), lo, hi), prev[:-4]])
    print(f"{path.name}: observation max abs error {max(obs_err):.2e}, action {max(act_err):.2e}")
    assert max(obs_err) < 1e-6 and max(act_err) < 5e-6


# --- closed loop: the vehicle flies the compiled app ----------------------------------------------------------
def _take_off_and_hold(sim, hold_s: float = 2.0) -> np.ndarray:
    """As CrazyflieOnboardLink.start: to 1 m at 0.4 m/s, settle 1 s, then hold; the host's keep-alive repeats
    every setpoint every 2 ms (edgectl.linkMs 6). Returns the distance to (0, 0, 1) over the hold."""
    link = sim.open_link(lambda raw: None)
    sim.set_param("stabilizer.controller", 6)
    sim.set_param("edgectl.linkMs", 6)
    err = []
    n_climb, n_settle = 250, 100
    for k in range(n_climb + n_settle + round(hold_s * 100)):
        packet = _position(0.0, 0.0, min(1.0, 0.4 * (k + 1) / 100))
        for _ in range(5):
            link.send(packet)
            sim.advance(0.002)
        if k >= n_climb + n_settle:
            err.append(np.linalg.norm(sim.state()[0:3] - np.array([0.0, 0.0, 1.0])))
    return np.array(err)


def test_the_vehicle_takes_off_and_holds_hover_on_the_compiled_app():
    """The hover fixture on board: within 7 cm of the reference over 2 s of hold and 3 cm at its end (identified
    Crazyflie 2.1, issue 13: 5.8 cm max as the hold starts, the take-off's lag, 2.6 cm at the end),
    no fault, the policy every 10 ms, no link episode; the same flight with the bundle's float64 forward in place
    of the generated C ends where it does (1e-7 m apart measured)."""
    runs = {}
    for impl in ("c", "numpy"):
        sim = CrazyflieSim(VEHICLE, realtime=False, bundle=HOVER, onboard_impl=impl, seed=0)
        err = _take_off_and_hold(sim)
        app = sim.onboard
        assert app.engaged and app.fault == 0 and app.link_drops == 0 and app.steps == 550, app.status()
        print(f"{impl}: hover error max {100 * err.max():.2f} cm, RMS {100 * np.sqrt(np.mean(err ** 2)):.2f} cm")
        assert err.max() < 0.07 and err[-1] < 0.03, (err.max(), err[-1])
        runs[impl] = sim.state()[0:3]
    assert np.max(np.abs(runs["c"] - runs["numpy"])) < 1e-5

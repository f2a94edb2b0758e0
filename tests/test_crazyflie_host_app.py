"""The Crazyflie app compiled for this host (firmware_bridge/crazyflie/host_app.py): the build and its cache,
the one-line refusal without a compiler, and the app's policy step against the training side's observation
and the bundle's float MLP (differential)."""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("export.c_codegen")

from edgectl.bundle import load_bundle  # noqa: E402
from firmware_bridge.crazyflie import host_app  # noqa: E402
from firmware_bridge.crazyflie.host_app import AppImage, NoCompiler  # noqa: E402
from firmware_bridge.crazyflie.setpoints import MODE_ABS, Setpoint  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
HOVER, INTEGRAL = DATA / "hover_bundle", DATA / "hover_integral_bundle"
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="no host C compiler (gcc)")


# --- the build ---------------------------------------------------------------------------------------------
@needs_gcc
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


def test_no_compiler_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no gcc on it
    with pytest.raises(NoCompiler, match="no C compiler"):
        AppImage(HOVER)


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


@needs_gcc
@pytest.mark.parametrize("path", [HOVER, INTEGRAL], ids=["hover", "hover_integral"])
def test_policy_step_equals_the_training_observation_and_float_mlp(path):
    """300 policy periods from random states in firmware units (gyro deg/s, quaternion x y z w, position, velocity),
    the reference hopping every 60: the observation the app's C builds and the action its generated float32 policy
    returns equal edgectl's observation builder (edgectl.safety.shield.observation, the integral by
    edgectl.contract.PositionIntegral) and the bundle's float MLP (Bundle.act, float64) on the same state.
    Measured: observation within 1.5e-7, action within 3.3e-7 (both bundles)."""
    from edgectl.contract import PositionIntegral
    from edgectl.safety.shield import observation
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

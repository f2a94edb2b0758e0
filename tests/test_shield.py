"""Backup controller, predictive shield, sabotage demonstration and the C backup.

Fixed seeds; fewer episodes than the 1,000 of the acceptance run (edgectl eval --shield), but the
same claims: the backup recovers from bad states, the shield switches on a predicted violation and
says why, respects its hold-off, never passes a NaN, turns a sabotaged policy's violations into
none, leaves a good policy in control, and the C backup computes what the Python one does."""
from __future__ import annotations

import ctypes
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgectl.bundle import load_bundle
from edgectl.platforms import load_platform
from edgectl.safety import backup as bk
from edgectl.safety.shield import BACKUP, NOMINAL, Shield, ShieldConfig, shield_cost

REPO = Path(__file__).resolve().parent.parent
HOVER_BUNDLE = REPO / "tests" / "data" / "hover_bundle"
GCC = shutil.which("gcc")
CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-Wdouble-promotion", "-pedantic", "-O2", "-shared", "-fPIC"]


@pytest.fixture(scope="module")
def platform():
    return load_platform("crazyflie_2_1")


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(HOVER_BUNDLE)


@pytest.fixture(scope="module")
def config(platform):
    from train_fast.sabotage import demo_config
    return demo_config(platform)


# --- backup controller -------------------------------------------------------------------------
_FLY = {}


def _fly_backup(platform, n, steps, seed, weak=None, tilt=math.pi / 2, vel=1.0, randomize=False):
    """The backup alone from the hover task's start (the platform's nominal vehicle, or with ``randomize``
    one drawn from its randomization ranges; force and torque disturbance; tilt about a random axis up to
    ``tilt``, velocity up to ``vel`` per axis, 0.2 m, 1 rad/s), rotor ``weak`` at 70 %. Returns positions
    (N, T, 3), tilt (N, T), speed (N, T). One compiled function per (n, steps, randomize): the ranges are
    arguments."""
    import jax
    import jax.numpy as jnp

    from train_fast.safety_rollout import _weaken, backup_jax_step
    from train_fast.sims import quadrotor as quad
    from train_fast.tasks import quadrotor_tasks as qt

    if (n, steps, randomize) not in _FLY:
        env = qt.make_env(qt.hover_config(), platform, randomize=randomize)
        model = bk.model_from_platform(platform)
        step = backup_jax_step(model, bk.BackupGains())

        def one(key, tilt_max, vel_max, factor):
            k1, k2, k3 = jax.random.split(key, 3)
            s = qt.reset(k1, env)
            sim = quad.State(pos=s.sim.pos, quat=quad.random_quaternion_within(k2, tilt_max),
                             vel=jax.random.uniform(k3, (3,), minval=-vel_max, maxval=vel_max),
                             omega=s.sim.omega, motor=s.sim.motor)
            cs = bk.init_state(model, sim.pos, target=jnp.zeros(3), motor=sim.motor, xp=jnp)

            def body(c, _):
                sim, cs = c
                cs, a = step(cs, sim.pos, sim.quat, sim.vel, sim.omega)
                sim = quad.dynamics_step(sim, _weaken(a, s.params, factor), s.params)
                tl = jnp.arccos(jnp.clip(1 - 2 * (sim.quat[1] ** 2 + sim.quat[2] ** 2), -1, 1))
                return (sim, cs), (sim.pos, tl, jnp.linalg.norm(sim.vel))

            return jax.lax.scan(body, (sim, cs), None, length=steps)[1]

        _FLY[(n, steps, randomize)] = jax.jit(jax.vmap(one, in_axes=(0, None, None, None)))
    factor = np.ones(4, np.float32)
    if weak is not None:
        factor[weak] = math.sqrt(0.7)
    out = _FLY[(n, steps, randomize)](jax.random.split(jax.random.PRNGKey(seed), n), tilt, vel, factor)
    return [np.asarray(v) for v in jax.device_get(out)]


@pytest.mark.parametrize("weak", [None, 0])
def test_backup_recovers_from_bad_states(platform, weak):
    # Up to 90 deg of tilt, 1 m/s and 1 rad/s per axis, 0.2 m off, randomized vehicle with a
    # constant force and torque disturbance; optionally rotor M1 at 70 % thrust.
    pos, tilt, speed = _fly_backup(platform, 256, 300, seed=7, weak=weak)
    within = np.abs(pos).max(axis=(1, 2)) < 0.6  # the task's crash bound
    leveled = (tilt[:, :100] < 0.2).any(axis=1)  # level (11 deg) within 1 s
    settled = (speed[:, -1] < 0.1) & (tilt[:, -1] < 0.3) & (np.abs(pos[:, -1]).max(axis=1) < 0.1)  # at 3 s
    rate = float(np.mean(within & leveled & settled))
    # The nominal Crazyflie 2.1 as identified (thrust-to-weight 1.7, rotors falling 4.5x slower than they
    # rise): 97.3 % (87.9 % with the weak rotor) of 256 starts. With the paper's model (2.2, one 0.15 s lag)
    # it was 98.9 % (97 %) over 2,000 starts. The sabotaged policies crash from 24-67 % of far milder starts.
    assert rate >= (0.95 if weak is None else 0.85), rate


def test_backup_on_perturbed_vehicles():
    """Across the platform's randomization ranges (mass +-30 %, inertia x0.4-2, thrust +-20 %, lags x0.5-2):
    the backup knows only the nominal model. Measured: 85.5 % of 256 starts stay within the crash bound,
    82.8 % also level and settle (a vehicle with 1.3x the mass and 0.8x the thrust has a thrust-to-weight of
    1.05 and cannot recover a 90 deg start at all)."""
    pos, tilt, speed = _fly_backup(load_platform("crazyflie_2_1"), 256, 300, seed=7, randomize=True)
    within = np.abs(pos).max(axis=(1, 2)) < 0.6
    settled = (speed[:, -1] < 0.1) & (tilt[:, -1] < 0.3) & (np.abs(pos[:, -1]).max(axis=1) < 0.1)
    assert float(np.mean(within)) >= 0.8 and float(np.mean(within & settled)) >= 0.75, (np.mean(within), np.mean(settled))


def test_backup_from_demo_start_keeps_the_specs(platform):
    # The demonstration's start distribution: the backup alone keeps the specs from all of it (with
    # a margin), or zero violations with the shield would be luck.
    from train_fast.sabotage import DEMO_START
    pos, tilt, _ = _fly_backup(platform, 256, 300, seed=3, weak=0, tilt=DEMO_START["init_tilt"],
                               vel=DEMO_START["init_velocity"])
    assert np.abs(pos).max() < 0.45 and tilt.max() < 0.95


def test_backup_phases_hold_descend_land(platform):
    from edgectl.plant import quadrotor as nq

    gains = bk.BackupGains(hold_s=1.0, ground_z=-0.6)
    p = nq.params_from_platform(platform)
    rng = np.random.default_rng(2)
    for _ in range(3):
        x = nq.hover_state(p)
        ang = rng.uniform(0.9, 1.3)  # past relevel_tilt: starts in level
        x[3:7] = (math.cos(ang / 2), math.sin(ang / 2), 0.0, 0.0)
        x[7:10] = rng.uniform(-0.5, 0.5, 3)
        ctl = bk.BackupController(platform, gains)
        ctl.engage(x[0:3])  # no target: hold where leveling ends
        phases, zs = [], []
        for _ in range(600):
            a = ctl(x[0:3], x[3:7], x[7:10], x[10:13])
            phases.append(ctl.phase)
            nq.step_into(x, a, p, x)
            zs.append(x[2])
        seen = [v for i, v in enumerate(phases) if i == 0 or v != phases[i - 1]]
        assert seen == ["level", "hold", "descend", "landed"], seen
        t_land = phases.index("landed")
        vz = (zs[t_land - 2] - zs[t_land - 12]) / 0.1
        assert -0.4 < vz < -0.2, vz  # touches down at about descent_rate
        assert np.abs(ctl.state["hold"][:2] - x[:2]).max() < 0.15
        assert phases.index("hold") < 100  # leveled within 1 s
        assert np.all(a == -1.0)  # landed: motors at minimum


def test_backup_numpy_equals_jax_and_handles_nan(platform):
    import jax.numpy as jnp

    from train_fast.safety_rollout import backup_jax_step
    model, gains = bk.model_from_platform(platform), bk.BackupGains()
    rng = np.random.default_rng(0)
    pos, vel, om = rng.uniform(-0.4, 0.4, (64, 3)), rng.uniform(-1, 1, (64, 3)), rng.uniform(-3, 3, (64, 3))
    q = rng.standard_normal((64, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    cs = bk.init_state(model, pos, target=np.zeros(3))
    for _ in range(3):
        cs, a = bk.step(model, gains, cs, pos, q, vel, om)
    cj = bk.init_state(model, jnp.asarray(pos, jnp.float32), target=jnp.zeros(3), xp=jnp)
    for _ in range(3):
        cj, aj = backup_jax_step(model, gains)(cj, *(jnp.asarray(v, jnp.float32) for v in (pos, q, vel, om)))
    assert np.abs(np.asarray(aj) - a).max() < 2e-3  # float32 against float64
    # NaN state: finite hover command, integrators and observers untouched.
    bad = pos.copy()
    bad[0, 1] = np.nan
    cs2, a2 = bk.step(model, gains, cs, bad, q, vel, om)
    assert np.all(np.isfinite(a2)) and np.allclose(a2[0], model.hover_action)
    assert np.array_equal(cs2["i_pos"][0], cs["i_pos"][0]) and np.array_equal(cs2["dist"][0], cs["dist"][0])


# --- host shield -------------------------------------------------------------------------------
def _state(pos=(0, 0, 0), vel=(0, 0, 0), quat=(1, 0, 0, 0), omega=(0, 0, 0)):
    return tuple(np.asarray(v, np.float64) for v in (pos, quat, vel, omega))


def test_shield_switches_on_predicted_violation_and_logs_reason(bundle, platform, config):
    from dataclasses import replace
    sh = Shield(bundle.act, bundle.contract, platform, replace(config, start_in_backup=False))
    pos, quat, vel, om = _state(pos=(0.05, 0.0, 0.0))
    sh.step(pos, quat, vel, om)
    assert sh.mode == NOMINAL and not sh.log  # near hover: the policy flies
    # 0.42 m out and flying outward at 1.5 m/s: the predicted trace leaves the 0.5 m box.
    pos, quat, vel, om = _state(pos=(0.42, 0.0, 0.0), vel=(1.5, 0.0, 0.0))
    a = sh.step(pos, quat, vel, om)
    assert sh.mode == BACKUP and np.all(np.abs(a) <= 1.0)
    ev = sh.log[-1]
    assert ev.direction == "to_backup" and ev.spec in (0, 1) and ev.robustness < config.margins[ev.spec]
    assert config.specs[ev.spec] in ev.reason and "predicted robustness" in ev.reason
    assert ev.t == pytest.approx(0.01)


def test_shield_holdoff_and_return(bundle, platform):
    from edgectl.plant import quadrotor as nq

    cfg = ShieldConfig(holdoff_s=0.3, start_in_backup=True)
    sh = Shield(bundle.act, bundle.contract, platform, cfg)
    p = nq.params_from_platform(platform)
    x = nq.hover_state(p)
    x[0], x[7] = 0.35, 1.2  # heading out of the box
    for i in range(400):
        if i == 200:
            x[7:10] = (0.0, -2.0, 0.0)  # a gust: the prediction leaves the box
        a = sh.step(x[0:3], x[3:7], x[7:10], x[10:13])
        assert sh.mode == BACKUP or i >= 30  # the hold-off also holds at the start
        nq.step_into(x, a, p, x)
    dirs = [e.direction for e in sh.log]
    assert dirs[:3] == ["to_nominal", "to_backup", "to_nominal"], sh.log
    first, back, ret = sh.log[:3]
    assert first.t >= cfg.holdoff_s - 1e-9 and back.t == pytest.approx(2.0)
    assert ret.t - back.t >= cfg.holdoff_s - 1e-9
    for e in (first, ret):  # handed back on a safe prediction, said so
        assert e.spec >= 0 and e.robustness >= cfg.margins[e.spec] and ">= margin" in e.reason
    assert back.robustness < cfg.margins[back.spec]
    assert np.abs(x[0:3]).max() < 0.5 and sh.mode == NOMINAL


def test_shield_nan_or_missing_state_goes_to_backup(bundle, platform, config):
    from dataclasses import replace
    sh = Shield(bundle.act, bundle.contract, platform, replace(config, start_in_backup=False))
    pos, quat, vel, om = _state()
    sh.step(pos, quat, vel, om)
    a = sh.step(np.array([0.0, np.nan, 0.0]), quat, vel, om)
    assert sh.mode == BACKUP and np.all(np.isfinite(a))
    assert sh.log[-1].spec == -1 and "pos[1] = nan" in sh.log[-1].reason
    for _ in range(50):  # the NaN persists: never handed back
        sh.step(np.array([0.0, np.nan, 0.0]), quat, vel, om)
    assert sh.mode == BACKUP and len(sh.log) == 1
    sh2 = Shield(bundle.act, bundle.contract, platform, replace(config, start_in_backup=False))
    sh2.step(pos, None, vel, om)
    assert sh2.mode == BACKUP and "quat missing" in sh2.log[-1].reason


def test_host_prediction_fused_mlp_equals_bundle_act(bundle, platform, config):
    fused = Shield(bundle.act, bundle.contract, platform, config)
    generic = Shield(lambda o: bundle.act(o), bundle.contract, platform, config)
    assert fused.mlp is not None and generic.mlp is None
    for pos, vel in (((0.1, -0.2, 0.05), (0.3, 0.0, -0.2)), ((0.3, 0.2, -0.1), (0.8, -0.5, 0.2))):
        s = _state(pos=pos, vel=vel, quat=(0.98, 0.1, -0.15, 0.05), omega=(0.5, -0.3, 0.2))
        s = (s[0], s[1] / np.linalg.norm(s[1]), s[2], s[3])
        ref = np.zeros(3)
        assert np.allclose(fused.predict(*s, ref), generic.predict(*s, ref), atol=1e-4)


def test_shield_cost_is_measurable():
    c = shield_cost(50, ticks=20)
    assert 0 < c < 0.05, c


# --- sabotage demonstration ----------------------------------------------------------------------
def test_sabotage_violations_without_shield_none_with(bundle):
    from train_fast.sabotage import evaluate_shielded

    off = evaluate_shielded(bundle, episodes=200, seed=12345, sabotage="weak-motor", shield=False)
    on = evaluate_shielded(bundle, episodes=200, seed=12345, sabotage="weak-motor", shield=True)
    # measured 4.5 % (9 of 200): the fixture trained across the identified Crazyflie's ranges flies most weak-rotor
    # episodes by itself (a bundle trained on the paper's narrow model violated in 57-59 %)
    assert off["violations"] >= 5, off
    assert on["violations"] == 0 and on["episode_robustness_min"] > 0, on
    assert on["survival_rate"] == 1.0 and on["switches_to_backup"] > 0
    events = on["switch_log"][0]["events"]
    assert events[0]["direction"] == "to_nominal" and events[0]["t"] >= 0.2  # handed over after the start hold-off
    ev = next(e for e in events if e["direction"] == "to_backup")
    assert ev["robustness"] < 0.15 and "predicted robustness" in ev["reason"]
    good = evaluate_shielded(bundle, episodes=200, seed=12345, sabotage=None, shield=True)
    # 96 %: the first 0.2 s of every episode under the backup (start_in_backup), none after.
    assert good["nominal_fraction"] >= 0.95 and good["violations"] == 0, good
    assert good["switches_to_backup"] == 0


def test_undertrained_and_noise_sabotages_are_bad(bundle):
    from train_fast.sabotage import plant_sabotage, undertrained_layers

    layers = undertrained_layers(bundle)
    assert [w.shape for w, _ in layers] == [w.shape for w, _ in bundle.layers]
    assert not np.allclose(layers[0][0], bundle.layers[0][0])
    p = plant_sabotage(bundle, "noise").arrays(bundle.contract["observation"]["size"])
    assert p["obs_noise"].max() > 0 and p["action_noise"] > 0
    with pytest.raises(ValueError, match="unknown kind 'sideways'"):
        plant_sabotage(bundle, "sideways")


# --- C backup ------------------------------------------------------------------------------------
def _c_lib(tmp: Path, platform, double: bool):
    from edgectl.safety import c_backup

    c_backup.write(platform, tmp)
    real = ctypes.c_double if double else ctypes.c_float
    so = tmp / ("libd.so" if double else "libf.so")
    r = subprocess.run([GCC, *CFLAGS, *(["-DEDGECTL_BACKUP_DOUBLE"] if double else []), "-o", str(so),
                        str(tmp / "edgectl_backup.c"), "-lm"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lib = ctypes.CDLL(str(so))

    class S(ctypes.Structure):
        _fields_ = [("phase", ctypes.c_int), ("t_phase", real)] + [(n, real * k) for n, k in bk.STATE_FIELDS[2:]]

    P = ctypes.POINTER(real)
    lib.edgectl_backup_step.argtypes = [ctypes.POINTER(S), P, P, P, P, P]
    lib.edgectl_backup_observe.argtypes = [ctypes.POINTER(S), P, P, P, P]
    return lib, S, real


def _random_controller(rng):
    phase = int(rng.integers(0, 4))
    nan_prev = rng.random() < 0.2
    return {"phase": np.int32(phase), "t_phase": np.float64(rng.uniform(0, 6)),
            "hold": np.full(3, np.nan) if phase == 0 and rng.random() < 0.3 else rng.uniform(-0.5, 0.5, 3),
            "i_pos": rng.uniform(-0.2, 0.2, 3), "motor": rng.uniform(0.3, 0.95, 4),
            "w_prev": np.full(3, np.nan) if nan_prev else rng.uniform(-3, 3, 3),
            "v_prev": np.full(3, np.nan) if nan_prev else rng.uniform(-1, 1, 3),
            "am": rng.uniform(-50, 50, 3), "lm": rng.uniform(-3, 3, 3),
            "dist": rng.uniform(-100, 100, 3), "fdist": rng.uniform(-1, 1, 3)}


def _random_vehicle(rng):
    ax = rng.standard_normal(3)
    ax /= np.linalg.norm(ax)
    ang = rng.uniform(0, math.pi)
    q = np.r_[math.cos(ang / 2), math.sin(ang / 2) * ax] * rng.uniform(0.95, 1.05)  # estimators drift off unit norm
    return rng.uniform(-0.6, 0.6, 3), q, rng.uniform(-1.5, 1.5, 3), rng.uniform(-5, 5, 3)


@pytest.mark.skipif(GCC is None, reason="no host C compiler (gcc)")
@pytest.mark.parametrize("double", [True, False])
def test_c_backup_equals_python(tmp_path, platform, double):
    lib, S, real = _c_lib(tmp_path, platform, double)
    model, gains = bk.model_from_platform(platform), bk.BackupGains()
    arr = lambda v: (real * len(v))(*(float(x) for x in v))  # noqa: E731
    rng = np.random.default_rng(1)
    worst_a = worst_t = worst_s = 0.0
    for n in range(3000):
        cs = _random_controller(rng)
        pos, q, vel, om = _random_vehicle(rng)
        if n % 100 == 0:
            pos[n % 3] = np.nan
        s = S(phase=int(cs["phase"]), t_phase=float(cs["t_phase"]))
        sqrt_region = False
        for name, _ in bk.STATE_FIELDS[2:]:
            getattr(s, name)[:] = [float(v) for v in cs[name]]
        if n % 2:
            new, a = bk.step(model, gains, cs, pos, q, vel, om)
            out = (real * 4)()
            lib.edgectl_backup_step(ctypes.byref(s), arr(pos), arr(q), arr(vel), arr(om), out)
            c_a = np.array(out[:])
            worst_a = max(worst_a, float(np.abs(c_a - a).max()))
            # Normalized rotor thrust ((a + 1) / 2)^2: the action is its square root, which turns
            # float rounding of a thrust near zero into 1e-3 on the action and means nothing.
            worst_t = max(worst_t, float(np.abs(((c_a + 1) / 2) ** 2 - ((a + 1) / 2) ** 2).max()))
            sqrt_region = bool(((a + 1) / 2 < 0.03).any())  # and so the rotor model fed with it
        else:
            act = rng.uniform(-1, 1, 4)
            new = bk.observe(model, gains, cs, q, vel, om, act)
            lib.edgectl_backup_observe(ctypes.byref(s), arr(q), arr(vel), arr(om), arr(act))
        assert s.phase == int(new["phase"])
        for name, _ in bk.STATE_FIELDS[1:]:
            c_v, p_v = np.atleast_1d(np.array(getattr(s, name) if name != "t_phase" else s.t_phase)), np.atleast_1d(new[name])
            assert np.array_equal(np.isnan(c_v), np.isnan(p_v)), name
            d = np.abs(c_v - p_v)[~np.isnan(p_v)] / (1.0 + np.abs(p_v[~np.isnan(p_v)]))
            if double or not sqrt_region:
                worst_s = max(worst_s, float(d.max(initial=0.0)))
    if double:
        assert worst_a < 1e-5 and worst_s < 1e-5, (worst_a, worst_s)  # measured ~1e-14
    else:
        # State: the model's angular acceleration is a difference of rotor thrusts over a 4e-6 kg m^2
        # inertia, which costs float 3-4 digits (1.5e-4 relative measured, 1e-4 rad/s^2 absolute).
        assert worst_t < 1e-5 and worst_s < 1e-3, (worst_t, worst_s)  # measured 1.2e-6, 1.5e-4

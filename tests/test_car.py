"""RC car: dynamics sanity, JAX == Numba, tracks and checkpoints, reset near the failure point,
pure pursuit, and a short training run that improves progress. Fixed seeds throughout."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from edgectl import cli
from edgectl.platforms import load_platform
from train_fast.sims import car as jcar
from edgectl.plant import car as ncar
from train_fast.tasks import car_tasks as ct

PLAT = load_platform("rc_car_1_10")
P = ncar.params_from_platform(PLAT)
G = {n: float(P[i]) for i, n in enumerate(ncar.PARAM_NAMES)}
DT = G["dt"]
WHEELBASE = G["lf"] + G["lr"]


def drive(state, controller, steps):
    """Run `steps` Numba steps with action = controller(state); returns (steps + 1, 8) states."""
    out = [state]
    for _ in range(steps):
        state = ncar.step(state, np.asarray(controller(state), np.float64), P)
        out.append(state)
    return np.array(out)


def hold_speed(v, steer):
    return lambda s: (steer, float(np.clip(2.0 * (v - s[3]), -1.0, 1.0)))


# --- dynamics sanity ---------------------------------------------------------------------------
def test_straight_line_acceleration_is_limited_by_the_motor_and_the_speed_controller():
    xs = drive(ncar.initial_state(0.0, 0.0, 0.0), lambda s: (0.0, 1.0), 500)  # 10 s of full throttle
    accel = np.diff(xs[:, 3]) / DT
    assert accel.max() <= G["max_force"] / G["mass"] + 1e-9  # never more than the drive force gives
    assert accel.max() > 0.6 * G["max_force"] / G["mass"]
    assert 0.9 * G["max_speed"] < xs[-1, 3] < G["max_speed"]  # approaches the ESC's top speed from below
    assert np.all(np.abs(xs[:, [1, 2, 4, 5]]) < 1e-12)  # straight means straight
    # Full brake stops the car (within the brake's distance plus lag) and never reverses it.
    ys = drive(ncar.initial_state(0.0, 0.0, 0.0, 4.0), lambda s: (0.0, -1.0), 150)
    assert ys[-1, 3] < 0.05 and ys[:, 3].min() > -1e-9
    assert ys[-1, 0] < 1.3 * 4.0 ** 2 / (2 * G["max_brake_force"] / G["mass"]) + 4.0 * 0.2


@pytest.mark.parametrize("speed", [0.5, 1.0])
def test_low_speed_turning_radius_is_the_bicycle_geometry(speed):
    steer = 0.5
    xs = drive(ncar.initial_state(0.0, 0.0, 0.0, speed), hold_speed(speed, steer), 400)
    s = xs[-1]
    radius = s[3] / s[5]
    assert radius == pytest.approx(WHEELBASE / math.tan(steer * G["max_steer"]), rel=0.05)


def test_tires_slip_and_saturate_at_high_lateral_demand():
    # Full steer at 4 m/s: the kinematic bicycle would need almost twice the friction limit.
    xs = drive(ncar.initial_state(0.0, 0.0, 0.0, 4.0), lambda s: (1.0, 1.0), 25)  # 0.5 s
    vx, vy, r, delta = xs[:, 3], xs[:, 4], xs[:, 5], xs[:, 6]
    mu_g = G["friction"] * G["gravity"]
    demand = vx ** 2 * np.tan(delta) / WHEELBASE
    lateral = np.diff(vy) / DT + 0.5 * (vx[1:] * r[1:] + vx[:-1] * r[:-1])  # body-frame a_y
    assert demand.max() > 1.6 * mu_g
    assert 0.8 * mu_g < lateral.max() <= mu_g  # the tires give about their limit, never more
    slip_front = delta - np.arctan2(vy + G["lf"] * r, vx)
    assert slip_front.max() > 0.35  # rad: deep in the tanh's saturation (linear up to ~0.1)
    k = 12  # mid-manoeuvre: the path is far wider than the steering geometry (understeer)
    assert vx[k] / r[k] > 1.4 * WHEELBASE / math.tan(delta[k])
    assert vx[-1] < 3.3  # the sliding front tire scrubs speed despite full throttle


def test_jax_equals_numba_over_1000_random_action_steps():
    rng = np.random.default_rng(7)
    # Actions held for 1-10 steps (a policy is smoother than white noise), throttle biased forward
    # so the car visits every speed regime, the kinematic blend included.
    holds = rng.integers(1, 11, 400)
    acts = np.repeat(rng.uniform(-1, 1, (400, 2)) + [0.0, 0.4], holds, axis=0)[:1000]
    assert len(acts) == 1000
    s0 = ncar.initial_state(0.5, -0.2, 0.3)
    ref = [s0]
    for a in acts:
        ref.append(ncar.step(ref[-1], a, P))
    ref = np.array(ref[1:])
    with jax.enable_x64(True):
        pj = jcar.params_from_array(P, jnp.float64)

        @jax.jit
        def run(s, actions):
            def body(s, a):
                s2 = jcar.dynamics_step(s, a, pj)
                return s2, jcar.state_to_array(s2)
            return jax.lax.scan(body, s, actions)[1]

        got = np.asarray(run(jcar.state_from_array(jnp.asarray(s0)), jnp.asarray(acts)))
    assert got.dtype == np.float64
    assert np.abs(ref[:, 3]).max() > 3.0 and np.abs(ref[:, 5]).max() > 1.0  # it really drove and turned
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)


def test_step_batch_matches_step():
    rng = np.random.default_rng(3)
    states = np.stack([ncar.initial_state(*rng.uniform(-1, 1, 3), rng.uniform(0, 4)) for _ in range(8)])
    acts = rng.uniform(-1, 1, (8, 2))
    out = ncar.step_batch(states, acts, P, np.empty_like(states))
    for i in range(8):
        np.testing.assert_array_equal(out[i], ncar.step(states[i], acts[i], P))


def test_params_from_platform_refuses_a_quadrotor():
    with pytest.raises(ValueError, match="crazyflie_2_1.*not an rc_car"):
        ncar.params_from_platform(load_platform("crazyflie_2_1"))


# --- tracks and checkpoints --------------------------------------------------------------------
def circle_csv(radius=3.0, half_width=0.6, noise=0.01, header=True) -> bytes:
    rng = np.random.default_rng(11)
    t = np.arange(0.0, 2 * math.pi * radius / 1.5, 0.1)  # 1.5 m/s, 10 Hz
    th = t * 1.5 / radius
    x = radius * np.cos(th) + rng.normal(0, noise, len(t))
    y = radius * np.sin(th) + rng.normal(0, noise, len(t))
    lines = [f"# half_width: {half_width} m"] if header else []
    lines += ["x,y,t"] + [f"{a:.4f},{b:.4f},{c:.2f}" for a, b, c in zip(x, y, t)]
    return ("\n".join(lines) + "\n").encode()


def test_checkpoints_from_a_demonstration_lap():
    tr = ct.parse_track(circle_csv(), "circle.csv")
    assert tr.length == pytest.approx(2 * math.pi * 3.0, rel=0.01)
    assert np.mean(tr.curvature) == pytest.approx(1 / 3.0, rel=0.03)  # counter-clockwise: positive
    assert tr.demo_lap_time == pytest.approx(2 * math.pi * 3.0 / 1.5, abs=0.15)
    cps = ct.extract_checkpoints(tr, spacing=2.5)
    assert len(cps) == round(tr.length / 2.5) == 8
    assert cps[0] == 0 and np.hypot(*(tr.points[0] - [3.0, 0.0])) < 0.03  # the start/finish line is the first row
    gaps = np.diff(np.append(cps, tr.n)) * tr.spacing
    np.testing.assert_allclose(gaps, tr.length / 8, atol=0.11)
    # The smoothed lap stays on the demonstrated circle despite the 1 cm noise.
    assert np.abs(np.hypot(*tr.points.T) - 3.0).max() < 0.02


@pytest.mark.parametrize("name", ["oval", "twisty"])
def test_shipped_tracks_load(name):
    tr = ct.load_track(name)
    assert tr.length > 25 and tr.demo_lap_time > 10 and 0.5 < tr.half_width < 1.0
    env = ct.make_env(ct.TaskConfig(track=name), PLAT, track=tr)
    assert 8 <= len(env.checkpoints) <= 20


def test_track_errors_name_the_file_and_field(tmp_path):
    with pytest.raises(ct.TrackError, match=r"circle\.csv.*half_width"):
        ct.parse_track(circle_csv(header=False), "circle.csv")
    with pytest.raises(ct.TrackError, match=r"circle\.csv: field half_width \(3\.2 m\).*tighter than the half width"):
        ct.parse_track(circle_csv(half_width=3.2), "circle.csv")
    th = np.linspace(0, 2 * np.pi, 400, endpoint=False)  # a figure-eight lap crosses itself
    eight = "# half_width: 0.5\nx,y\n" + "\n".join(f"{6 * math.sin(a):.4f},{3 * math.sin(2 * a):.4f}" for a in th)
    with pytest.raises(ct.TrackError, match=r"eight\.csv: field half_width \(0\.5 m\).*overlaps itself"):
        ct.parse_track(eight.encode(), "eight.csv")
    bad = circle_csv().replace(b"\n3.", b"\n3.x", 1)
    with pytest.raises(ct.TrackError, match=r"circle\.csv: data row \d+"):
        ct.parse_track(bad, "circle.csv")
    with pytest.raises(ct.TrackError, match="unknown track 'nowhere'.*oval"):
        ct.load_track("nowhere")


# --- the race environment ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def oval_env():
    return ct.make_env(ct.TaskConfig(track="oval"), PLAT, randomize=False)


def test_collision_resets_near_the_failure_point(oval_env):
    env = oval_env
    step = jax.jit(lambda s, a: ct.step(None, s, a, env))
    # On the line at point 40, heading 60 deg off toward the outside, rolling at 3 m/s.
    s = ct.place(env, 40, 0.0, -1.0, 3.0, env.nominal, jnp.ones(len(jcar.RANDOMIZED)))
    cp0 = int(s.cp)
    for _ in range(100):
        before = s
        s, reward, terminated, truncated = step(s, jnp.array([0.0, 0.3]))
        assert not bool(terminated)  # practice continues: a collision is not an episode end
        if int(s.collisions):
            break
    assert int(s.collisions) == 1
    assert float(reward) == -env.cfg.collision_penalty
    # Standing on the demonstration line, reset_backoff behind the projection of where it failed.
    assert float(s.sim.vx) == 0.0 and float(s.sim.yaw_rate) == 0.0 and float(s.sim.steer) == 0.0
    on_line = env.track.points[int(s.idx)]
    assert np.hypot(float(s.sim.x) - on_line[0], float(s.sim.y) - on_line[1]) < 1e-5
    behind = ((int(before.idx) - int(s.idx)) % env.track.n) * env.track.spacing
    assert env.cfg.reset_backoff - 0.2 <= behind <= env.cfg.reset_backoff + 0.2
    fail_xy = np.array([float(before.sim.x), float(before.sim.y)])
    assert np.hypot(*(fail_xy - on_line)) < env.track.half_width + env.cfg.reset_backoff + 0.2
    assert int(s.cp) == cp0  # still heading for the same checkpoint
    # ... and driving on from there passes it.
    for _ in range(200):
        s, *_ = step(s, _follow(env, s))
    assert int(s.passed) >= 1 and int(s.collisions) == 1


def _follow(env, s):
    """A gentle line follower for the test: steer toward the lap point 1 m ahead, slow throttle."""
    target = env.track.points[(int(s.idx) + 10) % env.track.n]
    bearing = math.atan2(target[1] - float(s.sim.y), target[0] - float(s.sim.x)) - float(s.sim.yaw)
    bearing = math.atan2(math.sin(bearing), math.cos(bearing))
    return jnp.array([np.clip(2.0 * bearing, -1, 1), np.clip(2.0 * (1.5 - float(s.sim.vx)), -1, 1)])


def test_observation_matches_the_contract(oval_env):
    env = oval_env
    c = ct.contract(env.cfg, PLAT)
    s = ct.reset(jax.random.PRNGKey(0), env)
    obs = ct.observe(jax.random.PRNGKey(1), env, s)
    assert obs.shape == (c["observation"]["size"],) == (env.obs_size,)
    assert ct.observe_privileged(env, s).shape == (env.critic_size,)
    assert c["action"]["names"] == ["steer", "throttle"]
    # Checkpoints are in the body frame (x forward, y left): on the start line of this
    # counter-clockwise lap, in a left-hand bend, the next one is ahead and to the left.
    s0 = ct.start_line(env)
    raw = np.asarray(ct._fields(env, s0))
    cp = env.track.points[env.checkpoints[1]]
    yaw = float(s0.sim.yaw)
    dx, dy = cp[0] - float(s0.sim.x), cp[1] - float(s0.sim.y)
    np.testing.assert_allclose(raw[4:6], [dx * math.cos(yaw) + dy * math.sin(yaw), -dx * math.sin(yaw) + dy * math.cos(yaw)], atol=1e-5)
    assert raw[4] > 0 and raw[5] > 0
    scan_env = ct.make_env(ct.TaskConfig(track="oval", scan_beams=5), PLAT, randomize=False)
    # On the line of the oval's gentle side, along it: the side beams meet the edges a half width
    # away, the middle one sees far down the corridor.
    side = ct.place(scan_env, scan_env.track.n // 4, 0.0, 0.0, 0.0, scan_env.nominal, jnp.ones(len(jcar.RANDOMIZED)))
    scan = np.asarray(ct.range_scan(scan_env, side))
    assert abs(scan[0] - env.track.half_width) < 0.3 and abs(scan[-1] - env.track.half_width) < 0.3
    assert scan[2] >= 3.0


def test_pure_pursuit_drives_a_lap_without_collision(oval_env):
    from train_fast.baselines import pure_pursuit as pp

    cfg = {"lateral_accel": 6.0, "lookahead_base": 0.8, "lookahead_gain": 0.15, "brake_accel": 4.0}
    res = pp.evaluate(oval_env, [cfg], laps=1)[0]
    assert res["laps_completed"] == 1 and res["collisions"] == 0
    assert res["lap_time_s"] < oval_env.track.demo_lap_time  # faster than the demonstration
    prof = pp.speed_profile(oval_env.track, 6.0, 4.0, 4.0, 5.04)
    assert prof.max() <= 5.04 and prof.min() == pytest.approx(math.sqrt(6.0 / np.abs(oval_env.track.curvature).max()), rel=0.01)


# --- training ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def short_run():
    from train_fast.train import train

    return train(task="race", track="oval", seconds=120, seed=0, max_env_steps=450_000,
                      ppo_overrides={"num_envs": 256, "minibatches": 4, "iters_per_chunk": 8})


def test_short_training_run_improves_progress(short_run):
    h = short_run.history
    assert h[-1]["mean_reward"] > 3 * max(h[0]["mean_reward"], 0.02)
    best = max(h, key=lambda e: e["eval_score"])
    assert best["eval_score"] > h[0]["eval_score"]
    assert best["eval_progress_m"] >= h[0]["eval_progress_m"]
    assert short_run.extra_files["track.csv"] == ct.load_track("oval").raw


def test_race_bundle_evaluates_from_the_cli(short_run, tmp_path, monkeypatch):
    import json

    from train_fast.baselines import pure_pursuit as pp
    from train_fast.train import save_bundle

    out = save_bundle(short_run, tmp_path / "race")
    # A two-configuration grid keeps the test fast; the real grid is GRID.
    monkeypatch.setattr(pp, "GRID", {"lateral_accel": (6.0, 8.0), "lookahead_base": (0.8,), "lookahead_gain": (0.15,),
                                     "brake_accel": (4.0,)})
    monkeypatch.setenv("EDGECTL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(pp, "_CACHE", tmp_path / "cache" / "pure_pursuit")
    r = CliRunner().invoke(cli.app, ["eval", str(out), "--laps", "1", "--json", "--plot", str(tmp_path / "lap.png")])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout.strip().splitlines()[-1])
    for key in ("lap_time_s", "baseline_lap_time_s", "collisions_per_lap"):
        assert key in s
    assert s["track"] == "oval" and s["baseline_lap_time_s"] > 0
    assert (tmp_path / "lap.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_refuses_bad_track_arguments():
    r = CliRunner().invoke(cli.app, ["train", "rc-car", "--track", "nowhere", "--seconds", "5"])
    assert r.exit_code == 2 and "unknown track 'nowhere'" in r.stderr and "oval" in r.stderr
    r = CliRunner().invoke(cli.app, ["train", "quadrotor", "--track", "oval", "--seconds", "5"])
    assert r.exit_code == 2 and "--track applies to rc-car race, not to quadrotor hover" in r.stderr
    assert cli.VEHICLES["rc-car"] == tuple(ct.TASKS)

"""Vision quadrotor `avoid`: the raycast camera (known depths, numpy == JAX, appearance randomization leaves
geometry alone), collisions, the environment's shapes under vmap, and one short training run that must
learn to cross obstacle fields, then write a bundle that evaluates, exports (ONNX parity, C) and flies
from the simulated camera. Fixed seeds throughout."""
from __future__ import annotations

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from edgectl import cli
from edgectl import scene as sc
from edgectl.bundle import load_bundle
from edgectl.runtime import camera as rcam
from train_fast.sims import camera as cam
from train_fast.tasks import avoid_tasks as at


def one_cylinder(x=3.0, y=0.0, r=0.5, half_width=50.0, ceiling=50.0, K=3):
    xy = np.tile(np.array([sc.FAR, 0.0], np.float32), (K, 1))
    rr = np.zeros(K, np.float32)
    xy[0], rr[0] = (x, y), r
    app = sc.appearance_np(np.random.default_rng(0), K)
    return sc.Scene(obs_xy=xy, obs_r=rr, half_width=np.float32(half_width), ceiling=np.float32(ceiling), **app)


def to_jax(scene):
    return jax.tree_util.tree_map(jnp.asarray, scene)


# --- camera -----------------------------------------------------------------------------------------
def test_ray_straight_at_a_cylinder_reads_its_distance():
    spec = sc.CameraSpec(width=1, height=1, supersample=1, max_range=10.0)  # the one ray is the optical axis
    pos = np.array([0.0, 0.0, 1.0])
    for x, r in ((3.0, 0.5), (1.2, 0.1), (7.5, 0.3)):
        s = one_cylinder(x=x, r=r)
        assert sc.render_depth(np, s, pos, spec)[0, 0] == pytest.approx(x - r, abs=1e-5)
        assert float(cam.render_depth(to_jax(s), jnp.asarray(pos), spec)[0, 0]) == pytest.approx(x - r, abs=1e-4)
    # beyond the range: max_range; an obstacle behind the camera is not seen
    assert sc.render_depth(np, one_cylinder(x=20.0), pos, spec)[0, 0] == pytest.approx(10.0)
    assert sc.render_depth(np, one_cylinder(x=-3.0), pos, spec)[0, 0] == pytest.approx(10.0)


def test_off_axis_rays_hit_the_cylinder_floor_and_walls_where_geometry_says():
    spec = sc.CameraSpec(width=16, height=12, supersample=1, max_range=100.0)
    dy, dz = spec.ray_grid()
    pos = np.array([0.0, 0.3, 1.0])
    s = one_cylinder(x=4.0, y=0.5, r=0.4, half_width=2.0, ceiling=2.5)
    d = sc.render_depth(np, s, pos, spec)
    for i in range(12):
        for j in range(16):
            cands = [math.inf]
            if dz[i, j] < 0:
                cands.append(1.0 / -dz[i, j])
            if dz[i, j] > 0:
                cands.append(1.5 / dz[i, j])
            cands.append((2.0 - 0.3) / dy[i, j] if dy[i, j] > 0 else (-2.0 - 0.3) / dy[i, j])
            # cylinder: |(t, 0.3 + t dy) - (4, 0.5)| = 0.4, smallest positive root
            a, b, c = 1 + dy[i, j] ** 2, 2 * (-4.0 + (-0.2) * dy[i, j]), 16.0 + 0.04 - 0.16
            disc = b * b - 4 * a * c
            if disc > 0:
                cands.append((-b - math.sqrt(disc)) / (2 * a))
            assert d[i, j] == pytest.approx(min(min(cands), 100.0), rel=1e-4), (i, j)


def test_numpy_and_jax_render_the_same_pixels():
    cfg = at.TaskConfig()
    s = cam.sample_scene(jax.random.PRNGKey(4), cfg.scene())
    s_np = jax.tree_util.tree_map(np.asarray, s)
    spec = cfg.camera()
    for p in ([0.0, 0.2, 1.0], [3.0, -0.5, 1.4]):
        pos = np.asarray(p, np.float32)
        np.testing.assert_allclose(sc.render_depth(np, s_np, pos, spec), cam.render_depth(s, jnp.asarray(pos), spec), atol=1e-3)
        np.testing.assert_allclose(sc.render_gray(np, s_np, pos, spec), cam.render_gray(s, jnp.asarray(pos), spec), atol=1e-3)


def test_appearance_randomization_changes_colours_not_geometry():
    cfg = at.TaskConfig()
    spec = cfg.camera()
    a = cam.sample_scene(jax.random.PRNGKey(1), cfg.scene())
    pos = jnp.array([0.5, 0.0, 1.0])
    depths, grays = [], []
    for k in range(3):
        b = dataclasses.replace(a, **cam.sample_appearance(jax.random.PRNGKey(100 + k), cfg.max_obstacles))
        depths.append(np.asarray(cam.render_depth(b, pos, spec)))
        grays.append(np.asarray(cam.render_gray(b, pos, spec)))
    assert np.array_equal(depths[0], depths[1]) and np.array_equal(depths[0], depths[2])
    assert np.abs(grays[0] - grays[1]).mean() > 0.05 and np.abs(grays[1] - grays[2]).mean() > 0.05
    # and another scene key changes the geometry
    c = cam.sample_scene(jax.random.PRNGKey(2), cfg.scene())
    assert not np.allclose(np.asarray(cam.render_depth(c, pos, spec)), depths[0])


def test_scenes_keep_their_gaps_so_every_field_can_be_crossed():
    cfg = at.TaskConfig()
    scenes = jax.vmap(lambda k: cam.sample_scene(k, cfg.scene()))(jax.random.split(jax.random.PRNGKey(0), 256))
    xy, r, w = (np.asarray(x) for x in (scenes.obs_xy, scenes.obs_r, scenes.half_width))
    n = (r > 0).sum(1)
    assert n.min() >= 3 and n.max() <= cfg.max_obstacles and n.mean() > 7
    for e in range(256):
        m = r[e] > 0
        p, rr = xy[e][m], r[e][m]
        d = np.hypot(*(p[:, None] - p[None]).transpose(2, 0, 1)) - rr[:, None] - rr[None]
        assert (d[~np.eye(len(p), dtype=bool)] >= cfg.min_gap - 1e-5).all()
        assert (w[e] - np.abs(p[:, 1]) - rr >= cfg.min_gap - 1e-5).all()
        assert (p[:, 0] >= 1.5).all() and (p[:, 0] <= cfg.length).all()


def test_collision_is_the_vehicle_sphere_touching_anything():
    s = one_cylinder(x=3.0, y=0.0, r=0.5, half_width=2.0, ceiling=2.5)
    rad = 0.1
    for pos, hit in (([3.0, 0.59, 1.0], True), ([3.0, 0.61, 1.0], False), ([2.39, 0.0, 1.0], False),
                     ([2.41, 0.0, 1.0], True), ([0.0, 1.91, 1.0], True), ([0.0, 1.89, 1.0], False),
                     ([0.0, -1.91, 1.0], True), ([0.0, 0.0, 0.09], True), ([0.0, 0.0, 0.11], False),
                     ([0.0, 0.0, 2.41], True), ([0.0, 0.0, 2.39], False)):
        assert bool(sc.collided(np, s, np.asarray(pos), rad)) is hit, pos
        assert bool(cam.collided(to_jax(s), jnp.asarray(pos), rad)) is hit, pos


def test_env_reset_step_observe_shapes_under_vmap():
    cfg = at.TaskConfig()
    env = at.make_env(cfg)
    n = 64
    s = jax.vmap(at.reset, in_axes=(0, None))(jax.random.split(jax.random.PRNGKey(0), n), env)
    obs = jax.vmap(at.observe, in_axes=(0, None, 0))(jax.random.split(jax.random.PRNGKey(1), n), env, s)
    cobs = jax.vmap(at.observe_privileged, in_axes=(None, 0))(env, s)
    assert obs.shape == (n, cfg.width * cfg.height + 5) == (n, env.obs_size)
    assert cobs.shape == (n, env.critic_size)
    assert np.isfinite(np.asarray(obs)).all() and np.isfinite(np.asarray(cobs)).all()
    img = np.asarray(obs[:, :cfg.width * cfg.height])
    assert img.min() >= 0.05 - 1e-6 and img.max() <= cfg.max_range + 1e-6
    a = jnp.zeros((n, 2))
    s2, rew, term, trunc = jax.vmap(at.step, in_axes=(0, 0, 0, None))(jax.random.split(jax.random.PRNGKey(2), n), s, a, env)
    assert rew.shape == term.shape == trunc.shape == (n,)
    np.testing.assert_allclose(np.asarray(s2.pos[:, 0] - s.pos[:, 0]), np.asarray(s.forward_speed) * cfg.dt, rtol=1e-5)
    # a lateral command is tracked with the first-order lag, at most max_lateral_speed
    s3 = s
    for i in range(40):
        s3, *_ = jax.vmap(at.step, in_axes=(0, 0, 0, None))(jax.random.split(jax.random.PRNGKey(3 + i), n), s3,
                                                             jnp.tile(jnp.array([1.0, 0.0]), (n, 1)), env)
    assert np.abs(np.asarray(s3.vel[:, 0]) - cfg.max_lateral_speed).max() < 0.3


def test_contract_describes_the_image_and_velocity_actions():
    from edgectl.contract import validate_contract
    from edgectl.platforms import load_platform

    c = at.contract(at.TaskConfig(), load_platform("crazyflie_2_1"))
    validate_contract(c)
    assert [f["name"] for f in c["observation"]["fields"]] == ["depth_image", "velocity", "height", "previous_action"]
    assert c["observation"]["image"]["height"] * c["observation"]["image"]["width"] == c["observation"]["fields"][0]["size"]
    assert c["action"]["mapping"]["kind"] == "velocity_setpoint" and c["action"]["names"] == at.ACTION_NAMES
    assert cli.VEHICLES["quadrotor"][-1] == "avoid"


# --- camera sources (numpy, no JAX needed on the robot) -------------------------------------------------
def test_opencv_frames_become_the_contracts_image():
    spec = rcam.ImageSpec(field="gray_image", kind="gray", height=12, width=16, hfov_deg=100, supersample=2,
                          min_range=0.05, max_range=6.0)
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, 320:] = 255  # right half white
    img = rcam.frame_to_image(frame, spec)
    assert img.shape == (12, 16) and img[:, :8].max() == 0.0 and img[:, 8:].min() == pytest.approx(1.0, abs=1e-3)
    dspec = dataclasses.replace(spec, kind="depth", field="depth_image")
    depth = np.full((240, 320), 3000, np.uint16)
    depth[100, 100] = 800  # one near pixel survives the block minimum
    depth[0:20, 0:20] = 0  # no return
    d = rcam.frame_to_image(depth, dspec)
    assert d[5, 5] == pytest.approx(0.8) and d[0, 0] == pytest.approx(6.0) and d[11, 15] == pytest.approx(3.0)


def test_opencv_camera_reads_a_real_capture(tmp_path):
    """OpenCVCamera through OpenCV's own VideoCapture (the path a V4L2 camera takes on a Jetson), fed a
    recorded MJPG clip: each frame becomes the contract's image, the end of the stream and a camera that
    cannot be opened are errors that say so."""
    cv2 = pytest.importorskip("cv2")
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 48))
    assert writer.isOpened()
    for k in range(3):
        frame = np.full((48, 64, 3), 40, np.uint8)
        frame[:, 32:] = (200, 120, 60)  # BGR: luminance 0.299 * 60 + 0.587 * 120 + 0.114 * 200 = 111.3
        frame[:12 * (k + 1), :8] = 255  # a white block that grows frame by frame
        writer.write(frame)
    writer.release()
    spec = rcam.ImageSpec(field="gray_image", kind="gray", height=12, width=16, hfov_deg=100, supersample=2,
                          min_range=0.05, max_range=6.0)
    camera = rcam.OpenCVCamera(spec, device=str(clip), depth=False)
    try:
        for k in range(3):
            img = camera.read()
            assert img.shape == (12, 16) and img.dtype == np.float32
            np.testing.assert_allclose(img[:, 4:8], 40 / 255, atol=0.03)
            np.testing.assert_allclose(img[:, 8:], 111.3 / 255, atol=0.03)
            np.testing.assert_allclose(img[:3 * (k + 1), :2], 1.0, atol=0.03)
            if k < 2:
                np.testing.assert_allclose(img[3 * (k + 1):, :2], 40 / 255, atol=0.05)
        with pytest.raises(RuntimeError, match="read failed"):
            camera.read()
    finally:
        camera.close()
    with pytest.raises(RuntimeError, match="could not open camera"):
        rcam.OpenCVCamera(spec, device=str(tmp_path / "no-such-camera.avi"), depth=False)


def test_opencv_camera_without_cv2_says_what_to_install(monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "cv2":
            raise ImportError("no cv2")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    spec = rcam.ImageSpec("depth_image", "depth", 12, 16, 100.0, 2, 0.05, 6.0)
    with pytest.raises(RuntimeError, match="opencv-python"):
        rcam.OpenCVCamera(spec)


# --- a short training run, and everything downstream of its bundle -------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from train_fast.train import save_bundle, train

    r = train(task="avoid", seconds=240, seed=0, max_env_steps=400_000, ppo_overrides={"eval_episodes": 128})
    out = tmp_path_factory.mktemp("avoid") / "avoid-seed0"
    save_bundle(r, out)
    return r, out


@pytest.mark.slow
def test_short_training_learns_to_cross_fields(trained):
    r, _ = trained
    h = r.history
    assert h[0]["env_steps"] < h[-1]["env_steps"] <= 400_000 + 65_536
    best = r.metrics["best_eval"]["success_rate"]
    assert best >= 0.75 and best > h[0]["eval_success_rate"] + 0.2
    assert h[-1]["mean_return"] > h[0]["mean_return"] + 5


@pytest.mark.slow
def test_eval_json_reports_success_against_the_straight_line(trained, tmp_path):
    _, out = trained
    res = CliRunner().invoke(cli.app, ["eval", str(out), "--episodes", "128", "--json", "--plot", str(tmp_path / "e.png")])
    assert res.exit_code == 0, res.output
    ev = json.loads(res.stdout.strip().splitlines()[-1])
    for k in ("success_rate", "collision_rate", "collision_free_distance_median_m", "baseline_success_rate",
              "baseline_collision_free_distance_median_m", "eval_scene_stream", "plot"):
        assert k in ev, k
    assert ev["episodes"] == 128 and ev["success_rate"] > ev["baseline_success_rate"] + 0.3
    assert (tmp_path / "e.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_onnx_export_matches_the_jax_actor_on_rendered_observations(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    from export.targets import export

    _, out = trained
    rep = export(out, "onnx", tmp_path / "onnx", samples=500)
    p = rep["parity"]["onnxruntime"]
    assert p["observations"] == 500 and p["max_abs_error"] <= 1e-5


@pytest.mark.slow
def test_c_export_fits_the_crazyflie_and_matches(trained, tmp_path):
    from export.targets import export

    _, out = trained
    rep = export(out, "c", tmp_path / "c", samples=300)
    assert rep["parity"]["c_host_float32"]["max_abs_error"] <= 1e-5
    assert "depth_image" in (tmp_path / "c" / "edgectl_policy.h").read_text()


@pytest.mark.slow
def test_run_flies_the_bundle_from_the_simulated_camera(trained, tmp_path):
    _, out = trained
    b = load_bundle(out)
    crossed = 0
    for seed in range(5):
        rep = rcam.fly_avoid(b.act, b.contract, b.manifest["task"], seconds=20, seed=seed, realtime=False)
        crossed += rep.outcome["crossed"]
        assert rep.ticks > 0 and rep.outcome["collided"] != rep.outcome["crossed"]
    assert crossed >= 3
    res = CliRunner().invoke(cli.app, ["run", str(out), "--uri", "sim://7", "--as-fast-as-possible", "--json",
                                       "--log", str(tmp_path / "f.csv")])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout.strip().splitlines()[-1])
    assert s["camera"] == "sim" and s["ticks"] > 0 and (tmp_path / "f.csv").is_file()


def test_an_image_actor_too_big_for_the_crazyflie_is_refused_with_what_to_use(tmp_path):
    from edgectl.platforms import load_platform
    from export.errors import ExportError
    from export.targets import export
    from train_fast.train import TrainResult, save_bundle

    plat = load_platform("crazyflie_2_1")
    cfg = at.TaskConfig(width=32, height=24, supersample=1)
    c = at.contract(cfg, plat)
    rng = np.random.default_rng(0)
    sizes = [c["observation"]["size"], 256, 64, 2]  # 773 x 256 floats: 0.8 MB, over the 128 KB policy budget
    layers = [((0.01 * rng.standard_normal((i, o))).astype(np.float32), np.zeros(o, np.float32)) for i, o in zip(sizes[:-1], sizes[1:])]
    r = TrainResult(actor_layers=layers, contract=c, task=dataclasses.asdict(cfg) | {"name": "avoid"}, ppo={}, seed=0,
                    metrics={}, platform_name=plat.name, platform_toml=plat.raw)
    out = save_bundle(r, tmp_path / "big")
    for target in ("c",):  # stm32 checks the same budget, after looking for its cross-compiler
        with pytest.raises(ExportError, match=r"too large.*(onnx|tensorrt)"):
            export(out, target, tmp_path / target)
        assert not (tmp_path / target).exists()

"""`edgectl train quadrotor --platform px4_x500_v2 --for px4`: a trained bundle that `edgectl export --target px4`
accepts (PX4 mc_nn_control: ReLU only, no previous actions, no integral, rotation rows 0-1 only), and the normal
X500 bundle still refused with the field named.

The variant's bundle here is one PPO chunk (131k env steps, about 75 s with a cold JAX cache on a loaded 2-core
machine, 15 s warm): it does not fly, it has the layout the variant trains. tests/data/px4_hover_bundle (tests/data/regenerate.py) is the variant trained for 120 s.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgectl.bundle import load_bundle
from edgectl.cli import app

DATA = Path(__file__).parent / "data"
ONE_CHUNK = 1024 * 32 * 4  # PPOConfig num_envs x num_steps x iters_per_chunk


def _tiny(out: Path, target):
    from train_fast.train import save_bundle, train
    r = train("px4_x500_v2", "hover", seconds=1e6, seed=0, max_env_steps=ONE_CHUNK, target=target)
    return save_bundle(r, out)


def _rotation_row2(contract: dict) -> list[int]:
    start = 0
    for f in contract["observation"]["fields"]:
        if f["name"] == "rotation_matrix":
            return [start + 6, start + 7, start + 8]
        start += f["size"]
    raise AssertionError("no rotation_matrix field")


def _export(bundle: Path, out: Path):
    return CliRunner().invoke(app, ["export", str(bundle), "--target", "px4", "--out", str(out), "--samples", "500",
                                    "--calibration", "random-states"])


def test_for_px4_trains_a_bundle_the_module_runs_and_it_exports(tmp_path):
    b = load_bundle(_tiny(tmp_path / "b", "px4"))
    names = [f["name"] for f in b.contract["observation"]["fields"]]
    assert names == ["position_error", "rotation_matrix", "velocity_error", "angular_velocity"]
    assert b.manifest["policy"]["activation"] == "relu" and b.manifest["task"]["for"] == "px4"
    assert b.manifest["task"]["action_history"] == 0 and b.manifest["task"]["integral_tau"] == 0.0
    w0 = b.layers[0][0]
    row2 = _rotation_row2(b.contract)
    assert np.all(w0[row2] == 0.0)  # exactly: trained with those inputs cut, not rounded afterwards
    assert np.all(np.abs(w0[[i for i in range(len(w0)) if i not in row2]]).max(axis=1) > 0)
    r = _export(tmp_path / "b", tmp_path / "out")
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["target"] == "px4" and report["parity"]["tflite_px4_motor_command"]["max_abs_error"] <= 2e-4
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["control_net.cpp", "control_net.hpp",
                                                                    "policy.tflite", "report.json"]


def _normal_untrained(out: Path) -> Path:
    """The bundle `edgectl train quadrotor --platform px4_x500_v2` writes (the hover setup's contract and task, PPO's
    default actor layout, save_bundle), with seeded random weights instead of a training run: the layout is what is
    refused, and it costs no JAX compile."""
    import dataclasses

    from edgectl.platforms import load_platform
    from edgectl.tasks import task
    from train_fast.algos.ppo import PPOConfig
    from train_fast.train import TrainResult, save_bundle
    setup = task("hover").hook("setup")(load_platform("px4_x500_v2"), "hover", None)
    pcfg = PPOConfig(**setup.ppo)
    rng = np.random.default_rng(0)
    sizes = [setup.contract["observation"]["size"], *pcfg.actor_hidden, 4]
    layers = [(rng.normal(0, 0.3, (a, b)).astype(np.float32), np.zeros(b, np.float32)) for a, b in zip(sizes, sizes[1:])]
    return save_bundle(TrainResult(actor_layers=layers, contract=setup.contract, task=setup.task,
                                   ppo=dataclasses.asdict(pcfg), seed=0, metrics={}, platform_name="px4_x500_v2",
                                   platform_toml=load_platform("px4_x500_v2").raw), out)


def test_the_normal_x500_bundle_is_still_refused_naming_the_field(tmp_path):
    b = load_bundle(_normal_untrained(tmp_path / "b"))
    assert b.manifest["policy"]["activation"] == "tanh" and "for" not in b.manifest["task"]
    r = _export(tmp_path / "b", tmp_path / "out")
    assert r.exit_code == 2, r.output
    text = r.output.replace("\n", " ")
    assert "observation.rotation_matrix: the policy reads elements [6, 7, 8]" in text, text
    for field in ("observation.previous_actions", "observation.position_error_integral", "policy.activation"):
        assert field in text, text
    assert "edgectl train quadrotor --platform px4_x500_v2 --for px4" in text, text
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args,says", [
    (["--platform", "crazyflie_2_1"], "platform crazyflie_2_1 runs firmware 'crazyflie'"),
    (["--platform", "px4_x500_v2", "--task", "figure8"], "--for applies to quadrotor hover, not to quadrotor figure8"),
    (["--platform", "px4_x500_v2", "--action", "ctbr"], "commands the motors itself; action 'ctbr'"),
    (["--platform", "px4_x500_v2", "--task", "race"], "unknown task 'race' for quadrotor"),
])
def test_for_px4_is_refused_where_the_module_cannot_fly_the_policy(args, says, tmp_path):
    r = CliRunner().invoke(app, ["train", "quadrotor", *args, "--for", "px4", "--seconds", "5",
                                 "--out", str(tmp_path / "b")])
    assert r.exit_code == 2, r.output
    assert says in r.output.replace("\n", " "), r.output
    assert not (tmp_path / "b").exists()


def test_for_rejects_an_unknown_target_and_overrides_that_clash():
    from edgectl.platforms import load_platform
    from train_fast.tasks.training import for_target
    plat = load_platform("px4_x500_v2")
    with pytest.raises(ValueError, match="known targets: px4"):
        for_target(plat, "hover", "ardupilot", {})
    with pytest.raises(ValueError, match="action_history = 4; .* needs action_history = 0"):
        for_target(plat, "hover", "px4", {"action_history": 4})
    over, ppo = for_target(plat, "hover", "px4", {"action_delay": 0.5})
    assert over == {"action_delay": 0.5, "action_history": 0, "integral_tau": 0.0}
    assert ppo == {"actor_activation": "relu"}


def test_the_committed_px4_fixture_is_the_variant_and_flies():
    """tests/data/px4_hover_bundle: `edgectl train quadrotor --platform px4_x500_v2 --for px4` (regenerate.py)."""
    from export import px4
    from export.targets import Job
    job = Job(DATA / "px4_hover_bundle")
    assert px4.contract_problems(job) == []
    m = job.bundle.manifest
    assert "--for px4" in m["versions"]["command"] and m["policy"]["activation"] == "relu"
    from edgectl.tasks import task
    assert task(job.bundle.task_name).fails(m["metrics"]["best_eval"]) is None  # it flies (the task's own goal)


def test_the_relu_fixture_runs_on_the_other_backends_or_is_refused_clearly(tmp_path):
    """Every backend that loads a bundle takes the variant's ReLU layout: float C (compiled with -Werror: no unused
    tanh helper), ONNX and TFLite against Bundle.act; int8 (tanh tables only) refuses naming policy.activation."""
    from edgectl.hostc import load_host_policy
    from export import c_codegen
    from export.errors import ExportError
    from export.onnx_export import run_onnx, write_onnx
    from export.tflite_export import verify_tflite, write_tflite
    from export.targets import export
    b = load_bundle(DATA / "px4_hover_bundle")
    obs = np.random.default_rng(0).normal(0.0, 1.0, (256, b.contract["observation"]["size"])) * np.asarray(
        b.contract["observation"]["normalization"]["scale"]) + np.asarray(b.contract["observation"]["normalization"]["offset"])
    want = b.act(obs)
    files = c_codegen.generate_c(b)
    assert "#define EDGECTL_POLICY_TANH 0" in files["edgectl_policy.c"]  # the template's tanh compiled out (-Werror)
    host = load_host_policy(files, b.contract["observation"]["size"], 4, tmp_path / "c")
    assert np.max(np.abs(host.batch(obs) - want)) <= 1e-5
    assert np.max(np.abs(run_onnx(write_onnx(b, tmp_path / "p.onnx"), obs) - want)) <= 1e-5
    write_tflite(b, tmp_path / "p.tflite")
    assert np.max(np.abs(verify_tflite(tmp_path / "p.tflite", obs) - want)) <= 1e-5
    with pytest.raises(ExportError, match="policy.activation: int8 export supports 'tanh', got 'relu'"):
        export(DATA / "px4_hover_bundle", "c", tmp_path / "out", int8=True, calibration="random-states",
               samples=200, calib_samples=200)

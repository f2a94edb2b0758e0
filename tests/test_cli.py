"""The edgectl CLI (train/eval) on a bundle built by hand: no training, so these run in seconds."""
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgectl import cli, plots
from edgectl.bundle import load_bundle

REPO = Path(__file__).resolve().parent.parent
REQUIRED = {"episodes", "survival_rate", "final_error_median_m", "final_error_p95_m"}
runner = CliRunner()


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def make_result(seed: int = 0, task: str = "hover"):
    """A TrainResult as train() returns it, with random 37-64-64-4 weights (hover) instead of training."""
    from edgectl.platforms import load_platform
    from train_fast.tasks.quadrotor_tasks import TASKS, contract
    from train_fast.train import TrainResult

    plat = load_platform("crazyflie_2_1")
    cfg = TASKS[task]()
    c = contract(cfg, plat)
    rng = np.random.default_rng(seed)
    sizes = [c["observation"]["size"], 64, 64, 4]
    assert task != "hover" or sizes[0] == 18 + 4 * 4 + 3  # state + a 4-step action history + the position integral
    layers = [((rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32), np.zeros(n_out, np.float32))
              for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    layers[-1] = (0.1 * layers[-1][0], np.full(4, c["action"]["hover_action"], np.float32))
    history = [
        {"chunk": 1, "elapsed_s": 8.0, "env_steps": 131072.0, "mean_return": 40.0, "termination_rate": 0.5,
         "value_loss": 1.0, "eval_episodes": 256, "eval_survival_rate": 0.3, "eval_final_error_median_m": math.inf,
         "eval_final_error_p95_m": math.inf, "eval_final_error_mean_survivors_m": 0.2, "best": True},
        {"chunk": 2, "elapsed_s": 9.5, "env_steps": 262144.0, "mean_return": 120.0, "termination_rate": 0.1,
         "value_loss": 0.5, "eval_episodes": 256, "eval_survival_rate": 0.9, "eval_final_error_median_m": 0.08,
         "eval_final_error_p95_m": math.inf, "eval_final_error_mean_survivors_m": 0.07, "best": True},
    ]
    metrics = {"train_seconds": 9.6, "env_steps": 262144.0, "chunks": 2, "best_chunk": 2,
               "best_eval": {k[5:]: v for k, v in history[1].items() if k.startswith("eval_")},
               "final_mean_return": 120.0, "first_mean_return": 40.0}
    return TrainResult(actor_layers=layers, contract=c, task=dataclasses.asdict(cfg) | {"name": task}, ppo={},
                       seed=seed, metrics=metrics, history=history, platform_name=plat.name, platform_toml=plat.raw)


@pytest.fixture(scope="module")
def result():
    return make_result()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, result):
    from train_fast.train import save_bundle

    out = tmp_path_factory.mktemp("bundles") / "quadrotor-hover-seed0"
    png = plots.training_curve_png(result.history, title="test")
    save_bundle(result, out, extra_files={cli.CURVE_FILE: png})
    return out


def last_json(stdout: str) -> dict:
    lines = stdout.strip().splitlines()
    assert lines, "no stdout"
    return json.loads(lines[-1])


def test_vehicles_match_train_fast_tasks():
    from train_fast.tasks.avoid_tasks import TASKS as AVOID
    from train_fast.tasks.quadrotor_tasks import TASKS

    assert set(cli.VEHICLES["quadrotor"]) == set(TASKS) | set(AVOID)


def test_training_curve_png_is_png(result):
    t0 = time.perf_counter()
    png = plots.training_curve_png(result.history, title="hover", budget_s=20)
    assert png.startswith(plots.PNG_MAGIC)
    assert len(png) > 5000  # a real plot, not an empty canvas
    assert time.perf_counter() - t0 < 10
    with pytest.raises(ValueError):
        plots.training_curve_png([])


def test_bundle_holds_the_curve(bundle):
    b = load_bundle(bundle)
    assert cli.CURVE_FILE in b.manifest["files"]
    assert (bundle / cli.CURVE_FILE).read_bytes().startswith(plots.PNG_MAGIC)


def test_eval_json_last_line(bundle, tmp_path):
    plot = tmp_path / "traj.png"
    r = runner.invoke(cli.app, ["eval", str(bundle), "--episodes", "16", "--json", "--plot", str(plot)])
    assert r.exit_code == 0, r.output
    s = last_json(r.stdout)
    assert REQUIRED <= set(s)
    assert s["episodes"] == 16
    assert 0.0 <= s["survival_rate"] <= 1.0
    assert s["task"] == "hover" and "tracking_rmse_m" not in s
    for k in ("final_error_median_m", "final_error_p95_m"):
        assert s[k] is None or s[k] >= 0.0
    assert plot.read_bytes().startswith(plots.PNG_MAGIC)
    load_bundle(bundle)  # the plot did not land inside the (hashed) bundle


def test_eval_json_figure8_has_tracking_rmse(tmp_path):
    from train_fast.train import save_bundle

    out = save_bundle(make_result(task="figure8"), tmp_path / "fig8")
    r = runner.invoke(cli.app, ["eval", str(out), "--episodes", "16", "--json"])
    assert r.exit_code == 0, r.output
    s = last_json(r.stdout)
    assert REQUIRED | {"tracking_rmse_m"} <= set(s)
    assert s["task"] == "figure8"
    assert s["tracking_rmse_m"] is None or s["tracking_rmse_m"] >= 0.0
    assert (tmp_path / "fig8.eval.png").is_file()


def test_eval_defaults_to_runs_latest_and_plots_beside_bundle(bundle, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    copy = runs / bundle.name
    shutil.copytree(bundle, copy)
    monkeypatch.chdir(tmp_path)
    link = cli.update_latest(Path("runs") / bundle.name)
    assert link.parent.resolve() == runs.resolve()
    assert cli.latest_bundle().resolve() == copy.resolve()
    r = runner.invoke(cli.app, ["eval", "--episodes", "16", "--json"])
    assert r.exit_code == 0, r.output
    s = last_json(r.stdout)
    assert Path(s["bundle"]).resolve() == copy.resolve()
    assert (runs / f"{bundle.name}.eval.png").is_file()
    assert sorted(p.name for p in copy.iterdir()) == sorted(p.name for p in bundle.iterdir())


def test_update_latest_repoints(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("a", "b"):
        (tmp_path / "runs" / name).mkdir(parents=True)
        cli.update_latest(Path("runs") / name)
        assert cli.latest_bundle().resolve() == (tmp_path / "runs" / name).resolve()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    cli.update_latest(outside)
    assert cli.latest_bundle().resolve() == outside.resolve()


@pytest.mark.parametrize("victim", ["weights.npz", "platform.toml", "training_curve.png"])
def test_eval_tampered_bundle_exits_2_naming_the_file(bundle, tmp_path, victim):
    bad = tmp_path / "bad"
    shutil.copytree(bundle, bad)
    data = bytearray((bad / victim).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / victim).write_bytes(bytes(data))
    r = runner.invoke(cli.app, ["eval", str(bad), "--episodes", "4", "--json"])
    assert r.exit_code == 2
    assert victim in r.stderr and "sha256 mismatch" in r.stderr
    assert "Traceback" not in r.output


def test_eval_missing_bundle_exits_2(tmp_path):
    r = runner.invoke(cli.app, ["eval", str(tmp_path / "nope")])
    assert r.exit_code == 2
    assert "not found" in r.stderr and "Traceback" not in r.output


def test_eval_without_runs_latest_exits_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(cli.app, ["eval"])
    assert r.exit_code == 2
    assert "edgectl train quadrotor" in r.stderr


def test_eval_refuses_plot_inside_bundle(bundle):
    r = runner.invoke(cli.app, ["eval", str(bundle), "--episodes", "4", "--plot", str(bundle / "x.png")])
    assert r.exit_code == 2
    assert not (bundle / "x.png").exists()


def test_train_unknown_vehicle_exits_2():
    r = runner.invoke(cli.app, ["train", "fixedwing"])
    assert r.exit_code == 2
    assert "fixedwing" in r.stderr and "quadrotor" in r.stderr


def test_train_unknown_task_exits_2():
    r = runner.invoke(cli.app, ["train", "quadrotor", "--task", "loop"])
    assert r.exit_code == 2
    assert "hover" in r.stderr and "figure8" in r.stderr


@pytest.mark.parametrize("args, words", [
    (["quadrotor", "--action-delay", "1.5"], ["--action-delay", "1.5"]),
    (["quadrotor", "--action-delay", "-0.1"], ["--action-delay", "-0.1"]),
    (["rc-car", "--action-delay", "0.5"], ["--action-delay", "rc-car"]),
])
def test_train_action_delay_out_of_range_or_wrong_task_exits_2(args, words, tmp_path):
    r = runner.invoke(cli.app, ["train", *args, "--out", str(tmp_path / "b")])
    assert r.exit_code == 2
    assert all(w in r.stderr for w in words), r.stderr
    assert not (tmp_path / "b").exists()


def test_train_unknown_platform_exits_2():
    r = runner.invoke(cli.app, ["train", "quadrotor", "--platform", "no_such_drone"])
    assert r.exit_code == 2
    assert "crazyflie_2_1" in r.stderr  # the known platforms are listed


def _snapshot(d: Path) -> dict:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_train_refuses_existing_out(bundle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "existing"
    shutil.copytree(bundle, out)
    before = _snapshot(out)
    t0 = time.perf_counter()
    r = runner.invoke(cli.app, ["train", "quadrotor", "--seconds", "5", "--out", str(out)])
    assert r.exit_code == 2
    assert "--overwrite" in r.stderr
    assert time.perf_counter() - t0 < 5  # refused before any training
    assert _snapshot(out) == before
    assert not (tmp_path / "runs").exists()


def test_train_overwrite_refuses_a_directory_that_is_not_a_bundle(tmp_path):
    out = tmp_path / "home"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    r = runner.invoke(cli.app, ["train", "quadrotor", "--out", str(out), "--overwrite"])
    assert r.exit_code == 2
    assert "bundle.json" in r.stderr
    assert (out / "thesis.tex").read_text() == "precious"


def test_help_lists_commands():
    r = runner.invoke(cli.app, ["--help"])
    assert r.exit_code == 0
    assert "train" in r.output and "eval" in r.output


def test_python_m_edgectl_help_without_jax():
    # `edgectl --help` must not import JAX, numpy or matplotlib: fast, and the runtime works without JAX.
    code = ("import sys, runpy; sys.argv = ['edgectl', '--help']\n"
            "try:\n    runpy.run_module('edgectl', run_name='__main__')\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "heavy = [m for m in ('jax', 'numpy', 'matplotlib', 'train_fast') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    r = subprocess.run([sys.executable, "-c", code], env=_env(), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "train" in r.stdout and "eval" in r.stdout


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_process_start_time_is_the_process_start():
    code = "import time; t0 = time.time(); import edgectl.cli as c; print(c.process_start_time(), t0, c._IMPORT_TIME)"
    r = subprocess.run([sys.executable, "-c", code], env=_env(), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    start, t0, imported = map(float, r.stdout.split())
    assert start <= t0 + 0.02  # before the first line of the script ran ...
    assert t0 - start < 10.0  # ... by the interpreter's start-up, not by the import-time fallback's 0
    assert start < imported


def test_update_latest_falls_back_to_a_file_without_symlinks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "a").mkdir(parents=True)

    def no_symlinks(*a, **k):
        raise OSError("symlinks not supported here")

    monkeypatch.setattr(cli.os, "symlink", no_symlinks)
    written = cli.update_latest(Path("runs") / "a")
    assert written.name == cli.LATEST_FILE and not (tmp_path / "runs" / cli.LATEST_LINK).exists()
    assert cli.latest_bundle().resolve() == (tmp_path / "runs" / "a").resolve()


def test_runs_latest_moves_only_for_the_default_out_and_a_bundle_that_passed_its_evaluation(tmp_path, monkeypatch):
    """issue 16: a train with --out elsewhere, or whose bundle failed its own evaluation, leaves runs/latest (what
    eval/export/run take without a BUNDLE) where it was, and says why."""
    monkeypatch.chdir(tmp_path)
    for name in ("good", "bad", "elsewhere"):
        (tmp_path / "runs" / name).mkdir(parents=True)
    good = {"survival_rate": 0.97, "episodes": 256}
    latest, why = cli.move_latest(Path("runs") / "good", True, good, "hover")
    assert why is None and cli.latest_bundle().name == "good"
    latest, why = cli.move_latest(Path("runs") / "elsewhere", False, good, "hover")
    assert latest is None and why == "--out was given" and cli.latest_bundle().name == "good"
    latest, why = cli.move_latest(Path("runs") / "bad", True, {"survival_rate": 0.0, "episodes": 256}, "hover")
    assert latest is None and why.startswith("the bundle failed its own evaluation (survival 0.0 % of 256 episodes")
    assert cli.latest_bundle().name == "good"
    assert cli.failed_evaluation({"survival_rate": 0.49, "episodes": 10}, "figure8") is not None
    assert cli.failed_evaluation({"success_rate": 0.3}, "avoid") and cli.failed_evaluation({"success_rate": 0.9}, "avoid") is None
    assert cli.failed_evaluation({"lap_time_s": None}, "race") and cli.failed_evaluation({"lap_time_s": 7.5}, "race") is None


def test_shield_report_says_where_the_ticks_the_policy_did_not_fly_went(capsys):
    from train_fast import sabotage_report as report
    side = {"violation_rate": 0.0, "survival_rate": 1.0, "nominal_fraction": 0.96, "start_backup_fraction": 0.04,
            "switches_to_backup": 0, "switches_per_episode_max": 1, "episode_robustness_min": 0.2, "switch_log": []}
    out = {"bundle": "b", "without_shield": {**side, "nominal_fraction": 1.0, "start_backup_fraction": 0.0},
           "with_shield": side, "sabotage": "none", "sabotage_description": "", "shield_margin": [0.0],
           "shield_holdoff_s": 0.5, "shield_horizon_s": 0.5, "specs": ["x"], "episodes": 10, "eval_seed": 1,
           "start": {}, "eval_seconds": 1.0}
    report._print_table(out)
    text = " ".join(capsys.readouterr().out.split())
    assert "ticks on the backup from the start" in text and "switches policy -> backup after that" in text
    assert "the policy flies 96.0 % of the ticks, the backup 4.0 % from the start and 0.0 % after 0 switch(es)" in text


def test_help_choices_are_what_the_commands_take():
    """`--help` shows these lists as the flags' choices: they must be what the code underneath accepts."""
    from export.calibration import SOURCES
    from train_fast.importer import TASKS as IMPORT_TASKS
    from train_fast.sabotage import SABOTAGES

    assert set(cli.CALIBRATIONS) == set(SOURCES)
    assert set(cli.SABOTAGES) == set(SABOTAGES)
    assert set(cli.IMPORT_TEMPLATES) == set(IMPORT_TASKS)
    assert set(cli.TASKS) == {t for tasks in cli.VEHICLES.values() for t in tasks}

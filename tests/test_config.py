"""Training configs (train_fast/config.py: edgectl train --config/--set) and sweeps (edgectl sweep, on Ray)."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgectl import cli
from train_fast import config as tc

ROOT = Path(__file__).resolve().parent.parent
# One chunk (131072 env steps) of the default PPO: a step budget, so the run does not depend on the machine's speed.
TINY = """[train]
task = "hover"
seconds = 600
max_env_steps = 1
seed = 2

[task]
w_position = { value = 15.0, unit = "1" }
init_tilt = 1.2

[randomization]
mass = [0.8, 1.25]

[ppo]
eval_episodes = 16
lr = 1e-3
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, words", [
    ('[task]\ninit_tilt = { value = 70, unit = "deg" }\n', ["task.init_tilt", "'deg'", "'rad'"]),
    ("[task]\nw_positon = 3\n", ["task.w_positon", "did you mean task.w_position"]),
    ("[ppo]\nlr = -1\n", ["ppo.lr (1)", "positive", "-1"]),
    ("[ppo]\nactor_hidden = [32, 0]\n", ["ppo.actor_hidden", "0"]),
    ("[ppo]\nminibatches = 7\n", ["ppo.minibatches", "7"]),
    ("[randomization]\nmass = [1.2, 1.5]\n", ["randomization.mass (1)", "[1.2, 1.5]"]),
    ("[train]\ntask = \"loop\"\n", ["train.task", "'loop'"]),
    ("[train]\nseed = 1.5\n", ["train.seed", "1.5"]),
    ("[train]\nrobust = 1\n", ["train.robust", "true or false"]),
    ("[trian]\nseed = 1\n", ["[trian]", "did you mean [train]"]),
    ("[task]\naction = \"wing\"\n", ["task.action", "'wing'"]),
    ("[task]\naction_delay = 2\n", ["task.action_delay (control periods)", "maximum 1"]),
    ("[train]\ntask = \"race\"\n[task]\ninit_heading = \"x\"\n", ["task.init_heading (rad)", "'x'"]),
    ("[train\n", ["not valid TOML"]),
])
def test_a_bad_config_is_one_error_naming_file_field_and_value(tmp_path, text, words):
    p = _write(tmp_path, "bad.toml", text)
    with pytest.raises(tc.ConfigError) as e:
        tc.load(p)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(p)), msg
    for w in words:
        assert w in msg, (w, msg)


def test_set_values_read_as_toml_and_split_outside_brackets():
    assert tc.parse_value("1e-3") == 1e-3 and tc.parse_value("[0.8, 1.2]") == [0.8, 1.2]
    assert tc.parse_value("figure8") == "figure8" and tc.parse_value("true") is True
    assert tc.split_values("1,2,[0.8,1.2],'a,b'") == ["1", "2", "[0.8,1.2]", "'a,b'"]
    assert tc.qualify("lr", "--set") == "ppo.lr" and tc.qualify("w_position", "--set") == "task.w_position"
    with pytest.raises(tc.ConfigError, match="name its section"):
        tc.qualify("nope", "--set nope=1")
    from edgectl.cli.sweep import parse_seeds
    assert parse_seeds("0-3,7,2") == [0, 1, 2, 3, 7]
    with pytest.raises(ValueError, match="--seeds"):
        parse_seeds("a-b")


def test_every_task_and_ppo_field_is_in_the_schema_and_units_name_real_fields():
    import dataclasses

    fields = {f.name for t in ("hover", "avoid", "race") for f in dataclasses.fields(tc.task_class(t)[0])}
    assert set(tc.UNITS) <= fields, set(tc.UNITS) - fields
    assert (tc.POSITIVE | tc.AT_MOST_ONE) <= fields | set(tc.ppo_schema()), (tc.POSITIVE | tc.AT_MOST_ONE) - fields
    for t in ("hover", "figure8", "avoid", "race"):  # the defaults themselves pass the checks
        cls, make = tc.task_class(t)
        d = {k: v for k, v in dataclasses.asdict(make()).items() if k not in ("name", "track")}
        vehicle = "rc-car" if t == "race" else "quadrotor"
        tc.check({"train": {"vehicle": vehicle, "task": t}, "task": d}, "defaults")


def test_randomization_replaces_the_platform_ranges_and_is_idempotent():
    from edgectl.platforms import load_platform

    p = tc.patch_platform(load_platform("crazyflie_2_1"), {"mass": [0.8, 1.25]})
    assert p.values["randomization.mass"] == [0.8, 1.25] and "replaced" in p.sources["randomization.mass"]
    assert tc.patch_platform(p, {"mass": [0.8, 1.25]}).raw == p.raw
    car = tc.patch_platform(load_platform("rc_car_1_10"), {"friction": 0.1})
    assert car.values["randomization.friction"] == 0.1


@pytest.mark.slow
def test_the_bundles_config_trains_the_same_run_again(tmp_path, monkeypatch):
    """edgectl train --config FILE writes BUNDLE/config.toml; training from it (same step budget and seed) gives the
    same weights, the same per-chunk metrics and the same config and platform files."""
    monkeypatch.chdir(tmp_path)
    cfg = _write(tmp_path, "tiny.toml", TINY)
    runner = CliRunner()
    r1 = runner.invoke(cli.app, ["train", "--config", str(cfg), "--set", "task.w_orientation=1.5", "--out", "a"])
    assert r1.exit_code == 0, r1.output
    r2 = runner.invoke(cli.app, ["train", "--config", "a/config.toml", "--out", "b"])
    assert r2.exit_code == 0, r2.output
    a, b = tmp_path / "a", tmp_path / "b"
    resolved = tc.load(a / "config.toml")
    assert resolved["task"]["w_position"] == 15.0 and resolved["task"]["w_orientation"] == 1.5
    assert resolved["ppo"]["lr"] == 1e-3 and resolved["train"]["seed"] == 2
    assert resolved["randomization"]["mass"] == [0.8, 1.25]
    assert "mass = { value = [0.8, 1.25]" in (a / "platform.toml").read_text()
    for name in ("config.toml", "platform.toml"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    with np.load(a / "weights.npz") as wa, np.load(b / "weights.npz") as wb:
        assert sorted(wa.files) == sorted(wb.files)
        for k in wa.files:
            np.testing.assert_array_equal(wa[k], wb[k])
    rows = [list(csv.DictReader((d / "metrics.csv").open())) for d in (a, b)]
    timing = {"elapsed_s", "compile_s", "chunk_eval_s"}
    assert len(rows[0]) == 1 and rows[0][0]["env_steps"] == "131072.0"
    assert [{k: v for k, v in r.items() if k not in timing} for r in rows[0]] == \
        [{k: v for k, v in r.items() if k not in timing} for r in rows[1]]
    bundle = json.loads((a / "bundle.json").read_text())
    assert set(bundle["files"]) >= {"config.toml", "metrics.csv"}  # hashed like every bundle file


def test_bad_set_exits_2_with_one_line_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = subprocess.run([sys.executable, "-m", "edgectl", "train", "quadrotor", "--set", "ppo.lr=abc", "--out", "x"],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "ppo.lr" in r.stderr and "'abc'" in r.stderr
    assert not any(tmp_path.iterdir())


def test_tensorboard_scalars_read_back(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    hist = [{"chunk": 1, "elapsed_s": 3.0, "env_steps": 131072.0, "mean_return": 5.0},
            {"chunk": 2, "elapsed_s": 4.0, "env_steps": 262144.0, "mean_return": 7.5, "eval_survival_rate": 0.5,
             "best": True, "eval_final_error_median_m": float("inf")}]
    d = tc.write_tensorboard(tmp_path / "tb", hist, t_start=1000.0)
    acc = EventAccumulator(str(d))
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == {"elapsed_s", "env_steps", "mean_return", "eval_survival_rate"}
    assert [(e.step, e.value) for e in acc.Scalars("mean_return")] == [(131072, 5.0), (262144, 7.5)]


@pytest.mark.slow
def test_sweep_on_ray_reports_a_failed_trial_in_the_table(tmp_path):
    """Two seeds x two values through a real local Ray: the motor-level trials train and evaluate, the ctbr ones fail
    (the Flow-deck platform file has no [rate_controller]); every trial is a row, the failed ones with their error,
    and the exit status is 1."""
    cfg = _write(tmp_path, "tiny.toml", TINY.replace('task = "hover"', 'task = "hover"\nplatform = "crazyflie_2_1_flow"'))
    out = tmp_path / "sweep"
    r = subprocess.run([sys.executable, "-m", "edgectl", "sweep", str(cfg), "--seeds", "0-1", "--set",
                        "task.action=motor,ctbr", "--episodes", "16", "--out", str(out), "--json"],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=900,
                       cwd=tmp_path)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 4
    by = {(row["task.action"], row["seed"]): row for row in rows}
    for seed in ("0", "1"):
        ok, bad = by[("motor", seed)], by[("ctbr", seed)]
        assert ok["status"] == "ok" and ok["env_steps"] == "131072.0" and 0.0 <= float(ok["survival_rate"]) <= 1.0
        assert (Path(ok["bundle"]) / "config.toml").is_file()
        assert bad["status"] == "failed" and "rate_controller" in bad["error"]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["trials"] == 4 and summary["failed"] == 2
    assert "failed" in r.stdout and (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("task", ["hover", "figure8", "avoid", "race"])
def test_the_resolved_config_of_every_task_reads_back_as_written(tmp_path, task):
    import dataclasses

    from train_fast.algos.ppo import PPOConfig
    from train_fast.train import TrainResult

    tcfg = tc.task_class(task)[1]()
    r = TrainResult(actor_layers=[], contract={}, task=dataclasses.asdict(tcfg) | {"name": task},
                    ppo=dataclasses.asdict(PPOConfig()), seed=7, metrics={}, history=[{"chunk": 1, "env_steps": 1.0}],
                    platform_name="p", settings={"seconds": 30.0, "max_env_steps": 5, "robust": False,
                                                 "randomization": {}})
    files = tc.bundle_files(r)
    assert files["metrics.csv"] == b"chunk,env_steps\n1,1.0\n"
    (tmp_path / "platform.toml").write_bytes((ROOT / "hardware" / ("rc_car_1_10.toml" if task == "race" else
                                                                   "crazyflie_2_1.toml")).read_bytes())
    (tmp_path / "config.toml").write_bytes(files["config.toml"])
    back = tc.load(tmp_path)
    assert back["train"]["platform"] == str(tmp_path / "platform.toml") and back["train"]["seed"] == 7
    assert back["task"] == {k: v for k, v in dataclasses.asdict(tcfg).items() if k not in ("name", "track")}
    assert tc.task_class(task)[1](**back["task"]) == dataclasses.replace(tcfg, name=tcfg.name)
    assert PPOConfig(**back["ppo"]) == PPOConfig()


def test_precedence_file_then_set_then_options_and_the_vehicle_chooses_the_schema(tmp_path):
    from edgectl.cli.sweep import train_config

    p = _write(tmp_path, "p.toml", "[train]\nseed = 1\n[ppo]\nlr = 1e-3\n")
    opts = dict(vehicle="rc-car", task=None, seconds=None, seed=3, platform=None, robust=False, track=None,
                action="motor", action_delay=0.0)  # outside a command line every option counts as given
    t = train_config(p, ["task.w_progress=2", "train.seed=4", "ppo.lr=5e-4"], opts)
    assert t.cfg["train"]["task"] == "race" and t.cfg["train"]["seed"] == 3  # the option wins over --set and the file
    assert t.cfg["task"] == {"w_progress": 2.0} and t.trainer_kwargs() == {"ppo_overrides": {"lr": 5e-4}}
    assert train_config(None, None, opts) is None  # neither --config nor --set: edgectl train as before

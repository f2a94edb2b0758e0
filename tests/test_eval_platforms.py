"""`edgectl eval --platform FILE` and `--perturb`: fly a bundle on a vehicle it was not trained on."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from edgectl import cli
from edgectl.bundle import load_bundle
from edgectl.platforms import load_platform

from test_cli import make_result

runner = CliRunner()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from train_fast.train import save_bundle

    out = tmp_path_factory.mktemp("b") / "hover"
    save_bundle(make_result(seed=4), out)
    return out


def _last(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


def test_env_nominal_and_perturbed(bundle):
    from train_fast.evaluate import env_for_bundle

    b = load_bundle(bundle)
    nominal = env_for_bundle(b)
    assert np.all(np.asarray(nominal.ranges) == 1.0) and nominal.delay_hi == 0.0 and nominal.gyro_bias_std == 0.0
    perturbed = env_for_bundle(b, perturb=True)
    plat = load_platform("crazyflie_2_1")
    np.testing.assert_allclose(np.asarray(perturbed.ranges)[0], plat.get("randomization.mass"))
    assert perturbed.delay_hi == plat.get("randomization.action_delay")[1] == 1.0
    assert perturbed.gyro_bias_std == plat.get("sensors.angular_velocity_bias_std") > 0
    heavy = env_for_bundle(b, platform=load_platform("crazyflie_2_1_brushless"))
    assert float(heavy.nominal.mass) == pytest.approx(0.0393) and float(heavy.nominal.thrust_max) == pytest.approx(0.3894)


def test_eval_platform_and_perturb_json(bundle, tmp_path):
    r = runner.invoke(cli.app, ["eval", str(bundle), "--episodes", "8", "--platform", "crazyflie_2_1_flow", "--perturb",
                                "--json", "--plot", str(tmp_path / "p.png")])
    assert r.exit_code == 0, r.output
    s = _last(r.stdout)
    assert s["platform"] == "crazyflie_2_1_flow" and s["trained_on"] == "crazyflie_2_1" and s["perturb"] is True
    assert {"survival_rate", "final_error_median_m"} <= set(s)
    # --perturb splits survival by each drawn factor: every split covers the episodes and adds up to the total
    assert set(s["by_factor"]) == {"mass", "inertia", "thrust_curve", "torque_coefficient", "motor_time_constant",
                                   "drag_coefficient", "action_delay"}
    for name, rows in s["by_factor"].items():
        assert sum(r["episodes"] for r in rows) == 8, name
        assert sum(r["episodes"] * (r["survival_rate"] or 0.0) for r in rows) == pytest.approx(8 * s["survival_rate"])
        assert all(a["range"][1] == pytest.approx(b["range"][0]) for a, b in zip(rows, rows[1:]))
    assert [s["by_factor"]["mass"][0]["range"][0], s["by_factor"]["mass"][-1]["range"][1]] == pytest.approx([0.7, 1.3])
    assert "survival by motor time constants" in r.stdout


def test_by_factor_finds_the_factor_survival_depends_on():
    """Synthetic starts: only vehicles with slow motors crash; the split must say so and not blame the mass."""
    from types import SimpleNamespace

    import numpy as np

    from train_fast.evaluate import by_factor

    rng = np.random.default_rng(0)
    ranges = np.array([[0.7, 1.3], [0.4, 2.0], [0.8, 1.2], [0.7, 1.3], [0.5, 2.0], [1.0, 1.0]])
    f = np.exp(rng.uniform(np.log(ranges[:, 0]), np.log(ranges[:, 1]), (600, 6)))
    env = SimpleNamespace(ranges=ranges, delay_lo=0.0, delay_hi=1.0)
    s0 = SimpleNamespace(factors=f, delay=rng.uniform(0, 1, 600))
    out = by_factor(env, s0, f[:, 4] < 2.0 ** (1 / 3))  # crash in the top third of x0.5-2 (log-spaced)
    assert [r["survival_rate"] for r in out["motor_time_constant"]] == [1.0, 1.0, 0.0]
    assert all(0.5 < r["survival_rate"] < 0.85 for r in out["mass"])
    assert "drag_coefficient" not in out  # a range of one value says nothing
    assert [x for r in out["action_delay"] for x in r["range"]] == pytest.approx([0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1])


@pytest.mark.parametrize("args, words", [
    (["--platform", "crazyflie_9"], ["--platform", "unknown platform 'crazyflie_9'"]),
    (["--platform", "rc_car_1_10"], ["rc_car", "quadrotor"]),
])
def test_eval_bad_platform_is_one_line_exit_2(bundle, tmp_path, args, words):
    r = runner.invoke(cli.app, ["eval", str(bundle), "--episodes", "8", *args, "--plot", str(tmp_path / "p.png")])
    assert r.exit_code == 2, r.output
    assert all(w in r.output for w in words), r.output
    assert "Traceback" not in r.output


def test_perturb_refuses_a_race_bundle(tmp_path):
    from pathlib import Path
    race = Path(__file__).resolve().parent / "data" / "race_bundle"
    r = runner.invoke(cli.app, ["eval", str(race), "--perturb", "--plot", str(tmp_path / "p.png")])
    assert r.exit_code == 2 and "hover, figure8" in r.output, r.output

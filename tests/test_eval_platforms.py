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

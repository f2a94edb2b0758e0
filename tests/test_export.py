"""Export: ONNX, int8 quantization and the generated C, each proven equal to the bundle's policy.

The fixture bundle (tests/data/hover_bundle) is a real `edgectl train quadrotor --seconds 20` result,
so parity is checked on the observations a flying policy meets, not only on random vectors.
"""
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgectl.bundle import load_bundle, write_bundle
from export import c_codegen, quantize
from export.errors import ExportError
from edgectl.hostc import load_host_policy

BUNDLE = Path(__file__).parent / "data" / "hover_bundle"


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(BUNDLE)


@pytest.fixture(scope="module")
def rollout_obs(bundle):
    from export.calibration import rollout_observations
    return rollout_observations(bundle, 10_000, seed=1)


@pytest.fixture(scope="module")
def quant(bundle):
    from export.calibration import rollout_observations
    return quantize.calibrate(bundle, rollout_observations(bundle, 20_000, seed=2))


@pytest.fixture(scope="module")
def jax_actions(bundle, rollout_obs):
    from train_fast.evaluate import bundle_policy
    params, apply = bundle_policy(bundle)
    return np.clip(np.asarray(apply(params, rollout_obs)), -1.0, 1.0)


def _host(files, bundle, tmp_path):
    c = bundle.contract
    return load_host_policy(files, c["observation"]["size"], c["action"]["size"], tmp_path)


# --- ONNX ---------------------------------------------------------------------------------------
def test_onnx_matches_jax_actor_on_10k_rollout_observations(bundle, rollout_obs, jax_actions, tmp_path):
    import onnx

    from export.onnx_export import OPSET, run_onnx, write_onnx
    path = write_onnx(bundle, tmp_path / "policy.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == OPSET
    n_obs, n_act = bundle.contract["observation"]["size"], bundle.contract["action"]["size"]
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "observation" and out.name == "action"
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim][1] == n_obs
    assert [d.dim_value for d in out.type.tensor_type.shape.dim][1] == n_act
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["edgectl.contract"]) == bundle.contract
    actions = run_onnx(path, rollout_obs)
    assert len(rollout_obs) == 10_000
    assert np.max(np.abs(actions - jax_actions)) <= 1e-5
    # the clip is inside the model: some rollout actions saturate and must be exactly at the bound
    assert np.any(np.abs(actions) == 1.0) or np.all(np.abs(jax_actions) < 1.0)


# --- float C --------------------------------------------------------------------------------------
def test_float_c_matches_onnx_and_is_plain_c99(bundle, rollout_obs, tmp_path):
    from export.onnx_export import run_onnx, write_onnx
    files = c_codegen.generate_c(bundle)
    src, hdr = files["edgectl_policy.c"], files["edgectl_policy.h"]
    assert "malloc" not in src and "math.h" not in src  # no heap, no libm: bare-metal newlib is enough
    assert re.search(r"static const float L0_W\[32\]\[37\]", src)
    host = _host(files, bundle, tmp_path)  # compiled with -std=c99 -pedantic -Wall -Wextra -Werror
    onnx_actions = run_onnx(write_onnx(bundle, tmp_path / "p.onnx"), rollout_obs)
    c_actions = host.batch(rollout_obs)
    assert np.max(np.abs(c_actions - onnx_actions)) <= 1e-5
    assert "#define EDGECTL_POLICY_OBS_SIZE 37" in hdr


def test_header_spells_out_the_contract_in_order(bundle):
    hdr = c_codegen.generate_c(bundle)["edgectl_policy.h"]
    positions = [hdr.index(f["name"]) for f in bundle.contract["observation"]["fields"]]
    assert positions == sorted(positions)
    assert "obs[0..2]" in hdr and "position_error" in hdr and "rad/s" in hdr
    assert "M1 front-right" in hdr  # motor order from the contract's mapping


def test_tanh_approximation_accuracy_in_float32():
    # Horner in float32, as the generated C evaluates it
    x = np.linspace(-12, 12, 200_001).astype(np.float32)
    xc = np.clip(x, -c_codegen.TANH_CLAMP, c_codegen.TANH_CLAMP).astype(np.float32)
    u = (xc * xc).astype(np.float32)

    def horner(coeffs):
        acc = np.float32(coeffs[-1])
        for c in coeffs[-2::-1]:
            acc = (np.float32(c) + u * acc).astype(np.float32)
        return acc
    y = (xc * horner(c_codegen.TANH_NUM) / horner(c_codegen.TANH_DEN)).astype(np.float32)
    assert np.max(np.abs(y.astype(np.float64) - np.tanh(x.astype(np.float64)))) <= 4e-7


@pytest.mark.parametrize("int8", [False, True])
def test_non_finite_observation_is_refused_by_the_c_policy(bundle, quant, tmp_path, int8):
    host = _host(c_codegen.generate_c(bundle, quant if int8 else None), bundle, tmp_path)
    obs = np.zeros(37, np.float32)
    rc, a = host.step(obs)
    assert rc == 0 and np.all(np.isfinite(a))
    for bad in (np.nan, np.inf, -np.inf):
        obs2 = obs.copy()
        obs2[7] = bad
        rc, a = host.step(obs2)
        assert rc == 1 and np.all(np.isnan(a))  # action[] untouched: the caller's fallback decides


# --- int8 ------------------------------------------------------------------------------------------
def test_int8_c_is_bit_exact_with_numpy_integer_model(bundle, quant, rollout_obs, tmp_path):
    host = _host(c_codegen.generate_c(bundle, quant), bundle, tmp_path)
    rng = np.random.default_rng(0)
    # rollout observations plus out-of-range ones that exercise input clamping and the table's saturation
    wild = rollout_obs[:2000] * rng.uniform(0.5, 6.0, size=(2000, 1)).astype(np.float32)
    obs = np.concatenate([rollout_obs, wild])
    assert np.array_equal(host.batch(obs), quant.forward(obs))


def test_int8_model_is_close_to_float_and_scales_are_per_channel(bundle, quant, rollout_obs):
    for layer in quant.layers:
        assert layer.weight.dtype == np.int8
        assert np.all(np.abs(layer.weight).max(axis=0) == 127)  # every output channel uses its full range
    err = np.abs(quant.forward(rollout_obs) - bundle.act(rollout_obs))
    assert err.mean() < 0.01 and np.percentile(err, 99) < 0.06


def test_tanh_table_is_odd_monotone_and_saturates():
    t = quantize.tanh_table().astype(int)
    h = quantize.TANH_HALF
    assert t[h] == 0 and t[0] == -127 and t[-1] == 127 and np.all(np.diff(t) >= 0)
    assert np.array_equal(t[h + 1:], -t[h - 1:0:-1])  # odd: the clamp at either end saturates the same way
    assert t[h + quantize.TANH_STEPS_PER_UNIT] == round(127 * math.tanh(1.0))


def test_calibrate_rejects_bad_inputs(bundle, rollout_obs):
    with pytest.raises(ExportError, match="at least 100 rows"):
        quantize.calibrate(bundle, rollout_obs[:10])
    with pytest.raises(ExportError, match="observation.size = 37"):
        quantize.calibrate(bundle, rollout_obs[:, :20])
    bad = rollout_obs[:500].copy()
    bad[3, 4] = np.nan
    with pytest.raises(ExportError, match="NaN"):
        quantize.calibrate(bundle, bad)
    with pytest.raises(ExportError, match="headroom"):
        quantize.calibrate(bundle, rollout_obs, headroom=0.5)


def test_input_ranges_come_from_calibration_data_with_headroom(bundle, quant, rollout_obs):
    q = quantize.calibrate(bundle, rollout_obs, headroom=2.0)
    peak = np.abs(q.quantize_input(rollout_obs)).max(axis=0)
    assert np.all(np.abs(peak - quantize.INPUT_MAX / 2) <= 1)  # every feature's extreme lands at half range
    # observations from other episodes than the calibration's stay inside the range: nothing clipped
    assert np.abs(quant.quantize_input(rollout_obs)).max() < quantize.INPUT_MAX


# --- the export driver ----------------------------------------------------------------------------
def _big_bundle(tmp_path) -> Path:
    """The fixture's contract with a 37-512-512-4 actor: ~1.1 MB of float weights, over the MCU budget."""
    b = load_bundle(BUNDLE)
    rng = np.random.default_rng(0)
    sizes = [37, 512, 512, 4]
    weights = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        weights[f"a.{i}.w"] = rng.normal(0, 1 / math.sqrt(n_in), (n_in, n_out)).astype(np.float32)
        weights[f"a.{i}.b"] = np.zeros(n_out, np.float32)
    policy = dict(b.manifest["policy"], layers=[{"weight": f"a.{i}.w", "bias": f"a.{i}.b"} for i in range(3)])
    return write_bundle(tmp_path / "big", contract=b.contract, policy=policy, weights=weights,
                        platform_toml=(BUNDLE / "platform.toml").read_bytes(), platform_name=b.platform_name,
                        task=b.manifest["task"], seed=0, metrics={}, versions={})


def test_model_too_large_for_mcu_is_refused_and_nothing_written(tmp_path):
    from export.targets import export
    big = _big_bundle(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match=r"model too large for STM32F405.*policy_flash_budget"):
        export(big, "c", out)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_unknown_target_and_broken_bundle_write_nothing(tmp_path):
    from export.targets import export
    with pytest.raises(ExportError, match="unknown target 'arduino'.*onnx, tflite, tensorrt, c, stm32, crazyflie"):
        export(BUNDLE, "arduino", tmp_path / "o1")
    broken = tmp_path / "broken"
    shutil.copytree(BUNDLE, broken)
    m = json.loads((broken / "bundle.json").read_text())
    del m["contract"]["observation"]["normalization"]
    (broken / "bundle.json").write_text(json.dumps(m))
    with pytest.raises(ExportError, match=r"bundle .*broken.*normalization: missing required key"):
        export(broken, "onnx", tmp_path / "o2")
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_existing_output_is_refused_and_foreign_folders_never_replaced(tmp_path):
    from export.targets import export
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="already exists; pass --overwrite"):
        export(BUNDLE, "onnx", out)
    with pytest.raises(ExportError, match="not an edgectl export folder"):
        export(BUNDLE, "onnx", out, overwrite=True)
    assert (out / "notes.txt").read_text() == "keep me"


def test_cli_export_c_int8_flies_within_tolerance_of_float(tmp_path):
    from typer.testing import CliRunner

    from edgectl.cli import EXPORT_TARGETS, app
    from export.targets import TARGETS
    assert tuple(TARGETS) == EXPORT_TARGETS
    out = tmp_path / "c8"
    r = CliRunner().invoke(app, ["export", str(BUNDLE), "--target", "c", "--int8", "--out", str(out),
                                 "--samples", "2000", "--episodes", "300", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report == json.loads((out / "report.json").read_text()) | {"out": str(out)}
    assert report["parity"]["c_host_int8"]["mismatches"] == 0
    loop = report["int8_closed_loop"]
    assert loop["pass"] and loop["survival_drop"] <= 0.01 and loop["median_error_increase_m"] <= 0.01
    assert loop["int8"]["survival_rate"] > 0.9  # the fixture policy flies; a broken int8 model would not
    assert sorted(report["files"]) == ["edgectl_policy.c", "edgectl_policy.h"]
    assert "#define EDGECTL_POLICY_INT8 1" in (out / "edgectl_policy.h").read_text()


# --- processor in the loop: the generated C on the Crazyflie's MCU (QEMU netduinoplus2) -------------
@pytest.fixture(scope="module")
def toolchain():
    import os

    from export import stm32
    from export.errors import TargetUnavailable
    try:
        stm32.check_toolchain()
    except TargetUnavailable as e:
        if os.environ.get("EDGECTL_REQUIRE_TOOLCHAIN") == "1":
            pytest.fail(f"EDGECTL_REQUIRE_TOOLCHAIN=1 but {e}")
        pytest.skip(str(e))


@pytest.mark.parametrize("int8, max_instructions", [(False, 20_000), (True, 8_000)])
def test_stm32_export_runs_the_policy_on_cortex_m4(toolchain, tmp_path, int8, max_instructions):
    from export.targets import export
    out = tmp_path / "stm32"
    report = export(BUNDLE, "stm32", out, int8=int8, samples=1000, eval_episodes=200)
    assert report == json.loads((out / "report.json").read_text())
    if int8:
        assert report["parity"]["stm32_int8"]["mismatches"] == 0 and report["max_abs_error"] == 0.0
        assert report["max_abs_error_vs_float"] < 0.1
    else:
        assert report["max_abs_error"] <= 1e-5 and report["parity"]["stm32_float32"]["observations"] == 1000
    assert 0 < report["instructions_per_inference"] <= max_instructions
    # the weights alone are this big; the budget check used the ELF's numbers
    n_weights = sum(w.size for w, _ in load_bundle(BUNDLE).layers)
    assert n_weights * (1 if int8 else 4) < report["flash_bytes"] <= 131_072
    assert 0 < report["ram_bytes"] <= 16_384
    assert (out / "edgectl_policy.c").is_file() and (out / "pil.elf").is_file()
    assert sorted(report["files"]) == ["edgectl_policy.c", "edgectl_policy.h", "pil.elf", "pil.map"]

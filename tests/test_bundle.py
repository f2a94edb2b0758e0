import hashlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from edgectl.bundle import BundleError, load_bundle, sha256_file, write_bundle

# A copy of tests/test_contract.py's contract, kept here so this file does not depend on how pytest imports tests.
FIELDS = [("position_error", 3, "m", "world"), ("rotation_matrix", 9, "1", "body-to-world, row-major"),
          ("linear_velocity", 3, "m/s", "world"), ("angular_velocity", 3, "rad/s", "body"),
          ("previous_action", 4, "1", "motor order m1..m4")]
PLATFORM_TOML = b'[platform]\nname = "crazyflie_2_1"\nkind = "quadrotor"\n'
PNG = b"\x89PNG\r\n\x1a\n fake curve"
SIZES = [22, 64, 64, 4]


def make_contract() -> dict:
    rng = np.random.default_rng(0)
    return {
        "version": 1, "rate_hz": 100.0, "quaternion_order": "wxyz",
        "observation": {
            "size": 22,
            "fields": [{"name": n, "size": s, "unit": u, "frame": f} for n, s, u, f in FIELDS],
            "noise_std": [0.01] * 22,
            "normalization": {"offset": rng.normal(size=22).round(3).tolist(),
                              "scale": rng.uniform(0.5, 2.0, size=22).round(3).tolist(),
                              "formula": "x_norm = (x - offset) / scale"},
        },
        "action": {"size": 4, "names": ["m1", "m2", "m3", "m4"], "low": -1.0, "high": 1.0,
                   "mapping": {"kind": "rpm_linear", "formula": "rpm = (a + 1) / 2 * max_rpm"}, "hover_action": 0.334},
    }


def make_weights(seed: int = 0, sizes=SIZES) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        out[f"actor.{i}.weight"] = rng.normal(0, 1 / math.sqrt(n_in), size=(n_in, n_out)).astype(np.float32)
        out[f"actor.{i}.bias"] = rng.normal(0, 0.1, size=n_out).astype(np.float32)
    return out


def make_policy(n_layers: int = 3, activation: str = "tanh") -> dict:
    return {"kind": "mlp", "activation": activation, "output_activation": "clip",
            "layers": [{"weight": f"actor.{i}.weight", "bias": f"actor.{i}.bias"} for i in range(n_layers)]}


def bundle_args(**overrides) -> dict:
    args = dict(contract=make_contract(), policy=make_policy(), weights=make_weights(), platform_toml=PLATFORM_TOML,
                platform_name="crazyflie_2_1", task={"name": "hover", "episode_s": 5.0}, seed=7,
                metrics={"return_mean": 123.4}, versions={"edgectl": "0.0.0", "numpy": np.__version__},
                extra_files={"training_curve.png": PNG})
    args.update(overrides)
    return args


@pytest.fixture
def bundle_dir(tmp_path) -> Path:
    return write_bundle(tmp_path / "b", **bundle_args())


def manual_act(obs: np.ndarray, contract: dict, weights: dict, activation=np.tanh) -> np.ndarray:
    norm = contract["observation"]["normalization"]
    h = (np.asarray(obs, np.float64) - np.array(norm["offset"])) / np.array(norm["scale"])
    for i in range(3):
        h = h @ weights[f"actor.{i}.weight"].astype(np.float64) + weights[f"actor.{i}.bias"]
        if i < 2:
            h = activation(h)
    return np.clip(h, -1.0, 1.0)


def edit_manifest(bundle: Path, edit) -> None:
    m = json.loads((bundle / "bundle.json").read_text())
    edit(m)
    (bundle / "bundle.json").write_text(json.dumps(m))


def replace_weights(bundle: Path, arrays: dict, *, fix_meta: bool = False) -> None:
    """Rewrite weights.npz and fix its sha256 in the manifest, so only the deeper checks can catch it."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    (bundle / "weights.npz").write_bytes(buf.getvalue())

    def fix(m):
        m["weights"]["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
        if fix_meta:
            m["weights"]["arrays"] = {k: {"shape": list(a.shape), "dtype": str(a.dtype)} for k, a in arrays.items()}
    edit_manifest(bundle, fix)


def load_error(bundle: Path, **kw) -> str:
    with pytest.raises(BundleError) as e:
        load_bundle(bundle, **kw)
    return str(e.value)


# --- round trip ---------------------------------------------------------------------------------------------


def test_round_trip_arrays_and_metadata(bundle_dir):
    b = load_bundle(bundle_dir)
    w = make_weights()
    assert sorted(b.weights) == sorted(w)
    for k, a in w.items():
        assert b.weights[k].dtype == np.float32
        np.testing.assert_array_equal(b.weights[k], a)
    assert [tuple(W.shape) for W, _ in b.layers] == [(22, 64), (64, 64), (64, 4)]
    assert b.contract == make_contract()
    assert (b.platform_name, b.task_name, b.seed, b.metrics) == ("crazyflie_2_1", "hover", 7, {"return_mean": 123.4})
    assert b.path == bundle_dir


def test_manifest_layout_and_hashes(bundle_dir):
    m = json.loads((bundle_dir / "bundle.json").read_text())
    assert (m["format"], m["format_version"]) == ("edgectl-bundle", 1)
    assert m["created"].endswith("+00:00")
    assert m["platform"] == {"name": "crazyflie_2_1", "file": "platform.toml", "sha256": hashlib.sha256(PLATFORM_TOML).hexdigest()}
    assert m["weights"]["sha256"] == sha256_file(bundle_dir / "weights.npz")
    assert m["weights"]["arrays"]["actor.0.weight"] == {"shape": [22, 64], "dtype": "float32"}
    assert m["files"] == {"training_curve.png": hashlib.sha256(PNG).hexdigest()}
    assert (bundle_dir / "platform.toml").read_bytes() == PLATFORM_TOML
    assert sorted(p.name for p in bundle_dir.iterdir()) == ["bundle.json", "platform.toml", "training_curve.png", "weights.npz"]


def test_act_matches_manual_forward_pass(bundle_dir):
    b = load_bundle(bundle_dir)
    obs = np.random.default_rng(3).normal(size=(16, 22))
    out = b.act(obs)
    assert out.dtype == np.float32 and out.shape == (16, 4)
    np.testing.assert_allclose(out, manual_act(obs, make_contract(), make_weights()), atol=1e-5)
    single = b.act(obs[5])
    assert single.shape == (4,)
    np.testing.assert_allclose(single, out[5], atol=1e-6)
    np.testing.assert_array_equal(load_bundle(bundle_dir).act(obs), out)  # deterministic across loads


def test_act_relu_and_clipping(tmp_path):
    w = make_weights()
    w["actor.2.weight"] *= 50  # push outputs well past [-1, 1]
    b = load_bundle(write_bundle(tmp_path / "relu", **bundle_args(weights=w, policy=make_policy(activation="relu"))))
    obs = np.random.default_rng(4).normal(size=(64, 22))
    out = b.act(obs)
    np.testing.assert_allclose(out, manual_act(obs, make_contract(), w, lambda x: np.maximum(x, 0)), atol=1e-4)
    assert out.min() == -1.0 and out.max() == 1.0


def test_loaded_weights_are_read_only(bundle_dir):
    b = load_bundle(bundle_dir)
    with pytest.raises(ValueError):
        b.layers[0][0][0, 0] = 1.0


def test_sha256_file(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(b"abc" * 100_000)
    assert sha256_file(p) == hashlib.sha256(b"abc" * 100_000).hexdigest()


# --- act() input checks -------------------------------------------------------------------------------------


def test_act_rejects_wrong_size(bundle_dir):
    b = load_bundle(bundle_dir)
    with pytest.raises(BundleError, match=r"observation size 21 .* expected contract.observation.size = 22"):
        b.act(np.zeros(21))
    with pytest.raises(BundleError, match="observation size 23"):
        b.act(np.zeros((2, 23)))
    with pytest.raises(BundleError, match="expected contract.observation.size = 22"):
        b.act(np.zeros((2, 3, 22)))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_act_rejects_non_finite_naming_index(bundle_dir, bad):
    b = load_bundle(bundle_dir)
    obs = np.zeros(22)
    obs[16] = bad
    with pytest.raises(ValueError, match=r"at index 16 \(field 'angular_velocity'\[1\]\)"):
        b.act(obs)
    batch = np.zeros((3, 22))
    batch[2, 0] = bad
    with pytest.raises(ValueError, match=r"at index \[2, 0\] \(field 'position_error'\[0\]\)"):
        b.act(batch)


# --- tampering ----------------------------------------------------------------------------------------------


def test_flipped_byte_in_weights_is_rejected(bundle_dir):
    data = bytearray((bundle_dir / "weights.npz").read_bytes())
    data[len(data) // 2] ^= 0x01
    (bundle_dir / "weights.npz").write_bytes(bytes(data))
    msg = load_error(bundle_dir)
    assert msg.startswith("weights.npz: sha256 mismatch")


def test_inconsistent_contract_edit_names_field(bundle_dir):
    edit_manifest(bundle_dir, lambda m: m["contract"]["observation"]["fields"][1].update(size=8))
    msg = load_error(bundle_dir)
    assert msg == "bundle.json: contract.observation.fields: field sizes sum to 21, expected observation.size = 22"


def test_contract_scale_zero_names_index(bundle_dir):
    edit_manifest(bundle_dir, lambda m: m["contract"]["observation"]["normalization"]["scale"].__setitem__(9, 0))
    assert "bundle.json: contract.observation.normalization.scale[9]: expected a nonzero number, got 0" in load_error(bundle_dir)


def test_truncated_weights_with_fixed_sha_is_corrupt(bundle_dir):
    data = (bundle_dir / "weights.npz").read_bytes()[:-200]
    (bundle_dir / "weights.npz").write_bytes(data)
    edit_manifest(bundle_dir, lambda m: m["weights"].update(sha256=hashlib.sha256(data).hexdigest()))
    assert load_error(bundle_dir).startswith("weights.npz: corrupt or truncated npz")


def test_empty_weights_file_is_corrupt(bundle_dir):
    (bundle_dir / "weights.npz").write_bytes(b"")
    edit_manifest(bundle_dir, lambda m: m["weights"].update(sha256=hashlib.sha256(b"").hexdigest()))
    assert "corrupt or truncated" in load_error(bundle_dir)


def test_missing_platform_file(bundle_dir):
    (bundle_dir / "platform.toml").unlink()
    assert load_error(bundle_dir).startswith("platform.toml: missing from bundle")


def test_modified_platform_file(bundle_dir):
    (bundle_dir / "platform.toml").write_bytes(PLATFORM_TOML.replace(b"quadrotor", b"quadrotor "))
    msg = load_error(bundle_dir)
    assert msg.startswith("platform.toml: sha256 mismatch") and "platform.sha256" in msg


def test_modified_extra_file(bundle_dir):
    (bundle_dir / "training_curve.png").write_bytes(PNG + b"!")
    assert load_error(bundle_dir).startswith("training_curve.png: sha256 mismatch")


def test_missing_weights_file(bundle_dir):
    (bundle_dir / "weights.npz").unlink()
    assert load_error(bundle_dir).startswith("weights.npz: missing from bundle")


def test_nan_weight_with_matching_sha(bundle_dir):
    w = make_weights()
    w["actor.1.weight"][10, 20] = np.nan
    replace_weights(bundle_dir, w)
    assert load_error(bundle_dir) == "weights.npz: array 'actor.1.weight': non-finite value nan at index [10, 20] (1 in total)"


def test_inf_bias_with_matching_sha(bundle_dir):
    w = make_weights()
    w["actor.2.bias"][3] = np.inf
    replace_weights(bundle_dir, w)
    assert "array 'actor.2.bias': non-finite value inf at index [3]" in load_error(bundle_dir)


def test_array_shape_differs_from_manifest(bundle_dir):
    edit_manifest(bundle_dir, lambda m: m["weights"]["arrays"]["actor.1.bias"].update(shape=[65]))
    assert load_error(bundle_dir) == ("weights.npz: array 'actor.1.bias': shape [64], "
                                      "but bundle.json weights.arrays.actor.1.bias.shape says [65]")


def test_array_dtype_differs(bundle_dir):
    w = make_weights()
    w["actor.0.bias"] = w["actor.0.bias"].astype(np.float64)
    replace_weights(bundle_dir, w)
    assert "array 'actor.0.bias': dtype float64" in load_error(bundle_dir)


def test_array_missing_from_npz(bundle_dir):
    w = make_weights()
    del w["actor.2.bias"]
    replace_weights(bundle_dir, w)
    assert load_error(bundle_dir) == "weights.npz: arrays ['actor.2.bias'] listed in bundle.json weights.arrays are missing from the file"


def test_unlisted_array_in_npz(bundle_dir):
    replace_weights(bundle_dir, {**make_weights(), "critic.0.weight": np.zeros((2, 2), np.float32)})
    assert "arrays ['critic.0.weight'] are not listed" in load_error(bundle_dir)


def test_layer_chain_inconsistent_even_if_manifest_agrees(bundle_dir):
    w = make_weights(sizes=[22, 64, 32, 4])
    w["actor.2.weight"] = np.zeros((64, 4), np.float32)  # layer 1 outputs 32, layer 2 expects 64
    replace_weights(bundle_dir, w, fix_meta=True)
    assert load_error(bundle_dir) == ("weights.npz: array 'actor.2.weight' (policy.layers[2].weight): "
                                      "expected shape [32, n] (output of policy.layers[1] = 32), got [64, 4]")


def test_policy_layer_names_unknown_array(bundle_dir):
    edit_manifest(bundle_dir, lambda m: m["policy"]["layers"][1].update(bias="actor.9.bias"))
    assert "bundle.json: policy.layers[1].bias: array 'actor.9.bias' is not in weights.npz" in load_error(bundle_dir)


# --- manifest structure -------------------------------------------------------------------------------------


def test_unparsable_json_reports_position(bundle_dir):
    text = (bundle_dir / "bundle.json").read_text()
    (bundle_dir / "bundle.json").write_text(text.replace('"seed": 7,', '"seed": 7'))
    msg = load_error(bundle_dir)
    assert msg.startswith("bundle.json: not valid JSON: Expecting ',' delimiter at line ") and "column" in msg


@pytest.mark.parametrize("edit,message", [
    (lambda m: m.update(format="other"), "bundle.json: format: expected 'edgectl-bundle', got 'other'"),
    (lambda m: m.update(format_version=2), "bundle.json: format_version: expected 1"),
    (lambda m: m.pop("seed"), "bundle.json: seed: missing required key"),
    (lambda m: m.update(seed="7"), "bundle.json: seed: expected an int, got '7'"),
    (lambda m: m.update(metrics=[]), "bundle.json: metrics: expected an object, got []"),
    (lambda m: m["task"].pop("name"), "bundle.json: task.name: missing required key"),
    (lambda m: m["platform"].update(sha256="xyz"), "bundle.json: platform.sha256: expected 64 lowercase hex digits, got 'xyz'"),
    (lambda m: m["weights"].update(file="../weights.npz"), "bundle.json: weights.file: expected a plain file name inside the bundle"),
    (lambda m: m["weights"]["arrays"]["actor.0.bias"].update(dtype="float16"), "bundle.json: weights.arrays.actor.0.bias.dtype: expected 'float32', got 'float16'"),
    (lambda m: m["policy"].update(activation="sigmoid"), "bundle.json: policy.activation: expected one of ['relu', 'tanh'], got 'sigmoid'"),
    (lambda m: m.update(created="yesterday"), "bundle.json: created: expected an ISO-8601 timestamp"),
    (lambda m: m.pop("contract"), "bundle.json: contract: missing required key"),
    (lambda m: m["files"].update({"../../etc/passwd": "0" * 64}), "bundle.json: files: expected plain extra file names"),
])
def test_manifest_structure_errors(bundle_dir, edit, message):
    edit_manifest(bundle_dir, edit)
    assert message in load_error(bundle_dir)


def test_missing_directory_and_manifest(tmp_path):
    assert "bundle directory not found" in load_error(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    assert load_error(tmp_path / "empty").startswith("bundle.json: missing from bundle")


def test_expect_platform_and_task(bundle_dir):
    assert load_bundle(bundle_dir, expect_platform="crazyflie_2_1", expect_task="hover").platform_name == "crazyflie_2_1"
    assert "bundle is for platform 'crazyflie_2_1', expected 'tello'" in load_error(bundle_dir, expect_platform="tello")
    assert "bundle is for task 'hover', expected 'figure8'" in load_error(bundle_dir, expect_task="figure8")


# --- atomic writes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides,message", [
    (dict(contract={**make_contract(), "rate_hz": -1.0}), "bundle.json: contract.rate_hz"),
    (dict(policy=make_policy(activation="gelu")), "bundle.json: policy.activation"),
    (dict(weights={**make_weights(), "actor.0.bias": np.full(64, np.nan)}), "weights.npz: array 'actor.0.bias': non-finite"),
    (dict(weights=make_weights(sizes=[21, 64, 64, 4])), "expected shape [22, n] (contract.observation.size = 22), got [21, 64]"),
    (dict(weights=make_weights(sizes=[22, 64, 64, 3])), "outputs 3, expected contract.action.size = 4"),
    (dict(policy=make_policy(n_layers=2)), "(last layer): outputs 64"),
    (dict(weights={**make_weights(), "file": np.zeros(1)}), "array name 'file'"),
    (dict(extra_files={"../x.png": PNG}), "extra file name must be a plain file name"),
    (dict(extra_files={"weights.npz": PNG}), "extra file name must be a plain file name"),
    (dict(task={"episode_s": 5.0}), "bundle.json: task.name"),
    (dict(seed=1.5), "bundle.json: seed: expected an int"),
    (dict(metrics={"return_mean": math.nan}), "bundle.json: manifest is not strict JSON"),
    (dict(platform_toml="not bytes"), "platform.toml: expected the file's bytes"),
])
def test_invalid_input_writes_nothing(tmp_path, overrides, message):
    with pytest.raises(BundleError) as e:
        write_bundle(tmp_path / "out" / "b", **bundle_args(**overrides))
    assert message in str(e.value)
    assert list(tmp_path.iterdir()) == []  # not even the parent directory


def test_existing_dir_without_overwrite_is_untouched(tmp_path):
    out = tmp_path / "b"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(BundleError, match="already exists; pass overwrite=True"):
        write_bundle(out, **bundle_args())
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no temp dir left behind


def test_overwrite_replaces_and_leaves_no_temp(bundle_dir):
    write_bundle(bundle_dir, **bundle_args(seed=8, extra_files=None), overwrite=True)
    b = load_bundle(bundle_dir)
    assert b.seed == 8
    assert not (bundle_dir / "training_curve.png").exists()
    assert [p.name for p in bundle_dir.parent.iterdir()] == [bundle_dir.name]


def test_failed_overwrite_keeps_old_bundle(bundle_dir):
    with pytest.raises(BundleError):
        write_bundle(bundle_dir, **bundle_args(seed=8, policy=make_policy(activation="gelu")), overwrite=True)
    assert load_bundle(bundle_dir).seed == 7
    assert [p.name for p in bundle_dir.parent.iterdir()] == [bundle_dir.name]

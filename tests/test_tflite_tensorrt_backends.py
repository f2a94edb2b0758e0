"""TFLite export parity, the TensorRT guard, and the runtime backends (onnxruntime, TFLite, numpy)."""
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from edgectl.backends import (BackendError, BundleBackend, OnnxBackend, ProviderFallbackWarning, available_providers,
                              open_backend)
from edgectl.bundle import load_bundle, write_bundle
from export.errors import ExportError, TargetUnavailable

ROOT = Path(__file__).resolve().parents[1]
REAL_BUNDLES = [ROOT / "tests" / "data" / "hover_bundle"]  # a real trained policy, shipped with the tests
TOL = 1e-5
N_OBS = 2000

# A minimal bundle (a copy of the shape of tests/test_bundle.py's, not imported from it).
FIELDS = [("position_error", 3, "m", "world"), ("rotation_matrix", 9, "1", "body-to-world, row-major"),
          ("linear_velocity", 3, "m/s", "world"), ("angular_velocity", 3, "rad/s", "body"),
          ("previous_action", 4, "1", "motor order m1..m4")]
OBS = 22


def make_bundle(root: Path, activation: str = "tanh", sizes=(OBS, 48, 32, 4), seed: int = 0):
    rng = np.random.default_rng(seed)
    contract = {
        "version": 1, "rate_hz": 100.0, "quaternion_order": "wxyz",
        "observation": {
            "size": OBS,
            "fields": [{"name": n, "size": s, "unit": u, "frame": f} for n, s, u, f in FIELDS],
            "normalization": {"offset": rng.normal(size=OBS).round(3).tolist(),
                              "scale": rng.uniform(0.3, 3.0, size=OBS).round(3).tolist()},
        },
        "action": {"size": 4, "names": ["m1", "m2", "m3", "m4"], "low": -1.0, "high": 0.8,
                   "mapping": {"kind": "rpm_linear"}},
    }
    weights, layers = {}, []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        # gain 1.5: the last layer regularly leaves [low, high], so the clip is exercised
        weights[f"pi.{i}.w"] = rng.normal(0, 1.5 / math.sqrt(n_in), size=(n_in, n_out)).astype(np.float32)
        weights[f"pi.{i}.b"] = rng.normal(0, 0.2, size=n_out).astype(np.float32)
        layers.append({"weight": f"pi.{i}.w", "bias": f"pi.{i}.b"})
    policy = {"kind": "mlp", "activation": activation, "output_activation": "clip", "layers": layers}
    write_bundle(root, contract=contract, policy=policy, weights=weights, platform_toml=b'[platform]\nname = "t"\n',
                 platform_name="t", task={"name": "hover"}, seed=seed, metrics={}, versions={})
    return load_bundle(root)


def realistic_obs(bundle, n: int = N_OBS, seed: int = 1) -> np.ndarray:
    """Raw observations spread over about +-2.5 normalization scales around the offset (some far out)."""
    norm = bundle.contract["observation"]["normalization"]
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.0, size=(n, len(norm["offset"])))
    z[: n // 10] *= 3.0  # a tail of large observations: saturated tanh/relu and clipped actions
    return (np.asarray(norm["offset"]) + np.asarray(norm["scale"]) * z).astype(np.float32)


def write_onnx_mlp(bundle, path: Path, batch="batch") -> Path:
    """A minimal ONNX of the bundle's MLP (normalize, MatMul+Add, activation, Clip), written with onnx.helper."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    c = bundle.contract
    norm, a = c["observation"]["normalization"], c["action"]
    act_op = {"tanh": "Tanh", "relu": "Relu"}[bundle.manifest["policy"]["activation"]]
    f32 = lambda v: np.asarray(v, dtype=np.float32)  # noqa: E731
    inits = [numpy_helper.from_array(f32(norm["offset"]), "offset"), numpy_helper.from_array(f32(norm["scale"]), "scale"),
             numpy_helper.from_array(f32(a["low"]), "low"), numpy_helper.from_array(f32(a["high"]), "high")]
    nodes = [helper.make_node("Sub", ["observation", "offset"], ["centered"]),
             helper.make_node("Div", ["centered", "scale"], ["h0"])]
    h = "h0"
    for i, (w, b) in enumerate(bundle.layers):
        inits += [numpy_helper.from_array(np.asarray(w), f"w{i}"), numpy_helper.from_array(np.asarray(b), f"b{i}")]
        nodes += [helper.make_node("MatMul", [h, f"w{i}"], [f"mm{i}"]), helper.make_node("Add", [f"mm{i}", f"b{i}"], [f"z{i}"])]
        h = f"z{i}"
        if i < len(bundle.layers) - 1:
            nodes.append(helper.make_node(act_op, [h], [f"a{i}"]))
            h = f"a{i}"
    nodes.append(helper.make_node("Clip", [h, "low", "high"], ["action"]))
    graph = helper.make_graph(
        nodes, "policy", [helper.make_tensor_value_info("observation", TensorProto.FLOAT, [batch, c["observation"]["size"]])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, [batch, a["size"]])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by older onnxruntime builds (Jetson wheels)
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture(scope="module", params=["tanh", "relu"])
def random_bundle(request, tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp(request.param) / "b", activation=request.param)


def real_bundle(path: Path):
    if not (path / "bundle.json").is_file():
        pytest.skip(f"{path} not present")
    return load_bundle(path)


# --- (a) TFLite parity ----------------------------------------------------------------------
def check_tflite_parity(bundle, tmp_path: Path, expect_clip: bool) -> float:
    pytest.importorskip("ai_edge_litert")
    from export.tflite_export import verify_tflite, write_tflite
    path = tmp_path / "policy.tflite"
    write_tflite(bundle, path)
    obs = realistic_obs(bundle)
    ref = bundle.act(obs)
    a = bundle.contract["action"]
    if expect_clip:  # the comparison must include actions that hit each bound
        assert (ref == np.float32(a["low"])).any() and (ref == np.float32(a["high"])).any()
        assert ((ref > a["low"]) & (ref < a["high"])).mean() > 0.3
    got = verify_tflite(path, obs)
    assert got.shape == ref.shape and got.dtype == np.float32
    err = float(np.abs(got - ref).max())
    assert err <= TOL, f"tflite vs Bundle.act: max abs error {err:.3g} > {TOL}"
    assert got.min() >= a["low"] and got.max() <= a["high"]
    one = verify_tflite(path, obs[7])  # batch 1, the control-loop case
    assert one.shape == (a["size"],) and np.abs(one - ref[7]).max() <= TOL
    return err


def test_tflite_matches_bundle_random_weights(random_bundle, tmp_path):
    check_tflite_parity(random_bundle, tmp_path, expect_clip=True)


@pytest.mark.parametrize("path", REAL_BUNDLES, ids=lambda p: p.parent.name + "/" + p.name)
def test_tflite_matches_real_bundle(path, tmp_path):
    check_tflite_parity(real_bundle(path), tmp_path, expect_clip=False)


def test_tflite_is_written_atomically_and_refuses_bad_obs(random_bundle, tmp_path):
    pytest.importorskip("ai_edge_litert")
    from export.tflite_export import verify_tflite, write_tflite
    path = tmp_path / "out" / "p.tflite"
    write_tflite(random_bundle, path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["p.tflite"]  # no temp files left behind
    assert path.read_bytes()[4:8] == b"TFL3"
    with pytest.raises(ExportError, match=r"observation shape \[5\], expected \(22,\)"):
        verify_tflite(path, np.zeros(5, np.float32))


def test_tflite_without_litert_names_the_install(random_bundle, tmp_path, monkeypatch):
    from export.tflite_export import write_tflite
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # import ai_edge_litert -> ImportError
    with pytest.raises(TargetUnavailable, match=r"ai-edge-litert") as e:
        write_tflite(random_bundle, tmp_path / "p.tflite")
    assert 'pip install "edgectl[export]"' in str(e.value)
    assert not (tmp_path / "p.tflite").exists()


# --- (b) TensorRT guard ---------------------------------------------------------------------
def test_tensorrt_unavailable_says_how_to_get_it(tmp_path, monkeypatch):
    from export.tensorrt_export import build_engine
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # as on this machine, even where TensorRT is installed
    with pytest.raises(TargetUnavailable) as e:
        build_engine(tmp_path / "policy.onnx", tmp_path / "policy.engine", int8=True, calib_obs=np.zeros((64, OBS)))
    msg = str(e.value)
    for needle in ("TensorRT", "JetPack", "tensorrt-cu12", "tensorrt-cu13", "NVIDIA GPU", "ONNX", "trtexec"):
        assert needle in msg, f"{needle!r} missing from: {msg}"
    assert not (tmp_path / "policy.engine").exists()


# --- (c) onnxruntime providers ----------------------------------------------------------------
@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    root = tmp_path_factory.mktemp("onnx")
    bundle = make_bundle(root / "b", activation="tanh")
    return bundle, write_onnx_mlp(bundle, root / "policy.onnx")


def test_onnx_backend_cpu_matches_bundle(onnx_file):
    bundle, path = onnx_file
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProviderFallbackWarning)
        be = OnnxBackend(path)
    assert be.active_provider == "CPUExecutionProvider" and not be.provider_fallback
    assert be.obs_size == OBS and be.action_size == 4 and "CPUExecutionProvider" in be.name
    obs = realistic_obs(bundle, 500)
    assert np.abs(be.act(obs) - bundle.act(obs)).max() <= TOL
    one = be.act(obs[3])
    assert one.shape == (4,) and one.dtype == np.float32 and np.abs(one - bundle.act(obs[3])).max() <= TOL


def test_onnx_backend_fixed_batch_1_runs_row_by_row(onnx_file, tmp_path):
    bundle, _ = onnx_file
    be = OnnxBackend(write_onnx_mlp(bundle, tmp_path / "b1.onnx", batch=1))
    obs = realistic_obs(bundle, 5)
    assert np.abs(be.act(obs) - bundle.act(obs)).max() <= TOL


def test_onnx_backend_cuda_falls_back_loudly_on_cpu(onnx_file):
    _, path = onnx_file
    if "CUDAExecutionProvider" in available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.warns(ProviderFallbackWarning, match=r"requested .*'CUDAExecutionProvider'.*active provider is 'CPUExecutionProvider'"):
        be = OnnxBackend(path, providers=("CUDAExecutionProvider", "CPUExecutionProvider"))
    assert be.active_provider == "CPUExecutionProvider" and be.provider_fallback
    assert be.requested_providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(BackendError, match=r"'CUDAExecutionProvider'.*'CPUExecutionProvider'.*onnxruntime-gpu"):
        OnnxBackend(path, providers=("CUDAExecutionProvider",), require=True)
    with pytest.raises(BackendError, match=r"'TensorrtExecutionProvider'.*active provider is 'CPUExecutionProvider'"):
        OnnxBackend(path, providers=[("TensorrtExecutionProvider", {}), "CPUExecutionProvider"], require=True)


# --- (d) every backend refuses NaN and wrong sizes ---------------------------------------------
@pytest.fixture(scope="module", params=["numpy", "onnx", "tflite"])
def backend(request, onnx_file, tmp_path_factory):
    bundle, onnx_path = onnx_file
    if request.param == "numpy":
        return bundle, BundleBackend(bundle)
    if request.param == "onnx":
        return bundle, open_backend(onnx_path, contract=bundle.contract)
    pytest.importorskip("ai_edge_litert")
    from export.tflite_export import write_tflite
    path = tmp_path_factory.mktemp("tfl") / "policy.tflite"
    write_tflite(bundle, path)
    return bundle, open_backend(path, contract=bundle.contract)


def test_backend_acts_like_bundle(backend):
    bundle, be = backend
    obs = realistic_obs(bundle, 64)
    assert np.abs(be.act(obs) - bundle.act(obs)).max() <= TOL
    for x in (obs[0], obs[:1], obs[:3], obs[5]):  # batch size changes back and forth
        assert np.abs(be.act(x) - bundle.act(x)).max() <= TOL
        assert be.act(x).shape == bundle.act(x).shape


def test_backend_rejects_wrong_sizes(backend):
    _, be = backend
    for bad, got in ((np.zeros(21), "21"), (np.zeros((2, 25)), "25"), (np.float32(1.0), "a scalar"), (np.zeros((2, 3, 22)), "22")):
        with pytest.raises(BackendError, match=rf"observation size {got} \(shape .*\), expected 22"):
            be.act(bad)


def test_backend_rejects_nan_naming_index_and_field(backend):
    _, be = backend
    x = np.zeros(OBS, np.float32)
    x[13] = np.nan  # linear_velocity[1]
    with pytest.raises(BackendError, match=r"non-finite value nan at index 13 \(field 'linear_velocity'\[1\]\)"):
        be.act(x)
    xb = np.zeros((4, OBS))
    xb[2, 20] = np.inf  # previous_action[2]
    with pytest.raises(BackendError, match=r"non-finite value inf at index \[2, 20\] \(field 'previous_action'\[2\]\)"):
        be.act(xb)
    big = np.zeros(OBS)
    big[1] = 1e300  # finite, but inf once cast to the model's float32: refused, and not reported as inf
    with pytest.raises(BackendError, match=r"outside the float32 range, 1e\+300 at index 1 \(field 'position_error'\[1\]\)"):
        be.act(big)
    assert np.isfinite(be.act(np.full(OBS, 1e30))).all()  # large but representable: runs, the policy saturates


def test_backend_without_contract_names_the_index(onnx_file):
    _, path = onnx_file
    be = OnnxBackend(path)
    x = np.zeros(OBS)
    x[4] = np.nan
    with pytest.raises(BackendError, match=r"non-finite value nan at index 4$"):
        be.act(x)
    with pytest.raises(BackendError, match=r"expected a bundle directory, a \.onnx or a \.tflite file"):
        open_backend(path.with_suffix(".pt"))


def test_tensorrt_is_no_flight_backend(tmp_path):
    """issue 16: edgectl has never run an engine (no GPU where it is tested), so no runtime pretends to fly one,
    and the README lists TensorRT as no flight backend."""
    import json
    from pathlib import Path

    from edgectl.bundle import load_bundle
    from edgectl.runtime.backends import load_policy
    b = load_bundle(Path(__file__).parent / "data" / "hover_bundle")
    (tmp_path / "report.json").write_text(json.dumps({"target": "tensorrt", "bundle_weights_sha256": b.manifest["weights"]["sha256"]}))
    with pytest.raises(ValueError, match="TensorRT engine cannot be flown.*policy.onnx"):
        load_policy(tmp_path, b)
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    flight = [ln for ln in readme.splitlines() if "backend" in ln and "TensorRT" in ln and "not a flight backend" not in ln]
    assert not flight, flight

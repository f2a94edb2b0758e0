"""`edgectl import` (train_fast/importer.py): ONNX models and stable-baselines3 zips plus a declared contract TOML
become bundles. The hover fixture's layers, written out as other tools write them (PyTorch-style Gemm, edgectl's
own ONNX export, an SB3 PPO zip), must import back to the fixture's exact contract and actions; what a bundle
cannot express is refused with one line and nothing written. The round trip of a policy trained by an outside
library (import -> eval -> export c -> run sim://) is in tests/test_gym.py."""
from __future__ import annotations

import collections
import io
import json
import pickle
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

onnx = pytest.importorskip("onnx")  # the [test] extra installs it: CI's skip audit fails on this skip
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgectl import cli  # noqa: E402
from edgectl.bundle import load_bundle  # noqa: E402
from train_fast.importer import ImportRefused, contract_template, import_model, parse_contract_toml  # noqa: E402

FIXTURE = Path(__file__).parent / "data" / "hover_bundle"
runner = CliRunner()


@pytest.fixture(scope="module")
def fx():
    return load_bundle(FIXTURE)


def gemm_onnx(path: Path, layers, acts=None, out_act=None, extra_nodes=(), clip=None) -> Path:
    """An MLP as torch.onnx.export writes nn.Linear: Gemm with transB=1 and W as [out, in]."""
    nodes, inits, x = [], [], "obs"
    acts = acts or ["Tanh"] * (len(layers) - 1)
    for i, (w, b) in enumerate(layers):
        inits += [numpy_helper.from_array(np.ascontiguousarray(np.asarray(w, np.float32).T), f"W{i}"),
                  numpy_helper.from_array(np.asarray(b, np.float32), f"b{i}")]
        nodes.append(helper.make_node("Gemm", [x, f"W{i}", f"b{i}"], [f"z{i}"], transB=1, name=f"/Gemm_{i}"))
        x = f"z{i}"
        if i < len(layers) - 1:
            nodes.append(helper.make_node(acts[i], [x], [f"h{i}"], name=f"/{acts[i]}_{i}"))
            x = f"h{i}"
    if out_act:
        nodes.append(helper.make_node(out_act, [x], ["squashed"], name=f"/{out_act}_out"))
        x = "squashed"
    for node in extra_nodes:
        nodes.append(node(x))
        x = nodes[-1].output[0]
    if clip is not None:
        inits += [numpy_helper.from_array(np.float32(clip[0]), "lo"), numpy_helper.from_array(np.float32(clip[1]), "hi")]
        nodes.append(helper.make_node("Clip", [x, "lo", "hi"], ["clipped"], name="/Clip"))
        x = "clipped"
    nodes.append(helper.make_node("Identity", [x], ["actions"]))
    g = helper.make_graph(nodes, "actor", [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", layers[0][0].shape[0]])],
                          [helper.make_tensor_value_info("actions", TensorProto.FLOAT, ["batch", layers[-1][0].shape[1]])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="test")
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


def template(tmp_path: Path, edit=None, name="contract.toml") -> Path:
    text = contract_template("hover")
    if edit:
        text = edit(text)
    p = tmp_path / name
    p.write_text(text)
    return p


def test_template_is_the_fixture_contract(fx, tmp_path):
    d = parse_contract_toml(template(tmp_path).read_bytes(), "contract.toml")
    assert [f["name"] for f in d["observation"]] == [f["name"] for f in fx.contract["observation"]["fields"]]
    flat = np.concatenate([f["scale"] for f in d["observation"]])
    np.testing.assert_allclose(flat, fx.contract["observation"]["normalization"]["scale"])


def test_pytorch_style_onnx_imports_to_the_native_bundle(fx, tmp_path):
    model = gemm_onnx(tmp_path / "actor.onnx", fx.layers)
    rep = import_model(model, template(tmp_path), tmp_path / "b")
    b = load_bundle(tmp_path / "b")
    # the fixture predates the task config's `action` field (issue 15); its default is the motor mapping
    imported, native = dict(b.manifest["task"]), dict(fx.manifest["task"])
    assert imported.pop("action", "motor") == native.pop("action", "motor") == "motor"
    # ... and its `integral_reset_jump` (0: hover's rule, any change of the reference restarts the integral)
    assert imported.pop("integral_reset_jump", 0.0) == native.pop("integral_reset_jump", 0.0) == 0.0
    # ... and its `train_episode_seconds` (0: training episodes as long as evaluation's)
    assert imported.pop("train_episode_seconds", 0.0) == native.pop("train_episode_seconds", 0.0) == 0.0
    assert b.contract == fx.contract and imported == native
    assert b.platform_name == fx.platform_name and b.manifest["policy"]["activation"] == "tanh"
    x = np.random.default_rng(0).normal(size=(200, fx.contract["observation"]["size"]))
    np.testing.assert_array_equal(b.act(x), fx.act(x))
    assert rep["parity_reference"] == "onnxruntime" and rep["parity_max_abs_error"] < 1e-5
    assert (tmp_path / "b" / "import_contract.toml").read_text() == template(tmp_path).read_text()
    assert b.metrics["imported"]["model_sha256"] == rep["model_sha256"]


def test_edgectl_onnx_export_imports_back_with_its_normalization_folded(fx, tmp_path):
    """edgectl's own ONNX takes the RAW observation (Sub/Div inside, Clip at the end): declared offset 0, scale 1."""
    from export.onnx_export import write_onnx

    model = write_onnx(fx, tmp_path / "native.onnx")

    def raw_input(text):
        import re
        text = re.sub(r"(?m)^offset = .*$", "offset = 0.0", text)
        return re.sub(r"(?m)^scale = .*$", "scale = 1.0", text)

    rep = import_model(model, template(tmp_path, raw_input), tmp_path / "b")
    assert rep["model_normalization_folded"] and tuple(rep["model_clip"]) == (-1.0, 1.0)
    b = load_bundle(tmp_path / "b")
    norm, fnorm = b.contract["observation"]["normalization"], fx.contract["observation"]["normalization"]
    np.testing.assert_allclose(norm["offset"], fnorm["offset"], atol=1e-6)
    np.testing.assert_allclose(norm["scale"], fnorm["scale"], rtol=1e-6)
    x = np.random.default_rng(1).normal(size=(200, fx.contract["observation"]["size"]))
    np.testing.assert_allclose(b.act(x), fx.act(x), atol=2e-6)


def test_other_field_order_action_order_and_range_are_folded_into_the_layers(fx, tmp_path):
    """A model whose input lists velocity_error first, whose outputs are M4..M1 in [0, 1]: same policy."""
    c = fx.contract
    sl = {f["name"]: f["size"] for f in c["observation"]["fields"]}
    names = list(sl)
    order = ["velocity_error"] + [n for n in names if n != "velocity_error"]
    starts = dict(zip(names, np.cumsum([0] + [sl[n] for n in names])[:-1]))
    rows = np.concatenate([np.arange(starts[n], starts[n] + sl[n]) for n in order])
    layers = [(w.astype(np.float64), b.astype(np.float64)) for w, b in fx.layers]
    w0, b0 = layers[0]
    layers[0] = (w0[rows], b0)
    wl, bl = layers[-1]
    layers[-1] = ((wl[:, ::-1]) * 0.5, bl[::-1] * 0.5 + 0.5)  # a in [-1, 1] -> (a + 1) / 2, reversed
    model = gemm_onnx(tmp_path / "m.onnx", layers)

    def edit(text):
        blocks = text.split("\n[[observation]]\n")
        head, fields = blocks[0], {b.split("\n")[0].split(" = ")[1].strip('"'): b for b in blocks[1:]}
        last = fields[names[-1]].split("\n[action]\n")
        fields[names[-1]], action = last[0] + "\n", last[1]
        action = action.replace('names = ["m1", "m2", "m3", "m4"]', 'names = ["m4", "m3", "m2", "m1"]')
        action = action.replace("low = -1", "low = 0")
        body = "".join("\n[[observation]]\n" + fields[n].rstrip("\n") + "\n" for n in order)
        return head + body + "\n[action]\n" + action

    rep = import_model(model, template(tmp_path, edit), tmp_path / "b")
    assert rep["observation_order"] == "reordered to edgectl's" and rep["action_rescaled"]
    b = load_bundle(tmp_path / "b")
    assert b.contract == fx.contract
    x = np.random.default_rng(2).normal(size=(200, c["observation"]["size"]))
    np.testing.assert_allclose(b.act(x), fx.act(x), atol=2e-6)


# --- a stable-baselines3 zip, written as SB3 2.x writes a PPO MlpPolicy (PyTorch's zip pickle format) -----------------
def _torch_state_dict_zip(state: dict[str, np.ndarray]) -> bytes:
    """policy.pth as torch.save writes a state dict (archive/data.pkl + archive/data/<key>), without torch: the
    pickle names torch._utils._rebuild_tensor_v2 and torch.FloatStorage through stand-in modules."""
    torch_mod, utils_mod = types.ModuleType("torch"), types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*a):
        raise AssertionError

    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    torch_mod.FloatStorage, torch_mod._utils, utils_mod._rebuild_tensor_v2 = FloatStorage, utils_mod, _rebuild_tensor_v2
    records: dict[str, bytes] = {}

    class Storage:
        def __init__(self, key, arr):
            self.key, self.arr = key, arr

    class Tensor:
        def __init__(self, storage, shape):
            self.storage, self.shape = storage, shape

        def __reduce__(self):
            stride = tuple(int(np.prod(self.shape[i + 1:])) for i in range(len(self.shape)))
            return _rebuild_tensor_v2, (self.storage, 0, tuple(self.shape), stride, False, collections.OrderedDict())

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                return ("storage", FloatStorage, obj.key, "cpu", obj.arr.size)
            return None

    od = collections.OrderedDict()
    for i, (k, v) in enumerate(state.items()):
        arr = np.ascontiguousarray(v, np.float32)
        records[str(i)] = arr.tobytes()
        od[k] = Tensor(Storage(str(i), arr), arr.shape)
    saved = {m: sys.modules.get(m) for m in ("torch", "torch._utils")}
    sys.modules["torch"], sys.modules["torch._utils"] = torch_mod, utils_mod
    try:
        buf = io.BytesIO()
        P(buf, protocol=2).dump(od)
    finally:
        for m, v in saved.items():
            if v is None:
                sys.modules.pop(m, None)
            else:
                sys.modules[m] = v
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("policy/data.pkl", buf.getvalue())
        z.writestr("policy/byteorder", "little")
        for k, data in records.items():
            z.writestr(f"policy/data/{k}", data)
        z.writestr("policy/version", "3\n")
    return out.getvalue()


def sb3_zip(path: Path, layers, *, activation="Tanh", off_policy=False, n_obs=None) -> Path:
    state = collections.OrderedDict(log_std=np.zeros(4))
    if off_policy:
        state["actor.latent_pi.0.weight"] = layers[0][0].T
    for i, (w, b) in enumerate(layers[:-1]):
        state[f"mlp_extractor.policy_net.{2 * i}.weight"], state[f"mlp_extractor.policy_net.{2 * i}.bias"] = w.T, b
        state[f"mlp_extractor.value_net.{2 * i}.weight"], state[f"mlp_extractor.value_net.{2 * i}.bias"] = w.T, b
    state["action_net.weight"], state["action_net.bias"] = layers[-1][0].T, layers[-1][1]
    state["value_net.weight"], state["value_net.bias"] = np.zeros((1, layers[-1][0].shape[0])), np.zeros(1)
    n = n_obs or layers[0][0].shape[0]
    kwargs = {} if activation == "Tanh" else {"activation_fn": f"<class 'torch.nn.modules.activation.{activation}'>"}
    data = {"policy_class": {":type:": "<class 'abc.ABCMeta'>", "__module__": "stable_baselines3.common.policies"},
            "policy_kwargs": kwargs,
            "observation_space": {":type:": "<class 'gymnasium.spaces.box.Box'>", "dtype": "float32", "_shape": [n],
                                  "low_repr": "-inf", "high_repr": "inf"},
            "action_space": {":type:": "<class 'gymnasium.spaces.box.Box'>", "dtype": "float32", "_shape": [4],
                             "low_repr": "-1.0", "high_repr": "1.0"}}
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("data", json.dumps(data))
        z.writestr("policy.pth", _torch_state_dict_zip(state))
        z.writestr("_stable_baselines3_version", "2.9.2")
    return path


def test_sb3_ppo_zip_imports_without_torch(fx, tmp_path):
    model = sb3_zip(tmp_path / "ppo.zip", fx.layers)
    rep = import_model(model, template(tmp_path), tmp_path / "b")
    assert rep["format"] == "sb3" and rep["stable_baselines3"] == "2.9.2" and rep["model_clip"] in ([-1.0, 1.0], (-1.0, 1.0))
    b = load_bundle(tmp_path / "b")
    assert b.contract == fx.contract
    x = np.random.default_rng(3).normal(size=(100, fx.contract["observation"]["size"]))
    np.testing.assert_array_equal(b.act(x), fx.act(x))
    assert "torch" not in sys.modules


# --- RLtools checkpoints (HDF5): learning-to-fly's MLPs import; RAPTOR's foundation policy is recurrent --------------
def rltools_h5(path: Path, layers, activation="TANH") -> Path:
    """An RLtools actor checkpoint as foundation_policy reads them: actor (mlp) with input/hidden/output dense layers,
    weights [out, in], biases [1, out]."""
    import h5py

    with h5py.File(path, "w") as f:
        a = f.create_group("actor")
        a.attrs["type"], a.attrs["num_layers"] = "mlp", len(layers)
        names = ["input_layer", *[f"hidden_layer_{i}" for i in range(len(layers) - 2)], "output_layer"]
        for i, (name, (w, b)) in enumerate(zip(names, layers)):
            g = a.create_group(name)
            g.attrs["type"] = "dense"
            g.attrs["activation_function"] = activation if i < len(layers) - 1 else "IDENTITY"
            g.create_group("weights").create_dataset("parameters", data=np.asarray(w, np.float32).T)
            g.create_group("biases").create_dataset("parameters", data=np.asarray(b, np.float32)[None])
    return path


def test_rltools_mlp_checkpoint_imports(fx, tmp_path):
    rep = import_model(rltools_h5(tmp_path / "actor.h5", fx.layers), template(tmp_path), tmp_path / "b")
    assert rep["format"] == "rltools"
    b = load_bundle(tmp_path / "b")
    x = np.random.default_rng(4).normal(size=(100, fx.contract["observation"]["size"]))
    np.testing.assert_array_equal(b.act(x), fx.act(x))
    with pytest.raises(ImportRefused, match="FAST_TANH is RLtools' rational approximation"):
        import_model(rltools_h5(tmp_path / "fast.h5", fx.layers, "FAST_TANH"), template(tmp_path), tmp_path / "b2")


def test_raptor_foundation_policy_is_refused_for_its_gru():
    """RAPTOR (pip foundation-policy): Dense(22 -> 16, ReLU) -> GRU(16) -> Dense(16 -> 4). Its GRU keeps a hidden
    state across control periods; a bundle, its C export, the runtime and the shield's model are memoryless MLPs."""
    fp = pytest.importorskip("foundation_policy")  # the [test] extra installs it: CI's skip audit fails on this skip
    from train_fast.importer import read_model

    ckpt = Path(fp.__file__).parent / "blob" / "checkpoint.h5"
    with pytest.raises(ImportRefused, match=r"checkpoint.h5: actor/layers/1 \(gru, 16 units\): a recurrent layer"):
        read_model(ckpt)


# --- refusals: one line naming file, node or field, and value; exit 2; nothing written ----------------------------
def _sub(old, new, count=1):
    return lambda text: text.replace(old, new, count)


REFUSALS = [
    # (id, model kind, contract edit, expected text)
    ("sigmoid", "sigmoid", None, "node '/Sigmoid_0' (op Sigmoid)"),
    ("output_tanh", "out_tanh", None, "after the last linear layer"),
    ("mixed_activations", "mixed", None, "hidden activations ['Relu', 'Tanh']"),
    ("narrow_clip", "narrow_clip", None, "narrower than contract.toml's action range [-1, 1]"),
    ("branch", "branch", None, "branches and skips"),
    ("sac", "sac", None, "off-policy actor (SAC / TD3 / DDPG"),
    ("sb3_activation", "sb3_elu", None, "activation_fn = ELU"),
    ("input_size", "onnx", lambda t: t.split('\n[[observation]]\nname = "previous_actions"')[0] + "\n[action]\n"
     + t.split("\n[action]\n")[1], "m.onnx: input has 37 elements (first layer [37, 32]), but contract.toml declares 18 "
     "(position_error[3], rotation_matrix[9], velocity_error[3], angular_velocity[3])"),
    ("missing_field", "onnx", lambda t: t.replace(t[t.index('\n[[observation]]\nname = "rotation_matrix"'):
                                                   t.index('\n[[observation]]\nname = "velocity_error"')], ""),
     "observation: no field 'rotation_matrix' (9 x 1, body-to-world, row-major)"),
    ("unit", "onnx", _sub('unit = "rad/s"', 'unit = "deg/s"'), "observation[3].unit: 'deg/s', but edgectl's hover task builds angular_velocity with unit 'rad/s'"),
    ("rate", "onnx", _sub("rate_hz = 100", "rate_hz = 500"), "rate_hz: 500, but platform 'crazyflie_2_1' runs hover policies at 100 Hz"),
    ("unknown_field", "onnx", _sub('name = "velocity_error"', 'name = "velocity"'), "observation[2].name: 'velocity' is not a field"),
    ("mapping", "onnx", _sub('mapping = "thrust_curve"', 'mapping = "rpm"'), "action.mapping: 'rpm'"),
    ("toml", "onnx", _sub("rate_hz = 100", "rate_hz = = 100"), "contract.toml: not valid TOML"),
    ("unknown_key", "onnx", _sub("rate_hz = 100", "rate = 100"), "contract.toml: rate: unknown key (did you mean rate_hz?)"),
    ("history", "onnx", _sub("size = 16", "size = 6"), "observation[4].size: 6; previous_actions holds the last actions"),
    ("model_size", "small", None, "small.onnx: input has 30 elements"),
    ("scale_zero", "onnx", _sub("scale = 0.15", "scale = [0.15, 0.0, 0.15]"), "observation[0].scale[1]: expected a nonzero number"),
]


def _model(kind: str, fx, tmp_path: Path) -> Path:
    L = fx.layers
    if kind == "onnx":
        return gemm_onnx(tmp_path / "m.onnx", L)
    if kind == "sigmoid":
        return gemm_onnx(tmp_path / "m.onnx", L, acts=["Sigmoid", "Sigmoid"])
    if kind == "out_tanh":
        return gemm_onnx(tmp_path / "m.onnx", L, out_act="Tanh")
    if kind == "mixed":
        return gemm_onnx(tmp_path / "m.onnx", L, acts=["Tanh", "Relu"])
    if kind == "narrow_clip":
        return gemm_onnx(tmp_path / "m.onnx", L, clip=(-0.5, 0.5))
    if kind == "branch":
        return gemm_onnx(tmp_path / "m.onnx", L, extra_nodes=[lambda x: helper.make_node("Add", [x, "z0"], ["skip"], name="/skip")])
    if kind == "sac":
        return sb3_zip(tmp_path / "sac.zip", L, off_policy=True)
    if kind == "sb3_elu":
        return sb3_zip(tmp_path / "elu.zip", L, activation="ELU")
    if kind == "small":
        return gemm_onnx(tmp_path / "small.onnx", [(L[0][0][:30], L[0][1]), *L[1:]])
    raise AssertionError(kind)


@pytest.mark.parametrize("case", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_name_what_cannot_be_imported(case, fx, tmp_path):
    _, kind, edit, expected = case
    model, contract = _model(kind, fx, tmp_path), template(tmp_path, edit)
    with pytest.raises(ImportRefused) as e:
        import_model(model, contract, tmp_path / "b")
    assert expected in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("case", [REFUSALS[0], REFUSALS[8]], ids=["node", "field"])
def test_cli_refusal_is_one_line_exit_2_nothing_written(case, fx, tmp_path):
    _, kind, edit, expected = case
    model, contract = _model(kind, fx, tmp_path), template(tmp_path, edit)
    r = runner.invoke(cli.app, ["import", str(model), "--contract", str(contract), "--out", str(tmp_path / "b")])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], r.output
    assert not (tmp_path / "b").exists()


def test_cli_template_and_import(fx, tmp_path):
    r = runner.invoke(cli.app, ["import", "--template", "hover"])
    assert r.exit_code == 0 and r.output == contract_template("hover")
    (tmp_path / "c.toml").write_text(r.output)
    model = gemm_onnx(tmp_path / "m.onnx", fx.layers)
    r = runner.invoke(cli.app, ["import", str(model), "--contract", str(tmp_path / "c.toml"), "--out", str(tmp_path / "b"), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output.strip().splitlines()[-1])
    assert rep["bundle"] == str(tmp_path / "b") and rep["layers"] == [[37, 32], [32, 32], [32, 4]]
    r = runner.invoke(cli.app, ["import", str(model), "--contract", str(tmp_path / "c.toml"), "--out", str(tmp_path / "b")])
    assert r.exit_code == 2 and "already exists" in r.output

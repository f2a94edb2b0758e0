"""The bundle's actor as ONNX, the hub format every other runtime (onnxruntime, TensorRT) starts from.

Graph: observation [batch, obs] raw -> Sub(offset) -> Div(scale) -> (MatMul, Add, Tanh)* -> MatMul, Add
-> Clip(low, high) -> action [batch, act]. Normalization and clipping are inside, so the model's input
is exactly what the contract describes and no runtime can forget either. Input and output names,
sizes and the contract itself (as JSON metadata) come from the bundle.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import ExportError, TargetUnavailable

OPSET = 17  # onnxruntime >= 1.12 and TensorRT >= 8.5 both run it
INPUT, OUTPUT = "observation", "action"


def _onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise TargetUnavailable('ONNX export needs the onnx package: pip install "edgectl[export]"') from None
    return onnx, helper, numpy_helper


def build_model(bundle):
    onnx, helper, numpy_helper = _onnx()
    c = bundle.contract
    n_obs, n_act = c["observation"]["size"], c["action"]["size"]
    act = bundle.manifest["policy"]["activation"]
    op = {"tanh": "Tanh", "relu": "Relu"}.get(act)
    if op is None:
        raise ExportError(f"{bundle.path}/bundle.json: policy.activation: ONNX export supports tanh and relu, got {act!r}")
    norm = c["observation"]["normalization"]
    inits = [numpy_helper.from_array(np.asarray(norm["offset"], np.float32), "obs_offset"),
             numpy_helper.from_array(np.asarray(norm["scale"], np.float32), "obs_scale"),
             numpy_helper.from_array(np.asarray(c["action"]["low"], np.float32), "action_low"),
             numpy_helper.from_array(np.asarray(c["action"]["high"], np.float32), "action_high")]
    nodes = [helper.make_node("Sub", [INPUT, "obs_offset"], ["centered"]),
             helper.make_node("Div", ["centered", "obs_scale"], ["h0"])]
    x = "h0"
    for i, (w, b) in enumerate(bundle.layers):
        inits += [numpy_helper.from_array(np.asarray(w, np.float32), f"layer{i}.weight"),
                  numpy_helper.from_array(np.asarray(b, np.float32), f"layer{i}.bias")]
        nodes += [helper.make_node("MatMul", [x, f"layer{i}.weight"], [f"z{i}_mm"]),
                  helper.make_node("Add", [f"z{i}_mm", f"layer{i}.bias"], [f"z{i}"])]
        x = f"z{i}"
        if i < len(bundle.layers) - 1:
            nodes.append(helper.make_node(op, [x], [f"h{i + 1}"]))
            x = f"h{i + 1}"
    nodes.append(helper.make_node("Clip", [x, "action_low", "action_high"], [OUTPUT]))
    graph = helper.make_graph(
        nodes, f"edgectl_{bundle.task_name}_policy",
        [helper.make_tensor_value_info(INPUT, onnx.TensorProto.FLOAT, ["batch", n_obs])],
        [helper.make_tensor_value_info(OUTPUT, onnx.TensorProto.FLOAT, ["batch", n_act])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgectl")
    model.ir_version = 8  # what onnxruntime >= 1.14 reads; newer onnx packages default higher
    fields = ", ".join(f"{f['name']}[{f['size']}] {f['unit']} ({f['frame']})" for f in c["observation"]["fields"])
    model.doc_string = (f"Raw observation in contract order: {fields}. Action: {', '.join(c['action']['names'])} "
                        f"in [{c['action']['low']:g}, {c['action']['high']:g}], {c['action']['mapping']['kind']}.")
    helper.set_model_props(model, {"edgectl.contract": json.dumps(c, sort_keys=True),
                                   "edgectl.platform": bundle.platform_name, "edgectl.task": bundle.task_name,
                                   "edgectl.weights_sha256": bundle.manifest["weights"]["sha256"]})
    onnx.checker.check_model(model, full_check=True)
    return model


def write_onnx(bundle, path: Path) -> Path:
    onnx, _, _ = _onnx()
    path = Path(path)
    onnx.save(build_model(bundle), str(path))
    return path


def run_onnx(path: Path, obs: np.ndarray) -> np.ndarray:
    """Actions from onnxruntime's CPU provider, for parity checks."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise TargetUnavailable('checking the ONNX model needs onnxruntime: pip install "edgectl[export]"') from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run([OUTPUT], {INPUT: np.ascontiguousarray(obs, np.float32)})[0]

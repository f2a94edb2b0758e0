"""TFLite export of a bundle's MLP, written directly as a flatbuffer: no TensorFlow needed.

The model takes the RAW observation (float32 [batch, obs_size], input "observation") and returns the
clipped action (float32 [batch, action_size], output "action"), like every other exported artifact:

    observation -> SUB offset -> DIV scale -> (FULLY_CONNECTED -> TANH|RELU)* -> FULLY_CONNECTED
                -> MAXIMUM low -> MINIMUM high -> action

The normalization is kept as separate SUB/DIV ops rather than folded into the first layer: that
keeps the weights bit-identical to the bundle's and the arithmetic the same as `Bundle.act`'s up to
float32 rounding (max abs error on 2,000 observations: 3.6e-7 on the hover bundle, 8e-7 / 2.2e-6 on
random tanh / relu nets; folding gave the same or slightly more). SUB/DIV are left out where offset
is all 0 / scale all 1. The batch dimension is dynamic (shape [1, n], shape_signature [-1, n]): batch 1 runs as
is, batch N after `Interpreter.resize_tensor_input(index, [N, n])` + `allocate_tensors()`.

The schema classes come from `ai_edge_litert.schema_py_generated` (shipped by the ai-edge-litert
wheel), the writer from `flatbuffers`; `verify_tflite` runs the file on ai_edge_litert's interpreter.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgectl.fsutil import atomic_write

from .errors import ExportError, TargetUnavailable

INPUT_NAME, OUTPUT_NAME = "observation", "action"
SIGNATURE_KEY = "serving_default"
_INSTALL_HINT = 'pip install "edgectl[export]" (or just: pip install ai-edge-litert)'
_BUFFER_ALIGN = 16  # TFLite (and XNNPACK) want constant data 16-byte aligned in the file


def _litert() -> tuple[Any, Any, Any]:
    """(schema module, flatbuffers module, Interpreter class) or TargetUnavailable naming the install."""
    try:
        import flatbuffers
        from ai_edge_litert import schema_py_generated as schema
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:
        raise TargetUnavailable(f"tflite: ai-edge-litert is not installed ({e}); {_INSTALL_HINT}") from None
    return schema, flatbuffers, Interpreter


def _mlp_parts(bundle) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray, np.ndarray, str, float, float]:
    contract, policy = bundle.contract, bundle.manifest["policy"]
    if policy.get("kind") != "mlp" or policy.get("output_activation") != "clip":
        raise ExportError(f"bundle.json: policy: tflite export supports kind 'mlp' with output_activation 'clip', "
                          f"got kind {policy.get('kind')!r}, output_activation {policy.get('output_activation')!r}")
    act = policy.get("activation")
    if act not in ("tanh", "relu"):
        raise ExportError(f"bundle.json: policy.activation: tflite export supports 'tanh' or 'relu', got {act!r}")
    norm = contract["observation"]["normalization"]
    offset = np.asarray(norm["offset"], dtype=np.float32)
    scale = np.asarray(norm["scale"], dtype=np.float32)
    a = contract["action"]
    return [(np.asarray(w, np.float32), np.asarray(b, np.float32)) for w, b in bundle.layers], offset, scale, act, \
        float(a["low"]), float(a["high"])


def tflite_bytes(bundle, *, fold_normalization: bool = False, description: str | None = None, clip: bool = True) -> bytes:
    """The .tflite flatbuffer for `bundle` (see the module docstring for the graph).

    clip=False leaves out the MAXIMUM/MINIMUM clip (the output is the last layer's): for a runtime that clips itself
    and registers no such op (PX4 mc_nn_control: export/px4.py).

    fold_normalization=True folds (x - offset) / scale into the first layer (W/scale, b - (offset/scale) @ W):
    two ops fewer, slightly larger error vs Bundle.act. Off by default.
    """
    schema, flatbuffers, _ = _litert()
    layers, offset, scale, activation, low, high = _mlp_parts(bundle)
    obs_size, act_size = layers[0][0].shape[0], layers[-1][0].shape[1]
    if fold_normalization:
        w0 = layers[0][0].astype(np.float64) / scale.astype(np.float64)[:, None]
        b0 = layers[0][1].astype(np.float64) - (offset.astype(np.float64) / scale.astype(np.float64)) @ layers[0][0].astype(np.float64)
        layers = [(w0.astype(np.float32), b0.astype(np.float32))] + layers[1:]

    buffers: list[Any] = [schema.BufferT()]  # buffer 0: the empty sentinel every non-constant tensor points at
    tensors: list[Any] = []
    op_codes: list[int] = []
    operators: list[Any] = []

    def const(name: str, arr: np.ndarray) -> int:
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        buf = schema.BufferT()
        buf.data = np.frombuffer(arr.tobytes(), dtype=np.uint8)
        buffers.append(buf)
        t = schema.TensorT()
        t.shape, t.type, t.buffer, t.name = list(arr.shape), schema.TensorType.FLOAT32, len(buffers) - 1, name
        tensors.append(t)
        return len(tensors) - 1

    def activation_tensor(name: str, width: int) -> int:
        t = schema.TensorT()
        t.shape, t.shapeSignature = [1, int(width)], [-1, int(width)]
        t.type, t.buffer, t.name = schema.TensorType.FLOAT32, 0, name
        tensors.append(t)
        return len(tensors) - 1

    def op(code: int, inputs: list[int], out_name: str, width: int, options_type: int = 0, options: Any = None,
           out: int | None = None) -> int:
        if code not in op_codes:
            op_codes.append(code)
        o = schema.OperatorT()
        o.opcodeIndex = op_codes.index(code)
        o.inputs = inputs
        o.outputs = [activation_tensor(out_name, width) if out is None else out]
        o.builtinOptionsType, o.builtinOptions = options_type, options
        operators.append(o)
        return o.outputs[0]

    B, BO = schema.BuiltinOperator, schema.BuiltinOptions
    x = activation_tensor(INPUT_NAME, obs_size)
    inp = x
    if not fold_normalization and np.any(offset != 0):
        x = op(B.SUB, [x, const("normalization/offset", offset)], "normalization/centered", obs_size,
               BO.SubOptions, schema.SubOptionsT())
    if not fold_normalization and np.any(scale != 1):
        x = op(B.DIV, [x, const("normalization/scale", scale)], "normalization/normalized", obs_size,
               BO.DivOptions, schema.DivOptionsT())
    act_code = B.TANH if activation == "tanh" else B.RELU
    for i, (w, b) in enumerate(layers):
        width = w.shape[1]
        fc = schema.FullyConnectedOptionsT()  # no fused activation: TANH/RELU are separate ops below
        x = op(B.FULLY_CONNECTED, [x, const(f"layer{i}/weight", w.T), const(f"layer{i}/bias", b)],
               f"layer{i}/linear", width, BO.FullyConnectedOptions, fc)
        if i < len(layers) - 1:
            x = op(act_code, [x], f"layer{i}/{activation}", width)
    if clip:
        x = op(B.MAXIMUM, [x, const("clip/low", np.full(act_size, low))], "clip/max_low", act_size,
               BO.MaximumMinimumOptions, schema.MaximumMinimumOptionsT())
        out = activation_tensor(OUTPUT_NAME, act_size)
        op(B.MINIMUM, [x, const("clip/high", np.full(act_size, high))], OUTPUT_NAME, act_size,
           BO.MaximumMinimumOptions, schema.MaximumMinimumOptionsT(), out=out)
    else:
        out = x
        tensors[out].name = OUTPUT_NAME

    subgraph = schema.SubGraphT()
    subgraph.tensors, subgraph.inputs, subgraph.outputs, subgraph.operators = tensors, [inp], [out], operators
    subgraph.name = "main"
    sig = schema.SignatureDefT()
    sig.signatureKey, sig.subgraphIndex = SIGNATURE_KEY, 0
    sig.inputs = [schema.TensorMapT()]
    sig.inputs[0].name, sig.inputs[0].tensorIndex = INPUT_NAME, inp
    sig.outputs = [schema.TensorMapT()]
    sig.outputs[0].name, sig.outputs[0].tensorIndex = OUTPUT_NAME, out

    codes = []
    for code in op_codes:
        c = schema.OperatorCodeT()
        c.builtinCode, c.deprecatedBuiltinCode, c.version = code, code, 1  # all codes used are < 127
        codes.append(c)
    model = schema.ModelT()
    model.version = 3  # the TFLite schema version
    model.operatorCodes, model.subgraphs, model.buffers, model.signatureDefs = codes, [subgraph], buffers, [sig]
    model.description = description or (f"edgectl policy: {bundle.platform_name}/{bundle.task_name}, "
                                        f"raw observation [batch, {obs_size}] -> clipped action [batch, {act_size}]")

    builder = flatbuffers.Builder(1024 + sum(w.nbytes + b.nbytes for w, b in layers))
    _align_buffers(schema, builder, buffers)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _align_buffers(schema, builder, buffers: list) -> None:
    """Make BufferT.Pack write each constant's bytes 16-byte aligned (the generated Pack aligns to 1)."""
    for buf in buffers:
        if buf.data is None:
            continue
        data = buf.data

        def pack(builder, _data=data, _schema=schema):
            builder.StartVector(1, len(_data), _BUFFER_ALIGN)
            builder.head = builder.head - len(_data)
            builder.Bytes[builder.head: builder.head + len(_data)] = _data.tobytes()
            vec = builder.EndVector()
            _schema.BufferStart(builder)
            _schema.BufferAddData(builder, vec)
            return _schema.BufferEnd(builder)

        buf.Pack = pack


def write_tflite(bundle, path: Path, *, fold_normalization: bool = False) -> None:
    """Write the bundle's policy as a .tflite to `path` (atomically: a failed write leaves nothing behind)."""
    data = tflite_bytes(bundle, fold_normalization=fold_normalization)
    path = atomic_write(path, data)


def verify_tflite(path: Path, obs: np.ndarray) -> np.ndarray:
    """Run the .tflite at `path` on ai_edge_litert's interpreter: (n,) -> (act,), (N, n) -> (N, act), float32."""
    _, _, Interpreter = _litert()
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: .tflite file not found")
    try:
        interp = Interpreter(model_path=str(path), num_threads=1)
    except (ValueError, RuntimeError) as e:
        raise ExportError(f"{path.name}: the TFLite interpreter refused the model: {e}") from None
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    size = int(inp["shape"][-1])
    x = np.asarray(obs, dtype=np.float32)
    if x.ndim not in (1, 2) or x.shape[-1] != size:
        raise ExportError(f"{path.name}: observation shape {list(x.shape)}, expected ({size},) or (N, {size})")
    single = x.ndim == 1
    x = np.ascontiguousarray(x.reshape(1, size) if single else x)
    if tuple(inp["shape"]) != x.shape:
        interp.resize_tensor_input(inp["index"], list(x.shape))
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    y = np.array(interp.get_tensor(out["index"]), dtype=np.float32)
    return y[0] if single else y

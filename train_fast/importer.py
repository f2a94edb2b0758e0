"""`edgectl import`: a policy trained elsewhere (an ONNX model, a stable-baselines3 zip's actor, or an RLtools
checkpoint such as learning-to-fly's) plus a contract
the user declares (TOML) becomes a policy bundle that evaluates, exports, shields and flies like a native one.

What can be imported is what a bundle can hold: a plain MLP (ONNX Gemm, or MatMul + Add; Tanh or Relu hidden
activations, one kind throughout; a linear output), whose input is the declared observation, normalized by the
declared offset and scale, and whose output is the declared action. Exact rewrites are folded into the bundle:
a leading elementwise Sub/Add/Div/Mul by constants (the model normalizing its own input) into the contract's
normalization; a trailing Clip no narrower than the declared action range; fields declared in another order
than edgectl's (rows of the first layer), actions in another order or range (columns and scale of the last
layer); two linear layers without an activation between them (multiplied). Anything else is refused with one
line naming the file, the node or field, and the value.

The declared contract must describe what edgectl's simulator and runtime build for the task (field names, sizes,
units, frames; the platform's policy rate and action mapping): the fields decide the task's variant (how many
previous actions, whether the position-error integral is observed, ...), and the bundle's contract is the task's
own, with the declared normalization. `contract_template(task)` writes a TOML to start from.

Reading a stable-baselines3 zip needs neither stable-baselines3 nor PyTorch: policy.pth is PyTorch's zip
format, whose pickle is read by a restricted unpickler that builds numpy arrays (only the state dict's classes
are allowed; anything else is refused). PPO / A2C actors (mlp_extractor.policy_net + action_net) can be
imported; SAC / TD3 / DDPG actors squash their output with tanh, which a bundle's clip cannot express.

RLtools checkpoints (HDF5, an "actor" group of dense / mlp / sequential layers) are read with h5py. RAPTOR's
foundation policy (pip foundation-policy) is one, and cannot be imported: Dense(22 -> 16, ReLU) -> GRU(16) ->
Dense(16 -> 4); its GRU carries a hidden state from one control period to the next, and a bundle, its C export,
the runtime and the shield's model are memoryless MLPs.
"""
from __future__ import annotations

import base64
import dataclasses
import difflib
import hashlib
import io
import json
import math
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgectl.tasks import tasks as registered_tasks

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: its backport, as edgectl.platforms reads platform files
    import tomli as tomllib

TASKS = tuple(t.name for t in registered_tasks())  # the task registry (edgectl/tasks.py)
ACTIVATIONS = {"Tanh": "tanh", "Relu": "relu"}
CONTRACT_FILE = "import_contract.toml"  # the declared contract, kept in the bundle (hashed like every file)


class ImportRefused(ValueError):
    """One line: what cannot be imported, naming the file, the node or field and the value."""


def _short(v: Any, limit: int = 80) -> str:
    r = repr(v)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the model: an MLP read out of ONNX or a stable-baselines3 zip -------------------------------------------
@dataclass
class Model:
    """An MLP as the model computes it, in the model's own input/output order and units."""
    file: str
    format: str  # "onnx" | "sb3" | "rltools"
    sha256: str
    layers: list  # [(W [in, out], b [out]) float64]
    activation: str  # tanh | relu (hidden layers)
    in_offset: np.ndarray | None = None  # the model's own input transform: z = (y - in_offset) / in_scale
    in_scale: np.ndarray | None = None
    clip: tuple[float, float] | None = None  # the model's own output clip (ONNX Clip, SB3 action_space bounds)
    input_size: int | None = None  # from the model's declared input / output shapes (None: not static)
    output_size: int | None = None
    details: dict = field(default_factory=dict)

    def forward(self, y: np.ndarray) -> np.ndarray:
        """The model's output for model inputs y (N, in), in float64: for the parity check."""
        z = np.asarray(y, np.float64)
        if self.in_offset is not None:
            z = (z - self.in_offset) / self.in_scale
        act = np.tanh if self.activation == "tanh" else (lambda x: np.maximum(x, 0.0))
        for w, b in self.layers[:-1]:
            z = act(z @ w + b)
        z = z @ self.layers[-1][0] + self.layers[-1][1]
        return np.clip(z, *self.clip) if self.clip is not None else z


def _finish_layers(fname: str, raw: list[dict]) -> tuple[list, str]:
    """raw: [{"w", "b", "act": op or None, "node"}] -> (layers, activation); folds linear-linear pairs."""
    if not raw:
        raise ImportRefused(f"{fname}: no linear layer (Gemm or MatMul) between the input and the output")
    layers = [dict(r) for r in raw]
    i = 0
    while i < len(layers) - 1:  # two linear layers in a row are one: x W1 W2 + (b1 W2 + b2)
        if layers[i]["act"] is None:
            nxt = layers.pop(i + 1)
            layers[i] = {"w": layers[i]["w"] @ nxt["w"], "b": layers[i]["b"] @ nxt["w"] + nxt["b"], "act": nxt["act"],
                         "node": nxt["node"]}
        else:
            i += 1
    last = layers[-1]
    if last["act"] is not None:
        raise ImportRefused(f"{fname}: node {last['act_node']!r} ({last['act']}) after the last linear layer: a bundle's "
                            f"output is linear, then clipped to the action range; a squashing output cannot be expressed")
    acts = {la["act"] for la in layers[:-1]}
    if len(acts) > 1:
        raise ImportRefused(f"{fname}: hidden activations {sorted(acts)}: a bundle uses one activation for every hidden layer")
    act = ACTIVATIONS[acts.pop()] if acts else "tanh"
    return [(la["w"], la["b"]) for la in layers], act


def read_onnx(path: Path) -> Model:
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise ImportRefused(f'{path.name}: reading ONNX needs the onnx package: pip install "edgectl[export]"') from None
    data = path.read_bytes()
    fname = path.name
    try:
        m = onnx.load_model_from_string(data)
    except Exception as e:  # noqa: BLE001 - protobuf raises its own DecodeError
        raise ImportRefused(f"{fname}: not an ONNX model ({type(e).__name__}: {str(e)[:120]})") from None
    g = m.graph
    consts = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in g.initializer}
    for node in g.node:
        if node.op_type == "Constant":
            a = next((a for a in node.attribute if a.name in ("value", "value_float", "value_floats")), None)
            if a is None:
                raise ImportRefused(f"{fname}: node {node.name or node.output[0]!r} (Constant): only tensor or float constants")
            val = (numpy_helper.to_array(a.t) if a.name == "value" else
                   np.asarray(a.f if a.name == "value_float" else list(a.floats)))
            consts[node.output[0]] = np.asarray(val, np.float64)
    inputs = [i for i in g.input if i.name not in consts]
    if len(inputs) != 1 or len(g.output) != 1:
        raise ImportRefused(f"{fname}: the graph has {len(inputs)} input(s) {[i.name for i in inputs]} and {len(g.output)} "
                            f"output(s) {[o.name for o in g.output]}; a bundle policy maps one observation vector to one action vector")

    def last_dim(vi) -> int | None:
        dims = vi.type.tensor_type.shape.dim
        if not dims or not dims[-1].HasField("dim_value"):
            return None
        return int(dims[-1].dim_value)

    def const(node, name: str, what: str) -> np.ndarray:
        if name not in consts:
            raise ImportRefused(f"{fname}: node {node.name or node.output[0]!r} ({node.op_type}): {what} {name!r} is computed, "
                                "not a constant: not a plain MLP")
        return consts[name]

    cur = inputs[0].name
    raw: list[dict] = []
    in_a, in_b = None, None  # input transform z = (y - in_a) / in_b, before the first layer
    clip = None
    for node in g.node:
        op, label = node.op_type, node.name or node.output[0]
        if op == "Constant":
            continue
        data_in = [i for i in node.input if i and i not in consts]
        if data_in != [cur]:
            raise ImportRefused(f"{fname}: node {label!r} ({op}) reads {data_in}, not just the previous result {cur!r}: "
                                "branches and skips are not a plain MLP")
        if clip is not None and op not in ("Identity",):
            raise ImportRefused(f"{fname}: node {label!r} ({op}) after the output Clip: a clip inside the network cannot be expressed")
        if op in ("Identity", "Dropout") or (op == "Flatten" and not raw):
            pass
        elif op in ("Sub", "Add", "Mul", "Div") and not raw:
            c = const(node, next(i for i in node.input if i != cur), "operand")
            if op in ("Sub", "Div") and node.input[0] != cur:
                raise ImportRefused(f"{fname}: node {label!r} ({op}): constant {op.lower()} observation is not a normalization")
            c = np.broadcast_to(c, c.shape[-1:] if c.ndim else ()).astype(np.float64)
            a0 = np.zeros(()) if in_a is None else in_a
            b0 = np.ones(()) if in_b is None else in_b
            if op == "Sub":
                in_a, in_b = a0 + c * b0, b0
            elif op == "Add":
                in_a, in_b = a0 - c * b0, b0
            elif op == "Div":
                in_a, in_b = a0, b0 * c
            else:
                in_a, in_b = a0, b0 / c
        elif op == "MatMul":
            if node.input[0] != cur:
                raise ImportRefused(f"{fname}: node {label!r} (MatMul): weight @ observation order; expected observation @ weight")
            w = const(node, node.input[1], "weight")
            if w.ndim != 2:
                raise ImportRefused(f"{fname}: node {label!r} (MatMul): weight of shape {list(w.shape)}, expected 2-D")
            raw.append({"w": w, "b": np.zeros(w.shape[1]), "act": None, "node": label})
        elif op == "Add" and raw and raw[-1]["act"] is None:
            b = const(node, next(i for i in node.input if i != cur), "bias")
            n = raw[-1]["w"].shape[1]
            if b.size not in (1, n) or (b.ndim > 1 and b.shape[:-1] != (1,) * (b.ndim - 1)):
                raise ImportRefused(f"{fname}: node {label!r} (Add): bias of shape {list(b.shape)}, expected [{n}]")
            raw[-1]["b"] = raw[-1]["b"] + np.broadcast_to(b.reshape(-1), (n,))
        elif op == "Gemm":
            at = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if at.get("transA", 0):
                raise ImportRefused(f"{fname}: node {label!r} (Gemm): transA=1 (the observation transposed) is not an MLP layer")
            w = const(node, node.input[1], "weight")
            w = w.T if at.get("transB", 0) else w
            w = float(at.get("alpha", 1.0)) * w
            b = np.zeros(w.shape[1])
            if len(node.input) > 2 and node.input[2]:
                c = const(node, node.input[2], "bias").reshape(-1)
                if c.size not in (1, w.shape[1]):
                    raise ImportRefused(f"{fname}: node {label!r} (Gemm): bias of {c.size} values, expected {w.shape[1]}")
                b = float(at.get("beta", 1.0)) * np.broadcast_to(c, (w.shape[1],))
            raw.append({"w": w, "b": b, "act": None, "node": label})
        elif op in ACTIVATIONS:
            if not raw:
                raise ImportRefused(f"{fname}: node {label!r} ({op}) before the first linear layer: not an MLP")
            if raw[-1]["act"] is not None:
                raise ImportRefused(f"{fname}: node {label!r} ({op}) right after {raw[-1]['act']}: two activations in a row")
            raw[-1]["act"], raw[-1]["act_node"] = op, label
        elif op == "Clip" and raw:
            at = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            lo = float(const(node, node.input[1], "min")) if len(node.input) > 1 and node.input[1] else float(at.get("min", -np.inf))
            hi = float(const(node, node.input[2], "max")) if len(node.input) > 2 and node.input[2] else float(at.get("max", np.inf))
            clip = (lo, hi)
        else:
            where = "before the first linear layer" if not raw else "in the network"
            raise ImportRefused(f"{fname}: node {label!r} (op {op}) {where}: not expressible as a bundle layer (a bundle holds "
                                "a plain MLP: Gemm or MatMul+Add, Tanh or Relu, optional input normalization and output Clip)")
        cur = node.output[0]
    if cur != g.output[0].name:
        raise ImportRefused(f"{fname}: the output {g.output[0].name!r} is not the end of the node chain ({cur!r})")
    layers, act = _finish_layers(fname, raw)
    n_in = layers[0][0].shape[0]
    if in_a is not None:
        in_a = np.broadcast_to(in_a, (n_in,)).copy()
        in_b = np.broadcast_to(in_b, (n_in,)).copy()
        if np.any(in_b == 0) or not np.all(np.isfinite(in_b)):
            raise ImportRefused(f"{fname}: the model's input normalization divides by {in_b.tolist()}: zero or non-finite")
    return Model(file=fname, format="onnx", sha256=_sha(data), layers=layers, activation=act, in_offset=in_a, in_scale=in_b,
                 clip=clip, input_size=last_dim(inputs[0]), output_size=last_dim(g.output[0]),
                 details={"opset": [int(o.version) for o in m.opset_import if o.domain in ("", "ai.onnx")][:1],
                          "producer": f"{m.producer_name} {m.producer_version}".strip()})


# --- stable-baselines3 zips, without torch -------------------------------------------------------------------
_STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
                   "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
                   "ByteStorage": np.uint8, "BoolStorage": np.bool_}


def _rebuild_tensor(storage, offset, size, stride, *_):
    arr = storage
    item = arr.itemsize
    if not size:
        return np.array(arr[offset], copy=True)
    return np.lib.stride_tricks.as_strided(arr[offset:], shape=tuple(size), strides=tuple(s * item for s in stride)).copy()


def _rebuild_parameter(data, *_):
    return data


class _Ref:
    """A class named in a pickle that is not loaded: its module and name only."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __repr__(self):
        return f"{self.module}.{self.name}"

    def __call__(self, *a, **k):  # an instance of a referenced class: keep the reference
        return self


class _StateDictUnpickler(pickle.Unpickler):
    """PyTorch's state-dict pickle, with numpy arrays for tensors; refuses every other class."""

    def __init__(self, f, read_record, fname: str):
        super().__init__(f)
        self.read_record, self.fname = read_record, fname

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            import collections
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        raise ImportRefused(f"{self.fname}: policy.pth holds a {module}.{name}; only a PyTorch state dict of tensors is read")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise ImportRefused(f"{self.fname}: policy.pth: unknown persistent id {_short(pid)}")
        _, dtype, key, _location, _numel = pid[:5]
        if not isinstance(dtype, type):
            raise ImportRefused(f"{self.fname}: policy.pth: storage of type {dtype!r} (only float, int and bool tensors)")
        return np.frombuffer(self.read_record(str(key)), dtype=dtype)


class _PlainUnpickler(pickle.Unpickler):
    """For SB3's serialized policy_kwargs: plain values, classes as _Ref (nothing is imported or called)."""

    def find_class(self, module, name):
        if (module, name) in (("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"), ("builtins", "set")):
            return getattr(__import__("builtins"), name)
        return _Ref(module, name)


def _read_state_dict(fname: str, pth: bytes) -> dict[str, np.ndarray]:
    try:
        z = zipfile.ZipFile(io.BytesIO(pth))
    except zipfile.BadZipFile:
        raise ImportRefused(f"{fname}: policy.pth is not PyTorch's zip format (saved by PyTorch < 1.6?); re-save it with "
                            "a newer PyTorch") from None
    pkl = [n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pkl) != 1:
        raise ImportRefused(f"{fname}: policy.pth has no single data.pkl ({z.namelist()[:5]})")
    prefix = pkl[0][: -len("data.pkl")]
    big = prefix + "byteorder" in z.namelist() and z.read(prefix + "byteorder").strip() == b"big"

    def read_record(key: str) -> bytes:
        try:
            return z.read(f"{prefix}data/{key}")
        except KeyError:
            raise ImportRefused(f"{fname}: policy.pth lacks the tensor record data/{key}") from None

    try:
        sd = _StateDictUnpickler(io.BytesIO(z.read(pkl[0])), read_record, fname).load()
    except ImportRefused:
        raise
    except Exception as e:  # noqa: BLE001 - a corrupt pickle can raise anything
        raise ImportRefused(f"{fname}: policy.pth: unreadable state dict ({type(e).__name__}: {e})") from None
    if not isinstance(sd, dict):
        raise ImportRefused(f"{fname}: policy.pth holds a {type(sd).__name__}, expected a state dict")
    out = {}
    for k, v in sd.items():
        if isinstance(v, np.ndarray):
            out[str(k)] = v.byteswap() if big else v
    return out


def _space_shape(d: dict) -> list | None:
    s = d.get("_shape", d.get("shape"))
    if isinstance(s, str):
        s = [int(x) for x in re.findall(r"\d+", s)]
    return list(s) if isinstance(s, (list, tuple)) else None


def _space_bounds(d: dict, key: str, n: int) -> np.ndarray | None:
    s = d.get(f"{key}_repr", d.get(key))
    if not isinstance(s, str):
        return None
    vals = [float(x) for x in re.findall(r"[-+]?(?:\d+\.?\d*(?:e[-+]?\d+)?|inf)", s)]
    if len(vals) == 1:
        vals = vals * n
    return np.asarray(vals, np.float64) if len(vals) == n else None


def read_sb3(path: Path) -> Model:
    fname = path.name
    data = path.read_bytes()
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
        names = z.namelist()
    except zipfile.BadZipFile:
        raise ImportRefused(f"{fname}: not a zip file (a stable-baselines3 model is a .zip; ONNX models end in .onnx)") from None
    if "policy.pth" not in names or "data" not in names:
        raise ImportRefused(f"{fname}: no policy.pth and data inside: not a stable-baselines3 model zip (has {names[:6]})")
    try:
        meta = json.loads(z.read("data"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ImportRefused(f"{fname}: data: not JSON ({e})") from None
    module = str(meta.get("policy_class", {}).get("__module__", "")) if isinstance(meta.get("policy_class"), dict) else ""
    off_policy = any(f".{a}." in module + "." for a in ("sac", "td3", "ddpg", "tqc", "crossq"))
    if off_policy or "dqn" in module:
        keys = ["actor." if off_policy else "q_net"]
    else:
        sd = _read_state_dict(fname, z.read("policy.pth"))
        keys = sorted(sd)
    if any(k.startswith("actor.") for k in keys):
        raise ImportRefused(f"{fname}: an off-policy actor (SAC / TD3 / DDPG: actor.*): its output is squashed by tanh, "
                            "which a bundle (linear output, clipped) cannot express; import a PPO or A2C policy")
    if any(k.startswith("q_net") for k in keys):
        raise ImportRefused(f"{fname}: a DQN (q_net.*): discrete actions; a bundle's action is continuous")
    if "action_net.weight" not in sd:
        raise ImportRefused(f"{fname}: policy.pth has no action_net.weight: not an ActorCriticPolicy (keys: {keys[:6]})")
    extractor = [k for k in keys if re.match(r"(pi_)?features_extractor\.", k)]
    if extractor:
        raise ImportRefused(f"{fname}: a features extractor with weights ({extractor[0]}): only MlpPolicy (flattened "
                            "observation into an MLP) can be imported")
    if meta.get("action_space", {}).get(":type:", "").find("Box") < 0:
        raise ImportRefused(f"{fname}: action_space {meta.get('action_space', {}).get(':type:')!r}: a bundle's action is a Box")
    layers = []
    for part in ("shared_net", "policy_net"):
        idx = sorted({int(m.group(1)) for k in keys if (m := re.match(rf"mlp_extractor\.{part}\.(\d+)\.weight$", k))})
        for i in idx:
            w, b = sd[f"mlp_extractor.{part}.{i}.weight"], sd[f"mlp_extractor.{part}.{i}.bias"]
            layers.append({"w": w.astype(np.float64).T, "b": b.astype(np.float64), "act": "?",
                           "node": f"mlp_extractor.{part}.{i}", "act_node": f"activation_fn after mlp_extractor.{part}.{i}"})
    layers.append({"w": sd["action_net.weight"].astype(np.float64).T, "b": sd["action_net.bias"].astype(np.float64),
                   "act": None, "node": "action_net"})
    kwargs = meta.get("policy_kwargs", {}) if isinstance(meta.get("policy_kwargs"), dict) else {}
    act_fn = str(kwargs.get("activation_fn", ""))
    if ":serialized:" in kwargs:
        try:
            decoded = _PlainUnpickler(io.BytesIO(base64.b64decode(kwargs[":serialized:"]))).load()
            if isinstance(decoded, dict):
                act_fn = repr(decoded["activation_fn"]) if "activation_fn" in decoded else act_fn
                if decoded.get("squash_output"):
                    raise ImportRefused(f"{fname}: policy_kwargs.squash_output = True: a tanh-squashed output cannot be expressed")
        except ImportRefused:
            raise
        except Exception:  # noqa: BLE001 - an unreadable pickle: fall back on the JSON's readable copy
            pass
    if str(kwargs.get("squash_output", "False")) == "True":
        raise ImportRefused(f"{fname}: policy_kwargs.squash_output = True: a tanh-squashed output cannot be expressed")
    name = act_fn.rstrip("'>").rsplit(".", 1)[-1] if act_fn else "Tanh"  # ActorCriticPolicy's default: nn.Tanh
    op = {"Tanh": "Tanh", "ReLU": "Relu"}.get(name)
    if op is None:
        raise ImportRefused(f"{fname}: policy_kwargs.activation_fn = {name}: a bundle's hidden activation is tanh or relu")
    for la in layers[:-1]:
        la["act"] = op
    layers, act = _finish_layers(fname, layers)
    obs, acts = meta.get("observation_space", {}), meta.get("action_space", {})
    if "Box" not in str(obs.get(":type:", "")):
        raise ImportRefused(f"{fname}: observation_space {obs.get(':type:')!r}: only a flat Box observation can be imported")
    oshape, ashape = _space_shape(obs), _space_shape(acts)
    n_act = layers[-1][0].shape[1]
    lo, hi = _space_bounds(acts, "low", n_act), _space_bounds(acts, "high", n_act)
    clip = None
    if lo is not None and hi is not None:
        if not (np.all(lo == lo[0]) and np.all(hi == hi[0])):
            raise ImportRefused(f"{fname}: action_space bounds differ per action (low {lo.tolist()}, high {hi.tolist()}): "
                                "a contract has one action range")
        clip = (float(lo[0]), float(hi[0]))  # SB3's predict() clips to the action space
    version = z.read("_stable_baselines3_version").decode(errors="replace").strip() if "_stable_baselines3_version" in names else "?"
    return Model(file=fname, format="sb3", sha256=_sha(data), layers=layers, activation=act, clip=clip,
                 input_size=(oshape[0] if oshape and len(oshape) == 1 else (-1 if oshape else None)),
                 output_size=(ashape[0] if ashape and len(ashape) == 1 else None),
                 details={"stable_baselines3": version, "observation_shape": oshape, "action_shape": ashape})


# --- RLtools checkpoints (learning-to-fly, RAPTOR's foundation-policy): HDF5 with an "actor" group ----------------
_RLTOOLS_ACTS = {"RELU": "Relu", "TANH": "Tanh", "IDENTITY": None}


def read_rltools(path: Path) -> Model:
    fname = path.name
    try:
        import h5py
    except ImportError:
        raise ImportRefused(f"{fname}: an HDF5 file (RLtools checkpoint?): reading it needs h5py: pip install h5py") from None
    data = path.read_bytes()
    raw: list[dict] = []

    def walk(g, where: str) -> None:
        kind = g.attrs.get("type")
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "sequential":
            for i in range(len(g["layers"])):
                walk(g["layers"][str(i)], f"{where}/layers/{i}")
        elif kind == "mlp":
            n = int(g.attrs["num_layers"])
            for name in ["input_layer", *[f"hidden_layer_{i}" for i in range(n - 2)], "output_layer"]:
                walk(g[name], f"{where}/{name}")
        elif kind == "dense":
            fn = g.attrs.get("activation_function")
            fn = fn.decode() if isinstance(fn, bytes) else fn
            if fn not in _RLTOOLS_ACTS:
                raise ImportRefused(f"{fname}: {where} (dense) activation {fn}: a bundle's activation is tanh or relu"
                                    + (" (FAST_TANH is RLtools' rational approximation of tanh, clipped at +-3: not tanh)"
                                       if fn == "FAST_TANH" else ""))
            w = np.asarray(g["weights"]["parameters"][()], np.float64).T
            b = np.asarray(g["biases"]["parameters"][()], np.float64).reshape(-1)
            if raw and raw[-1]["act"] is None:
                raw[-1]["act_node"] = where
            raw.append({"w": w, "b": b, "act": _RLTOOLS_ACTS[fn], "node": where, "act_node": where})
        elif kind == "gru":
            units = g["weights_input"]["parameters"].shape[0] // 3
            raise ImportRefused(f"{fname}: {where} (gru, {units} units): a recurrent layer carries a hidden state from one "
                                "control period to the next; a bundle (and its C export, runtime and shield) is a memoryless MLP")
        elif kind == "sample_and_squash":
            raise ImportRefused(f"{fname}: {where} (sample_and_squash): the output is squashed by tanh, which a bundle "
                                "(linear output, clipped) cannot express")
        else:
            raise ImportRefused(f"{fname}: {where}: layer type {kind!r} is not an MLP layer")

    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            if "actor" not in f:
                raise ImportRefused(f"{fname}: an HDF5 file without an 'actor' group: not an RLtools checkpoint")
            meta = f["actor"].attrs.get("meta", "")
            walk(f["actor"], "actor")
    except ImportRefused:
        raise
    except (OSError, KeyError, ValueError) as e:
        raise ImportRefused(f"{fname}: unreadable RLtools checkpoint ({type(e).__name__}: {e})") from None
    layers, act = _finish_layers(fname, raw)
    meta = meta.decode() if isinstance(meta, bytes) else str(meta)
    return Model(file=fname, format="rltools", sha256=_sha(data), layers=layers, activation=act,
                 details={"rltools_meta": meta[:300]})


def read_model(path: str | Path) -> Model:
    p = Path(path)
    if not p.is_file():
        raise ImportRefused(f"{p}: model file not found")
    head = p.read_bytes()[:8]
    if head.startswith(b"\x89HDF"):
        return read_rltools(p)
    if p.suffix.lower() == ".zip" or head.startswith(b"PK"):
        return read_sb3(p)
    return read_onnx(p)


# --- the declared contract -----------------------------------------------------------------------------------
_TOP = {"task": str, "platform": str, "rate_hz": (int, float), "quaternion_order": str, "track": str,
        "observation": list, "action": dict, "task_config": dict}
_FIELD = {"name": str, "size": int, "unit": str, "frame": str, "offset": (int, float, list), "scale": (int, float, list),
          "description": str, "tau_s": (int, float), "limit": (int, float), "reset_jump_m": (int, float)}
_ACTION = {"names": list, "low": (int, float), "high": (int, float), "mapping": str, "size": int}
_TYPE = {str: "a string", int: "an int", list: "a list", dict: "a table", (int, float): "a number",
         (int, float, list): "a number or a list of numbers"}


def _check_keys(fname: str, where: str, d: dict, schema: dict, required: tuple) -> None:
    for k, v in d.items():
        if k not in schema:
            near = difflib.get_close_matches(k, list(schema), n=1)
            raise ImportRefused(f"{fname}: {where}{k}: unknown key" + (f" (did you mean {where}{near[0]}?)" if near else
                                f"; known: {', '.join(schema)}"))
        typ = schema[k]
        if not isinstance(v, typ) or isinstance(v, bool):
            raise ImportRefused(f"{fname}: {where}{k}: expected {_TYPE.get(typ, typ)}, got {_short(v)}")
    for k in required:
        if k not in d:
            raise ImportRefused(f"{fname}: {where}{k}: missing required key")


def _vector(fname: str, where: str, v, n: int, *, nonzero: bool = False) -> list[float]:
    vals = v if isinstance(v, list) else [v] * n
    if len(vals) != n:
        raise ImportRefused(f"{fname}: {where}: expected one number or a list of {n} (size), got a list of {len(vals)}")
    for i, x in enumerate(vals):
        if not isinstance(x, (int, float)) or isinstance(x, bool) or not math.isfinite(x):
            raise ImportRefused(f"{fname}: {where}[{i}]: expected a finite number, got {_short(x)}")
        if nonzero and x == 0:
            raise ImportRefused(f"{fname}: {where}[{i}]: expected a nonzero number (x_norm = (x - offset) / scale), got 0")
    return [float(x) for x in vals]


def parse_contract_toml(raw: bytes, fname: str) -> dict:
    try:
        d = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ImportRefused(f"{fname}: not UTF-8 text ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise ImportRefused(f"{fname}: not valid TOML: {e}") from None
    _check_keys(fname, "", d, _TOP, ("task", "platform", "rate_hz", "observation", "action"))
    if d["task"] not in TASKS:
        raise ImportRefused(f"{fname}: task: expected one of {list(TASKS)}, got {d['task']!r}")
    if not d["observation"]:
        raise ImportRefused(f"{fname}: observation: expected at least one [[observation]] field, got none")
    for i, f in enumerate(d["observation"]):
        if not isinstance(f, dict):
            raise ImportRefused(f"{fname}: observation[{i}]: expected a table ([[observation]]), got {_short(f)}")
        _check_keys(fname, f"observation[{i}].", f, _FIELD, ("name", "size", "unit", "frame", "offset", "scale"))
        if f["size"] <= 0:
            raise ImportRefused(f"{fname}: observation[{i}].size: expected a positive int, got {f['size']}")
        f["offset"] = _vector(fname, f"observation[{i}].offset", f["offset"], f["size"])
        f["scale"] = _vector(fname, f"observation[{i}].scale", f["scale"], f["size"], nonzero=True)
    names = [f["name"] for f in d["observation"]]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise ImportRefused(f"{fname}: observation: field {dup!r} declared twice")
    _check_keys(fname, "action.", d["action"], _ACTION, ("names", "low", "high", "mapping"))
    a = d["action"]
    if not all(isinstance(n, str) and n for n in a["names"]):
        raise ImportRefused(f"{fname}: action.names: expected a list of non-empty strings, got {_short(a['names'])}")
    if "size" in a and a["size"] != len(a["names"]):
        raise ImportRefused(f"{fname}: action.size: {a['size']}, but action.names has {len(a['names'])} names")
    if not a["high"] > a["low"]:
        raise ImportRefused(f"{fname}: action.high: expected a number greater than action.low = {a['low']}, got {a['high']}")
    return d


def _build_task(fname: str, d: dict):
    """(task config, native contract, platform, extra files) for the declared task, its variant read off the fields
    by the task's registry "import_config" hook (quadrotor_import, race_import, avoid_import below)."""
    from edgectl.platforms import PlatformError, load_platform
    from edgectl.tasks import task as registered

    task = d["task"]
    entry = registered(task)
    try:
        plat = load_platform(d["platform"])
    except PlatformError as e:
        raise ImportRefused(f"{fname}: platform: {e}") from None
    if plat.kind != entry.platform_kind:
        raise ImportRefused(f"{fname}: platform: {plat.name!r} is a {plat.kind}; the {task} task flies a "
                            f"{entry.platform_kind}")
    fields = {f["name"]: (i, f) for i, f in enumerate(d["observation"])}
    over = dict(d.get("task_config", {}))
    extra: dict[str, bytes] = {}
    try:
        mod, make = entry.hook("import_config")(fname, d, fields, over, extra)
        known = {f.name for f in dataclasses.fields(mod.TaskConfig)}
        bad = sorted(set(over) - known)
        if bad:
            near = difflib.get_close_matches(bad[0], sorted(known), n=1)
            raise ImportRefused(f"{fname}: task_config.{bad[0]}: not a {task} task setting" +
                                (f" (did you mean task_config.{near[0]}?)" if near else ""))
        cfg = make(**over)
        native = mod.contract(cfg, plat)
    except ImportRefused:
        raise
    except (ValueError, TypeError, OSError) as e:  # a track or task setting the task refuses
        raise ImportRefused(f"{fname}: task_config: {e}") from None
    task_dict = dataclasses.asdict(cfg) | {"name": task}
    return task_dict, native, plat, extra


# --- the registry's "import_config" hooks: (fname, declared contract, its fields by name, task_config overrides to
# fill in, extra bundle files to fill in) -> (task module, its config factory) --------------------------------------
def quadrotor_import(fname: str, d: dict, fields: dict, over: dict, extra: dict):
    from train_fast.tasks import quadrotor_tasks as mod

    if "previous_actions" in fields:
        i, f = fields["previous_actions"]
        if f["size"] % 4:
            raise ImportRefused(f"{fname}: observation[{i}].size: {f['size']}; previous_actions holds the last actions, "
                                "4 per step (M1..M4, newest first): a multiple of 4")
        over["action_history"] = f["size"] // 4
    else:
        over["action_history"] = 0
    if "position_error_integral" in fields:
        i, f = fields["position_error_integral"]
        for k in ("tau_s", "limit"):
            if not isinstance(f.get(k), (int, float)) or f[k] <= 0:
                raise ImportRefused(f"{fname}: observation[{i}].{k}: the integral's rule needs a positive {k}, got {f.get(k)!r}")
        over["integral_tau"], over["integral_limit"] = float(f["tau_s"]), float(f["limit"])
        jump = f.get("reset_jump_m", 0.0)  # absent: the reference's every change restarts it (hover's rule)
        if not isinstance(jump, (int, float)) or not math.isfinite(jump) or jump < 0:
            raise ImportRefused(f"{fname}: observation[{i}].reset_jump_m: expected a number >= 0 (m), got {jump!r}")
        over["integral_reset_jump"] = float(jump)
    else:
        over["integral_tau"], over["integral_reset_jump"] = 0.0, 0.0
    return mod, mod.TASKS[d["task"]]


def race_import(fname: str, d: dict, fields: dict, over: dict, extra: dict):
    from train_fast.tasks import car_tasks as mod

    trk = mod.load_track(d.get("track", over.pop("track", "oval")))
    over["track"] = trk.name
    extra["track.csv"] = trk.raw
    if "next_checkpoints" in fields:
        over["checkpoints_observed"] = max(fields["next_checkpoints"][1]["size"] // 2, 1)
    over["scan_beams"] = fields["range_scan"][1]["size"] if "range_scan" in fields else 0
    return mod, mod.race_config


def avoid_import(fname: str, d: dict, fields: dict, over: dict, extra: dict):
    from train_fast.tasks import avoid_tasks as mod

    if "gray_image" in fields:
        over["image"] = "gray"
    elif "depth_image" in fields:
        over["image"] = "depth"
    return mod, mod.avoid_config


def _match(fname: str, d: dict, native: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[float, float]]:
    """Check the declared contract against the task's; return (obs permutation, offset, scale in declared order,
    action permutation, declared action range). native element j = declared element perm[j]."""
    task = d["task"]
    nf = native["observation"]["fields"]
    decl = d["observation"]
    nat_names = [f["name"] for f in nf]
    for i, f in enumerate(decl):
        if f["name"] not in nat_names:
            near = difflib.get_close_matches(f["name"], nat_names, n=1)
            raise ImportRefused(f"{fname}: observation[{i}].name: {f['name']!r} is not a field edgectl's {task} task builds"
                                + (f" (did you mean {near[0]!r}?)" if near else f"; its fields: {', '.join(nat_names)}"))
    declared = {f["name"]: (i, f) for i, f in enumerate(decl)}
    for f in nf:
        if f["name"] not in declared:
            raise ImportRefused(f"{fname}: observation: no field {f['name']!r} ({f['size']} x {f['unit']}, {f['frame']}); edgectl's "
                                f"{task} task observes {', '.join(nat_names)}: a model without it cannot be described")
    for f in nf:
        i, g = declared[f["name"]]
        for k in ("size", "unit", "frame"):
            if g[k] != f[k]:
                raise ImportRefused(f"{fname}: observation[{i}].{k}: {g[k]!r}, but edgectl's {task} task builds {f['name']} "
                                    f"with {k} {f[k]!r} ({f.get('description', '')[:80]})")
        for k in ("tau_s", "limit", "reset_jump_m"):
            if k in f and g.get(k) != f[k]:
                raise ImportRefused(f"{fname}: observation[{i}].{k}: {g.get(k)!r}, expected {f[k]!r}")
    starts, s = {}, 0
    for f in decl:
        starts[f["name"]] = s
        s += f["size"]
    perm = np.concatenate([np.arange(starts[f["name"]], starts[f["name"]] + f["size"]) for f in nf])
    offset = np.concatenate([np.asarray(f["offset"], np.float64) for f in decl])
    scale = np.concatenate([np.asarray(f["scale"], np.float64) for f in decl])
    if abs(float(d["rate_hz"]) - float(native["rate_hz"])) > 1e-9:
        raise ImportRefused(f"{fname}: rate_hz: {d['rate_hz']}, but platform {d['platform']!r} runs {task} policies at "
                            f"{native['rate_hz']:g} Hz (control.policy_rate)")
    if "quaternion_order" in d and d["quaternion_order"] != native["quaternion_order"]:
        raise ImportRefused(f"{fname}: quaternion_order: {d['quaternion_order']!r}, expected {native['quaternion_order']!r}")
    a, na = d["action"], native["action"]
    if a["mapping"] != na["mapping"]["kind"]:
        raise ImportRefused(f"{fname}: action.mapping: {a['mapping']!r}, but the {task} task on {d['platform']!r} maps actions "
                            f"with {na['mapping']['kind']!r} ({na['mapping'].get('formula', '')[:90]})")
    if sorted(a["names"]) != sorted(na["names"]):
        raise ImportRefused(f"{fname}: action.names: {a['names']}, but the {task} task's actions are {na['names']}")
    aperm = np.asarray([a["names"].index(n) for n in na["names"]])
    return perm, offset, scale, aperm, (float(a["low"]), float(a["high"]))


def contract_template(task: str, platform: str | None = None) -> str:
    """A contract TOML for a task, as edgectl's own policies see it (default variant, normalization included)."""
    from edgectl.tasks import DEFAULT_PLATFORM, task as registered
    from train_fast.envs import build_task

    if task not in TASKS:
        raise ImportRefused(f"--template: unknown task {task!r}; choose one of {list(TASKS)}")
    _, _, c, plat = build_task(task, platform)
    norm = c["observation"]["normalization"]

    def val(x):
        return json.dumps(x)

    lines = [f"# edgectl import contract: what the model's input and output mean ({task} on {plat.name}).",
             "# The model's input is the fields below in this order, each element normalized as (x - offset) / scale;",
             "# its output is the actions in action.names order. Write your model's own offset/scale (numbers or lists).",
             f"task = {val(task)}", f"platform = {val(platform or DEFAULT_PLATFORM[registered(task).vehicle])}",
             f"rate_hz = {c['rate_hz']:g}"]
    if "track" in registered(task).options:
        lines.append('track = "oval"  # a shipped track name or a CSV path')
    start = 0
    for f in c["observation"]["fields"]:
        n = f["size"]
        off, sc = norm["offset"][start:start + n], norm["scale"][start:start + n]
        start += n
        lines += ["", "[[observation]]", f"name = {val(f['name'])}", f"size = {n}", f"unit = {val(f['unit'])}",
                  f"frame = {val(f['frame'])}",
                  f"offset = {val(off[0] if len(set(off)) == 1 else off)}", f"scale = {val(sc[0] if len(set(sc)) == 1 else sc)}"]
        if "description" in f:
            lines.append(f"description = {val(f['description'])}")
        for k in ("tau_s", "limit", "reset_jump_m"):
            if k in f:
                lines.append(f"{k} = {val(f[k])}")
    a = c["action"]
    lines += ["", "[action]", f"names = {val(a['names'])}", f"low = {a['low']:g}", f"high = {a['high']:g}",
              f"mapping = {val(a['mapping']['kind'])}  # {a['mapping'].get('formula', '')}"]
    return "\n".join(lines) + "\n"


# --- putting it together -------------------------------------------------------------------------------------
def import_model(model_path: str | Path, contract_path: str | Path, out: str | Path, *, overwrite: bool = False,
                 command: str | None = None) -> dict:
    """Write the bundle; return a report. Raises ImportRefused (one line) and writes nothing on any refusal."""
    from edgectl.bundle import BundleError, load_bundle, write_bundle
    from train_fast.train import versions

    cpath = Path(contract_path)
    try:
        craw = cpath.read_bytes()
    except OSError as e:
        raise ImportRefused(f"{cpath}: cannot read the contract ({e.strerror})") from None
    outp = Path(out)
    if outp.exists() and not overwrite:
        raise ImportRefused(f"--out {outp}: already exists; pass --overwrite to replace it")
    fname = cpath.name
    d = parse_contract_toml(craw, fname)
    model = read_model(model_path)
    task_dict, native, plat, extra = _build_task(fname, d)
    perm, offset, scale, aperm, (lo, hi) = _match(fname, d, native)
    n_obs, n_act = len(perm), len(aperm)
    w0 = model.layers[0][0]
    if model.input_size not in (None, n_obs) or w0.shape[0] != n_obs:
        got = model.input_size if model.input_size not in (None, -1) else w0.shape[0]
        raise ImportRefused(f"{model.file}: input has {got} elements (first layer {list(w0.shape)}), but {fname} declares "
                            f"{n_obs} ({', '.join(f['name'] + '[' + str(f['size']) + ']' for f in d['observation'])})")
    wl = model.layers[-1][0]
    if model.output_size not in (None, n_act) or wl.shape[1] != n_act:
        got = model.output_size if model.output_size is not None else wl.shape[1]
        raise ImportRefused(f"{model.file}: output has {got} elements (last layer {list(wl.shape)}), but {fname} declares "
                            f"{n_act} actions {d['action']['names']}")
    if model.clip is not None and (model.clip[0] > lo + 1e-9 or model.clip[1] < hi - 1e-9):
        raise ImportRefused(f"{model.file}: the model clips its output to [{model.clip[0]:g}, {model.clip[1]:g}], narrower than "
                            f"{fname}'s action range [{lo:g}, {hi:g}]: a bundle clips only to the contract's range")
    # the model's own input normalization, then the declared one: x_model = (x - offset) / scale
    if model.in_offset is not None:
        offset, scale = offset + scale * model.in_offset, scale * model.in_scale
    # into edgectl's field order and action order and range
    layers = [(w.copy(), b.copy()) for w, b in model.layers]
    layers[0] = (layers[0][0][perm, :], layers[0][1])
    na = native["action"]
    k = (na["high"] - na["low"]) / (hi - lo)
    c0 = na["low"] - lo * k
    wl, bl = layers[-1]
    layers[-1] = (wl[:, aperm] * k, bl[aperm] * k + c0)
    contract = json.loads(json.dumps(native))
    contract["observation"]["normalization"]["offset"] = offset[perm].tolist()
    contract["observation"]["normalization"]["scale"] = scale[perm].tolist()
    if not np.all(np.isfinite(contract["observation"]["normalization"]["scale"])) or \
            np.any(np.asarray(contract["observation"]["normalization"]["scale"]) == 0):
        raise ImportRefused(f"{fname}: the normalization's scale (with the model's own) has zero or non-finite elements")
    weights, policy_layers = {}, []
    for i, (w, b) in enumerate(layers):
        weights[f"actor.{i}.weight"], weights[f"actor.{i}.bias"] = w.astype(np.float32), b.astype(np.float32)
        policy_layers.append({"weight": f"actor.{i}.weight", "bias": f"actor.{i}.bias"})
    policy = {"kind": "mlp", "activation": model.activation, "output_activation": "clip", "layers": policy_layers}
    # parity, before anything is written: the bundle's action (computed as Bundle.act does) against the model's own
    # output, on raw observations around the normalization's centre
    rng = np.random.default_rng(0)
    norm = contract["observation"]["normalization"]
    x = np.asarray(norm["offset"]) + np.asarray(norm["scale"]) * rng.normal(0.0, 1.0, (256, n_obs))
    x_decl = np.empty_like(x)
    x_decl[:, perm] = x
    d_offset = np.concatenate([np.asarray(f["offset"]) for f in d["observation"]])
    d_scale = np.concatenate([np.asarray(f["scale"]) for f in d["observation"]])
    ref_out, ref_src = _reference_outputs(model, Path(model_path), (x_decl - d_offset) / d_scale)
    ref = np.clip(ref_out[:, aperm] * k + c0, na["low"], na["high"])
    mine = _bundle_act(x, norm, weights, model.activation, na["low"], na["high"])
    err = float(np.max(np.abs(mine - ref)))
    tol = 1e-4 * max(1.0, float(np.max(np.abs(ref))))
    if not err <= tol:
        raise ImportRefused(f"{model.file}: the bundle's actions would differ from the model's by up to {err:.3g} (tolerance "
                            f"{tol:.1g}) on {len(x)} observations: the model computes something the importer did not read")
    report = {"model": str(model_path), "format": model.format, "model_sha256": model.sha256, "contract": str(cpath),
              "task": d["task"], "platform": plat.name, "layers": [list(w.shape) for w, _ in layers],
              "activation": model.activation, "observation_order": "as declared" if np.array_equal(perm, np.arange(n_obs))
              else "reordered to edgectl's", "action_rescaled": bool(k != 1.0 or c0 != 0.0),
              "model_normalization_folded": model.in_offset is not None, "model_clip": model.clip, **model.details}
    metrics = {"imported": report}
    versions_ = versions() | ({"command": command} if command else {})
    try:
        out_path = write_bundle(outp, contract=contract, policy=policy, weights=weights, platform_toml=plat.raw,
                                platform_name=plat.name, task=task_dict, seed=0, metrics=_plain(metrics),
                                versions=versions_, extra_files={CONTRACT_FILE: craw, **extra}, overwrite=overwrite)
    except BundleError as e:
        raise ImportRefused(str(e)) from None
    b = load_bundle(out_path)
    assert np.array_equal(b.act(x[:16]), _bundle_act(x[:16], norm, weights, model.activation, na["low"], na["high"]).astype(np.float32))
    report.update(parity_reference=ref_src, parity_max_abs_error=err, parity_observations=int(len(x)), bundle=str(out_path))
    return report


def _bundle_act(x, norm, weights, activation, low, high) -> np.ndarray:
    """edgectl.bundle.Bundle.act's arithmetic (float32 after normalization), on the weights about to be written."""
    h = ((x - np.asarray(norm["offset"])) / np.asarray(norm["scale"])).astype(np.float32)
    n = len(weights) // 2
    for i in range(n):
        h = h @ weights[f"actor.{i}.weight"] + weights[f"actor.{i}.bias"]
        if i < n - 1:
            h = np.tanh(h) if activation == "tanh" else np.maximum(h, 0.0)
    return np.clip(h, low, high).astype(np.float64)


def _reference_outputs(model: Model, path: Path, y: np.ndarray) -> tuple[np.ndarray, str]:
    """The model's outputs for model inputs y: onnxruntime running the file itself where possible."""
    if model.format == "onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            return model.forward(y), "the layers as read (onnxruntime not installed)"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        dtype = np.float64 if "double" in inp.type else np.float32
        shape = inp.shape
        if len(shape) == 2 and shape[0] == 1:  # a batch-1 model: one row at a time
            out = np.concatenate([sess.run(None, {inp.name: y[i:i + 1].astype(dtype)})[0] for i in range(len(y))])
        elif len(shape) == 1:
            out = np.stack([sess.run(None, {inp.name: y[i].astype(dtype)})[0] for i in range(len(y))])
        else:
            out = sess.run(None, {inp.name: y.astype(dtype)})[0]
        return np.asarray(out, np.float64).reshape(len(y), -1), "onnxruntime"
    out = model.forward(y)
    return out, ("stable-baselines3 actor mean, clipped to its action space (numpy)" if model.format == "sb3"
                 else "the RLtools checkpoint's layers (numpy)")


def _plain(x):
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x

"""Policy backends for the runtime (`edgectl run`): one `.act(obs)` over a bundle, an ONNX or a TFLite file.

Every backend takes the RAW observation, (obs_size,) or (N, obs_size), and returns the clipped action
as float32, (action_size,) or (N, action_size), exactly like `Bundle.act`; every backend refuses a
wrong size or a non-finite value with the index (and, given the contract, the field) named.

onnxruntime silently falls back to the CPU when a requested execution provider (TensorRT, CUDA)
cannot load; `OnnxBackend` checks `session.get_providers()` and either raises (require=True) or
warns loudly, and records what actually runs in `.active_provider`.

Stdlib + numpy at import time; onnxruntime and the TFLite interpreter (ai-edge-litert, or
tflite-runtime on boards with numpy<2) are imported only when such a backend is created. No JAX.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .contract import observation_slices

CPU = "CPUExecutionProvider"
INPUT_NAME, OUTPUT_NAME = "observation", "action"
_EXPORT_HINT = 'pip install "edgectl[export]"'
_PROVIDER_HINTS = {
    "CUDAExecutionProvider": "install onnxruntime-gpu (not onnxruntime) built for this machine's CUDA and cuDNN; "
                             "on a Jetson, the onnxruntime-gpu wheel for your JetPack",
    "TensorrtExecutionProvider": "install onnxruntime-gpu with the TensorRT libraries (libnvinfer) on the library "
                                 "path; on a Jetson they ship with JetPack",
}


class BackendError(ValueError):
    """A backend cannot be created as asked, or was fed a bad observation."""


class ProviderFallbackWarning(RuntimeWarning):
    """onnxruntime is not running on the execution provider that was asked for."""


def available_providers() -> list[str]:
    """onnxruntime's execution providers usable in this install, best first; [] without onnxruntime."""
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return list(ort.get_available_providers())


def _provider_name(p: Any) -> str:
    return p[0] if isinstance(p, (tuple, list)) else str(p)  # onnxruntime also takes (name, options)


class PolicyBackend:
    """Shared input checks; subclasses set name, obs_size, action_size and implement _run(x [N, obs_size])."""

    name: str = "backend"
    obs_size: int
    action_size: int

    def __init__(self, source: str, contract: dict | None = None) -> None:
        self.source = source  # shown in error messages: a file name
        self.contract = contract
        self._fields = observation_slices(contract) if contract is not None else None

    def _check(self, obs: np.ndarray) -> tuple[np.ndarray, bool]:
        x = np.asarray(obs)
        if x.ndim not in (1, 2) or x.shape[-1] != self.obs_size:
            got = x.shape[-1] if x.ndim else "a scalar"
            raise BackendError(f"{self.name} ({self.source}): act(): observation size {got} (shape {list(x.shape)}), "
                               f"expected {self.obs_size}: shape ({self.obs_size},) or (N, {self.obs_size})")
        if x.dtype.kind not in "fiub":
            raise BackendError(f"{self.name} ({self.source}): act(): observation dtype {x.dtype}, expected numbers")
        with np.errstate(over="ignore"):
            x32 = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x32).all():
            x64 = x.astype(np.float64, copy=False)  # float64 so a huge-but-finite value is not reported as inf
            finite = np.isfinite(x64)
            bad = ~finite if not finite.all() else ~np.isfinite(x32)
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            what = "non-finite value" if not finite.all() else "value outside the float32 range,"
            raise BackendError(f"{self.name} ({self.source}): act(): observation has {what} {x64[idx]} "
                               f"at index {self._where(idx, x.ndim)}")
        return (x32.reshape(1, self.obs_size) if x.ndim == 1 else x32), x.ndim == 1

    def _where(self, idx: tuple[int, ...], ndim: int) -> str:
        where = str(idx[0] if ndim == 1 else list(idx))
        if self._fields is not None:
            name, s = next((n, s) for n, s in self._fields.items() if s.start <= idx[-1] < s.stop)
            where += f" (field {name!r}[{idx[-1] - s.start}])"
        return where

    def act(self, obs: np.ndarray) -> np.ndarray:
        x, single = self._check(obs)
        y = np.asarray(self._run(x), dtype=np.float32)
        return y[0] if single else y

    def _run(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.source}>"


class BundleBackend(PolicyBackend):
    """The bundle's own numpy forward pass (the reference every export is checked against)."""

    def __init__(self, bundle) -> None:
        if isinstance(bundle, (str, os.PathLike)):
            from .bundle import load_bundle
            bundle = load_bundle(bundle)
        super().__init__(bundle.path.name, bundle.contract)
        self.bundle = bundle
        self.name = "numpy"
        self.obs_size = bundle.contract["observation"]["size"]
        self.action_size = bundle.contract["action"]["size"]

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.bundle.act(x)


def _static_dims(shape: Sequence[Any], what: str, source: str) -> tuple[int | None, int]:
    """(batch or None when dynamic, last dim) of a [batch, n] model input/output shape."""
    if len(shape) != 2 or not isinstance(shape[-1], (int, np.integer)) or shape[-1] <= 0:
        raise BackendError(f"{source}: {what} has shape {list(shape)}, expected [batch, n] with a fixed n")
    b = shape[0]
    return (int(b) if isinstance(b, (int, np.integer)) and b > 0 else None), int(shape[-1])


class OnnxBackend(PolicyBackend):
    """An exported .onnx on onnxruntime.

    providers: execution providers in order of preference, e.g. ("TensorrtExecutionProvider",
    "CUDAExecutionProvider", "CPUExecutionProvider"); entries may be (name, options) tuples.
    If the first one is not what onnxruntime actually uses, raise BackendError (require=True) or
    warn with ProviderFallbackWarning naming the requested and the active provider.
    """

    def __init__(self, path: str | os.PathLike, providers: Sequence[Any] = (CPU,), *, require: bool = False,
                 threads: int = 1, contract: dict | None = None) -> None:
        path = Path(path)
        super().__init__(path.name, contract)
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendError(f"onnx backend: onnxruntime is not installed ({e}); {_EXPORT_HINT} "
                               "or pip install onnxruntime (onnxruntime-gpu for CUDA/TensorRT)") from None
        if not path.is_file():
            raise BackendError(f"{path}: ONNX file not found")
        providers = list(providers)
        if not providers:
            raise BackendError(f"{path.name}: providers: expected at least one execution provider, got []")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads  # a tiny MLP: threads only add wake-up latency
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        with warnings.catch_warnings():
            # onnxruntime's own "not in available provider names" warning is replaced by the clearer one below
            warnings.filterwarnings("ignore", message=r"Specified provider .* is not in available provider names")
            try:
                self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
            except Exception as e:  # noqa: BLE001  onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
                raise BackendError(f"{path.name}: onnxruntime cannot load the model: {e}") from None
        self.requested_providers = [_provider_name(p) for p in providers]
        self.active_providers = list(self.session.get_providers())
        self.active_provider = self.active_providers[0]
        wanted = self.requested_providers[0]
        self.provider_fallback = self.active_provider != wanted
        if self.provider_fallback:
            hint = _PROVIDER_HINTS.get(wanted, "check that this onnxruntime build includes it")
            msg = (f"{path.name}: requested onnxruntime execution provider {wanted!r}, but the active provider is "
                   f"{self.active_provider!r} (onnxruntime falls back silently; available in this install: "
                   f"{available_providers()}); to get {wanted}: {hint}")
            if require:
                raise BackendError(msg)
            warnings.warn(msg, ProviderFallbackWarning, stacklevel=2)
        self.name = f"onnxruntime[{self.active_provider}]"

        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise BackendError(f"{path.name}: expected one input ({INPUT_NAME!r}) and one output ({OUTPUT_NAME!r}), "
                               f"got inputs {[i.name for i in inputs]}, outputs {[o.name for o in outputs]}")
        if inputs[0].type != "tensor(float)":
            raise BackendError(f"{path.name}: input {inputs[0].name!r} has type {inputs[0].type}, expected tensor(float)")
        self._input = inputs[0].name
        out = next((o for o in outputs if o.name == OUTPUT_NAME), outputs[0])
        self._output = out.name
        self._batch, self.obs_size = _static_dims(inputs[0].shape, f"input {self._input!r}", path.name)
        _, self.action_size = _static_dims(out.shape, f"output {self._output!r}", path.name)

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self._batch is None or self._batch == len(x):
            return self.session.run([self._output], {self._input: x})[0]
        if self._batch == 1:  # a fixed-batch-1 export: one call per row
            return np.concatenate([self.session.run([self._output], {self._input: r[None]})[0] for r in x])
        raise BackendError(f"{self.name} ({self.source}): act(): the model's batch is fixed at {self._batch}, got {len(x)} observations")


def _tflite_interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter
    except ImportError as e1:
        try:
            from tflite_runtime.interpreter import Interpreter  # older boards: tflite-runtime 2.14 needs numpy<2
            return Interpreter
        except ImportError:
            raise BackendError(f"tflite backend: no TFLite interpreter installed ({e1}); {_EXPORT_HINT} "
                               "or pip install ai-edge-litert") from None


class TfliteBackend(PolicyBackend):
    """An exported .tflite on the TFLite interpreter (ai-edge-litert, else tflite-runtime)."""

    def __init__(self, path: str | os.PathLike, *, threads: int = 1, contract: dict | None = None) -> None:
        path = Path(path)
        super().__init__(path.name, contract)
        Interpreter = _tflite_interpreter_class()
        if not path.is_file():
            raise BackendError(f"{path}: .tflite file not found")
        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise BackendError(f"{path.name}: the TFLite interpreter cannot load the model: {e}") from None
        ins, outs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if len(ins) != 1 or not outs:
            raise BackendError(f"{path.name}: expected one input and one output, got {len(ins)} inputs, {len(outs)} outputs")
        if ins[0]["dtype"] != np.float32:
            raise BackendError(f"{path.name}: input {ins[0]['name']!r} has dtype {ins[0]['dtype']}, expected float32")
        self._in, self._out = ins[0]["index"], outs[0]["index"]
        _, self.obs_size = _static_dims(list(ins[0]["shape"]), f"input {ins[0]['name']!r}", path.name)
        _, self.action_size = _static_dims(list(outs[0]["shape"]), f"output {outs[0]['name']!r}", path.name)
        self._batch = int(ins[0]["shape"][0])
        self.name = "tflite"

    def _run(self, x: np.ndarray) -> np.ndarray:
        if len(x) != self._batch:
            try:
                self.interpreter.resize_tensor_input(self._in, [len(x), self.obs_size])
                self.interpreter.allocate_tensors()
            except (ValueError, RuntimeError) as e:
                raise BackendError(f"{self.name} ({self.source}): act(): cannot run a batch of {len(x)}: {e}") from None
            self._batch = len(x)
        self.interpreter.set_tensor(self._in, x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._out).copy()


def open_backend(path: str | os.PathLike, *, providers: Sequence[Any] = (CPU,), require: bool = False,
                 threads: int = 1, contract: dict | None = None) -> PolicyBackend:
    """The backend for `path` by its kind: a bundle directory, a .onnx or a .tflite file."""
    p = Path(path)
    if p.is_dir():
        return BundleBackend(p)
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        return OnnxBackend(p, providers, require=require, threads=threads, contract=contract)
    if suffix == ".tflite":
        return TfliteBackend(p, threads=threads, contract=contract)
    raise BackendError(f"{p}: expected a bundle directory, a .onnx or a .tflite file")

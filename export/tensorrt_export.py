"""TensorRT engine from an exported ONNX policy (Jetson / NVIDIA GPU machines only).

Where TensorRT comes from: on a Jetson it ships with JetPack (python3-libnvinfer, the system Python); on an
x86/aarch64 CUDA machine PyPI has it (`pip install tensorrt-cu12` or `tensorrt-cu13`, matching the driver's
CUDA major; 11.4.0 is the newest, 2026-10), and building an engine needs an NVIDIA GPU either way. Where
`import tensorrt` fails, build_engine raises TargetUnavailable saying so; the ONNX export works everywhere,
and `trtexec --onnx=policy.onnx --saveEngine=policy.engine` on the target does the same as this module.

NEVER RUN (issue 16): the code path below was written against the TensorRT 8.x and 10.x Python API
documentation and has not run anywhere edgectl was tested (no GPU, no TensorRT; the session's GPU machine
was not lent). edgectl has no runtime that loads an engine (edgectl.runtime.backends refuses a tensorrt
export folder), so TensorRT is listed nowhere as a flight backend: fly the ONNX export (onnxruntime,
whose TensorRT execution provider onnxruntime-gpu offers, is checked by edgectl.backends.OnnxBackend).
An engine only runs on the GPU model and TensorRT version that built it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgectl.fsutil import atomic_write

from .errors import ExportError, TargetUnavailable

INPUT_NAME = "observation"
MAX_BATCH = 64          # optimization profile: batch 1 (the control loop) .. MAX_BATCH
CALIB_BATCH = 32        # INT8 calibration batch size
WORKSPACE_BYTES = 1 << 28

_UNAVAILABLE = (
    "tensorrt: TensorRT is not installed here ({err}). It ships with JetPack on a Jetson (the "
    "python3-libnvinfer package, `import tensorrt` with the system Python); on a CUDA machine pip install "
    "tensorrt-cu12 (or tensorrt-cu13, matching the driver's CUDA) from PyPI (also at https://pypi.nvidia.com); "
    "building an engine needs an NVIDIA GPU. edgectl has never run an engine: it cannot fly one. The ONNX export (export.onnx_export.write_onnx) works everywhere: "
    "copy the .onnx to the target and build the engine there with this function or "
    "`trtexec --onnx=policy.onnx --saveEngine=policy.engine [--fp16|--int8]`."
)


def _import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as e:
        raise TargetUnavailable(_UNAVAILABLE.format(err=f"import tensorrt failed: {e}")) from None
    except OSError as e:
        raise TargetUnavailable(_UNAVAILABLE.format(err=f"import tensorrt failed to load its libraries: {e}")) from None
    return trt


def _trt_major(trt) -> int:
    try:
        return int(str(trt.__version__).split(".")[0])
    except (AttributeError, ValueError):
        return 0


class _CudaBuffer:
    """One device allocation for calibration batches, via cuda-python (TensorRT 10 samples) or pycuda (8.x)."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        cudart = None
        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
        except ImportError:
            try:
                from cuda import cudart  # older cuda-python, as in the TensorRT 8.6/10 samples
            except ImportError:
                pass
        if cudart is not None:
            err, ptr = cudart.cudaMalloc(nbytes)
            if err != cudart.cudaError_t.cudaSuccess:
                raise ExportError(f"tensorrt: cudaMalloc({nbytes}) for INT8 calibration failed: {err}")
            self._cudart, self._pycuda, self.ptr = cudart, None, int(ptr)
            return
        try:
            import pycuda.autoinit  # noqa: F401  (creates a CUDA context)
            import pycuda.driver as cuda
        except ImportError as e:
            raise TargetUnavailable("tensorrt: INT8 calibration copies batches to the GPU and needs cuda-python "
                                    f"(pip install cuda-python) or pycuda ({e})") from None
        self._cudart, self._pycuda = None, cuda
        self._alloc = cuda.mem_alloc(nbytes)
        self.ptr = int(self._alloc)

    def upload(self, host: np.ndarray) -> None:
        host = np.ascontiguousarray(host)
        assert host.nbytes <= self.nbytes
        if self._cudart is not None:
            kind = self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            (err,) = self._cudart.cudaMemcpy(self.ptr, host.ctypes.data, host.nbytes, kind)
            if err != self._cudart.cudaError_t.cudaSuccess:
                raise ExportError(f"tensorrt: cudaMemcpy to the calibration buffer failed: {err}")
        else:
            self._pycuda.memcpy_htod(self.ptr, host)

    def free(self) -> None:
        if self._cudart is not None and self.ptr:
            self._cudart.cudaFree(self.ptr)
        self.ptr = 0


def _make_calibrator(trt, calib_obs: np.ndarray, batch: int, cache_path: Path | None):
    """An IInt8EntropyCalibrator2 feeding calib_obs in batches of `batch` (a last partial batch is dropped).

    The cache is written (for trtexec --calib=...) but never read back: a stale cache from another
    policy would silently give wrong scales, and calibrating a tiny MLP takes well under a second.
    """

    class _ObsCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)  # the bindings require the explicit base __init__
            n = (len(calib_obs) // batch) * batch
            self.batches = np.ascontiguousarray(calib_obs[:n], dtype=np.float32).reshape(-1, batch, calib_obs.shape[1])
            self.index = 0
            self.device = _CudaBuffer(self.batches[0].nbytes)

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names, *args):  # TRT 8/10 Python signature: get_batch(names) -> [device ptr] | None
            if self.index >= len(self.batches):
                return None
            self.device.upload(self.batches[self.index])
            self.index += 1
            return [self.device.ptr] * len(names)  # one network input: "observation"

        def read_calibration_cache(self, *args):
            return None  # always calibrate from calib_obs (see above)

        def write_calibration_cache(self, cache) -> None:
            if cache_path is not None:
                cache_path.write_bytes(bytes(cache))

    return _ObsCalibrator()


def build_engine(onnx_path: Path, out_path: Path, *, fp16: bool = False, int8: bool = False,
                 calib_obs: np.ndarray | None = None) -> dict:
    """Build a serialized TensorRT engine from `onnx_path` into `out_path`; returns a summary dict.

    The engine takes "observation" [batch, obs_size] with batch 1..MAX_BATCH (optimized for 1).
    int8=True needs calib_obs [N >= CALIB_BATCH, obs_size]: raw observations from rollouts (e.g.
    export.calibration.rollout_observations), fed to an IInt8EntropyCalibrator2. fp16 and int8 are
    permissions: TensorRT still picks float32 kernels where they are faster or more precise.
    Raises TargetUnavailable where TensorRT is not installed, ExportError on a bad input or a failed build.
    UNTESTED HERE (no TensorRT on the development machine): see the module docstring.
    """
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    trt = _import_tensorrt()
    if not onnx_path.is_file():
        raise ExportError(f"{onnx_path}: ONNX file not found")
    if int8:
        if calib_obs is None:
            raise ExportError("tensorrt: int8=True needs calib_obs, raw observations [N, obs_size] for calibration")
        calib_obs = np.asarray(calib_obs, dtype=np.float32)
        if calib_obs.ndim != 2 or len(calib_obs) < CALIB_BATCH or not np.isfinite(calib_obs).all():
            raise ExportError(f"tensorrt: calib_obs: expected finite observations of shape [N >= {CALIB_BATCH}, obs_size], "
                              f"got shape {list(calib_obs.shape)}")

    major = _trt_major(trt)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    if builder is None:
        raise ExportError("tensorrt: trt.Builder() failed (no usable GPU or driver?)")
    # TensorRT 8: ONNX needs an explicit-batch network. TensorRT 10: explicit batch is the only mode
    # (the flag is deprecated and ignored, 0 is correct).
    flags = 0
    if major < 10 and hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"{onnx_path.name}: TensorRT's ONNX parser failed: {errors}")

    inp = network.get_input(0)
    if network.num_inputs != 1 or inp.name != INPUT_NAME:
        raise ExportError(f"{onnx_path.name}: expected one network input {INPUT_NAME!r}, got "
                          f"{[network.get_input(i).name for i in range(network.num_inputs)]}")
    obs_size = int(inp.shape[-1])
    if len(inp.shape) != 2 or obs_size <= 0:
        raise ExportError(f"{onnx_path.name}: input {INPUT_NAME!r} has shape {tuple(inp.shape)}, expected [batch, n] with a fixed n")
    if int8 and calib_obs.shape[1] != obs_size:
        raise ExportError(f"tensorrt: calib_obs has {calib_obs.shape[1]} columns, the network input {INPUT_NAME!r} has {obs_size}")

    config = builder.create_builder_config()
    if hasattr(config, "set_memory_pool_limit"):  # TensorRT >= 8.4
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    else:  # TensorRT < 8.4
        config.max_workspace_size = WORKSPACE_BYTES

    profile = builder.create_optimization_profile()
    dynamic = int(inp.shape[0]) < 0
    if dynamic:
        profile.set_shape(INPUT_NAME, (1, obs_size), (1, obs_size), (MAX_BATCH, obs_size))
        config.add_optimization_profile(profile)

    # platform_has_fast_* are deprecated in TensorRT 10 (every supported GPU has both): default to True.
    if fp16:
        if not getattr(builder, "platform_has_fast_fp16", True):
            raise ExportError("tensorrt: fp16=True but this GPU has no fast FP16")
        config.set_flag(trt.BuilderFlag.FP16)
    calibrator = None
    cache = out_path.with_name(out_path.name + ".calib")
    if int8:
        if not getattr(builder, "platform_has_fast_int8", True):
            raise ExportError("tensorrt: int8=True but this GPU has no fast INT8")
        config.set_flag(trt.BuilderFlag.INT8)
        calib_batch = CALIB_BATCH if dynamic else int(inp.shape[0])
        calibrator = _make_calibrator(trt, calib_obs, calib_batch, cache)
        # Implicit INT8 calibration is deprecated in TensorRT 10 (explicit Q/DQ is the future) but still works.
        config.int8_calibrator = calibrator
        if dynamic:
            calib_profile = builder.create_optimization_profile()
            shape = (calib_batch, obs_size)
            calib_profile.set_shape(INPUT_NAME, shape, shape, shape)
            config.set_calibration_profile(calib_profile)

    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.device.free()
    if serialized is None:
        raise ExportError(f"{onnx_path.name}: TensorRT failed to build the engine (see the TensorRT log above)")
    data = bytes(serialized)

    atomic_write(out_path, data)  # 0644: the runtime may run as another user

    info: dict[str, Any] = {
        "engine": str(out_path), "bytes": len(data), "tensorrt_version": str(trt.__version__),
        "precision": "int8" if int8 else "fp16" if fp16 else "fp32",
        "input": INPUT_NAME, "obs_size": obs_size, "batch": [1, MAX_BATCH] if dynamic else [int(inp.shape[0])] * 2,
    }
    if int8:
        info["calibration"] = {"observations": int((len(calib_obs) // calib_batch) * calib_batch),
                               "batch": calib_batch, "cache": str(cache)}
    return info

"""Which policy implementation the loop runs: the bundle itself, or an export of it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable


def load_policy(path: Path, bundle) -> tuple[Callable, str]:
    """(act(obs (N, size)) -> actions (N, 4), description). `path`: the bundle, or an `edgectl export` folder
    of it (c / stm32 -> the C compiled for this host, onnx -> onnxruntime, tflite -> LiteRT)."""
    path = Path(path)
    if (path / "bundle.json").is_file():
        return bundle.act, "numpy (bundle)"
    report_file = path / "report.json"
    if not report_file.is_file():
        raise ValueError(f"--policy {path}: neither a bundle (bundle.json) nor an edgectl export folder (report.json)")
    report = json.loads(report_file.read_text())
    if report.get("bundle_weights_sha256") != bundle.manifest["weights"]["sha256"]:
        raise ValueError(f"--policy {path}: exported from another bundle (weights sha256 "
                         f"{str(report.get('bundle_weights_sha256'))[:12]}... vs {bundle.manifest['weights']['sha256'][:12]}...)")
    target = report.get("target")
    c = bundle.contract
    if target in ("c", "stm32"):
        import numpy as np

        from edgectl.hostc import load_host_policy
        files = {n: (path / n).read_text() for n in ("edgectl_policy.h", "edgectl_policy.c")}
        host = load_host_policy(files, c["observation"]["size"], c["action"]["size"])

        def act(obs):
            rows = []
            for x in np.atleast_2d(obs):
                rc, a = host.step(x)
                if rc != 0:
                    raise ValueError(f"C policy refused the observation (return code {rc})")
                rows.append(a)
            return np.stack(rows)
        return act, f"compiled C ({'int8' if report.get('int8') else 'float32'})"
    if target == "onnx":
        from edgectl.backends import OnnxBackend
        b = OnnxBackend(path / "policy.onnx", contract=c)
        return b.act, f"onnxruntime ({b.active_provider})"
    if target == "tflite":
        from edgectl.backends import TfliteBackend
        b = TfliteBackend(path / "policy.tflite", contract=c)
        return b.act, "TFLite (LiteRT)"
    if target == "tensorrt":
        # Never run by edgectl (no GPU where it is tested): no runtime pretends to fly it (issue 16).
        raise ValueError(f"--policy {path}: a TensorRT engine cannot be flown by edgectl (it has never run one); "
                         f"fly {path / 'policy.onnx'} instead: --policy of an `edgectl export --target onnx` folder")
    raise ValueError(f"--policy {path}: target {target!r} has no host runtime here (use c, onnx or tflite)")

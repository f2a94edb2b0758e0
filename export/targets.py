"""`edgectl export`: one bundle -> one target folder, checked against the bundle before it lands.

Every target writes into a temporary sibling folder, proves its artifact computes the bundle's policy
(parity on observations from simulator rollouts), writes report.json, and only then is renamed to
--out. A failed check, a missing tool or a model too big for the MCU leaves --out untouched.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np

from edgectl.bundle import BundleError, load_bundle
from edgectl.fsutil import dumps_strict, json_value, replace_dir
from edgectl.platforms import PlatformError, parse_platform
from edgectl.tasks import task as registered

from .errors import ExportError, TargetUnavailable

FLOAT_TOLERANCE = 1e-5  # max |action difference| allowed between a float artifact and its reference
INT8_TOLERANCE = (0.01, 0.01)  # closed loop: survival within 1 point, median final error within 1 cm of float


@dataclass
class Job:
    bundle_path: Path
    int8: bool = False
    samples: int = 10_000  # parity observations
    calib_samples: int = 20_000  # int8 calibration observations (fewer clipped rare states: see quantize.py)
    eval_episodes: int = 1000  # closed-loop comparison of int8 against float
    seed: int = 0
    calibration: str = "rollouts"  # where parity and calibration observations come from (calibration.SOURCES)
    firmware_dir: Path | None = None
    progress: Callable[[str], None] = lambda msg: None
    report: dict = field(default_factory=dict)

    @cached_property
    def bundle(self):
        try:
            return load_bundle(self.bundle_path)
        except BundleError as e:
            raise ExportError(f"bundle {self.bundle_path}: {e}") from None

    @cached_property
    def platform(self):
        path = self.bundle.path / "platform.toml"
        try:
            return parse_platform(path.read_bytes(), path)
        except PlatformError as e:
            raise ExportError(str(e)) from None

    @cached_property
    def parity_obs(self) -> np.ndarray:
        from .calibration import rollout_observations
        self.progress(f"collecting {self.samples:,} observations from simulator {self.calibration}")
        return rollout_observations(self.bundle, self.samples, seed=self.seed + 1, source=self.calibration)

    @cached_property
    def reference(self) -> tuple[str, np.ndarray]:
        """The float actor's actions on parity_obs: JAX (the trainer's own forward pass)."""
        from train_fast.evaluate import bundle_policy
        params, apply = bundle_policy(self.bundle)
        return "jax", np.asarray(apply(params, self.parity_obs)).clip(self.bundle.contract["action"]["low"],
                                                                      self.bundle.contract["action"]["high"])

    @cached_property
    def quant(self):
        from .calibration import rollout_observations
        from .quantize import calibrate
        self.progress(f"calibrating int8 ranges on {self.calib_samples:,} observations ({self.calibration})")
        return calibrate(self.bundle, rollout_observations(self.bundle, self.calib_samples, seed=self.seed + 2,
                                                           source=self.calibration))

    def c_files(self) -> dict[str, str]:
        from .c_codegen import generate_c
        return generate_c(self.bundle, self.quant if self.int8 else None)


def _max_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ExportError(message)


def _parity(job: Job, name: str, actions: np.ndarray, tol: float = FLOAT_TOLERANCE) -> float:
    ref_name, ref = job.reference
    err = _max_err(actions, ref)
    job.report.setdefault("parity", {})[name] = {"reference": ref_name, "observations": int(len(ref)), "max_abs_error": err}
    _require(err <= tol, f"{name}: max |action - {ref_name} actor| = {err:.3g} on {len(ref)} rollout observations, "
                         f"allowed {tol:g}: the exported model does not compute the bundle's policy")
    return err


def _estimate_flash(job: Job) -> int:
    """Bytes of constant data the C policy needs, before any compiler runs: weights dominate."""
    n = sum(w.size for w, _ in job.bundle.layers)
    nb = sum(b.size for _, b in job.bundle.layers)
    return n + 8 * nb + 513 if job.int8 else 4 * (n + nb)


def check_budget(job: Job, flash: int, ram: int | None = None, how: str = "estimated") -> None:
    p = job.platform
    try:
        fb, rb = p.get("mcu.policy_flash_budget"), p.get("mcu.policy_ram_budget")
    except PlatformError:  # a platform whose policy runs on a companion computer (the car's Jetson) names no MCU
        job.report["mcu_budget"] = f"not checked: {p.name} names no mcu.policy_flash_budget / policy_ram_budget"
        return
    where = f"{job.bundle.path / 'platform.toml'}"
    if flash > fb:
        raise ExportError(f"model too large for {p.get('mcu.name')}: policy needs {flash:,} B of flash ({how}), "
                          f"{where} mcu.policy_flash_budget allows {fb:,} B; train a smaller actor or export with --int8, "
                          "or run it on a companion computer (Jetson): --target onnx or tensorrt")
    if ram is not None and ram > rb:
        raise ExportError(f"model too large for {p.get('mcu.name')}: policy needs {ram:,} B of RAM ({how}), "
                          f"{where} mcu.policy_ram_budget allows {rb:,} B")


# --- targets --------------------------------------------------------------------------------------
def _int8_closed_loop(job: Job) -> dict:
    """Fly the int8 policy (the NumPy model the C equals bit for bit) and the float one on the same episodes: the
    task registry's "int8_check" hook (int8_quadrotor, int8_race, int8_avoid below)."""
    return registered(job.bundle.task_name).hook("int8_check")(job)


def int8_quadrotor(job: Job) -> dict:
    from train_fast.evaluate import evaluate_bundle, host_policy
    job.progress(f"flying float and int8 policies on {job.eval_episodes} randomized episodes")
    f, _ = evaluate_bundle(job.bundle, job.eval_episodes, seed=12345)
    q, _ = evaluate_bundle(job.bundle, job.eval_episodes, seed=12345, policy=host_policy(job.quant.forward))
    keys = ("survival_rate", "final_error_median_m", "final_error_p95_m") + (("tracking_rmse_m",) if "tracking_rmse_m" in f else ())
    d_surv = f["survival_rate"] - q["survival_rate"]
    d_err = q["final_error_median_m"] - f["final_error_median_m"]
    ok = d_surv <= INT8_TOLERANCE[0] and (d_err <= INT8_TOLERANCE[1] or not np.isfinite(f["final_error_median_m"]))
    rep = {"episodes": job.eval_episodes, "float32": {k: f[k] for k in keys}, "int8": {k: q[k] for k in keys},
           "survival_drop": d_surv, "median_error_increase_m": d_err,
           "tolerance": {"survival_drop": INT8_TOLERANCE[0], "median_error_increase_m": INT8_TOLERANCE[1]},
           "pass": bool(ok), "calibration": job.quant.calibration}
    job.report["int8_closed_loop"] = rep
    _require(ok, f"int8 policy flies worse than float: survival {q['survival_rate']:.3f} vs {f['survival_rate']:.3f}, "
                 f"median final error {q['final_error_median_m']:.4f} m vs {f['final_error_median_m']:.4f} m "
                 f"(allowed: -{INT8_TOLERANCE[0]:g} and +{INT8_TOLERANCE[1]:g} m)")
    return rep


def int8_race(job: Job) -> dict:
    """rc-car: the int8 policy drives the same laps as the float one; lap time within 2 %, no extra collisions."""
    from train_fast.evaluate import host_policy
    from train_fast.evaluate_car import evaluate_bundle
    n_act = job.bundle.contract["action"]["size"]
    job.progress("driving float and int8 policies around the track")
    f = evaluate_bundle(job.bundle, baseline=False)[0]
    q = evaluate_bundle(job.bundle, baseline=False, policy=host_policy(job.quant.forward, action_size=n_act))[0]
    ok = (q["collisions_per_lap"] <= f["collisions_per_lap"]
          and (q["lap_time_s"] or float("inf")) <= 1.02 * (f["lap_time_s"] or float("inf")))
    rep = {"float32": {k: f[k] for k in ("lap_time_s", "collisions_per_lap")},
           "int8": {k: q[k] for k in ("lap_time_s", "collisions_per_lap")}, "pass": bool(ok),
           "tolerance": "lap time within 2 %, no more collisions", "calibration": job.quant.calibration}
    job.report["int8_closed_loop"] = rep
    _require(ok, f"int8 policy drives worse than float: lap {q['lap_time_s']} s vs {f['lap_time_s']} s, "
                 f"collisions per lap {q['collisions_per_lap']} vs {f['collisions_per_lap']}")
    return rep


def int8_avoid(job: Job) -> dict:
    """avoid: the int8 policy flies the same unseen obstacle fields as the float one; success within 2 points."""
    from train_fast.evaluate import host_policy
    from train_fast.evaluate_avoid import evaluate_bundle
    job.progress(f"flying float and int8 policies through {job.eval_episodes} obstacle fields")
    f = evaluate_bundle(job.bundle, job.eval_episodes, baseline=False)[0]
    q = evaluate_bundle(job.bundle, job.eval_episodes, baseline=False, policy=host_policy(job.quant.forward, action_size=2))[0]
    keys = ("success_rate", "collision_free_distance_median_m")
    ok = q["success_rate"] >= f["success_rate"] - 0.02
    rep = {"episodes": job.eval_episodes, "float32": {k: f[k] for k in keys}, "int8": {k: q[k] for k in keys},
           "tolerance": "success rate within 2 points of float", "pass": bool(ok), "calibration": job.quant.calibration}
    job.report["int8_closed_loop"] = rep
    _require(ok, f"int8 policy flies worse than float: {q['success_rate']:.3f} vs {f['success_rate']:.3f} of fields crossed")
    return rep


def _check_c_on_host(job: Job, files: dict[str, str], work: Path) -> None:
    from edgectl.hostc import load_host_policy
    c = job.bundle.contract
    job.progress("compiling the C policy for this machine and comparing")
    host = load_host_policy(files, c["observation"]["size"], c["action"]["size"], work)
    out = host.batch(job.parity_obs)
    if job.int8:
        want = job.quant.forward(job.parity_obs)
        mismatches = int(np.sum(np.any(out != want, axis=1)))
        job.report.setdefault("parity", {})["c_host_int8"] = {"reference": "numpy integer model", "observations": len(out),
                                                              "mismatches": mismatches, "max_abs_error": _max_err(out, want)}
        _require(mismatches == 0, f"int8 C differs from the NumPy integer model on {mismatches} of {len(out)} observations")
    else:
        _parity(job, "c_host_float32", out)


def target_onnx(job: Job, out: Path) -> None:
    from .onnx_export import OPSET, run_onnx, write_onnx
    if job.int8:
        raise ExportError("--int8 applies to the c, stm32 and crazyflie targets; ONNX is exported in float32 "
                          "(TensorRT builds its own INT8 engine from it: --target tensorrt --int8)")
    path = write_onnx(job.bundle, out / "policy.onnx")
    job.report["onnx"] = {"file": path.name, "opset": OPSET, "input": "observation", "output": "action"}
    _parity(job, "onnxruntime", run_onnx(path, job.parity_obs))


def target_c(job: Job, out: Path) -> None:
    check_budget(job, _estimate_flash(job))
    files = job.c_files()
    for name, text in files.items():
        (out / name).write_text(text)
    with tempfile.TemporaryDirectory(prefix="edgectl-hostc-") as work:
        _check_c_on_host(job, files, Path(work))
    if job.int8:
        _int8_closed_loop(job)


def target_stm32(job: Job, out: Path) -> None:
    from . import stm32
    stm32.check_toolchain()
    check_budget(job, _estimate_flash(job))
    files = job.c_files()
    for name, text in files.items():
        (out / name).write_text(text)
    # QEMU prints every action; 1,000 keeps a run near a second. The observations sit in the image's flash:
    # an image policy (avoid: 197 floats each) gets as many as fit in 400 KB.
    n = min(len(job.parity_obs), 1000, max(100, 400_000 // (4 * job.parity_obs.shape[1])))
    job.progress(f"cross-compiling for Cortex-M4F and running {n} inferences under qemu-system-arm -M netduinoplus2")
    with tempfile.TemporaryDirectory(prefix="edgectl-pil-") as work:
        res = stm32.run_pil(files, job.parity_obs[:n], Path(work))
        # keep what a user may want to inspect or flash by hand; objects and the instruction trace are scratch
        shutil.copy2(res.elf, out / "pil.elf")
        if res.elf.with_suffix(".map").is_file():
            shutil.copy2(res.elf.with_suffix(".map"), out / "pil.map")
    if job.int8:
        want = job.quant.forward(job.parity_obs[:n])
        err = _max_err(res.actions, want)
        mismatches = int(np.sum(np.any(res.actions != want, axis=1)))
        job.report.setdefault("parity", {})["stm32_int8"] = {"reference": "numpy integer model", "observations": n,
                                                             "mismatches": mismatches, "max_abs_error": err}
        _require(mismatches == 0, f"int8 on the Cortex-M4 differs from the NumPy integer model on {mismatches} of {n} observations")
        job.report["max_abs_error_vs_float"] = _max_err(res.actions, job.reference[1][:n])
    else:
        ref_name, ref = job.reference
        err = _max_err(res.actions, ref[:n])
        job.report.setdefault("parity", {})["stm32_float32"] = {"reference": ref_name, "observations": n, "max_abs_error": err}
        _require(err <= FLOAT_TOLERANCE, f"float32 on the Cortex-M4 differs from the {ref_name} actor by {err:.3g} (allowed {FLOAT_TOLERANCE:g})")
    job.report.update(max_abs_error=err, instructions_per_inference=res.instructions_per_inference,
                      flash_bytes=res.flash_bytes, ram_bytes=res.ram_bytes, qemu_machine="netduinoplus2 (STM32F405)")
    check_budget(job, res.flash_bytes, res.ram_bytes, how="measured from the ELF")
    if job.int8:
        _int8_closed_loop(job)


def target_crazyflie(job: Job, out: Path) -> None:
    from .crazyflie_app import write_app
    why_not = registered(job.bundle.task_name).on_board
    if why_not is not None:
        raise ExportError(why_not)
    check_budget(job, _estimate_flash(job))
    files = job.c_files()
    with tempfile.TemporaryDirectory(prefix="edgectl-hostc-") as work:
        _check_c_on_host(job, files, Path(work))
    write_app(job.bundle, files, out)
    job.report["app"] = {"build": f"edgectl build-firmware {out} --firmware-dir PATH/TO/crazyflie-firmware"}
    if job.int8:
        _int8_closed_loop(job)


def target_tflite(job: Job, out: Path) -> None:
    from .tflite_export import verify_tflite, write_tflite
    if job.int8:
        raise ExportError("--int8 applies to the c, stm32 and crazyflie targets; TFLite is exported in float32")
    path = out / "policy.tflite"
    write_tflite(job.bundle, path)
    job.report["tflite"] = {"file": path.name}
    _parity(job, "tflite", verify_tflite(path, job.parity_obs))


def target_tensorrt(job: Job, out: Path) -> None:
    from .onnx_export import run_onnx, write_onnx
    from .tensorrt_export import build_engine
    onnx_path = write_onnx(job.bundle, out / "policy.onnx")
    _parity(job, "onnxruntime", run_onnx(onnx_path, job.parity_obs))
    calib = job.parity_obs if job.int8 else None
    job.report["tensorrt"] = build_engine(onnx_path, out / "policy.engine", fp16=not job.int8, int8=job.int8, calib_obs=calib)
    # The engine is built, not checked: nothing here can run it (no runtime loads an engine; issue 16).
    job.report["tensorrt"]["verified"] = False
    job.report["tensorrt"]["note"] = ("engine built but never run by edgectl: compare it with the bundle on the target "
                                      "(trtexec --loadEngine) before flying; edgectl run flies the ONNX, not the engine")


def target_px4(job: Job, out: Path) -> None:
    from .px4 import target_px4 as px4  # PX4 mc_nn_control's control_net.cpp / .hpp (export/px4.py)
    px4(job, out, check_budget)


TARGETS: dict[str, Callable[[Job, Path], None]] = {
    "onnx": target_onnx, "tflite": target_tflite, "tensorrt": target_tensorrt,
    "c": target_c, "stm32": target_stm32, "crazyflie": target_crazyflie, "px4": target_px4,
}


# --- the atomic driver -----------------------------------------------------------------------------
def _files_with_hashes(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "report.json":
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists():
        if not out.is_dir():
            raise ExportError(f"{out}: exists and is not a folder")
        if any(out.iterdir()) and not overwrite:
            raise ExportError(f"{out}: already exists; pass --overwrite to replace it")
        if any(out.iterdir()) and not (out / "report.json").is_file():
            raise ExportError(f"{out}: not an edgectl export folder (no report.json); refusing to replace it")


def export(bundle_path, target: str, out_dir, *, overwrite: bool = False, **job_kw) -> dict:
    """Export and verify; returns the report (also written to OUT/report.json)."""
    if target not in TARGETS:
        raise ExportError(f"unknown target {target!r}: expected one of {', '.join(TARGETS)}")
    out = Path(out_dir)
    _check_out(out, overwrite)
    job = Job(Path(bundle_path), **job_kw)
    job.bundle  # noqa: B018  (load and verify before anything is written)
    made = [p for p in (out.parent, *out.parent.parents) if not p.exists()]  # folders a failure must take back
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)
        TARGETS[target](job, tmp)
        report = {"target": target, "int8": job.int8, "calibration": job.calibration, "bundle": str(job.bundle.path),
                  "bundle_weights_sha256": job.bundle.manifest["weights"]["sha256"],
                  "platform": job.bundle.platform_name, "task": job.bundle.task_name, **job.report}
        report["files"] = _files_with_hashes(tmp)
        # strict JSON: a non-finite figure is null; a value json cannot hold is refused, never str()'d
        (tmp / "report.json").write_text(dumps_strict(json_value(report, other=None), indent=2) + "\n")
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for p in made:  # innermost first: a failed export leaves the disk as it found it
            try:
                p.rmdir()
            except OSError:
                break
        raise
    return report


__all__ = ["export", "TARGETS", "Job", "ExportError", "TargetUnavailable", "check_budget"]

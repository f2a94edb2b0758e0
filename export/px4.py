"""`--target px4`: a bundle as the model PX4's `mc_nn_control` module compiles (control_net.cpp / control_net.hpp).

PX4 v1.17's `mc_nn_control` runs a TensorFlow Lite Micro model on the flight controller and drives
`actuator_motors` with it. The model is compiled in from `control_net.cpp` / `control_net.hpp` (the output of
`xxd -i` of a .tflite, per docs/en/advanced/tflm.md). This target writes those two files from a bundle, plus the
.tflite itself, and proves that the model, run through a TFLite interpreter on the module's own inputs and followed
by the module's own action rescaling, commands the motors the bundle's policy commands.

Facts from the source (PX4/PX4-Autopilot, main = the v1.17 line: docs/en/advanced/neural_networks.md carries the
badge "main (planned for: PX4 v1.17)"; file versions read, by the commit of each stored version, are in SOURCES).
Written from the facts, no PX4 code copied:

* Model symbols (control_net.hpp, control_net.cpp): `constexpr unsigned int control_net_tflite_size` and
  `extern const unsigned char control_net_tflite[]`, defined `alignas(16)`; CMakeLists.txt compiles
  control_net.cpp and control_net.hpp into the module. `InitializeNetwork()` calls `tflite::GetModel` on the
  array.
* Ops (mc_nn_control.cpp `RegisterOps`, nn_control_model.hpp `nn_control::register_ops`):
  `MicroMutableOpResolver<3>` with FULLY_CONNECTED, RELU and ADD only. A model with any other op (TANH, SUB, DIV,
  MAXIMUM, MINIMUM, ... which `--target tflite` uses) fails `AllocateTensors()` on the vehicle.
* Tensor arena (`InitializeNetwork`): `kTensorArenaSize = 10 * 1024` bytes.
* Input (`PopulateInputTensor`): 15 float32 in `input(0)->data.f`, built from uORB NED/FRD data through two
  fixed matrices into ENU world / FLU body: [0:3] trajectory setpoint minus position (ENU, m);
  [3:9] the first two rows of the body(FLU)-to-world(ENU) rotation matrix, row-major;
  [9:12] linear velocity (ENU, m/s, vehicle_local_position vx, vy, vz); [12:15] angular velocity (FLU, rad/s,
  vehicle_angular_velocity xyz). No normalization: raw values. A missing setpoint holds the position where the
  mode was entered (`reset_trajectory_setpoint`); MC_NN_MANL_CTRL (default on) moves it with the sticks.
* Output (`RescaleActions` / nn_control::rescale_action in actions_rescale.hpp, `PublishOutput`): 4 floats,
  each clamped to [-1, 1]; rpm = 60 sqrt((a + 1) / k), k = MC_NN_THRST_COEF / 1e5; x = (rpm - MC_NN_MIN_RPM) /
  (MC_NN_MAX_RPM - MC_NN_MIN_RPM) (clamped to [0, 1] in the newer actions_rescale.hpp); command = 0.8 x^2 + 0.2 x
  -> actuator_motors.control[0..3] (normalized [0, 1]), control[4..11] NaN, reversible_flags 0. Defaults
  (mc_nn_control_params.yaml): MC_NN_THRST_COEF 1.2, MC_NN_MIN_RPM 1000, MC_NN_MAX_RPM 22000.
* Motor order: actuator_motors.control[i] drives motor i + 1 of the airframe's control allocation; PX4 Quad X:
  1 front-right, 2 back-left, 3 front-left, 4 back-right (edgectl/mixers.py MIXERS["px4"]).
* Rate (`init`, `Run`): a callback on vehicle_angular_velocity, so one inference per gyro publication
  (IMU_GYRO_RATEMAX, 400 Hz by default), not a fixed policy rate.

What is folded into the exported model, and how exactly:
* the bundle's normalization and the module's input convention (position error sign: the module feeds setpoint
  minus position, a bundle observes position minus reference; field order; rows 0-1 of the rotation matrix)
  become the first FULLY_CONNECTED layer: a signed selection composed with the affine normalization, exact up to
  float32 rounding. ENU / FLU are edgectl's own world (z up) and body (x forward, y left, z up) frames, so no
  rotation is needed.
* the module's action rescaling is inverted so that actuator_motors.control equals the bundle's motor output
  u = (clip(a, -1, 1) + 1) / 2 (the PX4 motor output px4_x500_v2's thrust curve is written in): the inverse is a
  square and a square root, which FULLY_CONNECTED / RELU / ADD cannot express exactly, so it is a piecewise-linear
  interpolant in RELU hinges (knots dense enough for MAPPING_TOLERANCE) after the bundle's last layer (passed
  through a ReLU exactly as [a, -a]); the clip to [-1, 1] is exact in the same hinges. It holds for the MC_NN_* values recorded in report.json (the
  defaults): change them on the vehicle and the motors no longer get what the policy asks.

Refused, with one line naming the field: what the module does not feed (previous actions, a position-error
integral, the rotation matrix's third row when the policy reads it, a reference velocity), a hidden activation
other than ReLU (no TANH in the resolver), an action that is not four motor outputs, and a vehicle whose motors
PX4 does not drive as its Quad X (a Crazyflie bundle: see `_check_platform`).
"""
from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np


from .errors import ExportError

# --- facts from PX4/PX4-Autopilot (file -> the commit of the stored version that was read) --------------------------
SOURCES = {
    "repository": "https://github.com/PX4/PX4-Autopilot",
    "line": "main, planned for PX4 v1.17 (docs/en/advanced/neural_networks.md badge); no v1.17 tag was read",
    "files": {
        "src/modules/mc_nn_control/mc_nn_control.cpp": "014866564299bf6818138f8591403a208571f100",
        "src/modules/mc_nn_control/nn_control_model.hpp": "5b98851a2f02a7369da8c873623eb0a6b4af3f06",
        "src/modules/mc_nn_control/actions_rescale.hpp": "a6b61b02d61b7521461709dc968986ad2e306f0d",
        "src/modules/mc_nn_control/control_net.hpp": "42d76a5495d7c908f632b0276342144be3444c9e",
        "src/modules/mc_nn_control/control_net.cpp": "32cb89f60fa6858f8800a1cf35f85f6b7fc45785",
        "src/modules/mc_nn_control/CMakeLists.txt": "22243b1e6da0954361b830fec4a5fc3fbb6f381e",
        "src/modules/mc_nn_control/mc_nn_control_params.yaml": "34eb5b73fca6a824446eef6837bf1d268c23349e",
        "docs/en/advanced/neural_networks.md": "136b586a3f5a329d8bc86364375368b6daef71e8",
        "docs/en/advanced/tflm.md": "72e8a0e149b2c166ec15a37e40f270cfa9fb04e6",
        "src/lib/tflm/CMakeLists.txt": "42d76a5495d7c908f632b0276342144be3444c9e",
        "cmake/px4_add_common_flags.cmake": "014b89c74117e57138c8a77c573496e9e2337692",
    },
}
# PX4's compile flags for C++ (cmake/px4_add_common_flags.cmake px4_add_common_flags, stored version
# 014b89c74117e57138c8a77c573496e9e2337692), less `-include visibility.h` (a PX4 header); mc_nn_control's
# CMakeLists.txt drops -Wcast-align and adds -Wno-float-equal. src/lib/tflm/CMakeLists.txt (stored version
# 42d76a5495d7c908f632b0276342144be3444c9e) adds -Wno-float-equal -Wno-shadow PUBLIC, i.e. to the module too.
PX4_CXXFLAGS = ("-std=gnu++17", "-Wall", "-Wextra", "-Werror", "-Warray-bounds", "-Wdisabled-optimization",
                "-Wdouble-promotion", "-Wfatal-errors", "-Wformat-security", "-Winit-self", "-Wlogical-op",
                "-Wpointer-arith", "-Wshadow", "-Wuninitialized", "-Wunknown-pragmas", "-Wunused-variable",
                "-Wno-missing-field-initializers", "-Wno-unused-parameter", "-Wno-float-equal", "-fno-exceptions",
                "-fno-rtti", "-fno-threadsafe-statics", "-Wreorder", "-fvisibility=hidden", "-fdata-sections",
                "-ffunction-sections")
TFLM_PUBLIC_FLAGS = ("-Wno-float-equal", "-Wno-shadow")
MODULE_OPS = ("FULLY_CONNECTED", "RELU", "ADD")  # RegisterOps: MicroMutableOpResolver<3>
TENSOR_ARENA_BYTES = 10 * 1024  # InitializeNetwork: kTensorArenaSize
ARRAY, SIZE_SYMBOL = "control_net_tflite", "control_net_tflite_size"
HEADER, SOURCE = "control_net.hpp", "control_net.cpp"
N_INPUT, N_OUTPUT = 15, 4
# (module input slice, what PopulateInputTensor writes there)
INPUTS = (
    ((0, 3), "position error = trajectory setpoint - position, world ENU (x east, y north, z up), m; "
             "from vehicle_local_position x, y, z and trajectory_setpoint position (NED) through the NED->ENU matrices"),
    ((3, 9), "rows 0 and 1 of the rotation matrix body FLU -> world ENU, row-major (R00 R01 R02 R10 R11 R12), 1; "
             "from vehicle_attitude q (FRD -> NED) as F F2 R F^T"),
    ((9, 12), "linear velocity, world ENU, m/s; from vehicle_local_position vx, vy, vz (NED)"),
    ((12, 15), "angular velocity, body FLU (x forward, y left, z up), rad/s; from vehicle_angular_velocity xyz (FRD)"),
)
# MC_NN_* defaults (mc_nn_control_params.yaml) and the rescaling constants (RescaleActions / rescale_action)
PARAMS = {"MC_NN_THRST_COEF": 1.2, "MC_NN_MIN_RPM": 1000.0, "MC_NN_MAX_RPM": 22000.0}
_COEF_SCALE, _CURVE_A = 1e5, 0.8
PX4_QUAD_X = "motor 1 front-right, 2 back-left, 3 front-left, 4 back-right = actuator_motors.control[0..3]"

# Motor commands reach the ESC in steps of 1/2000 (DShot 48..2047) or 1/1000 (PWM 1000..2000 us): 1e-4 is a fifth of
# the finer one.
MAPPING_TOLERANCE = 1e-4  # max |module command - bundle motor output| of the hinge interpolant alone (dense grid)
COMMAND_TOLERANCE = 2e-4  # the export's parity bound: interpolant + float32 through the TFLite interpreter


# --- the module's action rescaling and its inverse ---------------------------------------------------------------
def module_command(action, params: dict = PARAMS) -> np.ndarray:
    """actuator_motors.control for network outputs `action`, as RescaleActions / rescale_action compute it (float64)."""
    k = params["MC_NN_THRST_COEF"] / _COEF_SCALE
    lo, hi = params["MC_NN_MIN_RPM"], params["MC_NN_MAX_RPM"]
    a = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
    rpm = 60.0 * np.sqrt((a + 1.0) / k)
    x = np.clip((rpm - lo) / (hi - lo), 0.0, 1.0)
    return _CURVE_A * x * x + (1.0 - _CURVE_A) * x


def _action_for_x(x, params: dict = PARAMS) -> np.ndarray:
    """The network output whose rpm sits at fraction x between MC_NN_MIN_RPM and MC_NN_MAX_RPM."""
    k = params["MC_NN_THRST_COEF"] / _COEF_SCALE
    lo, hi = params["MC_NN_MIN_RPM"], params["MC_NN_MAX_RPM"]
    rpm = lo + np.asarray(x, np.float64) * (hi - lo)
    return k * (rpm / 60.0) ** 2 - 1.0


def _check_params(params: dict) -> None:
    lowest, highest = _action_for_x(0.0, params), _action_for_x(1.0, params)
    if not (lowest >= -1.0 and highest <= 1.0):
        raise ExportError(f"MC_NN_THRST_COEF {params['MC_NN_THRST_COEF']}, MC_NN_MIN_RPM {params['MC_NN_MIN_RPM']}, "
                          f"MC_NN_MAX_RPM {params['MC_NN_MAX_RPM']}: the module reaches idle..full scale only for "
                          f"network outputs {lowest:.4f}..{highest:.4f}, outside its clamp [-1, 1]")


def hinge_inverse(params: dict = PARAMS, tolerance: float = MAPPING_TOLERANCE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(knots t, hinge coefficients c, value at the first knot f0) with
    f(a) = f0 + sum_j c_j relu(a - t_j), a piecewise-linear f such that module_command(f(a)) ~= (clip(a, -1, 1) + 1) / 2
    within `tolerance` for every a (flat outside [-1, 1]: the clip is exact). Knots are uniform in the rpm fraction x,
    where both the module's action and the bundle's motor output are quadratics."""
    _check_params(params)
    for n in (8, 16, 24, 32, 48, 64, 96, 128, 192, 256):
        x = np.linspace(0.0, 1.0, n + 1)
        t = 2.0 * (_CURVE_A * x * x + (1.0 - _CURVE_A) * x) - 1.0  # bundle action at the knot: u = (a + 1) / 2
        f = _action_for_x(x, params)
        m = np.diff(f) / np.diff(t)
        c = np.concatenate([[m[0]], np.diff(m), [-m[-1]]])
        a = np.linspace(-1.25, 1.25, 200_001)
        got = module_command(f[0] + np.maximum(a[:, None] - t[None, :], 0.0) @ c, params)
        err = float(np.max(np.abs(got - (np.clip(a, -1.0, 1.0) + 1.0) / 2.0)))
        if err <= tolerance:
            return t, c, np.float64(f[0])
    raise ExportError(f"the inverse of the module's action rescaling needs more than 256 knots for {tolerance:g}")


# --- the contract check and the input fold -------------------------------------------------------------------------
_FEEDS = {  # bundle field -> (unit, frame, [(module input index, sign) per element, None = not fed])
    "position_error": ("m", "world", [(0, -1.0), (1, -1.0), (2, -1.0)]),
    "rotation_matrix": ("1", "body-to-world, row-major", [(3, 1.0), (4, 1.0), (5, 1.0), (6, 1.0), (7, 1.0), (8, 1.0),
                                                         None, None, None]),
    "velocity_error": ("m/s", "world", [(9, 1.0), (10, 1.0), (11, 1.0)]),
    "angular_velocity": ("rad/s", "body", [(12, 1.0), (13, 1.0), (14, 1.0)]),
}
_FRAMES = ("world z up", "body x forward, y left, z up")


def _check_platform(job) -> list[str]:
    """A vehicle PX4 flies with its Quad X allocation. A Crazyflie bundle is refused, not warned about: its actions
    are the Crazyflie firmware's motor commands (M1 front-right, M2 back-right, ... and the brushed-motor thrust curve
    of that firmware's PWM), its dynamics a 30 g vehicle's; PX4's own Crazyflie board support numbers and maps its
    motors differently, which edgectl does not model, so no conversion here would be checked against anything."""
    from edgectl.mixers import mismatch
    from edgectl.platforms import tomllib  # tomllib, or tomli on Python 3.10
    p = job.platform
    fw = tomllib.loads(p.raw.decode("utf-8")).get("platform", {}).get("firmware")  # the loader checked its mixer
    if fw != "px4":
        return [f"platform: {p.name} (firmware {fw!r}); mc_nn_control runs inside PX4 and drives actuator_motors as "
                f"PX4's Quad X ({PX4_QUAD_X}), this policy drives the {fw} firmware's motors and dynamics: export a "
                f"bundle of a PX4 platform (px4_x500_v2), or use --target {'crazyflie' if fw == 'crazyflie' else 'onnx'}"]
    m = job.bundle.contract["action"].get("mapping", {})
    bad = mismatch("px4", m.get("rotor_positions", []), m.get("spin", [])) if m.get("rotor_positions") else None
    return [f"action.mapping.rotor_positions: {bad}"] if bad else []


def contract_problems(job) -> list[str]:
    """Every reason the module cannot run this bundle's policy, each one line naming the field; [] if it can."""
    b, c = job.bundle, job.bundle.contract
    problems = _check_platform(job)
    a = c["action"]
    kind = a.get("mapping", {}).get("kind")
    if kind != "thrust_curve" or a["size"] != N_OUTPUT:
        problems.append(f"action.mapping: {kind!r} ({a['size']} actions: {', '.join(a.get('names', []))}); mc_nn_control's "
                        f"network outputs are {N_OUTPUT} motor commands (RescaleActions -> actuator_motors)"
                        + ("; a collective-thrust + body-rate policy flies PX4 from a companion computer: edgectl run "
                           "--uri udpin:... (SET_ATTITUDE_TARGET)" if kind == "ctbr" else ""))
    elif "u = (clip(a, -1, 1) + 1) / 2" not in a["mapping"].get("formula", "") or (a["low"], a["high"]) != (-1.0, 1.0):
        problems.append(f"action.mapping.formula: {a['mapping'].get('formula')!r}: expected u = (clip(a, -1, 1) + 1) / 2, "
                        "the PX4 motor output")
    frames = c.get("frames", "")
    if not all(s in frames for s in _FRAMES):
        problems.append(f"frames: {frames!r}; the module's inputs are world ENU / body FLU ({'; '.join(_FRAMES)})")
    w0 = b.layers[0][0]
    start = 0
    for f in c["observation"]["fields"]:
        name, n = f["name"], f["size"]
        feed = _FEEDS.get(name)
        if feed is None:
            problems.append(f"observation.{name}: mc_nn_control feeds 15 values (position error, rotation rows 0-1, "
                            f"velocity, angular velocity: PopulateInputTensor), no {name} ({n} x {f['unit']})")
        elif (f["unit"], f["frame"], n) != (feed[0], feed[1], len(feed[2])):
            problems.append(f"observation.{name}: {n} x {f['unit']!r} in {f['frame']!r}, the module feeds "
                            f"{len(feed[2])} x {feed[0]!r} in {feed[1]!r}")
        else:
            unfed = [i for i, e in enumerate(feed[2]) if e is None]
            used = [i for i in unfed if np.any(w0[start + i] != 0)]
            if used:
                problems.append(f"observation.{name}: the policy reads elements {used} (R[2, :], the body's view of world "
                                f"up; max |first-layer weight| {float(np.max(np.abs(w0[[start + i for i in used]]))):.3g}), "
                                "mc_nn_control feeds rows 0-1 only (6 values, PopulateInputTensor) and its ops "
                                "(FULLY_CONNECTED, RELU, ADD) cannot rebuild row 2 (a cross product)")
            if name == "velocity_error" and c.get("reference"):  # a moving reference (figure8): not a fixed setpoint
                problems.append(f"observation.velocity_error: the {b.task_name} task's reference velocity (contract "
                                f"reference {c['reference'].get('kind')!r}); mc_nn_control feeds the vehicle's velocity "
                                "and a position setpoint, no velocity reference")
        start += n
    act = b.manifest["policy"].get("activation")
    if b.manifest["policy"].get("kind") != "mlp" or act != "relu":
        problems.append(f"policy.activation: {act!r}; mc_nn_control registers {', '.join(MODULE_OPS)} only "
                        "(RegisterOps, MicroMutableOpResolver<3>), so its hidden layers must be ReLU (no TANH op)")
    return problems


def input_map(contract: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(idx, sign, fed): module input i = sign[i] * observation[idx[i]]; fed[j] is False for an observation element
    the module does not feed (its first-layer weights must be zero)."""
    idx, sign = np.full(N_INPUT, -1), np.zeros(N_INPUT)
    fed = np.zeros(contract["observation"]["size"], bool)
    start = 0
    for f in contract["observation"]["fields"]:
        for j, e in enumerate(_FEEDS[f["name"]][2]):
            if e is not None:
                idx[e[0]], sign[e[0]], fed[start + j] = start + j, e[1], True
        start += f["size"]
    assert np.all(idx >= 0), "every module input comes from one observation element"
    return idx, sign, fed


def module_inputs(contract: dict, obs: np.ndarray) -> np.ndarray:
    """The 15 values PopulateInputTensor writes for the state behind edgectl observations `obs` (N, n)."""
    idx, sign, _ = input_map(contract)
    return (np.asarray(obs, np.float64)[:, idx] * sign).astype(np.float32)


def px4_layers(bundle, params: dict = PARAMS) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict]:
    """The exported network's layers (weight [in, out], bias), ReLU between all of them, linear output:
    module input (15) -> the bundle's hidden layers -> its last layer as [a, -a] (8: a = relu(a) - relu(-a) exactly, a
    linear value through a ReLU) -> hinges relu(a_i - t_j) (4 x knots) -> 4 network outputs for RescaleActions."""
    c = bundle.contract
    norm = c["observation"]["normalization"]
    off, scale = np.asarray(norm["offset"], np.float64), np.asarray(norm["scale"], np.float64)
    idx, sign, _ = input_map(c)
    layers = [(np.asarray(w, np.float64), np.asarray(b, np.float64)) for w, b in bundle.layers]
    w0, b0 = layers[0]
    # h = ((obs - off) / scale) @ W0 + b0, obs[idx] = sign * x, unfed elements have zero rows in W0
    w0n = w0 / scale[:, None]
    layers[0] = ((w0n[idx] * sign[:, None]), b0 - off @ w0n)
    t, coef, f0 = hinge_inverse(params)
    wl, bl = layers[-1]
    layers[-1] = (np.concatenate([wl, -wl], axis=1), np.concatenate([bl, -bl]))
    k = len(t)
    wh = np.zeros((2 * N_OUTPUT, N_OUTPUT * k))  # column i * k + j: motor i, knot j
    for i in range(N_OUTPUT):
        wh[i, i * k:(i + 1) * k], wh[N_OUTPUT + i, i * k:(i + 1) * k] = 1.0, -1.0
    bh = np.tile(-t, N_OUTPUT)
    wo = np.zeros((N_OUTPUT * k, N_OUTPUT))
    for i in range(N_OUTPUT):
        wo[i * k:(i + 1) * k, i] = coef
    layers += [(wh, bh), (wo, np.full(N_OUTPUT, f0))]
    return [(w.astype(np.float32), b.astype(np.float32)) for w, b in layers], {"knots": int(k), "first_action": float(f0)}


def model_bytes(bundle, params: dict = PARAMS) -> tuple[bytes, dict]:
    """The .tflite the module runs: FULLY_CONNECTED and RELU only (written by tflite_export's flatbuffer writer)."""
    from .tflite_export import tflite_bytes
    layers, info = px4_layers(bundle, params)
    proxy = SimpleNamespace(
        layers=layers, platform_name=bundle.platform_name, task_name=bundle.task_name,
        manifest={"policy": {"kind": "mlp", "activation": "relu", "output_activation": "clip"}},
        contract={"observation": {"normalization": {"offset": [0.0] * N_INPUT, "scale": [1.0] * N_INPUT}},
                  "action": {"low": -1.0, "high": 1.0}})
    desc = (f"edgectl policy for PX4 mc_nn_control: {bundle.platform_name}/{bundle.task_name}; input 15 (position "
            f"error ENU, R rows 0-1, velocity ENU, rates FLU), output 4 motor actions for RescaleActions")
    return tflite_bytes(proxy, clip=False, description=desc), info


def tflite_ops(data: bytes) -> list[str]:
    from ai_edge_litert import schema_py_generated as schema
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return sorted({names[c.builtinCode] for c in m.operatorCodes})


def arena_estimate(layers) -> int:
    """Bytes of TFLM arena: the two largest activations alive together, plus TFLM's per-tensor and per-node records
    (an upper estimate; the module's arena is TENSOR_ARENA_BYTES)."""
    widths = [N_INPUT] + [w.shape[1] for w, _ in layers]
    acts = [widths[0]] + [x for w in widths[1:-1] for x in (w, w)] + [widths[-1]]
    peak = max(4 * (a + b) for a, b in zip(acts, acts[1:]))
    n_tensors = 1 + 2 * len(layers) + 2 * (len(layers) - 1) + len(layers) + 1
    n_ops = 2 * len(layers) - 1
    return peak + 96 * n_tensors + 128 * n_ops + 1024


# --- the C++ files --------------------------------------------------------------------------------------------------
def cpp_files(data: bytes, banner: str) -> dict[str, str]:
    """control_net.hpp / control_net.cpp with the symbols InitializeNetwork uses (control_net.hpp's interface)."""
    head = "".join(f"// {line}\n" for line in banner.splitlines())
    hpp = (f"{head}#pragma once\n\n#include <cstdint>\n\n"
           f"constexpr unsigned int {SIZE_SYMBOL} = {len(data)};\n"
           f"extern const unsigned char {ARRAY}[];\n")
    rows = [", ".join(f"0x{x:02x}" for x in data[i:i + 12]) for i in range(0, len(data), 12)]
    cpp = (f"{head}#include <cstdint>\n#include \"{HEADER}\"\n\n"
           f"alignas(16) const unsigned char {ARRAY}[] = {{\n\t" + ",\n\t".join(rows) + "\n};\n\n"
           f"static_assert(sizeof({ARRAY}) == {SIZE_SYMBOL}, \"{HEADER} and {SOURCE} disagree on the model size\");\n")
    return {HEADER: hpp, SOURCE: cpp}


def bytes_from_cpp(text: str) -> bytes:
    """The model bytes as written in control_net.cpp (what the compiler will put in flash)."""
    m = re.search(r"\b" + ARRAY + r"\[\]\s*=\s*\{([^}]*)\}", text)
    if not m:
        raise ExportError(f"{SOURCE}: no {ARRAY}[] initializer")
    return bytes(int(x, 16) for x in re.findall(r"0x([0-9a-fA-F]{2})", m.group(1)))


# --- the target ---------------------------------------------------------------------------------------------------
def run_tflite_bytes(data: bytes, x: np.ndarray) -> np.ndarray:
    from .tflite_export import _litert
    _, _, Interpreter = _litert()
    try:
        interp = Interpreter(model_content=data, num_threads=1)
    except (ValueError, RuntimeError) as e:
        raise ExportError(f"{SOURCE}: the TFLite interpreter refused the model bytes: {e}") from None
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    x = np.ascontiguousarray(x, np.float32)
    interp.resize_tensor_input(inp["index"], list(x.shape))
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    return np.array(interp.get_tensor(out["index"]), np.float32)


def target_px4(job, out: Path, check_budget) -> None:
    """The target (export/targets.py registers it and passes its check_budget: no import back, no cycle)."""
    if job.int8:
        raise ExportError("--int8 applies to the c, stm32 and crazyflie targets; mc_nn_control runs a float32 model "
                          "(its input and output tensors are read as data.f)")
    problems = contract_problems(job)
    if problems:
        more = [p.split(":")[0] for p in problems[1:]]
        hint = "" if problems[0].startswith("platform:") else (
            f"; a hover policy the module runs: edgectl train quadrotor --platform {job.bundle.platform_name} --for px4")
        raise ExportError(f"--target px4: {problems[0]}" + (f" (also: {', '.join(more)})" if more else "") + hint)
    data, info = model_bytes(job.bundle)
    ops = tflite_ops(data)
    if not set(ops) <= set(MODULE_OPS):
        raise ExportError(f"--target px4: the model uses {sorted(set(ops) - set(MODULE_OPS))}, mc_nn_control registers "
                          f"{', '.join(MODULE_OPS)}")
    layers, _ = px4_layers(job.bundle)
    arena = arena_estimate(layers)
    if arena > TENSOR_ARENA_BYTES:
        raise ExportError(f"--target px4: the model needs about {arena:,} B of tensor arena, mc_nn_control allocates "
                          f"{TENSOR_ARENA_BYTES:,} B (InitializeNetwork kTensorArenaSize): train a narrower actor")
    check_budget(job, len(data), arena, how="model bytes / estimated arena")

    b = job.bundle
    banner = (f"Generated by edgectl export --target px4 from {b.path.name} ({b.platform_name}/{b.task_name}).\n"
              f"Replaces src/modules/mc_nn_control/{HEADER} and {SOURCE} of PX4-Autopilot (v1.17 line).\n"
              f"Model: {len(data)} B TFLite flatbuffer, ops {', '.join(ops)}; see report.json for its conventions.")
    files = cpp_files(data, banner)
    for name, text in files.items():
        (out / name).write_text(text)
    (out / "policy.tflite").write_bytes(data)

    # parity: the bytes as written in control_net.cpp, on the module's inputs, through the module's rescaling
    obs = job.parity_obs
    x15 = module_inputs(b.contract, obs)
    compiled = bytes_from_cpp(files[SOURCE])
    if compiled != data:
        raise ExportError(f"{SOURCE}: the array does not hold the model bytes")
    y = run_tflite_bytes(compiled, x15)
    ref_name, ref = job.reference
    want = (np.clip(ref.astype(np.float64), -1.0, 1.0) + 1.0) / 2.0
    got = module_command(y)
    err = float(np.max(np.abs(got - want)))
    job.report.setdefault("parity", {})["tflite_px4_motor_command"] = {
        "reference": f"{ref_name} actor, u = (clip(a) + 1) / 2", "observations": int(len(obs)), "max_abs_error": err,
        "tolerance": COMMAND_TOLERANCE, "compared": "actuator_motors.control[0..3] the module publishes for the "
        "model's outputs (RescaleActions with the MC_NN_* below) vs the bundle's motor output, on the module's "
        "15 inputs for the same states; model run from the bytes in control_net.cpp by ai_edge_litert"}
    if not err <= COMMAND_TOLERANCE:
        raise ExportError(f"px4: motor commands differ from the {ref_name} actor's by {err:.3g} on {len(obs)} "
                          f"observations, allowed {COMMAND_TOLERANCE:g}: the exported model does not compute the policy")
    job.report["max_abs_error"] = err
    job.report["px4"] = _conventions(b, data, ops, arena, info)


def _conventions(b, data: bytes, ops: list[str], arena: int, info: dict) -> dict:
    c = b.contract
    rate = float(c["rate_hz"])
    return {
        "module": "mc_nn_control (PX4-Autopilot src/modules/mc_nn_control)",
        "source": SOURCES,
        "files": {HEADER: f"constexpr unsigned int {SIZE_SYMBOL} = {len(data)}; extern const unsigned char {ARRAY}[]",
                  SOURCE: f"alignas(16) const unsigned char {ARRAY}[{len(data)}] (+ a static_assert on the size)",
                  "policy.tflite": "the same bytes, for inspection"},
        "install": [f"copy {HEADER} and {SOURCE} over PX4-Autopilot/src/modules/mc_nn_control/",
                    "build a board with CONFIG_LIB_TFLM=y and CONFIG_MODULES_MC_NN_CONTROL=y (make px4_sitl_neural, "
                    "make px4_fmu-v6c_neural: docs/en/advanced/neural_networks.md)",
                    "set " + ", ".join(f"{k} = {v:g}" for k, v in PARAMS.items()) + " (the defaults; the motor "
                    "mapping below holds only for these)",
                    "fly it in the 'Neural Control' mode the module registers (external mode, direct actuators)"],
        "ops": {"used": ops, "module_registers": list(MODULE_OPS), "where": "mc_nn_control.cpp RegisterOps"},
        "tensor_arena": {"module_bytes": TENSOR_ARENA_BYTES, "estimated_bytes": arena, "where": "InitializeNetwork"},
        "input": {
            "tensor": "input(0), float32 [1, 15], raw values (no normalization: the bundle's is folded into layer 0)",
            "order": [{"slice": list(s), "value": v} for s, v in INPUTS],
            "where": "mc_nn_control.cpp PopulateInputTensor",
            "frames": "world ENU and body FLU are edgectl's world (z up) and body (x forward, y left, z up): no rotation",
            "folded": ["position_error: the module feeds setpoint - position, the bundle observes position - reference: "
                       "sign -1 in layer 0 (exact)",
                       "rotation_matrix: elements 0-5 from inputs 3-8; elements 6-8 (row 2) are not fed and the policy's "
                       "weights on them are zero (checked)",
                       "velocity_error: the vehicle velocity (hover: reference velocity 0)",
                       "normalization (x - offset) / scale: folded into layer 0 (exact up to float32 rounding)"],
            "setpoint": "trajectory_setpoint position (offboard), or the position where the mode was entered, moved by "
                        "the sticks when MC_NN_MANL_CTRL = 1 (default); NaN setpoint -> (0, 0, -1) NED",
        },
        "output": {
            "tensor": "output(0), float32 [1, 4]",
            "module_mapping": "a -> clamp [-1, 1]; rpm = 60 sqrt((a + 1) / (MC_NN_THRST_COEF / 1e5)); x = (rpm - "
                              "MC_NN_MIN_RPM) / (MC_NN_MAX_RPM - MC_NN_MIN_RPM) in [0, 1]; actuator_motors.control = "
                              "0.8 x^2 + 0.2 x (RescaleActions, actions_rescale.hpp rescale_action)",
            "params": dict(PARAMS),
            "folded": f"the bundle's motor output u = (clip(a, -1, 1) + 1) / 2 is what actuator_motors.control gets: "
                      f"the module's mapping is inverted by a piecewise-linear RELU layer ({info['knots']} knots per "
                      f"motor, uniform in x, after the bundle's last layer; interpolation error <= "
                      f"{MAPPING_TOLERANCE:g} of full scale); approximate, not exact: the inverse needs a square and a "
                      "square root the module's ops do not have",
            "motor_order": f"identity: the bundle's m1..m4 are PX4 Quad X {PX4_QUAD_X} (platform rotors checked "
                           "against edgectl/mixers.py MIXERS['px4'])",
            "normalized": "actuator_motors.control in [0, 1]; control[4..11] NaN (PublishOutput)",
        },
        "rate": {"module": "one inference per vehicle_angular_velocity update (gyro rate, IMU_GYRO_RATEMAX default "
                           "400 Hz: init / Run)", "bundle_hz": rate,
                 "warning": f"the policy was trained at {rate:g} Hz and the module runs it at the gyro rate; the policy "
                            "is memoryless (no previous actions, no integral), so its inputs do not depend on the rate, "
                            "but the closed loop is not the one trained: fly it in PX4 SITL (make px4_sitl_neural) "
                            "before a vehicle"},
        "vehicles": "PX4 Quad X platforms only (platform.firmware = px4). Crazyflie bundles are refused: their actions "
                    "are the Crazyflie firmware's motor commands and thrust curve for a 30 g vehicle; PX4's Crazyflie "
                    "board support maps motors differently and edgectl models neither, so nothing would check the "
                    "conversion.",
    }


__all__ = ["target_px4", "contract_problems", "module_command", "module_inputs", "model_bytes", "cpp_files",
           "bytes_from_cpp", "hinge_inverse", "SOURCES", "MODULE_OPS", "TENSOR_ARENA_BYTES", "INPUTS", "PARAMS"]

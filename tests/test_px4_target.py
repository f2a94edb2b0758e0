"""`edgectl export --target px4` (export/px4.py): the model PX4's mc_nn_control compiles (control_net.cpp/.hpp).

The normal trained bundles read the rotation matrix's third row, previous actions and an integral, with tanh
layers, and mc_nn_control feeds none of those (the refusals below); `edgectl train --for px4` trains one it runs
(tests/test_px4_train.py). The exportable bundle here is written with the module's contract (hover on px4_x500_v2,
no action history, no integral, ReLU, no weight on R[2, :]) and seeded random weights: parity and the build do not
need a policy that flies.

The module's conventions are checked against PopulateInputTensor's own arithmetic (its two frame matrices applied to
an NED/FRD state, written here from the facts in export/px4.py) and against edgectl's observation builder on the
same state expressed in ENU/FLU.
"""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgectl.bundle import load_bundle, write_bundle
from export import px4
from export.errors import ExportError

DATA = Path(__file__).parent / "data"


def _px4_bundle(out: Path, *, zero_row2=True, activation="relu", seed=0, **task_over) -> Path:
    from train_fast.envs import build_task
    over = {"action_history": 0, "integral_tau": 0.0, **task_over}
    mod, _, contract, plat = build_task("hover", "px4_x500_v2", **over)
    cfg = mod.TASKS["hover"](**over)
    rng = np.random.default_rng(seed)
    sizes = [contract["observation"]["size"], 32, 32, 4]
    weights, layers = {}, []
    for i in range(3):
        w = rng.normal(0.0, 1.0 / np.sqrt(sizes[i]), (sizes[i], sizes[i + 1])).astype(np.float32)
        if i == 0 and zero_row2:
            w[9:12] = 0.0  # rotation_matrix elements 6..8: R[2, :]
        weights[f"actor.{i}.weight"] = w
        weights[f"actor.{i}.bias"] = rng.normal(0.0, 0.1, sizes[i + 1]).astype(np.float32)
        layers.append({"weight": f"actor.{i}.weight", "bias": f"actor.{i}.bias"})
    return write_bundle(out, contract=contract, policy={"kind": "mlp", "activation": activation, "output_activation": "clip",
                                                        "layers": layers},
                        weights=weights, platform_toml=plat.raw, platform_name=plat.name,
                        task=dataclasses.asdict(cfg) | {"name": "hover"}, seed=seed, metrics={}, versions={})


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from export.targets import export
    d = tmp_path_factory.mktemp("px4")
    bundle = _px4_bundle(d / "bundle")
    report = export(bundle, "px4", d / "out", samples=2000, calibration="random-states")
    return bundle, d / "out", report


# --- the module's arithmetic, from the facts ------------------------------------------------------------------------
def _quat_to_R(q):  # w, x, y, z
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def _R_to_quat(R):
    w = np.sqrt(max(0.0, 1.0 + np.trace(R))) / 2.0
    if w > 1e-3:
        return np.array([w, (R[2, 1] - R[1, 2]) / (4 * w), (R[0, 2] - R[2, 0]) / (4 * w), (R[1, 0] - R[0, 1]) / (4 * w)])
    i = int(np.argmax(np.diag(R)))
    j, k = (i + 1) % 3, (i + 2) % 3
    s = np.sqrt(1.0 + R[i, i] - R[j, j] - R[k, k]) * 2.0
    q = np.zeros(4)
    q[0], q[1 + i] = (R[k, j] - R[j, k]) / s, s / 4.0
    q[1 + j], q[1 + k] = (R[j, i] + R[i, j]) / s, (R[k, i] + R[i, k]) / s
    return q


def _populate_input_tensor(sp_ned, pos_ned, vel_ned, q_frd_ned, gyro_frd):
    """PopulateInputTensor (mc_nn_control.cpp) as arithmetic: frame_transf = diag(1, -1, -1), frame_transf_2 =
    [[0, 1, 0], [-1, 0, 0], [0, 0, 1]]; world vectors through F F2, attitude as F (F2 R) F^T, gyro through F."""
    F = np.diag([1.0, -1.0, -1.0])
    F2 = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    R = F @ (F2 @ _quat_to_R(q_frd_ned)) @ F.T
    return np.concatenate([F @ F2 @ sp_ned - F @ F2 @ pos_ned, R[0], R[1], F @ F2 @ vel_ned, F @ gyro_frd])


def test_module_inputs_equal_populate_input_tensor_on_ned_states(exported):
    """edgectl's observation of a state in its own frames (ENU world, FLU body: x/y swapped and z negated, body y/z
    negated, by the textbook conversion), mapped by export/px4.py, is what the module computes from the NED/FRD state."""
    from edgectl.observation import observation
    contract = load_bundle(exported[0]).contract
    rng = np.random.default_rng(3)
    ned_to_enu = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    frd_to_flu = np.diag([1.0, -1.0, -1.0])
    for _ in range(200):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        sp, pos, vel, gyro = (rng.normal(size=3) for _ in range(4))
        want = _populate_input_tensor(sp, pos, vel, q, gyro)
        R_enu_flu = ned_to_enu @ _quat_to_R(q) @ frd_to_flu.T
        obs = observation(contract, ned_to_enu @ pos, _R_to_quat(R_enu_flu), ned_to_enu @ vel, frd_to_flu @ gyro,
                          np.zeros(0), ref_pos=ned_to_enu @ sp)
        got = px4.module_inputs(contract, obs[None, :])[0]
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_module_command_at_the_sources_anchor_points():
    k = px4.PARAMS["MC_NN_THRST_COEF"] / 1e5
    idle = k * (px4.PARAMS["MC_NN_MIN_RPM"] / 60.0) ** 2 - 1.0
    full = k * (px4.PARAMS["MC_NN_MAX_RPM"] / 60.0) ** 2 - 1.0
    half = k * ((px4.PARAMS["MC_NN_MIN_RPM"] + px4.PARAMS["MC_NN_MAX_RPM"]) / 2 / 60.0) ** 2 - 1.0
    np.testing.assert_allclose(px4.module_command([idle, half, full, -1.0, 1.0]),
                               [0.0, 0.8 * 0.25 + 0.2 * 0.5, 1.0, 0.0, 1.0], atol=1e-12)
    t, c, f0 = px4.hinge_inverse()
    a = np.linspace(-1.5, 1.5, 30001)
    y = f0 + np.maximum(a[:, None] - t[None, :], 0.0) @ c
    got = px4.module_command(y)
    assert np.max(np.abs(got - (np.clip(a, -1, 1) + 1) / 2)) <= px4.MAPPING_TOLERANCE
    # the outputs stay between idle and full scale, where the module's older RescaleActions (mc_nn_control.cpp, no
    # clamp of x, the polynomial in vertex form) and the newer rescale_action (actions_rescale.hpp) agree
    assert idle - 1e-9 <= y.min() and y.max() <= full + 1e-9
    x = (60.0 * np.sqrt((y + 1.0) / k) * 2.0 - px4.PARAMS["MC_NN_MAX_RPM"] - px4.PARAMS["MC_NN_MIN_RPM"]) / (
        px4.PARAMS["MC_NN_MAX_RPM"] - px4.PARAMS["MC_NN_MIN_RPM"])
    tmp1, tmp2 = 0.2 / (2 * 0.8), 0.2 * 0.2 / (4 * 0.8 * 0.8)
    np.testing.assert_allclose(0.8 * (((x + 1.0) / 2.0 + tmp1) ** 2 - tmp2), got, atol=1e-9)


# --- the export -----------------------------------------------------------------------------------------------------
def test_export_writes_the_modules_files_and_symbols(exported):
    _, out, report = exported
    assert sorted(p.name for p in out.iterdir()) == ["control_net.cpp", "control_net.hpp", "policy.tflite", "report.json"]
    hpp, cpp = (out / "control_net.hpp").read_text(), (out / "control_net.cpp").read_text()
    data = (out / "policy.tflite").read_bytes()
    assert re.search(rf"constexpr unsigned int control_net_tflite_size = {len(data)};", hpp)
    assert "extern const unsigned char control_net_tflite[];" in hpp
    assert "alignas(16) const unsigned char control_net_tflite[] = {" in cpp
    assert px4.bytes_from_cpp(cpp) == data and data[4:8] == b"TFL3"
    assert set(px4.tflite_ops(data)) <= set(px4.MODULE_OPS)
    assert report["target"] == "px4" and json.loads((out / "report.json").read_text())["px4"] == report["px4"]


def test_report_names_the_conventions_and_their_source(exported):
    r = exported[2]["px4"]
    assert [tuple(x["slice"]) for x in r["input"]["order"]] == [(0, 3), (3, 9), (9, 12), (12, 15)]
    assert "setpoint - position" in r["input"]["order"][0]["value"] and "ENU" in r["input"]["order"][0]["value"]
    assert "rows 0 and 1" in r["input"]["order"][1]["value"] and "FLU" in r["input"]["order"][3]["value"]
    assert "rad/s" in r["input"]["order"][3]["value"] and "no normalization" in r["input"]["tensor"]
    assert "front-right, 2 back-left, 3 front-left, 4 back-right" in r["output"]["motor_order"]
    assert r["output"]["params"] == px4.PARAMS and "0.8 x^2 + 0.2 x" in r["output"]["module_mapping"]
    assert "gyro rate" in r["rate"]["module"] and r["rate"]["bundle_hz"] == 100.0
    assert r["ops"]["module_registers"] == ["FULLY_CONNECTED", "RELU", "ADD"]
    assert r["tensor_arena"]["estimated_bytes"] <= r["tensor_arena"]["module_bytes"] == 10 * 1024
    assert all(re.fullmatch(r"[0-9a-f]{40}", v) for v in r["source"]["files"].values())
    assert "src/modules/mc_nn_control/mc_nn_control.cpp" in r["source"]["files"]


def test_parity_motor_commands_through_the_modules_rescaling(exported):
    bundle_path, out, report = exported
    p = report["parity"]["tflite_px4_motor_command"]
    assert p["observations"] == 2000 and p["max_abs_error"] <= px4.COMMAND_TOLERANCE == p["tolerance"]
    # again here, on fresh states: the bytes from control_net.cpp, the module's inputs, the module's rescaling
    from export.calibration import rollout_observations
    b = load_bundle(bundle_path)
    obs = rollout_observations(b, 500, seed=7, source="random-states")
    y = px4.run_tflite_bytes(px4.bytes_from_cpp((out / "control_net.cpp").read_text()), px4.module_inputs(b.contract, obs))
    want = (np.clip(b.act(obs).astype(np.float64), -1, 1) + 1) / 2
    assert np.max(np.abs(px4.module_command(y) - want)) <= px4.COMMAND_TOLERANCE


_MAIN = """// what mc_nn_control.cpp InitializeNetwork uses: the array (to tflite::GetModel) and its size
#include <cstdio>
#include "control_net.hpp"
static_assert(control_net_tflite_size > 8, "a model");
int main(int argc, char **argv) {
\tstd::FILE *f = std::fopen(argv[1], "wb");
\tif (f == nullptr) { return 1; }
\tconst unsigned char *model = control_net_tflite;
\tconst std::size_t n = std::fwrite(model, 1, control_net_tflite_size, f);
\treturn std::fclose(f) == 0 && n == control_net_tflite_size ? 0 : 1;
}
"""


def test_gpp_compiles_links_and_the_array_is_the_model(exported, tmp_path):
    """g++ with PX4's warning flags (-Werror) builds control_net.cpp and a translation unit that uses the header the
    way the module does; the linked program writes the array, which is the .tflite byte for byte and runs on the
    TFLite interpreter like the bundle."""
    gpp = shutil.which("g++")
    if gpp is None:  # .ci/run installs g++; a missing compiler is a CI failure, not a skip (conftest.py audit)
        pytest.skip("g++ not installed")
    bundle_path, out, _ = exported
    for name in ("control_net.cpp", "control_net.hpp"):
        shutil.copy2(out / name, tmp_path / name)
    (tmp_path / "main.cpp").write_text(_MAIN)
    r = subprocess.run([gpp, *px4.PX4_CXXFLAGS, "-O2", "-I", str(tmp_path), str(tmp_path / "control_net.cpp"),
                        str(tmp_path / "main.cpp"), "-o", str(tmp_path / "dump")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(tmp_path / "dump"), str(tmp_path / "model.tflite")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    data = (tmp_path / "model.tflite").read_bytes()
    assert data == (out / "policy.tflite").read_bytes()
    b = load_bundle(bundle_path)
    from export.calibration import rollout_observations
    obs = rollout_observations(b, 200, seed=9, source="random-states")
    got = px4.module_command(px4.run_tflite_bytes(data, px4.module_inputs(b.contract, obs)))
    assert np.max(np.abs(got - (np.clip(b.act(obs), -1, 1) + 1) / 2)) <= px4.COMMAND_TOLERANCE


# --- refusals: one line, exit 2, the field named ----------------------------------------------------------------------
def _cli_export(bundle: Path, out: Path):
    from typer.testing import CliRunner

    from edgectl.cli import app
    return CliRunner().invoke(app, ["export", str(bundle), "--target", "px4", "--out", str(out)])


@pytest.mark.parametrize("name,field,also", [
    ("hover_bundle", "platform: crazyflie_2_1", "observation.previous_actions"),
    ("ctbr_hover_bundle", "platform: crazyflie_2_1", "action.mapping"),
])
def test_fixture_bundles_are_refused_naming_the_field(name, field, also, tmp_path):
    r = _cli_export(DATA / name, tmp_path / "out")
    assert r.exit_code == 2, r.output
    assert field in r.output and also in r.output and "policy.activation" in r.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("make,field", [
    (dict(zero_row2=False), "observation.rotation_matrix: the policy reads elements [6, 7, 8]"),
    (dict(activation="tanh"), "policy.activation: 'tanh'"),
    (dict(action_history=2), "observation.previous_actions"),
    (dict(integral_tau=2.0, integral_limit=0.1), "observation.position_error_integral"),
    (dict(action="ctbr"), "action.mapping: 'ctbr'"),
])
def test_contracts_the_module_cannot_feed_are_refused(make, field, tmp_path):
    bundle = _px4_bundle(tmp_path / "b", **make)
    r = _cli_export(bundle, tmp_path / "out")
    assert r.exit_code == 2, r.output
    assert field in r.output.replace("\n", " "), r.output
    assert not (tmp_path / "out").exists()


def test_int8_is_refused(tmp_path):
    from export.targets import export
    with pytest.raises(ExportError, match="float32"):
        export(_px4_bundle(tmp_path / "b"), "px4", tmp_path / "out", int8=True)

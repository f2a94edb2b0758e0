"""bench/transfer.py: policies flown in rotorpy, an independent simulator, through the bundle's contract.

The motor tables here are written from their sources by hand, not read from our code: the Crazyflie's from
bitcraze/crazyflie-firmware src/modules/src/power_distribution_quadrotor.c, powerDistributionForceTorque
(M1 front-right counter-clockwise, M2 back-right clockwise, M3 back-left counter-clockwise, M4 front-left
clockwise), rotorpy's from what rotorpy 3.0 declares (rotorpy/vehicles/crazyflie_params.py) and does
(Multirotor.compute_body_wrench).
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("transfer_bench", REPO / "bench" / "transfer.py")
T = importlib.util.module_from_spec(_spec)
sys.modules["transfer_bench"] = T  # dataclasses look their module up while the class is built
_spec.loader.exec_module(T)

# Firmware order M1..M4: quadrant and yaw torque sign on the body (+1: +z; a clockwise propeller seen from above).
FIRMWARE = [("front-right", -1), ("back-right", +1), ("back-left", -1), ("front-left", +1)]
FIXTURE = REPO / "tests" / "data" / "hover_wrong_yaw_bundle"  # trained before the fix: spin [1, -1, 1, -1]


def _positions(arm=0.028):
    where = {"front-right": (1, -1), "back-right": (-1, -1), "back-left": (-1, 1), "front-left": (1, 1)}
    return [[arm * where[q][0], arm * where[q][1], 0.0] for q, _ in FIRMWARE]


@pytest.fixture(scope="module", params=["crazyflie", "crazyflie_brushless"])
def vehicle(request):
    return T.rotorpy_vehicle(request.param)


# --- (a) geometry ----------------------------------------------------------------------------------------
def test_shipped_platform_maps_to_rotorpy_by_position_and_spin(vehicle):
    from edgectl.platforms import load_platform
    plat = load_platform(REPO / "hardware" / "crazyflie_2_1.toml")
    assert plat.get("rotors.spin") == [s for _, s in FIRMWARE]
    # rotorpy's declared table, by position: r1 front-left, r2 front-right, r3 back-right, r4 back-left.
    assert [T._quadrant(p) for p in vehicle.positions] == ["front-left", "front-right", "back-right", "back-left"]
    m = T.map_motors(plat.get("rotors.positions"), plat.get("rotors.spin"), vehicle.positions, vehicle.directions,
                     rp_names=vehicle.names)
    assert [vehicle.names[j] for j in m] == ["r2", "r3", "r4", "r1"]  # M1->r2, M2->r3, M3->r4, M4->r1
    assert m == T.map_motors(_positions(), [s for _, s in FIRMWARE], vehicle.positions, vehicle.directions)


def test_rotorpy_rotor_direction_is_the_yaw_torque_sign(vehicle):
    # What rotorpy does, not what it says: more thrust on the rotor M_i maps to must give the firmware's
    # roll/pitch/yaw signs for M_i (roll, pitch from position; yaw from rotor_directions).
    from rotorpy.vehicles.multirotor import Multirotor
    quad = Multirotor(vehicle.params, aero=False)
    m = T.map_motors(_positions(), [s for _, s in FIRMWARE], vehicle.positions, vehicle.directions)
    table = [(-1, -1, -1), (-1, +1, +1), (+1, +1, -1), (+1, -1, +1)]  # powerDistributionForceTorque, M1..M4
    base = np.full(4, vehicle.hover_speed)
    _, m0 = quad.compute_body_wrench(np.zeros(3), base, np.zeros(3))
    for i, j in enumerate(m):
        speeds = base.copy()
        speeds[j] *= 1.05
        _, m1 = quad.compute_body_wrench(np.zeros(3), speeds, np.zeros(3))
        assert tuple(np.sign(m1 - m0).astype(int)) == table[i], f"M{i + 1} -> {vehicle.names[j]}"


def test_flipped_spin_is_refused(vehicle):
    with pytest.raises(T.TransferError, match=r"M1 \(front-right\) has spin \+1"):
        T.map_motors(_positions(), [1, -1, 1, -1], vehicle.positions, vehicle.directions)
    # by position only (what the real vehicle does with such a policy) it maps, and says nothing of spin
    assert T.map_motors(_positions(), [1, -1, 1, -1], vehicle.positions, vehicle.directions, check_spin=False) == [1, 2, 3, 0]


def test_ambiguous_geometry_is_refused(vehicle):
    plus = [[0.04, 0.0, 0.0], [0.0, -0.04, 0.0], [-0.04, 0.0, 0.0], [0.0, 0.04, 0.0]]  # '+' frame: rotors on the axes
    with pytest.raises(T.TransferError, match="on a body axis"):
        T.map_motors(plus, [-1, 1, -1, 1], vehicle.positions, vehicle.directions)
    twice = _positions()
    twice[1] = twice[0]
    with pytest.raises(T.TransferError, match="no unique rotorpy rotor"):
        T.map_motors(twice, [-1, 1, -1, 1], vehicle.positions, vehicle.directions)


# --- (b) action -> newtons -------------------------------------------------------------------------------
def test_action_to_thrust_rpm_linear():
    mp = {"kind": "rpm_linear", "min_rpm": 0.0, "max_rpm": 21702.0, "thrust_coefficient": 3.16e-10}
    # a = 0: rpm 10851, 3.16e-10 * 117,744,201; a = 1: 3.16e-10 * 470,976,804; a = 2 clips to 1
    np.testing.assert_allclose(T.action_to_thrust(mp, [-1.0, 0.0, 1.0, 2.0]),
                               [0.0, 0.03720716752, 0.14882867006, 0.14882867006], rtol=1e-9)
    mp2 = {"kind": "rpm_linear", "min_rpm": 5000.0, "max_rpm": 25000.0, "thrust_coefficient": 1e-10}
    np.testing.assert_allclose(T.action_to_thrust(mp2, [-1.0, -0.5]), [0.0025, 0.01], rtol=1e-12)  # rpm 5000, 10000


def test_action_to_thrust_curve():
    mp = {"kind": "thrust_curve", "thrust_curve": [0.003525, 0.014373, 0.09223]}
    # u = 0: c0; u = 0.5: 0.003525 + 0.0071865 + 0.0230575; u = 1: sum of the three
    np.testing.assert_allclose(T.action_to_thrust(mp, [-1.0, 0.0, 1.0, -3.0]),
                               [0.003525, 0.033769, 0.110128, 0.003525], rtol=1e-12)


def test_action_to_thrust_refuses_unknown_kind():
    with pytest.raises(T.TransferError, match="'rpm_cubic'"):
        T.action_to_thrust({"kind": "rpm_cubic"}, np.zeros(4))
    with pytest.raises(T.TransferError, match="missing key 'thrust_curve'"):
        T.action_to_thrust({"kind": "thrust_curve"}, np.zeros(4))


# --- starts ------------------------------------------------------------------------------------------------
def test_starts_are_edgectls_hover_evaluation_starts():
    from train_fast.tasks.quadrotor_tasks import hover_config
    cfg, d = hover_config(), T.StartDistribution()
    assert (d.position, d.tilt, d.velocity, d.omega, d.bound) == (cfg.init_position, cfg.init_tilt, cfg.init_velocity,
                                                                  cfg.init_omega, cfg.termination_bound)
    a, b = d.sample(50, 3), d.sample(60, 3)
    for s, t in zip(a, b):  # deterministic, and the first n do not depend on how many are drawn
        for k in s:
            np.testing.assert_array_equal(s[k], t[k])
    tilt = [2 * math.acos(min(1.0, abs(s["quat_wxyz"][0]))) for s in a]
    assert max(tilt) <= d.tilt + 1e-12 and max(tilt) > 1.2
    assert all(np.all(np.abs(s["pos"]) <= 0.2) and np.all(np.abs(s["vel"]) <= 1.0) for s in a)


# --- (c) closed loops --------------------------------------------------------------------------------------
def test_raptor_holds_hover_and_a_by_index_mapping_crashes():
    v = T.rotorpy_vehicle("crazyflie")
    starts = T.StartDistribution().sample(3, 0)
    m = T.map_motors(T.RAPTOR_POSITIONS, T.RAPTOR_SPIN, v.positions, v.directions)
    ok = T.fly(T.RaptorController, T.RAPTOR_MAPPING, m, v, starts, seconds=3.0, rate_hz=100.0, bound=0.6)
    assert ok.survived.all()
    assert np.all(ok.final_error < 0.08), ok.final_error  # RAPTOR's ~5 cm hover offset, no more
    # M1..M4 -> r1..r4 by index: every motor a quadrant off, yaw reversed; it must not fly
    bad = T.fly(T.RaptorController, T.RAPTOR_MAPPING, [0, 1, 2, 3], v, starts, seconds=2.0, rate_hz=100.0, bound=0.6)
    assert not bad.survived.any()


def test_exported_bundle_crashes_with_the_wrong_yaw_and_flies_with_its_own(tmp_path):
    # The old fixture was trained believing M1 turns clockwise. In rotorpy's Crazyflie (M1 counter-clockwise)
    # it falls; in a rotorpy Crazyflie whose propellers all turn the other way (what it was trained for) it
    # hovers. The ONNX file comes from the project's exporter (write_onnx; the bench also runs its parity check).
    from export.onnx_export import write_onnx

    bundle, plat = T.load_quadrotor_bundle(FIXTURE)
    onnx = write_onnx(bundle, tmp_path / "policy.onnx")
    make = functools.partial(T.BundleController, bundle.contract, onnx)
    starts = T.StartDistribution().sample(2, 0)
    real = T.rotorpy_vehicle("crazyflie")
    mapped = T.map_motors(plat.get("rotors.positions"), plat.get("rotors.spin"), real.positions, real.directions,
                          check_spin=False)
    fell = T.fly(make, bundle.contract["action"]["mapping"], mapped, real, starts, seconds=2.0, rate_hz=100.0, bound=0.6)
    assert not fell.survived.any()
    mirrored = dataclasses.replace(real, directions=-real.directions,
                                   params=dict(real.params, rotor_directions=-np.asarray(real.params["rotor_directions"])))
    m = T.map_motors(plat.get("rotors.positions"), plat.get("rotors.spin"), mirrored.positions, mirrored.directions)
    flew = T.fly(make, bundle.contract["action"]["mapping"], m, mirrored, starts, seconds=3.0, rate_hz=100.0, bound=0.6)
    assert flew.survived.all()
    assert np.all(flew.final_error < 0.05), flew.final_error


# --- command line ------------------------------------------------------------------------------------------
def test_bad_input_exits_2_with_one_line(tmp_path, capsys):
    cases = [([str(tmp_path / "nope")], "bundle directory not found"),
             ([str(REPO / "tests" / "data" / "race_bundle")], "not a quadrotor bundle"),
             ([str(FIXTURE)], "wrong yaw"),
             ([str(FIXTURE), "--vehicle", "crazyflie_brushless"], "wrong yaw")]
    for argv, want in cases:
        assert T.main(argv) == 2
        err = capsys.readouterr().err
        assert want in err and err.count("\n") == 1, err


def test_missing_rotorpy_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "rotorpy", None)  # import rotorpy -> ImportError
    assert T.main([str(FIXTURE)]) == 2
    assert 'pip install "edgectl[transfer]"' in capsys.readouterr().err

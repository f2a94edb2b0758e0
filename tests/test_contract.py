import copy
import math

import numpy as np
import pytest

from edgectl.contract import ContractError, normalize, observation_slices, validate_contract

FIELDS = [("position_error", 3, "m", "world"), ("rotation_matrix", 9, "1", "body-to-world, row-major"),
          ("linear_velocity", 3, "m/s", "world"), ("angular_velocity", 3, "rad/s", "body"),
          ("previous_action", 4, "1", "motor order m1..m4")]


def make_contract() -> dict:
    rng = np.random.default_rng(0)
    return {
        "version": 1,
        "rate_hz": 100.0,
        "quaternion_order": "wxyz",
        "observation": {
            "size": 22,
            "fields": [{"name": n, "size": s, "unit": u, "frame": f, "description": n.replace("_", " ")} for n, s, u, f in FIELDS],
            "noise_std": [0.01] * 22,
            "normalization": {"offset": rng.normal(size=22).round(3).tolist(),
                              "scale": rng.uniform(0.5, 2.0, size=22).round(3).tolist(),
                              "formula": "x_norm = (x - offset) / scale"},
        },
        "action": {"size": 4, "names": ["m1", "m2", "m3", "m4"], "low": -1.0, "high": 1.0,
                   "mapping": {"kind": "rpm_linear", "formula": "rpm = (a + 1) / 2 * max_rpm"}, "hover_action": 0.334},
    }


def test_valid_contract_passes():
    validate_contract(make_contract())


def test_optional_keys_may_be_absent():
    c = make_contract()
    del c["observation"]["noise_std"], c["action"]["hover_action"], c["observation"]["fields"][0]["description"]
    validate_contract(c)


def test_message_names_file_field_and_value():
    c = make_contract()
    c["observation"]["fields"][2]["size"] = -3
    with pytest.raises(ContractError) as e:
        validate_contract(c, where="bundle.json: contract")
    assert str(e.value) == "bundle.json: contract.observation.fields[2].size: expected a positive int, got -3"


def _set(path, value):
    """Mutator setting contract[path...] = value (or deleting it when value is DELETE)."""
    def mutate(c):
        d = c
        for k in path[:-1]:
            d = d[k]
        if value is DELETE:
            del d[path[-1]]
        else:
            d[path[-1]] = value
    return mutate


DELETE = object()
OBS, NORM, ACT = ("observation",), ("observation", "normalization"), ("action",)

CASES = {
    "empty": (lambda c: c.clear(), "contract.version: missing required key"),
    "version": (_set(("version",), 2), "contract.version: expected version 1, got 2"),
    "version bool": (_set(("version",), True), "contract.version"),
    "rate_hz missing": (_set(("rate_hz",), DELETE), "contract.rate_hz: missing required key"),
    "rate_hz zero": (_set(("rate_hz",), 0.0), "contract.rate_hz: expected a positive rate in Hz, got 0.0"),
    "rate_hz nan": (_set(("rate_hz",), math.nan), "contract.rate_hz: expected a finite number, got nan"),
    "rate_hz str": (_set(("rate_hz",), "100"), "contract.rate_hz: expected a finite number, got '100'"),
    "quaternion order": (_set(("quaternion_order",), "xyz"), "contract.quaternion_order"),
    "observation missing": (_set(OBS, DELETE), "contract.observation: missing"),
    "observation size": (_set(OBS + ("size",), 0), "contract.observation.size: expected a positive int, got 0"),
    "observation size bool": (_set(OBS + ("size",), True), "contract.observation.size: expected a positive int, got True"),
    "fields empty": (_set(OBS + ("fields",), []), "contract.observation.fields: expected a non-empty list"),
    "field not dict": (_set(OBS + ("fields", 1), "rotation_matrix"), "contract.observation.fields[1]: expected an object"),
    "field size float": (_set(OBS + ("fields", 0, "size"), 3.0), "contract.observation.fields[0].size: expected a positive int, got 3.0"),
    "field sizes sum": (_set(OBS + ("fields", 0, "size"), 4), "contract.observation.fields: field sizes sum to 23, expected observation.size = 22"),
    "field name upper": (_set(OBS + ("fields", 3, "name"), "Angular"), "contract.observation.fields[3].name: expected a name matching"),
    "field name digit": (_set(OBS + ("fields", 3, "name"), "3d"), "contract.observation.fields[3].name"),
    "field name dash": (_set(OBS + ("fields", 3, "name"), "ang-vel"), "'ang-vel'"),
    "field name missing": (_set(OBS + ("fields", 3, "name"), DELETE), "contract.observation.fields[3].name: missing"),
    "field name duplicate": (_set(OBS + ("fields", 2, "name"), "position_error"),
                             "contract.observation.fields[2].name: expected a unique field name, got 'position_error'"),
    "field unit missing": (_set(OBS + ("fields", 4, "unit"), DELETE), "contract.observation.fields[4].unit: missing"),
    "field frame type": (_set(OBS + ("fields", 4, "frame"), 7), "contract.observation.fields[4].frame: expected a string, got 7"),
    "noise_std length": (_set(OBS + ("noise_std",), [0.1] * 21), "contract.observation.noise_std: expected a list of 22 finite numbers (observation.size), got a list of length 21"),
    "noise_std negative": (lambda c: c["observation"]["noise_std"].__setitem__(7, -0.1), "contract.observation.noise_std[7]: expected a number >= 0, got -0.1"),
    "normalization missing": (_set(NORM, DELETE), "contract.observation.normalization: missing"),
    "offset length": (lambda c: c["observation"]["normalization"]["offset"].pop(), "contract.observation.normalization.offset: expected a list of 22"),
    "offset inf": (lambda c: c["observation"]["normalization"]["offset"].__setitem__(4, math.inf), "contract.observation.normalization.offset[4]: expected a finite number, got inf"),
    "offset str": (lambda c: c["observation"]["normalization"]["offset"].__setitem__(0, "0"), "contract.observation.normalization.offset[0]: expected a finite number, got '0'"),
    "offset not list": (_set(NORM + ("offset",), 0.0), "contract.observation.normalization.offset: expected a list of 22 finite numbers, got 0.0"),
    "scale zero": (lambda c: c["observation"]["normalization"]["scale"].__setitem__(5, 0.0), "contract.observation.normalization.scale[5]: expected a nonzero number, got 0.0"),
    "scale nan": (lambda c: c["observation"]["normalization"]["scale"].__setitem__(3, math.nan), "contract.observation.normalization.scale[3]: expected a finite number, got nan"),
    "action missing": (_set(ACT, DELETE), "contract.action: missing"),
    "action size": (_set(ACT + ("size",), -4), "contract.action.size: expected a positive int, got -4"),
    "action size vs names": (_set(ACT + ("size",), 3), "contract.action.names: expected 3 names (action.size), got 4"),
    "action names type": (_set(ACT + ("names",), ["m1", "m2", "m3", 4]), "contract.action.names: expected a list of non-empty strings"),
    "action names unique": (_set(ACT + ("names",), ["m1", "m1", "m3", "m4"]), "contract.action.names: expected unique names"),
    "low >= high": (_set(ACT + ("low",), 1.0), "contract.action.high: expected a number greater than action.low = 1.0, got 1.0"),
    "low nan": (_set(ACT + ("low",), math.nan), "contract.action.low: expected a finite number, got nan"),
    "high missing": (_set(ACT + ("high",), DELETE), "contract.action.high: missing"),
    "mapping kind": (_set(ACT + ("mapping",), {"formula": "x"}), "contract.action.mapping.kind: missing"),
    "mapping not dict": (_set(ACT + ("mapping",), "rpm_linear"), "contract.action.mapping: expected an object, got 'rpm_linear'"),
    "hover out of range": (_set(ACT + ("hover_action",), 1.5), "contract.action.hover_action: expected a number in [action.low, action.high] = [-1.0, 1.0], got 1.5"),
    "hover str": (_set(ACT + ("hover_action",), "0.3"), "contract.action.hover_action: expected a finite number"),
}


@pytest.mark.parametrize("mutate,message", list(CASES.values()), ids=list(CASES))
def test_each_rule_names_the_field(mutate, message):
    c = make_contract()
    mutate(c)
    with pytest.raises(ContractError) as e:
        validate_contract(c)
    assert message in str(e.value)


def test_contract_not_a_dict():
    with pytest.raises(ContractError, match=r"^contract: expected an object, got \[\]$"):
        validate_contract([])


def test_contract_error_is_value_error():
    assert issubclass(ContractError, ValueError)


def test_validation_does_not_mutate():
    c = make_contract()
    before = copy.deepcopy(c)
    validate_contract(c)
    assert c == before


def test_observation_slices_in_order_and_cover_vector():
    s = observation_slices(make_contract())
    assert list(s) == [f[0] for f in FIELDS]
    assert s["position_error"] == slice(0, 3)
    assert s["rotation_matrix"] == slice(3, 12)
    assert s["previous_action"] == slice(18, 22)
    covered = np.concatenate([np.arange(22)[sl] for sl in s.values()])
    assert covered.tolist() == list(range(22))


def test_normalize_matches_formula_single_and_batch():
    c = make_contract()
    offset, scale = np.array(c["observation"]["normalization"]["offset"]), np.array(c["observation"]["normalization"]["scale"])
    obs = np.random.default_rng(1).normal(size=(5, 22))
    out = normalize(c, obs)
    assert out.dtype == np.float32 and out.shape == (5, 22)
    np.testing.assert_allclose(out, (obs - offset) / scale, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(normalize(c, obs[2]), out[2])
    batch3 = normalize(c, obs.reshape(5, 1, 22))
    assert batch3.shape == (5, 1, 22)


def test_normalize_rejects_wrong_size():
    with pytest.raises(ValueError, match="observation.size = 22"):
        normalize(make_contract(), np.zeros(21))
    with pytest.raises(ValueError, match="observation.size = 22"):
        normalize(make_contract(), np.float32(1.0))

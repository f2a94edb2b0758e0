"""Tests for edgectl.platforms: the shipped platform files and the loader's refusals."""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest

from edgectl import platforms
from edgectl.platforms import SCHEMAS, Platform, PlatformError, load_platform, parse_platform

REPO_HARDWARE = Path(__file__).resolve().parent.parent / "hardware"
SHIPPED = REPO_HARDWARE / "crazyflie_2_1.toml"
SHIPPED_TEXT = SHIPPED.read_text(encoding="utf-8")
# Broken copies get a file name unlike the platform name, so "names the file" is a real check.
BROKEN_NAME = "broken_copy.toml"


@pytest.fixture(autouse=True)
def _repo_hardware_dir(monkeypatch):
    # Do not depend on EDGECTL_HARDWARE_DIR in the environment running the tests.
    monkeypatch.setattr(platforms, "HARDWARE_DIR", REPO_HARDWARE)


def edited(tmp_path: Path, old: str, new: str) -> Path:
    """Write the shipped TOML with exactly one occurrence of `old` replaced by `new`."""
    assert SHIPPED_TEXT.count(old) == 1, f"edit anchor not unique in shipped file: {old!r}"
    path = tmp_path / BROKEN_NAME
    path.write_text(SHIPPED_TEXT.replace(old, new), encoding="utf-8")
    return path


def refused(path: Path) -> str:
    with pytest.raises(PlatformError) as exc:
        load_platform(path)
    msg = str(exc.value)
    assert path.name in msg, msg
    return msg


# --- the shipped platform -------------------------------------------------------------------


def test_shipped_loads_by_name():
    p = load_platform("crazyflie_2_1")
    assert isinstance(p, Platform)
    assert p.name == "crazyflie_2_1"
    assert p.kind == "quadrotor"
    assert p.path.resolve() == SHIPPED.resolve()


def test_shipped_loads_by_path_same_as_by_name():
    by_path = load_platform(SHIPPED)
    by_str = load_platform(str(SHIPPED))
    by_name = load_platform("crazyflie_2_1")
    assert by_path.values == by_name.values == by_str.values
    assert by_path.sha256 == by_name.sha256 == by_str.sha256


def test_shipped_spot_values():
    p = load_platform("crazyflie_2_1")
    assert p.get("body.mass") == pytest.approx(0.027)
    assert isinstance(p.get("body.mass"), float)
    assert p.get("body.gravity") == pytest.approx(9.81)
    assert len(p.get("body.inertia")) == 3
    assert all(x > 0 for x in p.get("body.inertia"))
    positions = p.get("rotors.positions")
    assert len(positions) == 4 and all(len(r) == 3 for r in positions)
    spin = p.get("rotors.spin")
    assert len(spin) == 4 and sorted(spin) == [-1, -1, 1, 1]
    c = p.get("rotors.thrust_curve")
    assert len(c) == 3 and c[0] >= 0 and sum(c) > 0
    assert 0 < p.get("rotors.motor_time_constant_up") <= p.get("rotors.motor_time_constant_down")
    assert p.get("control.action_min") < p.get("control.action_max")
    assert p.get("mcu.core") == "cortex-m4"
    assert isinstance(p.get("mcu.flash"), int)
    assert p.get("mcu.firmware_flash_offset") + p.get("mcu.policy_flash_budget") <= p.get("mcu.flash")
    assert p.get("mcu.policy_ram_budget") <= p.get("mcu.ram")


def test_shipped_can_hover():
    p = load_platform("crazyflie_2_1")
    n_rotors = len(p.get("rotors.positions"))
    assert n_rotors == 4
    max_thrust = sum(p.get("rotors.thrust_curve")) * n_rotors
    weight = p.get("body.mass") * p.get("body.gravity")
    assert max_thrust > weight
    # and not absurdly so: a thrust-to-weight ratio a real Crazyflie has (about 2).
    ratio = max_thrust / weight
    assert ratio > 1.2 and ratio < 5, ratio


def test_shipped_units_and_sources_for_every_field():
    from edgectl.platforms import _QUAD_CURVE

    p = load_platform("crazyflie_2_1")
    schema = SCHEMAS["quadrotor"] | _QUAD_CURVE
    assert set(p.values) == set(schema)
    assert set(p.units) == set(schema)
    assert set(p.sources) == set(schema)
    for key, spec in schema.items():
        assert p.units[key] == spec.unit, key
        assert isinstance(p.sources[key], str) and p.sources[key].strip(), key
    assert p.units["body.mass"] == "kg"
    assert p.units["body.inertia"] == "kg*m^2"
    assert "datasheet" in p.sources["body.mass"]


def test_shipped_sha256_stable(tmp_path):
    a = load_platform("crazyflie_2_1")
    b = load_platform(SHIPPED)
    expected = hashlib.sha256(SHIPPED.read_bytes()).hexdigest()
    assert a.sha256 == b.sha256 == expected
    assert len(a.sha256) == 64
    # a byte-identical copy elsewhere hashes the same; a one-comment change does not
    same = tmp_path / "copy.toml"
    same.write_bytes(SHIPPED.read_bytes())
    assert load_platform(same).sha256 == expected
    changed = tmp_path / "changed.toml"
    changed.write_bytes(SHIPPED.read_bytes() + b"# trailing comment\n")
    assert load_platform(changed).sha256 != expected


# --- every platform file in the repo --------------------------------------------------------

HARDWARE_FILES = sorted(REPO_HARDWARE.glob("*.toml"))


def test_hardware_dir_not_empty():
    assert SHIPPED in HARDWARE_FILES


@pytest.mark.parametrize("path", HARDWARE_FILES, ids=lambda p: p.stem)
def test_every_hardware_file_loads(path):
    p = load_platform(path)
    assert p.kind in SCHEMAS
    from edgectl.platforms import _QUAD_CURVE, OPTIONAL_SECTIONS
    expected = set(SCHEMAS[p.kind]) | (set(_QUAD_CURVE) if p.kind == "quadrotor" else set())
    present = {k.split(".")[0] for k in p.values}  # an optional section is all there or not at all
    assert set(p.values) == {k for k in expected if k.split(".")[0] not in OPTIONAL_SECTIONS or k.split(".")[0] in present}
    assert all(s.strip() for s in p.sources.values())
    # also loadable by its file stem
    assert load_platform(path.stem).sha256 == p.sha256


# --- refusals -------------------------------------------------------------------------------

MASS_LINE = next(line for line in SHIPPED_TEXT.splitlines() if line.startswith("mass = { value = 0.027,"))
MASS_SRC = MASS_LINE[MASS_LINE.index("source = "):-2]


def test_missing_field(tmp_path):
    msg = refused(edited(tmp_path, MASS_LINE + "\n", ""))
    assert "body.mass" in msg
    assert "'kg'" in msg


def test_missing_section(tmp_path):
    # dropping the whole [sensors] table: the first sensors field is reported
    start = SHIPPED_TEXT.index("[sensors]")
    path = tmp_path / BROKEN_NAME
    path.write_text(SHIPPED_TEXT[:start], encoding="utf-8")
    msg = refused(path)
    assert "sensors.position_noise_std" in msg
    assert "'m'" in msg


def test_wrong_unit(tmp_path):
    msg = refused(edited(tmp_path, 'value = 0.027, unit = "kg"', 'value = 27.0, unit = "g"'))
    assert "body.mass" in msg
    assert "'g'" in msg and "'kg'" in msg


def test_value_not_a_table(tmp_path):
    msg = refused(edited(tmp_path, MASS_LINE, "mass = 0.027"))
    assert "body.mass" in msg
    assert "'kg'" in msg


def test_table_without_value(tmp_path):
    msg = refused(edited(tmp_path, "mass = { value = 0.027, ", "mass = { "))
    assert "body.mass" in msg
    assert "'kg'" in msg


def test_missing_source(tmp_path):
    msg = refused(edited(tmp_path, 'unit = "kg", ' + MASS_SRC, 'unit = "kg"'))
    assert "body.mass" in msg
    assert "source" in msg


def test_blank_source(tmp_path):
    msg = refused(edited(tmp_path, MASS_SRC, 'source = "   "'))
    assert "body.mass" in msg
    assert "source" in msg


def test_wrong_shape_inertia(tmp_path):
    msg = refused(edited(tmp_path, "value = [9.42e-6, 9.64e-6, 1.75e-5]", "value = [9.42e-6, 9.64e-6]"))
    assert "body.inertia" in msg
    assert "kg*m^2" in msg
    assert "[3]" in msg


def test_scalar_where_vector_expected(tmp_path):
    msg = refused(edited(tmp_path, "value = [9.42e-6, 9.64e-6, 1.75e-5]", "value = 9.42e-6"))
    assert "body.inertia" in msg
    assert "kg*m^2" in msg


def test_ragged_positions(tmp_path):
    msg = refused(edited(tmp_path, "[0.0325, 0.0325, 0.0]]", "[0.0325, 0.0325]]"))
    assert "rotors.positions" in msg
    assert "(m)" in msg


def test_non_numeric(tmp_path):
    msg = refused(edited(tmp_path, "value = 0.027,", 'value = "0.027",'))
    assert "body.mass" in msg
    assert "kg" in msg


def test_non_numeric_vector_entry(tmp_path):
    msg = refused(edited(tmp_path, "value = [9.42e-6, 9.64e-6, 1.75e-5]", 'value = [9.42e-6, "x", 1.75e-5]'))
    assert "body.inertia" in msg
    assert "'x'" in msg


def test_negative_mass(tmp_path):
    msg = refused(edited(tmp_path, "value = 0.027,", "value = -0.027,"))
    assert "body.mass" in msg
    assert "kg" in msg
    assert "positive" in msg


def test_zero_mass(tmp_path):
    msg = refused(edited(tmp_path, "value = 0.027,", "value = 0.0,"))
    assert "body.mass" in msg
    assert "positive" in msg


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_non_finite(tmp_path, bad):
    msg = refused(edited(tmp_path, "value = 0.027,", f"value = {bad},"))
    assert "body.mass" in msg
    assert "kg" in msg
    assert "finite" in msg or "positive" in msg


def test_nan_in_unsigned_field(tmp_path):
    # a field with only a minimum: NaN compares false to everything, so only the finiteness check can catch it
    msg = refused(edited(tmp_path, "force_std = { value = 0.0132,", "force_std = { value = nan,"))
    assert "disturbance.force_std" in msg
    assert "finite" in msg


def test_bool_instead_of_number(tmp_path):
    msg = refused(edited(tmp_path, "value = 0.027,", "value = true,"))
    assert "body.mass" in msg
    assert "True" in msg


def test_bool_in_int_vector(tmp_path):
    msg = refused(edited(tmp_path, "value = [-1, 1, -1, 1]", "value = [true, 1, -1, 1]"))
    assert "rotors.spin" in msg


def test_float_in_int_field(tmp_path):
    msg = refused(edited(tmp_path, "value = 1048576,", "value = 1048576.0,"))
    assert "mcu.flash" in msg
    assert "integer" in msg


def test_spin_out_of_range(tmp_path):
    msg = refused(edited(tmp_path, "value = [-1, 1, -1, 1]", "value = [-1, 2, -1, 1]"))
    assert "rotors.spin" in msg
    assert "maximum" in msg


RAND_TAU = 'motor_time_constant = { value = [0.5, 2.0], unit = "1"'


def test_randomization_above_half(tmp_path):
    # the older form, r for [1 - r, 1 + r], stays bounded by 0.5
    msg = refused(edited(tmp_path, RAND_TAU, 'motor_time_constant = { value = 0.6, unit = "1"'))
    assert "randomization.motor_time_constant" in msg
    assert "0.5" in msg


def test_randomization_at_half_accepted(tmp_path):
    p = load_platform(edited(tmp_path, RAND_TAU, 'motor_time_constant = { value = 0.5, unit = "1"'))
    assert p.get("randomization.motor_time_constant") == [0.5, 1.5]


@pytest.mark.parametrize("bad", ["[1.2, 2.0]", "[0.5, 0.9]", "[0.0, 2.0]", "[0.5]", "[0.5, 20.0]"])
def test_randomization_range_must_hold_the_nominal(tmp_path, bad):
    msg = refused(edited(tmp_path, RAND_TAU, f'motor_time_constant = {{ value = {bad}, unit = "1"'))
    assert "randomization.motor_time_constant" in msg


def test_action_delay_interval(tmp_path):
    msg = refused(edited(tmp_path, 'action_delay = { value = [0.0, 1.0]', 'action_delay = { value = [0.0, 2.0]'))
    assert "randomization.action_delay" in msg and "control periods" in msg


def _legacy(tmp_path, min_rpm="0.0"):
    """The shipped file with its rotor model written in the older rpm form (as bundles before issue 13 carry it)."""
    import re
    text = SHIPPED_TEXT
    for key in ("thrust_curve", "motor_time_constant_up", "motor_time_constant_down"):
        text = re.sub(rf"^{key} = {{.*}}$\n", "", text, count=1, flags=re.M)
    text = text.replace("[rotors]\n", "[rotors]\n" + "\n".join([
        'thrust_coefficient = { value = 3.16e-10, unit = "N/rpm^2", source = "paper" }',
        'max_rpm = { value = 21702.0, unit = "rpm", source = "paper" }',
        f'min_rpm = {{ value = {min_rpm}, unit = "rpm", source = "paper" }}',
        'motor_time_constant = { value = 0.15, unit = "s", source = "paper" }']) + "\n", 1)
    text = text.replace('thrust_curve = { value = [0.8, 1.2], unit = "1"', 'thrust_coefficient = { value = 0.05, unit = "1"')
    path = tmp_path / BROKEN_NAME
    path.write_text(text, encoding="utf-8")
    return path


def test_legacy_rpm_form_loads_as_the_same_curve(tmp_path):
    p = load_platform(_legacy(tmp_path))
    np.testing.assert_allclose(p.get("rotors.thrust_curve"), [0.0, 0.0, 3.16e-10 * 21702.0 ** 2])
    assert p.get("rotors.motor_time_constant_up") == p.get("rotors.motor_time_constant_down") == 0.15
    assert p.get("randomization.thrust_curve") == [0.95, 1.05]
    # with a minimum rpm the curve is (m0 + u (1 - m0))^2 expanded: thrust at u = 0 and u = 1 as the rpm form says
    q = load_platform(_legacy(tmp_path, "5000.0"))
    c = q.get("rotors.thrust_curve")
    assert c[0] == pytest.approx(3.16e-10 * 5000.0 ** 2) and sum(c) == pytest.approx(3.16e-10 * 21702.0 ** 2)


def test_negative_noise(tmp_path):
    msg = refused(edited(tmp_path, "position_noise_std = { value = 0.001,", "position_noise_std = { value = -0.001,"))
    assert "sensors.position_noise_std" in msg
    assert "minimum" in msg


@pytest.mark.parametrize("min_rpm", ["21702.0", "30000.0"])
def test_min_rpm_not_below_max(tmp_path, min_rpm):
    msg = refused(_legacy(tmp_path, min_rpm))
    assert "rotors.min_rpm" in msg
    assert "rotors.max_rpm" in msg


@pytest.mark.parametrize("action_min", ["1.0", "2.0"])
def test_action_min_not_below_max(tmp_path, action_min):
    msg = refused(edited(tmp_path, "action_min = { value = -1.0,", f"action_min = {{ value = {action_min},"))
    assert "control.action_min" in msg
    assert "control.action_max" in msg


def test_unknown_kind(tmp_path):
    msg = refused(edited(tmp_path, 'kind = "quadrotor"', 'kind = "hexacopter"'))
    assert "platform.kind" in msg
    assert "hexacopter" in msg
    assert "quadrotor" in msg  # lists the kinds it knows


def test_missing_kind(tmp_path):
    msg = refused(edited(tmp_path, 'kind = "quadrotor"\n', ""))
    assert "platform.kind" in msg


def test_empty_name(tmp_path):
    msg = refused(edited(tmp_path, 'name = "crazyflie_2_1"', 'name = ""'))
    assert "platform.name" in msg


def test_missing_platform_table(tmp_path):
    msg = refused(edited(tmp_path, "[platform]\n", ""))
    assert "[platform]" in msg


def test_invalid_toml_syntax(tmp_path):
    msg = refused(edited(tmp_path, MASS_LINE, MASS_LINE[:-2]))  # drop the closing brace
    assert "TOML" in msg


def test_non_utf8_bytes(tmp_path):
    path = tmp_path / BROKEN_NAME
    path.write_bytes(SHIPPED.read_bytes().replace(b"# Crazyflie 2.1", b"# Crazyflie \xff\xfe 2.1", 1))
    assert path.read_bytes() != SHIPPED.read_bytes()
    msg = refused(path)
    assert "TOML" in msg or "utf-8" in msg.lower()


def test_unknown_platform_name_lists_known():
    with pytest.raises(PlatformError) as exc:
        load_platform("no_such_drone")
    msg = str(exc.value)
    assert "no_such_drone" in msg
    assert "crazyflie_2_1" in msg
    assert "known platforms" in msg


def test_unknown_platform_name_in_empty_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(platforms, "HARDWARE_DIR", tmp_path)
    with pytest.raises(PlatformError) as exc:
        load_platform("crazyflie_2_1")
    assert "none" in str(exc.value)


def test_unreadable_path_missing_file(tmp_path):
    path = tmp_path / "does_not_exist.toml"
    msg = refused(path)
    assert "cannot read" in msg


def test_unreadable_path_directory(tmp_path):
    path = tmp_path / "a_directory.toml"
    path.mkdir()
    msg = refused(path)
    assert "cannot read" in msg


def test_parse_platform_directly_names_path():
    with pytest.raises(PlatformError) as exc:
        parse_platform(b"[platform]\nname = 'x'\nkind = 'quadrotor'\n", Path("inline_test.toml"))
    assert "inline_test.toml" in str(exc.value)
    assert "body.mass" in str(exc.value)


# --- Platform.get ---------------------------------------------------------------------------


def test_get_unknown_key():
    p = load_platform("crazyflie_2_1")
    with pytest.raises(PlatformError) as exc:
        p.get("body.wingspan")
    assert "body.wingspan" in str(exc.value)
    assert "crazyflie_2_1" in str(exc.value)


def test_get_unknown_key_is_value_error():
    # callers that catch ValueError keep working
    p = load_platform("crazyflie_2_1")
    with pytest.raises(ValueError):
        p.get("nope")


def test_values_are_finite_floats_or_expected_types():
    p = load_platform("crazyflie_2_1")
    for key, spec in SCHEMAS["quadrotor"].items():
        v = p.get(key)
        if spec.kind == "str":
            assert isinstance(v, str), key
        elif spec.kind in ("range", "interval"):
            assert len(v) == 2 and all(isinstance(x, float) and math.isfinite(x) for x in v), key
        elif not spec.shape:
            assert isinstance(v, int if spec.kind == "int" else float), key
            assert math.isfinite(v), key


def test_integer_beyond_64_bits(tmp_path):
    # tomllib accepts integers past TOML's 64-bit range; the loader must refuse them as a
    # PlatformError naming the field, not crash with OverflowError in the finiteness check.
    huge = "1" + "0" * 400
    msg = refused(edited(tmp_path, "value = 0.027,", f"value = {huge},"))
    assert "body.mass" in msg
    msg = refused(edited(tmp_path, "value = 1048576,", f"value = {huge},"))
    assert "mcu.flash" in msg


# --- unknown sections and keys: refused, with the nearest known name --------------------------------
@pytest.mark.parametrize("old, new, words", [
    ("[safety]", "[saftey]", ["unknown section [saftey]", "did you mean [safety]?"]),
    ("\nshield_margin = {", "\nshield_margn = {", ["unknown field safety.shield_margn", "did you mean safety.shield_margin?"]),
    ('\nfirmware = "crazyflie"', '\nfirmwre = "crazyflie"', ["unknown key platform.firmwre", "did you mean platform.firmware?"]),
    ("\n[sensors]", "\n[weather]\nwind = { value = 1.0, unit = \"m/s\", source = \"x\" }\n\n[sensors]", ["unknown section [weather]"]),
])
def test_unknown_section_or_key_is_refused_with_a_suggestion(tmp_path, old, new, words):
    msg = refused(edited(tmp_path, old, new))
    assert all(w in msg for w in words), msg

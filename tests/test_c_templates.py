"""Generated C as templates (issue 14, item 6): the C logic is reviewed .c/.h template text, the generator writes
only data and glue, and every number goes through one float-literal writer that round-trips float32 exactly."""
from __future__ import annotations

import re
import shutil
import struct
import subprocess
import types
from pathlib import Path

import numpy as np
import pytest

from edgectl.bundle import load_bundle
from edgectl.csource import CSourceError, c_float, render
from export import c_codegen, quantize

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = Path(__file__).parent / "data" / "hover_bundle"
F32 = np.finfo(np.float32)
AWKWARD = [0.0, -0.0, 1e-45, -1e-45, float(F32.smallest_subnormal), float(F32.smallest_normal),
           float(np.nextafter(F32.smallest_normal, np.float32(0))),  # the largest subnormal
           float(F32.max), -float(F32.max), float(np.nextafter(F32.max, np.float32(0))), 1.0, -1.0, 0.1, 1 / 3,
           2 ** 24 + 1.0, 16777217.0, 1e30, 3.4028235e38, 0.5344054698944092, 123456789.0, 1.0000001, 9.99999907e-01]


def _parse(lit: str) -> np.float32:
    """The float32 a C compiler reads from `lit` (decimal -> nearest float; 9 digits are far from a tie)."""
    assert re.fullmatch(r"\(?-?[0-9.]+(e[+-]?[0-9]+)?f\)?", lit), lit
    return np.float32(float(lit.strip("()").rstrip("f")))


def _bits(x) -> bytes:
    return struct.pack("<f", np.float32(x))


@pytest.mark.parametrize("x", AWKWARD)
def test_float_writer_round_trips_awkward_float32_exactly(x):
    lit = c_float(x)
    assert _bits(_parse(lit)) == _bits(x), (x, lit)  # -0.0 keeps its sign bit, subnormals their last bit
    assert _bits(_parse(c_float(x, paren_negative=True))) == _bits(x)
    assert c_float(x, paren_negative=True).startswith("(") == lit.startswith("-")
    d = c_float(x, double=True)  # the double writer (c_backup's EDGECTL_BACKUP_DOUBLE build)
    assert not d.endswith("f") and float(d) == float(x) and str(float(d)) == str(float(x))


def test_float_writer_round_trips_random_bit_patterns():
    bits = np.random.default_rng(0).integers(0, 2**32, 20_000, dtype=np.uint64).astype(np.uint32)
    vals = bits.view(np.float32)
    vals = vals[np.isfinite(vals)]
    back = np.array([_parse(c_float(v)) for v in vals], np.float32)
    assert np.array_equal(back.view(np.uint32), vals.view(np.uint32))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 3.5e38, "1.0", True, None])
def test_float_writer_refuses_what_c_cannot_hold(bad):
    with pytest.raises(CSourceError):
        c_float(bad, where="w")


@pytest.mark.skipif(shutil.which("cc") is None, reason="no host C compiler")
def test_float_writer_literals_read_back_bit_exact_in_c(tmp_path):
    """The C compiler's reading, not Python's: every awkward literal, printed back as its bit pattern."""
    lits = [c_float(x) for x in AWKWARD]
    src = ("#include <stdio.h>\n#include <string.h>\n#include <stdint.h>\n"
           f"static const float V[] = {{{', '.join(lits)}}};\n"
           "int main(void) { unsigned i; for (i = 0; i < sizeof V / sizeof V[0]; ++i) { uint32_t b; "
           "memcpy(&b, &V[i], 4); printf(\"%08x\\n\", (unsigned)b); } return 0; }\n")
    (tmp_path / "lit.c").write_text(src)
    subprocess.run(["cc", "-std=c99", "-Wall", "-Werror", "-o", str(tmp_path / "lit"), str(tmp_path / "lit.c")], check=True)
    out = subprocess.run([str(tmp_path / "lit")], capture_output=True, text=True, check=True).stdout.split()
    assert [int(h, 16) for h in out] == [struct.unpack("<I", _bits(x))[0] for x in AWKWARD]


# --- the generated policy is template + data + glue ---------------------------------------------------------
_DATA = re.compile(r"^(static const \w+ \w+(\[\d+\])+ = \{|#define \w+(\(\w+\))? \S.*|\s*-?[\d.e+\-]+f?(, -?[\d.e+\-]+f?)*,?|"
                   r"\s*\{|\s*\},?|\};|/\*.*\*/|/\*.*|\s*\*.*|\s*)$")
_GLUE = re.compile(r"^(    float h\d+\[\d+\];|    int16_t x\d+\[\d+\];|"
                   r"    dense\(&L\d+_W\[0\]\[0\], L\d+_B, h\d+, h\d+, \d+, \d+, [01]\);|"
                   r"    x\d+\[\d+\] = 0;  /\* padding \*/|    layer\d+\(x\d+, (x\d+|action)\);|"
                   r"EDGECTL_(HIDDEN|OUTPUT)_LAYER\(layer\d+, L\d+_W, L\d+_B, L\d+_(M|SCALE), \d+, \d+\))$")


def _fake_bundle(bundle, n_obs: int, hidden=(8, 8), seed: int = 0):
    """A bundle-shaped object with `n_obs` inputs: exercises sizes the fixtures lack (n_obs % 4 == 2 -> SLOT_OF)."""
    rng = np.random.default_rng(seed)
    c = dict(bundle.contract)
    c["observation"] = {**c["observation"], "size": n_obs,
                        "fields": [{"name": "x", "size": n_obs, "unit": "1", "frame": "body"}],
                        "normalization": {"offset": rng.normal(size=n_obs).tolist(),
                                          "scale": rng.uniform(0.5, 2.0, n_obs).tolist()}}
    widths = [n_obs, *hidden, c["action"]["size"]]
    layers = [(rng.normal(scale=0.5, size=(a, b)).astype(np.float32), rng.normal(scale=0.1, size=b).astype(np.float32))
              for a, b in zip(widths[:-1], widths[1:])]
    return types.SimpleNamespace(contract=c, layers=layers, manifest=bundle.manifest, path=bundle.path,
                                 platform_name=bundle.platform_name, task_name=bundle.task_name)


def _variants():
    b = load_bundle(BUNDLE)
    norm = b.contract["observation"]["normalization"]
    obs = np.asarray(norm["offset"]) + np.asarray(norm["scale"]) * np.random.default_rng(0).normal(size=(500, 37))
    fake = _fake_bundle(b, 6)
    fobs = np.random.default_rng(1).normal(size=(500, 6)) * 2
    return {"float32": (c_codegen.generate_c(b), "edgectl_policy_float.c.in"),
            "int8": (c_codegen.generate_c(b, quantize.calibrate(b, obs)), "edgectl_policy_int8.c.in"),
            "int8 obs%4==2": (c_codegen.generate_c(fake, quantize.calibrate(fake, fobs)), "edgectl_policy_int8.c.in")}


@pytest.fixture(scope="module")
def variants():
    return _variants()


@pytest.mark.parametrize("name", ["float32", "int8", "int8 obs%4==2"])
def test_generated_source_is_template_text_plus_data_and_glue(variants, name):
    files, template = variants[name]
    tmpl_lines = set((c_codegen.TEMPLATES / template).read_text().splitlines())
    src = files["edgectl_policy.c"]
    foreign = [ln for ln in src.splitlines() if ln not in tmpl_lines and not _DATA.match(ln)]
    glue = [ln for ln in foreign if _GLUE.match(ln)]
    assert foreign == glue, f"lines that are neither template, data nor glue: {[ln for ln in foreign if ln not in glue][:5]}"
    assert len(glue) <= 20  # a few lines per layer
    # every line of the template's logic (below @DATA@) is in the output, in order
    logic = (c_codegen.TEMPLATES / template).read_text().split("@DATA@", 1)[1]
    expected = [ln for ln in logic.splitlines() if "@" not in ln]
    got = iter(src.splitlines())
    assert all(any(ln == g for g in got) for ln in expected)
    hdr_tmpl = set((c_codegen.TEMPLATES / "edgectl_policy.h.in").read_text().splitlines())
    assert all(ln in hdr_tmpl or _DATA.match(ln) for ln in files["edgectl_policy.h"].splitlines())


def test_python_generators_hold_no_c_control_flow():
    """C statements belong in the templates: no for/if/while/return inside a string of the generators."""
    for mod in ("export/c_codegen.py", "export/crazyflie_app.py", "edgectl/safety/c_backup.py", "edgectl/safety/c_signals.py"):
        text = (ROOT / mod).read_text()
        strings = re.findall(r'(?:f|r|rf|fr)?"(?:[^"\\\n]|\\.)*"', text)
        bad = [s for s in strings if re.search(r"\b(for|if|while|switch)\s*\(|\breturn\s[^\"]*;", s)]
        assert not bad, f"{mod}: C logic in a Python string: {bad[:3]}"


@pytest.mark.skipif(shutil.which("cc") is None, reason="no host C compiler")
def test_int8_with_non_contiguous_input_slots_is_bit_exact(tmp_path):
    """obs size 6: the input slots are 0, 2, 1, 3, 4, 6, so the input loop writes through SLOT_OF."""
    from edgectl.hostc import load_host_policy
    b = load_bundle(BUNDLE)
    fake = _fake_bundle(b, 6)
    calib = np.random.default_rng(1).normal(size=(500, 6)) * 2
    q = quantize.calibrate(fake, calib)
    files = c_codegen.generate_c(fake, q)
    assert "SLOT_OF" in files["edgectl_policy.c"]
    obs = np.random.default_rng(2).normal(size=(300, 6)).astype(np.float32) * 2
    c = load_host_policy(files, 6, 4, tmp_path / "int8").batch(obs)
    assert np.array_equal(c.view(np.uint32), np.asarray(q.forward(obs), np.float32).view(np.uint32))
    f = load_host_policy(c_codegen.generate_c(fake), 6, 4, tmp_path / "f32").batch(obs)
    h = (obs - np.float32(fake.contract["observation"]["normalization"]["offset"])) / np.float32(
        fake.contract["observation"]["normalization"]["scale"])
    for i, (w, bias) in enumerate(fake.layers):
        h = h @ w + bias
        h = np.tanh(h) if i < len(fake.layers) - 1 else np.clip(h, -1, 1)
    assert np.max(np.abs(f - h)) <= 1e-5


def test_render_refuses_a_template_generator_mismatch(tmp_path):
    t = tmp_path / "t.c.in"
    t.write_text("int a = @A@;\n")
    assert render(t, A=1) == "int a = 1;\n"
    with pytest.raises(CSourceError, match=r"not filled \['A'\]"):
        render(t)
    with pytest.raises(CSourceError, match=r"no placeholder \['B'\]"):
        render(t, A=1, B=2)
    assert render(t, unused_ok=True, A="@B@", B=2) == "int a = @B@;\n"  # one pass: values are not re-expanded


def test_templates_ship_in_the_wheel():
    from edgectl.safety import c_backup, c_signals
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    data = cfg["tool"]["setuptools"]["package-data"]
    smoke = (ROOT / ".ci" / "wheel_smoke.sh").read_text()
    templates = [c_codegen.TEMPLATES / n for n in c_codegen.TEMPLATE_FILES]
    templates += sorted(set(c_backup.TEMPLATES.glob("*.in")) | set(c_signals.TEMPLATES.glob("*.in")))
    assert len(templates) == 7
    for path in templates:
        pkg = path.relative_to(ROOT).parts[0]
        rel = path.relative_to(ROOT / pkg)
        assert any(rel.match(g) for g in data[pkg]), f"{rel} is not in [tool.setuptools.package-data] {pkg}"
    for name in ("export/templates/edgectl_policy_int8.c.in", "edgectl/safety/templates/edgectl_backup.c.in"):
        assert name in smoke


@pytest.mark.skipif(shutil.which("cc") is None, reason="no host C compiler")
def test_relu_policy_compiles_warning_free_and_matches_numpy(tmp_path):
    """Before the templates, a relu bundle's C kept the unused static tanh_approx and failed -Werror."""
    from edgectl.hostc import load_host_policy
    b = load_bundle(BUNDLE)
    fake = _fake_bundle(b, 6)
    fake.manifest = {**fake.manifest, "policy": {**fake.manifest["policy"], "activation": "relu"}}
    obs = np.random.default_rng(2).normal(size=(300, 6)).astype(np.float32)
    got = load_host_policy(c_codegen.generate_c(fake), 6, 4, tmp_path).batch(obs)  # -Wall -Wextra -Werror
    norm = fake.contract["observation"]["normalization"]
    h = (obs - np.float32(norm["offset"])) / np.float32(norm["scale"])
    for i, (w, bias) in enumerate(fake.layers):
        h = h @ w + bias
        h = np.maximum(h, 0) if i < len(fake.layers) - 1 else np.clip(h, -1, 1)
    assert np.max(np.abs(got - h)) <= 1e-5

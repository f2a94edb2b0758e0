"""Generated C monitors (edgectl.safety.c_monitor) against the Python online monitor: compiled
on the host with gcc -std=c99 -Wall -Wextra -Werror, called through ctypes, float32 vs float64."""
from __future__ import annotations

import ctypes
import os
import random
import shutil
import subprocess

import numpy as np
import pytest

from edgectl.safety import OnlineMonitor, SpecError, parse
from edgectl.safety.c_monitor import generate_monitor_c

DT = 0.01
SIGNALS = ["z", "roll", "pitch", "speed"]
EPS32 = float(np.finfo(np.float32).eps)
TERM_SCALE = 10.0  # |terms| stay below this with the traces and constants used here


def _gcc() -> str:
    gcc = shutil.which("gcc")
    if gcc is None:
        if os.environ.get("EDGECTL_REQUIRE_TOOLCHAIN") == "1":
            pytest.fail("gcc not found and EDGECTL_REQUIRE_TOOLCHAIN=1")
        pytest.skip("gcc not found")
    return gcc


def build(tmp_path, formulas, prefix="edgectl_stl"):
    files = generate_monitor_c(formulas, DT, SIGNALS, prefix=prefix)
    assert set(files) == {f"{prefix}.h", f"{prefix}.c"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert "malloc" not in files[f"{prefix}.c"]
    lib = tmp_path / f"lib{prefix}.so"
    subprocess.run([_gcc(), "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-O2", "-shared", "-fPIC",
                    "-o", str(lib), str(tmp_path / f"{prefix}.c")], check=True, capture_output=True, text=True)
    so = ctypes.CDLL(str(lib))
    getattr(so, f"{prefix}_update").restype = ctypes.c_float
    getattr(so, f"{prefix}_update").argtypes = [ctypes.POINTER(ctypes.c_float)]
    getattr(so, f"{prefix}_formula_value").restype = ctypes.c_float
    getattr(so, f"{prefix}_formula_value").argtypes = [ctypes.c_int]
    return so


def run_both(so, formulas, trace: np.ndarray, prefix="edgectl_stl"):
    """Feed (n, N_SIGNALS) float32 samples to C and to Python monitors; return (c, py) arrays of
    shape (n, 1 + n_formulas): the overall value then each formula's."""
    mons = [OnlineMonitor(f, DT) for f in formulas]
    getattr(so, f"{prefix}_reset")()
    update, value = getattr(so, f"{prefix}_update"), getattr(so, f"{prefix}_formula_value")
    c_out, py_out = [], []
    buf = (ctypes.c_float * len(SIGNALS))()
    for row in trace:
        buf[:] = [float(v) for v in row]
        overall = update(buf)
        c_out.append([overall] + [value(i) for i in range(len(formulas))])
        sample = {s: float(v) for s, v in zip(SIGNALS, row)}
        per = [m.update(sample) for m in mons]
        py_out.append([min(per)] + per)
    return np.array(c_out), np.array(py_out)


def assert_close32(c, py, what=""):
    both_inf = np.isinf(py) & (c == py)
    tol = 1e-6 + 4 * EPS32 * (1 + np.abs(np.where(np.isinf(py), 0, py)) + TERM_SCALE)
    ok = both_inf | (np.isfinite(py) & (np.abs(c - py) <= tol))
    bad = np.argwhere(~ok)
    assert ok.all(), f"{what}: {len(bad)} mismatches, first at {bad[0]}: C {c[tuple(bad[0])]!r} vs Python {py[tuple(bad[0])]!r}"


FIXED = [
    "historically[0,1](z >= 0.2 and abs(roll) <= 0.6)",
    "historically[0.05,0.2](abs(pitch) < 1.2) or once[0,0.1](speed > 2)",
    "(z > -0.5) since[0.02,0.3] (speed <= 0.5)",
    "(z > -0.5) since (abs(roll) + abs(pitch) < 0.4)",
    "not once[0.1,inf](speed > 2.5) implies historically(z > -1.2)",
    "(2 * z - 0.5 * speed >= -roll) since[0,0.07] once[0.03,0.05] (pitch <= 0.1)",
    "z > -3",
]


def rand_term(rng):
    s, s2 = rng.choice(SIGNALS), rng.choice(SIGNALS)
    return rng.choice([s, f"abs({s})", f"{rng.uniform(-2, 2):.3f} * {s} + {s2}", f"-{s}", f"{s} - {s2}"])


def rand_past(rng, depth):
    if depth == 0 or rng.random() < 0.2:
        return f"{rand_term(rng)} {rng.choice(['<', '<=', '>', '>='])} {rng.uniform(-1, 1):.3f}"
    op = rng.choice(["and", "or", "not", "implies", "historically", "once", "since"])
    a = rng.randint(0, 5)
    b = "inf" if rng.random() < 0.15 else f"{(a + rng.randint(0, 30)) * DT:g}"
    bounds = f"[{a * DT:g},{b}]" if rng.random() < 0.85 else ""
    if op == "not":
        return f"not ({rand_past(rng, depth - 1)})"
    if op in ("and", "or", "implies"):
        return f"({rand_past(rng, depth - 1)}) {op} ({rand_past(rng, depth - 1)})"
    if op == "since":
        return f"({rand_past(rng, depth - 1)}) since{bounds} ({rand_past(rng, depth - 1)})"
    return f"{op}{bounds} ({rand_past(rng, depth - 1)})"


def rand_samples(nrng, n, nan_rate=0.0):
    x = nrng.normal(0, 1, size=(n, len(SIGNALS))).clip(-3, 3).astype(np.float32)
    x[nrng.random(x.shape) < nan_rate] = np.nan
    return x


def test_fixed_formulas_match_python(tmp_path):
    fs = [parse(t, SIGNALS) for t in FIXED]
    so = build(tmp_path, fs)
    nrng = np.random.default_rng(0)
    trace = rand_samples(nrng, 600)
    c, py = run_both(so, fs, trace)
    assert_close32(c, py, "fixed")
    # reset: the same trace again gives the same values
    c2, _ = run_both(so, fs, trace)
    np.testing.assert_array_equal(c, c2)


def test_random_past_formulas_match_python_with_nan(tmp_path):
    rng, nrng = random.Random(42), np.random.default_rng(42)
    for k in range(6):
        fs = [parse(rand_past(rng, 3), SIGNALS) for _ in range(5)]
        prefix = f"mon{k}"
        so = build(tmp_path, fs, prefix=prefix)
        trace = rand_samples(nrng, 300, nan_rate=0.02 if k % 2 else 0.0)
        c, py = run_both(so, fs, trace, prefix=prefix)
        assert_close32(c, py, "; ".join(f.text for f in fs))


def test_nan_input_is_a_violation(tmp_path):
    fs = [parse("historically[0,0.02](z >= 0.2 and abs(roll) <= 0.6)", SIGNALS), parse("not (speed > 5)", SIGNALS)]
    so = build(tmp_path, fs)
    nan = float("nan")
    rows = np.array([[1, 0, 0, 0], [1, nan, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, nan]], np.float32)
    c, py = run_both(so, fs, rows)
    assert c[:, 0].tolist() == [pytest.approx(0.6), -np.inf, -np.inf, -np.inf, pytest.approx(0.6), -np.inf]
    assert c[5, 2] == -np.inf  # NaN under a negation is still a violation
    assert_close32(c, py)


def test_header_and_refusals(tmp_path):
    files = generate_monitor_c([parse(FIXED[0], SIGNALS)], DT, SIGNALS, prefix="cf_stl")
    h = files["cf_stl.h"]
    assert "#define CF_STL_N_SIGNALS 4" in h and "#define CF_STL_SIG_ROLL 1" in h
    assert "float cf_stl_update(const float signals[CF_STL_N_SIGNALS]);" in h and "void cf_stl_reset(void);" in h
    assert FIXED[0] in h
    with pytest.raises(SpecError, match="future"):
        generate_monitor_c([parse("always[0,1](z > 0)", SIGNALS)], DT, SIGNALS)
    with pytest.raises(SpecError, match="'tilt'"):
        generate_monitor_c([parse("tilt < 1")], DT, SIGNALS)
    with pytest.raises(SpecError, match="multiple"):
        generate_monitor_c([parse("once[0,0.015](z > 0)")], DT, SIGNALS)
    with pytest.raises(ValueError, match="prefix"):
        generate_monitor_c([parse("z > 0")], DT, SIGNALS, prefix="bad-name")

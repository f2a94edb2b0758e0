"""Tests for edgectl.safety: STL parsing, robustness (numpy, JAX, online) against rtamt 0.4.10
and against a brute-force reading of the definitions, NaN handling, quadrotor signals, and the
[safety] section of platform files."""
from __future__ import annotations

import math
import os
import random
import sys
from pathlib import Path

import numpy as np
import pytest

from edgectl.platforms import PlatformError, load_platform
from edgectl.safety import QUADROTOR_SIGNALS, OnlineMonitor, SpecError, parse, signals_from_state
from edgectl.safety.stl import FUTURE, INF, PAST

DT = 0.01
SIGS = ("x", "y", "z")
REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "hardware" / "crazyflie_2_1.toml"


RTAMT_INSTALL = ("pip install rtamt==0.4.10" if sys.version_info < (3, 13) else
                 "rtamt 0.4.10 says Python < 3.13: pip install --ignore-requires-python rtamt==0.4.10")


def _typing_io_shim():
    """rtamt 0.4.10's generated parser and every antlr4 runtime that reads its serialized ATN (version 3: < 4.10;
    it pins 4.7) import typing.io, removed in Python 3.13. The alias lets them import there."""
    try:
        import typing.io  # noqa: F401  (3.11, 3.12)
    except ImportError:
        import types
        import typing
        io = types.ModuleType("typing.io")
        io.IO, io.TextIO, io.BinaryIO = typing.IO, typing.TextIO, typing.BinaryIO
        sys.modules["typing.io"] = io


def _rtamt():
    _typing_io_shim()
    try:
        import rtamt
    except ImportError:
        if os.environ.get("EDGECTL_REQUIRE_TOOLCHAIN") == "1":
            pytest.fail(f"rtamt is not installed and EDGECTL_REQUIRE_TOOLCHAIN=1 ({RTAMT_INSTALL})")
        pytest.skip(f"rtamt not installed ({RTAMT_INSTALL})")
    return rtamt


# --- random formulas, rendered for us (seconds) and for rtamt (samples at period 1) ---------


def _num(v: float) -> str:
    return f"{v:g}" if v >= 0 else f"({v:g})"


def rand_term(rng: random.Random, sigs) -> tuple[str, str]:
    s, s2 = rng.choice(sigs), rng.choice(sigs)
    c = round(rng.uniform(-2, 2), 2)
    kind = rng.randrange(6)
    if kind == 0:
        return s, s
    if kind == 1:
        return f"abs({s})", f"abs({s})"
    if kind == 2:
        return f"{_num(c)} * {s} + {s2}", f"{_num(c)} * {s} + {s2}"
    if kind == 3:
        return f"{s} - {_num(c)}", f"{s} - {_num(c)}"
    if kind == 4:  # rtamt has no unary minus on variables
        return f"-{s}", f"(0 - {s})"
    return f"abs({s} - {s2}) * 0.5", f"abs({s} - {s2}) * 0.5"


def rand_pred(rng, sigs) -> tuple[str, str]:
    lhs = rand_term(rng, sigs)
    rhs = rand_term(rng, sigs) if rng.random() < 0.3 else (_num(round(rng.uniform(-1, 1), 2)),) * 2
    op = rng.choice(["<", "<=", ">", ">="])
    # rtamt's ANTLR grammar reports 'z > z - 0.58' as ambiguous: parenthesize its terms
    return f"{lhs[0]} {op} {rhs[0]}", f"({lhs[1]}) {op} ({rhs[1]})"


def rand_formula(rng, depth: int, sigs, ops, max_b: int) -> tuple[str, str]:
    if depth == 0 or rng.random() < 0.2:
        return rand_pred(rng, sigs)
    op = rng.choice(ops)
    sub = lambda: rand_formula(rng, depth - 1, sigs, ops, max_b)  # noqa: E731
    if op in ("and", "or", "implies"):
        (a1, a2), (b1, b2) = sub(), sub()
        return f"({a1}) {op} ({b1})", f"({a2}) {op} ({b2})"
    if op == "not":
        a1, a2 = sub()
        return f"not ({a1})", f"not ({a2})"
    unbounded = op in PAST and rng.random() < 0.25
    a = rng.randint(0, 3)
    b = a + rng.randint(0, max_b)
    ours_b = "" if unbounded else f"[{a * DT:g},{b * DT:g}]"
    theirs_b = "" if unbounded else f"[{a}:{b}]"
    if op in ("until", "since"):
        (a1, a2), (b1, b2) = sub(), sub()
        return f"({a1}) {op}{ours_b} ({b1})", f"({a2}) {op}{theirs_b} ({b2})"
    a1, a2 = sub()
    return f"{op}{ours_b} ({a1})", f"{op}{theirs_b} ({a2})"


BOOL = ["and", "or", "not", "implies"]
PAST_OPS = BOOL + list(PAST)
ALL_OPS = BOOL + list(PAST) + list(FUTURE)
FUTURE_OPS = BOOL + list(FUTURE)


def rand_trace(rng: np.random.Generator, n: int, sigs=SIGS) -> dict[str, np.ndarray]:
    return {s: rng.normal(0.0, 1.0, n).round(3) for s in sigs}


def rtamt_spec(rtamt, text: str, sigs=SIGS):
    spec = rtamt.StlDiscreteTimeSpecification()
    for s in sigs:
        spec.declare_var(s, "float")
    spec.spec = text
    spec.parse()
    return spec


# --- against rtamt --------------------------------------------------------------------------


def test_offline_and_online_equal_rtamt_on_1000_random_formulas():
    rtamt = _rtamt()
    rng, nrng = random.Random(1234), np.random.default_rng(1234)
    n_online = 0
    for k in range(1000):
        past_only = k % 2 == 0
        sigs = SIGS[: rng.choice((2, 3))]
        ours, theirs = rand_formula(rng, 3, sigs, PAST_OPS if past_only else ALL_OPS, max_b=6)
        n = int(nrng.integers(20, 41))
        trace = rand_trace(nrng, n, sigs)
        f = parse(ours, sigs)
        got = f.robustness(trace, DT)
        spec = rtamt_spec(rtamt, theirs, sigs)
        data = {"time": list(range(n)), **{s: trace[s].tolist() for s in sigs}}
        want = np.array([r for _, r in spec.evaluate(data)])
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9, err_msg=f"offline #{k}: {ours}  |  rtamt: {theirs}")
        if f.is_past_time:
            n_online += 1
            mon = OnlineMonitor(f, DT)
            # a fresh spec: rtamt 0.4.10 hands its AST to only the first interpreter used
            online = rtamt_spec(rtamt, theirs, sigs)
            for t in range(n):
                sample = {s: float(trace[s][t]) for s in sigs}
                ours_t = mon.update(sample)
                theirs_t = online.update(t, list(sample.items()))
                assert ours_t == pytest.approx(theirs_t, abs=1e-9) or ours_t == theirs_t, (k, t, ours, theirs)
    assert n_online >= 500


# --- against a brute-force reading of the definitions (long traces, wide and inf windows) ---


def brute(f, trace, dt):
    """Robustness at every t straight from the definitions in stl.py's docstring: O(n * w)."""
    steps = f.steps(dt)
    n = len(next(iter(trace.values())))

    def term(nd, t):
        k = nd.kind
        if k == "var":
            return float(trace[nd.name][t])
        if k == "const":
            return nd.value
        if k == "neg":
            return -term(nd.args[0], t)
        if k == "abs":
            return abs(term(nd.args[0], t))
        x, y = term(nd.args[0], t), term(nd.args[1], t)
        return x + y if k == "add" else x - y if k == "sub" else x * y

    def rob(nd, t, pol):
        k = nd.kind
        if k == "pred":
            lhs, rhs = term(nd.args[0], t), term(nd.args[1], t)
            r = lhs - rhs if nd.name in (">", ">=") else rhs - lhs
            return -INF * pol if math.isnan(r) else r
        if k == "not":
            return -rob(nd.args[0], t, -pol)
        if k == "and":
            return min(rob(c, t, pol) for c in nd.args)
        if k == "or":
            return max(rob(c, t, pol) for c in nd.args)
        if k == "implies":
            return max(-rob(nd.args[0], t, -pol), rob(nd.args[1], t, pol))
        a, b = steps[id(nd)]
        b = 10**9 if b is None else b
        if k in ("always", "eventually", "historically", "once"):
            ts = range(t + a, min(t + b, n - 1) + 1) if k in FUTURE else range(max(t - b, 0), t - a + 1)
            vals = [rob(nd.args[0], u, pol) for u in ts]
            return (min if k in ("always", "historically") else max)(vals, default=INF if k in ("always", "historically") else -INF)
        best = -INF
        if k == "until":
            for u in range(t + a, min(t + b, n - 1) + 1):
                left = min((rob(nd.args[0], s, pol) for s in range(t, u)), default=INF)
                best = max(best, min(rob(nd.args[1], u, pol), left))
        else:
            for u in range(max(t - b, 0), t - a + 1):
                left = min((rob(nd.args[0], s, pol) for s in range(u + 1, t + 1)), default=INF)
                best = max(best, min(rob(nd.args[1], u, pol), left))
        return best

    return np.array([rob(f.root, t, +1) for t in range(n)])


@pytest.mark.parametrize("text", [
    "historically[0.02,inf](x >= 0)",
    "once[0.05,inf](x >= 1) and (x > 0) since[0.03,inf] (y < 0)",
    "always[0.1,0.3]((x >= -1) until[0.02,0.2] (y >= 0.5))",
    "not eventually[0,0.5](abs(x - y) * 0.5 > 1) or historically[0,0.25](z < 2)",
    "(x > -1.5) since[0,0.4] ((y > 0) until[0.01,0.07] (z < 0))",
])
def test_wide_windows_match_brute_force(text):
    nrng = np.random.default_rng(7)
    trace = rand_trace(nrng, 120)
    f = parse(text, SIGS)
    np.testing.assert_allclose(f.robustness(trace, DT), brute(f, trace, DT), rtol=0, atol=1e-12)


def test_random_formulas_match_brute_force_with_nan():
    rng, nrng = random.Random(99), np.random.default_rng(99)
    for _ in range(60):
        ours, _ = rand_formula(rng, 3, SIGS, ALL_OPS, max_b=10)
        trace = rand_trace(nrng, 40)
        trace["y"][nrng.random(40) < 0.1] = np.nan
        f = parse(ours, SIGS)
        np.testing.assert_allclose(f.robustness(trace, DT), brute(f, trace, DT), rtol=0, atol=1e-12, err_msg=ours)


# --- offline vs online, numpy vs JAX ---------------------------------------------------------


def test_online_equals_offline_on_random_past_formulas():
    rng, nrng = random.Random(5), np.random.default_rng(5)
    for k in range(150):
        ours, _ = rand_formula(rng, 3, SIGS, PAST_OPS, max_b=25)
        if rng.random() < 0.2:  # explicit [a, inf] bounds too
            ours = f"historically[{rng.randint(0, 5) * DT:g},inf]({ours})"
        f = parse(ours, SIGS)
        trace = rand_trace(nrng, 200)
        trace["x"][nrng.random(200) < 0.03] = np.nan
        offline = f.robustness(trace, DT)
        mon = OnlineMonitor(f, DT)
        online = [mon.update({s: float(trace[s][t]) for s in SIGS}) for t in range(200)]
        np.testing.assert_array_equal(np.array(online), offline, err_msg=f"#{k}: {ours}")
        mon.reset()
        again = [mon.update({s: float(trace[s][t]) for s in SIGS}) for t in range(200)]
        assert again == online


def test_numpy_batch_axis():
    f = parse("always[0,0.05]((x > 0) until[0,0.1] (y > 0)) or once[0,0.03](z < 0)", SIGS)
    nrng = np.random.default_rng(3)
    batch = {s: nrng.normal(size=(4, 3, 30)) for s in SIGS}
    got = f.robustness(batch, DT)
    assert got.shape == (4, 3, 30)
    for i in range(4):
        for j in range(3):
            np.testing.assert_array_equal(got[i, j], f.robustness({s: batch[s][i, j] for s in SIGS}, DT))


def test_jax_equals_numpy_on_random_future_formulas():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    rng, nrng = random.Random(11), np.random.default_rng(11)
    H = 50
    for k in range(20):  # each new slice shape costs JAX a compile: keep it short
        ours, _ = rand_formula(rng, 3, SIGS, FUTURE_OPS, max_b=8)
        f = parse(ours, SIGS)
        trace = {s: nrng.normal(size=(8, H)).astype(np.float32) for s in SIGS}
        trace["z"][0, 3] = np.nan
        want = f.robustness(trace, DT)
        got = np.asarray(f.robustness_jax({s: jnp.asarray(v) for s, v in trace.items()}, DT))
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5, err_msg=f"#{k}: {ours}")
    # under jit and vmap, as the shield calls it on (batch, H) predictions
    f = parse("always[0,0.2](z >= -0.5) and ((abs(x) < 1) until[0.05,0.3] (y > 0.2))", SIGS)
    one = jax.jit(jax.vmap(lambda tr: f.robustness_jax(tr, DT)[0]))
    trace = {s: nrng.normal(size=(16, H)).astype(np.float32) for s in SIGS}
    np.testing.assert_allclose(np.asarray(one({s: jnp.asarray(v) for s, v in trace.items()})),
                               f.robustness(trace, DT)[:, 0], rtol=1e-6, atol=1e-5)
    grad = jax.jit(jax.grad(lambda z: f.robustness_jax({"x": trace["x"][0], "y": trace["y"][0], "z": z}, DT)[0]))(jnp.asarray(trace["z"][0]))
    assert np.all(np.isfinite(np.asarray(grad)))


# --- parse errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("text, column, expected", [
    ("always[0,2](z 0.2)", 15, "comparison"),
    ("always(z >= 0)", 7, "'['"),
    ("z >= 0.2 andd roll < 1", 10, "'and'"),
    ("always[0,2](z >= 0.2", 21, "')'"),
    ("eventually[0,inf](z >= 0)", 14, "bounded"),
    ("z == 1", 3, "<, <="),
    ("historically[0,1](z >= )", 24, "signal, a number"),
    ("x * y >= 1", 3, "product"),
    ("once[2,1](x > 0)", 8, "below the lower bound"),
    ("(x >= 1) and\n  always[0,1] y >= 0 y", 22, "end of the spec"),
])
def test_parse_error_points_at_column(text, column, expected):
    with pytest.raises(SpecError) as exc:
        parse(text, SIGS)
    e = exc.value
    assert isinstance(e, ValueError)
    assert e.column == column, str(e)
    msg = str(e)
    assert f"column {column}" in msg and expected in msg, msg
    line = text.split("\n")[text.count("\n", 0, e.offset)]
    caret_line = msg.split("\n")[-1]
    assert msg.split("\n")[-2] == "  " + line
    assert caret_line == "  " + " " * (column - 1) + "^", msg


def test_unknown_signal_rejected_at_parse():
    with pytest.raises(SpecError) as exc:
        parse("always[0,1](z >= 0 and altitude > 1)", QUADROTOR_SIGNALS)
    msg = str(exc.value)
    assert "'altitude'" in msg and exc.value.column == 24
    assert "roll" in msg and "tilt" in msg  # lists the known ones
    parse("always[0,1](z >= 0 and altitude > 1)")  # no signal list: anything goes


def test_bound_not_multiple_of_dt():
    f = parse("historically[0,0.015](z >= 0)", SIGS)
    with pytest.raises(SpecError) as exc:
        f.robustness({"z": np.zeros(5)}, DT)
    assert exc.value.column == 16 and "0.015" in str(exc.value) and "0.01" in str(exc.value)
    with pytest.raises(SpecError):
        OnlineMonitor(f, DT)
    f.steps(0.005)  # fine at 200 Hz
    parse("always[0.1,0.3](z >= 0)").steps(0.1)  # 3 * 0.1 != 0.3 in floats, within 1e-9


def test_future_refused_online():
    with pytest.raises(SpecError) as exc:
        OnlineMonitor(parse("historically[0,1](x > 0) and eventually[0,1](y > 0)"), DT)
    assert exc.value.column == 30 and "future" in str(exc.value) and "once" in str(exc.value)


def test_precedence():
    tr = {s: np.array([0.5, -0.3, 0.2]) for s in SIGS}
    a = parse("not x > 0 and y > 0 or z > 0 implies x > 1", SIGS).robustness(tr, DT)
    b = parse("(((not (x > 0)) and (y > 0)) or (z > 0)) implies (x > 1)", SIGS).robustness(tr, DT)
    np.testing.assert_array_equal(a, b)
    c = parse("(x + 1) * 2 >= -y - -3 and abs(x - 1) < 2 * 0.5", SIGS).robustness(tr, DT)
    x, y = tr["x"], tr["y"]
    np.testing.assert_allclose(c, np.minimum((x + 1) * 2 - (-y + 3), 1.0 - abs(x - 1)))


# --- NaN and missing signals -----------------------------------------------------------------


def test_nan_is_a_violation_offline_whatever_the_negations():
    tr = {"x": np.array([0.5, np.nan, 0.5]), "y": np.array([1.0, 1.0, 1.0])}
    for text in ["x >= 0", "not (x < 0)", "not not (x > 0)", "(x < 0) implies (x > 5)", "x >= 0 and y > 0"]:
        r = parse(text, SIGS).robustness(tr, DT)
        assert r[1] == -INF and np.isfinite(r[[0, 2]]).all(), (text, r)
    # the other disjunct can still hold on valid data
    assert parse("x >= 0 or y > 0", SIGS).robustness(tr, DT)[1] == 1.0
    assert parse("historically[0,0.01](x >= 0)", SIGS).robustness(tr, DT).tolist() == [0.5, -INF, -INF]


def test_missing_signal_offline_is_an_error_naming_it():
    with pytest.raises(SpecError) as exc:
        parse("x >= 0 and z < 1", SIGS).robustness({"x": np.zeros(3), "y": np.zeros(3)}, DT)
    assert "'z'" in str(exc.value) and "x, y" in str(exc.value)


def test_online_nan_and_missing_signal_are_violations():
    mon = OnlineMonitor(parse("historically[0,0.02](z >= 0.2 and abs(roll) <= 0.6)", QUADROTOR_SIGNALS), DT)
    assert mon.violated  # nothing seen yet: not known to hold
    assert mon.update({"z": 1.0, "roll": 0.1}) == pytest.approx(0.5)
    assert not mon.violated
    assert mon.update({"z": 1.0}) == -INF and mon.violated  # roll missing
    assert mon.update({"z": 1.0, "roll": 0.0}) == -INF  # still in the 0.02 s window
    assert mon.update({"z": 1.0, "roll": 0.0}) == -INF
    assert mon.update({"z": 1.0, "roll": 0.0}) == pytest.approx(0.6)
    assert mon.update({"z": float("nan"), "roll": 0.0}) == -INF
    mon2 = OnlineMonitor(parse("not (z < 0)"), DT)
    assert mon2.update({"z": float("nan")}) == -INF
    assert mon2.update({}) == -INF


def test_monitor_is_cheap():
    import time
    mon = OnlineMonitor(parse("historically[0,1](z >= 0.2 and abs(roll) <= 0.6)"), DT)
    rng = random.Random(0)
    samples = [{"z": rng.uniform(0, 1), "roll": rng.uniform(-0.7, 0.7)} for _ in range(5000)]
    u = mon.update
    best = INF
    for _ in range(3):
        t0 = time.perf_counter()
        for s in samples:
            u(s)
        best = min(best, (time.perf_counter() - t0) / len(samples))
    assert best < 20e-6, f"{best * 1e6:.2f} us per update"  # ~0.5 us here; loose for noisy CI


# --- quadrotor signals -----------------------------------------------------------------------


def _quat(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    return np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * axis])


def _qmul(a, b):
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2])


def test_signals_from_state_euler_and_tilt():
    assert set(QUADROTOR_SIGNALS) == {"x", "y", "z", "vx", "vy", "vz", "roll", "pitch", "yaw", "wx", "wy", "wz",
                                      "ex", "ey", "ez", "speed", "tilt"}
    roll, pitch, yaw = 0.3, -0.4, 2.0
    # ZYX: R = Rz(yaw) Ry(pitch) Rx(roll)
    q = _qmul(_qmul(_quat([0, 0, 1], yaw), _quat([0, 1, 0], pitch)), _quat([1, 0, 0], roll))
    s = signals_from_state([1.0, 2.0, 3.0], q, [3.0, 0.0, 4.0], [0.1, 0.2, 0.3], [1.0, 1.5, 2.0])
    assert (s["roll"], s["pitch"], s["yaw"]) == pytest.approx((roll, pitch, yaw))
    assert (s["x"], s["y"], s["z"], s["ex"], s["ey"], s["ez"]) == pytest.approx((1, 2, 3, 0, 0.5, 1))
    assert (s["vx"], s["vz"], s["speed"], s["wy"]) == pytest.approx((3, 4, 5, 0.2))
    # tilt: angle between body z (R[:, 2]) and world z
    w, x, y, z = q
    r22 = 1 - 2 * (x * x + y * y)
    assert s["tilt"] == pytest.approx(math.acos(r22))
    assert float(signals_from_state(np.zeros(3), [1, 0, 0, 0], np.zeros(3), np.zeros(3), np.zeros(3))["tilt"]) == 0.0
    assert float(signals_from_state(np.zeros(3), _quat([1, 1, 0], 2.5), np.zeros(3), np.zeros(3), np.zeros(3))["tilt"]) == pytest.approx(2.5)


def test_signals_from_state_batch_and_jax():
    nrng = np.random.default_rng(0)
    B, H = 5, 7
    q = nrng.normal(size=(B, H, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    pos, vel, om = (nrng.normal(size=(B, H, 3)) for _ in range(3))
    s = signals_from_state(pos, q, vel, om, np.zeros(3))
    assert set(s) == set(QUADROTOR_SIGNALS) and all(v.shape == (B, H) for v in s.values())
    one = signals_from_state(pos[2, 3], q[2, 3], vel[2, 3], om[2, 3], np.zeros(3))
    assert all(float(one[k]) == pytest.approx(s[k][2, 3]) for k in s)
    jax = pytest.importorskip("jax")
    sj = jax.jit(lambda *a: signals_from_state(*a))(pos, q, vel, om, np.zeros(3))
    assert all(isinstance(v, jax.Array) for v in sj.values())
    for k in s:
        np.testing.assert_allclose(np.asarray(sj[k]), s[k], rtol=1e-4, atol=1e-5)


# --- the [safety] section of platform files ---------------------------------------------------


def test_shipped_platform_specs_load_and_parse():
    from edgectl.safety.signals import platform_formulas
    p = load_platform("crazyflie_2_1")
    specs = p.get("safety.specs")
    assert specs and all(isinstance(s, str) for s in specs)
    fs = platform_formulas(p)
    assert all(f.is_future_time and f.horizon <= p.get("safety.shield_horizon") for f in fs)
    assert p.get("safety.shield_horizon") == pytest.approx(0.5) and p.units["safety.shield_holdoff"] == "s"
    hover = signals_from_state(np.zeros((1, 50, 3)), np.tile([1.0, 0, 0, 0], (1, 50, 1)), np.zeros((1, 50, 3)),
                               np.zeros((1, 50, 3)), np.zeros(3))
    assert all(f.robustness(hover, 1 / p.get("control.policy_rate"))[0, 0] > 0 for f in fs)


SPEC_LINE = '"always[0,0.5](tilt <= 1.0)"'  # the shipped file's second spec


def _broken(tmp_path, old, new) -> str:
    text = SHIPPED.read_text(encoding="utf-8")
    assert text.count(old) == 1
    path = tmp_path / "broken_copy.toml"
    path.write_text(text.replace(old, new), encoding="utf-8")
    with pytest.raises(PlatformError) as exc:
        load_platform(path)
    msg = str(exc.value)
    assert "broken_copy.toml" in msg
    return msg


def test_platform_spec_errors_name_file_field_and_column(tmp_path):
    msg = _broken(tmp_path, SPEC_LINE, '"always[0,0.5](abs(rol) <= 1.2)"')
    assert "safety.specs[1]" in msg and "'rol'" in msg and "column 19" in msg
    msg = _broken(tmp_path, SPEC_LINE, '"always[0,0.5](abs(roll) <= 1.2 andd z > 0)"')
    assert "safety.specs[1]" in msg and "column 32" in msg and "')'" in msg
    msg = _broken(tmp_path, SPEC_LINE, '"always[0,0.505](z > 0)"')
    assert "safety.specs[1]" in msg and "multiple" in msg and "column 10" in msg
    msg = _broken(tmp_path, SPEC_LINE, '"always[0,0.6](z > 0)"')
    assert "safety.specs[1]" in msg and "shield_horizon" in msg
    msg = _broken(tmp_path, SPEC_LINE, "3")
    assert "safety.specs" in msg and "list" in msg
    msg = _broken(tmp_path, 'shield_holdoff = { value = 0.2, unit = "s"', 'shield_holdoff = { value = 0.2, unit = "ms"')
    assert "safety.shield_holdoff" in msg and "'s'" in msg


def test_platform_without_safety_section_still_loads(tmp_path):
    # platform files copied into bundles before [safety] existed
    text = SHIPPED.read_text(encoding="utf-8")
    path = tmp_path / "old_copy.toml"
    path.write_text(text[: text.index("[safety]")], encoding="utf-8")
    p = load_platform(path)
    assert not any(k.startswith("safety.") for k in p.values)
    with pytest.raises(PlatformError, match="safety.specs"):
        p.get("safety.specs")
    bundled = load_platform(REPO / "tests" / "data" / "hover_bundle" / "platform.toml")
    assert bundled.get("body.mass") > 0


def test_partial_safety_section_refused(tmp_path):
    line = next(ln for ln in SHIPPED.read_text(encoding="utf-8").splitlines(keepends=True) if ln.startswith("shield_margin ="))
    msg = _broken(tmp_path, line, "")
    assert "safety.shield_margin" in msg and "missing" in msg

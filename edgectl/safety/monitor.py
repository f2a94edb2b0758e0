"""Online STL monitoring, one sample at a time, for PAST-TIME formulas.

``OnlineMonitor(formula, dt).update(sample)`` returns the robustness at the current sample,
equal to ``formula.robustness(trace, dt)[-1]`` over the samples seen so far (and to rtamt's
discrete-time online ``update``). Future-time operators are refused with a SpecError: a monitor
that answers now cannot see the future, so write the past-time form (``historically[0,T] p``
reports what ``always[0,T] p`` would, T seconds later). We do not pastify automatically: a delay
the caller did not ask for is a trap in a safety loop.

Work per sample is amortized O(1) per operator: windowed min/max use monotonic deques, bounded
``since`` is rewritten to unbounded since + windows + a delay line (identity in stl.py). The
formula is lowered to a short list of ops (also used by c_monitor.py), then to one generated
Python function over plain floats and ``collections.deque``: no numpy, no per-node calls.

A signal missing from the sample dict, or NaN, makes the predicates reading it a violation (-inf
after any enclosing negations), so the monitor reports a violation.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from edgectl.safety.stl import FUTURE, INF, Formula, Node, SpecError, _walk


@dataclass
class Op:
    """One step of a lowered formula: ``out`` = op(ins). Kinds:
    pred (term, nan value), neg, min, max (n-ary), win (min/max over the last w samples),
    acc (running min/max since the start), since (unbounded), delay (value a samples ago)."""
    kind: str
    out: int
    ins: tuple[int, ...] = ()
    term: Node | None = None
    nan: float = 0.0  # pred: value for a NaN input
    w: int = 0  # win: window length; delay: samples
    is_min: bool = True
    fill: float = 0.0  # delay: output before w samples were seen


def lower(formula: Formula, dt: float) -> tuple[list[Op], int]:
    """Lower a past-time formula to ops; returns (ops, slot of the result)."""
    for n in _walk(formula.root):
        if n.kind in FUTURE:
            raise SpecError(formula.text, n.pos, f"{n.kind!r} looks into the future and cannot be monitored online; "
                            f"use its past-time form ({'historically' if n.kind == 'always' else 'once' if n.kind == 'eventually' else 'since'}), "
                            "which gives the same verdict later by the window length")
    steps = formula.steps(dt)
    ops: list[Op] = []

    def emit(kind: str, ins=(), **kw) -> int:
        ops.append(Op(kind, len(ops), tuple(ins), **kw))
        return len(ops) - 1

    def win(x: int, w: int, is_min: bool) -> int:
        return x if w == 1 else emit("win", (x,), w=w, is_min=is_min)

    def delay(x: int, a: int, fill: float) -> int:
        return x if a == 0 else emit("delay", (x,), w=a, fill=fill)

    def go(n: Node, pol: int) -> int:
        k = n.kind
        if k == "pred":
            return emit("pred", term=n, nan=-INF * pol)
        if k == "not":
            return emit("neg", (go(n.args[0], -pol),))
        if k in ("and", "or"):
            return emit("min" if k == "and" else "max", [go(c, pol) for c in n.args])
        if k == "implies":
            return emit("max", (emit("neg", (go(n.args[0], -pol),)), go(n.args[1], pol)))
        a, b = steps[id(n)]
        if k == "since":
            left, right = go(n.args[0], pol), go(n.args[1], pol)
            s = emit("since", (left, right))
            if b is not None:
                s = emit("min", (s, win(right, b - a + 1, False)))
            if a == 0:
                return s
            return emit("min", (delay(s, a, -INF), win(left, a, True)))
        x = go(n.args[0], pol)
        is_min = k == "historically"
        y = emit("acc", (x,), is_min=is_min) if b is None else win(x, b - a + 1, is_min)
        return delay(y, a, INF if is_min else -INF)

    return ops, go(formula.root, +1)


# --- Python code generation -------------------------------------------------------------------


def _py_term(n: Node, sig: dict[str, str]) -> str:
    k = n.kind
    if k == "var":
        return sig[n.name]
    if k == "const":
        return repr(n.value)
    if k == "neg":
        return f"(-{_py_term(n.args[0], sig)})"
    if k == "abs":
        return f"abs({_py_term(n.args[0], sig)})"
    op = {"add": "+", "sub": "-", "mul": "*"}[k]
    return f"({_py_term(n.args[0], sig)} {op} {_py_term(n.args[1], sig)})"


def _py_source(ops: list[Op], result: int, signals: tuple[str, ...]) -> str:
    sig = {s: f"s_{i}" for i, s in enumerate(signals)}
    state, init, body = [], [], []
    uses_t = any(op.kind == "win" for op in ops)
    if uses_t:
        state.append("t")
        init.append("t = -1")
        body.append("t += 1")
    body += ["g = sample.get"] + [f"{v} = g({s!r}, nan)" for s, v in sig.items()]
    for op in ops:
        v, i = f"v{op.out}", op.out
        x = [f"v{j}" for j in op.ins]
        if op.kind == "pred":
            lhs, rhs = (_py_term(c, sig) for c in op.term.args)
            expr = f"{lhs} - {rhs}" if op.term.name in (">", ">=") else f"{rhs} - {lhs}"
            body += [f"{v} = {expr}", f"if {v} != {v}: {v} = {op.nan!r}"]
        elif op.kind == "neg":
            body.append(f"{v} = -{x[0]}")
        elif op.kind in ("min", "max"):
            cmp = "<" if op.kind == "min" else ">"
            body.append(f"{v} = {x[0]}")
            body += [f"if {y} {cmp} {v}: {v} = {y}" for y in x[1:]]
        elif op.kind == "acc":
            cmp = "<" if op.is_min else ">"
            state.append(f"a{i}")
            init.append(f"a{i} = {INF if op.is_min else -INF!r}")
            body += [f"if {x[0]} {cmp} a{i}: a{i} = {x[0]}", f"{v} = a{i}"]
        elif op.kind == "since":
            state.append(f"a{i}")
            init.append(f"a{i} = {-INF!r}")
            lhs, rhs = x
            body += [f"if {lhs} < a{i}: a{i} = {lhs}", f"if {rhs} > a{i}: a{i} = {rhs}", f"{v} = a{i}"]
        elif op.kind == "delay":
            init.append(f"d{i}.clear(); d{i}.extend([{op.fill!r}] * {op.w})")
            body += [f"d{i}.append({x[0]})", f"{v} = d{i}.popleft()"]
        elif op.kind == "win":
            # monotonic deque of (index, value); values strictly increasing (min) from the front
            drop = ">=" if op.is_min else "<="
            init += [f"q{i}.clear()", f"k{i}.clear()"]
            body += [f"if k{i} and k{i}[0] <= t - {op.w}: k{i}.popleft(); q{i}.popleft()",
                     f"while q{i} and q{i}[-1] {drop} {x[0]}: q{i}.pop(); k{i}.pop()",
                     f"q{i}.append({x[0]}); k{i}.append(t)", f"{v} = q{i}[0]"]
        else:  # pragma: no cover
            raise AssertionError(op.kind)
    body += [f"last = v{result}", "return last"]
    state.append("last")
    init.append("last = nan")
    containers = [f"d{op.out} = deque()" for op in ops if op.kind == "delay"]
    containers += [f"q{op.out} = deque(); k{op.out} = deque()" for op in ops if op.kind == "win"]
    nl = f"nonlocal {', '.join(state)}"
    lines = ["def _factory(deque, inf, nan):", *(f"    {c}" for c in containers), *(f"    {v} = None" for v in state),
             "    def reset():", f"        {nl}", *(f"        {s}" for s in init),
             "    def update(sample):", f"        {nl}", *(f"        {s}" for s in body),
             "    def value():", "        return last",
             "    reset()", "    return update, reset, value"]
    return "\n".join(lines) + "\n"


class OnlineMonitor:
    """Sample-by-sample robustness of a past-time formula at sample period ``dt`` seconds."""

    def __init__(self, formula: Formula, dt: float):
        self.formula, self.dt = formula, float(dt)
        ops, result = lower(formula, dt)
        self.ops = ops
        self.source = _py_source(ops, result, formula.signals)
        scope: dict = {}
        exec(compile(self.source, f"<stl monitor {formula.text!r}>", "exec"), scope)
        # bound straight onto the instance: no method-call layer per sample
        self.update, self.reset, self._value = scope["_factory"](deque, INF, math.nan)

    def update(self, sample: dict[str, float]) -> float:  # replaced per instance in __init__
        """Take one sample {signal: value}; return the robustness at this sample."""
        raise NotImplementedError

    def reset(self) -> None:  # replaced per instance in __init__
        """Forget every sample seen: the next update is t = 0 again."""
        raise NotImplementedError

    @property
    def value(self) -> float:
        """Robustness at the last sample (NaN before the first update)."""
        return self._value()

    @property
    def violated(self) -> bool:
        """True unless the last robustness is >= 0 (so also before the first sample)."""
        return not self._value() >= 0.0

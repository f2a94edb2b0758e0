"""Signal Temporal Logic: the spec language of edgectl's safety layer.

Grammar (loosest binding first; bounds are in SECONDS, ``[a,b]`` or rtamt's ``[a:b]``)::

    phi := phi implies phi                    (right-associative)
         | phi or phi | phi and phi
         | phi until[a,b] phi | phi since[a,b] phi | phi since phi
         | not phi | always[a,b] phi | eventually[a,b] phi
         | historically[a,b] phi | once[a,b] phi | historically phi | once phi
         | term (< | <= | > | >=) term | ( phi )
    term := term (+|-) term | term * term (one side free of signals) | -term
          | abs(term) | number | signal | ( term )

Past operators also take ``[a,inf]``; a bare ``historically``/``once``/``since`` is ``[0,inf]``.
Future operators must be bounded. A monitor with sample period dt turns bounds into whole samples
and refuses a bound that is not a multiple of dt within 1e-9 s (naming its column).

Quantitative semantics: rtamt 0.4.10's discrete-time semantics, checked against it in
tests/test_stl.py. ``x >= c`` -> x - c, ``x <= c`` -> c - x (strict = non-strict); not -> -r;
and/or -> min/max; ``a implies b`` -> max(-a, b).

- always/eventually[a,b] at t: min/max over [t+a, t+b] clipped to the trace; an empty window
  (t+a past the end) gives the identity, +inf for always and -inf for eventually.
- historically/once[a,b] at t: min/max over [t-b, t-a] clipped to t >= 0; empty (t < a) gives
  +inf / -inf. So ``once[0,2] p`` at t=0 is p(0): only available samples count.
- ``phi until[a,b] psi`` at t = max over t' in [t+a, t+b] of min(psi(t'), min phi over [t, t'-1]).
  rtamt differs from the textbook (Donze's dense-time) definition here: phi is required on
  [t, t') (NOT including t'), so at t' = t only psi counts. Beyond the end psi is -inf and phi +inf.
- ``phi since[a,b] psi`` at t = max over t' in [t-b, t-a] of min(psi(t'), min phi over (t', t]),
  the mirror image; before the start psi is -inf. Unbounded since: y(t) = max(psi(t), min(phi(t),
  y(t-1))) with y(-1) = -inf.

NaN (not part of rtamt, our choice for safety): a NaN in any signal a predicate reads makes that
predicate a violation whatever negations enclose it: it reads -inf in positive polarity and +inf
under an odd number of negations (``not``, left of ``implies``), so the formula sees -inf, never a
pass. A signal missing from an offline trace is an error naming it; online (monitor.py) a key
missing from the sample dict counts as NaN. Robustness >= 0 is "satisfied" (x >= c holds at x = c).

Algorithms: every operator is a linear pass. Windows use the van Herk/Gil-Werman block scheme;
until/since use the exact identities (min/max only, so results are bit-identical to the naive
definition)::

    phi since[a,b] psi (t) = min( S(t-a) min once[0,b-a] psi (t-a),  historically[0,a-1] phi (t) )
    phi until[a,b] psi (t) = min( U(t+a) min eventually[0,b-a] psi (t+a), always[0,a-1] phi (t) )

with S/U the unbounded recursions, computed as an associative scan of the maps
y -> max(p, min(q, y)).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

from edgectl.safety.kernels import NP as _NP
from edgectl.safety.kernels import jax_ops as _jax_ops

INF = math.inf
FUTURE = ("always", "eventually", "until")
PAST = ("historically", "once", "since")
KEYWORDS = frozenset({"and", "or", "not", "implies", "abs", "inf", *FUTURE, *PAST})
CMP = ("<", "<=", ">", ">=")
_TOKEN = re.compile(r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                    r"|(?P<op><=|>=|[-+*()\[\],:<>]))")


class SpecError(ValueError):
    """A spec that does not parse, names an unknown signal or does not fit the sample period."""

    def __init__(self, text: str, offset: int, what: str):
        line_start = text.rfind("\n", 0, offset) + 1
        line_end = text.find("\n", offset)
        line = text[line_start:line_end if line_end >= 0 else len(text)]
        self.spec, self.offset, self.column = text, offset, offset - line_start + 1
        lineno = text.count("\n", 0, offset) + 1
        where = f"column {self.column}" + (f" of line {lineno}" if "\n" in text else "")
        super().__init__(f"{what} at {where}:\n  {line}\n  {' ' * (offset - line_start)}^")
        self.what = what


@dataclass(frozen=True, eq=False)
class Node:
    """One node of the syntax tree: formulas (kind in FUTURE/PAST/and/or/not/implies/pred) and
    terms (var/const/neg/add/sub/mul/abs). ``pos`` is the offset in the spec text, for messages."""
    kind: str
    args: tuple = ()
    pos: int = 0
    name: str = ""  # signal name or comparison operator
    value: float = 0.0  # constant
    a: float = 0.0  # bounds in seconds; b = inf for unbounded past
    b: float = 0.0
    bpos: tuple = (0, 0)  # offsets of the two bound numbers


def _is_const(t: Node) -> bool:
    return t.kind == "const" or (t.kind != "var" and all(_is_const(c) for c in t.args))


class _Parser:
    def __init__(self, text: str, signals: frozenset[str] | None):
        self.text, self.signals = text, signals
        self.toks: list[tuple[str, str, int]] = []  # (type, text, offset)
        pos = 0
        while True:
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                rest = len(text) - len(text[pos:].lstrip())
                if rest == len(text):
                    break
                hint = " (comparisons are <, <=, >, >=)" if text[rest] in "=!" else ""
                raise SpecError(text, rest, f"unexpected character {text[rest]!r}{hint}")
            typ = m.lastgroup
            self.toks.append((typ, m.group(typ), m.start(typ)))
            pos = m.end()
        self.toks.append(("end", "end of spec", len(text)))
        self.i = 0

    # -- token helpers
    def peek(self, k: int = 0) -> tuple[str, str, int]:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def take(self) -> tuple[str, str, int]:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def at(self, *words: str) -> bool:
        typ, txt, _ = self.peek()
        return typ in ("name", "op") and txt in words

    def expect(self, word: str, what: str) -> tuple[str, str, int]:
        if not self.at(word):
            self.fail(f"expected {what}")
        return self.take()

    def fail(self, what: str, tok: tuple | None = None):
        typ, txt, off = tok or self.peek()
        found = "end of spec" if typ == "end" else repr(txt)
        raise SpecError(self.text, off, f"{what}, found {found}")

    # -- formulas
    def parse(self) -> Node:
        f = self.implies()
        if self.peek()[0] != "end":
            self.fail("expected 'and', 'or', 'implies', 'until', 'since', ')' or the end of the spec")
        return f

    def implies(self) -> Node:
        left = self.disj()
        if self.at("implies"):
            pos = self.take()[2]
            return Node("implies", (left, self.implies()), pos)
        return left

    def _nary(self, kind: str, sub) -> Node:
        items = [sub()]
        pos = self.peek()[2]
        while self.at(kind):
            self.take()
            items.append(sub())
        if len(items) == 1:
            return items[0]
        flat = []  # (a and b) and c == a and b and c: one n-ary min keeps monitors short
        for it in items:
            flat.extend(it.args if it.kind == kind else (it,))
        return Node(kind, tuple(flat), pos)

    def disj(self) -> Node:
        return self._nary("or", self.conj)

    def conj(self) -> Node:
        return self._nary("and", self.binary_temporal)

    def binary_temporal(self) -> Node:
        left = self.unary()
        while self.at("until", "since"):
            _, op, pos = self.take()
            a, b, bpos = self.bounds(op, optional=(op == "since"))
            left = Node(op, (left, self.unary()), pos, a=a, b=b, bpos=bpos)
        return left

    def unary(self) -> Node:
        if self.at("not"):
            pos = self.take()[2]
            return Node("not", (self.unary(),), pos)
        if self.at(*FUTURE[:2], *PAST[:2]):
            _, op, pos = self.take()
            a, b, bpos = self.bounds(op, optional=op in PAST)
            return Node(op, (self.unary(),), pos, a=a, b=b, bpos=bpos)
        return self.atom()

    def bounds(self, op: str, optional: bool) -> tuple[float, float, tuple[int, int]]:
        if not self.at("["):
            if optional:
                return 0.0, INF, (self.peek()[2], self.peek()[2])
            self.fail(f"expected '[' and time bounds in seconds after {op!r} (future operators must be bounded)")
        self.take()
        a, apos = self.bound_number(op, allow_inf=False)
        if not self.at(",", ":"):
            self.fail("expected ',' between the two bounds")
        self.take()
        b, bpos = self.bound_number(op, allow_inf=op in PAST)
        self.expect("]", "']' closing the bounds")
        if b < a:
            raise SpecError(self.text, bpos, f"upper bound {b:g} is below the lower bound {a:g}")
        return a, b, (apos, bpos)

    def bound_number(self, op: str, allow_inf: bool) -> tuple[float, int]:
        typ, txt, pos = self.peek()
        if typ == "num":
            self.take()
            return float(txt), pos
        if txt == "inf" and allow_inf:
            self.take()
            return INF, pos
        hint = "a number of seconds" + (" or 'inf'" if allow_inf else "")
        if txt == "inf":
            hint += f" ({op!r} looks into the future and must be bounded)"
        self.fail(f"expected {hint}")

    def atom(self) -> Node:
        if self.at("(") and not self._paren_is_term():
            self.take()
            f = self.implies()
            self.expect(")", "')'")
            return f
        left = self.term()
        if not self.at(*CMP):
            self.fail("expected a comparison (<, <=, >, >=)")
        _, op, pos = self.take()
        return Node("pred", (left, self.term()), pos, name=op)

    def _paren_is_term(self) -> bool:
        # '(' opens a term like '(x + 1) >= 2' iff its ')' is followed by an arithmetic or
        # comparison operator; otherwise it groups a formula.
        depth, k = 0, 0
        while True:
            typ, txt, _ = self.peek(k)
            if typ == "end":
                return False
            if txt == "(":
                depth += 1
            elif txt == ")":
                depth -= 1
                if depth == 0:
                    nxt = self.peek(k + 1)
                    return nxt[0] == "op" and nxt[1] in ("+", "-", "*", *CMP)
            k += 1

    # -- terms
    def term(self) -> Node:
        left = self.product()
        while self.at("+", "-"):
            _, op, pos = self.take()
            left = Node("add" if op == "+" else "sub", (left, self.product()), pos)
        return left

    def product(self) -> Node:
        left = self.factor()
        while self.at("*"):
            tok = self.take()
            right = self.factor()
            if not (_is_const(left) or _is_const(right)):
                raise SpecError(self.text, tok[2], "a product of two signal terms is not allowed (multiply by constants only)")
            left = Node("mul", (left, right), tok[2])
        return left

    def factor(self) -> Node:
        typ, txt, pos = self.peek()
        if self.at("-"):
            self.take()
            return Node("neg", (self.factor(),), pos)
        if typ == "num":
            self.take()
            return Node("const", (), pos, value=float(txt))
        if self.at("abs"):
            self.take()
            self.expect("(", "'(' after 'abs'")
            inner = self.term()
            self.expect(")", "')' closing abs(")
            return Node("abs", (inner,), pos)
        if self.at("("):
            self.take()
            inner = self.term()
            self.expect(")", "')'")
            return inner
        if typ == "name" and txt not in KEYWORDS:
            self.take()
            if self.signals is not None and txt not in self.signals:
                raise SpecError(self.text, pos, f"unknown signal {txt!r} (known signals: {', '.join(sorted(self.signals))})")
            return Node("var", (), pos, name=txt)
        self.fail("expected a signal, a number, '(' or 'abs('")


# --- the formula object ---------------------------------------------------------------------


def parse(text: str, signals: Iterable[str] | None = None) -> "Formula":
    """Parse an STL spec; with ``signals``, any other signal name is a SpecError."""
    if not isinstance(text, str):
        raise TypeError(f"an STL spec is a string, got {type(text).__name__}")
    known = frozenset(signals) if signals is not None else None
    root = _Parser(text, known).parse()
    return Formula(text, root, known)


def _walk(n: Node):
    yield n
    for c in n.args:
        yield from _walk(c)


class Formula:
    """A parsed spec. Robustness is evaluated on whole traces (``robustness``, numpy;
    ``robustness_jax``, jit/vmap-able) or sample by sample (``monitor.OnlineMonitor``)."""

    def __init__(self, text: str, root: Node, known: frozenset[str] | None = None):
        self.text, self.root, self.known_signals = text, root, known
        kinds = {n.kind for n in _walk(root)}
        self.signals: tuple[str, ...] = tuple(sorted({n.name for n in _walk(root) if n.kind == "var"}))
        self.is_past_time = not kinds & set(FUTURE)
        self.is_future_time = not kinds & set(PAST)
        self._steps_cache: dict[float, dict[int, tuple[int, int | None]]] = {}

    def __repr__(self) -> str:
        return f"Formula({self.text!r})"

    def __str__(self) -> str:
        return self.text

    @property
    def horizon(self) -> float:
        """Seconds of future the value at t depends on (0 for past-time formulas)."""
        def h(n: Node) -> float:
            sub = max((h(c) for c in n.args if c.kind not in ("var", "const")), default=0.0)
            return sub + n.b if n.kind in FUTURE else sub
        return h(self.root)

    def steps(self, dt: float) -> dict[int, tuple[int, int | None]]:
        """Bounds of every temporal node in samples, keyed by id(node); b is None for inf.
        Raises SpecError at the column of a bound that is not a multiple of dt."""
        dt = float(dt)
        if not (math.isfinite(dt) and dt > 0):
            raise ValueError(f"sample period dt must be a positive number of seconds, got {dt!r}")
        if dt in self._steps_cache:
            return self._steps_cache[dt]
        out = {}
        for n in _walk(self.root):
            if n.kind in FUTURE or n.kind in PAST:
                ks = []
                for v, off in ((n.a, n.bpos[0]), (n.b, n.bpos[1])):
                    if v == INF:
                        ks.append(None)
                        continue
                    k = round(v / dt)
                    if abs(k * dt - v) > 1e-9:
                        raise SpecError(self.text, off, f"bound {v:g} s of {n.kind!r} is not a multiple of the sample period dt = {dt:g} s")
                    ks.append(k)
                out[id(n)] = (ks[0], ks[1])
        self._steps_cache[dt] = out
        return out

    # -- offline, numpy
    def robustness(self, trace: Mapping[str, np.ndarray], dt: float) -> np.ndarray:
        """Robustness at every sample of a trace (time on the last axis; leading axes batch).
        The value at index 0 is the robustness of the whole trace."""
        steps = self.steps(dt)
        arrays = _trace_arrays(self, trace, np)
        return _eval(self.root, +1, arrays, steps, _NP)

    # -- offline, JAX
    def robustness_jax(self, trace: Mapping[str, "object"], dt: float):
        """Same semantics as ``robustness`` from jax.numpy ops, usable under jit/vmap (time on the
        last axis, fixed length: windows unroll into shifted slices)."""
        import jax.numpy as jnp
        steps = self.steps(dt)
        arrays = _trace_arrays(self, trace, jnp)
        return _eval(self.root, +1, arrays, steps, _jax_ops())


def _trace_arrays(f: Formula, trace: Mapping, xp) -> dict:
    arrays, shape = {}, None
    for name in f.signals:
        if name not in trace:
            raise SpecError(f.text, next(n.pos for n in _walk(f.root) if n.name == name and n.kind == "var"),
                            f"the trace has no signal {name!r} (it has: {', '.join(sorted(trace)) or 'nothing'})")
        arr = np.asarray(trace[name], dtype=np.float64) if xp is np else xp.asarray(trace[name])
        if not xp.issubdtype(arr.dtype, xp.floating):
            arr = arr.astype(xp.float32)  # JAX: ints would make the NaN/inf handling fail
        if arr.ndim == 0 or arr.shape[-1] == 0:
            raise ValueError(f"signal {name!r}: expected samples along the last axis, got shape {tuple(arr.shape)}")
        if shape is not None and tuple(arr.shape) != shape:
            raise ValueError(f"signal {name!r} has shape {tuple(arr.shape)}, other signals {shape}")
        shape = tuple(arr.shape)
        arrays[name] = arr
    if shape is None:  # a formula over constants only: one sample
        shape = tuple(np.shape(next(iter(trace.values())))) if trace else (1,)
    arrays[None] = shape
    return arrays


# --- evaluation, shared by the numpy and JAX backends -----------------------------------------


def _term(n: Node, arrays: dict, ops):
    k = n.kind
    if k == "var":
        return arrays[n.name]
    if k == "const":
        return n.value
    if k == "neg":
        return -_term(n.args[0], arrays, ops)
    if k == "abs":
        return ops.abs(_term(n.args[0], arrays, ops))
    x, y = (_term(c, arrays, ops) for c in n.args)
    return x + y if k == "add" else x - y if k == "sub" else x * y


def _eval(n: Node, pol: int, arrays: dict, steps: dict, ops):
    k = n.kind
    if k == "pred":
        lhs, rhs = (_term(c, arrays, ops) for c in n.args)
        r = lhs - rhs if n.name in (">", ">=") else rhs - lhs
        r = ops.full(arrays[None], r) if np.ndim(r) == 0 else r
        return ops.where(ops.isnan(r), -INF * pol, r)
    if k == "not":
        return -_eval(n.args[0], -pol, arrays, steps, ops)
    if k in ("and", "or"):
        red = ops.minimum if k == "and" else ops.maximum
        out = _eval(n.args[0], pol, arrays, steps, ops)
        for c in n.args[1:]:
            out = red(out, _eval(c, pol, arrays, steps, ops))
        return out
    if k == "implies":
        return ops.maximum(-_eval(n.args[0], -pol, arrays, steps, ops), _eval(n.args[1], pol, arrays, steps, ops))
    a, b = steps[id(n)]
    if k in ("until", "since"):
        left, right = (_eval(c, pol, arrays, steps, ops) for c in n.args)
        return _binary_temporal(k == "until", left, right, a, b, ops)
    x = _eval(n.args[0], pol, arrays, steps, ops)
    is_min = k in ("always", "historically")
    return _window(x, a, b, is_min, k in FUTURE, ops)


def _window(x, a: int, b: int | None, is_min: bool, future: bool, ops):
    """min/max over [t+a, t+b] (future) or [t-b, t-a] (past), clipped to the trace."""
    n = x.shape[-1]
    ident = INF if is_min else -INF
    if a >= n:
        return ops.full(x.shape, ident)
    b = n - 1 if b is None else min(b, n - 1)  # samples past either end are the identity anyway
    w = b - a + 1
    if future:
        y = ops.slide(ops.pad(x, 0, w - 1, ident), w, is_min)  # y[u] = op x[u .. u+w-1]
        return ops.shift(y, a, ident)
    y = ops.slide(ops.pad(x, w - 1, 0, ident), w, is_min)  # y[u] = op x[u-w+1 .. u]
    return ops.shift(y, -a, ident)


def _binary_temporal(until: bool, left, right, a: int, b: int | None, ops):
    n = left.shape[-1]
    ident = -INF
    if a >= n:
        return ops.full(left.shape, ident)
    rec = ops.scan(right, left, reverse=until)  # unbounded until/since
    if b is not None and b - a < n - 1:
        rec = ops.minimum(rec, _window(right, 0, b - a, False, until, ops))
    if a == 0:
        return rec
    rec = ops.shift(rec, a if until else -a, ident)
    return ops.minimum(rec, _window(left, 0, a - 1, True, until, ops))

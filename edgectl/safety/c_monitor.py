"""C99 online monitors for past-time STL formulas (for the Crazyflie app and other MCUs).

``generate_monitor_c(formulas, dt, signals)`` returns ``{"<prefix>.h": ..., "<prefix>.c": ...}``:
no malloc, static ring buffers sized from the formula windows, float32 arithmetic, amortized
O(1) per operator per sample (monotonic deques, as monitor.py, from the same lowered ops).

    void  <prefix>_reset(void);
    float <prefix>_update(const float signals[<PREFIX>_N_SIGNALS]);  min robustness over formulas
    float <prefix>_formula_value(int i);                             last robustness of formula i

NaN input -> the predicates reading it are a violation (-INFINITY after negations). Only
<math.h> macros (INFINITY, isnan) are used, no libm calls. Do not build with -ffast-math: it
lets the compiler drop the NaN checks.
"""
from __future__ import annotations

from edgectl.csource import c_float
from edgectl.safety.monitor import lower
from edgectl.safety.stl import INF, Formula, Node, SpecError


def _cf(v: float) -> str:
    if v == INF:
        return "INFINITY"
    if v == -INF:
        return "(-INFINITY)"
    # float32 first, then 9 digits (edgectl.csource): was "%.9g" of the double, which a C compiler then rounded
    # to float, i.e. rounded twice; for every spec constant of the shipped platforms both give the same float.
    return c_float(v, paren_negative=True, where="STL constant")


def _c_term(n: Node, idx: dict[str, int]) -> str:
    k = n.kind
    if k == "var":
        return f"sig[{idx[n.name]}]"
    if k == "const":
        return _cf(n.value)
    if k == "neg":
        return f"(-{_c_term(n.args[0], idx)})"
    if k == "abs":
        return f"absf_({_c_term(n.args[0], idx)})"
    op = {"add": "+", "sub": "-", "mul": "*"}[k]
    return f"({_c_term(n.args[0], idx)} {op} {_c_term(n.args[1], idx)})"


def _ident(s: str) -> bool:
    return s.isidentifier() and s.isascii()


def generate_monitor_c(formulas: list[Formula], dt: float, signals: list[str], prefix: str = "edgectl_stl") -> dict[str, str]:
    if not _ident(prefix):
        raise ValueError(f"prefix {prefix!r} is not a C identifier")
    if not formulas:
        raise ValueError("generate_monitor_c: no formulas")
    idx = {s: i for i, s in enumerate(signals)}
    if len(idx) != len(signals):
        raise ValueError(f"generate_monitor_c: duplicate names in signals {signals}")
    for f in formulas:
        missing = [s for s in f.signals if s not in idx]
        if missing:
            raise SpecError(f.text, 0, f"signal {missing[0]!r} is not among the monitor's signals ({', '.join(signals)})")
    P = prefix.upper()
    decl, reset, body, ram = [], [], [], 0
    for fi, f in enumerate(formulas):
        ops, result = lower(f, dt)
        body += [f"    /* [{fi}] {f.text.replace('*/', '* /')} */", "    {",
                 "    float " + ", ".join(f"v{fi}_{op.out}" for op in ops) + ";"]
        for op in ops:
            v, x = f"v{fi}_{op.out}", [f"v{fi}_{j}" for j in op.ins]
            st = f"f{fi}_{op.out}"
            if op.kind == "pred":
                lhs, rhs = (_c_term(c, idx) for c in op.term.args)
                expr = f"{lhs} - {rhs}" if op.term.name in (">", ">=") else f"{rhs} - {lhs}"
                body += [f"    {v} = {expr};", f"    if (isnan({v})) {v} = {_cf(op.nan)};"]
            elif op.kind == "neg":
                body.append(f"    {v} = -{x[0]};")
            elif op.kind in ("min", "max"):
                cmp = "<" if op.kind == "min" else ">"
                body.append(f"    {v} = {x[0]};")
                body += [f"    if ({y} {cmp} {v}) {v} = {y};" for y in x[1:]]
            elif op.kind in ("acc", "since"):
                init = INF if op.kind == "acc" and op.is_min else -INF
                decl.append(f"static float {st};")
                reset.append(f"    {st} = {_cf(init)};")
                ram += 4
                if op.kind == "acc":
                    cmp = "<" if op.is_min else ">"
                    body.append(f"    if ({x[0]} {cmp} {st}) {st} = {x[0]};")
                else:
                    body += [f"    if ({x[0]} < {st}) {st} = {x[0]};", f"    if ({x[1]} > {st}) {st} = {x[1]};"]
                body.append(f"    {v} = {st};")
            elif op.kind == "delay":
                decl += [f"static float {st}_buf[{op.w}];", f"static uint32_t {st}_pos;"]
                reset += [f"    for (i = 0; i < {op.w}; ++i) {st}_buf[i] = {_cf(op.fill)};", f"    {st}_pos = 0;"]
                ram += 4 * op.w + 4
                body += [f"    {v} = {st}_buf[{st}_pos];", f"    {st}_buf[{st}_pos] = {x[0]};",
                         f"    if (++{st}_pos == {op.w}u) {st}_pos = 0;"]
            elif op.kind == "win":
                w, drop = op.w, (">=" if op.is_min else "<=")
                decl += [f"static float {st}_val[{w}];", f"static uint32_t {st}_idx[{w}];",
                         f"static uint32_t {st}_head, {st}_n;"]
                reset.append(f"    {st}_head = 0; {st}_n = 0;")
                ram += 8 * w + 8
                # expire the front, pop dominated values from the back, push (t, x): at most
                # w entries live, each pushed and popped once
                body += [f"    if ({st}_n && (uint32_t)(t - {st}_idx[{st}_head]) >= {w}u) {{",
                         f"        if (++{st}_head == {w}u) {st}_head = 0;",
                         f"        --{st}_n;", "    }",
                         f"    while ({st}_n) {{",
                         f"        uint32_t b = {st}_head + {st}_n - 1u;",
                         f"        if (b >= {w}u) b -= {w}u;",
                         f"        if ({st}_val[b] {drop} {x[0]}) --{st}_n; else break;", "    }",
                         "    {",
                         f"        uint32_t b = {st}_head + {st}_n;",
                         f"        if (b >= {w}u) b -= {w}u;",
                         f"        {st}_val[b] = {x[0]}; {st}_idx[b] = t; ++{st}_n;", "    }",
                         f"    {v} = {st}_val[{st}_head];"]
            else:  # pragma: no cover
                raise AssertionError(op.kind)
        body += [f"    values[{fi}] = v{fi}_{result};", "    }"]
    n_sig, n_f = len(signals), len(formulas)
    ram += 4 * n_f + 4
    sig_doc = "\n".join(f" *   [{i}] {s}" for i, s in enumerate(signals))
    f_doc = "\n".join(f" *   [{i}] {f.text.replace('*/', '* /')}" for i, f in enumerate(formulas))
    sig_defs = "\n".join(f"#define {P}_SIG_{s.upper()} {i}" for i, s in enumerate(signals) if _ident(s))
    h = f"""/* Generated by edgectl.safety.c_monitor: online STL monitor, past-time formulas.
 * Sample period {dt:g} s: call {prefix}_update once per sample. Robustness >= 0: satisfied.
 * Signals, in order:
{sig_doc}
 * Formulas (the update returns the minimum of their robustness):
{f_doc}
 * Static RAM: about {ram} bytes. No malloc; do not build with -ffast-math (NaN checks).
 */
#ifndef {P}_H
#define {P}_H

#define {P}_N_SIGNALS {n_sig}
#define {P}_N_FORMULAS {n_f}
#define {P}_DT {_cf(float(dt))}
{sig_defs}

void {prefix}_reset(void);
float {prefix}_update(const float signals[{P}_N_SIGNALS]);
float {prefix}_formula_value(int i);

#endif
"""
    c = f"""/* Generated by edgectl.safety.c_monitor; see {prefix}.h. */
#include <math.h>
#include <stdint.h>
#include "{prefix}.h"

static float absf_(float x) {{ return x < 0.0f ? -x : x; }}

static uint32_t t;
static int ready;
static float values[{P}_N_FORMULAS];
{chr(10).join(decl)}

void {prefix}_reset(void)
{{
    int i;
    t = (uint32_t)-1;
    ready = 1;
    for (i = 0; i < {P}_N_FORMULAS; ++i) values[i] = NAN;
{chr(10).join(reset)}
    (void)i;
}}

float {prefix}_update(const float sig[{P}_N_SIGNALS])
{{
    float r;
    int i;
    if (!ready) {prefix}_reset();  /* static zeros are not the buffers' start values */
    ++t;
{chr(10).join(body)}
    r = values[0];
    for (i = 1; i < {P}_N_FORMULAS; ++i) if (values[i] < r) r = values[i];
    return r;
}}

float {prefix}_formula_value(int i)
{{
    return (i >= 0 && i < {P}_N_FORMULAS) ? values[i] : NAN;
}}
"""
    return {f"{prefix}.h": h, f"{prefix}.c": c}

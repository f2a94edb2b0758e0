"""Writing generated C: the one float-literal writer, array initializers, and the template renderer.

Every generator of C in the project (export.c_codegen, export.crazyflie_app, edgectl.safety.c_monitor,
edgectl.safety.c_backup) writes its numbers through `c_float`, so "the constant in the C is the constant
in the model" is proved once (tests/test_c_templates.py round-trips awkward float32 values: subnormals,
-0.0, the largest float32). Ground floor: numpy only.

Templates (the emlearn style of issue 14): the C logic lives in reviewed .c/.h files with @NAME@
placeholders; the generator fills in data (constant arrays, sizes, scales) and thin glue, never logic.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

_PLACEHOLDER = re.compile(r"@([A-Z][A-Z0-9_]*)@")


class CSourceError(ValueError):
    """A value that cannot be written as C, or a template whose placeholders do not match."""


def c_float(x, *, double: bool = False, paren_negative: bool = False, where: str = "") -> str:
    """A C literal that reads back as exactly float32(x) ("...f"), or as exactly the double x (double=True).

    float32: the value is rounded to float32 first, then written with 9 significant digits, which
    is enough for any float32 to round-trip (IEEE 754: 9 = ceil(1 + 24 log10 2)); a C compiler
    rounds the decimal to the nearest float, which is that float32. double: Python's repr, the
    shortest decimal that reads back as the same double (17 digits at most).
    paren_negative: "(-1.5f)" instead of "-1.5f", for a literal pasted after an operator.
    Raises CSourceError for NaN, inf, or a value that is inf in float32.
    """
    at = f"{where}: " if where else ""
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise CSourceError(f"{at}expected a finite number, got {x!r}")
    v = float(x)
    if not double:
        with np.errstate(over="ignore"):
            v = float(np.float32(v))  # beyond float32's range this is inf, refused below
    if not math.isfinite(v):
        raise CSourceError(f"{at}non-finite constant {v} cannot be written as C")
    s = repr(v) if double else f"{v:.9g}"
    if "e" not in s and "." not in s:
        s += ".0"
    if not double:
        s += "f"
    return f"({s})" if paren_negative and s.startswith("-") else s


def c_array(values, fmt=c_float, per_line: int = 8, indent: str = "    ") -> str:
    """A brace initializer, `per_line` values a line: "{\\n    a, b,\\n    c\\n}"."""
    vals = [fmt(v) for v in np.asarray(values).ravel()]
    lines = [", ".join(vals[i:i + per_line]) for i in range(0, len(vals), per_line)]
    return "{\n" + ",\n".join(indent + line for line in lines) + "\n}"


def c_matrix(m, fmt=c_float, per_line: int = 8) -> str:
    """A 2-D brace initializer, one inner brace per row."""
    rows = [c_array(row, fmt, per_line, indent="        ").replace("\n}", "\n    }") for row in np.asarray(m)]
    return "{\n" + ",\n".join("    " + r for r in rows) + "\n}"


def c_int(v) -> str:
    return str(int(v))


def render(path: Path, *, unused_ok: bool = False, **values) -> str:
    """The template at `path` with every @NAME@ replaced by str(values[NAME]), in one pass.

    Both directions are checked: a placeholder left unfilled, or (unless unused_ok, for one set of
    values shared by several templates) a value the template never asks for, is a generator/template
    mismatch: a bug in edgectl, not in the user's bundle.
    """
    text = Path(path).read_text()
    wanted = set(_PLACEHOLDER.findall(text))
    missing, extra = sorted(wanted - set(values)), [] if unused_ok else sorted(set(values) - wanted)
    if missing or extra:
        raise CSourceError(f"{path}: placeholders not filled {missing}, values with no placeholder {extra}")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)

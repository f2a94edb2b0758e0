"""Files and JSON the one way: atomic writes, atomic folder swaps, strict JSON. Ground floor, stdlib only.

- `atomic_write(path, data)`: a reader sees the old file or the new one, never half of one (temporary file in the
  same folder, then os.replace), readable by other users (mkstemp's 0600 would lock the runtime out).
- `replace_dir(new, out)`: a finished folder takes the place of `out`; POSIX cannot rename onto a non-empty folder,
  so the old one is moved aside first and put back if the swap fails.
- `json_value(x)` / `dumps_strict(obj)`: strict JSON (RFC 8259 has no NaN or Infinity): non-finite floats become
  null, numpy scalars plain numbers, tuples lists; `dumps_strict` refuses whatever is left (allow_nan=False).
"""
from __future__ import annotations

import json
import math
import numbers
import os
import shutil
import tempfile
from pathlib import Path


def atomic_write(path, data: bytes | str, *, mode: int = 0o644, fsync: bool = False) -> Path:
    """Write `data` (str as UTF-8) to `path` atomically; creates the parent folder. Returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.tmp-", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def replace_dir(new: Path, out: Path) -> None:
    """Rename folder `new` to `out`, replacing an existing `out` (both on one file system)."""
    new, out = Path(new), Path(out)
    if not out.exists():
        os.rename(new, out)
        return
    aside_dir = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    aside = aside_dir / out.name
    os.rename(out, aside)
    try:
        os.rename(new, out)
    except BaseException:
        os.rename(aside, out)
        os.rmdir(aside_dir)
        raise
    shutil.rmtree(aside_dir, ignore_errors=True)


def json_value(x, *, other=str):
    """`x` as plain JSON values: dict keys str, tuples lists, numpy scalars Python numbers, Path str, non-finite
    floats None. Anything else goes through `other` (str by default; None leaves it for json to refuse)."""
    if isinstance(x, dict):
        return {str(k): json_value(v, other=other) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_value(v, other=other) for v in x]
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    # numbers.Integral / Real cover numpy's integer and floating scalars without importing numpy: `edgectl --help`
    # imports this module and stays numpy-free (0 numpy modules in -X importtime of edgectl.cli.common)
    if isinstance(x, numbers.Integral):
        return int(x)
    if isinstance(x, numbers.Real):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, Path):
        return str(x)
    if other is None:
        return x
    try:  # other numeric scalars (np.bool_, 0-d arrays): as json.dumps would see float(x)
        f = float(x)
    except (TypeError, ValueError):
        return other(x)
    return f if math.isfinite(f) else None


def dumps_strict(obj, *, sanitize: bool = False, **kw) -> str:
    """json.dumps that never writes NaN or Infinity: ValueError instead, or null for them with sanitize=True."""
    return json.dumps(json_value(obj) if sanitize else obj, allow_nan=False, **kw)

"""Running `edgectl` as a fresh process from a bench script, as a user does: its budget then counts from
the interpreter start, and its `--json` summary is the last stdout line."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), e.get("PYTHONPATH", "")) if p)
    return e


def last_json(stdout: str) -> dict:
    lines = stdout.strip().splitlines()
    if not lines:
        raise ValueError("no output")
    return json.loads(lines[-1])


def edgectl(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgectl", *args]

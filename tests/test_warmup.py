"""`edgectl warmup` compiles exactly the programs `edgectl train` then loads from the cache."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from typer.testing import CliRunner

from edgectl.cli import app


def _edgectl(args, env, cwd):
    return subprocess.run([sys.executable, "-m", "edgectl.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_warmup_fills_the_cache_that_train_reads(tmp_path):
    env = {**os.environ, "EDGECTL_JAX_CACHE": str(tmp_path / "jax"), "COLUMNS": "200"}
    w = _edgectl(["warmup", "quadrotor", "--task", "hover", "--action", "motor"], env, tmp_path)
    assert w.returncode == 0, w.stdout + w.stderr
    cold = float(re.search(r"quadrotor hover: compiled in ([\d.]+) s", w.stdout).group(1))
    assert any((tmp_path / "jax").iterdir())
    t = _edgectl(["train", "quadrotor", "--seconds", "8", "--out", str(tmp_path / "b"), "--json"], env, tmp_path)
    assert t.returncode == 0, t.stdout + t.stderr
    warm = json.loads(t.stdout.strip().splitlines()[-1])["compile_seconds"]
    # a program that differed (another config, shape or flag) would compile again here, as slowly as in warmup
    assert warm < 0.5 * cold, (warm, cold)
    assert "JIT compilation took" not in t.stdout


def test_warmup_refuses_unknown_vehicle_and_task():
    r = CliRunner().invoke(app, ["warmup", "boat"])
    assert r.exit_code != 0 and "unknown vehicle 'boat'" in r.output
    r = CliRunner().invoke(app, ["warmup", "quadrotor", "--task", "race"])
    assert r.exit_code != 0 and "unknown task 'race' for quadrotor" in r.output

"""Running `edgectl` as a fresh process from a bench script, as a user does: its budget then counts from
the interpreter start, and its `--json` summary is the last stdout line."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
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


def train_and_eval(workdir: Path, out: Path, train_args: list[str], eval_args: list[str]) -> tuple[dict, dict, float]:
    """`edgectl train TRAIN_ARGS --out OUT --overwrite --json`, then `edgectl eval OUT EVAL_ARGS --json --plot
    WORKDIR/<out name>.eval.png`, both run from `workdir` (so runs/latest lands there, not in the user's
    checkout). Returns (train summary, eval summary, seconds the train process took); raises RuntimeError
    with the command and its output when either fails."""
    cmd = edgectl("train", *train_args, "--out", str(out), "--overwrite", "--json")
    t0 = time.time()
    tr = subprocess.run(cmd, cwd=workdir, env=env(), capture_output=True, text=True)
    wall = time.time() - t0
    if tr.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {tr.returncode}:\n{tr.stdout[-2000:]}\n{tr.stderr[-4000:]}")
    ev_cmd = edgectl("eval", str(out), *eval_args, "--json", "--plot", str(workdir / f"{out.name}.eval.png"))
    er = subprocess.run(ev_cmd, cwd=workdir, env=env(), capture_output=True, text=True)
    if er.returncode != 0:
        raise RuntimeError(f"{' '.join(ev_cmd)} exited {er.returncode}:\n{er.stderr[-4000:]}")
    return last_json(tr.stdout), last_json(er.stdout), wall


def run_jobs(keep: Path | None, prefix: str, jobs, run, line) -> list[dict] | None:
    """`run(job, workdir)` for each job, in `keep` or a temporary directory removed at the end, printing
    `line(row)` after each. None (the error printed) if a run could not be made: the bench exits 2."""
    workdir = keep or Path(tempfile.mkdtemp(prefix=prefix))
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for job in jobs:
            try:
                row = run(job, workdir)
            except (RuntimeError, ValueError, KeyError) as e:
                print(f"error: {e}", file=sys.stderr)
                return None
            rows.append(row)
            print(line(row), flush=True)
    finally:
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return rows

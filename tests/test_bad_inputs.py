"""Every row of docs/bad_inputs.md, run again as a user runs it (`python -m edgectl ...` in a fresh process, in a
scratch folder holding its inputs): exit status 2, one line of output, `error: ...` naming the file, field or value,
no traceback, nothing on disk changed, no simulated vehicle armed; and that line is the one the document shows.
The rows live in tests/bad_inputs.py (`python3 tests/bad_inputs.py --write` rewrites the document from them)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("bad_inputs", Path(__file__).with_name("bad_inputs.py"))
bad_inputs = importlib.util.module_from_spec(_spec)
sys.modules["bad_inputs"] = bad_inputs  # its dataclasses look their module up
_spec.loader.exec_module(bad_inputs)

DOCUMENTED = bad_inputs.documented()


def test_the_document_lists_every_row_once():
    ids = [c.id for c in bad_inputs.CASES]
    assert len(ids) == len(set(ids))
    assert list(DOCUMENTED) == ids, "docs/bad_inputs.md is out of date: python3 tests/bad_inputs.py --write"
    assert {c.kind for c in bad_inputs.CASES} >= {"bundle", "platform", "track", "URI", "packet", "sensor", "flag", "extra"}


@pytest.mark.parametrize("case", bad_inputs.CASES, ids=lambda c: c.id)
def test_bad_input(case, tmp_path):
    if case.block or case.vehicle == "mavlink":
        pytest.importorskip("pymavlink")
    if case.vehicle == "crazyflie-other":
        pytest.importorskip("cflib")
    work = tmp_path / "w"
    r = bad_inputs.run_case(case, work)
    out = r.stdout + r.stderr
    assert "Traceback" not in out, out
    assert r.code == 2, out
    assert len(r.lines) == 1 and r.stdout.strip() == "", out  # one line, on stderr
    line = bad_inputs.normalize(r.lines[0], work)
    assert line.startswith("error: ") and case.names in line, line
    assert not r.changed, f"changed on disk: {r.changed}"
    assert not r.vehicle_flown
    assert DOCUMENTED.get(case.id) == line, "docs/bad_inputs.md shows another line: python3 tests/bad_inputs.py --write"

"""edgectl.fsutil: the one atomic-write helper, the one folder swap and the one strict-JSON helper."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from edgectl.fsutil import atomic_write, dumps_strict, json_value, replace_dir


def test_atomic_write_replaces_whole_files_readable_by_others(tmp_path):
    p = tmp_path / "sub" / "f.bin"
    atomic_write(p, b"old")
    assert atomic_write(p, "new ü") == p and p.read_text(encoding="utf-8") == "new ü"
    assert stat.S_IMODE(p.stat().st_mode) == 0o644  # not mkstemp's 0600: the runtime may be another user
    assert sorted(os.listdir(p.parent)) == ["f.bin"]  # no temporary left behind


def test_atomic_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    p = tmp_path / "f.txt"
    atomic_write(p, "old")
    with pytest.raises(TypeError):
        atomic_write(p, 12345)  # not bytes or str: fails inside the write
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]


def test_replace_dir_swaps_and_puts_the_old_one_back_on_failure(tmp_path, monkeypatch):
    out, new = tmp_path / "out", tmp_path / "new"
    new.mkdir()
    (new / "a").write_text("1")
    replace_dir(new, out)
    assert (out / "a").read_text() == "1" and not new.exists()
    new.mkdir()
    (new / "b").write_text("2")
    replace_dir(new, out)
    assert sorted(os.listdir(out)) == ["b"] and sorted(os.listdir(tmp_path)) == ["out"]

    new.mkdir()
    real_rename = os.rename

    def failing(src, dst):
        if Path(src) == new:
            raise OSError("disk full")
        return real_rename(src, dst)
    monkeypatch.setattr(os, "rename", failing)
    with pytest.raises(OSError, match="disk full"):
        replace_dir(new, out)
    assert sorted(os.listdir(out)) == ["b"] and sorted(os.listdir(tmp_path)) == ["new", "out"]


def test_strict_json_has_no_nan_and_plain_numbers():
    obj = {1: (np.float32(1.5), np.int64(3), float("nan"), -np.inf), "p": Path("/x"), "ok": True, "n": None}
    assert json_value(obj) == {"1": [1.5, 3, None, None], "p": "/x", "ok": True, "n": None}
    text = dumps_strict(obj, sanitize=True, indent=1)
    assert json.loads(text)["1"] == [1.5, 3, None, None] and "NaN" not in text and "Infinity" not in text
    with pytest.raises(ValueError):
        dumps_strict({"x": float("inf")})
    marker = object()
    assert json_value([marker], other=None) == [marker]  # left for json.dumps to refuse
    with pytest.raises(TypeError):
        dumps_strict(json_value({"x": marker}, other=None))

"""bench/autopilot_sitl.py's bad inputs (the SITL builds themselves are not in CI: docs/autopilot_sitl.md): one line,
exit 2, nothing started."""
from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("autopilot_sitl_bench", REPO / "bench" / "autopilot_sitl.py")
B = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(B)


def test_missing_builds_are_named(tmp_path, capsys):
    assert B.main(["ardupilot", "--build", str(tmp_path)]) == 2
    assert "build/sitl/bin/arducopter" in capsys.readouterr().err
    assert B.main(["px4", "--build", str(tmp_path)]) == 2
    assert "px4_sitl_default/bin/px4" in capsys.readouterr().err


def test_a_motor_level_bundle_a_bad_offset_and_a_bad_param_are_refused(tmp_path, capsys):
    assert B.main(["px4", "--build", str(tmp_path), "--bundle", str(REPO / "tests/data/px4_hover_bundle")]) == 2
    assert "not a ctbr bundle" in capsys.readouterr().err
    assert B.main(["ardupilot", "--build", str(tmp_path), "--offset", "1,2"]) == 2
    assert "--offset" in capsys.readouterr().err
    assert B.main(["px4", "--build", str(tmp_path), "--param", "COM_OBL_RC_ACT"]) == 2
    assert "--param" in capsys.readouterr().err and not list(tmp_path.iterdir())
    assert B.main(["px4", "--build", str(tmp_path), "--hold", "5"]) == 2  # the error is measured after --settle (5 s)
    assert "--settle 5 s: must be >= 0 and shorter than --hold (5 s)" in capsys.readouterr().err

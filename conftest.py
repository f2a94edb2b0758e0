"""Repository-wide pytest hooks: in CI (CI=true) a skipped test fails the run unless SKIP_ALLOWLIST below
allows it, so CI says what it did not do. A missing package or tool that CI installs (the [test] extra, gcc,
arm-none-eabi-gcc, qemu-system-arm) must never be allow-listed: CI installs it and the test must run.

Every run prints the skips: allowed ones with the allow-list's reason, the others as
"skips not on the allow-list" (a failure under CI=true, a warning elsewhere).
"""
from __future__ import annotations

import fnmatch
import os
import re

import pytest

# REALTIME: six tests fly a simulated vehicle in real time (MAVLink keep-alive and climb, the host loop over MAVLink,
# the serial car, the avoid flight on a simulated Crazyflie, the hil car lap) and assert timing or tracking that a
# descheduled thread breaks. On this 2-core VM, clean-clone CI runs on 2026-12-07 failed a different one or three of
# them each time (e.g. keep-alive 4 repeats where >= 6 are wanted; clearance 0.10 m where > 0.15 m is wanted), and
# every one passed when run again. They carry @pytest.mark.flaky(reruns=2) (pytest-rerunfailures): a failure that
# repeats three times still fails CI, and every rerun is listed in the summary (-rR).

# The reviewed allow-list, the only one: (test id glob, skip reason regex, why CI cannot run it).
# Test ids are relative to the repository root, e.g. "tests/test_x.py::test_y[param]".
SKIP_ALLOWLIST: list[tuple[str, str, str]] = [
    ("tests/test_crazyflie_app.py::test_build_against_real_firmware",
     r"set EDGECTL_CRAZYFLIE_FIRMWARE",
     "optional: a real crazyflie-firmware checkout (with submodules) that CI does not clone"),
    ("tests/test_tflite_tensorrt_backends.py::test_onnx_backend_cuda_falls_back_loudly_on_cpu",
     r"this onnxruntime has CUDA",
     "GPU: the CPU-fallback warning can only be provoked with a CPU-only onnxruntime (CI has one)"),
    # hil_tests run against simulated vehicles in CI; these fire only with a real vehicle selected (--hil).
    ("hil_tests/test_closed_loop_hil.py::*",
     r"flies a real (Crazyflie|MAVLink vehicle): set EDGECTL_HIL_ALLOW_FLIGHT=1",
     "real hardware: spinning motors needs a person's consent"),
    ("hil_tests/test_crazyflie_hil.py::test_flash_reads_back_equal*",
     r"set EDGECTL_CF_IMAGE",
     "real hardware: flashing a real Crazyflie needs a real cf2.bin"),
    ("hil_tests/test_rccar_hil.py::*",
     r"set EDGECTL_RCCAR_ALLOW_MOTION=1",
     "real hardware: driving a real car needs its wheels off the ground"),
    ("hil_tests/test_rccar_hil.py::test_link_cut_while_driving_brakes*",
     r"link cut is injected in the simulated car",
     "real hardware: a real link cut is a cable pulled by hand"),
]
# Not allowed on purpose: "no LOCAL_POSITION_NED" / "no HIGHRES_IMU" / "no wheel speed sensor" (hil_tests) are
# legitimate on some real vehicles, but against the simulated ones CI runs they would hide a regression.


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def skip_reason(report) -> str:
    longrepr = report.longrepr
    msg = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return msg[len("Skipped: "):] if msg.startswith("Skipped: ") else msg


def allowed_by(nodeid: str, reason: str) -> str | None:
    for pattern, reason_re, why in SKIP_ALLOWLIST:
        if fnmatch.fnmatchcase(nodeid, pattern) and re.search(reason_re, reason):
            return why
    return None


class SkipAudit:
    def __init__(self):
        self.allowed: list[tuple[str, str, str]] = []  # (nodeid, reason, why)
        self.refused: list[tuple[str, str]] = []  # (nodeid, reason)

    def record(self, report) -> None:
        # xfail reports come as skipped too: they are not skips
        if not report.skipped or hasattr(report, "wasxfail"):
            return
        reason = skip_reason(report)
        why = allowed_by(report.nodeid, reason)
        if why is None:
            self.refused.append((report.nodeid, reason))
        else:
            self.allowed.append((report.nodeid, reason, why))

    # a module-level importorskip skips at collection: a CollectReport, not a test report
    def pytest_collectreport(self, report):
        self.record(report)

    def pytest_runtest_logreport(self, report):
        self.record(report)

    def pytest_terminal_summary(self, terminalreporter):
        tr = terminalreporter
        if self.allowed:
            tr.write_sep("-", f"{len(self.allowed)} allowed skips (conftest.py SKIP_ALLOWLIST)")
            for nodeid, _, why in self.allowed:
                tr.write_line(f"{nodeid}: {why}")
        if self.refused:
            verdict = "CI=true: these fail the run" if in_ci() else "these would fail CI (CI=true)"
            tr.write_sep("=", f"{len(self.refused)} skips not on the allow-list: {verdict}", red=True, bold=True)
            for nodeid, reason in self.refused:
                tr.write_line(f"SKIPPED {nodeid}: {reason}")
            tr.write_line("Install what is missing (pip install -e \".[test]\", gcc, gcc-arm-none-eabi, "
                          "libnewlib-arm-none-eabi, qemu-system-arm) or, for a real hardware/GPU need, "
                          "add a reviewed entry to SKIP_ALLOWLIST in conftest.py.")

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session):
        if in_ci() and self.refused and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_configure(config):
    config.pluginmanager.register(SkipAudit(), "edgectl_skip_audit")

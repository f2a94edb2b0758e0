"""edgectl export: a bundle to a runtime or MCU artifact, checked against the bundle."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from edgectl.cli.common import (app, choice, _console, _fail, _fmt_m, _fmt_pct, _fmt_s, latest_bundle, _print_json)


EXPORT_TARGETS = ("onnx", "tflite", "tensorrt", "c", "stm32", "crazyflie", "px4")  # checked against export.targets by the tests
CALIBRATIONS = ("rollouts", "random-states")  # checked against export.calibration.SOURCES by the tests


@app.command("export")
def export_cmd(
    bundle: Optional[Path] = typer.Argument(None, help="Bundle directory.", show_default="runs/latest"),
    target: str = typer.Option(..., "--target", "-t", metavar=choice(*EXPORT_TARGETS), help=f"One of: {', '.join(EXPORT_TARGETS)}."),
    int8: bool = typer.Option(False, "--int8", help="int8 weights and activations (c, stm32, crazyflie; tensorrt: INT8 engine), "
                              "checked in closed loop against float."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder.", show_default="exports/<bundle>-<target>[-int8]"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing export folder."),
    samples: int = typer.Option(10_000, "--samples", min=100, help="Rollout observations the artifact is checked on."),
    episodes: int = typer.Option(1000, "--episodes", min=10, help="Closed-loop episodes comparing int8 with float."),
    calibration: str = typer.Option("rollouts", "--calibration", metavar=choice(*CALIBRATIONS), help="Where the parity and int8 calibration observations "
                                    "come from: rollouts (the policy flying) or random-states (states from the task's "
                                    "start distribution, the policy not flown: for a policy that crashes too often)."),
    json_out: bool = typer.Option(False, "--json", help="Make the last stdout line the report as one JSON object."),
) -> None:
    """Export a bundle for a runtime or MCU and prove the artifact computes the same policy.

    Every artifact takes the RAW observation of the bundle's contract and returns the clipped action. The folder
    is written only when every check passes; OUT/report.json holds the parity errors (and, for stm32,
    instructions per inference, flash and RAM).
    """
    if target not in EXPORT_TARGETS:
        _fail(f"--target {target!r}: unknown target; expected one of {', '.join(EXPORT_TARGETS)}")
    from export.calibration import SOURCES
    if calibration not in SOURCES:
        _fail(f"--calibration {calibration!r}: expected one of {', '.join(SOURCES)}")
    path = latest_bundle() if bundle is None else bundle
    dest = out if out is not None else Path("exports") / f"{path.resolve().name}-{target}{'-int8' if int8 else ''}"
    from export.errors import ExportError
    from export.targets import export

    console = _console(stderr=json_out)
    t0 = time.time()
    try:
        from train_fast.train import _setup_jax
        _setup_jax()
    except ImportError:
        pass  # the checks that need the simulator say so themselves
    try:
        with console.status(f"exporting {path} to {target}") as status:
            report = export(path, target, dest, overwrite=overwrite, int8=int8, samples=samples,
                            eval_episodes=episodes, calibration=calibration, progress=lambda m: status.update(m))
    except ExportError as e:
        _fail(str(e))
    from rich.table import Table

    t = Table(title=f"edgectl export --target {target}{' --int8' if int8 else ''}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    t.add_row("bundle", f"{path} ({report['task']} on {report['platform']})")
    for name, p in report.get("parity", {}).items():
        if "mismatches" in p:
            t.add_row(f"parity {name}", f"{p['mismatches']} of {p['observations']:,} differ from the {p['reference']} (bit-exact check)")
        else:
            t.add_row(f"parity {name}", f"max |error| {p['max_abs_error']:.2e} over {p['observations']:,} observations vs {p['reference']}")
    for key, label in (("instructions_per_inference", "instructions / inference"), ("flash_bytes", "flash"), ("ram_bytes", "RAM")):
        if key in report:
            t.add_row(label, f"{report[key]:,}" + (" B" if key != "instructions_per_inference" else ""))
    if "int8_closed_loop" in report and "lap_time_s" in report["int8_closed_loop"]["int8"]:
        r = report["int8_closed_loop"]
        t.add_row("int8 vs float (laps)", f"lap {_fmt_s(r['int8']['lap_time_s'])} vs {_fmt_s(r['float32']['lap_time_s'])}, "
                  f"collisions per lap {r['int8']['collisions_per_lap']:.2f} vs {r['float32']['collisions_per_lap']:.2f}")
    elif "int8_closed_loop" in report and "success_rate" in report["int8_closed_loop"]["int8"]:
        r = report["int8_closed_loop"]
        t.add_row("int8 vs float (obstacle fields)", f"crossed {_fmt_pct(r['int8']['success_rate'])} vs "
                  f"{_fmt_pct(r['float32']['success_rate'])} ({r['episodes']} unseen fields)")
    elif "int8_closed_loop" in report:
        r = report["int8_closed_loop"]
        t.add_row("int8 vs float (closed loop)",
                  f"survival {_fmt_pct(r['int8']['survival_rate'])} vs {_fmt_pct(r['float32']['survival_rate'])}, median final error "
                  f"{_fmt_m(r['int8']['final_error_median_m'])} vs {_fmt_m(r['float32']['final_error_median_m'])} ({r['episodes']} episodes)")
    if "mcu_budget" in report:
        t.add_row("MCU budget", report["mcu_budget"])
    t.add_row("files", ", ".join(sorted(report["files"])))
    t.add_row("written to", f"{dest} ({time.time() - t0:.1f} s)")
    console.print(t)
    if json_out:
        _print_json({"out": str(dest), **report})

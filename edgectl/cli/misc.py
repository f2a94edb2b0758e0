"""edgectl import and plot."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from edgectl.cli.common import (app, choice, _console, _fail, _print_json)


IMPORT_TEMPLATES = ("hover", "figure8", "race", "avoid")  # checked against train_fast.importer.TASKS by the tests


@app.command("import")
def import_cmd(
    model: Optional[Path] = typer.Argument(None, help="An ONNX model (.onnx), a stable-baselines3 zip (PPO/A2C actor) or "
                                           "an RLtools checkpoint (.h5, e.g. learning-to-fly's)."),
    contract: Optional[Path] = typer.Option(None, "--contract", "-c", help="The contract TOML: task, platform, rate_hz, "
                                            "[[observation]] fields in the model's input order (name, size, unit, frame, "
                                            "offset, scale), [action] (names, low, high, mapping)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Bundle directory to write."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing bundle."),
    template: Optional[str] = typer.Option(None, "--template", metavar=choice(*IMPORT_TEMPLATES), help="Print a contract TOML for a task (hover, figure8, "
                                           "race, avoid), as edgectl's own policies see it, and exit."),
    json_out: bool = typer.Option(False, "--json", help="Make the last stdout line the import report as one JSON object."),
) -> None:
    """Turn a policy trained elsewhere into a bundle that evaluates, exports, shields and flies like a native one.

    Only plain MLPs can become bundle layers (Gemm or MatMul+Add, Tanh or Relu); the model's input and output sizes
    and the declared fields, units, frames, rate and action mapping are checked against what edgectl's simulator and
    runtime build for the task. Anything else is refused with one line (exit 2) and nothing is written.
    """
    from train_fast.importer import ImportRefused, contract_template, import_model

    try:
        if template is not None:
            typer.echo(contract_template(template), nl=False)
            return
        if model is None or contract is None or out is None:
            _fail("edgectl import MODEL --contract CONTRACT.toml --out BUNDLE (or --template TASK)")
        report = import_model(model, contract, out, overwrite=overwrite, command=" ".join(["edgectl", *sys.argv[1:]]))
    except ImportRefused as e:
        _fail(str(e))
    console = _console(stderr=json_out)
    console.print(f"imported {report['model']} ({report['format']}, {report['activation']} MLP "
                  f"{' -> '.join(str(s[0]) for s in report['layers'])} -> {report['layers'][-1][1]}) as a {report['task']} "
                  f"bundle for {report['platform']}: {report['bundle']}; max |action - model| {report['parity_max_abs_error']:.1e} "
                  f"over {report['parity_observations']} observations ({report['parity_reference']})")
    if json_out:
        _print_json(report)


@app.command("plot")
def plot_cmd(
    log: Path = typer.Argument(..., help="Flight log from `edgectl run`, any vehicle: CSV, or MCAP (.mcap); or a PX4 "
                               "ULog (.ulg, needs pyulog) to compare a real PX4 flight with a simulated one."),
    out: Optional[Path] = typer.Option(None, "--out", help="PNG to write.", show_default="<log>.png"),
) -> None:
    """Plot a flight log: position vs reference, the commands sent, the safety margin, the path from above, and
    the controller switches and link events."""
    from edgectl import plots
    from edgectl.runtime.flightlog import read_log

    try:
        data = read_log(log)
    except ImportError as e:
        if getattr(e, "name", None) != "pyulog":
            raise  # mcap: the command wrapper names its extra
        _fail(str(e))
    except (OSError, ValueError) as e:
        _fail(str(e) if isinstance(e, ValueError) else f"{log}: cannot read it ({e.strerror or e})")
    if not len(data["t"]):
        _fail(f"{log}: the flight log holds no ticks")
    dest = plots.flight_log_png(data, out if out is not None else log.with_suffix(".png"), title=str(log))
    typer.echo(str(dest))

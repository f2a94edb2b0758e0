"""edgectl command line: `edgectl train quadrotor` writes a policy bundle, `edgectl eval` scores one.

Only typer and rich are imported at module level: JAX, train_fast, numpy and matplotlib are imported
inside the commands, so `edgectl --help` is fast and the runtime side works without JAX installed.

The training budget (`--seconds`) counts from the start of this PROCESS (interpreter start-up,
imports and JIT compilation included), not from when training begins: it is the time a user waits.

The commands live in a module per group (train, evaluate, export, run, vehicles, misc); common holds what they
share. This package holds `app` and `main` and re-exports every name the modules define, so `edgectl.cli.X` works
as it did when edgectl.cli was one file.
"""
from __future__ import annotations

from edgectl.cli import common  # noqa: F401  first: it takes _IMPORT_TIME before typer (or anything slow) is imported

import os  # noqa: F401, I001  (tests patch edgectl.cli.os.symlink)
import sys
import typer

from edgectl.cli.common import *  # noqa: F403
from edgectl.cli.common import (_IMPORT_TIME, _MAX_STARTUP_S, _OUR_LOGGERS, _PACKAGE_NAMES, EXTRAS,  # noqa: F401
                                _check_out, _console, _default_out, _echo_error, _fail, _fmt_m, _fmt_pct, _fmt_s,
                                _fmt_steps, _json_value, _main, _print_json, _Quiet, _setup_logging, _start_thread,
                                _Typer, _version, _warm_up_plots, app)
# Importing a command module registers its commands on `app`, in the order `edgectl --help` lists them.
from edgectl.cli.train import *  # noqa: F403
from edgectl.cli.train import _print_train_summary, _run_training  # noqa: F401
from edgectl.cli.refine import *  # noqa: F403
from edgectl.cli.evaluate import *  # noqa: F403
from edgectl.cli.evaluate import _eval_avoid, _eval_race, _na_reason  # noqa: F401
from edgectl.cli.export import *  # noqa: F403
from edgectl.cli.vehicles import *  # noqa: F403
from edgectl.cli.run import *  # noqa: F403
from edgectl.cli.run import _print_run_end, _run_avoid, _run_avoid_crazyflie, _run_race, _open_log  # noqa: F401
from edgectl.cli.misc import *  # noqa: F403
from edgectl.cli.sweep import *  # noqa: F403


def main() -> None:
    """The `edgectl` program: as `app`, with a usage error (a flag's bad value, an unknown option) as one `error:`
    line naming the flag, exit 2, instead of click's framed usage panel."""
    try:
        from typer._click import exceptions as cx  # typer >= 0.26 carries its own click
    except ImportError:
        from click import exceptions as cx

    try:
        rv = app(prog_name="edgectl", standalone_mode=False)
    except cx.NoArgsIsHelpError as e:
        typer.echo(e.ctx.get_help())
        sys.exit(0)
    except cx.UsageError as e:
        where = e.ctx.command_path if e.ctx is not None else "edgectl"
        _echo_error(f"{e.format_message()} (see {where} -h)")
        sys.exit(e.exit_code)
    except cx.ClickException as e:
        _echo_error(e.format_message())
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


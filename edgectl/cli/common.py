"""What every command module of edgectl.cli shares: the app, the vocabulary (vehicles, tasks, runs/),
errors and JSON output, runs/latest, logging.

Only typer and rich are imported at module level (see edgectl/cli/__init__.py).
"""
from __future__ import annotations

import time

_IMPORT_TIME = time.time()  # fallback for process_start_time(); taken before anything slow is imported

import logging  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import NoReturn  # noqa: E402

import typer  # noqa: E402

from edgectl.fsutil import atomic_write, dumps_strict, json_value  # noqa: E402
from edgectl.tasks import DEFAULT_PLATFORM, vehicles  # noqa: E402,F401  (the registry: no JAX; a typo is refused early)

VEHICLES: dict[str, tuple[str, ...]] = vehicles()  # vehicle argument -> its tasks, default first
PLATFORM_KIND = {v: v.replace("-", "_") for v in VEHICLES}  # vehicle argument -> platform file kind
DEFAULT_TRACK = "oval"  # rc-car: hardware/tracks/oval.csv
RUNS = Path("runs")
LATEST_LINK, LATEST_FILE = "latest", "LATEST"
CURVE_FILE = "training_curve.png"
RECORD_EPISODES = 4
# A process that started this much earlier than edgectl.cli was imported is not an `edgectl` run
# (a notebook, a test runner): the budget then counts from the import instead.
_MAX_STARTUP_S = 60.0

# A package a command needs but that is not installed -> the extra that brings it (pyproject.toml).
EXTRAS = {"jax": "train", "jaxlib": "train", "optax": "train", "numba": "train", "matplotlib": "train",
          "onnx": "export", "onnxruntime": "export", "ai_edge_litert": "export", "flatbuffers": "export",
          "cflib": "bridge", "pymavlink": "bridge", "serial": "bridge", "cobs": "bridge", "usb": "bridge",
          "cv2": "camera", "rotorpy": "transfer", "mcap": "fly", "ray": "sweep"}
_PACKAGE_NAMES = {"serial": "pyserial", "cv2": "opencv-python-headless", "usb": "pyusb", "ai_edge_litert": "ai-edge-litert"}
# Client libraries whose own log lines (cflib logs a full traceback when no Crazyradio is plugged in) only -v shows.
_OUR_LOGGERS = ("edgectl", "firmware_bridge", "export", "train_fast")


def choice(*values: str) -> str:
    """The help text's type column for a flag taking one of `values`: <a|b|c>, as typer shows an Enum
    (the command itself checks the value and refuses a bad one with its own error line, exit 2)."""
    return "<" + "|".join(values) + ">"




def missing_extra(exc: BaseException) -> str | None:
    """`command needs ...` text for an ImportError of a package an extra provides, else None."""
    e: BaseException | None = exc
    while e is not None:
        name = getattr(e, "name", None) if isinstance(e, ImportError) else None
        top = (name or "").split(".")[0]
        if top in EXTRAS:
            pkg = _PACKAGE_NAMES.get(top, top)
            return f"the Python package {pkg} is not installed; it comes with the {EXTRAS[top]} extra: pip install \"edgectl[{EXTRAS[top]}]\""
        e = e.__cause__ or e.__context__
    return None


class _Typer(typer.Typer):
    """Commands registered here turn a missing optional package into one `error:` line naming its extra."""

    def command(self, *args, **kwargs):
        register = super().command(*args, **kwargs)

        def wrap(fn):
            import functools

            @functools.wraps(fn)
            def run(*a, **kw):
                try:
                    return fn(*a, **kw)
                except ImportError as e:
                    what = missing_extra(e)
                    if what is None:
                        raise
                    _fail(f"{(kwargs.get('name') or (args[0] if args else fn.__name__)).replace('_', '-')}: {what}")
            register(run)
            return fn
        return wrap


# What `edgectl` exits with (README: Exit codes).
EXIT_CODES = ("Exit codes: 0 done; 1 the job ran but failed its goal (the bundle could not be written, a flash that "
              "started and failed); 2 bad input (a bad flag, file, bundle, platform or URI; one error: line on stderr, "
              "nothing written); 130 interrupted (Ctrl-C).")

app = _Typer(
    name="edgectl",
    epilog=EXIT_CODES,
    help="Train tiny quadrotor policies in JAX on a laptop CPU, evaluate them, export them to MCUs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


# --- helpers ---------------------------------------------------------------------------------
def process_start_time() -> float:
    """Wall-clock time (time.time() scale) at which this process started.

    Linux: /proc/self/stat field 22 (starttime, clock ticks since boot) placed on the wall clock by
    /proc/uptime (10 ms resolution), or by /proc/stat btime (whole seconds, so up to 1 s early) if
    /proc/uptime is unreadable. Elsewhere, or if the result is implausible, the time this module
    was imported.
    """
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        # comm (field 2) is in parentheses and may contain spaces or ')': split after the last ')'.
        rest = stat[stat.rindex(b")") + 2:].split()
        since_boot = int(rest[19]) / os.sysconf("SC_CLK_TCK")  # rest[0] is field 3, so field 22 is rest[19]
        try:
            with open("/proc/uptime") as f:
                uptime = float(f.read().split()[0])
            start = time.time() - uptime + since_boot
        except (OSError, ValueError, IndexError):
            with open("/proc/stat") as f:
                btime = next(int(line.split()[1]) for line in f if line.startswith("btime "))
            start = btime + since_boot
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORT_TIME
    if not (_IMPORT_TIME - _MAX_STARTUP_S <= start <= _IMPORT_TIME + 0.05):
        return _IMPORT_TIME
    return min(start, _IMPORT_TIME)


def _echo_error(message: str) -> None:
    typer.secho("error: ", fg="red", bold=True, err=True, nl=False)
    typer.echo(" ".join(str(message).split("\n")), err=True)


def _fail(message: str, code: int = 2) -> NoReturn:
    """Print `error: message` on stderr (plain text, one line: no wrapping, no markup) and exit with `code`."""
    _echo_error(message)
    raise typer.Exit(code)


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


_json_value = json_value  # strict JSON: inf/nan become null, numpy scalars plain numbers (edgectl.fsutil)


def quadrotor_platform(name: str):
    """`--platform NAME`: the quadrotor platform file a bundle is flown on (eval, refine); exit 2 naming the problem."""
    from edgectl.platforms import PlatformError, load_platform
    try:
        plat = load_platform(name)
    except PlatformError as e:
        _fail(f"--platform: {e}")
    if plat.kind != "quadrotor":
        _fail(f"--platform {name}: a {plat.kind} platform; the bundle flies a quadrotor")
    return plat


def _print_json(obj) -> None:
    """The --json contract: one strict JSON object as the last stdout line, after everything Rich printed."""
    sys.stdout.flush()
    print(dumps_strict(obj, sanitize=True), flush=True)


def _fmt_m(v, digits: int = 3) -> str:
    if v is None or not math.isfinite(float(v)):
        return "n/a"
    return f"{float(v):.{digits}f} m"


def _fmt_pct(v) -> str:
    if v is None or not math.isfinite(float(v)):
        return "n/a"
    return f"{100.0 * float(v):.1f} %"


def _fmt_s(v) -> str:
    if v is None or not math.isfinite(float(v)):
        return "n/a"
    return f"{float(v):.2f} s"


def _fmt_steps(n: float) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.0f} k"


def update_latest(bundle: Path, runs: Path = RUNS) -> Path:
    """Point runs/latest at `bundle` (a relative symlink when the bundle is inside runs/). Where
    symlinks cannot be made, write runs/LATEST holding the bundle's path instead. Returns what was written."""
    runs.mkdir(parents=True, exist_ok=True)
    target = Path(bundle).resolve()
    rel = os.path.relpath(target, runs.resolve())
    link_target = rel if not rel.startswith("..") else str(target)
    link, tmp = runs / LATEST_LINK, runs / f".{LATEST_LINK}.tmp-{os.getpid()}"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(link_target, tmp, target_is_directory=True)
        os.replace(tmp, link)  # atomic: runs/latest is never missing or half-written
        (runs / LATEST_FILE).unlink(missing_ok=True)  # a stale LATEST must not outlive the link
        return link
    except OSError:
        if tmp.is_symlink():
            tmp.unlink()
    return atomic_write(runs / LATEST_FILE, str(target) + "\n")


def latest_bundle(runs: Path = RUNS) -> Path:
    """The bundle `edgectl train` wrote last (runs/latest, else the path in runs/LATEST)."""
    link = runs / LATEST_LINK
    if link.is_symlink() or link.exists():
        return link.resolve()
    file = runs / LATEST_FILE
    if file.is_file():
        text = file.read_text().strip()
        if text:
            return Path(text)
    _fail(f"no BUNDLE given and no {link} (or {file}) in {Path.cwd()}; "
          "train one first (edgectl train quadrotor) or pass the bundle directory")


def _default_out(vehicle: str, task: str, seed: int) -> Path:
    base = RUNS / f"{vehicle}-{task}-seed{seed}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out, k = base, 2
    while out.exists() or out.is_symlink():  # two runs in the same second: never reuse a directory
        out, k = base.with_name(f"{base.name}-{k}"), k + 1
    return out


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse an --out that exists (without --overwrite) or that is not safe to replace."""
    if out.is_symlink():
        _fail(f"{out}: is a symlink; pass the real directory to --out")
    if not out.exists():
        return
    if not overwrite:
        _fail(f"{out}: already exists; pass --overwrite to replace it, or choose another --out")
    if not out.is_dir():
        _fail(f"{out}: exists and is not a directory; refusing to replace it")
    # --overwrite replaces the whole directory: only ever a bundle (or an empty directory), so a
    # mistyped --out . or --out ~ cannot delete anything else.
    if not (out / "bundle.json").is_file() and any(out.iterdir()):
        _fail(f"{out}: exists, is not empty and holds no bundle.json; --overwrite only replaces a bundle directory")


def _start_thread(fn) -> threading.Thread:
    th = threading.Thread(target=fn, name=fn.__name__, daemon=True)
    th.start()
    return th


def _warm_up_plots() -> None:
    try:
        from edgectl import plots

        plots.warm_up()
    except Exception:  # noqa: BLE001 - a failed warm-up is retried (and reported) by the real plot
        pass


# --- commands --------------------------------------------------------------------------------
def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("edgectl")
        except PackageNotFoundError:
            v = "0.1.0 (not installed)"
        typer.echo(f"edgectl {v}")
        raise typer.Exit()


class _Quiet(logging.Handler):
    """Without -v: our own warnings as one `warning:` line each; client libraries' log (cflib's tracebacks) hidden.
    With -v: everything, tracebacks included."""
    verbose = False

    def emit(self, record):
        if record.levelno < logging.INFO or (not self.verbose and (record.levelno < logging.WARNING or
                                                                    not record.name.startswith(_OUR_LOGGERS))):
            return
        try:
            text = self.format(record) if self.verbose else record.getMessage().strip().splitlines()[0]
            print(text if self.verbose else f"warning: {text}", file=sys.stderr, flush=True)
        except Exception:  # noqa: BLE001  logging must never take the command down
            pass


def _setup_logging(verbose: bool) -> None:
    import logging
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _Quiet)), None)
    if handler is None:
        handler = _Quiet()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)  # a handler on the root: Python's last-resort printer no longer fires
    handler.verbose = verbose
    if verbose and root.level > logging.INFO:
        root.setLevel(logging.INFO)


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit."),
          verbose: bool = typer.Option(False, "--verbose", "-v", help="Show the log of the libraries underneath "
                                       "(cflib, pymavlink: their tracebacks included).")) -> None:
    """Train tiny quadrotor policies in JAX on a laptop CPU, evaluate them, export them to MCUs."""
    _setup_logging(verbose)

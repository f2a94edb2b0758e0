"""edgectl command line: `edgectl train quadrotor` writes a policy bundle, `edgectl eval` scores one.

Only typer and rich are imported at module level: JAX, train_fast, numpy and matplotlib are imported
inside the commands, so `edgectl --help` is fast and the runtime side works without JAX installed.

The training budget (`--seconds`) counts from the start of this PROCESS (interpreter start-up,
imports and JIT compilation included), not from when training begins: it is the time a user waits.
"""
from __future__ import annotations

import time

_IMPORT_TIME = time.time()  # fallback for process_start_time(); taken before anything slow is imported

import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import NoReturn, Optional  # noqa: E402

import typer  # noqa: E402

# Vehicle kind -> tasks. Kept here (checked against train_fast.tasks by the tests) so that a typo
# is refused before JAX is imported.
VEHICLES: dict[str, tuple[str, ...]] = {"quadrotor": ("hover", "figure8", "avoid"), "rc-car": ("race",)}
DEFAULT_PLATFORM = {"quadrotor": "crazyflie_2_1", "rc-car": "rc_car_1_10"}
PLATFORM_KIND = {"quadrotor": "quadrotor", "rc-car": "rc_car"}  # vehicle argument -> platform file kind
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
          "cv2": "camera", "rotorpy": "transfer"}
_PACKAGE_NAMES = {"serial": "pyserial", "cv2": "opencv-python-headless", "usb": "pyusb", "ai_edge_litert": "ai-edge-litert"}
# Client libraries whose own log lines (cflib logs a full traceback when no Crazyradio is plugged in) only -v shows.
_OUR_LOGGERS = ("edgectl", "firmware_bridge", "export", "train_fast")


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


app = _Typer(
    name="edgectl",
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


def _json_value(x):
    """Strict JSON: inf/nan become null, numpy scalars plain numbers."""
    if isinstance(x, dict):
        return {str(k): _json_value(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_value(v) for v in x]
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, int):
        return x
    try:
        f = float(x)
    except (TypeError, ValueError):
        return str(x)
    if f.is_integer() and type(x).__name__.startswith("int"):
        return int(f)
    return f if math.isfinite(f) else None


def _print_json(obj) -> None:
    """The --json contract: one strict JSON object as the last stdout line, after everything Rich printed."""
    sys.stdout.flush()
    print(json.dumps(_json_value(obj), allow_nan=False), flush=True)


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
    file, tmp = runs / LATEST_FILE, runs / f".{LATEST_FILE}.tmp-{os.getpid()}"
    tmp.write_text(str(target) + "\n")
    os.replace(tmp, file)
    return file


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


@app.command()
def train(
    vehicle: str = typer.Argument(..., help=f"Vehicle kind: {', '.join(VEHICLES)}."),
    task: Optional[str] = typer.Option(None, "--task", help="Task: hover | figure8 | avoid (quadrotor, avoid: vision, CAD2RL-style), race (rc-car).",
                                       show_default="hover (quadrotor), race (rc-car)"),
    seconds: Optional[float] = typer.Option(None, "--seconds", help="Wall-clock budget in seconds, from process start "
                                            "(start-up, JIT compilation and writing the bundle included).",
                                            show_default="20, 120 with --robust"),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    out: Optional[Path] = typer.Option(None, "--out", help="Bundle directory to write.",
                                       show_default="runs/<vehicle>-<task>-seed<N>-<time>"),
    robust: bool = typer.Option(False, "--robust", help="quadrotor hover/figure8: the preset for a policy that must "
                                "survive what the platform file does not know: a 120 s budget, and checkpoints chosen "
                                "on vehicles drawn from the platform's randomization ranges (edgectl eval --perturb) "
                                "instead of its nominal vehicle. Both train across the full ranges."),
    platform: Optional[str] = typer.Option(None, "--platform", help="Platform name (hardware/<name>.toml) or "
                                           "path to a platform file.", show_default=DEFAULT_PLATFORM["quadrotor"]),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out if it is an existing bundle."),
    json_out: bool = typer.Option(False, "--json", help="Make the last stdout line a JSON summary "
                                  "(bundle, seconds_to_bundle, env_steps, best_eval)."),
    track: Optional[str] = typer.Option(None, "--track", help="rc-car: the course, a demonstration-lap CSV "
                                        "(hardware/tracks/<name>.csv by name, or a path).", show_default=DEFAULT_TRACK),
    action_delay: float = typer.Option(0.0, "--action-delay", help="quadrotor hover/figure8: train with an actuation "
                                       "delay drawn per episode up to at least this fraction of a control period (0-1); "
                                       "the platform's randomization.action_delay already draws 0-1 period (a host link "
                                       "such as MAVLink: 1-7 ms at 100 Hz)."),
    action: str = typer.Option("motor", "--action", help="quadrotor hover/figure8: motor (four normalized motor "
                               "commands) or ctbr (collective thrust + body rates, flown through the platform's "
                               "[rate_controller] loop: what PX4 offboard and ArduPilot GUIDED_NOGPS accept over MAVLink)."),
) -> None:
    """Train a policy against a time budget and write a verified bundle (then: edgectl eval)."""
    t_start = process_start_time()
    if vehicle not in VEHICLES:
        _fail(f"unknown vehicle {vehicle!r}; supported vehicles: {', '.join(VEHICLES)}")
    task = task or VEHICLES[vehicle][0]
    if robust and (vehicle != "quadrotor" or task not in ("hover", "figure8")):
        _fail(f"--robust applies to quadrotor hover and figure8, not to {vehicle} {task}")
    seconds = seconds if seconds is not None else (120.0 if robust else 20.0)
    if track is not None and vehicle != "rc-car":
        _fail(f"--track applies to rc-car only, not to {vehicle}")
    if task not in VEHICLES[vehicle]:
        _fail(f"unknown task {task!r} for {vehicle}; supported tasks: {', '.join(VEHICLES[vehicle])}")
    if not (seconds > 0 and math.isfinite(seconds)):
        _fail(f"--seconds must be a positive number, got {seconds}")
    if action_delay and (vehicle != "quadrotor" or task not in ("hover", "figure8")):
        _fail(f"--action-delay applies to quadrotor hover and figure8, not to {vehicle} {task}")
    if action not in ("motor", "ctbr"):
        _fail(f"--action {action!r}: expected motor or ctbr")
    if action == "ctbr" and (vehicle != "quadrotor" or task not in ("hover", "figure8")):
        _fail(f"--action ctbr applies to quadrotor hover and figure8, not to {vehicle} {task}")
    if not (0.0 <= action_delay <= 1.0):
        _fail(f"--action-delay must be between 0 and 1 control period, got {action_delay}")
    from edgectl.platforms import PlatformError, load_platform

    platform = platform or DEFAULT_PLATFORM[vehicle]
    try:
        plat = load_platform(platform)
    except PlatformError as e:
        _fail(str(e))
    if plat.kind != PLATFORM_KIND.get(vehicle, vehicle):
        _fail(f"platform {plat.name!r} ({plat.path}) is a {plat.kind}, not a {vehicle}")
    if action == "ctbr" and "rate_controller.firmware" not in plat.values:
        _fail(f"--action ctbr: platform {plat.name!r} ({plat.path}) has no [rate_controller] section naming the autopilot "
              "whose rate loop flies the policy (firmware = crazyflie | px4 | ardupilot, max_rate)")
    if vehicle == "rc-car":
        from train_fast.tasks.car_tasks import TrackError, load_track

        try:
            track = str(load_track(track or DEFAULT_TRACK).path)
        except TrackError as e:
            _fail(str(e))
    default_out = out is None
    if out is None:
        out = _default_out(vehicle, task + ("-ctbr" if action == "ctbr" else ""), seed)
    _check_out(out, overwrite)

    console = _console()
    if seconds < 10:
        console.print(f"[yellow]note:[/] --seconds {seconds:g} is short: start-up and JIT compilation alone "
                      "take about 5-10 s of it, so expect little training")
    overrides = ({"action_delay": action_delay} if action_delay else {}) | ({"action": action} if action != "motor" else {})
    result, written, latest = _run_training(console, plat, task, seconds, seed, out, overwrite, t_start, track=track,
                                            task_overrides=overrides or None, robust=robust, default_out=default_out)
    _print_train_summary(console, result, out, latest, seconds, written - t_start, json_out)


def failed_evaluation(best: dict, task: str) -> str | None:
    """Why the best checkpoint's own evaluation says the bundle does not fly (None: it does). The line is where
    the evaluation's own median stops being defined: half the episodes lost (hover, figure8), half the obstacle
    fields not crossed (avoid), no lap finished (race)."""
    if task == "race":
        return None if best.get("lap_time_s") is not None else "no lap finished from a standing start"
    if task == "avoid":
        rate = best.get("success_rate")
        return None if rate is not None and rate >= 0.5 else f"{_fmt_pct(rate)} of the obstacle fields crossed"
    rate = best.get("survival_rate")
    return None if rate is not None and rate >= 0.5 else \
        f"survival {_fmt_pct(rate)} of {best.get('episodes')} episodes (under half: no median error)"


def _run_training(console, plat, task: str, seconds: float, seed: int, out: Path, overwrite: bool, t_start: float,
                  track: Optional[str] = None, task_overrides: Optional[dict] = None, robust: bool = False,
                  default_out: bool = True):
    from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, TextColumn
    from rich.text import Text

    budget = seconds

    class _Clock(ProgressColumn):
        def render(self, task_):
            return Text(f"{time.time() - t_start:5.1f}/{budget:g} s")

    class _BudgetProgress(Progress):
        # The bar is the budget: its fill is recomputed from the clock at every refresh, so it
        # moves while a chunk (or the JIT compilation) runs, not only at the progress callbacks.
        def get_renderables(self):
            el = time.time() - t_start
            for tk in self.tasks:
                tk.completed = min(max(el, 0.0), tk.total or 0.0)
            yield from super().get_renderables()

    warm: list[threading.Thread] = []

    def on_chunk(entry: dict) -> None:
        if not warm:  # JIT compilation is over; import matplotlib beside the training from here on
            warm.append(_start_thread(_warm_up_plots))
        if "eval_success_rate" in entry:  # avoid: obstacle fields crossed
            stats = (f"{_fmt_steps(entry['env_steps'])} steps  return {entry['mean_return'] or 0.0:6.2f}  "
                     f"crossed {_fmt_pct(entry['eval_success_rate'])}  collisions {_fmt_pct(entry['eval_collision_rate'])}"
                     + ("  *" if entry.get("best") else ""))
            progress.update(tid, description=f"training (chunk {entry['chunk']})", stats=stats)
            return
        if "eval_lap_time_s" in entry:  # race: lap time from a standing start, collisions
            stats = (f"{_fmt_steps(entry['env_steps'])} steps  reward/step {entry['mean_reward']:5.2f}  "
                     f"lap {_fmt_s(entry['eval_lap_time_s'])}  collisions {entry['eval_collisions']}"
                     + ("  *" if entry.get("best") else ""))
            progress.update(tid, description=f"training (chunk {entry['chunk']})", stats=stats)
            return
        err = entry.get("eval_tracking_rmse_m", entry.get("eval_final_error_median_m"))
        err_name = "rmse" if "eval_tracking_rmse_m" in entry else "median err"
        stats = (f"{_fmt_steps(entry['env_steps'])} steps  return {entry['mean_return']:7.1f}  "
                 f"survival {_fmt_pct(entry.get('eval_survival_rate'))}  {err_name} {_fmt_m(err)}"
                 + ("  *" if entry.get("best") else ""))
        progress.update(tid, description=f"training (chunk {entry['chunk']})", stats=stats)

    from train_fast.train import save_bundle, train

    from edgectl import plots

    with _BudgetProgress(SpinnerColumn(), TextColumn("{task.description:<20}"), BarColumn(bar_width=24), _Clock(),
                         TextColumn("{task.fields[stats]}"), console=console, transient=False,
                         refresh_per_second=8) as progress:
        tid = progress.add_task("compiling (JIT)", total=budget, stats="")
        if task == "race":
            from train_fast.train import train_race

            result = train_race(platform_name=str(plat.path), track=track, seconds=seconds, seed=seed, t_start=t_start,
                                progress=on_chunk)
        elif task == "avoid":
            from train_fast.train import train_avoid

            result = train_avoid(platform_name=str(plat.path), seconds=seconds, seed=seed, t_start=t_start, progress=on_chunk)
        else:
            result = train(platform_name=str(plat.path), task=task, seconds=seconds, seed=seed, t_start=t_start,
                           progress=on_chunk, task_overrides=task_overrides, robust=robust)
        trained = time.time()
        progress.update(tid, description="writing bundle")
        if warm:
            warm[0].join()
        if task == "race":
            from train_fast.evaluate_car import training_curve_png

            curve = training_curve_png(result.history, title=f"{plat.name} race on {Path(track).stem}, seed {seed}",
                                       budget_s=seconds)
        elif task == "avoid":
            from train_fast.evaluate_avoid import training_curve_png as avoid_curve

            curve = avoid_curve(result.history, title=f"{plat.name} avoid ({result.task.get('image')} camera), seed {seed}",
                                budget_s=seconds)
        else:
            curve = plots.training_curve_png(result.history, title=f"{plat.name} {task}, seed {seed}", budget_s=seconds)
        from edgectl.bundle import BundleError

        try:
            import shlex
            save_bundle(result, out, extra_files={CURVE_FILE: curve}, overwrite=overwrite,
                        command=shlex.join(["edgectl", *sys.argv[1:]]))
        except (BundleError, OSError) as e:
            progress.stop()
            _fail(f"could not write the bundle: {e}", code=1)
        written = time.time()
        result.metrics["post_train_s"] = written - trained  # curve + bundle (the manifest is already written)
        progress.update(tid, description="done")
    latest, why_not = move_latest(out, default_out, result.metrics.get("best_eval", {}), task)
    if why_not is not None:
        result.metrics["latest_not_moved"] = why_not
    return result, written, latest


def move_latest(out: Path, default_out: bool, best: dict, task: str) -> tuple[Optional[Path], Optional[str]]:
    """runs/latest is what `edgectl eval/export/run` take without a BUNDLE: it moves only to a bundle written to the
    default place that passed its own evaluation. Returns (what was written, None) or (None, why it did not move)."""
    failed = failed_evaluation(best, task)
    if not default_out:
        return None, "--out was given"
    if failed is not None:
        return None, f"the bundle failed its own evaluation ({failed})"
    try:
        return update_latest(out), None
    except OSError as e:
        return None, f"could not update it ({e})"


def _print_train_summary(console, result, out: Path, latest, seconds: float, to_bundle: float, json_out: bool) -> None:
    from rich.table import Table

    m = result.metrics
    best = m.get("best_eval", {})
    over = to_bundle > seconds
    t = Table(title="edgectl train", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    t.add_row("task", f"{result.task.get('name')} on {result.platform_name}, seed {result.seed}")
    t.add_row("process start -> bundle", f"{to_bundle:.2f} s of {seconds:g} s" + ("  [red](over budget)[/]" if over else "")
              + f"  (curve + bundle {m['post_train_s']:.2f} s)")
    t.add_row("env steps", f"{m['env_steps']:,.0f} in {m['chunks']} chunks (best: chunk {m['best_chunk']})")
    comp = m.get("compile_seconds")
    if comp is not None:
        t.add_row("JIT compilation", f"{comp:.1f} s of the budget")
    if result.task.get("name") == "avoid":
        t.add_row("mean return", f"{m['first_mean_return'] or 0.0:.1f} -> {m['final_mean_return'] or 0.0:.1f}")
        t.add_row("best eval", f"{_fmt_pct(best.get('success_rate'))} of {best.get('episodes')} fields crossed, "
                  f"{_fmt_pct(best.get('collision_rate'))} collisions (training-time scenes; edgectl eval uses unseen ones)")
    elif result.task.get("name") == "race":
        t.add_row("track", str(result.task.get("track")))
        t.add_row("mean reward per step", f"{m['first_mean_reward']:.2f} -> {m['final_mean_reward']:.2f}")
        t.add_row("best eval lap time", f"{_fmt_s(best.get('lap_time_s'))} ({best.get('laps_completed')} of "
                  f"{best.get('laps')} laps from a standing start, {best.get('collisions')} collisions)")
    else:
        t.add_row("mean return", f"{m['first_mean_return']:.1f} -> {m['final_mean_return']:.1f}")
        n = best.get("episodes")
        t.add_row("best eval survival", _fmt_pct(best.get("survival_rate")) + (f" of {n} episodes" if n else ""))
        t.add_row("best eval final error", f"median {_fmt_m(best.get('final_error_median_m'))}, "
                  f"p95 {_fmt_m(best.get('final_error_p95_m'))}")
        if "tracking_rmse_m" in best:
            t.add_row("best eval tracking RMSE", _fmt_m(best.get("tracking_rmse_m")))
    t.add_row("bundle", str(out))
    console.print(t)
    why_not = m.get("latest_not_moved")
    if why_not is not None:
        link = RUNS / LATEST_LINK
        now = f"it still points at {link.resolve()}" if (link.is_symlink() or link.exists()) else "there is none yet"
        console.print(f"[yellow]note:[/] {link} not moved: {why_not}; {now}", soft_wrap=True)
    cmd = "edgectl eval" if latest is not None and Path(latest).name == LATEST_LINK else f"edgectl eval {out}"
    console.print(f"next: [bold]{cmd}[/]", soft_wrap=True)
    # a warm cache still traces and lowers the programs: 3-4.3 s on a loaded 2-core machine; a cold one compiles for 45 s
    if comp is not None and comp > max(6.0, 0.2 * seconds):
        console.print(f"[yellow]note:[/] JIT compilation took {comp:.1f} s of the {seconds:g} s budget: the compiled "
                      "programs were not in the cache (first run on this machine, or another jax version). They are "
                      f"cached now; `edgectl warmup` compiles them ahead for every task", soft_wrap=True)
    if json_out:
        summary = {"bundle": str(out), "seconds": seconds, "seconds_to_bundle": to_bundle,
                   "post_train_s": m["post_train_s"],
                   "env_steps": m["env_steps"], "chunks": m["chunks"], "compile_seconds": comp, "best_eval": best,
                   "task": result.task.get("name"), "platform": result.platform_name, "seed": result.seed,
                   "latest_moved": latest is not None, "latest_not_moved": why_not}
        if result.task.get("name") == "race":
            summary["track"] = result.task.get("track")
        _print_json(summary)


@app.command("warmup")
def warmup_cmd(
    vehicle: Optional[str] = typer.Argument(None, help="quadrotor or rc-car; default: both."),
    task: Optional[str] = typer.Option(None, "--task", help="One task (hover, figure8, avoid, race); default: every "
                                       "task of the vehicle except avoid (its 300 s budget absorbs its compile)."),
    action: Optional[str] = typer.Option(None, "--action", help="quadrotor hover/figure8: motor or ctbr; default: both."),
) -> None:
    """Compile the training programs into the persistent cache once, so `edgectl train` spends its budget training.

    On a fresh machine `edgectl train quadrotor --seconds 20` would otherwise spend about 13 s of its 20 compiling.
    The cache is keyed by the exact program and jax version: run this again after upgrading jax."""
    from train_fast import train as tr

    vehicles = [vehicle] if vehicle else list(VEHICLES)
    for v in vehicles:
        if v not in VEHICLES:
            _fail(f"unknown vehicle {v!r}; supported vehicles: {', '.join(VEHICLES)}")
    jobs = []
    for v in vehicles:
        tasks = [task] if task else [t for t in VEHICLES[v] if t != "avoid"]
        for t in tasks:
            if t not in VEHICLES[v]:
                _fail(f"unknown task {t!r} for {v}; supported tasks: {', '.join(VEHICLES[v])}")
            for a in ([action] if action else ["motor", "ctbr"]) if (v == "quadrotor" and t in ("hover", "figure8")) else ["motor"]:
                if a not in ("motor", "ctbr"):
                    _fail(f"--action {a!r}: expected motor or ctbr")
                jobs.append((v, t, a))
    console = _console()
    total = 0.0
    for v, t, a in jobs:
        from edgectl.platforms import load_platform
        plat = load_platform(DEFAULT_PLATFORM[v])
        label = f"{v} {t}" + (" --action ctbr" if a == "ctbr" else "")
        with console.status(f"compiling {label} (cache: {tr._CACHE})"):
            t0 = time.time()
            # One chunk: compiles init, the training chunk and the checkpoint evaluation, as `edgectl train` does.
            if t == "race":
                res = tr.train_race(platform_name=str(plat.path), track=DEFAULT_TRACK, seconds=600.0, max_env_steps=1)
            elif t == "avoid":
                res = tr.train_avoid(platform_name=str(plat.path), seconds=600.0, max_env_steps=1)
            else:
                res = tr.train(platform_name=str(plat.path), task=t, seconds=600.0, max_env_steps=1,
                               task_overrides={"action": a} if a != "motor" else None)
        took = time.time() - t0
        total += took
        console.print(f"{label}: compiled in {res.metrics.get('compile_seconds') or 0.0:.1f} s ({took:.1f} s in all)")
    console.print(f"done in {total:.1f} s; cache: {tr._CACHE}")


@app.command("eval")
def eval_cmd(
    bundle: Optional[Path] = typer.Argument(None, help="Bundle directory.", show_default="runs/latest"),
    episodes: int = typer.Option(1000, "--episodes", min=1, help="Evaluation episodes (domain-randomized)."),
    seed: int = typer.Option(12345, "--seed", help="Evaluation seed (differs from training's)."),
    json_out: bool = typer.Option(False, "--json", help="Make the last stdout line one JSON object: episodes, "
                                  "survival_rate, final_error_median_m, final_error_p95_m (null: more than 5% "
                                  "of episodes crashed), tracking_rmse_m (figure8), ..."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Trajectory PNG to write (not inside the bundle).",
                                        show_default="<bundle>.eval.png beside it"),
    laps: int = typer.Option(3, "--laps", min=1, help="rc-car: laps from a standing start (reports lap_time_s, "
                             "baseline_lap_time_s of tuned pure pursuit, collisions_per_lap)."),
    shield: bool = typer.Option(False, "--shield", help="quadrotor: fly the episodes twice, without and with the "
                                "predictive STL shield (backup controller on a predicted spec violation); report "
                                "violations, survival, policy-in-control fraction and switches."),
    sabotage: Optional[str] = typer.Option(None, "--sabotage", help="With --shield: make the policy bad on purpose: "
                                           "weak-motor | noise | undertrained."),
    platform: Optional[str] = typer.Option(None, "--platform", help="quadrotor hover/figure8: fly the bundle on "
                                           "another platform file (name or .toml path) than it was trained on, "
                                           "e.g. crazyflie_2_1_flow or crazyflie_2_1_brushless."),
    perturb: bool = typer.Option(False, "--perturb", help="quadrotor hover/figure8: draw every episode's mass, "
                                 "inertia, thrust curve, yaw torque, motor lag, drag, actuation delay and gyro bias "
                                 "from the platform's [randomization] ranges (default: its nominal vehicle)."),
) -> None:
    """Evaluate a bundle in closed loop in the simulator: the platform's nominal vehicle with random starts,
    disturbances and sensor noise, or with --perturb every episode a vehicle drawn from its randomization ranges.

    Final error = mean |p - p_ref| over an episode's last second; a crashed episode counts as infinite, so a median (p95) is reported as null / n/a when more than 50% (5%) of episodes crashed.
    """
    from edgectl.bundle import BundleError, load_bundle

    path = latest_bundle() if bundle is None else bundle
    if sabotage is not None and not shield:
        _fail("--sabotage needs --shield")
    if shield:
        try:
            shield_task = load_bundle(path).task_name
        except BundleError:
            shield_task = None  # eval_shield_cli reports the bad bundle itself
        if shield_task == "avoid":
            _fail("--shield applies to motor-level quadrotor policies (hover, figure8); an avoid bundle commands "
                  "velocity setpoints: run edgectl eval without --shield")
        from train_fast.sabotage_report import eval_shield_cli
        try:
            eval_shield_cli(path, episodes=episodes, seed=seed, sabotage=sabotage, json_out=json_out)
        except ValueError as e:  # BundleError is a ValueError
            _fail(str(e))
        return
    try:
        b = load_bundle(path)
    except BundleError as e:
        _fail(str(e))
    root = b.path.resolve()
    plot_path = plot if plot is not None else root.parent / f"{root.name}.eval.png"
    if root in plot_path.resolve().parents:
        _fail(f"--plot {plot_path}: inside the bundle directory, whose files are hashed; write it elsewhere")
    if (platform is not None or perturb) and b.manifest["task"].get("name") not in ("hover", "figure8"):
        _fail(f"--platform/--perturb fly motor-level quadrotor bundles (hover, figure8); {path} is a "
              f"{b.manifest['task'].get('name')!r} bundle")
    plat = None
    if platform is not None:
        from edgectl.platforms import PlatformError, load_platform
        try:
            plat = load_platform(platform)
        except PlatformError as e:
            _fail(f"--platform: {e}")
        if plat.kind != "quadrotor":
            _fail(f"--platform {platform}: a {plat.kind} platform; the bundle flies a quadrotor")
    if b.manifest["task"].get("name") == "race":
        _eval_race(b, root, plot_path, laps, seed, json_out)
        return
    if b.manifest["task"].get("name") == "avoid":
        _eval_avoid(b, root, plot_path, episodes, seed, json_out)
        return

    console = _console()
    t0 = time.time()
    from train_fast.evaluate import evaluate_bundle
    from train_fast.train import _setup_jax

    _setup_jax()  # the persistent compilation cache: a second eval of the same task skips most of the compile
    try:
        with console.status(f"evaluating {episodes} episodes (compiling first)..."):
            summary, rec = evaluate_bundle(b, episodes=episodes, seed=seed, record=min(RECORD_EPISODES, episodes),
                                           platform=plat, perturb=perturb)
    except ValueError as e:  # the bundle's task does not rebuild (e.g. an observation size mismatch)
        _fail(str(e))
    eval_s = time.time() - t0
    flown_on = (plat.name if plat is not None else b.platform_name) + (" (perturbed)" if perturb else " (nominal)")

    from edgectl import plots

    title = f"{root.name}: {summary['task']} on {flown_on}, eval seed {seed}"
    plots.eval_trajectories_png(rec, plot_path, title=title,
                                termination_bound=b.manifest["task"].get("termination_bound"),
                                hover_action=b.contract["action"].get("hover_action"))

    from rich.table import Table

    t = Table(title=f"edgectl eval {root}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    t.add_row("task", f"{summary['task']} on {flown_on} (bundle seed {b.seed}, trained on {b.platform_name})")
    t.add_row("episodes", f"{summary['episodes']} x {summary.get('episode_seconds', '?')} s, eval seed {seed}")
    t.add_row("survival", _fmt_pct(summary["survival_rate"]))
    t.add_row("final error median", _fmt_m(summary["final_error_median_m"]) + _na_reason(summary["final_error_median_m"], 50))
    t.add_row("final error p95", _fmt_m(summary["final_error_p95_m"]) + _na_reason(summary["final_error_p95_m"], 5))
    t.add_row("final error mean (survivors)", _fmt_m(summary["final_error_mean_survivors_m"]))
    if "tracking_rmse_m" in summary:
        t.add_row("tracking RMSE (survivors)", _fmt_m(summary["tracking_rmse_m"]))
    t.add_row("evaluation time", f"{eval_s:.1f} s")
    t.add_row("trajectory plot", str(plot_path))
    console.print(t)
    if json_out:
        out = {"bundle": str(root), "platform": plat.name if plat is not None else b.platform_name,
               "trained_on": b.platform_name, "perturb": perturb, "bundle_seed": b.seed, "eval_seed": seed,
               **summary, "eval_seconds": eval_s, "plot": str(plot_path)}
        _print_json(out)


def _eval_avoid(b, root: Path, plot_path: Path, episodes: int, seed: int, json_out: bool) -> None:
    """`edgectl eval` of an avoid bundle: unseen obstacle fields, against the straight-line baseline."""
    console = _console()
    t0 = time.time()
    from train_fast.evaluate_avoid import env_for_bundle, eval_png, evaluate_bundle
    from train_fast.train import _setup_jax

    _setup_jax()
    try:
        with console.status(f"flying {episodes} unseen obstacle fields, policy and straight line (compiling first)..."):
            summary, rec = evaluate_bundle(b, episodes=episodes, seed=seed, record=min(RECORD_EPISODES, episodes))
    except ValueError as e:
        _fail(str(e))
    eval_s = time.time() - t0
    eval_png(env_for_bundle(b), rec, plot_path,
             title=f"{root.name}: avoid, {_fmt_pct(summary['success_rate'])} crossed (straight line "
                   f"{_fmt_pct(summary['baseline_success_rate'])}), eval seed {seed}")
    from rich.table import Table

    t = Table(title=f"edgectl eval {root}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    t.add_row("task", f"avoid ({summary['image']} camera) on {b.platform_name} (bundle seed {b.seed})")
    t.add_row("episodes", f"{summary['episodes']} unseen fields of {summary['field_length_m']:g} m, scenes from {summary['eval_scene_stream']}")
    t.add_row("crossed without collision", f"{_fmt_pct(summary['success_rate'])} (straight line: {_fmt_pct(summary['baseline_success_rate'])})")
    t.add_row("collisions", f"{_fmt_pct(summary['collision_rate'])} (straight line: {_fmt_pct(summary['baseline_collision_rate'])})")
    t.add_row("collision-free distance", f"median {_fmt_m(summary['collision_free_distance_median_m'], 2)}, mean "
              f"{_fmt_m(summary['collision_free_distance_mean_m'], 2)} (straight line: median "
              f"{_fmt_m(summary['baseline_collision_free_distance_median_m'], 2)})")
    t.add_row("evaluation time", f"{eval_s:.1f} s")
    t.add_row("plot", str(plot_path))
    console.print(t)
    if json_out:
        _print_json({"bundle": str(root), "platform": b.platform_name, "bundle_seed": b.seed, "eval_seed": seed,
                     **summary, "eval_seconds": eval_s, "plot": str(plot_path)})


def _eval_race(b, root: Path, plot_path: Path, laps: int, seed: int, json_out: bool) -> None:
    """`edgectl eval` of an rc-car race bundle: laps from a standing start, against tuned pure pursuit."""
    console = _console()
    t0 = time.time()
    from train_fast.evaluate_car import env_for_bundle, evaluate_bundle, lap_plot_png
    from train_fast.train import _setup_jax

    _setup_jax()
    try:
        with console.status(f"driving {laps} laps, then tuning pure pursuit on the same track (compiling first)..."):
            summary, rec = evaluate_bundle(b, laps=laps, seed=seed, record=True)
    except (ValueError, RuntimeError) as e:
        _fail(str(e))
    eval_s = time.time() - t0
    lap_plot_png(env_for_bundle(b), rec, plot_path,
                 title=f"{root.name}: race on {summary['track']}, lap {_fmt_s(summary['lap_time_s'])}")
    from rich.table import Table

    t = Table(title=f"edgectl eval {root}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    t.add_row("task", f"race on {summary['track']} ({summary['track_length_m']:.1f} m, {summary['checkpoints']} checkpoints), "
              f"{b.platform_name} (bundle seed {b.seed})")
    t.add_row("laps", f"{summary['laps_completed']} of {laps} from a standing start, eval seed {seed}")
    t.add_row("lap time", f"{_fmt_s(summary['lap_time_s'])} (laps: {', '.join(_fmt_s(x) for x in summary['lap_times_s'])})")
    t.add_row("collisions per lap", f"{summary['collisions_per_lap']:.2f} ({summary['collisions']} in all)")
    t.add_row("pure pursuit (tuned)", f"{_fmt_s(summary['baseline_lap_time_s'])} per lap, "
              f"{summary['baseline_collisions_per_lap']:.2f} collisions per lap")
    if summary.get("demo_lap_time_s"):
        t.add_row("demonstration lap", _fmt_s(summary["demo_lap_time_s"]))
    t.add_row("evaluation time", f"{eval_s:.1f} s")
    t.add_row("trajectory plot", str(plot_path))
    console.print(t)
    if json_out:
        out = {"bundle": str(root), "platform": b.platform_name, "bundle_seed": b.seed, "eval_seed": seed,
               **summary, "eval_seconds": eval_s, "plot": str(plot_path)}
        _print_json(out)


EXPORT_TARGETS = ("onnx", "tflite", "tensorrt", "c", "stm32", "crazyflie")  # checked against export.targets by the tests


@app.command("export")
def export_cmd(
    bundle: Optional[Path] = typer.Argument(None, help="Bundle directory.", show_default="runs/latest"),
    target: str = typer.Option(..., "--target", "-t", help=f"One of: {', '.join(EXPORT_TARGETS)}."),
    int8: bool = typer.Option(False, "--int8", help="int8 weights and activations (c, stm32, crazyflie; tensorrt: INT8 engine), "
                              "checked in closed loop against float."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder.", show_default="exports/<bundle>-<target>[-int8]"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing export folder."),
    samples: int = typer.Option(10_000, "--samples", min=100, help="Rollout observations the artifact is checked on."),
    episodes: int = typer.Option(1000, "--episodes", min=10, help="Closed-loop episodes comparing int8 with float."),
    calibration: str = typer.Option("rollouts", "--calibration", help="Where the parity and int8 calibration observations "
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


@app.command("build-firmware")
def build_firmware_cmd(
    app_dir: Path = typer.Argument(..., help="App folder written by `edgectl export --target crazyflie`."),
    firmware_dir: Optional[Path] = typer.Option(None, "--firmware-dir", help="A crazyflie-firmware checkout (with submodules)."),
) -> None:
    """Build a Crazyflie firmware image with the exported policy as its out-of-tree controller."""
    from export.crazyflie_app import build_firmware
    from export.errors import ExportError

    console = _console()
    try:
        with console.status(f"building {app_dir} against {firmware_dir}"):
            binary = build_firmware(app_dir, firmware_dir)
    except ExportError as e:
        _fail(str(e))
    console.print(f"built {binary}\nnext: edgectl flash --uri radio://0/80/2M/E7E7E7E7E7 {binary}")


SIM_VEHICLES = ("crazyflie", "mavlink", "rc-car")


@app.command("sim-vehicle")
def sim_vehicle_cmd(
    kind: str = typer.Argument(..., help=f"One of: {', '.join(SIM_VEHICLES)}."),
    uri: Optional[str] = typer.Option(None, "--uri", help="Where the vehicle listens. crazyflie: udp://127.0.0.1:19850 "
                                      "(connect cflib to the same URI); mavlink: udpin:127.0.0.1:14550 (connect with udpout:...); "
                                      "rc-car: a new pty (path printed) or tcp://127.0.0.1:5760."),
    speed: float = typer.Option(1.0, "--speed", help="Simulated seconds per wall-clock second."),
    signing_key: Optional[str] = typer.Option(None, "--signing-key", envvar="EDGECTL_MAVLINK_KEY",
                                              help="mavlink: MAVLink 2 signing key (64 hex digits or a passphrase)."),
    platform: str = typer.Option("crazyflie_2_1", "--platform", help="Platform file whose dynamics the vehicle flies."),
    bundle: Optional[Path] = typer.Option(None, "--bundle", help="crazyflie: carry this bundle's policy as the on-board "
                                          "edgectl app (as if flashed with `edgectl export --target crazyflie`)."),
    onboard: str = typer.Option("c", "--onboard", help="crazyflie --bundle: the app (controller, observation, backup, "
                                "monitors) is its generated C compiled here with gcc; its policy: c (the generated float32 "
                                "C), numpy (the bundle's forward, called from the C app), or an `edgectl export --target c "
                                "[--int8]` folder."),
    loss: float = typer.Option(0.0, "--loss", min=0.0, max=0.99, help="Fault: probability that a packet is lost (each direction)."),
    latency_ms: float = typer.Option(0.0, "--latency-ms", min=0.0, help="Fault: one-way link latency added (each direction)."),
    cut_at: Optional[float] = typer.Option(None, "--cut-at", help="Fault: vehicle time (s) from which the link carries nothing either way."),
    cut_for: Optional[float] = typer.Option(None, "--cut-for", help="Fault: how long the cut lasts (s; default: for good)."),
    stuck_sensor: Optional[str] = typer.Option(None, "--stuck-sensor", help="Fault: a sensor frozen from --sensor-fault-at "
                                               "(x, y, z, pos, vx, vy, vz, vel, quat, gyro, gyro_x, gyro_y, gyro_z)."),
    nan_sensor: Optional[str] = typer.Option(None, "--nan-sensor", help="Fault: a sensor reading NaN from --sensor-fault-at (names as --stuck-sensor)."),
    sensor_fault_at: float = typer.Option(0.0, "--sensor-fault-at", help="Vehicle time (s) at which the sensor fault starts."),
    physics_hz: float = typer.Option(500.0, "--physics-hz", min=50.0, max=5000.0, help="mavlink: physics steps (and link "
                                     "reads) per simulated second; the Crazyflie's stabilizer runs at 500 Hz."),
    weak_motor: Optional[str] = typer.Option(None, "--weak-motor", help="Fault: MOTOR:FRACTION, e.g. 2:0.7 = motor 2 gives 70 % of its thrust."),
    identity: str = typer.Option("edgectl", "--identity", help="mavlink: edgectl (takes motor commands, declares "
                                 "EDGECTL_MOTOR_IN), px4 (answers as PX4 1.15: OFFBOARD, COM_OF_LOSS_T) or ardupilot "
                                 "(ArduCopter 4.5.7: GUIDED_NOGPS, GUID_OPTIONS, GUID_TIMEOUT)."),
    param: Optional[list[str]] = typer.Option(None, "--param", help="mavlink: NAME=VALUE, a parameter of the identity "
                                              "(e.g. GUID_OPTIONS=8, COM_OF_LOSS_T=0.5); repeatable."),
) -> None:
    """Run a simulated vehicle that speaks the real protocol, driven by edgectl's simulator (Ctrl-C to stop).

    Point `edgectl run`, or your own cflib / pymavlink script, at it. Faults are injected on request.
    """
    weak = None
    if weak_motor is not None:
        try:
            m, k = weak_motor.split(":")
            weak = (int(m), float(k))
        except ValueError:
            _fail(f"--weak-motor {weak_motor!r}: expected MOTOR:FRACTION, e.g. 2:0.7")
    faults = dict(loss=loss, latency_s=latency_ms / 1000.0, cut_at=cut_at, cut_for=cut_for, stuck_sensor=stuck_sensor,
                  nan_sensor=nan_sensor, sensor_fault_at=sensor_fault_at, weak_motor=weak)
    if kind == "crazyflie":
        from firmware_bridge.cli_hooks import sim_vehicle_main as cf_main
        raise typer.Exit(cf_main("crazyflie", uri=uri or "udp://127.0.0.1:19850", speed=speed, platform=platform,
                                 bundle=bundle, onboard=onboard, faults=faults))
    elif kind == "mavlink":
        if bundle is not None:
            _fail("--bundle: only a simulated Crazyflie carries an on-board app; a MAVLink vehicle is flown by `edgectl run`")
        from firmware_bridge.mavlink.cli_hooks import sim_vehicle_main as mav_main
        params = {}
        for item in param or []:
            name, _, value = item.partition("=")
            try:
                params[name.strip()] = float(value)
            except ValueError:
                _fail(f"--param {item!r}: expected NAME=NUMBER, e.g. GUID_OPTIONS=8")
        try:
            mav_main(uri=uri or "udpin:127.0.0.1:14550", speed=speed, signing_key=signing_key, platform=platform,
                     echo=typer.echo, faults=faults, physics_hz=physics_hz, identity=identity, parameters=params or None)
        except (ValueError, OSError) as e:
            _fail(f"sim-vehicle mavlink: {e}")
    elif kind == "rc-car":
        from firmware_bridge.rccar.cli_hooks import sim_vehicle_main as car_main
        raise typer.Exit(car_main(uri=uri, speed=speed, platform="rc_car_1_10" if platform == "crazyflie_2_1" else platform,
                                  echo=typer.echo, faults=faults))
    else:
        _fail(f"sim-vehicle {kind!r}: unknown vehicle; expected one of {', '.join(SIM_VEHICLES)}")


@app.command("flash")
def flash_cmd(
    file: Path = typer.Argument(..., help="Firmware image (.bin) or an app folder with build/cf2.bin."),
    uri: str = typer.Option(..., "--uri", help="radio://0/80/2M/E7E7E7E7E7, udp://host:port (edgectl sim-vehicle), ..."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Read every page back and compare."),
    retries: int = typer.Option(1, "--retries", min=0, help="More attempts on a fresh link after a failure."),
    warm_boot: bool = typer.Option(True, "--warm-boot/--no-warm-boot", help="Reset into the bootloader first (off: it already runs)."),
) -> None:
    """Flash a Crazyflie over the air through cflib's bootloader and verify it by reading it back."""
    from firmware_bridge.cli_hooks import flash_main
    raise typer.Exit(flash_main(uri, file, verify=verify, retries=retries, warm_boot=warm_boot))


@app.command("sitl-server")
def sitl_server_cmd(
    kind: str = typer.Argument(..., help="px4 (TCP 4560, PX4 SITL connects, lockstep HIL messages) or ardupilot (UDP 9002, JSON SITL)."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: Optional[int] = typer.Option(None, "--port", help="Default 4560 (px4) / 9002 (ardupilot)."),
    platform: Optional[str] = typer.Option(None, "--platform", help="Platform file instead of the iris-sized generic quad."),
) -> None:
    """Serve edgectl's physics to a real PX4 or ArduPilot SITL build (Ctrl-C to stop)."""
    if kind not in ("px4", "ardupilot"):
        _fail(f"sitl-server {kind!r}: expected px4 or ardupilot")
    from firmware_bridge.mavlink.cli_hooks import sitl_server_main
    sitl_server_main(kind=kind, host=host, port=port, platform=platform, echo=typer.echo)


@app.command("run")
def run_cmd(
    bundle: Optional[Path] = typer.Argument(None, help="Bundle directory.", show_default="runs/latest"),
    uri: str = typer.Option("sim://", "--uri", help="Vehicle: sim:// (in-process simulator) or a MAVLink URL "
                            "(udpout:127.0.0.1:14550 for `edgectl sim-vehicle mavlink`, a serial device, ...)."),
    seconds: float = typer.Option(10.0, "--seconds", min=0.01, help="How long to fly."),
    policy: Optional[Path] = typer.Option(None, "--policy", help="Run an `edgectl export` folder of the bundle "
                                          "(c/stm32: compiled C, onnx, tflite) instead of the bundle itself."),
    shield: bool = typer.Option(True, "--shield/--no-shield", help="Predictive STL shield (specs from the platform file)."),
    ref: Optional[str] = typer.Option(None, "--ref", help="Reference position x,y,z in m (world, z up).",
                                      show_default="0,0,0; a Crazyflie 0,0,1 (its floor is z = 0)"),
    log: Optional[Path] = typer.Option(None, "--log", help="Flight log CSV.", show_default="runs/flights/<time>.csv"),
    as_fast: bool = typer.Option(False, "--as-fast-as-possible", help="sim:// only: run ticks back to back."),
    rt_priority: Optional[int] = typer.Option(None, "--rt-priority", min=1, max=99, help="Linux: run the loop's thread "
                                              "SCHED_FIFO at this priority (root or CAP_SYS_NICE): steadier periods on a busy CPU."),
    json_out: bool = typer.Option(False, "--json", help="Make the last stdout line the run summary as one JSON object."),
    camera: Optional[str] = typer.Option(None, "--camera", help="Avoid (vision) bundles on a Crazyflie URI: field[:SEED] "
                                         "renders a simulated obstacle field from the position the vehicle reports; a "
                                         "device index or path (0, /dev/video0) reads a real camera through OpenCV.",
                                         show_default="field:0"),
    motor_firmware: Optional[str] = typer.Option(None, "--motor-firmware", help="MAVLink, motor-level bundles: the "
                                                 "firmware (your name for it) that takes SET_ACTUATOR_CONTROL_TARGET "
                                                 "group 0 as motors M1..M4; skips the check that refuses PX4 and ArduPilot "
                                                 "(which drive no motor from it) and vehicles not declaring EDGECTL_MOTOR_IN."),
) -> None:
    """Fly a policy in a fixed-rate loop under the shield and watchdogs, on a simulated or real vehicle.

    Link silence, a stale or NaN state, a failing policy or repeated deadline overruns hand control to the
    backup controller (level, hold, descend), then to a safe stop.
    """
    from edgectl.bundle import BundleError, load_bundle
    from edgectl.platforms import parse_platform

    path = latest_bundle() if bundle is None else bundle
    try:
        b = load_bundle(path)
    except BundleError as e:
        _fail(str(e))
    if b.task_name == "avoid":
        _run_avoid(b, uri, seconds, policy, log, as_fast, json_out, camera)
        return
    if b.task_name == "race":
        _run_race(b, uri, seconds, policy, log, as_fast, json_out)
        return
    plat = parse_platform((b.path / "platform.toml").read_bytes(), b.path / "platform.toml")
    ctbr = b.contract["action"]["mapping"].get("kind") == "ctbr"
    if ctbr and shield:
        # the shield predicts motor-level policies; the autopilot's rate loop and failsafes fly a ctbr one
        _console(stderr=json_out).print("note: ctbr bundle: flying without the shield (it models motor-level policies); "
                                        "watchdogs hand over to the ctbr backup, the autopilot's failsafes stay")
        shield = False
    ref_xyz = None
    if ref is not None:
        try:
            ref_xyz = tuple(float(v) for v in ref.split(","))
            assert len(ref_xyz) == 3
        except (ValueError, AssertionError):
            _fail(f"--ref {ref!r}: expected three numbers x,y,z")
    from edgectl.runtime.backends import load_policy
    from edgectl.runtime.flightlog import FlightLog
    from edgectl.runtime.links import flies_on_board, open_link
    from edgectl.runtime.loop import ControlLoop, LoopConfig
    from edgectl.safety.backup import BackupController

    # Everything that can refuse the bundle or the policy is checked before the link is opened: a Crazyflie
    # link arms as it connects.
    onboard = flies_on_board(uri)
    monitors, sh = (), None
    try:
        from edgectl.safety.shield import check_contract
        check_contract(b.contract)  # a field the host cannot build, named
        if onboard:
            if policy is not None:
                raise ValueError(f"--policy {policy}: {uri} flies the policy on board (its flashed edgectl app); "
                                 "the host runs none")
            act, backend = None, "on board (the vehicle's edgectl app)"
            # The host cannot shield a vehicle it has no motor authority over; it monitors the platform's
            # specs in the same past-time form the app checks on board.
            from edgectl.safety.monitor import OnlineMonitor
            from export.crazyflie_app import onboard_formulas
            monitors = [OnlineMonitor(f, 1.0 / float(b.contract["rate_hz"])) for f in onboard_formulas(plat)]
            shield = False
        else:
            act, backend = load_policy(policy if policy is not None else b.path, b)
            if shield:
                from edgectl.safety.shield import Shield
                sh = Shield(act, b.contract, plat)
    except (ValueError, OSError) as e:
        _fail(str(e))
    link = None
    try:
        link = open_link(uri, plat, bundle=b, contract=b.contract, motor_firmware=motor_firmware)
    except (ValueError, OSError) as e:
        _fail(str(e))
    if ref_xyz is None:
        ref_xyz = tuple(getattr(link, "default_ref", (0.0, 0.0, 0.0)))
    log_path = log if log is not None else RUNS / "flights" / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}.csv"
    try:
        flog = FlightLog(log_path)
    except OSError as e:
        link.close()
        _fail(f"--log {log_path}: cannot write it ({e})")
    cfg = LoopConfig(rate_hz=float(b.contract["rate_hz"]), seconds=seconds, realtime=not as_fast, rt_priority=rt_priority)
    if ctbr:
        from edgectl.safety.ctbr_backup import CtbrBackup
        backup = CtbrBackup(b.contract)
        backend += f", {getattr(link, 'autopilot', 'simulated')} rate loop"
    else:
        backup = BackupController(plat)
    try:
        loop = ControlLoop(link, act, b.contract, backup, cfg, shield=sh, log=flog, ref=ref_xyz,
                           monitors=monitors)
    except ValueError as e:  # a contract field the host cannot build
        flog.close()
        link.close()
        _fail(str(e))
    console = _console(stderr=json_out)
    try:
        with console.status(f"flying {b.path.name} on {uri} for {seconds:g} s ({backend}, shield {'on' if shield else 'off'})"):
            rep = loop.run()
    except KeyboardInterrupt:
        link.stop()
        rep = loop.report
    except ValueError as e:  # e.g. --rt-priority refused: before the first tick
        flog.close()
        link.close()
        _fail(str(e))
    finally:
        flog.close()
        link.close()
    summary = {"bundle": str(b.path), "uri": uri, "backend": backend, "shield": shield, "log": str(log_path), **rep.summary()}
    pe = summary["period_error_ms"]
    console.print(f"{summary['ticks']} ticks at {cfg.rate_hz:g} Hz, period error p50 {pe['p50']:.3f} / p99 {pe['p99']:.3f} / "
                  f"max {pe['max']:.3f} ms, {summary['deadline_misses']} deadline misses; nominal policy in control "
                  f"{100 * summary['nominal_fraction']:.1f} % of ticks; final: {summary['final_mode']}")
    pos_err = summary["position_error_m"]
    if pos_err["max"] is not None:
        console.print(f"distance to the reference {', '.join(f'{v:g}' for v in ref_xyz)}: max {100 * pos_err['max']:.1f} cm, "
                      f"RMS {100 * pos_err['rms']:.1f} cm over {pos_err['samples']} states")
    if summary.get("vehicle_link_drops"):
        console.print(f"the vehicle's link watchdog flew its backup through {summary['vehicle_link_drops']} short "
                      "silence(s) of the host and handed back (edgectl.linkdrops)")
    _print_run_end(console, summary, f"log: {log_path}  (edgectl plot {log_path})", json_out)


def _print_run_end(console, summary: dict, log_line: str, json_out: bool) -> None:
    """What every `edgectl run` ends with: the controller switches, where the log is, the JSON summary."""
    for sw in summary["switches"]:
        console.print(f"  t={sw['t']:.2f} s  {sw['from']} -> {sw['to']}: {sw['reason']}")
    console.print(log_line)
    if json_out:
        _print_json(summary)


def _run_avoid(b, uri: str, seconds: float, policy: Optional[Path], log: Optional[Path], as_fast: bool, json_out: bool,
               camera: Optional[str] = None) -> None:
    """`edgectl run` of an avoid (image) bundle: the in-process obstacle field, fed by the simulated camera.

    sim:// or sim://SEED picks the field (numpy-sampled, like training's distribution). The shield and the
    motor-level links do not apply: the policy commands velocity setpoints."""
    rest = uri[len("sim://"):] if uri.startswith("sim://") else None
    if uri.split("://", 1)[0] in ("radio", "usb", "udp") or (rest and not rest.lstrip("-").isdigit()):
        _run_avoid_crazyflie(b, uri, seconds, policy, log, json_out, camera)
        return
    if rest is None:
        _fail(f"--uri {uri!r}: an avoid bundle commands velocity setpoints: fly it in the in-process obstacle field "
              "(--uri sim:// or sim://SEED) or on a Crazyflie (radio://, usb://, udp://, sim://NAME)")
    if camera is not None:
        _fail(f"--camera: for a Crazyflie URI; --uri {uri} flies the in-process field with its own simulated camera")
    try:
        scene_seed = int(rest) if rest else 0
    except ValueError:
        _fail(f"--uri {uri!r}: expected sim:// or sim://SEED (an integer scene seed)")
    from edgectl.runtime.backends import load_policy
    from edgectl.runtime.camera import fly_avoid

    try:
        act, backend = load_policy(policy if policy is not None else b.path, b)
    except (ValueError, OSError) as e:
        _fail(str(e))
    console = _console(stderr=json_out)
    with console.status(f"flying {b.path.name} through obstacle field {scene_seed} ({backend}, simulated camera)"):
        rep = fly_avoid(act, b.contract, b.manifest["task"], seconds=seconds, seed=scene_seed, realtime=not as_fast)
    log_path = log if log is not None else RUNS / "flights" / f"avoid-{datetime.now().strftime('%Y%m%d-%H%M%S')}.csv"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as f:
        f.write("tick,t,x,y,z\n")
        for i, p in enumerate(rep["path"]):
            f.write(f"{i + 1},{(i + 1) / rep['rate_hz']:.3f},{p[0]:.4f},{p[1]:.4f},{p[2]:.4f}\n")
    outcome = "crossed the field" if rep["crossed"] else ("COLLIDED" if rep["collided"] else "time ran out")
    console.print(f"{rep['ticks']} ticks at {rep['rate_hz']:g} Hz through {rep['obstacles']} obstacles: {outcome}; "
                  f"collision-free distance {rep['collision_free_distance_m']:.2f} of {rep['field_length_m']:g} m, "
                  f"min clearance {rep['min_clearance_m']:.3f} m; latest tick {rep['late_ms_max']:.1f} ms late")
    console.print(f"log: {log_path}")
    if json_out:
        summary = {k: v for k, v in rep.items() if k != "path"}
        _print_json({"bundle": str(b.path), "uri": uri, "backend": backend, "camera": "sim", "log": str(log_path), **summary})


def _write_run_csv(log: Optional[Path], kind: str, header: str, rows) -> Path:
    """A run's CSV log (--log, or runs/flights/KIND-<time>.csv): floats to 4 decimals, anything else as text."""
    path = log if log is not None else RUNS / "flights" / f"{kind}-{datetime.now().strftime('%Y%m%d-%H%M%S')}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.write(header + "\n")
        for row in rows:
            f.write(",".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) + "\n")
    return path


def _run_avoid_crazyflie(b, uri: str, seconds: float, policy: Optional[Path], log: Optional[Path], json_out: bool,
                         camera: Optional[str]) -> None:
    """`edgectl run` of an avoid bundle on a Crazyflie: camera frames in, velocity setpoints out
    (edgectl/runtime/vision_link.py)."""
    from edgectl.runtime.backends import load_policy
    from edgectl.runtime.camera import AvoidSim, ImageSpec, OpenCVCamera, SimCamera
    from edgectl.runtime.vision_link import fly_vision
    from firmware_bridge.crazyflie.bridge import CrazyflieLink

    cam_arg = camera or "field:0"
    field, lateral = None, 0.0
    try:
        act, backend = load_policy(policy if policy is not None else b.path, b)
        spec = ImageSpec.from_contract(b.contract)
        if cam_arg == "field" or cam_arg.startswith("field:"):
            try:
                seed = int(cam_arg.split(":", 1)[1]) if ":" in cam_arg else 0
            except ValueError:
                _fail(f"--camera {cam_arg!r}: expected field, field:SEED (an integer), a device index or a path")
            field = AvoidSim(b.manifest["task"], seed)
            cam, lateral, cam_desc = SimCamera(field, spec), float(field.pos[1]), f"simulated field {seed}"
        else:
            cam = OpenCVCamera(spec, int(cam_arg) if cam_arg.isdigit() else cam_arg)
            cam_desc = f"camera {cam_arg}"
    except (ValueError, OSError, RuntimeError) as e:
        _fail(str(e))
    try:
        link = CrazyflieLink(uri, connect_timeout=10.0)
    except Exception as e:  # noqa: BLE001  cflib raises plain Exceptions for bad URIs
        cam.close()
        _fail(f"--uri {uri}: could not connect to a Crazyflie: {e}")
    console = _console(stderr=json_out)
    try:
        with console.status(f"flying {b.path.name} on {uri} ({backend}, {cam_desc})"):
            rep = fly_vision(act, b.contract, b.manifest["task"], link, cam, seconds=seconds, lateral=lateral, field=field)
    except ValueError as e:
        _fail(str(e))
    finally:
        link.close()
    log_path = _write_run_csv(log, "avoid", "t,x,y,z,cmd_vy,cmd_vz", rep.path)
    summary = {"bundle": str(b.path), "uri": uri, "backend": backend, "camera": cam_desc, "log": str(log_path),
               **rep.summary()}
    pe = summary["period_error_ms"]
    clear = "" if rep.min_clearance_m is None else f", min clearance {rep.min_clearance_m:.3f} m"
    console.print(f"{rep.ticks} ticks at {rep.rate_hz:g} Hz, period error p99 {pe['p99']:.2f} ms; {rep.ended}; "
                  f"{rep.distance_m:.2f} m along the field{clear}; held and landed")
    console.print(f"log: {log_path}")
    if json_out:
        _print_json(summary)


def _run_race(b, uri: str, seconds: float, policy: Optional[Path], log: Optional[Path], as_fast: bool, json_out: bool) -> None:
    """`edgectl run` of a race bundle: sim:// (in process) or a serial car (odometry from its telemetry), from the
    start/finish line of the bundle's track, through its checkpoints; the backup brakes to a standstill."""
    from edgectl.platforms import parse_platform
    from edgectl.runtime.backends import load_policy
    from edgectl.runtime.race import LapTracker, drive, open_car
    from edgectl.tracks import TrackError, parse_track

    if as_fast and uri != "sim://":
        _fail(f"--as-fast-as-possible: sim:// only (a real or simulated serial car runs in real time), not {uri}")
    car = None
    try:
        plat = parse_platform((b.path / "platform.toml").read_bytes(), b.path / "platform.toml")
        track = parse_track((b.path / "track.csv").read_bytes(), b.path / "track.csv")
        tracker = LapTracker(track, b.contract, plat.get("body.length"), plat.get("body.width"))
        act, backend = load_policy(policy if policy is not None else b.path, b)
        start = (float(track.points[0, 0]), float(track.points[0, 1]), float(track.heading[0]))
        car = open_car(uri, str(b.path / "platform.toml"), start)
    except (ValueError, OSError, TrackError) as e:
        _fail(str(e))
    console = _console(stderr=json_out)
    try:
        with console.status(f"driving {b.path.name} on {uri} for {seconds:g} s ({backend}, {car.kind})"):
            rep = drive(car, tracker, act, rate_hz=float(b.contract["rate_hz"]), seconds=seconds, realtime=not as_fast)
    except ValueError as e:
        _fail(str(e))
    finally:
        car.close()
    log_path = _write_run_csv(log, "race", "t,x,y,yaw,speed,steer,throttle,mode", rep.path)
    summary = {"bundle": str(b.path), "uri": uri, "backend": backend, "car": car.kind, "track": track.name,
               "log": str(log_path), **rep.summary()}
    pe = summary["period_error_ms"]
    laps = ", ".join(f"{v:.2f} s" for v in rep.lap_times_s) or "none finished"
    timing = (f"period error p50 {pe['p50']:.3f} / p99 {pe['p99']:.3f} / max {pe['max']:.3f} ms" if pe else
              "as fast as possible")
    console.print(f"{summary['ticks']} ticks at {rep.rate_hz:g} Hz, {timing}; {summary['checkpoints_passed']} "
                  f"checkpoints, edge contacts {summary['edge_contacts']}, laps: {laps}")
    ex = summary["max_corridor_excess_m"]
    if ex is not None:
        console.print(f"closest to the corridor edge: {-100 * ex:.1f} cm to spare" if ex <= 0 else
                      f"left the corridor by {100 * ex:.1f} cm")
    _print_run_end(console, summary, f"log: {log_path}", json_out)


@app.command("import")
def import_cmd(
    model: Optional[Path] = typer.Argument(None, help="An ONNX model (.onnx), a stable-baselines3 zip (PPO/A2C actor) or "
                                           "an RLtools checkpoint (.h5, e.g. learning-to-fly's)."),
    contract: Optional[Path] = typer.Option(None, "--contract", "-c", help="The contract TOML: task, platform, rate_hz, "
                                            "[[observation]] fields in the model's input order (name, size, unit, frame, "
                                            "offset, scale), [action] (names, low, high, mapping)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Bundle directory to write."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing bundle."),
    template: Optional[str] = typer.Option(None, "--template", help="Print a contract TOML for a task (hover, figure8, "
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
    log: Path = typer.Argument(..., help="Flight log CSV from `edgectl run`."),
    out: Optional[Path] = typer.Option(None, "--out", help="PNG to write.", show_default="<log>.png"),
) -> None:
    """Plot a flight log: trajectory vs reference, actions, shield robustness and controller switches."""
    from edgectl import plots
    from edgectl.runtime.flightlog import read_log

    try:
        data = read_log(log)
    except (OSError, ValueError) as e:
        _fail(str(e))
    dest = plots.flight_log_png(data, out if out is not None else log.with_suffix(".png"), title=str(log))
    typer.echo(str(dest))


def _na_reason(v, pct: int) -> str:
    return "" if v is not None and math.isfinite(float(v)) else f"  (more than {pct}% of episodes crashed)"


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


if __name__ == "__main__":
    main()

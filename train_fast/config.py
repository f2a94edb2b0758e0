"""Training configs (`edgectl train --config FILE.toml`, `--set KEY=VALUE`, `edgectl sweep`): one TOML file names
everything a training run depends on, is checked field by field with the platform files' error lines (file, field,
unit, value), and is written back resolved into the bundle (BUNDLE/config.toml), so that
`edgectl train --config BUNDLE/config.toml` trains the same run again.

    [train]          vehicle, task, platform, track (rc-car), seconds, seed, robust, max_env_steps
    [task]           the task's settings: start distribution, reward weights, ... (TaskConfig in train_fast/tasks/)
    [randomization]  the platform's [randomization] ranges, replaced (the bundle's platform.toml holds the result)
    [ppo]            the trainer's settings (PPOConfig in train_fast/algos/ppo.py)

A value is written bare (`lr = 1e-3`) or as the platform files write it (`lr = { value = 1e-3, unit = "1" }`); a
unit, when given, must be the field's. A relative platform or track path is taken from the config file's folder, so a
bundle's config.toml names the bundle's own platform.toml and track.csv. With `max_env_steps` the learning-rate
schedule, the evaluations and the end follow the env-step count, not the clock: the same config and seed then give
the same weights on any machine (give `seconds` room to spare).
"""
from __future__ import annotations

import csv
import dataclasses
import difflib
import io
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

from edgectl.platforms import SCHEMAS, Platform, PlatformError, Spec, _check_value, parse_platform
from edgectl.tasks import task as registered, tasks as registered_tasks, vehicles

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

CONFIG_FILE, METRICS_FILE = "config.toml", "metrics.csv"
VEHICLE_TASKS = vehicles()  # the task registry (edgectl/tasks.py): vehicle -> its tasks, default first
SECTIONS = ("train", "task", "randomization", "ppo")


class ConfigError(ValueError):
    """A config file or --set value that cannot be trained: one line naming the file, the field and the value."""


# --- the schema ---------------------------------------------------------------------------------------------------
TRAIN: dict[str, Spec] = {
    "vehicle": Spec("", kind="str"),
    "task": Spec("", kind="str"),
    "platform": Spec("", kind="str"),  # a name (hardware/<name>.toml) or a path
    "track": Spec("", kind="str"),  # rc-car: a name (hardware/tracks/<name>.csv) or a path
    "seconds": Spec("s", positive=True),
    "seed": Spec("1", kind="int", min=0, max=2**32 - 1),
    "robust": Spec("", kind="bool"),
    "for": Spec("", kind="str"),  # an on-board runtime the policy is trained for (edgectl train --for px4)
    "max_env_steps": Spec("1", kind="int", positive=True, optional=True),
}
# Units of the task fields that have one (the same name means the same thing in every task); every other field is
# a plain number ("1": weights, exponents, fractions, counts).
UNITS = {
    "episode_seconds": "s", "train_episode_seconds": "s", "init_position": "m", "init_tilt": "rad", "init_velocity": "m/s", "init_omega": "rad/s",
    "termination_bound": "m", "figure8_amplitude": "m", "figure8_peak_speed": "m/s", "position_error_scale": "m",
    "action_delay": "control periods", "integral_tau": "s", "integral_limit": "m*s", "integral_reset_jump": "m", "precision_scale": "m",
    "checkpoint_spacing": "m", "scan_range": "m", "init_heading": "rad", "init_speed_max": "m/s", "reset_backoff": "m",
    "rate_hz": "Hz", "forward_speed": "m/s", "max_lateral_speed": "m/s", "max_vertical_speed": "m/s",
    "velocity_tau": "s", "gust_std": "m/s/sqrt(s)", "vehicle_radius": "m", "cruise_height": "m", "init_height": "m",
    "length": "m", "half_width": "m", "ceiling": "m", "radius": "m", "min_gap": "m", "hfov_deg": "deg",
    "max_range": "m", "depth_noise_std": "m", "depth_noise_quadratic": "1/m", "velocity_noise_std": "m/s",
    "height_noise_std": "m", "clearance_margin": "m",
}
# Fields that must be > 0 (all others: >= 0), at most 1, or one of a few words.
POSITIVE = {"episode_seconds", "termination_bound", "figure8_amplitude", "figure8_peak_speed", "position_error_scale",
            "precision_scale", "action_history", "checkpoint_spacing", "checkpoints_observed", "scan_range", "rate_hz",
            "forward_speed", "max_lateral_speed", "max_vertical_speed", "velocity_tau", "vehicle_radius", "length",
            "half_width", "ceiling", "radius", "max_obstacles", "width", "height", "supersample", "hfov_deg",
            "max_range", "clearance_margin", "num_envs", "num_steps", "epochs", "minibatches", "lr", "gamma", "clip",
            "max_grad_norm", "actor_hidden", "critic_hidden", "init_std", "final_std", "iters_per_chunk",
            "eval_episodes"}
AT_MOST_ONE = {"action_delay", "gamma", "gae_lambda", "init_lateral", "forward_speed_range", "tau_range", "dropout"}
CHOICES = {"action": ("motor", "ctbr"), "image": ("depth", "gray")}


def task_class(task: str):
    """The task's settings dataclass and the function that builds it (with the task's own defaults)."""
    return registered(task).hook("task_config")(task)


def _field_spec(name: str, default: Any, unit: str) -> Spec:
    positive, hi = name in POSITIVE, (1.0 if name in AT_MOST_ONE else None)
    lo = None if positive else 0.0
    if isinstance(default, bool):
        return Spec("", kind="bool")
    if isinstance(default, str):
        return Spec("", kind="str")
    if isinstance(default, tuple):
        kind = "int" if all(isinstance(x, int) for x in default) else "float"
        return Spec(unit, (len(default),) if name not in ("actor_hidden", "critic_hidden") else (-1,), kind=kind,
                    positive=positive, min=lo, max=hi)
    return Spec(unit, kind="int" if isinstance(default, int) else "float", positive=positive, min=lo, max=hi)


def task_schema(task: str) -> dict[str, Spec]:
    cls, _ = task_class(task)
    skip = {"name", "track"}
    return {f.name: _field_spec(f.name, f.default, UNITS.get(f.name, "1")) for f in dataclasses.fields(cls)
            if f.name not in skip}


def ppo_schema() -> dict[str, Spec]:
    from train_fast.algos.ppo import PPOConfig
    out = {f.name: _field_spec(f.name, f.default, "1") for f in dataclasses.fields(PPOConfig)}
    out["final_std"] = Spec("1", positive=True, optional=True)  # absent: the std is learned
    return out


def randomization_schema(vehicle: str) -> dict[str, Spec]:
    from edgectl.platforms import _QUAD_CURVE
    kind = "quadrotor" if vehicle == "quadrotor" else "rc_car"
    keys = {**SCHEMAS[kind], **(_QUAD_CURVE if kind == "quadrotor" else {})}
    return {k.split(".", 1)[1]: dataclasses.replace(s, optional=True) for k, s in keys.items()
            if k.startswith("randomization.")}


# --- reading ------------------------------------------------------------------------------------------------------
def load(path: str | Path) -> dict:
    """A config file as {section: {field: value}}, checked (ConfigError). Relative paths are made absolute."""
    return check(read(path), str(path))


def read(path: str | Path) -> dict:
    """A config file as it is written (values not checked, nothing filled in; relative paths made absolute), to
    apply --set to before check(): a vehicle given later then still picks its own default task."""
    p = Path(path)
    if p.is_dir():
        p = p / CONFIG_FILE
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config file ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text ({e})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    cfg: dict[str, dict] = {}
    for section, table in doc.items():
        if section not in SECTIONS or not isinstance(table, dict):
            near = difflib.get_close_matches(section, SECTIONS, n=1)
            raise ConfigError(f"{p}: unknown section [{section}]" + (f" (did you mean [{near[0]}]?)" if near else
                              f"; known sections: {', '.join(SECTIONS)}"))
        cfg[section] = {}
        for key, entry in table.items():
            cfg[section][key] = _unwrap(str(p), f"{section}.{key}", entry)
    for key in ("platform", "track"):
        v = cfg.get("train", {}).get(key)
        if isinstance(v, str) and _is_path(v) and not Path(v).is_absolute():
            cfg["train"][key] = str((p.parent / v).resolve())
    return cfg


def _is_path(v: str) -> bool:
    return "/" in v or v.endswith((".toml", ".csv"))


def _unwrap(where: str, key: str, entry: Any) -> Any:
    """A bare value, or { value = ..., unit = ... } as platform files write it (unit checked in check())."""
    if isinstance(entry, dict):
        if "value" not in entry or set(entry) - {"value", "unit", "source"}:
            raise ConfigError(f"{where}: field {key}: expected a value or an inline table {{ value = ..., unit = ... }}, "
                              f"got {entry!r}")
        return {"value": entry["value"], "unit": entry.get("unit")}
    return entry


def parse_set(text: str) -> tuple[str, str]:
    """KEY=VALUE (a --set) as (key, the value's text)."""
    key, eq, value = text.partition("=")
    if not eq or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. ppo.lr=1e-3 or task.w_position=10")
    return key.strip(), value.strip()


def parse_value(text: str) -> Any:
    """A --set value as TOML reads it (1e-3, [0.8, 1.2], true, "x"), else the bare text (figure8)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def split_values(text: str) -> list[str]:
    """A sweep's a=1,2,[0.8,1.2]: the values' texts, split at commas outside brackets and quotes."""
    out, depth, quote, cur = [], 0, "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        cur += ch
    out.append(cur.strip())
    return out


def qualify(key: str, where: str) -> str:
    """section.field for a --set key; a bare field name is looked up in [train], [task] and [ppo]."""
    if "." in key:
        return key
    from train_fast.algos.ppo import PPOConfig
    found = [s for s, names in (("train", TRAIN), ("ppo", {f.name for f in dataclasses.fields(PPOConfig)}),
                                ("task", {f.name for t in registered_tasks()
                                          for f in dataclasses.fields(task_class(t.name)[0])} - {"name", "track"}))
             if key in names]
    if len(found) != 1:
        why = "no section has it" if not found else f"it is in {' and '.join(found)}"
        raise ConfigError(f"{where}: field {key!r}: name its section ({why}), e.g. task.{key} or ppo.{key}")
    return f"{found[0]}.{key}"


def apply_set(cfg: dict, key: str, value: Any, where: str) -> dict:
    """cfg with section.field set to value (a copy)."""
    section, _, name = qualify(key, where).partition(".")
    if section not in SECTIONS:
        near = difflib.get_close_matches(section, SECTIONS, n=1)
        raise ConfigError(f"{where}: unknown section [{section}]" + (f" (did you mean [{near[0]}]?)" if near else
                          f"; known sections: {', '.join(SECTIONS)}"))
    if isinstance(value, str) and section == "train" and name in ("platform", "track") and _is_path(value):
        value = str(Path(value).resolve())
    out = {s: dict(t) for s, t in cfg.items()}
    out.setdefault(section, {})[name] = value
    return out


# --- checking -----------------------------------------------------------------------------------------------------
def check(cfg: dict, where: str) -> dict:
    """The config with every value checked and normalized (ConfigError names `where`, the field, unit and value)."""
    train = _section(where, "train", TRAIN, cfg.get("train", {}))
    task, vehicle = train.get("task"), train.get("vehicle")
    if vehicle is None:
        vehicle = registered(task).vehicle if task in {t.name for t in registered_tasks()} else "quadrotor"
    if vehicle not in VEHICLE_TASKS:
        raise ConfigError(f"{where}: field train.vehicle: expected one of {', '.join(VEHICLE_TASKS)}, got {vehicle!r}")
    task = task if task is not None else VEHICLE_TASKS[vehicle][0]
    if task not in VEHICLE_TASKS[vehicle]:
        raise ConfigError(f"{where}: field train.task: expected one of {', '.join(VEHICLE_TASKS[vehicle])} for "
                          f"{vehicle}, got {task!r}")
    train.update(vehicle=vehicle, task=task)
    out = {"train": train,
           "task": _section(where, "task", task_schema(task), cfg.get("task", {})),
           "randomization": _section(where, "randomization", randomization_schema(vehicle), cfg.get("randomization", {})),
           "ppo": _section(where, "ppo", ppo_schema(), cfg.get("ppo", {}))}
    if out["train"].get("track") is not None and "track" not in registered(task).options:
        raise ConfigError(f"{where}: field train.track applies to rc-car only, not to {vehicle}")
    if out["train"].get("robust") and "robust" not in registered(task).options:
        raise ConfigError(f"{where}: field train.robust applies to quadrotor hover and figure8, not to {vehicle} {task}")
    ppo = out["ppo"]
    n = ppo.get("num_envs", 1024) * ppo.get("num_steps", 32)
    if n % ppo.get("minibatches", 16):
        raise ConfigError(f"{where}: field ppo.minibatches ({ppo.get('minibatches', 16)}) must divide "
                          f"ppo.num_envs * ppo.num_steps ({n})")
    return out


def _section(where: str, section: str, schema: dict[str, Spec], table: dict) -> dict:
    out = {}
    for key, entry in table.items():
        if key not in schema:
            near = difflib.get_close_matches(key, list(schema), n=1)
            raise ConfigError(f"{where}: unknown field {section}.{key}" + (f" (did you mean {section}.{near[0]}?)"
                              if near else f"; [{section}] takes {', '.join(schema)}"))
        if entry is None:
            continue
        out[key] = _unwrap_check(where, f"{section}.{key}", schema[key], entry)
    return out


def _unwrap_check(where: str, key: str, spec: Spec, entry: Any) -> Any:
    if isinstance(entry, dict):
        unit = entry.get("unit")
        if unit is not None and unit != spec.unit:
            raise ConfigError(f"{where}: field {key}: unit {unit!r} is not the expected unit {spec.unit!r}")
        entry = entry["value"]
    name = key.split(".", 1)[1]
    if spec.kind == "bool":
        if not isinstance(entry, bool):
            raise ConfigError(f"{where}: field {key}: expected true or false, got {entry!r}")
        return entry
    if spec.kind == "str" and name in CHOICES and entry not in CHOICES[name]:
        raise ConfigError(f"{where}: field {key}: expected one of {', '.join(CHOICES[name])}, got {entry!r}")
    if spec.shape == (-1,):  # a list of any length (hidden layer sizes)
        if not isinstance(entry, (list, tuple)) or not entry:
            raise ConfigError(f"{where}: field {key} ({spec.unit or 'no unit'}): expected a non-empty list, got {entry!r}")
        spec = dataclasses.replace(spec, shape=(len(entry),))
    try:
        value = _check_value(where, key, spec, list(entry) if isinstance(entry, tuple) else entry)
    except PlatformError as e:
        raise ConfigError(str(e)) from None
    if key.startswith("randomization."):
        return value
    if isinstance(value, list):
        return tuple(float(x) if spec.kind == "float" else x for x in value)
    return value


# --- what the trainer takes, what the bundle keeps ----------------------------------------------------------------
def trainer_kwargs(cfg: dict) -> dict:
    """train_fast.train's keyword arguments for a checked config (besides platform, seconds, seed)."""
    tr = cfg["train"]
    out = {"task_overrides": dict(cfg["task"]) or None, "ppo_overrides": dict(cfg["ppo"]) or None,
           "randomization": dict(cfg["randomization"]) or None}
    if tr.get("max_env_steps") is not None:
        out["max_env_steps"] = tr["max_env_steps"]
    if tr.get("for") is not None:
        out["target"] = tr["for"]
    return out


DEFAULT_PLATFORM = {"quadrotor": "crazyflie_2_1", "rc-car": "rc_car_1_10"}


def check_platform(cfg: dict, where: str) -> Platform:
    """The config's platform, loaded, of its vehicle's kind, with its [randomization] replaced (ConfigError)."""
    from edgectl.platforms import load_platform
    tr = cfg["train"]
    try:
        plat = load_platform(tr.get("platform", DEFAULT_PLATFORM[tr["vehicle"]]))
    except PlatformError as e:
        raise ConfigError(f"{where}: field train.platform: {e}") from None
    kind = "rc_car" if tr["vehicle"] == "rc-car" else "quadrotor"
    if plat.kind != kind:
        raise ConfigError(f"{where}: field train.platform: {plat.name!r} ({plat.path}) is a {plat.kind}, not a {tr['vehicle']}")
    return patch_platform(plat, cfg["randomization"], where)


def patch_platform(plat: Platform, randomization: dict | None, where: str = "config") -> Platform:
    """The platform with its [randomization] fields replaced (a new file text, loaded and checked as a platform)."""
    if not randomization:
        return plat
    lines = plat.raw.decode("utf-8").splitlines()
    try:
        start = next(i for i, ln in enumerate(lines) if ln.strip() == "[randomization]")
    except StopIteration:
        raise ConfigError(f"{where}: platform {plat.path} has no [randomization] section to replace") from None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    for key, value in sorted(randomization.items()):
        was = plat.values.get(f"randomization.{key}")
        if was is not None and json.dumps(was) == json.dumps(value):
            continue  # already so (a bundle's own platform.toml): the file stays byte for byte
        src = f"edgectl train config: randomization.{key} replaced (the platform file said {was})"
        new = f"{key} = {{ value = {_toml(value)}, unit = \"1\", source = {json.dumps(src)} }}"
        pat = re.compile(rf"^\s*{re.escape(key)}\s*=")
        hit = [i for i in range(start + 1, end) if pat.match(lines[i])]
        if hit:
            lines[hit[0]] = new
        else:
            lines.insert(start + 1, new)
            end += 1
    try:
        return parse_platform(("\n".join(lines) + "\n").encode(), plat.path)
    except PlatformError as e:
        raise ConfigError(f"{where}: [randomization] on platform {plat.name!r}: {e}") from None


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"not finite: {v!r}")
        return repr(v)
    return str(int(v))


def resolved(result, *, platform_file: str = "platform.toml") -> dict:
    """The config that reproduces a TrainResult, as a bundle keeps it (platform: the bundle's own copy)."""
    s = dict(result.settings)
    task = result.task.get("name")
    entry = registered(task)
    train = {"vehicle": entry.vehicle, "task": task, "platform": platform_file,
             **({"track": "track.csv"} if "track" in entry.options else {}), "seconds": s["seconds"], "seed": result.seed,
             "robust": bool(s.get("robust", False)), **({"for": result.task["for"]} if result.task.get("for") else {})}
    if s.get("max_env_steps") is not None:
        train["max_env_steps"] = int(s["max_env_steps"])
    return {"train": train, "task": {k: v for k, v in result.task.items() if k not in ("name", "track", "for")},
            "randomization": dict(s.get("randomization") or {}),
            "ppo": {k: v for k, v in result.ppo.items() if v is not None}}


def to_toml(cfg: dict, header: str = "") -> str:
    """A checked or resolved config as TOML text (units as comments)."""
    schemas = {"train": TRAIN, "task": task_schema(cfg["train"]["task"]), "ppo": ppo_schema(),
               "randomization": randomization_schema(cfg["train"]["vehicle"])}
    out = [f"# {ln}" for ln in header.splitlines()]
    for section in SECTIONS:
        out += ["", f"[{section}]"]
        for key, v in cfg.get(section, {}).items():
            unit = schemas[section].get(key, Spec("")).unit
            out.append(f"{key} = {_toml(v)}" + (f"  # {unit}" if unit not in ("", "1") else ""))
    return "\n".join(out).lstrip("\n") + "\n"


def metrics_csv(history: list[dict]) -> bytes:
    """One row per training chunk: every key any chunk recorded, in the order first seen (empty where absent)."""
    return rows_csv(history, list(dict.fromkeys(k for h in history for k in h)))


def rows_csv(rows: list[dict], cols: list[str]) -> bytes:
    """CSV of dict rows in `cols` order, empty where a row has no value (None or absent)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r[k]) for k in cols})
    return buf.getvalue().encode()


def bundle_files(result) -> dict[str, bytes]:
    """config.toml (when the trainer recorded its settings) and metrics.csv, for the bundle."""
    out = {}
    if getattr(result, "settings", None):
        cfg = resolved(result)
        out[CONFIG_FILE] = to_toml(cfg, header=(
            f"edgectl training config, resolved: {result.task.get('name')} on {result.platform_name}, seed {result.seed}.\n"
            "Train it again: edgectl train --config THIS_FILE (paths are taken from this file's folder).")).encode()
    if result.history:
        out[METRICS_FILE] = metrics_csv(result.history)
    return out


def write_tensorboard(logdir: str | Path, history: list[dict], t_start: float) -> Path:
    """Every numeric per-chunk metric as a TensorBoard scalar (step: env steps) under logdir. Needs the tensorboard
    package (ImportError otherwise); TensorFlow is not needed."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    logdir = Path(logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    w = EventFileWriter(str(logdir))
    for h in history:
        vals = [summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in h.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "chunk" and math.isfinite(v)]
        w.add_event(event_pb2.Event(wall_time=t_start + float(h.get("elapsed_s", 0.0)), step=int(h["env_steps"]),
                                    summary=summary_pb2.Summary(value=vals)))
    w.close()
    return logdir

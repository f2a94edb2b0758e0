"""The task registry: one entry per task says what it is and where each floor's part of it lives.

A task (hover, figure8, race, avoid, and those to come) is one `Task` here. Its plain facts (vehicle, which
options apply, what counts as a bundle that flies) are fields; its behaviour on the floors above
(build the environment, train, evaluate, collect calibration observations, plot, fly) are *hooks*: "module:attr"
strings resolved on first use, the way gymnasium's registry names an env's entry point. So this module sits on
the ground floor and imports nothing above it, a flight computer reading a bundle's task never imports JAX, and
tests/test_layers.py checks that every hook resolves and lives on a floor its callers may import.

No code outside the task modules and this registry compares task names: it asks `task(name)` and reads a field
or calls a hook.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

# Each hook role, and the highest floor (tests/test_layers.py FLOORS) its module may live on: a role is called
# from that floor or above. "fly" and "evaluate" are the CLI's own rooms.
HOOK_FLOORS: dict[str, str] = {
    "setup": "training",        # (platform, task_overrides, robust, track, target) -> train_fast.train.TaskSetup
    "gym_env": "training",      # (name, platform, **kw) -> (task module, env, config) for train_fast/envs.py
    "import_config": "training",  # (file, contract, fields, overrides, extra) -> (task module, config factory)
    "observations": "training",  # (bundle, n, seed, source) -> (n, obs) float32: int8 calibration and parity
    "curve": "training",        # (history, title, budget_s) -> PNG bytes of the training curve
    "task_config": "training",  # (name) -> (the task's settings dataclass, its factory with the task's defaults)
    "eval_bundle": "training",  # (bundle, episodes, seed) -> summary dict: the evaluation `edgectl sweep` records
    "int8_check": "export",     # (job) -> dict: the int8 policy flown beside the float one
    "evaluate": "cli",          # (b, opts) -> None: `edgectl eval` of a bundle of this task
    "fly": "cli",               # (b, opts) -> None: `edgectl run` of a bundle of this task
}


class TaskError(ValueError):
    """An unknown task name, or a task asked for something it does not do."""


@dataclass(frozen=True)
class Goal:
    """What a bundle's own evaluation must show to count as flying (`edgectl train` moves runs/latest only then).

    metric: the key in the evaluation; at_least: its lower bound (None: it must merely exist, e.g. a lap time);
    says: how the shortfall reads in a message ({value} is the metric as a percentage where at_least is set)."""
    metric: str
    at_least: Optional[float]
    says: str


@dataclass(frozen=True)
class Task:
    name: str
    vehicle: str                # the CLI's vehicle argument: quadrotor | rc-car
    summary: str                # one line for --help
    goal: Goal
    options: frozenset[str] = frozenset()   # train/eval/run options that apply (see OPTIONS)
    hooks: Mapping[str, str] = field(default_factory=dict)
    metric: str = "survival_rate"  # the evaluation figure `edgectl sweep` plots by default
    gym_id: Optional[str] = None  # gymnasium id, registered on `import edgectl` (edgectl/gym_ids.py)
    warm_by_default: bool = True  # `edgectl warmup` without --task compiles it
    commands: str = "motor commands"  # what its actions are, for messages
    motor_level: bool = False     # a state policy commanding motors (or ctbr): the shield, --perturb, int8 closed loop
    on_board: Optional[str] = None  # None: --target crazyflie can build it; else why not

    @property
    def platform_kind(self) -> str:
        """The platform file kind its vehicle flies (hardware/*.toml `kind`)."""
        return self.vehicle.replace("-", "_")

    def hook(self, role: str) -> Callable[..., Any]:
        """The callable this task registers for `role` (imports its module now)."""
        if role not in HOOK_FLOORS:
            raise TaskError(f"unknown hook role {role!r}; roles: {', '.join(HOOK_FLOORS)}")
        where = self.hooks.get(role)
        if where is None:
            raise TaskError(f"task {self.name!r} has no {role!r} hook")
        module, _, attr = where.partition(":")
        return getattr(importlib.import_module(module), attr)

    def fails(self, best: Mapping) -> Optional[str]:
        """Why an evaluation says the bundle does not fly (None: it does)."""
        value = best.get(self.goal.metric)
        if value is not None and not math.isfinite(float(value)):
            value = None
        if value is not None and (self.goal.at_least is None or value >= self.goal.at_least):
            return None
        pct = "n/a" if value is None else f"{100 * value:.1f} %"
        return self.goal.says.format(value=pct, episodes=best.get("episodes"))


# Options a task may accept; the CLI checks an option against `name in task.options` before using it.
OPTIONS = ("robust", "action", "action_delay", "perturb", "track", "camera", "reference", "for", "refine")

_QUAD = frozenset({"robust", "action", "action_delay", "perturb"})
_SURVIVE = Goal("survival_rate", 0.5, "survival {value} of {episodes} episodes (under half: no median error)")

_REGISTRY: dict[str, Task] = {}
# The CLI's vehicle argument -> the platform file flown when --platform is not given (hardware/<name>.toml)
DEFAULT_PLATFORM: dict[str, str] = {"quadrotor": "crazyflie_2_1", "rc-car": "rc_car_1_10"}


def register(t: Task) -> Task:
    if t.name in _REGISTRY:
        raise TaskError(f"task {t.name!r} is registered twice")
    bad = sorted(set(t.hooks) - set(HOOK_FLOORS))
    if bad:
        raise TaskError(f"task {t.name!r}: unknown hook roles {bad}; roles: {', '.join(HOOK_FLOORS)}")
    bad = sorted(set(t.options) - set(OPTIONS))
    if bad:
        raise TaskError(f"task {t.name!r}: unknown options {bad}; options: {', '.join(OPTIONS)}")
    _REGISTRY[t.name] = t
    return t


def task(name: str) -> Task:
    """The registered task called `name`, or a TaskError naming the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise TaskError(f"unknown task {name!r}; known tasks: {', '.join(_REGISTRY)}") from None


def tasks(vehicle: Optional[str] = None) -> tuple[Task, ...]:
    """Registered tasks in registration order (the first of a vehicle is its default), optionally of one vehicle."""
    return tuple(t for t in _REGISTRY.values() if vehicle is None or t.vehicle == vehicle)


def vehicles() -> dict[str, tuple[str, ...]]:
    """The CLI's vehicle argument -> its task names, default first."""
    out: dict[str, tuple[str, ...]] = {}
    for t in _REGISTRY.values():
        out[t.vehicle] = out.get(t.vehicle, ()) + (t.name,)
    return out


_QUAD_HOOKS = {"setup": "train_fast.tasks.training:quadrotor",
               "task_config": "train_fast.tasks.training:quadrotor_config",
               "eval_bundle": "train_fast.tasks.training:eval_quadrotor",
               "gym_env": "train_fast.tasks.training:quadrotor_env",
               "import_config": "train_fast.importer:quadrotor_import",
               "observations": "train_fast.evaluate:collect_observations",
               "curve": "edgectl.plots:training_curve_png",
               "int8_check": "export.targets:int8_quadrotor",
               "evaluate": "edgectl.cli.evaluate:eval_quadrotor",
               "fly": "edgectl.cli.run:fly_quadrotor"}

register(Task("hover", "quadrotor", "hold a position from random starts (Learning to Fly in Seconds)", _SURVIVE,
              options=_QUAD | {"for", "refine"}, hooks=_QUAD_HOOKS, motor_level=True, gym_id="edgectl/Hover-v0"))
register(Task("figure8", "quadrotor", "track a figure-eight reference", _SURVIVE,
              options=_QUAD | {"reference"}, hooks=_QUAD_HOOKS, motor_level=True, gym_id="edgectl/Figure8-v0",
              metric="tracking_rmse_m"))
register(Task("avoid", "quadrotor", "fly through an obstacle field from a camera image (CAD2RL-style)",
              Goal("success_rate", 0.5, "{value} of the obstacle fields crossed"),
              options=frozenset({"camera"}), warm_by_default=False, commands="velocity setpoints",
              gym_id="edgectl/Avoid-v0", metric="success_rate",
              on_board=("--target crazyflie builds the observation from the state estimate; an avoid (image) policy "
                        "needs the camera image on board: use --target c or stm32 (it fits the MCU budget) and feed "
                        "edgectl_policy_step() from your camera driver, or --target onnx/tensorrt on a Jetson"),
              hooks={"setup": "train_fast.tasks.training:avoid",
                     "task_config": "train_fast.tasks.training:avoid_config",
                     "eval_bundle": "train_fast.tasks.training:eval_avoid",
                     "gym_env": "train_fast.tasks.training:avoid_env",
                     "import_config": "train_fast.importer:avoid_import",
                     "observations": "train_fast.evaluate_avoid:collect_observations",
                     "curve": "train_fast.evaluate_avoid:training_curve_png",
                     "int8_check": "export.targets:int8_avoid",
                     "evaluate": "edgectl.cli.evaluate:eval_avoid",
                     "fly": "edgectl.cli.run:fly_avoid"}))
register(Task("race", "rc-car", "race a 1/10 RC car around a track from one demonstration lap (FastRLAP)",
              Goal("lap_time_s", None, "no lap finished from a standing start"),
              options=frozenset({"track"}), commands="steering and throttle",
              gym_id="edgectl/Race-v0", metric="lap_time_s",
              hooks={"setup": "train_fast.tasks.training:race",
                     "task_config": "train_fast.tasks.training:race_config",
                     "eval_bundle": "train_fast.tasks.training:eval_race",
                     "gym_env": "train_fast.tasks.training:race_env",
                     "import_config": "train_fast.importer:race_import",
                     "observations": "train_fast.evaluate_car:collect_observations",
                     "curve": "train_fast.evaluate_car:training_curve_png",
                     "int8_check": "export.targets:int8_race",
                     "evaluate": "edgectl.cli.evaluate:eval_race",
                     "fly": "edgectl.cli.run:fly_race"}))

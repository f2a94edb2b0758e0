"""What the one budgeted trainer (train_fast.train.train) needs from each task: the registry's "setup" hooks.

A setup builds the task's environments, contract and checkpoint judge, and names the PPO settings that differ
from PPOConfig's defaults (each with the measurement that chose it). The trainer does the rest the same way for
every task.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Optional

# Hover / figure8: PPO settings that differ from PPOConfig's defaults. The learning rate ends at a quarter
# of its start instead of 0: the median error was still falling in the last chunks (in 18 s runs, 3 seeds, 4000
# fresh episodes: 3.4-3.9 cm against 4.0-4.3 cm, survival 99.28-99.70 % against 99.38-99.65 %; lr_end 1e-3:
# 3.4-3.9 cm, 99.17-99.55 %). A 64x64 actor survived 0.1 points more at the same 3 M steps but ran 10 % fewer
# steps in 20 s (bench 3 of 5 seeds).
QUAD_PPO: dict = {"lr_end": 5e-4}
# ctbr (collective thrust + body rates through the autopilot's rate loop): more exploration. On the Crazyflie 2.1
# (hover, seed 0, 1.7 M env steps, 1000 episodes): initial action std 0.15 -> 1 % survival, 0.3 (the motor-level
# default) -> 83 %, 0.5 -> 93 %, 0.8 -> 79 %; a policy that barely moves its rates never learns to right a tilt.
CTBR_PPO: dict = {"init_std": 0.5}
# RC-car racing: none so far: the defaults beat tuned pure pursuit on both shipped tracks (bench/train_car.py)
RACE_PPO: dict = {}
RACE_EVAL_LAPS = 2  # laps per checkpoint evaluation during training (edgectl eval drives 3)
# Vision avoid: measured (seed 0/1, step budgets, shared 2-core machine): actor 64x64 reached 96.5 % of fields at
# 655k steps, 32x32 93.8 %; 512 and 1024 envs both reached 98.8 % at 1.3 M steps in the same wall time
# (115-118 s), and 512 evaluates checkpoints twice as often. init_std 0.5: the actions are velocity commands in
# units of max speed.
AVOID_PPO: dict = {"num_envs": 512, "num_steps": 32, "minibatches": 8, "lr": 1e-3, "actor_hidden": (64, 64),
                   "critic_hidden": (128, 128), "init_std": 0.5, "iters_per_chunk": 4, "eval_episodes": 256}


# `edgectl train --for TARGET`: a policy an on-board runtime runs as it is, with nothing it does not feed.
# px4: PX4's mc_nn_control (export/px4.py, from the module's source). It feeds 15 values: position error, rows 0-1 of
# the rotation matrix, velocity and body rates (PopulateInputTensor), no previous actions and no integral, and
# registers FULLY_CONNECTED, RELU and ADD only (no TANH). So: action_history 0, integral_tau 0, ReLU hidden layers,
# and an actor that never reads rotation_matrix elements 6-8 (R[2, :], the body's view of world up). Those stay in
# the observation (the contract, its normalization and every runtime's observation builder are unchanged: the
# critic still sees them) and get exactly zero first-layer weights (PPOConfig.actor_unread), the check the export
# makes. Its action stays the four motor commands, which the export maps through the module's rescaling.
FOR_TARGETS: dict[str, dict] = {
    "px4": {"firmware": "px4", "action": "motor", "task": {"action_history": 0, "integral_tau": 0.0},
            "ppo": {"actor_activation": "relu"}, "unread": {"rotation_matrix": (6, 7, 8)},
            "module": "PX4 mc_nn_control (edgectl export --target px4)"},
}


def for_target(plat, name: str, target: str, overrides: dict) -> tuple[dict, dict]:
    """(task overrides, PPO settings) of `--for target`; ValueError if the task, platform or overrides do not fit."""
    from edgectl.platforms import tomllib
    from edgectl.tasks import task as registered

    spec = FOR_TARGETS.get(target)
    if spec is None:
        raise ValueError(f"--for {target!r}: known targets: {', '.join(FOR_TARGETS)}")
    if "for" not in registered(name).options:
        raise ValueError(f"--for {target} does not apply to the {name} task ({spec['module']} flies a fixed setpoint: "
                         "no moving reference)")
    fw = tomllib.loads(plat.raw.decode("utf-8")).get("platform", {}).get("firmware")
    if fw != spec["firmware"]:
        raise ValueError(f"--for {target}: platform {plat.name} runs firmware {fw!r}; {spec['module']} runs inside "
                         f"{spec['firmware']}: train on a {spec['firmware']} platform (px4_x500_v2)")
    if overrides.get("action", "motor") != spec["action"]:
        raise ValueError(f"--for {target}: {spec['module']} commands the motors itself; action "
                         f"{overrides['action']!r} is not {spec['action']!r}")
    need = spec["task"]
    clash = [k for k in need if k in overrides and overrides[k] != need[k]]
    if clash:
        raise ValueError(f"--for {target}: " + ", ".join(f"{k} = {overrides[k]!r}" for k in clash) + f"; {spec['module']} "
                         "needs " + ", ".join(f"{k} = {need[k]!r}" for k in clash))
    return {**overrides, **spec["task"]}, dict(spec["ppo"])


def unread_indices(contract: dict, unread: dict) -> tuple:
    """Observation indices of {field name: element indices within the field}."""
    out, start = [], 0
    for f in contract["observation"]["fields"]:
        out += [start + i for i in unread.get(f["name"], ())]
        start += f["size"]
    return tuple(out)


@dataclass
class TaskSetup:
    ppo: dict                     # PPO settings over PPOConfig's defaults (the caller's overrides go on top)
    train_env: Any                # the env PPO collects from (training starts, randomization)
    fns: ModuleType               # the task module: reset, step, observe, observe_privileged
    action_size: int
    action_bias: Any              # added to the actor's output (hover: the hover command)
    contract: dict
    task: dict                    # the bundle manifest's task entry (its name included)
    make_evaluate: Callable[[Callable, Any], Callable]  # (actor_apply, ppo config) -> jitted checkpoint rollout
    judge: Callable               # raw rollout output -> (summary, score)
    history_keys: tuple = ()      # per-chunk keys whose first/final values the metrics record
    extra_files: dict = field(default_factory=dict)
    reserve_seconds: float = 1.0  # left of the budget for the curve and the bundle
    # Checkpoints are evaluated only once this fraction of the budget is spent (see train_fast.train.train)
    eval_from: float = 0.0


def _no(what: str, name: str, value) -> None:
    if value:
        raise ValueError(f"{what} does not apply to the {name} task")


def quadrotor(plat, name: str, overrides: Optional[dict] = None, robust: bool = False,
              track: Optional[str] = None, target: Optional[str] = None) -> TaskSetup:
    """hover and figure8. Training draws every episode's vehicle from the platform's randomization ranges;
    checkpoints are judged on its nominal vehicle, or with `robust` on vehicles drawn from those ranges.
    eval_from 0.4: an evaluation costs about a third of a chunk, and no early checkpoint was ever the best one
    (best chunk 19 of 22 at 20 s); skipping them buys about 15 % more env steps in 20 s."""
    from train_fast.evaluate import make_rollout, score, summarize
    from train_fast.tasks import quadrotor_tasks as qt

    _no("--track", name, track)
    ppo_for: dict = {}
    if target is not None:
        overrides, ppo_for = for_target(plat, name, target, dict(overrides or {}))
    tcfg = qt.TASKS[name](**(overrides or {}))
    env = qt.make_env(tcfg, plat, randomize=robust)  # evaluation: the task's own start distribution
    contract = qt.contract(tcfg, plat)
    tracking = qt.tracks_reference(tcfg)
    if target is not None:
        ppo_for["actor_unread"] = unread_indices(contract, FOR_TARGETS[target]["unread"])

    def judge(raw):
        ev = summarize(raw, tracking)
        return ev, score(ev)

    return TaskSetup(
        ppo={**QUAD_PPO, **(CTBR_PPO if tcfg.action == "ctbr" else {}), **ppo_for},
        train_env=qt.make_env(tcfg, plat, training=True), fns=qt, action_size=4,
        action_bias=contract["action"].get("hover_actions", contract["action"]["hover_action"]),  # ctbr: per output
        contract=contract, task=dataclasses.asdict(tcfg) | {"name": name} | ({"for": target} if target else {}),
        make_evaluate=lambda apply, pcfg: make_rollout(env, apply, pcfg.eval_episodes), judge=judge, eval_from=0.4)


def race(plat, name: str, overrides: Optional[dict] = None, robust: bool = False,
         track: Optional[str] = None, target: Optional[str] = None) -> TaskSetup:
    """Checkpoints kept by lap evaluation (time to finish RACE_EVAL_LAPS laps from a standing start, 10 s per
    collision)."""
    from train_fast.laps import actor_policy, make_lap_rollout, score, summarize
    from train_fast.tasks import car_tasks as ct

    _no("--robust", name, robust)
    _no("--for", name, target)
    trk = ct.load_track(track or "oval")
    tcfg = ct.TaskConfig(**{**(overrides or {}), "track": trk.name})
    env = ct.make_env(tcfg, plat, track=trk)

    def judge(raw):
        ev = summarize(raw, env, RACE_EVAL_LAPS)
        return ev, score(ev, env)

    return TaskSetup(
        ppo=dict(RACE_PPO), train_env=env, fns=ct, action_size=2, action_bias=0.0, contract=ct.contract(tcfg, plat),
        task=dataclasses.asdict(tcfg) | {"name": name},
        make_evaluate=lambda apply, pcfg: make_lap_rollout(env, actor_policy(env, apply), laps=RACE_EVAL_LAPS,
                                                           batched=False),
        judge=judge, history_keys=("mean_reward",), extra_files={"track.csv": trk.raw})


def avoid(plat, name: str, overrides: Optional[dict] = None, robust: bool = False,
          track: Optional[str] = None, target: Optional[str] = None) -> TaskSetup:
    """The actor is an MLP on the image plus proprioception, the critic sees the obstacle geometry; checkpoints
    kept by the success rate on fixed evaluation scenes (a split of the training key, not the scenes `edgectl
    eval` uses)."""
    from train_fast.evaluate_avoid import make_rollout, score, summarize
    from train_fast.tasks import avoid_tasks as at

    _no("--robust", name, robust)
    _no("--for", name, target)
    _no("--track", name, track)
    tcfg = at.avoid_config(**(overrides or {}))
    env = at.make_env(tcfg, plat)

    def judge(raw):
        ev = summarize(raw, tcfg.length)
        return ev, score(ev)

    return TaskSetup(
        ppo=dict(AVOID_PPO), train_env=env, fns=at, action_size=2, action_bias=0.0, contract=at.contract(tcfg, plat),
        task=dataclasses.asdict(tcfg) | {"name": name},
        make_evaluate=lambda apply, pcfg: make_rollout(env, apply, pcfg.eval_episodes), judge=judge,
        reserve_seconds=3.0)


# --- the registry's "gym_env" hooks: (task module, static env, task config) as train_fast/envs.py exposes them ---
def quadrotor_env(name: str, plat, *, randomize: bool, training: bool, disturbances: bool, track=None, **overrides):
    from train_fast.tasks import quadrotor_tasks as mod

    _no("track", name, track)
    cfg = mod.TASKS[name](**overrides)
    return mod, mod.make_env(cfg, plat, randomize=randomize, disturbances=disturbances, training=training), cfg


def race_env(name: str, plat, *, randomize: bool, training: bool, disturbances: bool, track=None, **overrides):
    from train_fast.tasks import car_tasks as mod

    trk = mod.load_track(track or overrides.pop("track", None) or "oval")
    cfg = mod.TaskConfig(**{**overrides, "track": trk.name})
    return mod, mod.make_env(cfg, plat, track=trk, randomize=randomize), cfg


def avoid_env(name: str, plat, *, randomize: bool, training: bool, disturbances: bool, track=None, **overrides):
    from train_fast.tasks import avoid_tasks as mod

    _no("track", name, track)
    cfg = mod.avoid_config(**overrides)
    return mod, mod.make_env(cfg, plat), cfg


# --- the registry's "task_config" hooks: (settings dataclass, factory with the task's defaults) ------------------------
def quadrotor_config(name: str):
    from train_fast.tasks import quadrotor_tasks as qt
    return qt.TaskConfig, qt.TASKS[name]


def race_config(name: str):
    from train_fast.tasks import car_tasks as ct
    return ct.TaskConfig, ct.race_config


def avoid_config(name: str):
    from train_fast.tasks import avoid_tasks as at
    return at.TaskConfig, at.avoid_config


# --- the registry's "eval_bundle" hooks: a bundle's evaluation on fresh episodes, as `edgectl eval` runs it ----------
def eval_quadrotor(bundle, episodes: int, seed: int) -> dict:
    from train_fast.evaluate import evaluate_bundle
    return evaluate_bundle(bundle, episodes=episodes, seed=seed)[0]


def eval_race(bundle, episodes: int, seed: int) -> dict:
    """Laps, not episodes: `edgectl eval`'s 3 laps from a standing start (the pure-pursuit baseline left out)."""
    from train_fast.evaluate_car import evaluate_bundle
    return evaluate_bundle(bundle, seed=seed, baseline=False)[0]


def eval_avoid(bundle, episodes: int, seed: int) -> dict:
    from train_fast.evaluate_avoid import evaluate_bundle
    return evaluate_bundle(bundle, episodes=episodes, seed=seed)[0]

"""The task registry (edgectl/tasks.py): one entry per task, hooks that resolve on the right floors, and no
task-name comparison anywhere else (issue 14's acceptance: grep finds none outside the task modules and the
registry; this is that grep, done on the syntax tree so a reformatted compare cannot slip through)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from edgectl import tasks as reg

from test_layers import FLOOR_NAMES, floor_of

ROOT = Path(__file__).resolve().parents[1]
NAMES = {t.name for t in reg.tasks()}
# Where a task may name itself: the registry and the task modules (train_fast/tasks/*_tasks.py).
ALLOWED = {"edgectl/tasks.py", "train_fast/tasks/quadrotor_tasks.py", "train_fast/tasks/car_tasks.py",
           "train_fast/tasks/avoid_tasks.py"}
SCANNED = ("edgectl", "train_fast", "export", "firmware_bridge", "bench", "hil_tests")


def _names_in(node) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value} & NAMES
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return set().union(*(_names_in(e) for e in node.elts)) if node.elts else set()
    return set()


def task_name_compares(source: str) -> list[tuple[int, str]]:
    """(line, name) of every ==, !=, in, not in, is whose one side is a registered task name (or a literal
    collection of them)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            ops_ok = all(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn, ast.Is, ast.IsNot)) for op in node.ops)
            hit = set().union(*(_names_in(n) for n in [node.left, *node.comparators]))
            if ops_ok and hit:
                out.append((node.lineno, ", ".join(sorted(hit))))
        elif isinstance(node, ast.Match):  # match task: case "race": ...
            for case in node.cases:
                pat = case.pattern
                if isinstance(pat, ast.MatchValue) and _names_in(pat.value):
                    out.append((case.pattern.lineno, ", ".join(sorted(_names_in(pat.value)))))
    return out


def test_the_scanner_finds_the_compares_it_must():
    src = ("if task == 'race': pass\nif b.task_name != \"hover\": pass\nif t in ('hover', 'figure8'): pass\n"
           "x = 'avoid' if a else 'b'\nif name == 'avoidance': pass\nif kind == 'rc_car': pass\n")
    assert [n for n, _ in task_name_compares(src)] == [1, 2, 3]


def test_no_task_name_comparison_outside_the_task_modules_and_the_registry():
    found = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in ALLOWED:
                continue
            found += [f"{rel}:{line}: compares with {name}" for line, name in task_name_compares(path.read_text())]
    assert not found, "task names compared outside the registry (ask edgectl.tasks.task(name) instead):\n" + "\n".join(found)


@pytest.mark.parametrize("name", sorted(NAMES))
def test_every_task_registers_every_hook_on_a_floor_its_callers_may_import(name):
    t = reg.task(name)
    assert set(t.hooks) == set(reg.HOOK_FLOORS), f"{name}: missing {set(reg.HOOK_FLOORS) - set(t.hooks)}"
    floors = {v: k for k, v in FLOOR_NAMES.items()}
    for role, where in t.hooks.items():
        module = where.partition(":")[0]
        assert floor_of(module) <= floors[reg.HOOK_FLOORS[role]], \
            f"{name}.{role} -> {where}: on the {FLOOR_NAMES[floor_of(module)]} floor, above {reg.HOOK_FLOORS[role]}"
        assert callable(t.hook(role)), f"{name}.{role} -> {where} does not resolve"


def test_vehicles_and_gym_ids_come_from_the_registry():
    from edgectl import gym_ids
    from edgectl.cli.common import VEHICLES

    assert VEHICLES == reg.vehicles() == {"quadrotor": ("hover", "figure8", "avoid"), "rc-car": ("race",)}
    assert set(gym_ids.GYM_IDS.values()) == NAMES and all(i.startswith("edgectl/") for i in gym_ids.GYM_IDS)
    assert {reg.task(n).platform_kind for n in NAMES} == {"quadrotor", "rc_car"}
    assert set(reg.DEFAULT_PLATFORM) == set(reg.vehicles())


def test_goals_say_when_a_bundle_does_not_fly():
    hover, avoid, race = reg.task("hover"), reg.task("avoid"), reg.task("race")
    assert hover.fails({"survival_rate": 0.5}) is None
    assert hover.fails({"survival_rate": 0.49, "episodes": 10}) == \
        "survival 49.0 % of 10 episodes (under half: no median error)"
    assert hover.fails({"survival_rate": float("nan")}).startswith("survival n/a")
    assert avoid.fails({"success_rate": 0.3}) == "30.0 % of the obstacle fields crossed"
    assert race.fails({"lap_time_s": None}) and race.fails({"lap_time_s": 7.5}) is None


def test_bad_names_and_registrations_are_refused():
    with pytest.raises(reg.TaskError, match="unknown task 'hoover'; known tasks: hover, figure8, avoid, race"):
        reg.task("hoover")
    with pytest.raises(reg.TaskError, match="registered twice"):
        reg.register(reg.task("hover"))
    with pytest.raises(reg.TaskError, match="unknown options"):
        reg.register(reg.Task("x", "quadrotor", "", reg.task("hover").goal, options=frozenset({"turbo"})))
    with pytest.raises(reg.TaskError, match="unknown hook roles"):
        reg.register(reg.Task("x", "quadrotor", "", reg.task("hover").goal, hooks={"dance": "a:b"}))
    with pytest.raises(reg.TaskError, match="has no 'fly' hook"):
        reg.Task("x", "quadrotor", "", reg.task("hover").goal).hook("fly")
    assert "x" not in NAMES and all(t.name != "x" for t in reg.tasks())

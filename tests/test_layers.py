"""The house has floors (../shared/DESIGN.md): imports point one way, and the robot side runs without JAX.

Floors, lowest first; a module imports only modules of its own floor or below (imports inside functions and under
TYPE_CHECKING count too):
  1 ground    edgectl: platforms, contract, observation, bundle, STL language (safety.stl/.monitor/.kernels/
              .signals), host plant (edgectl.plant), tracks, scene, hostc, plots
  2 robot     edgectl.runtime, edgectl.safety, edgectl.backends, the vehicle links (firmware_bridge)
  3 training  train_fast
  4 export    export
  5 sim       the simulated vehicles (firmware_bridge.sim)
  6 cli       edgectl.cli and the firmware_bridge cli_hooks
Plus: no import cycles between modules; the ground and robot floors never import JAX when imported (the ground's
numpy/JAX-agnostic helpers may import jax.numpy inside a function, for jax arrays a caller passed), and the robot
floor has no JAX import at all.

The tree checked is the one `edgectl` is imported from (PYTHONPATH=/path/to/checkout checks that checkout).
"""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

GROUND, ROBOT, TRAINING, EXPORT, SIM, CLI = 1, 2, 3, 4, 5, 6
FLOOR_NAMES = {GROUND: "ground", ROBOT: "robot", TRAINING: "training", EXPORT: "export", SIM: "sim", CLI: "cli"}
# The rule list: module name prefix -> floor; the longest matching prefix wins.
FLOORS = {
    "edgectl": GROUND,
    "edgectl.safety": ROBOT, "edgectl.runtime": ROBOT, "edgectl.backends": ROBOT, "firmware_bridge": ROBOT,
    "edgectl.safety.stl": GROUND, "edgectl.safety.monitor": GROUND, "edgectl.safety.kernels": GROUND,
    "edgectl.safety.signals": GROUND,
    "train_fast": TRAINING,
    "export": EXPORT,
    "firmware_bridge.sim": SIM,
    "edgectl.cli": CLI, "edgectl.__main__": CLI, "firmware_bridge.cli_hooks": CLI,
    "firmware_bridge.mavlink.cli_hooks": CLI, "firmware_bridge.rccar.cli_hooks": CLI,
}
JAX = ("jax", "jaxlib", "optax")
BLOCKED = (*JAX, "train_fast", "export")  # what the robot side runs without
PACKAGES = ("edgectl", "train_fast", "export", "firmware_bridge")
ROOT = Path(importlib.util.find_spec("edgectl").origin).resolve().parents[1]


def floor_of(module: str) -> int:
    best = max((p for p in FLOORS if module == p or module.startswith(p + ".")), key=len)
    return FLOORS[best]


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(f.relative_to(ROOT).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            out[".".join(parts[:-1] if is_pkg else parts)] = (f, is_pkg)
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> list[tuple[str, int, bool]]:
    """(imported name, line, at module level) for every import in the module, absolute names."""
    path, is_pkg = MODULES[module]
    package = module if is_pkg else module.rpartition(".")[0]
    out = []

    def visit(node, top: bool):
        for child in ast.iter_child_nodes(node):
            inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                inner = False  # not run at import, but still a dependency
            if isinstance(child, ast.Import):
                out.extend((a.name, child.lineno, top) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    name = ".".join(base + ([child.module] if child.module else []))
                else:
                    name = child.module
                # `from pkg import sub` imports the submodule where there is one
                out.extend((f"{name}.{a.name}" if f"{name}.{a.name}" in MODULES else name, child.lineno, top)
                           for a in child.names)
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), True)
    return out


def _graph() -> dict[str, set[str]]:
    g = defaultdict(set)
    for m in MODULES:
        for name, _, _ in _imports(m):
            target = _resolve(name)
            if target is not None and target != m:
                g[m].add(target)
    return g


def _cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in sorted(MODULES):
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(g[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_the_rule_list_places_every_module():
    assert len(MODULES) > 100, f"found only {len(MODULES)} modules under {ROOT}"
    for m in MODULES:
        floor_of(m)  # raises on a module no rule covers
    assert floor_of("edgectl.safety.shield") == ROBOT and floor_of("edgectl.safety.stl") == GROUND
    assert floor_of("firmware_bridge.crazyflie.bridge") == ROBOT and floor_of("firmware_bridge.sim.crazyflie") == SIM


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles (each line one cycle):\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_backward_imports():
    bad = []
    for m in sorted(MODULES):
        fm = floor_of(m)
        for name, line, top in _imports(m):
            target = _resolve(name)
            where = f"{MODULES[m][0].relative_to(ROOT)}:{line}"
            if target is not None and floor_of(target) > fm:
                bad.append(f"{where}: {m} ({FLOOR_NAMES[fm]}) imports {target} ({FLOOR_NAMES[floor_of(target)]})")
            if name.split(".")[0] in JAX and (fm == ROBOT or (fm == GROUND and top)):
                bad.append(f"{where}: {m} ({FLOOR_NAMES[fm]}) imports {name}"
                           + ("" if fm == ROBOT else " at module level"))
    assert not bad, f"{len(bad)} backward import(s):\n" + "\n".join(bad)


_BLOCKER = """
import importlib, importlib.abc, json, sys, traceback
BLOCKED = {blocked!r}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}}: blocked (the robot side runs without it)")
        return None

sys.meta_path.insert(0, Block())
failed = {{}}
for m in {modules!r}:
    try:
        importlib.import_module(m)
    except BaseException as e:  # report every module, not just the first
        failed[m] = "".join(traceback.format_exception_only(type(e), e)).strip()
loaded = sorted({{n.split(".")[0] for n in sys.modules}} & set(BLOCKED))
print(json.dumps({{"failed": failed, "loaded": loaded}}))
"""


def test_robot_side_imports_without_jax_train_fast_or_export():
    """Every ground- and robot-floor module, and the CLI module `edgectl run` starts from, imports in a fresh
    interpreter where importing jax, jaxlib, optax, train_fast or export raises ImportError."""
    mods = sorted(m for m in MODULES if floor_of(m) <= ROBOT) + ["edgectl.cli"]
    assert "edgectl.safety.shield" in mods and "edgectl.runtime.loop" in mods and "firmware_bridge.crazyflie.bridge" in mods
    code = _BLOCKER.format(blocked=BLOCKED, modules=mods)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert not out["failed"], f"{len(out['failed'])} of {len(mods)} modules need a blocked import:\n" + "\n".join(
        f"{m}: {e}" for m, e in out["failed"].items())
    assert not out["loaded"], f"imported anyway: {out['loaded']}"

"""edgectl's gymnasium ids, registered on `import edgectl` without importing gymnasium (or JAX) here.

gymnasium 1.x reads no entry points, so the ids are registered by edgectl itself. Importing gymnasium costs
0.2-0.4 s, which every `edgectl` command and every robot-side import would pay; instead, if gymnasium is
already imported the ids are registered at once, and otherwise when it is first imported (an import hook
that removes itself). Either way, once edgectl is imported, gymnasium's registry has them. The entry points
are strings: train_fast.envs (JAX) loads only when an environment is made.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys

from .tasks import tasks

# id -> task; the environments are train_fast/envs.py's GymEnv (gymnasium.make) and VectorEnv (make_vec)
GYM_IDS = {t.gym_id: t.name for t in tasks() if t.gym_id}  # the task registry's ids
ENTRY_POINT, VECTOR_ENTRY_POINT = "train_fast.envs:GymEnv", "train_fast.envs:VectorEnv"


def register() -> None:
    """Register every id with gymnasium (a no-op for ids already there)."""
    import gymnasium

    for env_id, task in GYM_IDS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=ENTRY_POINT, vector_entry_point=VECTOR_ENTRY_POINT,
                               kwargs={"task": task}, disable_env_checker=False)


class _Loader(importlib.abc.Loader):
    def __init__(self, inner):
        self.inner = inner

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        self.inner.exec_module(module)
        register()


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "gymnasium":
            return None
        sys.meta_path.remove(self)  # once; also stops find_spec below from finding this finder again
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _Loader(spec.loader)
        return spec


def install() -> None:
    if "gymnasium" in sys.modules:
        try:
            register()
        except Exception:  # noqa: BLE001 - a broken gymnasium must not break `import edgectl`
            pass
    elif not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())

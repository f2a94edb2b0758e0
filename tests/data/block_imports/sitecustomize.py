"""Put this folder first on PYTHONPATH and name packages in EDGECTL_BLOCK_IMPORTS (comma-separated) to run
edgectl as if they were not installed (tests/bad_inputs.py: an extra that is missing)."""
import os
import sys

_BLOCKED = tuple(n for n in os.environ.get("EDGECTL_BLOCK_IMPORTS", "").split(",") if n)


class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


if _BLOCKED:
    sys.meta_path.insert(0, _Blocked())

"""The one `pytree` decorator: a frozen dataclass whose every field is a JAX leaf (no static fields).

Sims and tasks use it on their state and parameter dataclasses so jit, vmap and lax.scan carry them;
there were five copies of these two lines (issue 14, item 6).
"""
from __future__ import annotations

from dataclasses import fields

import jax


def pytree(cls):
    """Register dataclass `cls` with JAX, all fields as data (traced) fields; returns cls."""
    return jax.tree_util.register_dataclass(cls, data_fields=[f.name for f in fields(cls)], meta_fields=[])

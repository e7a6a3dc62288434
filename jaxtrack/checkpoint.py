"""Saving and loading Flax variable trees with orbax (used by the weights folders, :mod:`jaxtrack.weights`).

``save_variables`` writes a tree atomically (orbax writes to a temporary directory and renames it).
``load_variables`` restores against an abstract target tree (shapes/dtypes from ``jax.eval_shape``) and fails
loudly, listing every missing, unexpected and mis-shaped key, before reading any array.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np


def _checkpointer():
    import orbax.checkpoint as ocp

    return ocp.StandardCheckpointer()


def _flat_shapes(tree) -> dict[str, tuple]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(str(getattr(k, "key", k)) for k in path): tuple(np.shape(leaf)) for path, leaf in leaves}


def tree_mismatch_report(expected, found) -> str:
    """Human-readable list of missing / unexpected / mis-shaped keys ('' when the trees agree)."""
    e, f = _flat_shapes(expected), _flat_shapes(found)
    lines = []
    missing = sorted(set(e) - set(f))
    extra = sorted(set(f) - set(e))
    shaped = sorted(k for k in set(e) & set(f) if e[k] != f[k])
    if missing:
        lines.append(f"missing keys ({len(missing)}): " + ", ".join(missing))
    if extra:
        lines.append(f"unexpected keys ({len(extra)}): " + ", ".join(extra))
    if shaped:
        lines.append("mis-shaped keys: " + ", ".join(f"{k} expected {e[k]} found {f[k]}" for k in shaped))
    return "\n".join(lines)


def save_variables(path: str | os.PathLike, variables) -> Path:
    """Write a variables tree to the directory ``path`` (must not exist yet)."""
    path = Path(path).absolute()
    if path.exists():
        raise FileExistsError(f"checkpoint directory {path} already exists")
    ckptr = _checkpointer()
    ckptr.save(path, variables)
    ckptr.wait_until_finished()
    return path


def load_variables(path: str | os.PathLike, target):
    """Restore the tree at ``path`` shaped like ``target`` (concrete or abstract arrays)."""
    path = Path(path).absolute()
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint {path} not found (expected an orbax checkpoint directory)")
    ckptr = _checkpointer()
    try:
        stored = ckptr.metadata(path).item_metadata.tree
    except Exception as err:  # orbax raises several types for a non-checkpoint directory
        raise ValueError(f"{path} is not a readable orbax checkpoint: {err}") from err
    report = tree_mismatch_report(target, stored)
    if report:
        raise ValueError(f"checkpoint {path} does not match the model:\n{report}")
    abstract = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), target)
    return ckptr.restore(path, abstract)

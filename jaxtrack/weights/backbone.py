"""Backbones taken from another tracker's real checkpoint.

A tracker such as ``siamfcpp_nano`` runs NanoTrack v2's backbone with NanoTrack's real weights. Training grafts
those weights in at step 0 (``init_backbone``). The weights folders shipped for such a tracker hold only what this
project trained (neck and head); their card's ``backbone_from`` names the checkpoint that supplies the backbone
at load time, with its SHA-256, so the shared data file is never copied into the package
(:func:`jaxtrack.weights.save_without_backbone`, :func:`jaxtrack.weights.backbone_donor`; the tree operations
are here).

Parameter trees: a SiamFC++ keeps its backbone under ``basemodel``, SiamRPN and NanoTrack under ``backbone``
(:data:`BACKBONE_KEYS`); a graft copies a donor's backbone subtree of every collection (``params``,
``batch_stats``) into the receiver's ``basemodel``.
"""

from __future__ import annotations

import hashlib

import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict

__all__ = ["BACKBONE_KEYS", "RECEIVER_KEY", "file_sha256", "graft_backbone", "without_backbone", "same_backbone"]

#: Where each family keeps its backbone in the parameter tree.
BACKBONE_KEYS = {"siamfcpp": "basemodel", "siamrpn": "backbone", "nanotrack": "backbone"}
#: Where a grafted backbone goes (the SiamFC++ family's name for it).
RECEIVER_KEY = "basemodel"


def file_sha256(path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def graft_backbone(variables: dict, donor: dict, *, what: str = "backbone") -> dict:
    """``variables`` with the ``basemodel`` subtree of every collection replaced by ``donor``'s (``params`` /
    ``batch_stats`` -> backbone subtree). The trees must match leaf for leaf: a missing, extra or reshaped leaf is
    a ``ValueError`` starting with ``what`` that lists the first 20 (merge_params-style loading)."""
    problems = []
    for coll in sorted(set(donor) | {c for c, t in variables.items() if RECEIVER_KEY in t}):
        ours, theirs = variables.get(coll, {}).get(RECEIVER_KEY), donor.get(coll)
        if ours is None or theirs is None:
            problems.append(f"collection {coll!r}: only in {'the donor' if ours is None else 'this network'}")
            continue
        a = {k: np.shape(x) for k, x in flatten_dict(ours, sep="/").items()}
        b = {k: np.shape(x) for k, x in flatten_dict(theirs, sep="/").items()}
        problems += [f"{coll}/{RECEIVER_KEY}/{k}: not in the donor" for k in sorted(a.keys() - b.keys())]
        problems += [f"{coll}/{RECEIVER_KEY}/{k}: not in this network" for k in sorted(b.keys() - a.keys())]
        problems += [f"{coll}/{RECEIVER_KEY}/{k}: shape {a[k]} here, {b[k]} in the donor"
                     for k in sorted(a.keys() & b.keys()) if a[k] != b[k]]
    if problems:
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ValueError(f"{what}: the backbones differ:\n  " + "\n  ".join(problems[:20]) + more)
    return {**variables, **{coll: {**variables[coll], RECEIVER_KEY: jax.tree_util.tree_map(
        lambda mine, given: jnp.asarray(given, mine.dtype), variables[coll][RECEIVER_KEY], donor[coll])}
        for coll in donor}}


def without_backbone(variables: dict) -> dict:
    """``variables`` without the ``basemodel`` subtree of any collection (what a head-only folder stores)."""
    return {coll: {k: v for k, v in tree.items() if k != RECEIVER_KEY} for coll, tree in variables.items()}


def same_backbone(variables: dict, donor: dict) -> bool:
    """Whether the ``basemodel`` subtrees of ``variables`` are exactly ``donor``'s (same tree, equal arrays)."""
    for coll, tree in donor.items():
        ours = variables.get(coll, {}).get(RECEIVER_KEY)
        if ours is None or jax.tree_util.tree_structure(ours) != jax.tree_util.tree_structure(tree):
            return False
        if not all(np.array_equal(np.asarray(a), np.asarray(b))
                   for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(tree))):
            return False
    return True

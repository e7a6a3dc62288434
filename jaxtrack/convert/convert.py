"""PyTorch state dicts → Flax variables, per checkpoint kind: a mapping onto a target tree it is given.

>>> variables, dropped = convert_state_dict("siamfcpp_alexnet", load_torch_file(path), target)

Reading files, finding the target tree of a tracker and writing weights folders is the weights layer's
(:mod:`jaxtrack.weights`: ``convert_checkpoint``, ``jaxtrack convert``); this module knows no tracker.

The key mapping is generic because the Flax models mirror the reference module trees (see
``jaxtrack.models``): a key is split on '.', conv ``weight`` (OIHW) becomes ``kernel`` (HWIO), BatchNorm
``weight``/``bias`` become ``params`` ``scale``/``bias`` and ``running_mean``/``running_var`` become
``batch_stats`` ``mean``/``var``, 2-D (linear) weights are transposed, other tensors (``head.si``,
``rpn_head.cls_weight``) are kept as they are. What differs per checkpoint kind is listed in :data:`CHECKPOINT_KINDS`.

This module imports jax lazily so that ``jaxtrack --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class CheckpointKind:
    """How to convert one kind of published checkpoint (the layout of one reference release; not to be confused
    with a tracker family, :mod:`jaxtrack.tracking.registry`, which shares a loop, network builder and loss).

    tracker:         the ``jaxtrack.tracking.create`` name whose network the weights fill.
    description:     where such checkpoints come from (shown in the card and ``--help``).
    ignore_prefixes: key prefixes present in the published files but unused by the model (dropped).
    key_map:         optional ``source key -> key`` renaming applied before the generic mapping (return None
                     to drop a key), for files whose names differ from the reference module tree.
    """

    tracker: str
    description: str = ""
    ignore_prefixes: tuple[str, ...] = ()
    key_map: Callable[[str], str | None] | None = None


CHECKPOINT_KINDS: dict[str, CheckpointKind] = {}


def register_checkpoint_kind(name: str, spec: CheckpointKind, *, replace: bool = False) -> CheckpointKind:
    """Add a checkpoint kind to :data:`CHECKPOINT_KINDS` (one line per kind, below)."""
    if name in CHECKPOINT_KINDS and not replace:
        raise ValueError(f"checkpoint kind {name!r} is already registered (pass replace=True to change it)")
    CHECKPOINT_KINDS[name] = spec
    return spec


# ---------------------------------------------------------------------------------------------------- kinds
register_checkpoint_kind("siamrpnpp_r50", CheckpointKind(
    "siamrpnpp_r50", "pysot siamrpn_r50_l234_dwxcorr (VOT model: weighted fusion, rpn_head.cls_weight/loc_weight)"))
register_checkpoint_kind("siamrpnpp_r50_otb", CheckpointKind(
    "siamrpnpp_r50_otb", "pysot siamrpn_r50_l234_dwxcorr_otb (OTB model: mean fusion, no cls_weight/loc_weight)"))
register_checkpoint_kind("siamrpn_alex", CheckpointKind(
    "siamrpn_alex", "pysot siamrpn_alex_dwxcorr (AlexNetLegacy backbone + DepthwiseRPN head)"))
register_checkpoint_kind("siamfcpp_alexnet", CheckpointKind(
    "siamfcpp_alexnet", "video_analyst SiamFC++ AlexNet (siamfcpp-alexnet-*.pkl; fits the _vot and _otb trackers too)"))
register_checkpoint_kind("nanotrack_v2", CheckpointKind(
    "nanotrack_v2", "HonglinChu/SiamTrackers NanoTrack v2 (models/pretrained/nanotrackv2.pth; neck.* unused)",
    ignore_prefixes=("neck.",)))
register_checkpoint_kind("nanotrack_v3", CheckpointKind(
    "nanotrack_v3", "HonglinChu/SiamTrackers NanoTrack v3 (models/pretrained/nanotrackv3.pth; neck.* unused)",
    ignore_prefixes=("neck.",)))
# (more kinds: one register_checkpoint_kind(...) line each)


def get_checkpoint_kind(name: str) -> CheckpointKind:
    if name not in CHECKPOINT_KINDS:
        raise ValueError(f"unknown checkpoint kind {name!r}; known: {', '.join(sorted(CHECKPOINT_KINDS))}")
    return CHECKPOINT_KINDS[name]


# ---------------------------------------------------------------------------------------------------- renaming

_WRAPPERS = ("state_dict", "model_state_dict")
_BN_STATS = {"running_mean": "mean", "running_var": "var"}


def _is_array(x) -> bool:
    return isinstance(x, np.ndarray) or (hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(x, "__array__"))


def unwrap_state_dict(obj, source: str = "checkpoint") -> Mapping:
    """The state dict inside ``obj``: ``obj`` itself, ``obj['state_dict']`` or ``obj['model_state_dict']``."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"{source}: expected a state dict (a mapping of names to tensors), got {type(obj).__name__}")
    for key in _WRAPPERS:
        inner = obj.get(key)
        if isinstance(inner, Mapping):
            return inner
    if obj and all(_is_array(v) for v in obj.values()):
        return obj
    others = sorted(str(k) for k, v in obj.items() if not _is_array(v))
    raise ValueError(
        f"{source}: no state dict found: expected tensors, or a 'state_dict' / 'model_state_dict' entry; "
        f"non-tensor entries: {', '.join(others[:10])}"
    )


def torch_key_to_path(key: str, ndim: int) -> tuple[tuple[str, ...], str, tuple[int, ...] | None]:
    """(Flax path, collection, transpose axes or None) for one PyTorch key with an ``ndim``-dimensional value."""
    *path, leaf = key.split(".")
    if leaf in _BN_STATS:
        return (*path, _BN_STATS[leaf]), "batch_stats", None
    if leaf == "weight" and ndim >= 3:  # conv (O, I, *spatial) -> (*spatial, I, O)
        return (*path, "kernel"), "params", (*range(2, ndim), 1, 0)
    if leaf == "weight" and ndim == 2:  # linear (out, in) -> (in, out)
        return (*path, "kernel"), "params", (1, 0)
    if leaf == "weight" and ndim == 1:  # BatchNorm / LayerNorm
        return (*path, "scale"), "params", None
    return (*path, leaf), "params", None


def path_to_torch_key(path: tuple[str, ...]) -> str:
    """Inverse of :func:`torch_key_to_path` for messages: ('params', 'conv', 'kernel') -> 'conv.weight'."""
    collection, *rest = path
    *mid, leaf = rest
    if collection == "batch_stats":
        leaf = {"mean": "running_mean", "var": "running_var"}.get(leaf, leaf)
    elif leaf in ("kernel", "scale"):
        leaf = "weight"
    return ".".join([*mid, leaf])


@dataclasses.dataclass
class _Renamed:
    tree: dict  # {'params': ..., 'batch_stats': ...} of float arrays
    sources: dict[str, str]  # 'params/a/b' -> original key
    dropped: dict[str, list[str]]  # reason -> keys


def _rename(state_dict: Mapping, ignore_prefixes, key_map, source: str) -> _Renamed:
    tree: dict = {}
    sources: dict[str, str] = {}
    dropped: dict[str, list[str]] = {"num_batches_tracked": [], "ignored": [], "key_map": []}
    bad = []
    for raw_key, value in state_dict.items():
        key = str(raw_key)
        if key.startswith("module."):  # DataParallel / DDP wrapper (pysot's remove_prefix)
            key = key[len("module.") :]
        if key.rsplit(".", 1)[-1] == "num_batches_tracked":
            dropped["num_batches_tracked"].append(key)
            continue
        if any(key.startswith(p) for p in ignore_prefixes):
            dropped["ignored"].append(key)
            continue
        if key_map is not None:
            mapped = key_map(key)
            if mapped is None:
                dropped["key_map"].append(key)
                continue
            key = mapped
        if not _is_array(value):
            bad.append(f"{raw_key} ({type(value).__name__})")
            continue
        a = np.asarray(value)
        path, collection, axes = torch_key_to_path(key, a.ndim)
        if a.dtype.kind not in "fiub":
            bad.append(f"{raw_key} (dtype {a.dtype})")
            continue
        a = a.astype(np.float32)  # fp16 / bf16 / fp64 / int are upcast; the models run in float32
        if axes is not None:
            a = np.ascontiguousarray(a.transpose(axes))
        node = tree.setdefault(collection, {})
        for i, p in enumerate(path[:-1]):
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                parent = ".".join(path[: i + 1])
                raise ValueError(f"{source}: key {raw_key!r} nests under {parent!r}, which is a tensor")
            node = nxt
        if path[-1] in node:
            flat = "/".join((collection, *path))
            raise ValueError(f"{source}: keys {sources.get(flat, '?')!r} and {raw_key!r} both map to {flat}")
        node[path[-1]] = a
        sources["/".join((collection, *path))] = str(raw_key)
    if bad:
        raise ValueError(f"{source}: entries that are not float/int tensors: {', '.join(bad)}")
    return _Renamed(tree, sources, dropped)


def _flat(tree, prefix=()) -> dict[tuple[str, ...], Any]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, (*prefix, str(k))))
        else:
            out[(*prefix, str(k))] = v
    return out


def _match_target(renamed: _Renamed, target, source: str, what: str) -> dict:
    from jaxtrack.checkpoint import tree_mismatch_report

    report = tree_mismatch_report(target, renamed.tree)
    if report:
        want, got = _flat(target), _flat(renamed.tree)
        missing = sorted(path_to_torch_key(p) for p in set(want) - set(got))
        extra = sorted(renamed.sources["/".join(p)] for p in set(got) - set(want))
        lines = [f"{source}: the checkpoint does not fit {what}:", report]
        if missing:
            lines.append(f"missing in the checkpoint (PyTorch names, {len(missing)}): " + ", ".join(missing))
        if extra:
            lines.append(f"not used by the model (PyTorch names, {len(extra)}): " + ", ".join(extra))
        raise ValueError("\n".join(lines))

    def fill(t, prefix=()):
        if isinstance(t, Mapping):
            return {k: fill(v, (*prefix, str(k))) for k, v in t.items()}
        node = renamed.tree
        for p in prefix:
            node = node[p]
        return np.asarray(node, dtype=getattr(t, "dtype", np.float32))

    return fill(target)


def state_dict_to_variables(
    state_dict,
    target,
    ignore_prefixes: tuple[str, ...] = (),
    *,
    key_map: Callable[[str], str | None] | None = None,
    source: str = "checkpoint",
) -> dict:
    """Flax variables (nested dicts of NumPy float32 arrays) shaped exactly like ``target``.

    ``state_dict``: a PyTorch-style mapping of names to NumPy arrays (e.g. from ``load_torch_file``),
    bare or wrapped as ``{'state_dict': ...}`` / ``{'model_state_dict': ...}``; a ``module.`` prefix on every key is
    stripped, ``num_batches_tracked`` and keys starting with ``ignore_prefixes`` are dropped.
    ``target``: the variables tree to fill (e.g. ``jax.eval_shape(tracker.init_variables, key)``).
    Raises ``ValueError`` listing every missing, unexpected and mis-shaped key (Flax paths and PyTorch names),
    naming ``source``.
    """
    renamed = _rename(unwrap_state_dict(state_dict, source), tuple(ignore_prefixes), key_map, source)
    return _match_target(renamed, target, source, "the model")


def convert_state_dict(kind: str, obj, target, source: str = "checkpoint") -> tuple[dict, dict[str, int]]:
    """``(variables, dropped)``: the PyTorch checkpoint object ``obj`` (as :func:`load_torch_file` returns it) of
    checkpoint kind ``kind`` mapped onto ``target`` (the variables tree it must fill, e.g. the abstract variables
    of ``CHECKPOINT_KINDS[kind].tracker``), and the number of keys dropped per reason. Raises ``ValueError``
    naming ``source`` and listing every missing, unexpected and mis-shaped key."""
    spec = get_checkpoint_kind(kind)
    renamed = _rename(unwrap_state_dict(obj, source), spec.ignore_prefixes, spec.key_map, source)
    variables = _match_target(renamed, target, source, f"checkpoint kind {kind!r} (tracker {spec.tracker!r})")
    return variables, {k: len(v) for k, v in renamed.dropped.items() if v}


@functools.lru_cache(maxsize=16)
def abstract_variables(tracker):
    """``jax.eval_shape(tracker.init_variables, key)``: the target tree of a conversion. Memoised on the tracker's
    value (trackers are frozen dataclasses compared by value): tracing ``init`` of the larger networks takes
    seconds, and every load of a weights folder needs the tree."""
    import jax

    return jax.eval_shape(tracker.init_variables, jax.random.key(0))

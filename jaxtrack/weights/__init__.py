"""Weights: where they come from, the one on-disk format, and the one resolver every entry point uses.

>>> from jaxtrack import tracking, weights
>>> tracker = tracking.create("nanotrack_v2")
>>> loaded = weights.load_weights(tracker)               # default: shipped, else the shared data's real weights
>>> loaded = weights.load_weights(tracker, "shared")     # or "bundled", "random", "shared:REL", a folder, a .pth
>>> loaded.variables, loaded.source, loaded.is_random, loaded.card

Specifications (``--weights`` of the command line, ``init_weights`` of a training recipe, ...):

* ``None`` / ``"default"``: the weights shipped with the package for this tracker (:data:`BUNDLED`), else the
  real checkpoint in the shared data folder (:data:`SHARED`), else random (``is_random``; refused with
  ``allow_random=False``);
* ``"bundled"`` / ``"shared"``: only that source (``ValueError`` naming the tracker when it has none);
* ``"random"``: initialised from ``seed``;
* ``"shared:REL"``: a path inside the shared data folder;
* a path: a weights folder (:mod:`jaxtrack.weights.store`: ``jaxtrack convert``, training, defense training),
  a bare orbax variables folder, or a PyTorch checkpoint file (``.pth``/``.pt``/``.pkl``) converted in memory.

Writers: :func:`save_weights` (+ :func:`new_card`), :func:`save_without_backbone` (a head-only folder whose
backbone is another tracker's real checkpoint, grafted back in when loaded) and :func:`convert_checkpoint`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from jaxtrack.weights.backbone import (
    BACKBONE_KEYS,
    RECEIVER_KEY,
    file_sha256,
    graft_backbone,
    same_backbone,
    without_backbone,
)
from jaxtrack.weights.pytorch import PYTORCH_SUFFIXES, check_fits, compatible_kinds, convert_checkpoint, convert_file
from jaxtrack.weights.store import (
    CARD_NAME,
    FORMAT,
    VARIABLES_DIR,
    WeightsFormatError,
    is_weights_folder,
    new_card,
    read_card,
    save_weights,
    sidecar_card,
)

# Weights trained by this project and shipped inside the package, by tracker name (relative to jaxtrack/assets).
BUNDLED = {
    "siamfcpp_tiny": "weights/siamfcpp_tiny",
    # head-only: the backbone is the shared nanotrackv2.pth, grafted back in when loaded (never copied here)
    "siamfcpp_nano": "weights/siamfcpp_nano",
}

# Real pretrained weights in the shared data folder (never in this repository), by tracker name.
SHARED = {
    "nanotrack_v2": "weights/nanotrack/nanotrackv2.pth",
    "nanotrack_v3": "weights/nanotrack/nanotrackv3.pth",
    "nanotrack_v2_opencv": "weights/nanotrack/nanotrackv2.pth",
    "nanotrack_v2_opencv51": "weights/nanotrack/nanotrackv2.pth",
}


@dataclasses.dataclass(frozen=True)
class LoadedWeights:
    """Variables and what they are: ``source`` says where they came from (``bundled:PATH``, ``shared:PATH``,
    a path, ``random (seed N)``); ``card`` is the weights card when there is one."""

    variables: dict
    source: str
    is_random: bool = False
    card: dict | None = None


def bundled_path(tracker_name: str) -> Path | None:
    """The weights shipped in ``jaxtrack/assets`` for ``tracker_name``, if any."""
    rel = BUNDLED.get(tracker_name)
    path = Path(__file__).resolve().parent.parent / "assets" / rel if rel else None
    return path if path is not None and path.is_dir() else None


def _loadable(path: Path | None) -> Path | None:
    """``path``, unless it is a head-only folder whose backbone checkpoint is not in the shared data folder."""
    if path is None or not is_weights_folder(path):
        return path
    spec = read_card(path).get("backbone_from")
    return path if not spec or shared_path(spec["tracker"]) is not None else None


def shared_path(tracker_name: str) -> Path | None:
    """The real checkpoint for ``tracker_name`` in the shared data folder, if it is there."""
    from jaxtrack.paths import shared_data_dir

    rel = SHARED.get(tracker_name)
    path = shared_data_dir() / rel if rel else None
    return path if path is not None and path.is_file() else None


def default_path(tracker_name: str) -> Path | None:
    """What ``"default"`` loads for a tracker: shipped (a head-only folder only when its backbone checkpoint is
    there), else shared, else None (random)."""
    return _loadable(bundled_path(tracker_name)) or shared_path(tracker_name)


#: The SiamFC++ trackers with weights trained here, best first (held-out real OTB success: ``siamfcpp_nano`` 0.436,
#: ``siamfcpp_tiny`` 0.164; README, "Training on real video").
SIAMFCPP_BY_PREFERENCE = ("siamfcpp_nano", "siamfcpp_tiny")


def default_siamfcpp() -> str:
    """The tracker name the command line runs when none is given: the best SiamFC++ whose weights load here.

    ``siamfcpp_nano`` (trained on real video) needs NanoTrack v2's backbone from the shared data folder; without
    it, ``siamfcpp_tiny`` (trained on synthetic video, fully shipped with the package)."""
    for name in SIAMFCPP_BY_PREFERENCE:
        if default_path(name) is not None:
            return name
    return SIAMFCPP_BY_PREFERENCE[-1]


def load_weights(tracker, spec: str | None = None, *, seed: int = 0, allow_random: bool = True) -> LoadedWeights:
    """Resolve ``spec`` (see the module docstring) for ``tracker`` and load it against the tracker's network."""
    import jax

    spec = "default" if spec in (None, "") else str(spec)
    if spec == "random":
        return LoadedWeights(tracker.init_variables(jax.random.key(seed)), f"random (seed {seed})", True)
    if spec in ("default", "bundled", "shared"):
        finders = {"default": default_path, "bundled": bundled_path, "shared": shared_path}
        path = finders[spec](tracker.name) if _is_named_network(tracker) else None
        if path is None:
            if spec == "default" and allow_random:
                return load_weights(tracker, "random", seed=seed)
            have = sorted(set(BUNDLED) | set(SHARED)) if spec == "default" else sorted(
                BUNDLED if spec == "bundled" else SHARED)
            variant = "" if _is_named_network(tracker) else " with this network (a variant of the named tracker)"
            raise ValueError(f"no {'' if spec == 'default' else spec + ' '}weights for tracker {tracker.name!r}"
                             f"{variant} (have: {', '.join(have)}); give a weights folder or a .pth")
        loaded = load_weights(tracker, str(path))
        label = "bundled" if bundled_path(tracker.name) == path else "shared"
        return dataclasses.replace(loaded, source=f"{label}:{path}")
    from jaxtrack.paths import resolve_data_path

    path = resolve_data_path(spec)
    return load_path(tracker, path)


def _is_named_network(tracker) -> bool:
    """Whether ``tracker`` has the network of the named tracker it is called after (a variant made with
    ``tracking.create(name, **overrides)`` may not: the named tracker's weights would not fit it)."""
    from jaxtrack.tracking import CONFIGS, create

    return tracker.name in CONFIGS and create(tracker.name).model == tracker.model


def load_path(tracker, path) -> LoadedWeights:
    """Load the weights at ``path``: a weights folder, a bare orbax folder or a PyTorch checkpoint file."""
    from jaxtrack.convert.convert import abstract_variables
    from jaxtrack.weights.store import load_variables

    path = Path(path)
    if path.is_file():
        if path.suffix not in PYTORCH_SUFFIXES:
            raise ValueError(f"{path} is a file but not a PyTorch checkpoint ({', '.join(PYTORCH_SUFFIXES)}); "
                             "weights are a folder written by `jaxtrack convert` or a training run, an orbax "
                             "variables folder, or a PyTorch checkpoint")
        variables, provenance = convert_file(tracker, path)
        return LoadedWeights(variables, str(path), card={"what": "tracker", "tracker": tracker.name, **provenance})
    if not path.is_dir():
        raise FileNotFoundError(f"weights {path} not found")
    card = read_card(path) if is_weights_folder(path) else sidecar_card(path)
    if card is not None and is_weights_folder(path):
        if card["what"] != "tracker":
            raise ValueError(f"{path} holds {card['what']} weights (for tracker {card['tracker']!r}), not a tracker's")
        if card.get("kind"):  # a converted checkpoint: name the kinds that would fit (else the shapes decide)
            check_fits(card, tracker, path)
    abstract = abstract_variables(tracker)
    if card is not None and card.get("backbone_from"):  # head-only: the backbone comes from a real checkpoint
        partial = load_variables(path, without_backbone(abstract))
        return LoadedWeights(_graft_from_card(path, partial, abstract, card["backbone_from"]), str(path), card=card)
    return LoadedWeights(load_variables(path, abstract), str(path), card=card)


def backbone_donor(name: str) -> tuple[dict, Path]:
    """The backbone variables (``params`` / ``batch_stats`` subtrees) of tracker ``name`` from its real checkpoint
    in the shared data folder, and that file. ``ValueError`` naming the tracker and the missing file."""
    from jaxtrack import tracking
    from jaxtrack.paths import shared_data_dir

    if name not in tracking.CONFIGS:
        raise ValueError(f"backbone donor {name!r} is not a tracker (one of {', '.join(tracking.CONFIGS)})")
    path = shared_path(name)
    if path is None:
        rel = SHARED.get(name)
        where = f"{shared_data_dir() / rel} is missing" if rel else "no real checkpoint is known for it"
        raise ValueError(f"backbone donor {name!r}: {where} (set JAXTRACK_DATA to the shared data folder)")
    donor = tracking.create(name)
    variables = load_path(donor, path).variables
    key = BACKBONE_KEYS[donor.config.family]
    return {coll: tree[key] for coll, tree in variables.items() if key in tree}, path


def _graft_from_card(folder, partial: dict, abstract: dict, spec: dict) -> dict:
    """The full variables of a head-only weights ``folder``: its stored ``partial`` variables plus the backbone
    that its card's ``backbone_from`` (``spec``) names, checked leaf by leaf against the network's ``abstract``
    variables, after checking the donor file's SHA-256 (``ValueError`` naming the folder and the file)."""
    try:
        donor, path = backbone_donor(spec["tracker"])
    except ValueError as err:
        raise ValueError(f"{folder}: its backbone comes from {spec['tracker']}'s real checkpoint: {err}") from None
    digest = file_sha256(path)
    if digest != spec["sha256"]:
        raise ValueError(f"{folder}: its backbone comes from {spec['file']} with SHA-256 {spec['sha256']}, but "
                         f"{path} has {digest}")
    # partial was read against without_backbone(abstract): same collections, the backbone's leaves to fill in
    shell = {coll: {**tree, RECEIVER_KEY: abstract[coll][RECEIVER_KEY]} if RECEIVER_KEY in abstract[coll] else tree
             for coll, tree in partial.items()}
    return graft_backbone(shell, donor, what=f"{folder} (backbone from {path})")


def save_without_backbone(folder, variables: dict, card: dict, donor: str, *, overwrite: bool = False) -> Path:
    """Write ``variables`` as a head-only weights folder (:func:`save_weights` without the ``basemodel``
    subtree; ``card`` from :func:`new_card` on the full variables) whose card's ``backbone_from`` names tracker
    ``donor``'s real checkpoint and its SHA-256. Refused (``ValueError``) when the backbone in ``variables`` is
    not exactly that checkpoint's: loading would give another network."""
    backbone, path = backbone_donor(donor)
    if not same_backbone(variables, backbone):
        raise ValueError(f"{folder}: the {RECEIVER_KEY} variables are not those of {path}; a head-only folder "
                         f"would load another backbone")
    spec = {"tracker": donor, "file": SHARED[donor], "sha256": file_sha256(path)}
    return save_weights(folder, without_backbone(variables), {**card, "backbone_from": spec}, overwrite=overwrite)


__all__ = [
    "BUNDLED",
    "CARD_NAME",
    "FORMAT",
    "LoadedWeights",
    "PYTORCH_SUFFIXES",
    "SHARED",
    "SIAMFCPP_BY_PREFERENCE",
    "VARIABLES_DIR",
    "WeightsFormatError",
    "backbone_donor",
    "bundled_path",
    "compatible_kinds",
    "convert_checkpoint",
    "default_path",
    "default_siamfcpp",
    "is_weights_folder",
    "load_path",
    "load_weights",
    "new_card",
    "read_card",
    "save_weights",
    "save_without_backbone",
    "shared_path",
]

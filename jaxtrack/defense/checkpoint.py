"""Checkpoints of trained DuaLossDef U-Nets: a weights folder (:mod:`jaxtrack.weights.store`, the one on-disk
format of the package) whose card says ``"what": "defense"``.

Layout (written atomically by :func:`jaxtrack.weights.save_weights`)::

    <path>/variables/   orbax checkpoint of the U-Net variables ({"params": ...}), jaxtrack.checkpoint
    <path>/card.json    {"format": "jaxtrack-weights", "what": "defense", "unet": {depth, width, ...}, "family",
                         "tracker", "where", "crop_sizes": {"template": 127, "search": 255}, "num_parameters",
                         "info", ...}

Folders written before (card format ``"jaxtrack-defense"``, same layout) still load.

The card says what the defense was trained with: the U-Net hyper-parameters (the parameter tree is checked
against them on load), the tracker family and tracker, the branch(es) it defends and the crop sizes of those
branches. :func:`jaxtrack.defense.defended_from_checkpoint` refuses to deploy a defense on a tracker of another family or with
other crop sizes unless ``allow_transfer=True`` (transfer experiments deploy a defense trained on one tracker on
another; the U-Net itself takes any crop size).

>>> meta = defense_meta(unet, tracker, where="both", info={"loss": "dua", "eps": 8})
>>> save_defense("runs/def_nano", unet_variables, meta)
>>> tracker_d, variables_d = jaxtrack.defense.defended_from_checkpoint(tracker, variables, "runs/def_nano")
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np

from jaxtrack import checkpoint
from jaxtrack.weights import store as weights_store
from jaxtrack.weights.store import CARD_NAME, VARIABLES_DIR
from jaxtrack.models.unet import DefenseUNet, unet_hparams
from jaxtrack.tracking.branches import BRANCHES, WHERE, branches, check_where  # noqa: F401  (WHERE: re-exported)

__all__ = [
    "CARD_FORMAT",
    "CARD_NAME",
    "BUNDLED_DEFENSES",
    "VARIABLES_DIR",
    "LoadedDefense",
    "branches",
    "bundled_defense",
    "bundled_spec",
    "parse_bundled_spec",
    "shipped_defenses",
    "resolve_defense",
    "load_for_tracker",
    "defense_meta",
    "load_defense",
    "read_defense_card",
    "save_defense",
    "transfer_mismatches",
]

CARD_FORMAT = weights_store.FORMAT
CARD_FORMAT_VERSION = weights_store.FORMAT_VERSION

#: Defenses trained by this project and shipped inside the package (``jaxtrack/assets/defenses``), by the name of
#: the tracker they were trained with, then ``-<variant>`` for a further U-Net of that tracker (``minmax``: trained
#: by min-max adversarial training against the defended tracker); each card says how (config, data, steps).
BUNDLED_DEFENSES = {
    "nanotrack_v2": "defenses/nanotrack_v2",
    "siamfcpp_tiny": "defenses/siamfcpp_tiny",
    "nanotrack_v2-minmax": "defenses/nanotrack_v2_minmax",
    "siamfcpp_tiny-minmax": "defenses/siamfcpp_tiny_minmax",
}
#: The spec of a shipped defense: ``bundled[-<variant>][:<tracker>]``.
_BUNDLED_SPEC = re.compile(r"bundled(?:-(?P<variant>[A-Za-z0-9_]+))?(?::(?P<tracker>.+))?")


def bundled_defense(tracker_name: str, variant: str = "") -> Path | None:
    """The defense shipped for ``tracker_name`` (the ``variant`` one, e.g. ``minmax``), if any."""
    rel = BUNDLED_DEFENSES.get(f"{tracker_name}-{variant}" if variant else tracker_name)
    path = Path(__file__).resolve().parent.parent / "assets" / rel if rel else None
    return path if path is not None and (path / CARD_NAME).is_file() else None


def shipped_defenses() -> list[tuple[str, str]]:
    """``(tracker, variant)`` of every defense that ships in this install (``variant`` ``""`` = the default one)."""
    out = []
    for key in BUNDLED_DEFENSES:
        tracker, _, variant = key.partition("-")
        if bundled_defense(tracker, variant) is not None:
            out.append((tracker, variant))
    return out


def bundled_spec(tracker: str, variant: str = "") -> str:
    """The ``--defense`` spec of a shipped defense."""
    return f"bundled{'-' + variant if variant else ''}:{tracker}"


def parse_bundled_spec(spec) -> tuple[str, str] | None:
    """``(variant, tracker)`` of a shipped-defense spec ``bundled[-<variant>][:<tracker>]`` (``""`` for a part not
    given: the default U-Net, the tracker it defends), None for anything else (a folder)."""
    match = _BUNDLED_SPEC.fullmatch(str(spec))
    return None if match is None else (match["variant"] or "", match["tracker"] or "")


def resolve_defense(spec: str | os.PathLike, tracker_name: str) -> Path:
    """The folder a defense spec names: a path, ``bundled`` (the defense shipped for ``tracker_name``),
    ``bundled-<variant>`` (another U-Net shipped for it, e.g. ``bundled-minmax``), or either with ``:<tracker>``
    (the one shipped for another tracker: transfer experiments)."""
    text = str(spec)
    parsed = parse_bundled_spec(text)
    if parsed is not None:
        variant, name = parsed[0], parsed[1] or tracker_name
        path = bundled_defense(name, variant)
        if path is None:
            have = ", ".join(bundled_spec(*k) for k in shipped_defenses()) or "none"
            raise ValueError(f"--defense {text}: no defense ships for tracker {name!r}"
                             f"{' as ' + repr(variant) if variant else ''} (shipped: {have}); "
                             f"train one with jaxtrack train-defense and pass its folder")
        return path
    if text.startswith("bundled"):
        raise ValueError(f"--defense {text}: not a shipped-defense spec (bundled[-<variant>][:<tracker>]) and not "
                         f"a folder")
    return Path(spec)


class LoadedDefense(NamedTuple):
    unet: DefenseUNet
    variables: dict
    card: dict




def _tracker_crop_sizes(tracker) -> dict[str, int]:
    c = tracker.config
    return {"template": int(c.exemplar_size), "search": int(c.instance_size)}


def _family(tracker) -> str | None:
    return getattr(tracker.config, "family", None)


def defense_meta(unet: DefenseUNet, tracker, where: str, info: Mapping[str, Any] | None = None) -> dict:
    """The ``meta`` for :func:`save_defense` of a U-Net trained on ``tracker``'s ``where`` crops (crop sizes
    from the tracker configuration); ``info``: anything JSON-able about the training (loss, ε, steps, data…)."""
    from jaxtrack.tracking.wrapper import TrackerWrapper

    while isinstance(tracker, TrackerWrapper):  # the tracker underneath every wrapper
        tracker = tracker.base
    sizes = _tracker_crop_sizes(tracker)
    return {
        "unet": unet_hparams(unet),
        "family": _family(tracker),
        "tracker": tracker.name,
        "where": where,
        "crop_sizes": {b: sizes[b] for b in branches(where)},
        "info": dict(info or {}),
    }


def _target(unet: DefenseUNet):
    """Abstract variables of ``unet`` (parameter shapes do not depend on the crop size)."""
    side = 2 ** unet.depth
    return jax.eval_shape(lambda: unet.init(jax.random.key(0), jnp.zeros((1, side, side, 3), jnp.float32)))


def _check_meta(meta: Mapping) -> dict:
    missing = [k for k in ("unet", "family", "tracker", "where", "crop_sizes") if k not in meta]
    if missing:
        raise ValueError(f"defense meta lacks {missing} (build it with jaxtrack.defense.defense_meta)")
    out = dict(meta)
    unet = out["unet"]
    out["unet"] = unet_hparams(unet) if isinstance(unet, DefenseUNet) else dict(unet)
    DefenseUNet(**out["unet"])._check()  # unknown / invalid hyper-parameters fail here
    need = branches(out["where"])
    sizes = dict(out["crop_sizes"])
    if not set(need) <= set(sizes) or not set(sizes) <= set(BRANCHES):
        raise ValueError(f"crop_sizes must give the sizes of the {list(need)} crops, got {sizes}")
    for b, s in sizes.items():
        if int(s) != s or s < 1:
            raise ValueError(f"crop_sizes[{b!r}] must be a positive integer, got {s!r}")
    out["crop_sizes"] = {b: int(s) for b, s in sizes.items()}
    out.setdefault("info", {})
    return out


def _is_defense_folder(path: Path) -> bool:
    try:
        return weights_store.read_card(path)["what"] == "defense"
    except (OSError, ValueError):
        return False


def save_defense(path: str | os.PathLike, unet_variables, meta: Mapping, *, overwrite: bool = False) -> Path:
    """Write ``unet_variables`` and the card built from ``meta`` (see :func:`defense_meta`) to the folder ``path``.

    The variables must match the U-Net hyper-parameters in ``meta["unet"]`` (checked before anything is written).
    An existing ``path`` is replaced only with ``overwrite=True`` and only if it is a defense folder or empty.
    """
    path = Path(path).absolute()
    meta = _check_meta(meta)
    variables = flax.core.unfreeze(unet_variables)
    variables = jax.tree_util.tree_map(np.asarray, dict(variables))
    report = checkpoint.tree_mismatch_report(_target(DefenseUNet(**meta["unet"])), variables)
    if report:
        raise ValueError(f"U-Net variables do not match the hyper-parameters {meta['unet']}:\n{report}")
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"{path} already exists (pass overwrite=True to replace it)")
        if not path.is_dir() or not (_is_defense_folder(path) or not any(path.iterdir())):
            raise FileExistsError(f"{path} exists and is not a defense checkpoint folder; refusing to replace it")
    card = weights_store.new_card("defense", meta["tracker"], variables,
                                  model="DuaLossDef U-Net pre-processor (jaxtrack.models.unet.DefenseUNet)",
                                  **{k: v for k, v in meta.items() if k != "tracker"})
    json.dumps(card)  # fails (TypeError) on non-JSON meta before anything is written
    return weights_store.save_weights(path, variables, card, overwrite=True)


def read_defense_card(path: str | os.PathLike) -> dict:
    """The card of a defense checkpoint folder (:func:`jaxtrack.weights.read_card`, which also reads the
    defense cards of earlier releases, then checked to be a defense's); clear errors for anything else."""
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"defense checkpoint folder {folder} not found")
    card_path = folder / CARD_NAME
    if not card_path.is_file():
        raise ValueError(f"{folder} is not a defense checkpoint (no {CARD_NAME}; write one with save_defense)")
    card = weights_store.read_card(folder)
    if card["what"] != "defense":
        raise ValueError(f"{card_path}: not a defense card (what = {card['what']!r}; expected 'defense')")
    try:
        _check_meta(card)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{card_path}: invalid defense card: {err}") from None
    return card


def load_defense(path: str | os.PathLike) -> LoadedDefense:
    """``(unet, variables, card)`` of a defense checkpoint; the stored parameter tree must match the U-Net
    hyper-parameters in the card (missing / unexpected / mis-shaped keys are listed otherwise)."""
    folder = Path(path)
    card = read_defense_card(folder)
    unet = DefenseUNet(**card["unet"])
    try:
        variables = checkpoint.load_variables(folder / VARIABLES_DIR, _target(unet))
    except ValueError as err:
        hp = ", ".join(f"{k}={v}" for k, v in card["unet"].items())
        raise ValueError(
            f"defense checkpoint {folder}: the stored U-Net variables do not match the hyper-parameters in "
            f"{folder / CARD_NAME} ({hp}): {err}"
        ) from None
    return LoadedDefense(unet, variables, card)


def transfer_mismatches(card: Mapping, tracker, where: str) -> list[str]:
    """Why a defense with ``card`` does not fit ``tracker`` on the ``where`` branches ([] if it fits)."""
    out = []
    name = tracker.name
    family = _family(tracker)
    if card.get("family") != family:
        out.append(
            f"it was trained with family {card.get('family')!r} (tracker {card.get('tracker')!r}); "
            f"tracker {name!r} is family {family!r}"
        )
    sizes = _tracker_crop_sizes(tracker)
    trained = card.get("crop_sizes", {})
    for b in branches(where):
        if b not in trained:
            out.append(f"it was trained on {' and '.join(sorted(trained)) or 'no'} crops only, not on {b} crops")
        elif int(trained[b]) != sizes[b]:
            out.append(f"{b} crop size: trained on {trained[b]}x{trained[b]}, tracker {name!r} uses {sizes[b]}x{sizes[b]}")
    return out


def _label(card: Mapping, folder: Path, tracker_name: str, shipped_as: str | None) -> str:
    """``shipped_as``: the variant of a shipped defense (``""`` the default one), None for any other folder."""
    parts = []
    if shipped_as is None:
        name = str(card.get("info", {}).get("config_name") or folder.name)
        parts.append(re.sub(r"[^A-Za-z0-9_.-]+", "_", name))
    elif shipped_as:
        parts.append(shipped_as)
    if card.get("tracker") != tracker_name:
        parts.append(f"from-{card.get('tracker')}")
    return "-".join(parts)


def load_for_tracker(tracker, path: str | os.PathLike, where: str | None = None, allow_transfer: bool = False,
                     label: str | None = None) -> tuple[DefenseUNet, dict, str, str]:
    """``(unet, variables, where, label)`` of the defense checkpoint at ``path`` (a folder, or ``bundled`` /
    ``bundled:<tracker>``: see :func:`resolve_defense`) checked against ``tracker``; ``where`` defaults to the
    card's. What :func:`jaxtrack.defense.defended_from_checkpoint` wraps the tracker with.

    The label tells U-Nets apart (by default: the card's training config name for a folder that is not shipped,
    then ``from-<tracker>`` when the U-Net was trained with another tracker). Refuses (``ValueError`` naming the
    card and every mismatch) a checkpoint trained with another family or other crop sizes unless
    ``allow_transfer=True``."""
    folder = resolve_defense(path, tracker.name)
    card = read_defense_card(folder)  # checked before reading any array
    where = card["where"] if where is None else where
    problems = transfer_mismatches(card, tracker, where)
    if problems and not allow_transfer:
        raise ValueError(
            f"defense checkpoint {folder / CARD_NAME} does not fit tracker {tracker.name!r} (where={where!r}):\n"
            + "\n".join(f"  - {p}" for p in problems)
            + "\npass allow_transfer=True to deploy it anyway (transfer experiments)"
        )
    unet, variables, _ = load_defense(folder)
    if label is None:
        shipped_as = next((v for t, v in shipped_defenses() if folder == bundled_defense(t, v)), None)
        label = _label(card, folder, tracker.name, shipped_as)
    return unet, variables, where, label

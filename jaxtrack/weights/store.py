"""The one on-disk format of a set of network weights: a folder ``variables/`` (an orbax checkpoint of the Flax
variables) + ``card.json`` (what the weights are and where they came from).

Every writer uses :func:`save_weights` (checkpoint conversion, tracker training, defense training); the folder is
built beside its destination and renamed into place, so a reader sees the old folder or the new one, never a mix.

Card fields written by every writer: ``format`` (``jaxtrack-weights``), ``format_version``, ``what``
(``tracker`` | ``defense``), ``tracker`` (the ``jaxtrack.tracking`` name the network belongs to),
``jaxtrack_version``, ``created`` (UTC ISO time), ``num_parameters``; each writer adds its provenance (a
conversion: ``kind`` and ``source``; a training run: ``config``, ``step``, ``command``...).

Read as well, unchanged on disk: folders written by ``jaxtrack convert`` before this format (the same layout,
format ``jaxtrack-converted-checkpoint``, possibly ``family`` for ``kind``), and a bare orbax variables folder
with an optional ``<folder>.json`` card beside it (training exports and the bundled weights of earlier releases).
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np

CARD_NAME = "card.json"
VARIABLES_DIR = "variables"
FORMAT = "jaxtrack-weights"
FORMAT_VERSION = 1
#: card formats of earlier releases (same folder layout) and what their folders hold
LEGACY_FORMATS = {"jaxtrack-converted-checkpoint": "tracker", "jaxtrack-defense": "defense"}


class WeightsFormatError(ValueError):
    """A weights folder or card that cannot be read; the message names the path."""


def count_parameters(variables) -> int:
    """Number of scalars in ``variables["params"]``."""
    import jax

    return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(variables.get("params", {}))))


def new_card(what: str, tracker: str, variables, **fields) -> dict:
    """A card with the common fields filled in, then ``fields``."""
    import jaxtrack

    return {"format": FORMAT, "format_version": FORMAT_VERSION, "what": what, "tracker": tracker,
            "jaxtrack_version": jaxtrack.__version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "num_parameters": count_parameters(variables), **fields}


def is_weights_folder(path) -> bool:
    """Whether ``path`` is a folder with a ``card.json`` (this format or a legacy conversion)."""
    return (Path(path) / CARD_NAME).is_file()


def save_weights(folder, variables, card: dict, *, overwrite: bool = False) -> Path:
    """Write ``variables`` (host arrays) and ``card`` to ``folder`` atomically; returns the absolute folder.

    An existing ``folder`` is replaced only with ``overwrite`` and only when it is a weights folder or empty, so
    nothing else is ever deleted.
    """
    from jaxtrack import checkpoint
    from jaxtrack.fileio import atomic_directory

    folder = Path(folder).absolute()
    if card.get("format") != FORMAT:
        raise ValueError(f"card for {folder} must come from new_card (format {FORMAT!r})")
    if folder.exists():
        if not overwrite:
            raise FileExistsError(f"{folder} already exists (pass --overwrite / overwrite=True to replace it)")
        if not folder.is_dir() or not (is_weights_folder(folder) or not any(folder.iterdir())):
            raise FileExistsError(f"{folder} exists and is not a weights folder; refusing to replace it")
    import jax

    if jax.process_count() == 1:
        with atomic_directory(folder) as tmp:
            checkpoint.save_variables(tmp / VARIABLES_DIR, variables)
            (tmp / CARD_NAME).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        return folder
    _save_multiprocess(folder, variables, card)
    return folder


def _save_multiprocess(folder: Path, variables, card: dict) -> None:
    """:func:`save_weights` when several processes hold the arrays: every process writes its part of the orbax
    checkpoint into one temporary sibling folder; process 0 then adds the card and swaps the folder into place."""
    import shutil

    import jax
    from jax.experimental import multihost_utils

    from jaxtrack import checkpoint

    tmp = folder.parent / f".{folder.name}.tmp"
    if jax.process_index() == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    multihost_utils.sync_global_devices(f"jaxtrack-weights-prepare:{folder}")
    checkpoint.save_variables(tmp / VARIABLES_DIR, variables)
    multihost_utils.sync_global_devices(f"jaxtrack-weights-written:{folder}")
    if jax.process_index() == 0:
        (tmp / CARD_NAME).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        old = folder.parent / f".{folder.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    multihost_utils.sync_global_devices(f"jaxtrack-weights-done:{folder}")


def read_card(folder) -> dict:
    """The card of a weights folder (cards of earlier releases normalised: ``what`` from the format, a conversion
    card's ``family`` -> ``kind``); :class:`WeightsFormatError` naming the file when it is missing, not a card or
    of a newer format version."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"weights folder {folder} not found")
    path = folder / CARD_NAME
    if not path.is_file():
        raise WeightsFormatError(f"{folder} is not a weights folder (no {CARD_NAME}; see `jaxtrack convert`)")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise WeightsFormatError(f"{path}: unreadable card ({err})") from None
    if not isinstance(card, dict) or card.get("format") not in (FORMAT, *LEGACY_FORMATS):
        raise WeightsFormatError(f"{path}: not a jaxtrack weights card (format {FORMAT!r})")
    if card.get("format_version", 0) > FORMAT_VERSION:
        raise WeightsFormatError(f"{path}: card format version {card['format_version']} is newer than this "
                                 f"jaxtrack's ({FORMAT_VERSION})")
    if card["format"] in LEGACY_FORMATS:
        card.setdefault("what", LEGACY_FORMATS[card["format"]])
        if card["what"] == "tracker" and "kind" not in card and "family" in card:
            card["kind"] = card["family"]
    if card.get("what") not in ("tracker", "defense") or not card.get("tracker"):
        raise WeightsFormatError(f"{path}: card needs 'what' (tracker | defense) and 'tracker'")
    return card


def sidecar_card(folder) -> dict | None:
    """The ``<folder>.json`` card beside a bare orbax variables folder (legacy training exports), if any."""
    path = Path(str(Path(folder)).rstrip("/") + ".json")
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise WeightsFormatError(f"{path}: unreadable card ({err})") from None


def variables_dir(folder) -> Path:
    """Where the orbax variables of ``folder`` are: ``folder/variables`` for a weights folder, else ``folder``
    itself (a bare orbax directory)."""
    folder = Path(folder)
    return folder / VARIABLES_DIR if is_weights_folder(folder) else folder


def load_variables(folder, target) -> dict:
    """The variables of a weights folder (or a bare orbax directory) restored against ``target`` (abstract or
    concrete); every missing, unexpected or mis-shaped key is reported before any array is read."""
    from jaxtrack import checkpoint

    return checkpoint.load_variables(variables_dir(folder), target)


"""Per-family training losses with their label assignment, as pure jittable functions.

>>> from jaxtrack import losses
>>> targets = losses.make_targets(config, boxes, negative, key=None)
>>> total, metrics = losses.training_loss(config, raw, targets)

* ``config``: a tracker configuration (:mod:`jaxtrack.tracking.configs`); its family's registry entry
  (:mod:`jaxtrack.tracking.registry`) names the loss module: :mod:`~jaxtrack.losses.siamfcpp` (video_analyst
  densebox targets, focal + centre-ness BCE + IoU loss), :mod:`~jaxtrack.losses.siamrpn` (pysot ``AnchorTarget``, balanced
  cross entropy + weighted L1) or :mod:`~jaxtrack.losses.nanotrack` (NanoTrack ``PointTarget``, balanced cross
  entropy + linear IoU loss).
* ``boxes``: ``[B, 4]`` float target boxes ``(x1, y1, x2, y2)`` in search-crop pixels (crop of
  ``config.instance_size``, 0-based, absolute crop coordinates).
* ``negative``: ``[B]`` bool -- negative pairs (template and search show different objects) get no positive
  labels, following each reference's negative-pair rule.
* ``key``: PRNG key for pysot / NanoTrack's random choice of at most 16 positives and 48 negatives (16
  negatives on a negative pair); ``None`` keeps every candidate label (deterministic). SiamFC++ does not sample.
* ``raw``: the head outputs with batch dim B exactly as ``tracker.head`` returns them.
* Returns ``(total, metrics)``: the weighted scalar loss and a dict of scalars: the **unweighted** terms
  ``cls``, ``reg`` (and ``ctr`` for SiamFC++), ``iou`` where the regression loss is IoU-based, ``num_pos``
  and ``total``. Batch losses are normalised by whole-batch counts, as the reference trainers do.

Every function is differentiable with respect to ``raw`` and can be vmapped / jitted (``config`` is static).
Default weights (:data:`LOSS_WEIGHTS`): SiamFC++ cls 1 / ctr 1 / reg(IoU) 3, focal alpha 0.25, gamma 2
(video_analyst ``siamfcpp_alexnet-trn.yaml``); SiamRPN cls 1.0 / loc 1.2 (pysot ``config.py``); NanoTrack
cls 1.0 / loc 1.0 (``configv2.yaml`` ``TRAIN``). The module docstrings give every rule with its source.
"""

from __future__ import annotations

import jax

from jaxtrack.losses import nanotrack, siamfcpp, siamrpn
from jaxtrack.losses.common import sample_mask, sample_mask_uniform, select_cross_entropy

def __getattr__(name: str):
    if name == "LOSS_WEIGHTS":  # {family: its loss module's DEFAULT_WEIGHTS}, for every registered family
        from jaxtrack.tracking.registry import FAMILIES

        return {f.name: f.losses().DEFAULT_WEIGHTS for f in FAMILIES.values()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def family_module(config):
    """The loss module of ``config``'s tracker family (:mod:`jaxtrack.tracking.registry`)."""
    from jaxtrack.tracking.registry import family_of

    return family_of(config).losses()


def make_targets(config, boxes, negative, key: jax.Array | None = None) -> dict:
    """Training targets of ``config.family`` for search crops with target ``boxes`` ``[B, 4]`` (x1, y1, x2, y2)
    and ``negative`` ``[B]`` flags. See the family modules for shapes and rules."""
    return family_module(config).make_targets(config, boxes, negative, key)


def training_loss(config, raw: dict, targets: dict, weights=None):
    """``(total, metrics)`` of the family's training loss; ``weights`` defaults to ``LOSS_WEIGHTS[family]``."""
    module = family_module(config)
    return module.loss(config, raw, targets, module.DEFAULT_WEIGHTS if weights is None else weights)


__all__ = [
    "LOSS_WEIGHTS",
    "family_module",
    "make_targets",
    "nanotrack",
    "sample_mask",
    "sample_mask_uniform",
    "select_cross_entropy",
    "siamfcpp",
    "siamrpn",
    "training_loss",
]

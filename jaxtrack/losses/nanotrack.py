"""NanoTrack training targets and loss (HonglinChu/SiamTrackers ``NanoTrack``, a pysot/SiamBAN-derived
point-based tracker).

Sources (SiamTrackers commit ``248663f``, directory ``NanoTrack/``):

* targets: ``nanotrack/datasets/point_target.py`` (``PointTarget``), points ``nanotrack/utils/point.py``
  (``Point(cfg.POINT.STRIDE, cfg.TRAIN.OUTPUT_SIZE, cfg.TRAIN.SEARCH_SIZE // 2)``), ``corner2center``
  (``w = x2 - x1``, no +1);
* loss: ``nanotrack/models/model_builder.py`` (``ModelBuilder.forward``), ``nanotrack/models/loss.py``
  (``select_cross_entropy_loss``, ``select_iou_loss``) and ``nanotrack/models/iou_loss.py``
  (``linear_iou = IOULoss('linear_iou')``);
* constants: ``nanotrack/core/config.py`` (``TRAIN.POS_NUM 16``, ``TOTAL_NUM 64``, ``NEG_NUM 16``) and the
  ``TRAIN`` section of ``models/config/configv2.yaml`` / ``configv3.yaml`` (``CLS_WEIGHT 1.0``,
  ``LOC_WEIGHT 1.0``; ``OUTPUT_SIZE`` 16 / 15, ``POINT.STRIDE 16``, search 255).

Coordinates: search-crop pixels (crop of ``config.instance_size``), 0-based, boxes ``(x1, y1, x2, y2)``.
Point (row i, col j) = ``(im_c - (S // 2) * stride + stride * j, im_c - (S // 2) * stride + stride * i)`` with
``im_c = instance_size // 2`` -- the tracker's :func:`jaxtrack.tracking.nanotrack.nanotrack_points` plus the
crop centre (v2: -1 .. 239 every 16 px).

Targets per sample (``PointTarget.__call__``), with ``(tcx, tcy, tw, th) = corner2center(box)``:

* positive pair: positive candidates = points strictly inside the ellipse with semi-axes ``(tw / 4, th / 4)``
  around the box centre (``(dx / (tw/4))^2 + (dy / (th/4))^2 < 1``); negative candidates = points strictly
  outside the ellipse with semi-axes ``(tw / 2, th / 2)`` (``... > 1``); the ring between is ignored (-1); keep
  a random ``<= POS_NUM`` positives and ``<= TOTAL_NUM - POS_NUM`` negatives;
  ``loc`` = ``(px - x1, py - y1, x2 - px, y2 - py)`` (l, t, r, b) at every point;
* negative pair: negative candidates = the small ellipse ``(tw / 4, th / 4)``, keep a random ``<= NEG_NUM``;
  no positives; ``loc`` 0.

``key=None`` keeps every candidate (deterministic, no sampling); pass a PRNG key to sample as NanoTrack does.
Edge case: a non-positive width/height is clamped to 1e-6 in the ellipse test so nothing divides by zero.

Layouts (this repo's :class:`jaxtrack.models.NanoTrack`): raw ``cls`` ``[B, S, S, 2]`` logits (channel 0
background, 1 foreground -- ``ModelBuilder.log_softmax`` permutes NCHW to NHWC and softmaxes the last axis),
raw ``loc`` ``[B, S, S, 4]`` (l, t, r, b) distances in crop pixels, already through ``exp``. Targets ``cls``
``[B, S, S]`` int32, ``loc`` ``[B, S, S, 4]``.

Loss: ``cls`` = pysot's ``select_cross_entropy_loss`` (0.5 mean NLL over the batch's positives + 0.5 over its
negatives); ``reg`` = ``select_iou_loss`` = mean over the batch's positive points of ``1 - IoU`` with
NanoTrack's ltrb IoU ``(inter + 1) / (union + 1)``, ``inter = (min l + min r)(min t + min b)``,
``area = (l + r)(t + b)`` (0 when the batch has no positive: NanoTrack would assert); total
``= CLS_WEIGHT * cls + LOC_WEIGHT * reg``.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from jaxtrack.losses.common import batch_uniforms, masked_mean, sample_mask_uniform, select_cross_entropy
from jaxtrack.tracking.nanotrack import nanotrack_points

__all__ = ["DEFAULT_PARAMS", "DEFAULT_WEIGHTS", "LossWeights", "TargetParams", "loss", "ltrb_iou", "make_targets", "train_points"]


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """``TRAIN.CLS_WEIGHT`` 1.0 and ``TRAIN.LOC_WEIGHT`` 1.0 of NanoTrack's ``configv2.yaml`` (and
    ``configv3.yaml``, and ``nanotrack/core/config.py``)."""

    cls: float = 1.0
    reg: float = 1.0


@dataclasses.dataclass(frozen=True)
class TargetParams:
    """``cfg.TRAIN.POS_NUM`` 16, ``TOTAL_NUM`` 64, ``NEG_NUM`` 16 (``nanotrack/core/config.py``)."""

    pos_num: int = 16
    total_num: int = 64
    neg_num: int = 16


DEFAULT_WEIGHTS = LossWeights()
DEFAULT_PARAMS = TargetParams()
_EPS_SIZE = 1e-6


def train_points(config) -> jax.Array:
    """Points ``[S, S, 2]`` (x, y) in absolute search-crop pixels (``Point.points`` transposed to NHWC)."""
    s = config.score_size
    p = nanotrack_points(config.stride, s).reshape(s, s, 2) + config.instance_size // 2
    return jnp.asarray(p)


def _targets_single(config, params: TargetParams, box, negative, u):
    """One sample; ``u``: ``[3, *label_shape]`` uniforms (positives, negatives, negative-pair negatives) or None."""
    pts = train_points(config)
    px, py = pts[..., 0], pts[..., 1]
    u_pos, u_neg, u_negpair = (None, None, None) if u is None else (u[0], u[1], u[2])

    def sample(u_k, mask, keep_num):
        return mask if u_k is None else sample_mask_uniform(u_k, mask, keep_num)

    x1, y1, x2, y2 = box[0], box[1], box[2], box[3]
    tcx, tcy = (x1 + x2) * 0.5, (y1 + y2) * 0.5
    tw, th = jnp.maximum(x2 - x1, _EPS_SIZE), jnp.maximum(y2 - y1, _EPS_SIZE)

    def ellipse(fraction):
        return jnp.square(tcx - px) / jnp.square(tw * fraction) + jnp.square(tcy - py) / jnp.square(th * fraction)

    small, large = ellipse(0.25), ellipse(0.5)
    pos = sample(u_pos, small < 1, params.pos_num)
    neg = sample(u_neg, large > 1, params.total_num - params.pos_num)
    cls_p = jnp.where(neg, 0, jnp.where(pos, 1, -1))
    loc_p = jnp.stack([px - x1, py - y1, x2 - px, y2 - py], axis=-1)

    cls_n = jnp.where(sample(u_negpair, small < 1, params.neg_num), 0, -1)
    return {
        "cls": jnp.where(negative, cls_n, cls_p).astype(jnp.int32),
        "loc": jnp.where(negative, 0.0, loc_p).astype(jnp.float32),
    }


def make_targets(
    config, boxes, negative, key: jax.Array | None = None, params: TargetParams = DEFAULT_PARAMS
) -> dict:
    """NanoTrack ``PointTarget`` for a batch of search crops.

    Args:
      config: a :class:`jaxtrack.tracking.NanoTrackConfig` (``stride``, ``score_size``, ``instance_size``).
      boxes: ``[B, 4]`` gt boxes ``(x1, y1, x2, y2)`` in search-crop pixels.
      negative: ``[B]`` bool, negative pairs.
      key: PRNG key for the random selection of labels; ``None`` keeps every candidate.
      params: :class:`TargetParams`.
    Returns:
      ``cls`` int32 ``[B, S, S]`` in {-1, 0, 1}; ``loc`` float32 ``[B, S, S, 4]`` (l, t, r, b) in crop pixels.
    """
    return _make_targets_jit(config, params, jnp.asarray(boxes, jnp.float32), jnp.asarray(negative, bool), key)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _make_targets_jit(config, params, boxes, negative, key):
    s = config.score_size
    u = batch_uniforms(key, (boxes.shape[0], 3, s, s))
    if u is None:
        return jax.vmap(lambda b, n: _targets_single(config, params, b, n, None))(boxes, negative)
    return jax.vmap(lambda b, n, r: _targets_single(config, params, b, n, r))(boxes, negative, u)


def ltrb_iou(pred: jax.Array, target: jax.Array) -> jax.Array:
    """NanoTrack ``IOULoss`` IoU of (l, t, r, b) distance boxes around the same point: ``(inter + 1) /
    (union + 1)``."""
    pl, pt, pr, pb = pred[..., 0], pred[..., 1], pred[..., 2], pred[..., 3]
    tl, tt, tr, tb = target[..., 0], target[..., 1], target[..., 2], target[..., 3]
    pred_area = (pl + pr) * (pt + pb)
    target_area = (tl + tr) * (tt + tb)
    w_inter = jnp.minimum(pl, tl) + jnp.minimum(pr, tr)
    h_inter = jnp.minimum(pb, tb) + jnp.minimum(pt, tt)
    inter = w_inter * h_inter
    union = target_area + pred_area - inter
    return (inter + 1.0) / (union + 1.0)


@functools.partial(jax.jit, static_argnames=("config", "weights"))
def loss(config, raw: dict, targets: dict, weights: LossWeights = DEFAULT_WEIGHTS):
    """NanoTrack training loss on a batch.

    Args:
      config: the tracker config (unused; kept for the common signature).
      raw: ``cls`` ``[B, S, S, 2]`` logits, ``loc`` ``[B, S, S, 4]`` distances, as ``NanoTrackTracker.head``
        returns them.
      targets: from :func:`make_targets`.
      weights: :class:`LossWeights`.
    Returns:
      ``(total, metrics)``; metrics ``cls``, ``reg`` (unweighted), ``iou`` (mean IoU of the positives),
      ``num_pos``, ``total``.
    """
    del config
    cls = jnp.asarray(raw["cls"], jnp.float32)
    loc = jnp.asarray(raw["loc"], jnp.float32).reshape(-1, 4)
    labels = jnp.asarray(targets["cls"])
    cls_loss = select_cross_entropy(cls[..., 0], cls[..., 1], labels)

    pos = labels.reshape(-1) == 1
    target_loc = jnp.asarray(targets["loc"], jnp.float32).reshape(-1, 4)
    # Non-positive points compare a unit box with itself (IoU 1): finite values and gradients everywhere.
    unit = jnp.ones_like(loc)
    iou = ltrb_iou(jnp.where(pos[:, None], loc, unit), jnp.where(pos[:, None], target_loc, unit))
    reg_loss = masked_mean(1.0 - iou, pos)

    total = weights.cls * cls_loss + weights.reg * reg_loss
    metrics = {
        "cls": cls_loss,
        "reg": reg_loss,
        "iou": masked_mean(jax.lax.stop_gradient(iou), pos),
        "num_pos": jnp.sum(pos.astype(jnp.float32)),
        "total": total,
    }
    return total, metrics

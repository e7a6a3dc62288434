"""SiamRPN / SiamRPN++ training targets and loss (pysot, ``STVIR/pysot``).

Sources (pysot commit ``d04028f``):

* targets: ``pysot/datasets/anchor_target.py`` (``AnchorTarget``), anchors ``pysot/utils/anchor.py``
  (``Anchors.generate_all_anchors(im_c=TRAIN.SEARCH_SIZE // 2, size=TRAIN.OUTPUT_SIZE)``), boxes
  ``pysot/utils/bbox.py`` (``corner2center``, ``IoU``);
* loss: ``pysot/models/model_builder.py`` (``ModelBuilder.log_softmax`` / ``forward``) and
  ``pysot/models/loss.py`` (``select_cross_entropy_loss``, ``weight_l1_loss``);
* constants: ``pysot/core/config.py`` -- ``TRAIN.THR_HIGH 0.6``, ``THR_LOW 0.3``, ``POS_NUM 16``,
  ``TOTAL_NUM 64``, ``NEG_NUM 16``, ``CLS_WEIGHT 1.0``, ``LOC_WEIGHT 1.2`` (no experiment yaml overrides them).

Coordinates: search-crop pixels (crop of ``config.instance_size``), 0-based, boxes ``(x1, y1, x2, y2)``; pysot's
``corner2center`` (``w = x2 - x1``, no +1). Anchors are the tracker's :func:`jaxtrack.tracking.postprocess.
pysot_anchors` shifted by the crop centre ``instance_size // 2`` (pysot's ``im_c``): anchor k of cell (y, x) is
centred at ``im_c - (S // 2) * stride + stride * (x, y)``. pysot trains SiamRPN++ at 255 -> 25x25 and SiamRPN
AlexNet at 255 -> 17x17 (``siamrpn_alex_dwxcorr_16gpu`` ``TRAIN.OUTPUT_SIZE 17``) although the AlexNet tracker
runs at 287; use ``dataclasses.replace(config, instance_size=255)`` for the latter.

Targets per sample (``AnchorTarget.__call__``):

* positive pair: ``overlap`` = IoU(anchor, gt); candidates positive ``overlap > THR_HIGH``, negative
  ``overlap < THR_LOW``; keep a random ``<= POS_NUM`` positives and a random ``<= TOTAL_NUM - POS_NUM``
  negatives (so at most 16 + 48 = 64 labelled anchors); ``cls`` 1 / 0 / -1 (ignored);
  ``loc`` = ``((tcx - acx) / aw, (tcy - acy) / ah, log(tw / aw), log(th / ah))`` at *every* anchor;
  ``loc_weight`` = ``1 / (num_pos + 1e-6)`` on the kept positives, 0 elsewhere;
* negative pair: the cell nearest to the box centre, ``c = S // 2 + ceil((tc - im_c) / stride + 0.5)`` per
  axis, and its 7x7 neighbourhood (``c - 3 .. c + 3``, clipped to the map) of all anchors are negative
  candidates; a random ``<= NEG_NUM`` of them are kept; no positives, ``loc`` and ``loc_weight`` 0.

``key=None`` keeps every candidate (no sampling; deterministic, e.g. for attacks and template refinement);
pass a PRNG key to sample as pysot does. Deviations (edge cases only): a non-positive width/height is clamped
to 1e-6 inside the ``log`` so targets stay finite; an IoU whose union is not positive is 0; the negative-pair
window is clipped to the map (pysot's Python slice would wrap around for a box centre more than ~4 cells off
the map).

Layouts follow this repo's NHWC head outputs (:func:`jaxtrack.tracking.postprocess.siamrpn_decode`):
raw ``cls`` ``[B, S, S, 2K]`` = (background logits of anchors 0..K-1, foreground logits of anchors 0..K-1)
-- pysot views its ``[B, 2K, S, S]`` map as ``(B, 2, K, S, S)``; raw ``loc`` ``[B, S, S, 4K]`` with channel
``coord * K + k`` -- pysot's ``view(b, 4, K, S, S)``. Targets: ``cls`` / ``loc_weight`` / ``overlap``
``[B, S, S, K]``, ``loc`` ``[B, S, S, 4K]`` in the raw ``loc`` layout.

Loss: ``cls`` = ``select_cross_entropy_loss`` of the 2-way log-softmax (0.5 mean NLL over the batch's positive
anchors + 0.5 over its negatives); ``reg`` = ``weight_l1_loss`` = ``sum |pred - target| * loc_weight / B``
(a plain L1 -- pysot's function is named ``l1`` and uses ``abs``, there is no smooth-L1); total =
``CLS_WEIGHT * cls + LOC_WEIGHT * reg``.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from jaxtrack.losses.common import batch_uniforms, safe_div, sample_mask_uniform, select_cross_entropy
from jaxtrack.tracking.postprocess import pysot_anchors

__all__ = ["DEFAULT_PARAMS", "DEFAULT_WEIGHTS", "LossWeights", "TargetParams", "loss", "make_targets", "train_anchors"]


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """pysot ``cfg.TRAIN.CLS_WEIGHT`` 1.0 and ``cfg.TRAIN.LOC_WEIGHT`` 1.2 (``pysot/core/config.py``)."""

    cls: float = 1.0
    reg: float = 1.2


@dataclasses.dataclass(frozen=True)
class TargetParams:
    """pysot ``cfg.TRAIN`` label assignment: ``THR_HIGH``, ``THR_LOW``, ``POS_NUM``, ``TOTAL_NUM``, ``NEG_NUM``
    (negatives kept on a negative pair), and the half-size 3 of the 7x7 negative-pair window
    (``anchor_target.py``)."""

    thr_high: float = 0.6
    thr_low: float = 0.3
    pos_num: int = 16
    total_num: int = 64
    neg_num: int = 16
    neg_radius: int = 3


DEFAULT_WEIGHTS = LossWeights()
DEFAULT_PARAMS = TargetParams()
_EPS_SIZE = 1e-6


def train_anchors(config) -> jax.Array:
    """Anchors ``[S, S, K, 4]`` ``(cx, cy, w, h)`` in absolute search-crop pixels (pysot's ``all_anchors[1]``
    transposed to the NHWC label layout)."""
    s, k = config.score_size, config.num_anchors
    a = pysot_anchors(config.anchor_stride, config.anchor_ratios, config.anchor_scales, s).reshape(k, s, s, 4)
    a = a.transpose(1, 2, 0, 3).copy()
    a[..., :2] += config.instance_size // 2
    return jnp.asarray(a)


def _targets_single(config, params: TargetParams, box, negative, u):
    """One sample; ``u``: ``[3, *label_shape]`` uniforms (positives, negatives, negative-pair negatives) or None."""
    s = config.score_size
    stride = config.anchor_stride
    im_c = config.instance_size // 2
    anchors = train_anchors(config)  # [S, S, K, 4]
    acx, acy, aw, ah = anchors[..., 0], anchors[..., 1], anchors[..., 2], anchors[..., 3]
    u_pos, u_neg, u_negpair = (None, None, None) if u is None else (u[0], u[1], u[2])

    def sample(u_k, mask, keep_num):
        return mask if u_k is None else sample_mask_uniform(u_k, mask, keep_num)

    x1, y1, x2, y2 = box[0], box[1], box[2], box[3]
    tcx, tcy, tw, th = (x1 + x2) * 0.5, (y1 + y2) * 0.5, x2 - x1, y2 - y1

    # ---- positive pair
    ax1, ay1, ax2, ay2 = acx - aw * 0.5, acy - ah * 0.5, acx + aw * 0.5, acy + ah * 0.5
    ww = jnp.maximum(0.0, jnp.minimum(x2, ax2) - jnp.maximum(x1, ax1))
    hh = jnp.maximum(0.0, jnp.minimum(y2, ay2) - jnp.maximum(y1, ay1))
    inter = ww * hh
    overlap = safe_div(inter, (ax2 - ax1) * (ay2 - ay1) + tw * th - inter)
    pos = sample(u_pos, overlap > params.thr_high, params.pos_num)
    neg = sample(u_neg, overlap < params.thr_low, params.total_num - params.pos_num)
    num_pos = jnp.sum(pos.astype(jnp.float32))
    cls_p = jnp.where(neg, 0, jnp.where(pos, 1, -1))
    weight_p = jnp.where(pos, 1.0 / (num_pos + 1e-6), 0.0)
    delta = jnp.stack(
        [
            (tcx - acx) / aw,
            (tcy - acy) / ah,
            jnp.log(jnp.maximum(tw, _EPS_SIZE) / aw),
            jnp.log(jnp.maximum(th, _EPS_SIZE) / ah),
        ],
        axis=-2,
    )  # [S, S, 4, K]

    # ---- negative pair
    cx = s // 2 + jnp.ceil((tcx - im_c) / stride + 0.5).astype(jnp.int32)
    cy = s // 2 + jnp.ceil((tcy - im_c) / stride + 0.5).astype(jnp.int32)
    grid = jnp.arange(s)
    in_x = (grid >= cx - params.neg_radius) & (grid <= cx + params.neg_radius)
    in_y = (grid >= cy - params.neg_radius) & (grid <= cy + params.neg_radius)
    region = jnp.broadcast_to((in_y[:, None] & in_x[None, :])[..., None], overlap.shape)
    cls_n = jnp.where(sample(u_negpair, region, params.neg_num), 0, -1)

    k = config.num_anchors
    return {
        "cls": jnp.where(negative, cls_n, cls_p).astype(jnp.int32),
        "loc": jnp.where(negative, 0.0, delta).reshape(s, s, 4 * k).astype(jnp.float32),
        "loc_weight": jnp.where(negative, 0.0, weight_p).astype(jnp.float32),
        "overlap": jnp.where(negative, 0.0, overlap).astype(jnp.float32),
    }


def make_targets(
    config, boxes, negative, key: jax.Array | None = None, params: TargetParams = DEFAULT_PARAMS
) -> dict:
    """pysot ``AnchorTarget`` for a batch of search crops.

    Args:
      config: a :class:`jaxtrack.tracking.SiamRPNConfig` (anchors, ``instance_size``, ``score_size``).
      boxes: ``[B, 4]`` gt boxes ``(x1, y1, x2, y2)`` in search-crop pixels.
      negative: ``[B]`` bool, negative pairs.
      key: PRNG key for pysot's random selection of positives/negatives; ``None`` keeps every candidate.
      params: :class:`TargetParams`.
    Returns:
      ``cls`` int32 ``[B, S, S, K]`` in {-1, 0, 1}; ``loc`` float32 ``[B, S, S, 4K]`` (channel ``coord*K + k``,
      coords dx, dy, dw, dh); ``loc_weight`` float32 ``[B, S, S, K]``; ``overlap`` float32 ``[B, S, S, K]``
      (anchor IoU with the gt box; 0 for negative pairs).
    """
    return _make_targets_jit(config, params, jnp.asarray(boxes, jnp.float32), jnp.asarray(negative, bool), key)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _make_targets_jit(config, params, boxes, negative, key):
    s = config.score_size
    u = batch_uniforms(key, (boxes.shape[0], 3, s, s, config.num_anchors))
    if u is None:
        return jax.vmap(lambda b, n: _targets_single(config, params, b, n, None))(boxes, negative)
    return jax.vmap(lambda b, n, r: _targets_single(config, params, b, n, r))(boxes, negative, u)


@functools.partial(jax.jit, static_argnames=("config", "weights"))
def loss(config, raw: dict, targets: dict, weights: LossWeights = DEFAULT_WEIGHTS):
    """pysot SiamRPN training loss on a batch.

    Args:
      config: the tracker config (``num_anchors``).
      raw: ``cls`` ``[B, S, S, 2K]`` logits and ``loc`` ``[B, S, S, 4K]`` deltas, as ``SiamRPNTracker.head``
        returns them.
      targets: from :func:`make_targets`.
      weights: :class:`LossWeights`.
    Returns:
      ``(total, metrics)``; metrics ``cls``, ``reg`` (unweighted), ``num_pos``, ``total``.
    """
    k = config.num_anchors
    cls = jnp.asarray(raw["cls"], jnp.float32)
    loc = jnp.asarray(raw["loc"], jnp.float32)
    labels = jnp.asarray(targets["cls"])
    cls_loss = select_cross_entropy(cls[..., :k], cls[..., k:], labels)

    b = loc.shape[0]
    diff = jnp.abs(loc - jnp.asarray(targets["loc"], jnp.float32))
    diff = diff.reshape(loc.shape[:-1] + (4, k)).sum(axis=-2)
    reg_loss = jnp.sum(diff * jnp.asarray(targets["loc_weight"], jnp.float32)) / b

    total = weights.cls * cls_loss + weights.reg * reg_loss
    metrics = {
        "cls": cls_loss,
        "reg": reg_loss,
        "num_pos": jnp.sum((labels == 1).astype(jnp.float32)),
        "total": total,
    }
    return total, metrics

"""SiamFC++ training targets and loss (video_analyst, ``MegviiDetection/video_analyst``).

Sources (commit ``f4d1bcc`` of video_analyst):

* targets: ``videoanalyst/data/target/target_impl/utils/make_densebox_target.py`` (``make_densebox_target``
  v2.1) and ``.../target_impl/densebox_target.py`` (``DenseboxTarget``: negative pairs);
* losses: ``videoanalyst/model/loss/loss_impl/focal_loss.py`` (``FocalLoss``, with
  ``common_opr/common_loss.py::sigmoid_focal_loss``), ``sigmoid_ce_centerness.py``
  (``SigmoidCrossEntropyCenterness``), ``iou_loss.py`` (``IOULoss``), ``utils.py`` (``SafeLog``);
* weights: ``experiments/siamfcpp/train/got10k/siamfcpp_alexnet-trn.yaml`` (``FocalLoss`` alpha 0.25,
  gamma 2.0, weight 1.0; ``SigmoidCrossEntropyCenterness`` weight 1.0; ``IOULoss`` weight 3.0; the same in
  the GoogLeNet / ShuffleNet / LaSOT / TrackingNet training yaml files).

Coordinates: search-crop pixels of the ``config.instance_size`` (x_size) crop, 0-based, boxes
``(x0, y0, x1, y1)``. Score-map cell (row i, col j) sits at
``(score_offset + j * total_stride, score_offset + i * total_stride)`` with
``score_offset = (x_size - 1 - (score_size - 1) * total_stride) // 2`` (87 for 303 / 17 / 8), exactly the
centres the head decodes with (:func:`jaxtrack.models.heads.densebox_centers`).

Targets (``make_targets``), per sample, shapes mirroring the head outputs ``[B, S, S]`` / ``[B, S, S, 4]``:

* a cell is **inside** when all four distances ``l = cx - x0, t = cy - y0, r = x1 - cx, b = y1 - cy`` are
  strictly positive;
* ``cls``: 1 inside, 0 outside; for a **negative pair** (``DenseboxTarget``): inside -> 0, outside -> -1
  (ignored), i.e. only the cells on the (distractor) box are negatives;
* ``ctr``: centre-ness ``sqrt(min(l, r) min(t, b) / (max(l, r) max(t, b) + 1e-5))`` inside, 0 outside.
  **Unchanged for negative pairs**, as in ``DenseboxTarget`` -- so, like video_analyst, the centre-ness loss
  (masked by ``ctr != 0``) also trains on the box cells of negative pairs;
* ``box``: the gt box ``(x0, y0, x1, y1)`` on inside cells, zeros elsewhere.

Loss (``loss``), summed over the whole batch and normalised by whole-batch counts, as video_analyst computes
its losses on the minibatch tensors:

* ``cls`` -- sigmoid focal loss (RetinaNet form ``alpha_t (1 - p_t)^gamma BCE(x, t)``, ``t = [label == 1]``,
  ``alpha_t = alpha t + (1 - alpha)(1 - t)``) summed over non-ignored cells / ``max(#positives, 1)``;
* ``ctr`` -- ``BCE_logits(x, c) - BCE(c, c)`` (the label's own entropy subtracted, log clamped at -100 as
  torch does, so a perfect prediction scores 0) over cells with ``c != 0``, / ``max(#those, 1)``;
* ``reg`` -- IoU loss ``-log(max(IoU, tiny))`` with video_analyst's +1 pixel convention (``w = x1 - x0 + 1``,
  ``iw = min(x1) - max(x0) + 1``, areas through ``abs``, ``IoU = max(inter / union, 0)``,
  ``tiny = np.finfo(np.float32).tiny``) over positive cells / ``max(#positives, 1)``;
* total ``= w_cls cls + w_ctr ctr + w_reg reg``.

Raw head outputs (``tracker.head`` of :class:`jaxtrack.tracking.SiamFCppTracker`): ``cls`` ``[B, S, S]`` and
``ctr`` ``[B, S, S]`` logits (before the sigmoid), ``box`` ``[B, S, S, 4]`` decoded boxes (x0, y0, x1, y1) in
crop pixels -- the same tensors video_analyst's losses receive (``cls_pred``, ``ctr_pred``, ``box_pred``).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxtrack.losses.common import bce_with_logits, safe_div
from jaxtrack.models.heads import densebox_centers

__all__ = ["CENTERNESS_EPS", "DEFAULT_WEIGHTS", "LossWeights", "loss", "make_targets"]

CENTERNESS_EPS = 1e-5  # make_densebox_target: eps in the centre-ness denominator
_TINY = float(np.finfo(np.float32).tiny)  # SafeLog's eps


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """SiamFC++ loss weights and focal-loss parameters (``siamfcpp_alexnet-trn.yaml``, ``train.track.model.
    losses``): ``FocalLoss`` weight 1.0, alpha 0.25, gamma 2.0; ``SigmoidCrossEntropyCenterness`` weight 1.0;
    ``IOULoss`` weight 3.0."""

    cls: float = 1.0
    ctr: float = 1.0
    reg: float = 3.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0


DEFAULT_WEIGHTS = LossWeights()


def _targets_single(config, box: jax.Array, negative: jax.Array) -> dict:
    s = config.score_size
    centers = densebox_centers(s, config.instance_size, config.total_stride)  # [S, S, 2] (x, y)
    cx, cy = centers[..., 0], centers[..., 1]
    x0, y0, x1, y1 = box[0], box[1], box[2], box[3]
    l, t, r, b = cx - x0, cy - y0, x1 - cx, y1 - cy
    inside = (l > 0) & (t > 0) & (r > 0) & (b > 0)
    ratio = (jnp.minimum(l, r) * jnp.minimum(t, b)) / (jnp.maximum(l, r) * jnp.maximum(t, b) + CENTERNESS_EPS)
    ctr = jnp.where(inside, jnp.sqrt(jnp.abs(ratio)), 0.0)
    cls = jnp.where(negative, jnp.where(inside, 0, -1), jnp.where(inside, 1, 0)).astype(jnp.int32)
    box_t = jnp.where(inside[..., None], box[None, None, :], 0.0)
    return {"cls": cls, "ctr": ctr.astype(jnp.float32), "box": box_t.astype(jnp.float32)}


def make_targets(config, boxes, negative, key: jax.Array | None = None) -> dict:
    """video_analyst densebox targets for a batch of search crops (no random sampling; ``key`` is unused).

    Args:
      config: a :class:`jaxtrack.tracking.SiamFCppConfig` (``instance_size``, ``score_size``, ``total_stride``).
      boxes: ``[B, 4]`` gt boxes ``(x0, y0, x1, y1)`` in search-crop pixels.
      negative: ``[B]`` bool, negative pairs (the box is a distractor's).
    Returns:
      ``cls`` int32 ``[B, S, S]`` in {-1 ignore, 0 negative, 1 positive}; ``ctr`` float32 ``[B, S, S]``
      centre-ness in [0, 1]; ``box`` float32 ``[B, S, S, 4]`` gt box on positive-pair inside cells (else 0).
    """
    del key
    return _make_targets_jit(config, jnp.asarray(boxes, jnp.float32), jnp.asarray(negative, bool))


@functools.partial(jax.jit, static_argnums=0)
def _make_targets_jit(config, boxes, negative):
    return jax.vmap(lambda b, n: _targets_single(config, b, n))(boxes, negative)


def _focal(logits, targets, alpha: float, gamma: float):
    """``sigmoid_focal_loss`` of ``common_loss.py`` (reduction none)."""
    p = jax.nn.sigmoid(logits)
    ce = bce_with_logits(logits, targets)
    p_t = p * targets + (1.0 - p) * (1.0 - targets)
    loss = ce if gamma == 0 else ce * (1.0 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1.0 - alpha) * (1.0 - targets)) * loss
    return loss


def _label_entropy(c):
    """``F.binary_cross_entropy(c, c)``: ``-(c log c + (1 - c) log(1 - c))`` with logs clamped at -100."""
    return -(c * jnp.maximum(jnp.log(c), -100.0) + (1.0 - c) * jnp.maximum(jnp.log1p(-c), -100.0))


def iou_plus_one(pred: jax.Array, gt: jax.Array) -> jax.Array:
    """video_analyst ``IOULoss`` IoU of ``(x0, y0, x1, y1)`` boxes ``[..., 4]`` with the +1 pixel convention."""
    aog = jnp.abs(gt[..., 2] - gt[..., 0] + 1) * jnp.abs(gt[..., 3] - gt[..., 1] + 1)
    aop = jnp.abs(pred[..., 2] - pred[..., 0] + 1) * jnp.abs(pred[..., 3] - pred[..., 1] + 1)
    iw = jnp.minimum(pred[..., 2], gt[..., 2]) - jnp.maximum(pred[..., 0], gt[..., 0]) + 1
    ih = jnp.minimum(pred[..., 3], gt[..., 3]) - jnp.maximum(pred[..., 1], gt[..., 1]) + 1
    inter = jnp.maximum(iw, 0.0) * jnp.maximum(ih, 0.0)
    union = aog + aop - inter
    return jnp.maximum(safe_div(inter, union), 0.0)


@functools.partial(jax.jit, static_argnames=("config", "weights"))
def loss(config, raw: dict, targets: dict, weights: LossWeights = DEFAULT_WEIGHTS):
    """SiamFC++ training loss on a batch (see the module docstring for the formulas).

    Args:
      config: the tracker config (unused; kept for the common signature).
      raw: ``cls`` ``[B, S, S]`` (or ``[B, S, S, 1]``) and ``ctr`` logits, ``box`` ``[B, S, S, 4]`` crop-pixel
        boxes, as ``SiamFCppTracker.head`` returns them.
      targets: from :func:`make_targets`.
      weights: :class:`LossWeights`.
    Returns:
      ``(total, metrics)``: total scalar; metrics ``cls``, ``ctr``, ``reg`` (unweighted terms), ``iou`` (mean IoU
      of the positive cells' boxes), ``num_pos`` and ``total``.
    """
    del config
    cls_logits = jnp.asarray(raw["cls"], jnp.float32).reshape(-1)
    ctr_logits = jnp.asarray(raw["ctr"], jnp.float32).reshape(-1)
    pred_box = jnp.asarray(raw["box"], jnp.float32).reshape(-1, 4)
    label = jnp.asarray(targets["cls"]).reshape(-1)
    ctr_gt = jnp.asarray(targets["ctr"], jnp.float32).reshape(-1)
    gt_box = jnp.asarray(targets["box"], jnp.float32).reshape(-1, 4)

    pos = label == 1
    num_pos = jnp.sum(pos.astype(jnp.float32))
    norm = jnp.maximum(num_pos, 1.0)

    # FocalLoss
    onehot = pos.astype(jnp.float32)
    valid = (label != -1).astype(jnp.float32)
    cls_loss = jnp.sum(_focal(cls_logits, onehot, weights.focal_alpha, weights.focal_gamma) * valid) / norm

    # SigmoidCrossEntropyCenterness
    ctr_mask = (ctr_gt != 0).astype(jnp.float32)
    ctr_each = bce_with_logits(ctr_logits, ctr_gt) - _label_entropy(ctr_gt)
    ctr_loss = jnp.sum(ctr_each * ctr_mask) / jnp.maximum(jnp.sum(ctr_mask), 1.0)

    # IOULoss; non-positive cells see pred = gt so nothing there can produce a NaN (value or gradient).
    safe_pred = jnp.where(pos[:, None], pred_box, gt_box)
    iou = iou_plus_one(safe_pred, gt_box)
    pos_f = pos.astype(jnp.float32)
    reg_loss = jnp.sum(-jnp.log(jnp.maximum(iou, _TINY)) * pos_f) / norm
    mean_iou = jnp.sum(jax.lax.stop_gradient(iou) * pos_f) / norm

    total = weights.cls * cls_loss + weights.ctr * ctr_loss + weights.reg * reg_loss
    metrics = {
        "cls": cls_loss,
        "ctr": ctr_loss,
        "reg": reg_loss,
        "iou": mean_iou,
        "num_pos": num_pos,
        "total": total,
    }
    return total, metrics

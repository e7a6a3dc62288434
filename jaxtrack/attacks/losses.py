r"""Tracker losses on dense predictions, the same for every tracker family.

Every loss reads only what :meth:`jaxtrack.tracking.Tracker.dense_predictions` gives for one search crop —
``scores [N]`` (target probability of each position, in [0, 1]) and ``boxes [N, 4]`` ``(cx, cy, w, h)`` in
search-crop pixels with the centre relative to the crop centre — plus a **reference box** ``ref [4]`` in the same
coordinates (:func:`box_in_crop`). So the losses work unchanged for SiamRPN(++) (anchors), SiamFC++ (points)
and NanoTrack (points, BAN head), and attacks/defenses/refinement never branch on the family.

Signature of every loss::

    loss(scores [N], boxes [N, 4], ref [4], clean=None, **options) -> scalar

``clean = (scores0, boxes0)`` are the predictions of the *unperturbed* input. Labels and masks are computed from
them (under ``stop_gradient``), so they stay fixed while an attack or a refinement moves the input — the clean
predicted boxes play the role that fixed anchors play in pysot. With ``clean=None`` they are computed from the
current predictions (re-labelled at every iteration, as RTAA does).

Sign convention: the **attack losses** (:func:`dua_loss`, :func:`csa_loss`, :func:`rtaa_loss`,
:func:`score_margin_loss`) are *adversarial objectives*: larger = worse for the tracker; attacks maximise them
(``AttackConfig.maximize=True``). :func:`tracking_loss` is a *training loss*: smaller = better tracking; template
refinement minimises it (and an attack may maximise it: with default options it equals :func:`dua_loss`).

Definitions (``s_i`` scores, ``b_i`` boxes, ``g`` the reference box, ``IoU`` of centre-size boxes):

**Labels** (:func:`iou_labels`) — pysot's anchor rule with the clean predicted boxes in place of the anchors
(RTAA labels the same way, with the current predicted boxes):
positive ``P = {i : IoU(b⁰_i, g) > 0.6}``, negative ``Q = {i : IoU(b⁰_i, g) < 0.3} \ P``, the rest ignored.
The position of highest IoU is always positive (the detection matchers' rule, so ``P`` is never empty; if no box
overlaps ``g`` at all, the position whose centre is nearest to ``g``'s).

**Classification** (:func:`cls_loss`, pysot's balanced 0.5/0.5 cross entropy, on probabilities):
``L_cls = ½·mean_{i∈P} −log(s_i + δ) + ½·mean_{i∈Q} −log(1 − s_i + δ)``, δ = 1e-6 (no gradient dead zone).

**Regression** (:func:`reg_loss`), over the positives:
``"iou"``: ``L_reg = mean_{i∈P} (1 − IoU(b_i, g))``;
``"smooth_l1"``: ``L_reg = mean_{i∈P} Σ_k smoothL1(d_ik)`` with the normalised deltas
``d = ((cx − g_x)/g_w, (cy − g_y)/g_h, log(w/g_w), log(h/g_h))`` — pysot's anchor deltas with the reference box
as the anchor (for a SiamRPN position whose anchor has the reference's size they coincide).

**Tracking loss** (:func:`tracking_loss`): ``L_track = L_cls + λ·L_reg("iou")``, λ = 1, against the ground truth.
A *family-independent* stand-in for the per-family training losses (SiamFC++ focal + centre-ness + IoU, SiamRPN
CE + smooth-L1, which live with the training code): used by template refinement (MTP minimises the tracker's
training loss on the first frame).

**Dua-Loss** (:func:`dua_loss`): ``L_dua = L_cls + λ·L_reg`` against the reference (the clean prediction for
untargeted attacks), λ = 1, ``reg="iou"`` by default — maximised, it lowers the target scores, raises the
background scores (classification branch) and pushes the positives' boxes off the target (regression branch):
DuaLossDef's "adversarial samples that simultaneously attack the classification and regression branches". Its
exact published form is unknown; this is *this project's choice* (equal to :func:`tracking_loss` by default, so
the attack maximises exactly what refinement minimises).

**CSA** (:func:`csa_loss`; Yan et al. CVPR 2020, ``MasterBin-IIAU/CSA`` ``G_search_L2_500_regress_model.py``):
on the mask ``M = {i : s⁰_i > 0.7}`` of the clean scores (plus the clean arg-max if ``M`` is empty; CSA then
has no attack term),
cooling ``C = mean_{i∈M} max(logit s_i, −5)`` (for a 2-way softmax ``logit s = s_fg − s_bg``, CSA's term),
shrinking ``S = mean_{i∈M} max(log(w_i/g_w), −5) + mean_{i∈M} max(log(h_i/g_h), −5)`` (CSA's raw ``dw, dh``
deltas, with the reference box as the anchor), and the generator minimises ``0.1·C + 1·S`` (its L2 term is
replaced by the hard ε budget). Returned negated: ``L_csa = −(0.1·C + S)``.

**RTAA** (:func:`rtaa_loss`; Jia et al. ECCV 2020, ``VISION-SJTU/RTAA`` ``run_attack.py``): labels as above;
pseudo labels flip them (positives → 0, negatives → 1); a pseudo box ``g̃`` shifted by ``−(r₁ g_w, r₂ g_h)`` and
scaled by ``r₃`` (:func:`rtaa_pseudo_box`; RTAA draws r₁, r₂ ~ U(0.3, 0.5), r₃ ~ U(0.7, 0.9)).
With ``CE(y) = mean_{i∈P∪Q} BCE(s_i, y_i)`` and ``R(t) = Σ_{i∈P} Σ_k smoothL1(d_ik(t))`` (sum, as RTAA; deltas
normalised by the reference size for both targets), RTAA descends ``−CE(y) + CE(ỹ) + 5·(−R(g) + R(g̃))``;
returned negated: ``L_rtaa = CE(y) − CE(ỹ) + 5·(R(g) − R(g̃))``.

**Score margin** (:func:`score_margin_loss`): ``max_{i∈Q} s_i − max_{i∈P} s_i`` (a DLR-like margin on the
score map, for loss diversity in evaluations).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = [
    "LOSSES",
    "box_iou",
    "box_in_crop",
    "box_from_crop",
    "center_size_in_crop",
    "best_box",
    "iou_labels",
    "score_mask",
    "box_deltas",
    "smooth_l1",
    "cls_loss",
    "reg_loss",
    "tracking_loss",
    "dua_loss",
    "dua_cls_loss",
    "dua_reg_loss",
    "csa_loss",
    "rtaa_pseudo_box",
    "rtaa_loss",
    "score_margin_loss",
]

Clean = "tuple[jax.Array, jax.Array] | None"  # (clean scores [N], clean boxes [N, 4])
_DELTA = 1e-6  # inside the logs: no infinities, no zero-gradient clipping
_MIN_SIDE = 1e-3  # box sides are floored here before logs and divisions
_MAX_SIDE = 1e8  # and capped here inside IoUs


# ------------------------------------------------------------------------------------------------ boxes


def box_iou(a, b) -> jax.Array:
    """IoU of centre-size boxes ``(cx, cy, w, h)`` (broadcasting over leading axes); 0 for empty unions."""
    a = jnp.asarray(a, jnp.float32)
    b = jnp.asarray(b, jnp.float32)
    # Sides clamped to [0, 1e8] so that areas stay finite for the wild boxes of untrained networks.
    aw, ah = jnp.clip(a[..., 2], 0, _MAX_SIDE), jnp.clip(a[..., 3], 0, _MAX_SIDE)
    bw, bh = jnp.clip(b[..., 2], 0, _MAX_SIDE), jnp.clip(b[..., 3], 0, _MAX_SIDE)
    ix = jnp.minimum(a[..., 0] + aw / 2, b[..., 0] + bw / 2) - jnp.maximum(a[..., 0] - aw / 2, b[..., 0] - bw / 2)
    iy = jnp.minimum(a[..., 1] + ah / 2, b[..., 1] + bh / 2) - jnp.maximum(a[..., 1] - ah / 2, b[..., 1] - bh / 2)
    inter = jnp.maximum(ix, 0) * jnp.maximum(iy, 0)
    union = aw * ah + bw * bh - inter
    ok = union > 0
    return jnp.where(ok, inter / jnp.where(ok, union, 1.0), 0.0)


def center_size_in_crop(box_center, box_size, center, scale) -> jax.Array:
    """A box given by its centre/size in frame pixels → ``(cx, cy, w, h)`` in crop pixels relative to the crop
    centre: ``((box_center − center) · scale, box_size · scale)``. ``center`` is the tracker state's centre (the
    crop is cut around it) and ``scale`` the crop scale returned by ``Tracker.search_crop``."""
    box_center = jnp.asarray(box_center, jnp.float32)
    scale = jnp.asarray(scale, jnp.float32)
    return jnp.concatenate(
        [(box_center - jnp.asarray(center, jnp.float32)) * scale, jnp.asarray(box_size, jnp.float32) * scale], axis=-1
    )


def box_in_crop(frame_box, center, scale) -> jax.Array:
    """Frame box ``[x, y, w, h]`` (0-based pixels) → crop coordinates (see :func:`center_size_in_crop`).

    The box centre is ``(x + (w − 1)/2, y + (h − 1)/2)`` — the initialisation convention of every family here
    (pysot, video_analyst, NanoTrack): the box a tracker was initialised with maps, with ``center =
    state.center``, to ``(0, 0, w·scale, h·scale)``.
    """
    b = jnp.asarray(frame_box, jnp.float32)
    return center_size_in_crop(b[..., :2] + (b[..., 2:] - 1.0) / 2.0, b[..., 2:], center, scale)


def box_from_crop(crop_box, center, scale) -> jax.Array:
    """Inverse of :func:`box_in_crop`: crop ``(cx, cy, w, h)`` → frame ``[x, y, w, h]``."""
    c = jnp.asarray(crop_box, jnp.float32)
    scale = jnp.asarray(scale, jnp.float32)
    size = c[..., 2:] / scale
    ctr = c[..., :2] / scale + jnp.asarray(center, jnp.float32)
    return jnp.concatenate([ctr - (size - 1.0) / 2.0, size], axis=-1)


def best_box(scores, boxes) -> jax.Array:
    """The box of the highest-scoring position (no gradient): the untargeted reference of a clean prediction."""
    return jax.lax.stop_gradient(jnp.asarray(boxes)[jnp.argmax(scores)])


# ------------------------------------------------------------------------------------------------ labels


def iou_labels(boxes, ref, pos_iou: float = 0.6, neg_iou: float = 0.3) -> jax.Array:
    """Labels ``[N]``: 1 positive, 0 negative, −1 ignored (see the module docstring); no gradient."""
    boxes = jax.lax.stop_gradient(jnp.asarray(boxes, jnp.float32))
    ref = jax.lax.stop_gradient(jnp.asarray(ref, jnp.float32))
    iou = box_iou(boxes, ref)
    dist = jnp.sum(jnp.square(boxes[:, :2] - ref[:2]), axis=-1)
    best = jnp.where(jnp.max(iou) > 0, jnp.argmax(iou), jnp.argmin(dist))
    pos = (iou > pos_iou) | (jnp.arange(iou.shape[0]) == best)
    neg = (iou < neg_iou) & ~pos
    return jnp.where(pos, 1.0, jnp.where(neg, 0.0, -1.0))


def score_mask(scores, threshold: float = 0.7) -> jax.Array:
    """CSA's attention mask ``s > threshold`` (bool ``[N]``), plus the arg-max if nothing passes; no gradient."""
    scores = jax.lax.stop_gradient(jnp.asarray(scores, jnp.float32))
    return (scores > threshold) | (jnp.arange(scores.shape[0]) == jnp.argmax(scores))


def _labels(boxes, ref, clean: Clean, pos_iou, neg_iou):
    ref_boxes = boxes if clean is None else clean[1]
    return iou_labels(ref_boxes, ref, pos_iou, neg_iou)


def _masked_mean(values, mask):
    mask = mask.astype(values.dtype)
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def box_deltas(boxes, target, norm_size=None) -> jax.Array:
    """Normalised deltas ``((cx − t_x)/n_w, (cy − t_y)/n_h, log(w/t_w), log(h/t_h))`` ``[N, 4]``; ``n`` = the
    target's size unless ``norm_size`` is given."""
    boxes = jnp.asarray(boxes, jnp.float32)
    target = jnp.asarray(target, jnp.float32)
    t_wh = jnp.maximum(target[2:], _MIN_SIDE)
    n_wh = t_wh if norm_size is None else jnp.maximum(jnp.asarray(norm_size, jnp.float32), _MIN_SIDE)
    ctr = (boxes[:, :2] - target[:2]) / n_wh
    size = jnp.log(jnp.maximum(boxes[:, 2:], _MIN_SIDE) / t_wh)
    return jnp.concatenate([ctr, size], axis=-1)


def smooth_l1(d, beta: float = 1.0) -> jax.Array:
    """Huber / smooth-L1: ``0.5 d²/β`` for ``|d| < β``, ``|d| − 0.5β`` beyond (PyTorch's ``smooth_l1_loss``)."""
    a = jnp.abs(d)
    return jnp.where(a < beta, 0.5 * jnp.square(d) / beta, a - 0.5 * beta)


def _bce(scores, targets):
    s = jnp.asarray(scores, jnp.float32)
    return -(targets * jnp.log(s + _DELTA) + (1.0 - targets) * jnp.log(1.0 - s + _DELTA))


# ------------------------------------------------------------------------------------------------ terms


def cls_loss(scores, labels) -> jax.Array:
    """Balanced binary cross entropy ``½·mean_P −log s + ½·mean_Q −log(1 − s)`` (labels from :func:`iou_labels`)."""
    s = jnp.asarray(scores, jnp.float32)
    return 0.5 * _masked_mean(_bce(s, 1.0), labels == 1) + 0.5 * _masked_mean(_bce(s, 0.0), labels == 0)


def reg_loss(boxes, ref, labels, kind: str = "iou") -> jax.Array:
    """Regression error of the positives: ``mean_P (1 − IoU(b, ref))`` or ``mean_P Σ smoothL1(deltas)``."""
    if kind == "iou":
        per = 1.0 - box_iou(boxes, ref)
    elif kind == "smooth_l1":
        per = jnp.sum(smooth_l1(box_deltas(boxes, ref)), axis=-1)
    else:
        raise ValueError(f"regression kind must be 'iou' or 'smooth_l1', got {kind!r}")
    return _masked_mean(per, labels == 1)


# ------------------------------------------------------------------------------------------------ losses


def tracking_loss(
    scores, boxes, gt_box, clean: Clean = None, *, reg_weight: float = 1.0, pos_iou: float = 0.6, neg_iou: float = 0.3
) -> jax.Array:
    """Family-independent tracker training loss ``L_cls + λ·mean_P (1 − IoU)`` against ``gt_box`` (crop coords).

    Smaller is better; template refinement minimises it. Not the families' own training losses (SiamFC++
    focal/centre-ness/IoU, SiamRPN CE + smooth-L1): a common stand-in that every family supports.
    """
    labels = _labels(boxes, gt_box, clean, pos_iou, neg_iou)
    return cls_loss(scores, labels) + reg_weight * reg_loss(boxes, gt_box, labels, "iou")


def dua_loss(
    scores,
    boxes,
    ref_box,
    clean: Clean = None,
    *,
    lam: float = 1.0,
    reg: str = "iou",
    pos_iou: float = 0.6,
    neg_iou: float = 0.3,
) -> jax.Array:
    """Dua-Loss ``L_cls + λ·L_reg`` against the reference box (attack objective, maximise)."""
    labels = _labels(boxes, ref_box, clean, pos_iou, neg_iou)
    return cls_loss(scores, labels) + lam * reg_loss(boxes, ref_box, labels, reg)


def dua_cls_loss(scores, boxes, ref_box, clean: Clean = None, *, pos_iou: float = 0.6, neg_iou: float = 0.3):
    """The classification term of :func:`dua_loss` alone (``--loss cls``: attack the classification head only)."""
    return cls_loss(scores, _labels(boxes, ref_box, clean, pos_iou, neg_iou))


def dua_reg_loss(
    scores, boxes, ref_box, clean: Clean = None, *, reg: str = "iou", pos_iou: float = 0.6, neg_iou: float = 0.3
):
    """The regression term of :func:`dua_loss` alone (``--loss reg``: attack the regression head only)."""
    del scores
    return reg_loss(boxes, ref_box, _labels(boxes, ref_box, clean, pos_iou, neg_iou), reg)


def csa_loss(
    scores,
    boxes,
    ref_box,
    clean: Clean = None,
    *,
    score_thr: float = 0.7,
    cool_margin: float = -5.0,
    shrink_margin: float = -5.0,
    w_cool: float = 0.1,
    w_shrink: float = 1.0,
) -> jax.Array:
    """CSA cooling + shrinking, negated (attack objective, maximise): ``−(w_cool·C + w_shrink·S)``."""
    s = jnp.asarray(scores, jnp.float32)
    b = jnp.asarray(boxes, jnp.float32)
    mask = score_mask(s if clean is None else clean[0], score_thr)
    logit = jnp.log(s + _DELTA) - jnp.log(1.0 - s + _DELTA)
    cooling = _masked_mean(jnp.maximum(logit, cool_margin), mask)
    ref_wh = jnp.maximum(jnp.asarray(ref_box, jnp.float32)[2:], _MIN_SIDE)
    dwh = jnp.log(jnp.maximum(b[:, 2:], _MIN_SIDE) / ref_wh)
    shrinking = _masked_mean(jnp.maximum(dwh[:, 0], shrink_margin), mask) + _masked_mean(
        jnp.maximum(dwh[:, 1], shrink_margin), mask
    )
    return -(w_cool * cooling + w_shrink * shrinking)


def rtaa_pseudo_box(ref_box, key: jax.Array | None = None, shift=(0.4, 0.4), scale: float = 0.8) -> jax.Array:
    """RTAA's pseudo target: centre ``− (r₁·w, r₂·h)``, size ``· r₃``.

    With a key, ``r₁, r₂ ~ U(0.3, 0.5)`` and ``r₃ ~ U(0.7, 0.9)`` as RTAA (which redraws them at every iteration;
    here one draw per attack); without, the middle of those ranges ``(0.4, 0.4, 0.8)`` (or ``shift``/``scale``).
    """
    g = jnp.asarray(ref_box, jnp.float32)
    if key is not None:
        k1, k2 = jax.random.split(key)
        r12 = jax.random.uniform(k1, (2,), jnp.float32, 0.3, 0.5)
        r3 = jax.random.uniform(k2, (), jnp.float32, 0.7, 0.9)
    else:
        r12 = jnp.asarray(shift, jnp.float32)
        r3 = jnp.asarray(scale, jnp.float32)
    return jnp.concatenate([g[:2] - r12 * g[2:], g[2:] * r3])


def rtaa_loss(
    scores,
    boxes,
    ref_box,
    clean: Clean = None,
    *,
    pseudo_box=None,
    w_reg: float = 5.0,
    pos_iou: float = 0.6,
    neg_iou: float = 0.3,
) -> jax.Array:
    """RTAA's adversarial loss, negated (attack objective, maximise); ``pseudo_box`` defaults to
    ``rtaa_pseudo_box(ref_box)``."""
    s = jnp.asarray(scores, jnp.float32)
    ref = jnp.asarray(ref_box, jnp.float32)
    pseudo = rtaa_pseudo_box(ref) if pseudo_box is None else jnp.asarray(pseudo_box, jnp.float32)
    labels = _labels(boxes, ref, clean, pos_iou, neg_iou)
    used = labels >= 0
    y = (labels == 1).astype(jnp.float32)
    ce_truth = _masked_mean(_bce(s, y), used)
    ce_pseudo = _masked_mean(_bce(s, 1.0 - y), used)
    pos = (labels == 1).astype(jnp.float32)

    def reg_sum(target):
        per = jnp.sum(smooth_l1(box_deltas(boxes, target, norm_size=ref[2:])), axis=-1)
        return jnp.sum(per * pos)

    return (ce_truth - ce_pseudo) + w_reg * (reg_sum(ref) - reg_sum(pseudo))


def score_margin_loss(
    scores, boxes, ref_box, clean: Clean = None, *, pos_iou: float = 0.6, neg_iou: float = 0.3
) -> jax.Array:
    """``max_Q s − max_P s``: best background score minus best target score (attack objective, maximise)."""
    s = jnp.asarray(scores, jnp.float32)
    labels = _labels(boxes, ref_box, clean, pos_iou, neg_iou)
    neg_best = jnp.max(jnp.where(labels == 0, s, -jnp.inf))
    pos_best = jnp.max(jnp.where(labels == 1, s, -jnp.inf))
    return jnp.where(jnp.isfinite(neg_best), neg_best, 0.0) - pos_best


LOSSES: dict[str, Callable] = {
    "cls": dua_cls_loss,
    "reg": dua_reg_loss,
    "dua": dua_loss,
    "csa": csa_loss,
    "rtaa": rtaa_loss,
    "margin": score_margin_loss,
    "tracking": tracking_loss,
}
"""Losses by name (for the command line and configs). All take ``(scores, boxes, ref, clean=None)``."""

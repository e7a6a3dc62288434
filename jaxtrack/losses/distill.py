"""Distillation of a point-based teacher (NanoTrack) into a SiamFC++ student: soft targets on the student's grid.

The teacher runs, frozen, on the same training pair as the student (template 127 crop, search crop) and its dense
outputs become soft targets on the student's score-map cells. Everything here is a pure function of the two tracker
configs and the arrays; :mod:`jaxtrack.train.state` calls it inside the jitted train step.

Coordinates: absolute search-crop pixels of the STUDENT's crop (0-based, ``instance_size`` of the student), x to
the right, y down; boxes ``(x1, y1, x2, y2)`` with ``x2 - x1 = w`` (pysot's ``Corner``, the convention of the
training pairs' ground-truth boxes, :mod:`jaxtrack.data.augment`), so teacher boxes and ground-truth boxes are
targets of the same kind for the student's ``box`` output.

* **Same pair, same scale.** Both families crop the search region at the template's scale ``exemplar / s_z``
  with the same context (0.5) and centre it on the crop centre (pixel ``instance_size // 2`` = ``(instance_size -
  1) / 2`` for odd sizes: video_analyst's ``(x_size - 1) / 2``, pysot's ``im_c = search_size // 2``). A student
  crop of side ``Xs`` therefore holds the teacher's crop of side ``Xt <= Xs`` as its central window starting at
  ``o = (Xs - Xt) / 2`` (:func:`search_window_offset`; ``o = 0`` for ``siamfcpp_tiny`` / NanoTrack, both 255;
  24 for the 303 crop of ``siamfcpp_alexnet``). The template crops must have the same size and context.
* **Teacher points** (:func:`teacher_axis`): NanoTrack's ``-(T // 2) * stride + stride * d`` around the crop
  centre (``nanotrack_points``), i.e. ``o + Xt // 2 - (T // 2) * stride + stride * d``: v2 (T 16, stride 16) at
  -1, 15, ..., 239 for ``o = 0``.
* **Student points** (:func:`student_axis`): the densebox cell centres ``score_offset + total_stride * j``,
  ``score_offset = (Xs - 1 - (S - 1) * total_stride) // 2`` (``densebox_centers``): 87, 95, ..., 167 for
  ``siamfcpp_tiny`` (S 11, stride 8). They lie at teacher-grid positions 5.5, 6.0, ..., 10.5.
* **Resampling** (:func:`interp_matrix`, :func:`resample`): bilinear, separable, ``out = Wy @ map @ Wx^T`` with one
  ``[S, T]`` matrix per axis (two non-zero weights per row, summing to 1); a student point outside the teacher's
  grid takes the nearest edge value (clamped). Bilinear interpolation reproduces any map that is an affine
  function of position exactly.
* **Teacher targets** (:func:`teacher_targets`): the foreground probability ``softmax(cls)[..., 1]`` and the box
  corners ``(px - l, py - t, px + r, py + b)`` at every teacher point (NanoTrack's ``_convert_bbox`` in absolute
  pixels), each resampled onto the student's points. The box corners (not the ltrb distances) are resampled:
  where neighbouring teacher points agree on one box, the student's cell gets that box.

Loss (:func:`loss`), both terms normalised over the whole batch:

* ``distill_cls`` -- the Bernoulli KL divergence ``KL(p_t || sigmoid(x)) = BCE_logits(x, p_t) - H(p_t)`` between
  the teacher probability ``p_t`` and the student's classification logit ``x`` (``raw["cls"]``, the focal-loss
  logit), averaged over every cell of every pair (negative pairs included: the teacher saw the same distractor
  crop). It is 0 exactly when ``sigmoid(x) = p_t`` and > 0 otherwise;
* ``distill_reg`` -- the SiamFC++ IoU loss ``-log IoU`` (video_analyst's +1 convention, as the ground-truth term)
  between the student's box and the teacher's box, weighted per cell by ``w = p_t * [p_t >= reg_min_prob]``,
  summed and divided by ``max(sum w, 1)``;
* total ``= cls * distill_cls + reg * distill_reg`` (:class:`DistillWeights`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxtrack.losses.common import bce_with_logits
from jaxtrack.losses.siamfcpp import iou_plus_one

__all__ = [
    "DistillWeights",
    "check_compatible",
    "search_window_offset",
    "teacher_axis",
    "student_axis",
    "interp_matrix",
    "resample",
    "teacher_dense",
    "teacher_search_window",
    "teacher_targets",
    "bernoulli_kl_with_logits",
    "loss",
]

_TINY = float(np.finfo(np.float32).tiny)


@dataclasses.dataclass(frozen=True)
class DistillWeights:
    """Weights of the two distillation terms and the teacher confidence below which a cell gets no box target."""

    cls: float = 1.0
    reg: float = 0.0
    reg_min_prob: float = 0.5


def check_compatible(student_config, teacher_config) -> None:
    """``ValueError`` unless the student is a SiamFC++ tracker and the teacher a NanoTrack one whose template crop
    (size, context) matches and whose search crop fits centred inside the student's (see the module docstring)."""
    s_family, t_family = getattr(student_config, "family", None), getattr(teacher_config, "family", None)
    if s_family != "siamfcpp":
        raise ValueError(f"distillation trains a SiamFC++ student; tracker {student_config.name!r} is of family "
                         f"{s_family!r}")
    if t_family != "nanotrack":
        raise ValueError(f"distill.teacher must be a NanoTrack tracker (point-based dense outputs); "
                         f"{teacher_config.name!r} is of family {t_family!r}")
    if getattr(teacher_config, "opencv_compat", False):
        raise ValueError(f"distill.teacher={teacher_config.name!r} emulates OpenCV's crop loop (measurement only); "
                         f"use nanotrack_v2 / nanotrack_v3")
    for key in ("exemplar_size", "context_amount"):
        a, b = getattr(student_config, key), getattr(teacher_config, key)
        if a != b:
            raise ValueError(f"distill.teacher={teacher_config.name!r}: {key} {b} differs from the student's "
                             f"({student_config.name!r}: {a}); the teacher must see the same template crop")
    search_window_offset(student_config, teacher_config)


def search_window_offset(student_config, teacher_config) -> int:
    """Pixel offset ``o`` of the teacher's search crop inside the student's: ``(Xs - Xt) / 2`` (both crops share
    the template's scale and the centre pixel ``X // 2``). ``ValueError`` when the teacher's crop is larger or the
    difference is odd (no integer-aligned centred window)."""
    xs, xt = int(student_config.instance_size), int(teacher_config.instance_size)
    if xt > xs or (xs - xt) % 2:
        raise ValueError(f"distill.teacher={teacher_config.name!r}: its search crop ({xt} px) must fit centred inside "
                         f"the student's ({student_config.name!r}: {xs} px) with an even difference")
    return (xs - xt) // 2


def _own_axis(teacher_config) -> np.ndarray:
    """``[T]`` float64: NanoTrack's point coordinates in its own search crop, ``Xt // 2 - (T // 2) * stride +
    stride * d`` (:func:`jaxtrack.tracking.nanotrack.nanotrack_points` + the crop centre)."""
    t = teacher_config
    return t.instance_size // 2 - (t.score_size // 2) * t.stride + t.stride * np.arange(t.score_size, dtype=np.float64)


def teacher_axis(student_config, teacher_config) -> np.ndarray:
    """``[T]`` float64: the teacher's point coordinates along one axis, in absolute student-crop pixels
    (``o + Xt // 2 - (T // 2) * stride + stride * d``, d = 0..T-1)."""
    return search_window_offset(student_config, teacher_config) + _own_axis(teacher_config)


def student_axis(student_config) -> np.ndarray:
    """``[S]`` float64: the student's densebox cell centres along one axis, in absolute student-crop pixels
    (``(Xs - 1 - (S - 1) * stride) // 2 + stride * j``, as :func:`jaxtrack.models.heads.densebox_centers`)."""
    c = student_config
    s, stride = c.score_size, c.total_stride
    offset = (c.instance_size - 1 - (s - 1) * stride) // 2
    return offset + stride * np.arange(s, dtype=np.float64)


def interp_matrix(query, source) -> np.ndarray:
    """``[Q, T]`` float32 linear-interpolation weights from values on the evenly spaced, increasing ``source``
    coordinates ``[T]`` (T >= 2) to the ``query`` coordinates ``[Q]`` (same units). Row q has weight ``1 - f`` at
    ``i`` and ``f`` at ``i + 1`` where ``source[i] + f * step = query[q]``; queries outside ``[source[0],
    source[-1]]`` are clamped to the nearest end."""
    query = np.asarray(query, np.float64).reshape(-1)
    source = np.asarray(source, np.float64).reshape(-1)
    if source.size < 2:
        raise ValueError(f"interp_matrix: need at least 2 source coordinates, got {source.size}")
    step = source[1] - source[0]
    if step <= 0 or not np.allclose(np.diff(source), step):
        raise ValueError(f"interp_matrix: source coordinates must be evenly spaced and increasing, got {source}")
    n = source.size
    pos = np.clip((query - source[0]) / step, 0.0, n - 1.0)
    i0 = np.minimum(np.floor(pos).astype(np.int64), n - 2)
    f = pos - i0
    w = np.zeros((query.size, n), np.float64)
    rows = np.arange(query.size)
    w[rows, i0] = 1.0 - f
    w[rows, i0 + 1] += f
    return w.astype(np.float32)


def resample(maps: jax.Array, wy, wx) -> jax.Array:
    """Bilinear resampling of ``maps`` ``[B, T, T]`` or ``[B, T, T, C]`` (rows = y, cols = x) with the per-axis
    weights ``wy`` ``[S, T]`` and ``wx`` ``[R, T]`` (:func:`interp_matrix`): ``[B, S, R(, C)]``,
    ``out[b, s, r] = sum_{t, u} wy[s, t] maps[b, t, u] wx[r, u]`` in full float32 precision."""
    maps = jnp.asarray(maps, jnp.float32)
    squeeze = maps.ndim == 3
    if squeeze:
        maps = maps[..., None]
    hi = jax.lax.Precision.HIGHEST
    out = jnp.einsum("st,btuc->bsuc", jnp.asarray(wy, jnp.float32), maps, precision=hi)
    out = jnp.einsum("ru,bsuc->bsrc", jnp.asarray(wx, jnp.float32), out, precision=hi)
    return out[..., 0] if squeeze else out


def teacher_search_window(x: jax.Array, student_config, teacher_config) -> jax.Array:
    """The teacher's search crop ``[B, Xt, Xt, 3]``: the centred window of the student's ``x`` ``[B, Xs, Xs, 3]``
    (the whole crop when the sizes are equal)."""
    o = search_window_offset(student_config, teacher_config)
    xt = teacher_config.instance_size
    if tuple(x.shape[1:3]) != (student_config.instance_size,) * 2:
        raise ValueError(f"search crops {tuple(x.shape)} do not match the student's instance_size "
                         f"{student_config.instance_size}")
    return x if o == 0 else x[:, o:o + xt, o:o + xt]


def teacher_dense(teacher_config, raw: dict, offset: float = 0.0) -> tuple[jax.Array, jax.Array]:
    """A NanoTrack head output as dense maps on its own grid.

    Args:
      teacher_config: the teacher's :class:`~jaxtrack.tracking.NanoTrackConfig`.
      raw: ``cls`` ``[B, T, T, 2]`` logits (channel 1 foreground), ``loc`` ``[B, T, T, 4]`` (l, t, r, b) pixel
        distances (after ``exp``), as :class:`jaxtrack.models.NanoTrack` returns them.
      offset: added to every coordinate (the teacher window's offset in the student crop).
    Returns:
      ``prob`` ``[B, T, T]`` foreground probability and ``box`` ``[B, T, T, 4]`` (x1, y1, x2, y2) in absolute crop
      pixels (+ ``offset``), point (row i, col j) at ``(axis[j], axis[i])``.
    """
    t = teacher_config
    cls = jnp.asarray(raw["cls"], jnp.float32)
    loc = jnp.asarray(raw["loc"], jnp.float32)
    grid = (t.score_size, t.score_size)
    if tuple(cls.shape[1:]) != grid + (2,) or tuple(loc.shape[1:]) != grid + (4,):
        raise ValueError(f"teacher {t.name!r}: head outputs cls {tuple(cls.shape)} / loc {tuple(loc.shape)} do not "
                         f"match its score_size {t.score_size}")
    prob = jax.nn.softmax(cls, axis=-1)[..., 1]
    axis = offset + _own_axis(t)
    px = jnp.asarray(axis, jnp.float32)[None, None, :]
    py = jnp.asarray(axis, jnp.float32)[None, :, None]
    box = jnp.stack([px - loc[..., 0], py - loc[..., 1], px + loc[..., 2], py + loc[..., 3]], axis=-1)
    return prob, box


def teacher_targets(student_config, teacher_config, raw: dict) -> dict:
    """Soft targets on the student's grid from the teacher's head output ``raw`` (see :func:`teacher_dense`).

    Returns ``prob`` ``[B, S, S]`` (teacher foreground probability at the student's cells) and ``box``
    ``[B, S, S, 4]`` (x1, y1, x2, y2) in absolute student-crop pixels; constant (no gradient).
    """
    o = search_window_offset(student_config, teacher_config)
    prob, box = teacher_dense(teacher_config, raw, offset=o)
    w = interp_matrix(student_axis(student_config), teacher_axis(student_config, teacher_config))
    prob = jnp.clip(resample(prob, w, w), 0.0, 1.0)
    box = resample(box, w, w)
    return jax.lax.stop_gradient({"prob": prob, "box": box})


def _bernoulli_entropy(p: jax.Array) -> jax.Array:
    """``-(p log p + (1 - p) log(1 - p))`` (0 at p = 0 and p = 1)."""
    xlogy = jax.scipy.special.xlogy
    return -(xlogy(p, p) + xlogy(1.0 - p, 1.0 - p))


def bernoulli_kl_with_logits(logits: jax.Array, p: jax.Array) -> jax.Array:
    """Element-wise ``KL(Bernoulli(p) || Bernoulli(sigmoid(logits)))`` = ``BCE_logits(logits, p) - H(p)`` (nats)."""
    p = jnp.asarray(p, jnp.float32)
    return bce_with_logits(logits, p) - _bernoulli_entropy(p)


def loss(raw: dict, targets: dict, weights: DistillWeights = DistillWeights(), gt_targets: dict | None = None):
    """The distillation loss of a SiamFC++ head output against teacher targets (module docstring).

    Args:
      raw: the student's ``cls`` logits ``[B, S, S]`` (or ``[B, S, S, 1]``) and ``box`` ``[B, S, S, 4]``.
      targets: :func:`teacher_targets` (``prob`` ``[B, S, S]``, ``box`` ``[B, S, S, 4]``).
      weights: :class:`DistillWeights`.
      gt_targets: the ground-truth targets of :func:`jaxtrack.losses.siamfcpp.make_targets` (optional), only for
        the diagnostic ``teacher_iou``.
    Returns:
      ``(total, metrics)``: metrics ``distill_cls``, ``distill_reg`` (unweighted), ``distill`` (the weighted sum),
      ``teacher_prob`` (batch mean of the teacher's highest probability on the student's cells),
      ``teacher_weight`` (summed box weight per pair) and, with ``gt_targets``, ``teacher_iou`` (mean IoU between
      the teacher's box and the ground-truth box over the positive cells).
    """
    batch = jnp.asarray(raw["cls"]).shape[0]
    logits = jnp.asarray(raw["cls"], jnp.float32).reshape(-1)
    pred = jnp.asarray(raw["box"], jnp.float32).reshape(-1, 4)
    p = jnp.asarray(targets["prob"], jnp.float32).reshape(-1)
    t_box = jnp.asarray(targets["box"], jnp.float32).reshape(-1, 4)

    cls_term = jnp.mean(bernoulli_kl_with_logits(logits, p))

    w = jnp.where(p >= weights.reg_min_prob, p, 0.0)
    safe_pred = jnp.where((w > 0)[:, None], pred, t_box)  # no NaN from cells that do not count
    iou = iou_plus_one(safe_pred, t_box)
    reg_term = jnp.sum(-jnp.log(jnp.maximum(iou, _TINY)) * w) / jnp.maximum(jnp.sum(w), 1.0)

    total = weights.cls * cls_term + weights.reg * reg_term
    metrics = {
        "distill_cls": cls_term,
        "distill_reg": reg_term,
        "distill": total,
        "teacher_prob": jnp.mean(jnp.max(p.reshape(batch, -1), axis=-1)),
        "teacher_weight": jnp.sum(w) / batch,
    }
    if gt_targets is not None:
        pos = (jnp.asarray(gt_targets["cls"]).reshape(-1) == 1).astype(jnp.float32)
        gt_box = jnp.asarray(gt_targets["box"], jnp.float32).reshape(-1, 4)
        t_iou = iou_plus_one(jnp.where(pos[:, None] > 0, t_box, gt_box), gt_box)
        metrics["teacher_iou"] = jnp.sum(t_iou * pos) / jnp.maximum(jnp.sum(pos), 1.0)
    return total, metrics

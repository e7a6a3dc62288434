"""Adversarial template update (AUTracker seed; published as MTP, Li et al., "Manipulating Template Pixels for
Model Adaptation of Siamese Visual Tracking", code ``lizhenbang56/MTP``).

At initialisation the template crop is refined by a BIM loop that *minimises* the tracker loss on the first frame:

    z_0 = z,   z_{n+1} = Clip_{[0,255] (∩ ε-ball around z)}( z_n − α · sign ∇_z L(z_n, x_0, gt_0) ),   n < N,

where ``x_0`` is the search crop of frame 0 around the ground truth and ``L`` is a loss of the tracker against
the ground-truth box in search-crop coordinates ``(0, 0, w·scale, h·scale)``: by default the tracker family's own training loss
(:mod:`jaxtrack.losses`, all candidate labels, as MTP minimises SiamFC++'s training loss), or with
``loss="generic"`` the family-independent :func:`jaxtrack.attacks.tracking_loss` (labels from the predictions of
the unrefined template, fixed during the loop). The tracker then runs unchanged with the refined template.

Published settings (MTP, SiamFC++ GoogLeNet): α = 0.05 on the 0..255 scale; N = 16 (OTB2015), 2 (VOT2018,
GOT-10k), 32 (TrackingNet) — :data:`MTP_STEPS`. The released code clamps to [0, 255] without an ε-ball
(``eps=None`` here).

Everything is pure and jittable; ``refine_template`` / ``refined_init`` are jitted with ``tracker``, ``steps``,
``alpha``, ``eps`` and ``differentiable`` static, and vmap over sequences (frames of one size)::

    state = refined_init(tracker, variables, frame, box, steps=MTP_STEPS["otb"], alpha=MTP_ALPHA)
    boxes, scores = ...  # tracker.scan_frames(variables, state, frames, valid)

With ``differentiable=True`` the loop is :func:`jaxtrack.attacks.run_attack_unrolled` (straight-through sign),
so an adaptive attacker can differentiate the refined template with respect to the first frame.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxtrack.attacks.core import AttackConfig, run_attack, run_attack_unrolled
from jaxtrack.attacks.crops import predict_pair
from jaxtrack.attacks.losses import tracking_loss
from jaxtrack.losses.siamfcpp import LossWeights as SiamFCppLossWeights
from jaxtrack.tracking.base import TrackState, check_frame_shape, check_init_box
from jaxtrack.tracking.crop import channel_average
from jaxtrack.tracking.wrapper import TrackerWrapper

__all__ = [
    "MTP_ALPHA",
    "MTP_SIAMFCPP_WEIGHTS",
    "MTP_STEPS",
    "REFINE_LOSSES",
    "RefinedTracker",
    "refine_crop",
    "refine_template",
    "refined",
    "refined_init",
    "refinement_loss",
    "refinement_problem",
]

MTP_ALPHA = 0.05
"""MTP's step (pixels, 0..255 scale)."""

MTP_STEPS = {"otb": 16, "vot": 2, "got10k": 2, "trackingnet": 32}
"""MTP's iteration counts per benchmark."""


def refinement_problem(tracker, variables, frame, box):
    """The first-frame pieces: ``(z0, x0, gt_in_crop, clean)`` — template crop, search crop around the ground
    truth, the ground-truth box in search-crop coordinates, and the clean dense predictions (for the labels)."""
    check_frame_shape(frame.shape)
    box = jnp.asarray(box, jnp.float32)
    center, size = tracker.box_to_center_size(box)
    avg = channel_average(frame)
    z0 = tracker.template_crop(frame, center, size, avg)
    x0, scale = tracker.search_crop(frame, center, size, avg)
    gt = jnp.concatenate([jnp.zeros(2, jnp.float32), size * scale])  # the crop is centred on the target
    clean = jax.lax.stop_gradient(predict_pair(tracker, variables, z0, x0))
    return z0, x0, gt, clean


def _refinement_loss(tracker, variables, z, frame, box, loss):
    _, x0, gt, clean = refinement_problem(tracker, variables, frame, box)
    return _pair_loss(tracker, variables, z, x0, gt, clean, loss)


_refinement_loss_jit = jax.jit(_refinement_loss, static_argnums=(0, 5))


def refinement_loss(tracker, variables, z, frame, box, loss: str = "family") -> jax.Array:
    """The loss the refinement minimises, for a template crop ``z`` (jitted; ``generic``: labels from the
    unrefined template)."""
    _checked(frame, box)
    _check_loss(loss)
    return _refinement_loss_jit(tracker, variables, z, frame, box, loss)


REFINE_LOSSES = ("family", "mtp", "generic")
"""``family``: the tracker family's own training loss with its training weights (:mod:`jaxtrack.losses`).
``mtp``: SiamFC++ only, the same loss with the weights of MTP's template update (:data:`MTP_SIAMFCPP_WEIGHTS`).
``generic``: the family-independent :func:`jaxtrack.attacks.tracking_loss` on dense predictions (labels from the
unrefined template)."""


#: The SiamFC++ loss settings of MTP's template update (focal α 0.5, γ 0 — a plain BCE weighted 0.5 — centre-ness
#: weight 1, IoU weight 1), against the training defaults (α 0.25, γ 2, IoU weight 3) that ``family`` uses.
MTP_SIAMFCPP_WEIGHTS = SiamFCppLossWeights(cls=1.0, ctr=1.0, reg=1.0, focal_alpha=0.5, focal_gamma=0.0)


def family_refinement_loss(tracker, variables, z, x0, gt, weights=None):
    """The family's training loss (:func:`jaxtrack.losses.training_loss`, all candidate labels, no sampling) of the
    pair ``(z, x0)`` against ``gt`` (crop coordinates ``(cx, cy, w, h)`` relative to the crop centre); ``weights``
    default to the family's training weights."""
    from jaxtrack import losses

    config = tracker.config
    centre = (config.instance_size - 1) / 2.0  # the pixel the crop is centred on (pysot and video_analyst)
    g = jnp.asarray(gt, jnp.float32)
    xyxy = jnp.concatenate([centre + g[:2] - g[2:] / 2, centre + g[:2] + g[2:] / 2])[None]
    targets = losses.make_targets(config, xyxy, jnp.zeros((1,), bool))
    raw = tracker.head(variables, tracker.embed_template(variables, z), x0)
    return losses.training_loss(config, raw, targets, weights)[0]


def _check_loss(loss: str) -> None:
    if loss not in REFINE_LOSSES:
        raise ValueError(f"refinement loss must be one of {REFINE_LOSSES}, got {loss!r}")


def _pair_loss(tracker, variables, z, x0, gt, clean, loss: str):
    """The refinement loss of template crop ``z``; ``clean``: the unrefined predictions (labels of ``generic``)."""
    if loss == "family":
        return family_refinement_loss(tracker, variables, z, x0, gt)
    if loss == "mtp":
        family = tracker.config.family
        if family != "siamfcpp":
            raise ValueError(f"refinement loss 'mtp' is MTP's SiamFC++ setting; {tracker.name} is family {family!r} "
                             f"(use 'family' or 'generic')")
        return family_refinement_loss(tracker, variables, z, x0, gt, MTP_SIAMFCPP_WEIGHTS)
    scores, boxes = predict_pair(tracker, variables, z, x0)
    return tracking_loss(scores, boxes, gt, clean)


def refine_crop(tracker, variables, z0, x0, gt, steps: int, alpha: float, eps: float | None = None,
                differentiable: bool = False, loss: str = "family"):
    """Refine the template crop ``z0`` [Z,Z,3] against the first search crop ``x0`` [X,X,3] and the ground truth
    ``gt`` (crop coordinates, ``(cx, cy, w, h)`` relative to the crop centre) by descending ``loss`` (one of
    :data:`REFINE_LOSSES`). Pure and traceable."""
    _check_loss(loss)
    clean = None if loss in ("family", "mtp") else jax.lax.stop_gradient(predict_pair(tracker, variables, z0, x0))

    def loss_fn(z):
        return _pair_loss(tracker, variables, z, x0, gt, clean, loss)

    config = AttackConfig(eps=eps, step_size=alpha, steps=steps, norm="linf", maximize=False)
    return (run_attack_unrolled if differentiable else run_attack)(loss_fn, z0, config)


def _refine(tracker, variables, frame, box, steps, alpha, eps, differentiable, loss):
    z0, x0, gt, _ = refinement_problem(tracker, variables, frame, box)
    return refine_crop(tracker, variables, z0, x0, gt, steps, alpha, eps, differentiable, loss)


def _state_with_template(tracker, variables, frame, box, z):
    center, size = tracker.box_to_center_size(jnp.asarray(box, jnp.float32))
    return tracker.init_with_crop(variables, frame, center, size, channel_average(frame), z)


_refine_jit = jax.jit(_refine, static_argnames=("tracker", "steps", "alpha", "eps", "differentiable", "loss"))
_state_with_template_jit = jax.jit(_state_with_template, static_argnums=0)


def _checked(frame, box):
    check_frame_shape(np.shape(frame))
    if not isinstance(box, jax.core.Tracer):
        check_init_box(box, np.shape(frame)[:2])


def _static(steps, alpha, eps):
    AttackConfig(eps=eps, step_size=alpha, steps=steps)  # validates
    return int(steps), float(alpha), None if eps is None else float(eps)


def refine_template(
    tracker,
    variables,
    frame,
    box,
    steps: int,
    alpha: float = MTP_ALPHA,
    eps: float | None = None,
    differentiable: bool = False,
    loss: str = "family",
) -> jax.Array:
    """The refined template crop ``[Z, Z, 3]`` after ``steps`` descent steps of size ``alpha`` (jitted).

    ``frame`` HxWx3 BGR (the first frame), ``box`` ``[x, y, w, h]`` its ground truth; ``eps`` optionally bounds
    the change (L∞, pixel units).
    """
    _checked(frame, box)
    steps, alpha, eps = _static(steps, alpha, eps)
    return _refine_jit(tracker, variables, frame, box, steps=steps, alpha=alpha, eps=eps,
                       differentiable=differentiable, loss=loss)


def refined_init(
    tracker,
    variables,
    frame,
    box,
    steps: int,
    alpha: float = MTP_ALPHA,
    eps: float | None = None,
    differentiable: bool = False,
    loss: str = "family",
) -> TrackState:
    """``tracker.init`` with the template embedding computed from the refined crop (:func:`refine_template`, then
    the embedding and the state; both jitted, the compiled refinement is shared with ``refine_template``)."""
    z = refine_template(tracker, variables, frame, box, steps, alpha, eps, differentiable, loss)
    return _state_with_template_jit(tracker, variables, frame, box, z)


@dataclasses.dataclass(frozen=True)
class RefinedTracker(TrackerWrapper):
    """A tracker whose template is refined at every initialisation (first frame, and VOT re-initialisations):
    ``init_with_crop`` refines the template crop against the frame's search crop around the given box, then
    hands the refined crop to the tracker below. Everything else is the wrapped tracker's. Build with
    :func:`refined`."""

    steps: int = 16
    alpha: float = MTP_ALPHA
    eps: float | None = None
    loss: str = "family"

    @property
    def name(self) -> str:
        alpha = "" if self.alpha == MTP_ALPHA else f"-a{self.alpha:g}"
        eps = "" if self.eps is None else f"-eps{self.eps:g}"
        loss = "" if self.loss == "family" else f"-{self.loss}"
        return f"{self.base.name}_refine{self.steps}{alpha}{eps}{loss}"

    def init_with_crop(self, variables, frame, center, size, channel_avg, z):
        x0, scale = self.base.search_crop(frame, center, size, channel_avg)
        gt = jnp.concatenate([jnp.zeros(2, jnp.float32), size * scale])  # the crop is centred on the target
        z = refine_crop(self.base, variables, z, x0, gt, self.steps, self.alpha, self.eps, loss=self.loss)
        return self.base.init_with_crop(variables, frame, center, size, channel_avg, z)


def refined(tracker, steps: int = MTP_STEPS["otb"], alpha: float = MTP_ALPHA, eps: float | None = None,
            loss: str = "family") -> RefinedTracker:
    """``tracker`` with MTP template refinement at initialisation (``steps`` BIM descent steps of ``alpha`` pixels,
    optionally inside an L∞ ``eps``-ball, on ``loss``: :data:`REFINE_LOSSES`). Equal arguments give equal
    trackers (compiled functions shared)."""
    steps, alpha, eps = _static(steps, alpha, eps)
    _check_loss(loss)
    return RefinedTracker.around(tracker, steps=steps, alpha=alpha, eps=eps, loss=loss)

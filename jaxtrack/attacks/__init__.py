"""Attacks on Siamese trackers, and the adversarial template update — pure, jittable, vmappable.

* :mod:`~jaxtrack.attacks.core` — one projected-gradient loop (FGSM / BIM / PGD / MI-FGSM, L∞ and L2, pixel
  units on the 0..255 scale), plus an unrolled differentiable variant for adaptive attacks;
* :mod:`~jaxtrack.attacks.losses` — tracker losses on ``Tracker.dense_predictions`` (Dua-Loss, CSA, RTAA,
  score margin, the family-independent tracking loss) and crop-coordinate box helpers;
* :mod:`~jaxtrack.attacks.crops` — offline attacks on batches of (template, search) crop pairs;
* :mod:`~jaxtrack.attacks.online` — any tracker under an online attack (template at init, search every frame);
* :mod:`~jaxtrack.attacks.iou` — the IoU attack: decision-based black box, only the tracker's output boxes;
* :mod:`~jaxtrack.attacks.refine` — MTP/AUTracker template refinement at initialisation (``refined(tracker)``).

>>> from jaxtrack import attacks, tracking
>>> tracker = tracking.create("siamrpn_alex"); variables = ...
>>> z_adv, x_adv = attacks.attack_crops(tracker, variables, z, x, ref_boxes, attacks.dua_loss,
...                                     attacks.pgd(eps=8.0, steps=10, step_size=2.0), jax.random.key(0))
>>> state = attacks.refined_init(tracker, variables, frame0, box0, steps=16, alpha=0.05)
"""

from jaxtrack.attacks.core import (
    AttackConfig,
    bim,
    fgsm,
    mi_fgsm,
    pgd,
    project,
    random_init,
    run_attack,
    run_attack_batch,
    run_attack_on_outputs,
    run_attack_unrolled,
    step_direction,
    straight_through_sign,
)
from jaxtrack.attacks.crops import TARGETS, attack_crops, attack_pair, crop_losses, pair_objective, predict_pair
from jaxtrack.attacks.losses import (
    LOSSES,
    best_box,
    box_deltas,
    box_from_crop,
    box_in_crop,
    box_iou,
    center_size_in_crop,
    cls_loss,
    csa_loss,
    dua_cls_loss,
    dua_loss,
    dua_reg_loss,
    iou_labels,
    reg_loss,
    rtaa_loss,
    rtaa_pseudo_box,
    score_margin_loss,
    score_mask,
    smooth_l1,
    tracking_loss,
)
from jaxtrack.attacks.iou import IoUAttackConfig, iou_attack, iou_score
from jaxtrack.attacks.online import (
    ATTACKS,
    AttackedState,
    AttackedTracker,
    OnlineAttack,
    attack_config,
    attacked,
)
from jaxtrack.attacks.refine import (
    MTP_ALPHA,
    MTP_SIAMFCPP_WEIGHTS,
    MTP_STEPS,
    REFINE_LOSSES,
    RefinedTracker,
    refine_crop,
    refined,
    refine_template,
    refined_init,
    refinement_loss,
    refinement_problem,
)

__all__ = [
    "ATTACKS",
    "AttackConfig",
    "AttackedState",
    "AttackedTracker",
    "IoUAttackConfig",
    "OnlineAttack",
    "RefinedTracker",
    "attack_config",
    "attacked",
    "dua_cls_loss",
    "dua_reg_loss",
    "refine_crop",
    "refined",
    "LOSSES",
    "MTP_ALPHA",
    "MTP_SIAMFCPP_WEIGHTS",
    "MTP_STEPS",
    "REFINE_LOSSES",
    "TARGETS",
    "attack_crops",
    "attack_pair",
    "best_box",
    "bim",
    "box_deltas",
    "box_from_crop",
    "box_in_crop",
    "box_iou",
    "center_size_in_crop",
    "cls_loss",
    "crop_losses",
    "csa_loss",
    "dua_loss",
    "fgsm",
    "iou_attack",
    "iou_labels",
    "iou_score",
    "mi_fgsm",
    "pair_objective",
    "pgd",
    "predict_pair",
    "project",
    "random_init",
    "refine_template",
    "refined_init",
    "refinement_loss",
    "refinement_problem",
    "reg_loss",
    "rtaa_loss",
    "rtaa_pseudo_box",
    "run_attack",
    "run_attack_batch",
    "run_attack_on_outputs",
    "run_attack_unrolled",
    "score_margin_loss",
    "score_mask",
    "smooth_l1",
    "step_direction",
    "straight_through_sign",
    "tracking_loss",
]

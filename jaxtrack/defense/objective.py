"""The DuaLossDef training objective: the U-Net(s) of a configuration, adversarial crop pairs, the U-Net's loss.

DuaLossDef (Wu et al., arXiv:2402.17976) puts a U-Net (:class:`jaxtrack.models.unet.DefenseUNet`) in front of
the template and/or search branch of a *frozen* Siamese tracker and trains it adversarially: adversarial crops are
generated with the Dua-Loss (classification + regression, :func:`jaxtrack.attacks.dua_loss`) and the U-Net learns to
make the tracker's own training loss small on them. One evaluation of :func:`defense_objective` on a batch:

1. targets of the family's training loss from the batch boxes (:func:`jaxtrack.losses.make_targets`);
2. adversarial crops (:func:`adversarial_crops`), per pair: PGD (``attack.steps`` steps of ``attack.step_size`` grey
   levels inside an L∞ ball of ``attack.eps``, random start) maximising the attack loss (``attack.loss``, default
   the Dua-Loss with weight ``attack.lam`` on the regression term) against the ground truth: the reference box is
   the ground-truth box in crop coordinates (:func:`gt_ref_boxes`), the labels come from the clean predictions, as
   in :func:`jaxtrack.attacks.pair_objective`. The perturbed crops are the defended branches (``where``; or
   ``attack.target``). ``attack_through_defense=True`` attacks the defended tracker through the CURRENT U-Net
   (true adversarial training, Madry et al.: the gradient of every PGD step goes through the U-Net);
   ``False`` attacks the frozen undefended tracker (the adversarial crops do not depend on the U-Net).
   On negative pairs (the search crop shows another object, ``box`` is that object's) the dense attack losses are
   *minimised* against that box: the adversary makes the tracker take the distractor for the target.
   ``attack.loss="train"`` maximises the family's training loss instead (Madry-style, no Dua-Loss);
3. the U-Net objective
   ``loss.adv · L_train(U(z_adv), U(x_adv)) + loss.clean · L_train(U(z), U(x)) + loss.pix · mean|U(c_adv) − c| / 255``
   with ``L_train`` = :func:`jaxtrack.losses.training_loss` of the family (the tracker's parameters frozen, its
   BatchNorm in eval mode, the U-Net only on the defended branches; the pixel term over the defended branches'
   crops ``c``, on the 0..1 scale). The adversarial and the clean pairs go through the network as one batch of
   ``2B`` (interleaved per sample, so every device keeps its own samples).

U-Net parameters: the ``params`` collection of one :class:`DefenseUNet`, or ``{"template": ..., "search": ...}``
with one U-Net per branch (``DefenseTrainConfig.separate_unets``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxtrack.defense import apply_defense, defended, defended_variables
from jaxtrack.defense.checkpoint import branches
from jaxtrack.defense.config import DefenseAttackConfig, DefenseTrainConfig

__all__ = [
    "DuaLoss",
    "adversarial_crops",
    "attack_settings",
    "branch_variables",
    "defended_tracker",
    "defense_objective",
    "gt_ref_boxes",
    "init_unet_params",
    "make_unets",
]


# ----------------------------------------------------------------------------------------------- U-Nets
def make_unets(config: DefenseTrainConfig) -> dict:
    """``{branch: DefenseUNet}`` for the defended branches (the same module for both when shared)."""
    unet = config.unet.module()
    return {b: unet for b in branches(config.where)}


def init_unet_params(config: DefenseTrainConfig, key) -> Any:
    """Initial U-Net parameters (identity defense): the ``params`` collection of the U-Net, or
    ``{"template": ..., "search": ...}`` with one U-Net per branch."""
    unet = config.unet.module()
    if config.separate_unets:
        kt, ks = jax.random.split(key)
        return {"template": unet.init_variables(kt)["params"], "search": unet.init_variables(ks)["params"]}
    return unet.init_variables(key)["params"]


def abstract_unet_params(config: DefenseTrainConfig):
    """Shapes and dtypes of :func:`init_unet_params` (nothing computed)."""
    unet = config.unet.module()
    side = 2 ** unet.depth
    one = jax.eval_shape(lambda: unet.init(jax.random.key(0), jnp.zeros((1, side, side, 3), jnp.float32)))["params"]
    return {"template": one, "search": one} if config.separate_unets else one


def branch_variables(config: DefenseTrainConfig, params, branch: str) -> dict:
    """The Flax variables ``{"params": ...}`` of the U-Net that defends ``branch``."""
    return {"params": params[branch] if config.separate_unets else params}


def defended_tracker(tracker, tracker_variables, config: DefenseTrainConfig, params):
    """``(tracker wrapped with the U-Net(s) of config, its variables with the U-Net parameters params)``
    (:func:`jaxtrack.defense.defended`; nested wrappers with one U-Net per branch). Traceable: ``params`` may be
    tracers."""
    unet = config.unet.module()
    if config.separate_unets:
        inner = defended(tracker, where="template", unet=unet)
        inner_variables = defended_variables(tracker_variables, branch_variables(config, params, "template"))
        return (defended(inner, where="search", unet=unet),
                defended_variables(inner_variables, branch_variables(config, params, "search")))
    return (defended(tracker, where=config.where, unet=unet),
            defended_variables(tracker_variables, {"params": params}))


def _defend_crops(config: DefenseTrainConfig, params, z, x):
    """(U(z) or z, U(x) or x) for batches of crops, per the defended branches."""
    unet = config.unet.module()
    defended_branches = branches(config.where)
    if "template" in defended_branches:
        z = apply_defense(unet, branch_variables(config, params, "template"), z)
    if "search" in defended_branches:
        x = apply_defense(unet, branch_variables(config, params, "search"), x)
    return z, x


# ----------------------------------------------------------------------------------------------- attack
def gt_ref_boxes(boxes_xyxy, instance_size: int) -> jax.Array:
    """Ground-truth boxes ``(x1, y1, x2, y2)`` in absolute search-crop pixels ``[B, 4]`` -> the attack losses'
    reference boxes ``(cx, cy, w, h)`` relative to the crop centre (pixel ``instance_size // 2``, where every
    family puts the centre of its dense predictions): :func:`jaxtrack.attacks.center_size_in_crop` at scale 1."""
    from jaxtrack.attacks.losses import center_size_in_crop

    b = jnp.asarray(boxes_xyxy, jnp.float32)
    return center_size_in_crop((b[..., :2] + b[..., 2:]) / 2, b[..., 2:] - b[..., :2], float(instance_size // 2), 1.0)


@dataclasses.dataclass(frozen=True)
class DuaLoss:
    """:func:`jaxtrack.attacks.dua_loss` with the regression weight ``lam``, as a loss callable that hashes by value
    (equal weights give equal objects, so it can be a static ``jit`` argument)."""

    lam: float = 1.0

    def __call__(self, scores, boxes, ref_box, clean=None):
        from jaxtrack.attacks import dua_loss

        return dua_loss(scores, boxes, ref_box, clean, lam=self.lam)


def attack_settings(attack: DefenseAttackConfig, budget_scale=1.0):
    """``(AttackConfig, dense loss or None)`` of the training attack (``None`` for ``loss="train"``); ε and the step
    size times ``budget_scale`` (a Python number, or a traced scalar inside the training step: the ε curriculum's
    stage)."""
    from jaxtrack import attacks

    if isinstance(budget_scale, (int, float)) and budget_scale == 1:
        eps, step_size = attack.eps, attack.step_size
    else:
        eps, step_size = attack.eps * budget_scale, attack.step_size * budget_scale
    cfg = attacks.AttackConfig(eps=eps, step_size=step_size, steps=attack.steps, norm="linf",
                               random_start=attack.random_start, restarts=attack.restarts)
    if attack.loss == "train":
        return cfg, None
    if attack.loss == "dua":
        return cfg, DuaLoss(float(attack.lam))
    return cfg, attacks.LOSSES[attack.loss]


def _one_sample(tree):
    return jax.tree_util.tree_map(lambda a: a[None], tree)


def raw_outputs(tracker, tracker_variables, z, x):
    """Raw head outputs of ``tracker`` on batches of crop pairs."""
    return tracker.head(tracker_variables, tracker.embed_template(tracker_variables, z), x)


def adversarial_crops(model, model_variables, z, x, boxes, negative, targets, attack: DefenseAttackConfig,
                      target: str, key, family_config=None, budget_scale=1.0):
    """PGD on a batch of crop pairs against ``model`` (a tracker, possibly defended) with ``model_variables``.

    z ``[B,Z,Z,3]``, x ``[B,X,X,3]`` (float, 0..255), boxes ``[B, 4]`` ground truth (x1, y1, x2, y2) in search-crop
    pixels, negative ``[B]``; ``targets``: the family targets (used with ``attack.loss="train"``). The pairs are
    attacked together (one batched forward/backward per PGD step, one random start for the batch; the objective is
    the sum of the per-pair objectives, whose gradients do not mix: the tracker's BatchNorm is in eval mode and the
    U-Net's GroupNorm is per sample), each pair against its own ground truth with labels from ``model``'s clean
    predictions -- per pair the objective of :func:`jaxtrack.attacks.pair_objective`, with the sign flipped on
    negative pairs and the family's training loss as a further choice.
    Returns ``(z_adv, x_adv, objective_clean [B], objective)`` where ``objective(raw) -> [B]`` evaluates the
    per-pair attack objective on raw head outputs of ``model`` (e.g. at the adversarial crops); no gradient
    flows to the crops.
    """
    from jaxtrack import attacks, losses

    cfg, dense_loss = attack_settings(attack, budget_scale)
    fam = family_config or model.config
    ref = gt_ref_boxes(boxes, fam.instance_size)
    sign = jnp.where(negative, -1.0, 1.0)  # negative pair: pull the tracker onto the distractor
    template0 = model.embed_template(model_variables, z)
    raw0 = jax.lax.stop_gradient(model.head(model_variables, template0, x))
    clean = jax.lax.stop_gradient(model.dense_predictions(raw0))

    def objective(raw):
        if dense_loss is None:
            return jax.vmap(lambda r, t: losses.training_loss(fam, _one_sample(r), _one_sample(t))[0])(raw, targets)
        s, b = model.dense_predictions(raw)
        per = jax.vmap(lambda s, b, r, s0, b0: dense_loss(s, b, r, (s0, b0)))(s, b, ref, clean[0], clean[1])
        return sign * per

    def split(inp):
        return (inp, x) if target == "template" else (z, inp) if target == "search" else inp

    def loss_fn(inp):
        zz, xx = split(inp)
        template = template0 if target == "search" else model.embed_template(model_variables, zz)
        return jnp.sum(objective(model.head(model_variables, template, xx)))

    start = z if target == "template" else x if target == "search" else (z, x)
    adv = attacks.run_attack(loss_fn, start, cfg, key if cfg.random_start else None)
    z_adv, x_adv = split(jax.lax.stop_gradient(adv))
    return z_adv, x_adv, jax.lax.stop_gradient(objective(raw0)), objective


# ----------------------------------------------------------------------------------------------- the objective
def _interleave(a, b):
    """[B,...], [B,...] -> [2B,...] with a_i at 2i and b_i at 2i+1 (each device keeps its own samples)."""
    return jnp.stack([a, b], axis=1).reshape((-1,) + a.shape[1:])


def _deinterleave(tree):
    return (jax.tree_util.tree_map(lambda t: t.reshape((-1, 2) + t.shape[1:])[:, 0], tree),
            jax.tree_util.tree_map(lambda t: t.reshape((-1, 2) + t.shape[1:])[:, 1], tree))


def defense_objective(tracker, config: DefenseTrainConfig):
    """``objective(params, tracker_variables, batch, key, budget_scale=1) -> (total, metrics)`` of one defense step
    (the module docstring says what it computes); the attack's ε and step size are ``config.attack``'s times
    ``budget_scale`` (a float32 scalar, traced in the training step: the ε curriculum's stage).

    batch: ``template`` ``[B,Z,Z,3]``, ``search`` ``[B,X,X,3]`` (uint8 or float BGR 0..255), ``box`` ``[B,4]``
    (x1, y1, x2, y2) in search-crop pixels, ``negative`` ``[B]``. Metrics: ``adv`` and ``clean`` (the two
    training-loss terms, with ``adv_cls`` / ``adv_reg``), ``pix``, ``attack_clean`` / ``attack_adv`` /
    ``attack_gain`` (the attack objective at the clean and at the adversarial crops, and their difference: what the
    attack achieved against the model it attacked), ``attack_eps`` (the budget) and ``undefended_adv`` (the training loss of the undefended
    tracker on the same adversarial crops, for reference).
    """
    from jaxtrack import losses

    fam = tracker.config
    target = config.attack_target
    defended_branches = branches(config.where)
    w = config.loss

    def objective(params, tracker_variables, batch, key, budget_scale=1.0):
        z = jnp.asarray(batch["template"], jnp.float32)
        x = jnp.asarray(batch["search"], jnp.float32)
        boxes = jnp.asarray(batch["box"], jnp.float32)
        negative = jnp.asarray(batch["negative"], bool)
        k_targets, k_attack = jax.random.split(key)
        targets = losses.make_targets(fam, boxes, negative, key=k_targets)

        if config.attack_through_defense:
            model, model_variables = defended_tracker(tracker, tracker_variables, config,
                                                      jax.lax.stop_gradient(params))
        else:
            model, model_variables = tracker, tracker_variables
        z_adv, x_adv, att_clean, att_objective = adversarial_crops(
            model, model_variables, z, x, boxes, negative, targets, config.attack, target, k_attack, fam, budget_scale
        )

        zd, xd = _defend_crops(config, params, _interleave(z_adv, z), _interleave(x_adv, x))
        raw_adv, raw_clean = _deinterleave(raw_outputs(tracker, tracker_variables, zd, xd))
        adv, m_adv = losses.training_loss(fam, raw_adv, targets)
        clean, _ = losses.training_loss(fam, raw_clean, targets)
        pix_terms = []
        if "template" in defended_branches:
            pix_terms.append(jnp.mean(jnp.abs(_deinterleave(zd)[0] - z)))
        if "search" in defended_branches:
            pix_terms.append(jnp.mean(jnp.abs(_deinterleave(xd)[0] - x)))
        pix = sum(pix_terms) / (255.0 * len(pix_terms))
        total = w.adv * adv + w.clean * clean + w.pix * pix

        raw_undefended = jax.lax.stop_gradient(raw_outputs(tracker, tracker_variables, z_adv, x_adv))
        undefended_adv, _ = losses.training_loss(fam, raw_undefended, targets)
        # the attacked model at the adversarial crops: the defended forward above (same parameters) or the
        # undefended one
        att_adv = att_objective(jax.lax.stop_gradient(raw_adv) if config.attack_through_defense else raw_undefended)
        metrics = {
            "adv": adv, "clean": clean, "pix": pix,
            "adv_cls": m_adv["cls"], "adv_reg": m_adv["reg"],
            "attack_clean": jnp.mean(att_clean), "attack_adv": jnp.mean(att_adv),
            "attack_gain": jnp.mean(att_adv - att_clean),
            "undefended_adv": undefended_adv,
            "attack_eps": jnp.float32(config.attack.eps) * budget_scale,  # this step's budget (curriculum stage)
        }
        return total, metrics

    return objective

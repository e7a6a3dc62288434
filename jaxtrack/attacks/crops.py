"""Offline attacks on crop pairs: perturb the template crop, the search crop, or both, of a batch of pairs.

A crop pair is a template crop ``z [Z, Z, 3]`` and a search crop ``x [X, X, 3]`` (BGR, 0..255, as the tracker's
``template_crop`` / ``search_crop`` cut them) and a reference box in search-crop coordinates (``(cx, cy, w, h)``
relative to the crop centre, :func:`jaxtrack.attacks.box_in_crop`). The attacked objective is a tracker loss of
:mod:`jaxtrack.attacks.losses` on ``tracker.dense_predictions(tracker.head(embed(z), x))``:

* ``target="template"`` perturbs ``z``; the template embedding is recomputed from the perturbed ``z`` at every step;
* ``target="search"`` perturbs ``x`` against the fixed clean embedding;
* ``target="both"`` perturbs ``(z, x)`` jointly in one loop (each crop has its own ε budget).

Labels/masks of the losses come from the predictions on the clean pair (``relabel=False``, fixed during the
attack) or from the current predictions at every step (``relabel=True``, as RTAA).

``attack_crops`` is jitted with the tracker, the loss, the configuration and the target as static arguments:
pass the same loss object (not a fresh ``functools.partial`` per call) to reuse the compiled attack. The
single-pair pieces (:func:`pair_objective`, :func:`attack_pair`) are pure and traceable, for online attacks inside
a tracking ``lax.scan`` or adaptive attacks through :func:`jaxtrack.attacks.run_attack_unrolled`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxtrack.attacks.core import AttackConfig, run_attack
from jaxtrack.tracking.branches import WHERE, check_where

__all__ = ["TARGETS", "predict_pair", "pair_objective", "attack_pair", "attack_crops", "crop_losses"]

TARGETS = WHERE  # what an attack perturbs: jaxtrack.tracking.branches


def predict_pair(tracker, variables, z, x) -> tuple[jax.Array, jax.Array]:
    """Dense predictions ``scores [N]``, ``boxes [N, 4]`` of one crop pair (``z [Z,Z,3]``, ``x [X,X,3]``)."""
    return tracker.dense(variables, tracker.embed_template(variables, z), x)


def pair_objective(tracker, variables, z, x, ref_box, loss: Callable, target: str = "search", relabel: bool = False):
    """``(loss_fn, start)`` for attacking one crop pair: ``loss_fn(start') -> scalar`` where ``start`` is ``z``,
    ``x`` or ``(z, x)`` according to ``target``."""
    check_where(target, "target")
    z = jnp.asarray(z, jnp.float32)
    x = jnp.asarray(x, jnp.float32)
    template0 = tracker.embed_template(variables, z)
    clean = None if relabel else jax.lax.stop_gradient(tracker.dense(variables, template0, x))

    def objective(scores_boxes):
        return loss(scores_boxes[0], scores_boxes[1], ref_box, clean)

    if target == "template":
        return (lambda zz: objective(predict_pair(tracker, variables, zz, x))), z
    if target == "search":
        return (lambda xx: objective(tracker.dense(variables, template0, xx))), x
    return (lambda zx: objective(predict_pair(tracker, variables, zx[0], zx[1]))), (z, x)


def attack_pair(
    tracker,
    variables,
    z,
    x,
    ref_box,
    loss: Callable,
    config: AttackConfig,
    key=None,
    target: str = "search",
    relabel: bool = False,
    return_losses: bool = False,
):
    """Attack one crop pair (pure, traceable); returns ``(z_adv, x_adv)`` (the unattacked crop unchanged), plus
    the loss of every iterate ``[steps + 1]`` with ``return_losses``."""
    loss_fn, start = pair_objective(tracker, variables, z, x, ref_box, loss, target, relabel)
    out = run_attack(loss_fn, start, config, key if config.random_start else None, return_losses=return_losses)
    adv, losses = out if return_losses else (out, None)
    if target == "template":
        pair = (adv, jnp.asarray(x, jnp.float32))
    elif target == "search":
        pair = (jnp.asarray(z, jnp.float32), adv)
    else:
        pair = tuple(adv)
    return pair + (losses,) if return_losses else pair


@functools.partial(jax.jit, static_argnames=("tracker", "loss", "config", "target", "relabel", "return_losses"))
def _attack_crops(variables, z, x, ref, key, *, tracker, loss, config, target, relabel, return_losses):
    keys = jax.random.split(key, z.shape[0])

    def one(zi, xi, ri, ki):
        return attack_pair(tracker, variables, zi, xi, ri, loss, config, ki, target, relabel, return_losses)

    return jax.vmap(one)(z, x, ref, keys)


def _check_batch(z, x, ref):
    if z.ndim != 4 or x.ndim != 4 or z.shape[-1] != 3 or x.shape[-1] != 3:
        raise ValueError(f"crops must be [B, S, S, 3]; got template {z.shape}, search {x.shape}")
    if ref.shape != (z.shape[0], 4) or x.shape[0] != z.shape[0]:
        raise ValueError(f"batch mismatch: template {z.shape}, search {x.shape}, ref_boxes {ref.shape} (want [B, 4])")


def attack_crops(
    tracker,
    variables,
    z_crops,
    x_crops,
    ref_boxes,
    loss: Callable,
    config: AttackConfig,
    key: jax.Array | None = None,
    target: str = "search",
    relabel: bool = False,
    return_losses: bool = False,
):
    """Attack a batch of crop pairs (vmapped, jitted).

    Args:
      tracker: a :class:`jaxtrack.tracking.Tracker`; variables: its Flax variables.
      z_crops: ``[B, Z, Z, 3]`` template crops; x_crops: ``[B, X, X, 3]`` search crops (BGR, 0..255).
      ref_boxes: ``[B, 4]`` reference boxes in search-crop coordinates (clean prediction or ground truth).
      loss: ``(scores, boxes, ref, clean) -> scalar`` from :mod:`jaxtrack.attacks.losses` (or your own).
      config: :class:`AttackConfig` (maximise for attacks).
      key: PRNG key (split per example; needed with ``random_start``).
      target: ``"template"``, ``"search"`` or ``"both"``.
      relabel: labels from the current predictions at every step instead of the clean pair.
      return_losses: also return the loss of every iterate, ``[B, steps + 1]`` (index 0: the starting point).
    Returns:
      ``(z_adv [B,Z,Z,3], x_adv [B,X,X,3])`` float32 (the crop that is not attacked is returned unchanged), and
      the losses with ``return_losses``.
    """
    check_where(target, "target")
    z = jnp.asarray(z_crops, jnp.float32)
    x = jnp.asarray(x_crops, jnp.float32)
    ref = jnp.asarray(ref_boxes, jnp.float32)
    _check_batch(z, x, ref)
    if key is None:
        if config.random_start:
            raise ValueError("random_start needs a PRNG key")
        key = jax.random.key(0)
    return _attack_crops(
        variables,
        z,
        x,
        ref,
        key,
        tracker=tracker,
        loss=loss,
        config=config,
        target=target,
        relabel=relabel,
        return_losses=return_losses,
    )


@functools.partial(jax.jit, static_argnames=("tracker", "loss"))
def _crop_losses(variables, z, x, ref, z_clean, x_clean, *, tracker, loss):
    def one(zi, xi, ri, zc, xc):
        clean = jax.lax.stop_gradient(predict_pair(tracker, variables, zc, xc))
        scores, boxes = predict_pair(tracker, variables, zi, xi)
        return loss(scores, boxes, ri, clean)

    return jax.vmap(one)(z, x, ref, z_clean, x_clean)


def crop_losses(tracker, variables, z_crops, x_crops, ref_boxes, loss: Callable, z_clean=None, x_clean=None):
    """``loss`` of each pair ``[B]``, labelled from the clean pairs (``z_clean``/``x_clean``, default: the pairs
    themselves) — the quantity :func:`attack_crops` maximises with ``relabel=False``."""
    z = jnp.asarray(z_crops, jnp.float32)
    x = jnp.asarray(x_crops, jnp.float32)
    ref = jnp.asarray(ref_boxes, jnp.float32)
    _check_batch(z, x, ref)
    zc = z if z_clean is None else jnp.asarray(z_clean, jnp.float32)
    xc = x if x_clean is None else jnp.asarray(x_clean, jnp.float32)
    return _crop_losses(variables, z, x, ref, zc, xc, tracker=tracker, loss=loss)

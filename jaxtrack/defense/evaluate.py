"""How well a trained DuaLossDef U-Net defends, on held-out crop pairs: clean, attacked, defended (non-adaptive and
adaptive attack), per pair (:func:`evaluate_defense`) and as a report of a training workdir (:func:`heldout_report`,
``jaxtrack train-defense --eval-pairs N`` / ``--eval-only``).
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxtrack.defense.config import DEFENSE_DIR, DefenseAttackConfig, DefenseTrainConfig, load_defense_config
from jaxtrack.defense.objective import (
    DuaLoss,
    _one_sample,
    adversarial_crops,
    defended_tracker,
    gt_ref_boxes,
    raw_outputs,
)

__all__ = ["CONDITIONS", "evaluate_defense", "heldout_pairs", "heldout_report"]

#: The conditions of :func:`evaluate_defense`, in report order.
CONDITIONS = ("clean", "attacked", "defended_clean", "defended_transfer", "defended_adaptive")


@functools.partial(jax.jit, static_argnames=("tracker", "config", "attack", "adaptive"))
def _evaluate(params, tvars, z, x, boxes, negative, key, *, tracker, config: DefenseTrainConfig,
              attack: DefenseAttackConfig, adaptive: bool = True):
    """The five conditions of :func:`evaluate_defense` on one batch (the configurations are static: they hash by
    value, so equal configurations share the compiled function)."""
    from jaxtrack import attacks, losses

    fam = tracker.config
    target = attack.target or config.where
    dua = DuaLoss(1.0)

    def measure(model, model_variables, z, x, ref, targets, clean):
        """Per pair: Dua-Loss (labels from the model's clean predictions ``clean``), best-box IoU, family loss."""
        raw = raw_outputs(model, model_variables, z, x)
        scores, pred_boxes = model.dense_predictions(raw)

        def one(s, b, r, s0, b0, rw, t):
            return (dua(s, b, r, (s0, b0)), attacks.box_iou(attacks.best_box(s, b), r),
                    losses.training_loss(fam, _one_sample(rw), _one_sample(t))[0])

        d, iou, tl = jax.vmap(one)(scores, pred_boxes, ref, clean[0], clean[1], raw, targets)
        return {"dua": d, "iou": iou, "train": tl}

    z = jnp.asarray(z, jnp.float32)
    x = jnp.asarray(x, jnp.float32)
    boxes = jnp.asarray(boxes, jnp.float32)
    targets = losses.make_targets(fam, boxes, negative, key=None)
    ref = gt_ref_boxes(boxes, fam.instance_size)
    defended, dvars = defended_tracker(tracker, tvars, config, params)
    k1, k2 = jax.random.split(key)
    za, xa, _, _ = adversarial_crops(tracker, tvars, z, x, boxes, negative, targets, attack, target, k1, fam)
    clean_u = tracker.dense_predictions(raw_outputs(tracker, tvars, z, x))
    clean_d = defended.dense_predictions(raw_outputs(defended, dvars, z, x))
    out = {
        "clean": measure(tracker, tvars, z, x, ref, targets, clean_u),
        "attacked": measure(tracker, tvars, za, xa, ref, targets, clean_u),
        "defended_clean": measure(defended, dvars, z, x, ref, targets, clean_d),
        "defended_transfer": measure(defended, dvars, za, xa, ref, targets, clean_d),
    }
    if adaptive:
        zd, xd, _, _ = adversarial_crops(defended, dvars, z, x, boxes, negative, targets, attack, target, k2, fam)
        out["defended_adaptive"] = measure(defended, dvars, zd, xd, ref, targets, clean_d)
    return out


def evaluate_defense(tracker, tracker_variables, config: DefenseTrainConfig, params, batch, key=None,
                     attack: DefenseAttackConfig | None = None, adaptive: bool = True) -> dict:
    """The defense on a batch of crop pairs, per pair (NumPy ``[B]`` arrays), in five conditions:

    ``clean`` (undefended tracker, clean crops), ``attacked`` (undefended, PGD against it), ``defended_clean``,
    ``defended_transfer`` (defended, fed the crops attacked against the undefended tracker: the non-adaptive
    attack) and ``defended_adaptive`` (defended, PGD through the U-Net). Each gives ``dua`` (Dua-Loss against
    the ground truth, labels from that model's clean predictions; larger = worse), ``iou`` (IoU of the best-scoring
    box with the ground truth) and ``train`` (the family's training loss). ``attack`` defaults to the training
    attack (``config.attack``); positive pairs are what these numbers mean something for. ``adaptive=False``
    leaves out ``defended_adaptive`` (a cheaper program: no PGD through the U-Net).
    """
    attack = attack or config.attack
    key = jax.random.key(0) if key is None else key
    out = _evaluate(params, tracker_variables, batch["template"], batch["search"], batch["box"],
                    np.asarray(batch["negative"], bool), key, tracker=tracker, config=config, attack=attack,
                    adaptive=adaptive)
    return jax.tree_util.tree_map(np.asarray, jax.device_get(out))


def heldout_pairs(config: DefenseTrainConfig, tracker, root, pairs: int = 32, seed: int = 1000,
                  sample_seed: int | None = None) -> dict:
    """A batch of ``pairs`` positive crop pairs (the run's crop sizes and augmentation) from synthetic sequences
    generated into ``root`` with the dataset seed ``seed`` (sequence ``i`` from ``SeedSequence([seed, i])``; the
    recipes train on seed 0, so any other seed is held out), drawn with ``sample_seed`` (default ``seed``)."""
    from jaxtrack.data import load_dataset
    from jaxtrack.data.pairs import PAIR_KEYS
    from jaxtrack.data.pipeline import make_sampler
    from jaxtrack.data.synthetic import SyntheticConfig, generate_dataset
    from jaxtrack.train.loop import pair_config

    d = config.data
    n_seq = max(4, pairs // 4)
    generate_dataset(root, n_seq, SyntheticConfig(num_frames=d.synthetic_frames, height=d.synthetic_height,
                                                  width=d.synthetic_width), seed=seed)
    cfg = dataclasses.replace(pair_config(config, tracker), negative_rate=0.0)
    sampler = make_sampler(load_dataset("synthetic", root)[:n_seq], cfg, seed=seed if sample_seed is None else sample_seed)
    examples = [sampler.sample(i) for i in range(pairs)]
    return {k: np.stack([e[k] for e in examples]) for k in PAIR_KEYS}


def heldout_report(workdir, pairs: int = 32, seed: int = 1000, attack_steps: int = 10, batch: int = 8,
                   tracker=None, tracker_variables=None) -> dict:
    """The exported defense of ``workdir`` on held-out synthetic pairs, against PGD-``attack_steps`` on the
    Dua-Loss (the training ε): means of :func:`evaluate_defense`'s numbers per condition, plus the success rate
    (best-box IoU > 0.5)."""
    from jaxtrack.defense import load_defense
    from jaxtrack.defense.trainer import load_tracker

    workdir = Path(workdir)
    config = load_defense_config(workdir)
    if tracker_variables is None:
        tracker, tracker_variables, _ = load_tracker(config, tracker)
    if config.separate_unets:
        params = {b: load_defense(workdir / f"{DEFENSE_DIR}_{b}").variables["params"] for b in ("template", "search")}
    else:
        params = load_defense(workdir / DEFENSE_DIR).variables["params"]
    data = heldout_pairs(config, tracker, workdir / "heldout_data", pairs, seed)
    attack = dataclasses.replace(config.attack, steps=attack_steps, step_size=2.5 * config.attack.eps / attack_steps,
                                 random_start=True)
    rows: dict = {}
    for i in range(0, pairs, batch):
        part = {k: v[i:i + batch] for k, v in data.items()}
        out = evaluate_defense(tracker, tracker_variables, config, params, part, jax.random.key(seed + i), attack)
        for cond, vals in out.items():
            for k, v in vals.items():
                rows.setdefault(cond, {}).setdefault(k, []).append(v)
    report = {}
    for cond, vals in rows.items():
        iou = np.concatenate(vals["iou"])
        report[cond] = {"dua": float(np.mean(np.concatenate(vals["dua"]))), "iou": float(np.mean(iou)),
                        "success@0.5": float(np.mean(iou > 0.5)),
                        "train": float(np.mean(np.concatenate(vals["train"])))}
    report["pairs"] = pairs
    report["attack"] = f"PGD-{attack_steps} eps {config.attack.eps} step {attack.step_size:.2f} ({config.attack.loss}, " \
                       f"target {attack.target or config.where})"
    return report

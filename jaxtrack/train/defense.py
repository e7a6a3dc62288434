"""Adversarial training of the DuaLossDef U-Net pre-processor with the Dua-Loss: data-parallel, exactly resumable.

DuaLossDef (Zhang et al., arXiv:2402.17976) puts a U-Net (:class:`jaxtrack.models.unet.DefenseUNet`) in front of
the template and/or search branch of a *frozen* Siamese tracker and trains it adversarially: adversarial crops are
generated with the Dua-Loss (classification + regression, :func:`jaxtrack.attacks.dua_loss`) and the U-Net learns to
make the tracker's own training loss small on them. Run a named configuration with::

    jaxtrack train-defense --config NAME --workdir DIR [--steps N] [--set key=value ...]
    python -m jaxtrack.train.defense_cli --config NAME --workdir DIR ...        # the same, without the wiring

Running the same command again resumes exactly where the last checkpoint left off. ``--set`` takes dotted paths
into :class:`DefenseTrainConfig` with the parser of :mod:`jaxtrack.train.config` (``attack.steps=5``,
``unet.width=16``, ``loss.pix=0.1``, ``optim.lr=3e-4``, ``tracker_weights=runs/tiny/weights``,
``data.source=vot2018``, ``data.root=../shared/data/sequences/VOT2018``).

Named configurations (each function's docstring has its run command):

* ``unet_nanotrack``     -- the real NanoTrack v2 weights, synthetic + real OTB sequences, the CPU recipe;
* ``unet_siamfcpp_tiny`` -- the project's compact ``siamfcpp_tiny`` (its bundled weights), same data;
* ``unet_siamrpnpp_got10k``      -- the published setting: SiamRPN++ R50 on GOT-10k, full scale, for accelerators.

One training step (:func:`make_defense_train_step`, ONE ``jax.jit`` on the ``data`` mesh: U-Net parameters and
optimizer state replicated, the batch split over ``data``, the tracker variables replicated and frozen):

1. targets of the family's training loss from the batch boxes (:func:`jaxtrack.losses.make_targets`);
2. adversarial crops, per pair: PGD (``attack.steps`` steps of ``attack.step_size`` grey levels inside an L∞ ball of
   ``attack.eps``, random start) maximising the attack loss (``attack.loss``, default the Dua-Loss with weight
   ``attack.lam`` on the regression term) against the ground truth: the reference box is the ground-truth box in
   crop coordinates (:func:`gt_ref_boxes`), the labels come from the clean predictions, as in
   :func:`jaxtrack.attacks.pair_objective`. The perturbed crops are the defended branches (``where``; or
   ``attack.target``). ``attack_through_defense=True`` attacks the defended tracker through the CURRENT U-Net
   (true adversarial training, Madry et al.: the gradient of every PGD step goes through the U-Net);
   ``False`` attacks the frozen undefended tracker (the adversarial crops do not depend on the U-Net).
   On negative pairs (the search crop shows another object, ``box`` is that object's) the dense attack losses are
   *minimised* against that box: the adversary makes the tracker take the distractor for the target.
   ``attack.loss="train"`` maximises the family's training loss instead (Madry-style, no Dua-Loss);
3. the update of the U-Net parameters minimising
   ``loss.adv · L_train(U(z_adv), U(x_adv)) + loss.clean · L_train(U(z), U(x)) + loss.pix · mean|U(c_adv) − c| / 255``
   with ``L_train`` = :func:`jaxtrack.losses.training_loss` of the family (the tracker's parameters frozen, its
   BatchNorm in eval mode, the U-Net only on the defended branches; the pixel term over the defended branches'
   crops ``c``, on the 0..1 scale). The adversarial and the clean pairs go through the network as one batch of
   ``2B`` (interleaved per sample, so every device keeps its own samples).

Metrics per step (``metrics.jsonl``): ``loss`` (the weighted total), ``adv`` and ``clean`` (the two training-loss
terms, with ``adv_cls`` / ``adv_reg``), ``pix``, ``attack_clean`` / ``attack_adv`` / ``attack_gain`` (the attack
objective at the clean and at the adversarial crops, and their difference: what the attack achieved against the
model it attacked), ``undefended_adv`` (the training loss of the undefended tracker on the same adversarial crops,
for reference), ``lr``, ``grad_norm``, ``pairs_per_s``.

What lands in ``workdir`` (the layout of :func:`jaxtrack.train.train`): ``config.json``; ``checkpoints/<step>/``
(orbax: U-Net params, optimizer state, step, PRNG key AND the grain iterator position, so a resumed run draws the
batches the uninterrupted run would have drawn and ends where it would have ended); ``metrics.jsonl``;
``loss.png``; and at the end ``defense/`` -- the trained U-Net as a :func:`jaxtrack.defense.save_defense` folder
(card with family, tracker, crop sizes, where, this configuration and the training data), loadable with
``jaxtrack.defense.defended_from_checkpoint(tracker, "WORKDIR/defense")``. With one U-Net per branch
(``unet.shared=false``, ``where=both``) the two are ``defense_template/`` and ``defense_search/``;
:func:`load_trained_defense` wraps a tracker with whatever the workdir holds.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxtrack.train.config import (
    ConfigError,
    DataConfig,
    OptimConfig,
    _flat_keys,
    apply_overrides,
    config_from_dict,
    config_to_dict,
)
from jaxtrack.train.mesh import (
    batch_sharding,
    make_data_mesh,
    replicate,
    replicated,
    shard_batch,
)
from jaxtrack.train.runner import (
    METRICS_FILE,
    host_copy,
    initial_state,
    local_batch_size,
    plot_metrics,
    run_loop,
    start_run,
)
from jaxtrack.train.state import TrainState, check_prefixes, create_train_state, make_optimizer

__all__ = [
    "DEFENSE_CONFIGS",
    "DEFENSE_DIR",
    "WHERE",
    "DefenseAttackConfig",
    "DefenseLossConfig",
    "DefenseTrainConfig",
    "DefenseTrainResult",
    "UNetConfig",
    "adversarial_crops",
    "apply_defense_overrides",
    "attack_settings",
    "branch_variables",
    "defended_tracker",
    "defense_branches",
    "defense_optimizer",
    "evaluate_defense",
    "export_defense",
    "get_defense_config",
    "gt_ref_boxes",
    "heldout_pairs",
    "heldout_report",
    "init_defense_state",
    "init_unet_params",
    "load_defense_config",
    "load_tracker",
    "load_trained_defense",
    "make_defense_train_step",
    "make_unets",
    "train_defense",
    "unet_nanotrack",
    "unet_siamfcpp_tiny",
    "unet_siamrpnpp_got10k",
]

WHERE = ("template", "search", "both")
ATTACK_TARGETS = ("", "template", "search", "both")
DEFENSE_DIR = "defense"
CONFIG_FILE = "config.json"


def _check_choice(key: str, value: str, choices) -> None:
    if value not in choices:
        shown = ", ".join(repr(c) if c == "" else c for c in choices)
        raise ConfigError(f"{key} must be one of {shown}; got {value!r}")


# ----------------------------------------------------------------------------------------------- configs
@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """Hyper-parameters of :class:`~jaxtrack.models.unet.DefenseUNet` (its docstring has the architecture), and
    ``shared``: one U-Net for both branches (default) or, with ``where=both`` and ``shared=false``, one per branch.
    """

    depth: int = 3
    width: int = 16
    convs: int = 2
    norm: str = "group"
    groups: int = 8
    down: str = "conv"
    up: str = "resize"
    pad_mode: str = "reflect"
    activation: str = "relu"
    shared: bool = True

    def __post_init__(self):
        try:
            self.module()._check()
        except ValueError as err:
            raise ConfigError(f"unet: {err}") from None

    def module(self):
        """The :class:`DefenseUNet` (zero-initialised output layer: the identity at step 0)."""
        from jaxtrack.models.unet import DefenseUNet

        kw = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "shared"}
        return DefenseUNet(**kw)


@dataclasses.dataclass(frozen=True)
class DefenseAttackConfig:
    """The attack that makes the adversarial training crops (L∞ PGD, budgets in grey levels of 0..255 crops).

    loss: a name of :data:`jaxtrack.attacks.LOSSES` (``dua`` = Dua-Loss, the paper's; ``cls``, ``reg``, ``csa``,
      ``rtaa``, ``margin``, ``tracking``) or ``train`` (the family's training loss, maximised).
    lam: the Dua-Loss weight of the regression term (``L_cls + lam · L_reg``; ``loss=dua`` only).
    target: which crops are perturbed: ``template``, ``search``, ``both``; ``""`` = the defended branches.
    """

    steps: int = 5
    eps: float = 8.0
    step_size: float = 2.0
    random_start: bool = True
    loss: str = "dua"
    lam: float = 1.0
    target: str = ""

    def __post_init__(self):
        from jaxtrack.attacks import LOSSES

        _check_choice("attack.loss", self.loss, tuple(LOSSES) + ("train",))
        _check_choice("attack.target", self.target, ATTACK_TARGETS)
        if self.steps < 0:
            raise ConfigError(f"attack.steps must be >= 0, got {self.steps}")
        if self.eps < 0 or self.step_size < 0:
            raise ConfigError(f"attack.eps and attack.step_size must be >= 0, got {self.eps}, {self.step_size}")


@dataclasses.dataclass(frozen=True)
class DefenseLossConfig:
    """Weights of the U-Net objective ``adv · L_train(U(adv)) + clean · L_train(U(clean)) + pix · |U(adv) − clean|``
    (the pixel term: mean absolute difference on the 0..1 scale over the defended branches' crops)."""

    adv: float = 1.0
    clean: float = 1.0
    pix: float = 0.0

    def __post_init__(self):
        if min(self.adv, self.clean, self.pix) < 0 or self.adv + self.clean + self.pix <= 0:
            raise ConfigError(f"loss weights must be >= 0 and not all 0, got adv={self.adv} clean={self.clean} "
                              f"pix={self.pix}")


def _defense_optim(**changes) -> OptimConfig:
    base = dict(name="adamw", lr=1e-3, weight_decay=1e-4, schedule="cosine", warmup_steps=20, warmup_init_lr=1e-5,
                end_lr=1e-5, backbone_prefixes=(), backbone_lr_mult=1.0, clip_grad_norm=10.0)
    base.update(changes)
    return OptimConfig(**base)


@dataclasses.dataclass(frozen=True)
class DefenseTrainConfig:
    """One adversarial training run of the DuaLossDef U-Net (``batch_size`` is global; it must divide by the number
    of devices).

    tracker: a :mod:`jaxtrack.tracking` name (its network, crop sizes and training loss are used; frozen).
    tracker_weights: ``shared`` (the real checkpoint in the shared data folder: NanoTrack), ``bundled`` (the weights
      that ship inside the package: ``siamfcpp_tiny``), a path (a folder of
      ``jaxtrack convert``, a ``jaxtrack train`` export ``WORKDIR/weights``, an orbax directory or a PyTorch
      checkpoint), or ``random`` (random tracker weights: tests only).
    where: the defended branch(es): ``template``, ``search`` or ``both``.
    attack_through_defense: generate the adversarial crops against the defended tracker through the current U-Net
      (true adversarial training) instead of against the frozen undefended tracker.
    """

    name: str
    tracker: str
    steps: int
    batch_size: int
    tracker_weights: str = "shared"
    where: str = "both"
    unet: UNetConfig = dataclasses.field(default_factory=UNetConfig)
    attack: DefenseAttackConfig = dataclasses.field(default_factory=DefenseAttackConfig)
    attack_through_defense: bool = True
    loss: DefenseLossConfig = dataclasses.field(default_factory=DefenseLossConfig)
    optim: OptimConfig = dataclasses.field(default_factory=_defense_optim)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    seed: int = 0
    log_every: int = 10
    save_every: int = 100
    keep: int = 3

    def __post_init__(self):
        _check_choice("where", self.where, WHERE)
        for key in ("steps", "batch_size", "log_every", "save_every", "keep"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")

    @property
    def attack_target(self) -> str:
        return self.attack.target or self.where


#: The curves of a defense run's plot: the U-Net objective, its adversarial and clean terms (the tracker's training
#: loss on the defended adversarial / clean crops), the pixel term, and the training loss of the undefended tracker
#: on the same adversarial crops (what the U-Net is removing).
DEFENSE_PLOT_TERMS = ("loss", "adv", "clean", "pix", "undefended_adv")


# ----------------------------------------------------------------------------------------------- recipes
#: Real sequences the shipped defenses are trained on; every other real sequence in the shared data folder
#: (OTB Crossing, Couple, KiteSurf, Football1 and VOT2018 bag) is kept for evaluation.
TRAINING_REAL_SEQUENCES = ("David", "Jogging-2")


def unet_nanotrack() -> DefenseTrainConfig:
    """The CPU recipe of the shipped NanoTrack defense: a small U-Net in front of both branches of the real
    NanoTrack v2 (``nanotrackv2.pth`` from the shared data folder), trained on adversarial crops of synthetic
    sequences and of two real OTB sequences (~25 min on a 2-core CPU).

    Run::

        jaxtrack train-defense --config unet_nanotrack --workdir runs/unet_nanotrack --eval-pairs 32

    U-Net depth 3, width 8, one conv per block (GroupNorm 4 groups, 64 K parameters), one U-Net for both
    branches; PGD-3 (ε = 8 grey levels, step 4, random start) on the Dua-Loss (λ = 1) against the frozen NanoTrack
    (``attack_through_defense=false``: the crops are attacked once per step without the U-Net, as a
    high-level-guided denoiser is trained; on this CPU the U-Net's backward passes cost more than NanoTrack's,
    so attacking through it makes a step ~1.6x slower (7.9 vs 12.7 s per step of 8 pairs, both runs side by side
    on the loaded 2-core CPU) -- ``--set attack_through_defense=true`` for true adversarial training); adv and
    clean terms weighted 1 / 1; AdamW lr 1e-3, 20 warm-up steps, cosine to 1e-5;
    600 steps of 8 pairs with pysot-style augmentation, drawn from 32 synthetic sequences (seeds 0..31; 1000+ are
    kept for held-out checks) and the real OTB sequences :data:`TRAINING_REAL_SEQUENCES` (David, Jogging-2; each
    listed 8 times, so a third of the pairs are real). The other real sequences are never trained on.
    ``--set data.extra_source=`` trains on synthetic sequences only.
    """
    return DefenseTrainConfig(
        name="unet_nanotrack",
        tracker="nanotrack_v2",
        tracker_weights="shared",
        where="both",
        steps=600,
        batch_size=8,
        unet=UNetConfig(depth=3, width=8, convs=1, groups=4),
        attack=DefenseAttackConfig(steps=3, eps=8.0, step_size=4.0, random_start=True, loss="dua", lam=1.0),
        attack_through_defense=False,
        loss=DefenseLossConfig(adv=1.0, clean=1.0, pix=0.0),
        optim=_defense_optim(lr=1e-3, warmup_steps=20),
        data=DataConfig(
            source="synthetic", synthetic_sequences=32, synthetic_frames=60, synthetic_seed=0, style="pysot",
            negative_rate=0.1, max_gap=30, shift=64.0, scale=0.18, crop_size=383,
            extra_source="otb100", extra_sequences=TRAINING_REAL_SEQUENCES, extra_repeat=8,
        ),
        log_every=5,
        save_every=50,
        keep=3,
    )


def unet_siamfcpp_tiny() -> DefenseTrainConfig:
    """The CPU recipe of the shipped defense of the project's compact SiamFC++ (``siamfcpp_tiny``, z 127 / x 255,
    the weights that ship with jaxtrack).

    Run::

        jaxtrack train-defense --config unet_siamfcpp_tiny --workdir runs/unet_siamfcpp_tiny --eval-pairs 32

    As ``unet_nanotrack`` (small U-Net on both branches, PGD-3 Dua-Loss against the frozen tracker, 8 pairs from
    32 synthetic sequences and OTB David / Jogging-2) with the tracker's own data settings (video_analyst-style
    augmentation) and 300 steps: a step costs twice NanoTrack's on this CPU (~25 min).
    """
    base = unet_nanotrack()
    return dataclasses.replace(
        base,
        name="unet_siamfcpp_tiny",
        tracker="siamfcpp_tiny",
        tracker_weights="bundled",
        steps=300,
        data=dataclasses.replace(base.data, style="siamfcpp", shift=0.4, scale=0.3),
    )


def _nanotrack_trained_against(loss: str) -> DefenseTrainConfig:
    """``unet_nanotrack`` with the training attack on ``loss`` only, named ``unet_nanotrack_<loss>``."""
    base = unet_nanotrack()
    return dataclasses.replace(base, name=f"unet_nanotrack_{loss}", attack=dataclasses.replace(base.attack, loss=loss))


def unet_nanotrack_cls() -> DefenseTrainConfig:
    """The loss ablation of ``unet_nanotrack``: the training attack maximises the classification loss only (the
    U-Net is still trained on the tracker's full loss). Everything else as ``unet_nanotrack``.

    Run::

        jaxtrack train-defense --config unet_nanotrack_cls --workdir runs/unet_nanotrack_cls --eval-pairs 32
    """
    return _nanotrack_trained_against("cls")


def unet_nanotrack_reg() -> DefenseTrainConfig:
    """The loss ablation of ``unet_nanotrack``: the training attack maximises the regression loss only.

    Run::

        jaxtrack train-defense --config unet_nanotrack_reg --workdir runs/unet_nanotrack_reg --eval-pairs 32
    """
    return _nanotrack_trained_against("reg")


def unet_siamrpnpp_got10k() -> DefenseTrainConfig:
    """The published setting: DuaLossDef in front of both branches of SiamRPN++ ResNet-50 (pysot
    ``siamrpn_r50_l234_dwxcorr``), trained on GOT-10k train at full scale -- for accelerators.

    Run::

        jaxtrack train-defense --config unet_siamrpnpp_got10k --workdir runs/unet_rpnpp \\
            --set tracker_weights=/path/to/siamrpn_r50_l234_dwxcorr/model.pth --set data.root=/data/GOT-10k/train

    The paper gives no U-Net size, attack budget or schedule; these are ours: the default U-Net (depth 3, width 16,
    ~0.5 M parameters), PGD-10 (ε = 8, step 2, random start) on the Dua-Loss through the current U-Net, 30,000
    steps of 32 pairs, AdamW lr 1e-3 with 1,000 warm-up steps and a cosine decay, pysot's augmentation.
    """
    return DefenseTrainConfig(
        name="unet_siamrpnpp_got10k",
        tracker="siamrpnpp_r50",
        tracker_weights="",
        where="both",
        steps=30_000,
        batch_size=32,
        unet=UNetConfig(),
        attack=DefenseAttackConfig(steps=10, eps=8.0, step_size=2.0, random_start=True, loss="dua", lam=1.0),
        attack_through_defense=True,
        loss=DefenseLossConfig(adv=1.0, clean=1.0, pix=0.0),
        optim=_defense_optim(lr=1e-3, warmup_steps=1_000),
        data=DataConfig(
            source="got10k-train", style="pysot", negative_rate=0.2, max_gap=100, shift=64.0, scale=0.18,
            blur=0.2, color=1.0, template_shift=4.0, template_scale=0.05, template_color=1.0,
            pairs_per_epoch=600_000, workers=8,
        ),
        log_every=20,
        save_every=1_000,
        keep=3,
    )


DEFENSE_CONFIGS: dict[str, Callable[[], DefenseTrainConfig]] = {
    "unet_nanotrack": unet_nanotrack,
    "unet_siamfcpp_tiny": unet_siamfcpp_tiny,
    "unet_nanotrack_cls": unet_nanotrack_cls,
    "unet_nanotrack_reg": unet_nanotrack_reg,
    "unet_siamrpnpp_got10k": unet_siamrpnpp_got10k,
}


def apply_defense_overrides(config: DefenseTrainConfig, overrides) -> DefenseTrainConfig:
    """:func:`jaxtrack.train.config.apply_overrides` on a :class:`DefenseTrainConfig` (unknown keys are reported
    with this configuration's keys)."""
    try:
        return apply_overrides(config, overrides)
    except ConfigError as err:
        if "unknown config key" not in str(err):
            raise
        import difflib

        key = str(err).split(":", 1)[0].removeprefix("--set ").strip()
        keys = _flat_keys(DefenseTrainConfig)
        close = difflib.get_close_matches(key, keys, n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise ConfigError(f"--set {key}: unknown config key{hint} Known keys: {', '.join(keys)}") from None


def get_defense_config(name: str, overrides=()) -> DefenseTrainConfig:
    """The named configuration with ``key=value`` overrides applied."""
    if name not in DEFENSE_CONFIGS:
        raise ConfigError(f"unknown defense training config {name!r}; known: {', '.join(sorted(DEFENSE_CONFIGS))}")
    return apply_defense_overrides(DEFENSE_CONFIGS[name](), overrides)


def load_defense_config(workdir) -> DefenseTrainConfig:
    """The configuration recorded in ``workdir/config.json``."""
    path = Path(workdir) / CONFIG_FILE
    return config_from_dict(json.loads(path.read_text(encoding="utf-8")), DefenseTrainConfig)


# ----------------------------------------------------------------------------------------------- U-Nets
def defense_branches(where: str) -> tuple[str, ...]:
    """The crop branches a ``where`` setting defends."""
    _check_choice("where", where, WHERE)
    return ("template", "search") if where == "both" else (where,)


def _separate(config: DefenseTrainConfig) -> bool:
    return config.where == "both" and not config.unet.shared


def make_unets(config: DefenseTrainConfig) -> dict:
    """``{branch: DefenseUNet}`` for the defended branches (the same module for both when shared)."""
    unet = config.unet.module()
    return {b: unet for b in defense_branches(config.where)}


def init_unet_params(config: DefenseTrainConfig, key) -> Any:
    """Initial U-Net parameters (identity defense): the ``params`` collection of the U-Net, or
    ``{"template": ..., "search": ...}`` with one U-Net per branch."""
    unet = config.unet.module()
    if _separate(config):
        kt, ks = jax.random.split(key)
        return {"template": unet.init_variables(kt)["params"], "search": unet.init_variables(ks)["params"]}
    return unet.init_variables(key)["params"]


def branch_variables(config: DefenseTrainConfig, params, branch: str) -> dict:
    """The Flax variables ``{"params": ...}`` of the U-Net that defends ``branch``."""
    return {"params": params[branch] if _separate(config) else params}


def defended_tracker(tracker, config: DefenseTrainConfig, params):
    """``tracker`` wrapped with the U-Net(s) of ``params`` (:func:`jaxtrack.defense.defended`; nested wrappers with
    one U-Net per branch). Traceable: ``params`` may be tracers."""
    from jaxtrack.defense import defended

    unet = config.unet.module()
    if _separate(config):
        inner = defended(tracker, branch_variables(config, params, "template"), where="template", unet=unet)
        return defended(inner, branch_variables(config, params, "search"), where="search", unet=unet)
    return defended(tracker, {"params": params}, where=config.where, unet=unet)


def _defend_crops(config: DefenseTrainConfig, params, z, x):
    """(U(z) or z, U(x) or x) for batches of crops, per the defended branches."""
    from jaxtrack.defense import apply_defense

    unet = config.unet.module()
    branches = defense_branches(config.where)
    if "template" in branches:
        z = apply_defense(unet, branch_variables(config, params, "template"), z)
    if "search" in branches:
        x = apply_defense(unet, branch_variables(config, params, "search"), x)
    return z, x


# ----------------------------------------------------------------------------------------------- attack
def gt_ref_boxes(boxes_xyxy, instance_size: int) -> jax.Array:
    """Ground-truth boxes ``(x1, y1, x2, y2)`` in absolute search-crop pixels ``[B, 4]`` -> the attack losses'
    reference boxes ``(cx, cy, w, h)`` relative to the crop centre (pixel ``instance_size // 2``, where every
    family puts the centre of its dense predictions)."""
    b = jnp.asarray(boxes_xyxy, jnp.float32)
    c = float(instance_size // 2)
    return jnp.stack([(b[..., 0] + b[..., 2]) / 2 - c, (b[..., 1] + b[..., 3]) / 2 - c,
                      b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]], axis=-1)


def attack_settings(attack: DefenseAttackConfig):
    """``(AttackConfig, dense loss or None)`` of the training attack (``None`` for ``loss="train"``)."""
    from jaxtrack import attacks

    cfg = attacks.AttackConfig(eps=attack.eps, step_size=attack.step_size, steps=attack.steps, norm="linf",
                               random_start=attack.random_start)
    if attack.loss == "train":
        return cfg, None
    loss = attacks.LOSSES[attack.loss]
    if attack.loss == "dua":
        loss = _dua_with_lam(attack.lam)
    return cfg, loss


@functools.cache
def _dua_with_lam(lam: float):
    from jaxtrack.attacks import dua_loss

    return functools.partial(dua_loss, lam=float(lam))


def _one_sample(tree):
    return jax.tree_util.tree_map(lambda a: a[None], tree)


def adversarial_crops(model, tracker_variables, z, x, boxes, negative, targets, attack: DefenseAttackConfig,
                      target: str, key, family_config=None):
    """PGD on a batch of crop pairs against ``model`` (a tracker, possibly defended).

    z ``[B,Z,Z,3]``, x ``[B,X,X,3]`` (float, 0..255), boxes ``[B, 4]`` ground truth (x1, y1, x2, y2) in search-crop
    pixels, negative ``[B]``; ``targets``: the family targets (used with ``attack.loss="train"``). The pairs are
    attacked together (one batched forward/backward per PGD step; the objective is the sum of the per-pair
    objectives, whose gradients do not mix: the tracker's BatchNorm is in eval mode and the U-Net's GroupNorm is
    per sample), each pair against its own ground truth with labels from ``model``'s clean predictions.
    Returns ``(z_adv, x_adv, objective_clean [B], objective)`` where ``objective(raw) -> [B]`` evaluates the
    per-pair attack objective on raw head outputs of ``model`` (e.g. at the adversarial crops); no gradient
    flows to the crops.
    """
    from jaxtrack import attacks, losses

    cfg, dense_loss = attack_settings(attack)
    fam = family_config or model.config
    ref = gt_ref_boxes(boxes, fam.instance_size)
    sign = jnp.where(negative, -1.0, 1.0)  # negative pair: pull the tracker onto the distractor
    template0 = model.embed_template(tracker_variables, z)
    raw0 = jax.lax.stop_gradient(model.head(tracker_variables, template0, x))
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
        template = template0 if target == "search" else model.embed_template(tracker_variables, zz)
        return jnp.sum(objective(model.head(tracker_variables, template, xx)))

    start = z if target == "template" else x if target == "search" else (z, x)
    adv = attacks.run_attack(loss_fn, start, cfg, key if cfg.random_start else None)
    z_adv, x_adv = split(jax.lax.stop_gradient(adv))
    return z_adv, x_adv, jax.lax.stop_gradient(objective(raw0)), objective


# ----------------------------------------------------------------------------------------------- the step
def _raw(tracker, tracker_variables, z, x):
    return tracker.head(tracker_variables, tracker.embed_template(tracker_variables, z), x)


def _interleave(a, b):
    """[B,...], [B,...] -> [2B,...] with a_i at 2i and b_i at 2i+1 (each device keeps its own samples)."""
    return jnp.stack([a, b], axis=1).reshape((-1,) + a.shape[1:])


def _deinterleave(tree):
    return (jax.tree_util.tree_map(lambda t: t.reshape((-1, 2) + t.shape[1:])[:, 0], tree),
            jax.tree_util.tree_map(lambda t: t.reshape((-1, 2) + t.shape[1:])[:, 1], tree))


def _defense_objective(tracker, config: DefenseTrainConfig):
    """``objective(params, tracker_variables, batch, key) -> (total, metrics)`` of one defense step."""
    from jaxtrack import losses

    fam = tracker.config
    target = config.attack_target
    branches = defense_branches(config.where)
    w = config.loss

    def objective(params, tracker_variables, batch, key):
        z = jnp.asarray(batch["template"], jnp.float32)
        x = jnp.asarray(batch["search"], jnp.float32)
        boxes = jnp.asarray(batch["box"], jnp.float32)
        negative = jnp.asarray(batch["negative"], bool)
        k_targets, k_attack = jax.random.split(key)
        targets = losses.make_targets(fam, boxes, negative, key=k_targets)

        frozen = jax.lax.stop_gradient(params)
        model = defended_tracker(tracker, config, frozen) if config.attack_through_defense else tracker
        z_adv, x_adv, att_clean, att_objective = adversarial_crops(
            model, tracker_variables, z, x, boxes, negative, targets, config.attack, target, k_attack, fam
        )

        zd, xd = _defend_crops(config, params, _interleave(z_adv, z), _interleave(x_adv, x))
        raw_adv, raw_clean = _deinterleave(_raw(tracker, tracker_variables, zd, xd))
        adv, m_adv = losses.training_loss(fam, raw_adv, targets)
        clean, _ = losses.training_loss(fam, raw_clean, targets)
        pix_terms = []
        if "template" in branches:
            pix_terms.append(jnp.mean(jnp.abs(_deinterleave(zd)[0] - z)))
        if "search" in branches:
            pix_terms.append(jnp.mean(jnp.abs(_deinterleave(xd)[0] - x)))
        pix = sum(pix_terms) / (255.0 * len(pix_terms))
        total = w.adv * adv + w.clean * clean + w.pix * pix

        raw_undefended = jax.lax.stop_gradient(_raw(tracker, tracker_variables, z_adv, x_adv))
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
        }
        return total, metrics

    return objective


def make_defense_train_step(tracker, tracker_variables, config: DefenseTrainConfig, mesh=None) -> Callable:
    """``defense_train_step(state, batch, key) -> (state, metrics)`` for ``config`` on ``tracker``.

    ``state``: a :class:`~jaxtrack.train.state.TrainState` from :func:`init_defense_state` (``params`` = the
    U-Net parameters of :func:`init_unet_params`, no ``batch_stats``); batch: ``template`` ``[B,Z,Z,3]``,
    ``search`` ``[B,X,X,3]`` (uint8 or float BGR 0..255), ``box`` ``[B,4]`` (x1, y1, x2, y2) in search-crop pixels,
    ``negative`` ``[B]``; key: the step's PRNG key (the loop uses ``state.step_key(step)``). The metrics are those
    of the INCOMING parameters (the loss that the update then lowers).

    One ``jax.jit`` (attribute ``.jitted``: ``jitted(state, tracker_variables, batch, key)``), shared by every call
    with the same tracker, configuration (minus logging / data fields) and mesh; the tracker variables are its
    argument, replicated over ``mesh`` once here and never updated. With ``mesh`` the state is replicated and the
    batch split over ``data``; the state is donated. See the module docstring for what the step computes.
    """
    tx, schedule, core = _step_for(tracker, config, mesh)
    tvars = replicate(tracker_variables, mesh) if mesh is not None else tracker_variables

    def defense_train_step(state: TrainState, batch, key):
        if mesh is None:
            return core(state, tvars, batch, key)
        # the key as the loop passes it (derived from the replicated state): the same compiled program
        return core(state, tvars, shard_batch(batch, mesh), jax.device_put(key, replicated(mesh)))

    defense_train_step.jitted = core
    defense_train_step.tx = tx
    defense_train_step.schedule = schedule
    return defense_train_step


def _abstract_unet_params(config: DefenseTrainConfig):
    unet = config.unet.module()
    side = 2 ** unet.depth
    one = jax.eval_shape(lambda: unet.init(jax.random.key(0), jnp.zeros((1, side, side, 3), jnp.float32)))["params"]
    return {"template": one, "search": one} if _separate(config) else one


_STEP_CACHE: dict = {}


def _step_for(tracker, config: DefenseTrainConfig, mesh):
    """(tx, schedule, jitted core), one per (tracker, what the step depends on, mesh)."""
    key = (tracker, config.where, config.unet, config.attack, config.attack_through_defense, config.loss,
           config.optim, int(config.steps), mesh)
    if key not in _STEP_CACHE:
        tx, schedule = make_optimizer(config.optim, config.steps, _abstract_unet_params(config))
        _STEP_CACHE[key] = (tx, schedule, _jitted_core(tracker, config, tx, schedule, mesh, True))
    return _STEP_CACHE[key]


def defense_optimizer(config: DefenseTrainConfig):
    """``(optax transformation, lr schedule)`` of ``config`` (:func:`jaxtrack.train.state.make_optimizer` on the
    U-Net parameters)."""
    return make_optimizer(config.optim, config.steps, _abstract_unet_params(config))


def init_defense_state(config: DefenseTrainConfig, key=None, params=None, mesh=None) -> TrainState:
    """Step 0: the identity U-Net (or ``params``), the optimizer state and the run's PRNG key (default: from
    ``config.seed``, as :func:`train_defense` does); replicated over ``mesh`` when given."""
    key_init, key_run = jax.random.split(jax.random.key(config.seed) if key is None else key)
    params = init_unet_params(config, key_init) if params is None else params
    tx, _ = defense_optimizer(config)
    state = create_train_state({"params": params}, tx, key_run)
    return replicate(state, mesh) if mesh is not None else state


def _tree_norm(tree):
    import optax

    tree_mod = getattr(optax, "tree", None)
    return tree_mod.norm(tree) if tree_mod is not None and hasattr(tree_mod, "norm") else optax.global_norm(tree)


def _jitted_core(tracker, config, tx, schedule, mesh, donate):
    import optax

    objective = _defense_objective(tracker, config)

    def step(state: TrainState, tracker_variables, batch, key):
        grad_fn = jax.value_and_grad(objective, has_aux=True)
        (total, metrics), grads = grad_fn(state.params, tracker_variables, batch, key)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = dict(metrics, loss=total, lr=jnp.asarray(schedule(state.step), jnp.float32),
                       grad_norm=_tree_norm(grads))
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

    kwargs = {"donate_argnums": (0,)} if donate else {}
    if mesh is not None:
        rep, data = replicated(mesh), batch_sharding(mesh)
        kwargs.update(in_shardings=(rep, rep, data, rep), out_shardings=(rep, rep))
    return jax.jit(step, **kwargs)


# ----------------------------------------------------------------------------------------------- evaluation
@functools.lru_cache(maxsize=16)
def _evaluator(tracker, config: DefenseTrainConfig, attack: DefenseAttackConfig):
    from jaxtrack import attacks, losses

    fam = tracker.config
    target = attack.target or config.where
    dua = _dua_with_lam(1.0)

    def measure(model, tvars, z, x, ref, targets, clean):
        """Per pair: Dua-Loss (labels from the model's clean predictions ``clean``), best-box IoU, family loss."""
        raw = _raw(model, tvars, z, x)
        scores, boxes = model.dense_predictions(raw)

        def one(s, b, r, s0, b0, rw, t):
            return (dua(s, b, r, (s0, b0)), attacks.box_iou(attacks.best_box(s, b), r),
                    losses.training_loss(fam, _one_sample(rw), _one_sample(t))[0])

        d, iou, tl = jax.vmap(one)(scores, boxes, ref, clean[0], clean[1], raw, targets)
        return {"dua": d, "iou": iou, "train": tl}

    @jax.jit
    def run(params, tvars, z, x, boxes, negative, key):
        z = jnp.asarray(z, jnp.float32)
        x = jnp.asarray(x, jnp.float32)
        boxes = jnp.asarray(boxes, jnp.float32)
        targets = losses.make_targets(fam, boxes, negative, key=None)
        ref = gt_ref_boxes(boxes, fam.instance_size)
        defended = defended_tracker(tracker, config, params)
        k1, k2 = jax.random.split(key)
        za, xa, _, _ = adversarial_crops(tracker, tvars, z, x, boxes, negative, targets, attack, target, k1, fam)
        zd, xd, _, _ = adversarial_crops(defended, tvars, z, x, boxes, negative, targets, attack, target, k2, fam)
        clean_u = tracker.dense_predictions(_raw(tracker, tvars, z, x))
        clean_d = defended.dense_predictions(_raw(defended, tvars, z, x))
        return {
            "clean": measure(tracker, tvars, z, x, ref, targets, clean_u),
            "attacked": measure(tracker, tvars, za, xa, ref, targets, clean_u),
            "defended_clean": measure(defended, tvars, z, x, ref, targets, clean_d),
            "defended_transfer": measure(defended, tvars, za, xa, ref, targets, clean_d),
            "defended_adaptive": measure(defended, tvars, zd, xd, ref, targets, clean_d),
        }

    return run


def evaluate_defense(tracker, tracker_variables, config: DefenseTrainConfig, params, batch, key=None,
                     attack: DefenseAttackConfig | None = None) -> dict:
    """The defense on a batch of crop pairs, per pair (NumPy ``[B]`` arrays), in five conditions:

    ``clean`` (undefended tracker, clean crops), ``attacked`` (undefended, PGD against it), ``defended_clean``,
    ``defended_transfer`` (defended, fed the crops attacked against the undefended tracker: the non-adaptive
    attack) and ``defended_adaptive`` (defended, PGD through the U-Net). Each gives ``dua`` (Dua-Loss against
    the ground truth, labels from that model's clean predictions; larger = worse), ``iou`` (IoU of the best-scoring
    box with the ground truth) and ``train`` (the family's training loss). ``attack`` defaults to the training
    attack (``config.attack``); positive pairs are what these numbers mean something for.
    """
    attack = attack or config.attack
    run = _evaluator(tracker, config, attack)
    key = jax.random.key(0) if key is None else key
    out = run(params, tracker_variables, batch["template"], batch["search"], batch["box"],
              np.asarray(batch["negative"], bool), key)
    return jax.tree_util.tree_map(np.asarray, jax.device_get(out))


# ----------------------------------------------------------------------------------------------- tracker
def load_tracker(config: DefenseTrainConfig, tracker=None) -> tuple[Any, dict, str]:
    """(tracker, its frozen variables, where they came from) for ``config.tracker_weights``."""
    from jaxtrack.tracking.weights import load_tracker_variables, shared_checkpoint

    if tracker is None:
        from jaxtrack import tracking

        tracker = tracking.create(config.tracker)
    w = config.tracker_weights
    if w == "bundled":
        from jaxtrack.tracking.weights import bundled_checkpoint

        path = bundled_checkpoint(tracker.name)
        if path is None:
            raise ValueError(f"tracker_weights='bundled': no weights of {tracker.name!r} ship with jaxtrack; "
                             f"--set tracker_weights=/path/to/weights")
        return tracker, load_tracker_variables(tracker, str(path))[0], f"bundled:{tracker.name}"
    if w == "shared":
        path = shared_checkpoint(tracker.name)
        if path is None:
            raise ValueError(f"tracker_weights='shared': no real checkpoint of {tracker.name!r} in the shared data "
                             f"folder (only NanoTrack's are there); --set tracker_weights=/path/to/weights")
        return tracker, load_tracker_variables(tracker, str(path))[0], str(path)
    if w == "random":
        return tracker, tracker.init_variables(jax.random.key(config.seed)), "random"
    if not w:
        raise ValueError(f"{config.name}: tracker_weights is required for {tracker.name!r} "
                         f"(--set tracker_weights=/path/to/weights: a jaxtrack train export, a converted folder or "
                         f"a PyTorch checkpoint)")
    if not Path(w).exists():
        raise FileNotFoundError(f"tracker_weights {w} not found")
    return tracker, load_tracker_variables(tracker, w)[0], str(Path(w).absolute())


# ----------------------------------------------------------------------------------------------- export
def _card_info(config: DefenseTrainConfig, tracker, weights_source: str, step: int) -> dict:
    d = config.data
    data = {"source": d.source, "root": d.root, "dataset": d.dataset, "style": d.style,
            "negative_rate": d.negative_rate}
    if d.source == "synthetic":
        data.update(synthetic_sequences=d.synthetic_sequences, synthetic_frames=d.synthetic_frames,
                    synthetic_seed=d.synthetic_seed, held_out_seeds="1000+")
    if d.extra_source:
        data.update(extra_source=d.extra_source, extra_sequences=list(d.extra_sequences), extra_repeat=d.extra_repeat)
    return {
        "method": "DuaLossDef (adversarial training of a U-Net pre-processor with the Dua-Loss)",
        "config_name": config.name,
        "step": int(step),
        "tracker_weights": weights_source,
        "tracker_instance_size": int(tracker.config.instance_size),
        "attack": dataclasses.asdict(config.attack) | {"target": config.attack_target},
        "attack_through_defense": config.attack_through_defense,
        "loss_weights": dataclasses.asdict(config.loss),
        "training_data": data,
        "config": config_to_dict(config),
    }


def export_defense(workdir, config: DefenseTrainConfig, tracker, params, info: dict) -> list[Path]:
    """Write the trained U-Net(s) with :func:`jaxtrack.defense.save_defense` into ``workdir/defense`` (or
    ``defense_template`` + ``defense_search`` with one U-Net per branch); returns the folders."""
    from jaxtrack.defense import defense_meta, save_defense

    workdir = Path(workdir)
    params = host_copy(params)
    unet = config.unet.module()
    if _separate(config):
        parts = [(workdir / f"{DEFENSE_DIR}_{b}", b, branch_variables(config, params, b)) for b in ("template", "search")]
    else:
        parts = [(workdir / DEFENSE_DIR, config.where, {"params": params})]
    out = []
    for path, where, variables in parts:
        if jax.process_index() == 0:
            save_defense(path, variables, defense_meta(unet, tracker, where, info), overwrite=True)
        out.append(path)
    return out


def load_trained_defense(tracker, workdir, allow_transfer: bool = False):
    """``tracker`` wrapped with the U-Net(s) exported in ``workdir`` by :func:`train_defense`."""
    from jaxtrack.defense import defended_from_checkpoint

    workdir = Path(workdir)
    if (workdir / DEFENSE_DIR).is_dir():
        return defended_from_checkpoint(tracker, workdir / DEFENSE_DIR, allow_transfer=allow_transfer)
    t, s = workdir / f"{DEFENSE_DIR}_template", workdir / f"{DEFENSE_DIR}_search"
    if t.is_dir() and s.is_dir():
        inner = defended_from_checkpoint(tracker, t, allow_transfer=allow_transfer)
        return defended_from_checkpoint(inner, s, allow_transfer=allow_transfer)
    raise FileNotFoundError(f"no exported defense in {workdir} (expected {DEFENSE_DIR}/ or {DEFENSE_DIR}_template/ + "
                            f"{DEFENSE_DIR}_search/; a run exports when it reaches its last step)")


# ----------------------------------------------------------------------------------------------- the loop
@dataclasses.dataclass
class DefenseTrainResult:
    workdir: Path
    step: int  # optimizer steps done
    metrics: dict  # the last logged metrics line
    defense: list  # exported defense folders ([] when the run stopped before config.steps)
    resumed_from: int | None
    params: Any = None  # the final U-Net parameters (host copy)


def train_defense(
    config: DefenseTrainConfig,
    workdir,
    *,
    tracker=None,
    tracker_variables: dict | None = None,
    unet_params=None,
    stop_at: int | None = None,
    progress: bool = True,
    export: bool = True,
    plot: bool = True,
    data_iterator: Callable | None = None,
    log: Callable[[str], None] | None = None,
) -> DefenseTrainResult:
    """Train the DuaLossDef U-Net of ``config`` in ``workdir``, resuming from its latest checkpoint if any.

    Args:
      config: the run (:class:`DefenseTrainConfig`).
      workdir: output folder (created).
      tracker / tracker_variables: use these instead of ``config.tracker`` / ``config.tracker_weights`` (tests,
        variants with overridden crop sizes).
      unet_params: initial U-Net parameters instead of the identity initialisation (ignored when resuming).
      stop_at: stop after this global step (saving a checkpoint), as an interruption would.
      data_iterator: ``f(config, tracker, workdir, local_batch)`` returning a checkpointable iterator of batches;
        default :func:`jaxtrack.train.loop.make_data_iterator`.
      log: where notes go (default: stderr, process 0 only).
    """
    from jaxtrack.train.loop import make_data_iterator

    workdir, log = start_run(workdir, log)
    if tracker_variables is None:
        tracker, tracker_variables, weights_source = load_tracker(config, tracker)
    else:
        if tracker is None:
            from jaxtrack import tracking

            tracker = tracking.create(config.tracker)
        weights_source = "given" if config.tracker_weights in ("", "shared") else config.tracker_weights
    mesh = make_data_mesh()
    local_batch = local_batch_size(config.batch_size, mesh)
    key_init, key_run = jax.random.split(jax.random.key(config.seed))

    def setup(resuming: bool):
        params = _abstract_unet_params(config) if resuming else unet_params
        if params is None:
            params = init_unet_params(config, key_init)
        check_prefixes(params, config.optim)
        tx, _, core = _step_for(tracker, config, mesh)
        tvars = replicate(tracker_variables, mesh)
        state = initial_state({"params": params}, tx, key_run, mesh, abstract=resuming)
        return state, lambda st, batch, key: core(st, tvars, batch, key)

    make_iter = data_iterator or make_data_iterator
    out = run_loop(
        workdir, name=config.name, config_record=config_to_dict(config), setup=setup,
        make_iterator=lambda: make_iter(config, tracker, workdir, local_batch), mesh=mesh, steps=config.steps,
        batch_size=config.batch_size, log_every=config.log_every, save_every=config.save_every, keep=config.keep,
        stop_at=stop_at, progress=progress, postfix=_progress_postfix, log=log,
    )

    params = host_copy(out.state.params)
    exported: list = []
    if out.step >= config.steps:
        if export:
            exported = export_defense(workdir, config, tracker, params,
                                      _card_info(config, tracker, weights_source, out.step))
        if plot and jax.process_index() == 0:
            plot_metrics(workdir / METRICS_FILE, workdir / "loss.png",
                         title=f"{config.name}: U-Net loss ({tracker.name}, where={config.where})",
                         terms=DEFENSE_PLOT_TERMS)
    return DefenseTrainResult(workdir=workdir, step=out.step, metrics=out.metrics, defense=exported,
                              resumed_from=out.resumed_from, params=params)


def _progress_postfix(row: dict) -> dict:
    """The progress bar's summary of a metrics line."""
    return {"adv": f"{row['adv']:.4f}", "clean": f"{row['clean']:.4f}", "undef": f"{row['undefended_adv']:.4f}",
            "pairs_s": f"{row['pairs_per_s']:.1f}"}


# ----------------------------------------------------------------------------------------------- held-out check
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

    workdir = Path(workdir)
    config = load_defense_config(workdir)
    if tracker_variables is None:
        tracker, tracker_variables, _ = load_tracker(config, tracker)
    if _separate(config):
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

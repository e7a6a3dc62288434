"""Configurations of DuaLossDef training: frozen dataclasses, one named recipe per experiment, ``--set`` overrides.

Run a named configuration with::

    jaxtrack train-defense --config NAME --workdir DIR [--steps N] [--set key=value ...]
    python -m jaxtrack.train.defense_cli --config NAME --workdir DIR ...        # the same, without the wiring

Running the same command again resumes exactly where the last checkpoint left off. ``--set`` takes dotted paths
into :class:`DefenseTrainConfig` with the parser of :mod:`jaxtrack.train.config` (``attack.steps=5``,
``unet.width=16``, ``loss.pix=0.1``, ``optim.lr=3e-4``, ``tracker_weights=runs/tiny/weights``,
``data.source=vot2018``, ``data.root=../shared/data/sequences/VOT2018``).

Named configurations (each function's docstring has its run command):

* ``unet_nanotrack``        -- the real NanoTrack v2 weights, synthetic + real OTB sequences, the CPU recipe;
* ``unet_siamfcpp_tiny``    -- the project's compact ``siamfcpp_tiny`` (its bundled weights), same data;
* ``unet_nanotrack_cls`` / ``unet_nanotrack_reg`` -- loss ablations of ``unet_nanotrack`` (training attack on one
  term of the Dua-Loss);
* ``unet_nanotrack_minmax`` / ``unet_siamfcpp_tiny_minmax`` -- min-max adversarial training: warm start from the
  shipped U-Net, PGD through the current U-Net on both crops, an ε curriculum (shipped as ``bundled-minmax``);
* ``unet_siamrpnpp_got10k`` -- SiamRPN++ R50 on GOT-10k at full scale, for accelerators (the paper's tracker and
  training data; the U-Net size, attack budget and schedule are ours: the paper states none).

Every configuration is hashable by value, so the jitted functions of :mod:`jaxtrack.defense.trainer` and
:mod:`jaxtrack.defense.evaluate` can take them as static arguments.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Callable
from pathlib import Path

from jaxtrack.tracking.branches import WHERE
from jaxtrack.models.unet import DefenseUNet
from jaxtrack.train.options import (
    ConfigError,
    DataConfig,
    OptimConfig,
    _flat_keys,
    apply_overrides,
    config_from_dict,
)

__all__ = [
    "ATTACK_TARGETS",
    "CONFIG_FILE",
    "DEFENSE_CONFIGS",
    "DEFENSE_DIR",
    "DEFENSE_PLOT_TERMS",
    "TRAINING_REAL_SEQUENCES",
    "DefenseAttackConfig",
    "DefenseLossConfig",
    "DefenseTrainConfig",
    "UNetConfig",
    "apply_defense_overrides",
    "get_defense_config",
    "load_defense_config",
    "unet_nanotrack",
    "unet_nanotrack_cls",
    "unet_nanotrack_minmax",
    "unet_nanotrack_reg",
    "unet_siamfcpp_tiny",
    "unet_siamfcpp_tiny_minmax",
    "unet_siamrpnpp_got10k",
]

#: Which crops the training attack perturbs; ``""`` = the defended branches.
ATTACK_TARGETS = ("",) + WHERE
#: Workdir layout: the recorded configuration and the exported U-Net folder(s) (``defense/``, or
#: ``defense_template/`` + ``defense_search/`` with one U-Net per branch).
CONFIG_FILE = "config.json"
DEFENSE_DIR = "defense"


def _check_choice(key: str, value: str, choices) -> None:
    if value not in choices:
        shown = ", ".join(repr(c) if c == "" else c for c in choices)
        raise ConfigError(f"{key} must be one of {shown}; got {value!r}")


# ----------------------------------------------------------------------------------------------- configs
#: The U-Net hyper-parameters a configuration sets: every init field of DefenseUNet except the Flax plumbing and
#: ``zero_init_last`` (a trained defense always starts as the identity).
_UNET_FIELDS = [
    (f.name, f.type, dataclasses.field(default=f.default))
    for f in dataclasses.fields(DefenseUNet)
    if f.init and f.name not in ("parent", "name", "zero_init_last")
]


def _unet_post_init(self):
    try:
        self.module()._check()
    except ValueError as err:
        raise ConfigError(f"unet: {err}") from None


def _unet_module(self) -> DefenseUNet:
    """The :class:`DefenseUNet` (zero-initialised output layer: the identity at step 0)."""
    return DefenseUNet(**{name: getattr(self, name) for name, _, _ in _UNET_FIELDS})


UNetConfig = dataclasses.make_dataclass(
    "UNetConfig",
    _UNET_FIELDS + [("shared", bool, dataclasses.field(default=True))],
    frozen=True,
    namespace={"__post_init__": _unet_post_init, "module": _unet_module, "__module__": __name__},
)
UNetConfig.__doc__ = """Hyper-parameters of :class:`~jaxtrack.models.unet.DefenseUNet` (the same fields with the same
defaults, taken from the module; its docstring has the architecture), and ``shared``: one U-Net for both branches
(default) or, with ``where=both`` and ``shared=false``, one per branch."""


@dataclasses.dataclass(frozen=True)
class DefenseAttackConfig:
    """The attack that makes the adversarial training crops (L∞ PGD, budgets in grey levels of 0..255 crops).

    loss: a name of :data:`jaxtrack.attacks.LOSSES` (``dua`` = Dua-Loss, the paper's; ``cls``, ``reg``, ``csa``,
      ``rtaa``, ``margin``, ``tracking``) or ``train`` (the family's training loss, maximised).
    lam: the Dua-Loss weight of the regression term (``L_cls + lam · L_reg``; ``loss=dua`` only).
    target: which crops are perturbed: ``template``, ``search``, ``both``; ``""`` = the defended branches.
    restarts: PGD restarts per training step (independent random starts; the one with the highest attack objective
      over the batch is kept).
    ramp_steps / ramp_stages: the ε curriculum. Over the first ``ramp_steps`` training steps the budget rises in
      ``ramp_stages`` equal stages, ``eps · k / ramp_stages`` for stage ``k = 1 .. ramp_stages`` (the step size
      scaled with it), then stays at ``eps``; 0 = the full budget from the first step. Each stage is exact PGD at
      its budget (:meth:`at_step`); the budget is a traced argument of the one compiled training step.
    """

    steps: int = 5
    eps: float = 8.0
    step_size: float = 2.0
    random_start: bool = True
    loss: str = "dua"
    lam: float = 1.0
    target: str = ""
    restarts: int = 1
    ramp_steps: int = 0
    ramp_stages: int = 4

    def __post_init__(self):
        from jaxtrack.attacks import LOSSES

        _check_choice("attack.loss", self.loss, tuple(LOSSES) + ("train",))
        _check_choice("attack.target", self.target, ATTACK_TARGETS)
        if self.steps < 0:
            raise ConfigError(f"attack.steps must be >= 0, got {self.steps}")
        if self.eps < 0 or self.step_size < 0:
            raise ConfigError(f"attack.eps and attack.step_size must be >= 0, got {self.eps}, {self.step_size}")
        if self.restarts < 1 or (self.restarts > 1 and not self.random_start):
            raise ConfigError(f"attack.restarts must be >= 1 (> 1 needs attack.random_start), got {self.restarts}")
        if self.ramp_steps < 0 or self.ramp_stages < 1:
            raise ConfigError(f"attack.ramp_steps must be >= 0 and attack.ramp_stages >= 1, got {self.ramp_steps}, "
                              f"{self.ramp_stages}")

    def stage_scale(self, step: int) -> float:
        """The fraction of ``eps`` and ``step_size`` that 0-based training step ``step`` attacks with: ``(s + 1) /
        ramp_stages`` in stage ``s = step · ramp_stages // ramp_steps`` of the ramp, 1 after it (and without one)."""
        if self.ramp_steps and step < self.ramp_steps:
            return (step * self.ramp_stages // self.ramp_steps + 1) / self.ramp_stages
        return 1.0

    def without_ramp(self) -> DefenseAttackConfig:
        """The full-budget attack with the ramp fields reset: what the compiled training step is built from (the
        stage's :meth:`stage_scale` is its traced argument, so one program serves every stage)."""
        return dataclasses.replace(self, ramp_steps=0, ramp_stages=DefenseAttackConfig.ramp_stages)

    def at_step(self, step: int) -> DefenseAttackConfig:
        """The attack of 0-based training step ``step``: the budget and step size of its curriculum stage, ramp
        fields reset."""
        scale = self.stage_scale(step)
        return dataclasses.replace(self.without_ramp(), eps=self.eps * scale, step_size=self.step_size * scale)


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
    init_from: the U-Net the run starts from (a warm start; ignored when resuming): ``""`` = the identity,
      ``bundled`` (the defense shipped for ``tracker``), ``bundled-minmax``, or an exported defense folder. Its
      U-Net hyper-parameters must equal ``unet``'s.
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
    init_from: str = ""
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

    @property
    def separate_unets(self) -> bool:
        """One U-Net per branch (``where=both`` with ``unet.shared=false``): parameters ``{"template", "search"}``."""
        return self.where == "both" and not self.unet.shared


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
    sequences and of two real OTB sequences.

    Run::

        jaxtrack train-defense --config unet_nanotrack --workdir runs/unet_nanotrack --eval-pairs 32

    U-Net depth 3, width 8, one conv per block (GroupNorm 4 groups, 64 K parameters), one U-Net for both
    branches; PGD-3 (ε = 8 grey levels, step 4, random start) on the Dua-Loss (λ = 1) against the frozen NanoTrack
    (``attack_through_defense=false``: the crops are attacked once per step without the U-Net, as a
    high-level-guided denoiser is trained, which also spares the U-Net's backward pass in every PGD step --
    ``--set attack_through_defense=true`` for true adversarial training); adv and clean terms weighted 1 / 1;
    AdamW lr 1e-3, 20 warm-up steps, cosine to 1e-5; 600 steps of 8 pairs with pysot-style augmentation, drawn
    from 32 synthetic sequences (seeds 0..31; 1000+ are kept for held-out checks) and the real OTB sequences
    :data:`TRAINING_REAL_SEQUENCES` (David, Jogging-2; each listed 8 times, so a third of the pairs are real).
    The other real sequences are never trained on. ``--set data.extra_source=`` trains on synthetic sequences only.
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
    augmentation) and 300 steps.
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
    """DuaLossDef in front of both branches of SiamRPN++ ResNet-50 (pysot ``siamrpn_r50_l234_dwxcorr``), trained
    on GOT-10k train at full scale -- for accelerators. The tracker and the training data are the paper's; every
    other setting is ours (see below).

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


def _minmax(base: DefenseTrainConfig, steps: int) -> DefenseTrainConfig:
    return dataclasses.replace(
        base,
        name=f"{base.name}_minmax",
        steps=steps,
        init_from="bundled",
        attack_through_defense=True,
        attack=DefenseAttackConfig(steps=5, eps=8.0, step_size=2.0, random_start=True, loss="dua", lam=1.0,
                                   target="both", ramp_steps=steps // 4, ramp_stages=4),
        optim=_defense_optim(lr=3e-4, warmup_steps=20),
    )


def unet_nanotrack_minmax() -> DefenseTrainConfig:
    """Min-max adversarial training of NanoTrack v2's U-Net: the inner PGD attacks the *currently defended* tracker
    (its gradients go through the U-Net being trained), so the U-Net learns against the adaptive attacker rather
    than against perturbations of the undefended tracker. Shipped as ``--defense bundled-minmax``.

    Run::

        jaxtrack train-defense --config unet_nanotrack_minmax --workdir runs/unet_nanotrack_minmax --eval-pairs 32

    As ``unet_nanotrack`` (same U-Net, data and training sequences) except: warm start from the shipped
    ``unet_nanotrack`` U-Net (``init_from=bundled``); PGD-5 (ε = 8, step 2, random start) on the Dua-Loss through
    the current U-Net on both crops; an ε curriculum over the first quarter of the run (ε 2, 4, 6, 8 with the step
    size scaled alike); AdamW lr 3e-4 (a warm start), 20 warm-up steps, cosine; 400 steps of 8 pairs.
    """
    return _minmax(unet_nanotrack(), steps=400)


def unet_siamfcpp_tiny_minmax() -> DefenseTrainConfig:
    """Min-max adversarial training of the compact SiamFC++'s U-Net, as ``unet_nanotrack_minmax`` from the shipped
    ``unet_siamfcpp_tiny`` U-Net, with that recipe's data; 300 steps (as that recipe). Shipped as
    ``--defense bundled-minmax``.

    Run::

        jaxtrack train-defense --config unet_siamfcpp_tiny_minmax --workdir runs/unet_siamfcpp_tiny_minmax \
            --eval-pairs 32
    """
    return _minmax(unet_siamfcpp_tiny(), steps=300)


DEFENSE_CONFIGS: dict[str, Callable[[], DefenseTrainConfig]] = {
    "unet_nanotrack": unet_nanotrack,
    "unet_siamfcpp_tiny": unet_siamfcpp_tiny,
    "unet_nanotrack_cls": unet_nanotrack_cls,
    "unet_nanotrack_reg": unet_nanotrack_reg,
    "unet_nanotrack_minmax": unet_nanotrack_minmax,
    "unet_siamfcpp_tiny_minmax": unet_siamfcpp_tiny_minmax,
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


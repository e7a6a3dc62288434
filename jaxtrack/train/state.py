"""Train state, optimizer (schedule, per-group learning rates, step-dependent freezing) and the jitted step.

``make_train_step(tracker, optim, total_steps, mesh)`` returns ``train_step(state, batch, key) -> (state,
metrics)``: one module-level ``jax.jit`` whose settings are a static argument compared by value, with params /
batch statistics / optimizer state replicated over the mesh and the batch split along the ``data`` axis.
BatchNorm in train mode (all but those under whole-run freeze rules, see ``OptimConfig.frozen_bn_eval``) then normalises with, and updates its running averages from, the statistics of the GLOBAL batch: the jitted program is written for the whole batch and XLA inserts the
cross-device reductions, so the step on 8 devices equals the step on 1 (tests/test_train.py checks it).

The loss is ``losses.training_loss(config, raw, targets)`` on ``raw = model.track(model.template(z), x,
train=True)`` with ``targets = losses.make_targets(config, boxes, negative, key)``.

Optimizer (optax chain): freeze mask -> [global-norm clip] -> [SGD: L2 weight decay added to the gradient, as
PyTorch's SGD does] -> freeze mask -> per-group optimizer (``optax.multi_transform``: ``backbone`` at
``lr * backbone_lr_mult``, ``other`` at ``lr``) -> freeze mask. The freeze mask zeroes the gradient/update of
parameters under a :class:`~jaxtrack.train.config.FreezeRule` prefix while ``step < until_step`` (rules with
``until_step = -1`` are ``optax.set_to_zero`` for the whole run), so momentum / Adam moments of frozen
parameters stay zero and weight decay never moves them, like PyTorch parameters with ``requires_grad=False``.
With ``optim.ema_decay`` > 0 a last element, :func:`param_ema`, keeps the moving average of the parameters in
the optimizer state (so the state's layout, and every checkpoint written without it, is unchanged when it is off);
:meth:`TrainState.eval_variables` hands it out.

bf16 (``compute_dtype=jnp.bfloat16``): params and inputs are cast for the forward/backward pass; master
weights, gradients (cast back by autodiff), the optimizer, the BN running statistics and the loss stay float32.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxtrack.models.layers import batch_norm_inference_under, path_under
from jaxtrack.train.options import FreezeRule, OptimConfig
from jaxtrack.train.mesh import replicated

__all__ = [
    "TrainState",
    "path_str",
    "param_labels",
    "make_schedule",
    "freeze_updates",
    "make_optimizer",
    "param_ema",
    "find_param_ema",
    "check_prefixes",
    "create_train_state",
    "make_train_step",
    "apply_step",
    "StepSpec",
    "TrainStep",
    "abstract_state",
    "inference_bn_prefixes",
]


@flax.struct.dataclass
class TrainState:
    """Everything a step changes, as one pytree (checkpointed whole).

    step: int32 scalar, optimizer updates done; params / batch_stats: the Flax variables; opt_state: optax
    state; rng: uint32 key data of the run's base PRNG key (step keys are ``fold_in(key, step)``).
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: jax.Array

    @property
    def variables(self) -> dict:
        """The Flax variables (``params`` + ``batch_stats``), as trackers take them."""
        out = {"params": self.params}
        if self.batch_stats:
            out["batch_stats"] = self.batch_stats
        return out

    @property
    def eval_variables(self) -> dict:
        """The variables to evaluate and export: :attr:`variables` with the parameter average of
        ``optim.ema_decay`` in place of ``params`` when the optimizer keeps one."""
        average = find_param_ema(self.opt_state)
        out = self.variables
        return out if average is None else {**out, "params": average}

    def step_key(self, step=None) -> jax.Array:
        return jax.random.fold_in(jax.random.wrap_key_data(self.rng), self.step if step is None else step)


def path_str(path) -> str:
    """``a/b/c`` for a pytree key path."""
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def param_labels(params, backbone_prefixes) -> Any:
    """Pytree of ``"backbone"`` / ``"other"`` labels for ``optax.multi_transform``."""
    return jax.tree_util.tree_map_with_path(
        lambda p, _: "backbone" if any(path_under(path_str(p), q) for q in backbone_prefixes) else "other", params
    )


def make_schedule(optim: OptimConfig, total_steps: int) -> optax.Schedule:
    """Learning rate as a function of the step: linear warm-up, then cosine / log decay / constant."""
    decay_steps = max(int(total_steps) - optim.warmup_steps, 1)
    if optim.schedule == "cosine":
        main = optax.cosine_decay_schedule(optim.lr, decay_steps, alpha=optim.end_lr / optim.lr)
    elif optim.schedule == "log":
        main = optax.exponential_decay(optim.lr, decay_steps, optim.end_lr / optim.lr)
    else:
        main = optax.constant_schedule(optim.lr)
    if optim.warmup_steps <= 0:
        return main
    warm = optax.linear_schedule(optim.warmup_init_lr, optim.lr, optim.warmup_steps)
    return optax.join_schedules([warm, main], [optim.warmup_steps])


class FreezeState(NamedTuple):
    count: jax.Array


def freeze_updates(rules: tuple[FreezeRule, ...]) -> optax.GradientTransformation:
    """Zero the updates of parameters under a rule's prefix while ``count < until_step`` (``-1``: always)."""

    def init(params):
        del params
        return FreezeState(jnp.zeros((), jnp.int32))

    def update(updates, state, params=None):
        del params
        if not rules:
            return updates, FreezeState(state.count + 1)

        def mask(path, u):
            p = path_str(path)
            frozen = jnp.zeros((), bool)
            for rule in rules:
                if path_under(p, rule.prefix):
                    if rule.until_step < 0:
                        return jnp.zeros_like(u)  # optax.set_to_zero for the whole run
                    frozen = frozen | (state.count < rule.until_step)
            return jnp.where(frozen, jnp.zeros_like(u), u)

        return jax.tree_util.tree_map_with_path(mask, updates), FreezeState(state.count + 1)

    return optax.GradientTransformation(init, update)


class ParamEmaState(NamedTuple):
    count: jax.Array
    ema_params: Any


def param_ema(decay: float) -> optax.GradientTransformation:
    """Keeps ``ema_params``, the moving average of the parameters AFTER each update (``params + updates``), with
    decay ``min(decay, (1 + count) / (10 + count))``; the updates pass through unchanged. Must be the last element
    of a chain (it sees the final updates) and needs ``params`` in ``update``."""

    def init(params):
        return ParamEmaState(jnp.zeros((), jnp.int32), jax.tree_util.tree_map(jnp.asarray, params))

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("param_ema needs params in update()")
        count = state.count.astype(jnp.float32)
        d = jnp.minimum(decay, (1.0 + count) / (10.0 + count))
        ema = jax.tree_util.tree_map(
            # e + (1 - d) (new - e): the same average, and exactly e where the parameter did not move (frozen
            # layers keep bit-identical averages; d * e + (1 - d) * e rounds away from e)
            lambda e, p, u: (e + (1.0 - d) * ((p + u) - e)).astype(e.dtype), state.ema_params, params, updates
        )
        return updates, ParamEmaState(state.count + 1, ema)

    return optax.GradientTransformation(init, update)


def find_param_ema(opt_state) -> Any:
    """The ``ema_params`` of a :func:`param_ema` inside ``opt_state`` (a live optax state, or the nested dicts /
    lists of a checkpoint restored without a target), or None."""
    found = []

    def visit(node):
        if isinstance(node, ParamEmaState):
            found.append(node.ema_params)
        elif isinstance(node, dict):
            if "ema_params" in node and "count" in node:
                found.append(node["ema_params"])
            else:
                for v in node.values():
                    visit(v)
        elif isinstance(node, (list, tuple)):
            for v in node:
                visit(v)

    visit(opt_state)
    return found[0] if found else None


def make_optimizer(optim: OptimConfig, total_steps: int, params=None) -> tuple[optax.GradientTransformation, Callable]:
    """(optax transformation, lr schedule). ``params`` (or an abstract tree) is needed for the group labels."""
    schedule = make_schedule(optim, total_steps)

    def group(mult: float) -> optax.GradientTransformation:
        lr = schedule if mult == 1.0 else (lambda count: schedule(count) * mult)
        if optim.name == "sgd":
            return optax.sgd(lr, momentum=optim.momentum or None, nesterov=optim.nesterov)
        return optax.adamw(lr, b1=optim.b1, b2=optim.b2, eps=optim.eps, weight_decay=optim.weight_decay)

    chain = [freeze_updates(optim.freeze)]
    if optim.clip_grad_norm > 0:
        chain.append(optax.clip_by_global_norm(optim.clip_grad_norm))
    if optim.name == "sgd" and optim.weight_decay > 0:
        chain += [optax.add_decayed_weights(optim.weight_decay), freeze_updates(optim.freeze)]
    if optim.backbone_lr_mult == 1.0 or params is None:
        chain.append(group(1.0))
    else:
        labels = param_labels(params, optim.backbone_prefixes)
        chain.append(optax.multi_transform({"backbone": group(optim.backbone_lr_mult), "other": group(1.0)}, labels))
    chain.append(freeze_updates(optim.freeze))
    if optim.ema_decay > 0:
        chain.append(param_ema(optim.ema_decay))
    return optax.chain(*chain), schedule


def check_prefixes(params, optim: OptimConfig) -> None:
    """Every freeze rule (and, with a multiplier, every backbone prefix) must select at least one parameter."""
    from jaxtrack.train.options import ConfigError

    paths = [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    wanted = [("optim.freeze", r.prefix) for r in optim.freeze]
    if optim.backbone_lr_mult != 1.0:
        wanted += [("optim.backbone_prefixes", p) for p in optim.backbone_prefixes]
    for key, prefix in wanted:
        if not any(path_under(p, prefix) for p in paths):
            groups = sorted({"/".join(p.split("/")[:2]) for p in paths})
            raise ConfigError(f"{key}: prefix {prefix!r} matches no parameter of the model; parameter groups: "
                              + ", ".join(groups))


def create_train_state(variables: dict, tx: optax.GradientTransformation, key: jax.Array) -> TrainState:
    """Step 0 from Flax variables and a (typed or raw) PRNG key."""
    params = variables["params"]
    rng = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else jnp.asarray(key, jnp.uint32)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
        rng=rng,
    )


def abstract_state(state: TrainState, mesh=None) -> TrainState:
    """``jax.ShapeDtypeStruct`` leaves (replicated on ``mesh`` when given): the target of an orbax restore."""
    sharding = replicated(mesh) if mesh is not None else None
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding), state)


def inference_bn_prefixes(optim: OptimConfig) -> tuple[str, ...]:
    """The module prefixes whose BatchNorm runs in inference mode during training: those of the whole-run freeze
    rules, when ``optim.frozen_bn_eval`` is on."""
    if not optim.frozen_bn_eval:
        return ()
    return tuple(rule.prefix for rule in optim.freeze if rule.until_step < 0)


def _forward(model, train: bool):
    def fn(module, z, x):
        return module.track(module.template(z, train=train), x, train=train)

    return fn


@dataclasses.dataclass(frozen=True)
class StepSpec:
    """Everything the compiled train step depends on besides its array arguments (a static ``jit`` argument,
    compared and hashed by value: equal specs share one compiled program)."""

    tracker: Any
    optim: OptimConfig
    total_steps: int
    mesh: Any = None
    compute_dtype: str = "float32"
    teacher_tracker: Any = None  # a frozen teacher tracker (distillation), or None
    teacher_weights: Any = None  # its jaxtrack.losses.distill.DistillWeights


def _train_step(state: TrainState, batch, key, teacher_vars, spec: StepSpec):
    from jaxtrack import losses

    config, model = spec.tracker.config, spec.tracker.model
    tx, schedule = make_optimizer(spec.optim, spec.total_steps, state.params)
    compute_dtype = jnp.dtype(spec.compute_dtype)
    low = compute_dtype != jnp.float32

    def cast(tree):
        return jax.tree_util.tree_map(
            lambda a: a.astype(compute_dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree
        )

    def loss_fn(params, batch_stats):
        z = jnp.asarray(batch["template"], jnp.float32)
        x = jnp.asarray(batch["search"], jnp.float32)
        if spec.teacher_tracker is not None:  # float32 crops, before any bf16 cast
            from jaxtrack.losses import distill

            teacher = spec.teacher_tracker
            x_t = distill.teacher_search_window(x, config, teacher.config)
            t_raw = teacher.model.apply(teacher_vars, z, x_t, method=_forward(teacher.model, False))
            soft = distill.teacher_targets(config, teacher.config, t_raw)
        if low:
            params, z, x = cast(params), z.astype(compute_dtype), x.astype(compute_dtype)
        variables = {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}
        with batch_norm_inference_under(inference_bn_prefixes(spec.optim)):
            raw, updated = model.apply(variables, z, x, method=_forward(model, True), mutable=["batch_stats"])
        raw = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), raw)
        targets = losses.make_targets(config, batch["box"], batch["negative"], key=key)
        total, metrics = losses.training_loss(config, raw, targets)
        if spec.teacher_tracker is not None:
            d_total, d_metrics = distill.loss(raw, soft, spec.teacher_weights, gt_targets=targets)
            metrics = {**metrics, **d_metrics, "gt_total": total}
            total = total + d_total
            metrics["total"] = total
        new_stats = jax.tree_util.tree_map(
            lambda new, old: new.astype(old.dtype), updated.get("batch_stats", {}), batch_stats
        )
        return total, (metrics, new_stats)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (total, (metrics, new_stats)), grads = grad_fn(state.params, state.batch_stats)
    return apply_step(state, grads, total, metrics, tx, schedule, spec.mesh, batch_stats=new_stats)


def _global_norm(tree):
    """The L2 norm of all leaves (``optax.tree.norm`` where this optax has it, else ``optax.global_norm``)."""
    norm = getattr(getattr(optax, "tree", None), "norm", None)
    return norm(tree) if norm is not None else optax.global_norm(tree)


def apply_step(state: TrainState, grads, total, metrics: dict, tx, schedule, mesh=None, **fields):
    """The end of every jitted train step: the optimizer update of ``grads``, the step count, ``fields`` (e.g. new
    ``batch_stats``), and ``metrics`` plus ``loss`` = ``total``, ``lr`` (of this step) and ``grad_norm``; with
    ``mesh`` the new state and the metrics are constrained to stay replicated (the batch comes split over
    ``data``). Returns ``(new state, metrics)``."""
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics, loss=total, lr=jnp.asarray(schedule(state.step), jnp.float32),
                   grad_norm=_global_norm(grads))
    out = state.replace(step=state.step + 1, params=params, opt_state=opt_state, **fields), metrics
    if mesh is not None:
        out = jax.lax.with_sharding_constraint(out, replicated(mesh))
    return out


_train_step_donating = jax.jit(_train_step, static_argnames=("spec",), donate_argnums=(0,))
_train_step_keeping = jax.jit(_train_step, static_argnames=("spec",))


@dataclasses.dataclass(frozen=True, eq=False)
class TrainStep:
    """``step(state, batch, key) -> (state, metrics)``: the module-level jitted step with its :class:`StepSpec`
    and the (replicated) teacher variables bound. ``lower(state, batch, key)`` lowers the same program."""

    spec: StepSpec
    teacher_variables: Any = None
    donate: bool = True

    @property
    def jitted(self):
        return _train_step_donating if self.donate else _train_step_keeping

    def __call__(self, state: TrainState, batch, key):
        return self.jitted(state, batch, key, self.teacher_variables, spec=self.spec)

    def lower(self, state: TrainState, batch, key):
        return self.jitted.lower(state, batch, key, self.teacher_variables, spec=self.spec)


def make_train_step(
    tracker,
    optim: OptimConfig,
    total_steps: int,
    mesh=None,
    *,
    compute_dtype=jnp.float32,
    donate: bool = True,
    teacher=None,
) -> TrainStep:
    """``train_step(state, batch, key) -> (state, metrics)`` of ``tracker`` with the optimizer of ``optim`` over
    ``total_steps`` (:func:`make_optimizer`; the state must come from the same optimizer), sharded over ``mesh``
    when given (state replicated, batch split over ``data``: pass ``jaxtrack.train.mesh.shard_batch(batch, mesh)``
    and a replicated state).

    One module-level ``jax.jit`` with the tracker, the optimizer settings, the mesh and the teacher tracker as a
    static argument compared by value (:class:`StepSpec`): every step built from equal settings runs the same
    compiled program.

    batch: ``template`` [B,Z,Z,3] and ``search`` [B,X,X,3] (uint8 or float, BGR 0..255), ``box`` [B,4] float32
    (x0, y0, x1, y1) in search-crop pixels, ``negative`` [B] bool. The loss is :func:`jaxtrack.losses.training_loss`
    on :func:`jaxtrack.losses.make_targets`. metrics: the loss terms, ``loss``, ``lr`` (of this step) and
    ``grad_norm``.

    ``teacher`` (a :class:`jaxtrack.train.distill.Teacher`, or None): a frozen tracker run in inference mode and
    float32 on the same ``template`` / ``search`` crops (the centred window of its search size), whose soft
    targets add :func:`jaxtrack.losses.distill.loss` to the loss (metrics ``distill_cls``, ``distill_reg``,
    ``distill``, ``teacher_*``, ``gt_total`` = the ground-truth loss; ``total`` = ``loss`` = both). Its variables
    are an argument of the jitted program (replicated over ``mesh``), never differentiated. With ``teacher=None``
    the program is exactly the one without distillation.
    """
    teacher_variables = None
    if teacher is not None:
        from jaxtrack.losses import distill

        distill.check_compatible(tracker.config, teacher.tracker.config)
        if mesh is not None:
            from jaxtrack.train.mesh import replicate

            teacher_variables = replicate(teacher.variables, mesh)
        else:
            teacher_variables = jax.device_put(teacher.variables)
    spec = StepSpec(
        tracker=tracker, optim=optim, total_steps=int(total_steps), mesh=mesh,
        compute_dtype=jnp.dtype(compute_dtype).name,
        teacher_tracker=None if teacher is None else teacher.tracker,
        teacher_weights=None if teacher is None else teacher.weights,
    )
    return TrainStep(spec, teacher_variables, donate)

"""The attack loop (budgets, vmap, convex optimum, FGSM, momentum, unrolled gradients), crop attacks on small
random-weight trackers, template refinement, and PGD on NanoTrack with its real weights."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxtrack import attacks, tracking
from jaxtrack.attacks import core
from jaxtrack.tracking.base import Tracker
from jaxtrack.tracking.crop import channel_average, crop_pysot

# ------------------------------------------------------------------------------------------------ toy losses


def _quadratic(a, b, x):
    """A random linear + quadratic toy loss sum(a x + b x²) (a, b of x's shape)."""
    return jnp.sum(a * x + b * x * x)


def _budget_ok(x_adv, x0, config):
    x_adv, x0 = np.asarray(x_adv), np.asarray(x0, np.float32)
    assert x_adv.dtype == np.float32 and x_adv.shape == x0.shape
    assert np.all(x_adv >= config.clip_min) and np.all(x_adv <= config.clip_max)
    if config.eps is None:
        return
    delta = x_adv - x0  # float32 arithmetic: the L∞ budget holds exactly
    if config.norm == "linf":
        assert np.max(np.abs(delta), initial=0.0) <= np.float32(config.eps)
    else:
        assert np.sqrt(np.sum(delta.astype(np.float64) ** 2)) <= config.eps + 1e-4


def test_configs_and_constructors():
    assert attacks.fgsm(8.0) == attacks.AttackConfig(eps=8.0, step_size=8.0, steps=1)
    b = attacks.bim(10.0, steps=10)
    assert (b.step_size, b.steps, b.random_start) == (1.0, 10, False)  # RTAA: alpha = eps / iterations
    p = attacks.pgd(8.0, steps=20, step_size=2.0)
    assert p.random_start and p.norm == "linf" and p.maximize
    m = attacks.mi_fgsm(8.0, steps=4)
    assert (m.momentum, m.step_size) == (1.0, 2.0)
    assert hash(p) == hash(attacks.pgd(8.0, 20, 2.0))  # usable as a static jit argument
    for bad in (
        dict(norm="l1"),
        dict(eps=-1.0),
        dict(steps=1.5),
        dict(steps=-1),
        dict(step_size=-1.0),
        dict(eps=None, random_start=True),
        dict(momentum=-0.5),
        dict(clip_min=5.0, clip_max=5.0),
    ):
        with pytest.raises(ValueError):
            attacks.AttackConfig(**{**dict(eps=8.0, step_size=1.0, steps=2), **bad})
    with pytest.raises(ValueError, match="needs a PRNG key"):
        attacks.run_attack(jnp.sum, jnp.zeros(3), p)


@settings(max_examples=10, deadline=None, derandomize=True)
@given(
    shape=st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3)),
    steps=st.integers(0, 4),
    eps=st.one_of(st.floats(0.0, 20.0), st.sampled_from([0.0, 0.1, 1.0, 8.0, 255.0])),
    step_size=st.floats(0.0, 8.0),
    norm=st.sampled_from(["linf", "l2"]),
    random_start=st.booleans(),
    momentum=st.sampled_from([0.0, 0.9]),
    maximize=st.booleans(),
    pair=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_every_output_respects_its_budget(
    shape, steps, eps, step_size, norm, random_start, momentum, maximize, pair, seed
):
    rng = np.random.default_rng(seed)
    x0 = rng.uniform(0, 255, shape).astype(np.float32)
    x0.reshape(-1)[: x0.size // 3] = rng.choice([0.0, 255.0, 254.9, 0.3], x0.size // 3)  # pixels on the box edges
    a, b = (rng.normal(size=shape).astype(np.float32) for _ in range(2))
    config = attacks.AttackConfig(
        eps=eps,
        step_size=step_size,
        steps=steps,
        norm=norm,
        random_start=random_start,
        momentum=momentum,
        maximize=maximize,
    )
    key = jax.random.key(seed)
    if pair:  # a (template, search)-like pair: every leaf has its own budget
        y0 = rng.uniform(0, 255, (2, 3, 3)).astype(np.float32)
        x_adv, y_adv = _toy_pair_attack(a, b, (x0, y0), key, config)
        _budget_ok(y_adv, y0, config)
    else:
        x_adv = _toy_attack(a, b, x0, key, config)
    _budget_ok(x_adv, x0, config)


@functools.partial(jax.jit, static_argnums=4)
def _toy_attack(a, b, x0, key, config):
    return attacks.run_attack(functools.partial(_quadratic, a, b), x0, config, key)


@functools.partial(jax.jit, static_argnums=4)
def _toy_pair_attack(a, b, xy0, key, config):
    return attacks.run_attack(lambda xy: _quadratic(a, b, xy[0]) + jnp.sum(jnp.sin(xy[1])), xy0, config, key)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_projection_and_random_start_stay_inside(norm):
    rng = np.random.default_rng(8)
    x0 = rng.uniform(0, 255, (5, 7)).astype(np.float32)
    x0[0] = [0, 255, 0.5, 254.5, 0, 255, 128]
    far = x0 + rng.normal(scale=100, size=x0.shape).astype(np.float32)
    for eps in (0.0, 0.7, 8.0, 300.0):
        config = attacks.AttackConfig(eps=eps, step_size=1.0, steps=1, norm=norm)
        projected = jax.jit(attacks.project, static_argnums=(2, 3))(far, x0, eps, norm)
        _budget_ok(projected, x0, config)
        if 0 < eps < 300:  # the far point is outside the ball: it is projected onto its boundary (box permitting)
            delta = np.asarray(projected) - x0
            size = np.max(np.abs(delta)) if norm == "linf" else np.linalg.norm(delta)
            assert size > 0.5 * eps
        for seed in range(3):
            _budget_ok(core.random_init(jax.random.key(seed), x0, eps, norm), x0, config)
    np.testing.assert_array_equal(np.asarray(attacks.project(far, x0, None)), np.clip(far, 0, 255))


def test_integer_inputs_are_cast():
    x0 = np.full((2, 2, 3), 250, np.uint8)
    x_adv = attacks.run_attack(jnp.sum, x0, attacks.fgsm(8.0))
    assert x_adv.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(x_adv), 255.0)


def test_vmapped_attack_equals_per_example_attacks():
    rng = np.random.default_rng(0)
    xs = rng.uniform(0, 255, (3, 4, 4, 3)).astype(np.float32)
    targets = rng.uniform(-300, 600, (3, 4, 4, 3)).astype(np.float32)  # mostly outside the box: gradients ≠ 0
    weights = rng.uniform(0.5, 2.0, (3, 4, 4, 3)).astype(np.float32)

    def loss(x, t, w):
        return jnp.sum(w * (x - t) ** 2)

    config = attacks.AttackConfig(eps=6.0, step_size=2.0, steps=3, norm="l2", random_start=True, momentum=0.9)
    key = jax.random.key(3)
    batched = jax.jit(lambda x, t, w: attacks.run_attack_batch(loss, x, config, key, t, w))(xs, targets, weights)
    keys = jax.random.split(key, 3)
    for i in range(3):
        one = attacks.run_attack(functools.partial(loss, t=targets[i], w=weights[i]), xs[i], config, keys[i])
        np.testing.assert_allclose(np.asarray(batched[i]), np.asarray(one), atol=1e-4)


@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_reaches_the_constrained_minimum_of_a_convex_quadratic(random_start):
    """min Σ w (x − c)² over the L∞ ball ∩ [0, 255]: the minimiser is clip(c) to the ball ∩ box (separable)."""
    rng = np.random.default_rng(1)
    shape = (5, 5, 3)
    x0 = rng.uniform(0, 255, shape).astype(np.float32)
    x0[0, :, :] = rng.uniform(0, 3, (5, 3))  # near the lower edge of the pixel box
    x0[1, :, :] = rng.uniform(252, 255, (5, 3))  # near the upper edge
    w = rng.uniform(0.1, 3.0, shape).astype(np.float32)
    eps, alpha, steps = 8.0, 1.0, 20  # 20 steps of 1 cover the 2·eps from any start
    # c outside the feasible box in every coordinate: the optimum lies on its boundary, reached exactly.
    side = np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)
    c = x0 + side * rng.uniform(eps + 1, 40, shape).astype(np.float32)
    lo, hi = np.maximum(x0 - eps, 0), np.minimum(x0 + eps, 255)
    optimum = np.clip(c, lo, hi)
    config = attacks.AttackConfig(eps=eps, step_size=alpha, steps=steps, random_start=random_start, maximize=False)

    def loss(x):
        return jnp.sum(w * (x - c) ** 2)

    x_star = np.asarray(attacks.run_attack(loss, x0, config, jax.random.key(0)))
    np.testing.assert_allclose(x_star, optimum, atol=1e-4)
    assert float(loss(x_star)) <= float(loss(jnp.asarray(optimum))) + 1e-3
    # c inside: sign steps of size alpha end within alpha of the optimum c.
    c_in = np.clip(x0 + rng.uniform(-eps + 1, eps - 1, shape).astype(np.float32), 0, 255)

    def loss_in(x):
        return jnp.sum(w * (x - c_in) ** 2)

    x_in = np.asarray(attacks.run_attack(loss_in, x0, config, jax.random.key(0)))
    assert np.max(np.abs(x_in - c_in)) <= alpha + 1e-4


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_a_traced_budget_reaches_each_constrained_minimum_with_one_program(norm):
    """ε and the step size as traced scalars (how one compiled defense-training step serves every stage of an ε
    curriculum): at each budget the attack reaches the hand-worked minimiser of a quadratic over the ball ∩ box
    (L∞: the separable clip; L2: x0 + ε (c − x0) / ‖c − x0‖), and all budgets run one compiled program."""
    rng = np.random.default_rng(4)
    x0 = rng.uniform(60, 190, (6, 6, 3)).astype(np.float32)
    c = x0 + np.where(rng.random(x0.shape) < 0.5, -1, 1) * rng.uniform(20, 40, x0.shape).astype(np.float32)
    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, _s, **_: compiles.append(1) if event.endswith("backend_compile_duration") else None)

    @jax.jit
    def attack(x0, eps, key):
        # L2 from the clean input: every step is along the ray x0 -> c, projected back onto it (exact); L∞ from a
        # random start (the traced ε also sizes the random start)
        config = attacks.AttackConfig(eps=eps, step_size=eps / 4 if norm == "linf" else eps / 3, steps=12, norm=norm,
                                      random_start=norm == "linf", maximize=False)
        return attacks.run_attack(lambda x: jnp.sum((x - c) ** 2), x0, config, key)

    for i, eps in enumerate((2.0, 4.0, 8.0)):
        if norm == "linf":
            optimum = np.clip(c, x0 - eps, x0 + eps)
        else:
            optimum = x0 + eps * (c - x0) / np.linalg.norm(c - x0)
        x_star = np.asarray(attack(x0, jnp.float32(eps), jax.random.key(i)) if norm == "linf" else
                            attack(x0, jnp.float32(eps), None))
        np.testing.assert_allclose(x_star, optimum, atol=1e-3, err_msg=f"eps {eps}")  # float32 rounding of ~200
        if i == 0:
            compiles.clear()  # the first call compiles the program; the other budgets must not
    assert not compiles, f"{len(compiles)} programs compiled for the later budgets"
    with pytest.raises(jax.errors.ConcretizationTypeError):  # a traced momentum is not a budget
        jax.jit(lambda m: attacks.AttackConfig(eps=1.0, step_size=1.0, steps=1, momentum=m).steps)(0.5)


def test_l2_pgd_reaches_the_projection_onto_the_ball():
    """min ‖x − c‖² over the L2 ball (box inactive): the minimiser is x0 + eps (c − x0) / ‖c − x0‖."""
    rng = np.random.default_rng(2)
    x0 = rng.uniform(100, 150, (4, 4, 3)).astype(np.float32)
    c = x0 + rng.normal(scale=20, size=x0.shape).astype(np.float32)
    eps = 10.0
    optimum = x0 + eps * (c - x0) / np.linalg.norm(c - x0)
    config = attacks.AttackConfig(eps=eps, step_size=3.0, steps=6, norm="l2", maximize=False)
    x_star = attacks.run_attack(lambda x: jnp.sum((x - c) ** 2), x0, config)
    np.testing.assert_allclose(np.asarray(x_star), optimum, atol=1e-3)


def test_fgsm_is_one_signed_step_of_size_eps():
    rng = np.random.default_rng(4)
    x0 = rng.uniform(0, 255, (6, 6, 3)).astype(np.float32)
    a, b = (rng.normal(size=x0.shape).astype(np.float32) for _ in range(2))
    loss = functools.partial(_quadratic, a, b)
    g = np.asarray(jax.grad(loss)(x0))
    x_adv = np.asarray(attacks.run_attack(loss, x0, attacks.fgsm(8.0)))
    np.testing.assert_allclose(x_adv, np.clip(x0 + 8.0 * np.sign(g), 0, 255), atol=1e-4)
    # L2 FGSM: one step of length eps along the gradient (box inactive here).
    x1 = np.full((3, 3, 3), 128.0, np.float32)
    x_l2 = np.asarray(attacks.run_attack(loss_l2 := (lambda x: jnp.sum(a[:3, :3] * x)), x1, attacks.fgsm(8.0, "l2")))
    g1 = np.asarray(jax.grad(loss_l2)(x1))
    np.testing.assert_allclose(x_l2, x1 + 8.0 * g1 / np.linalg.norm(g1), atol=1e-4)
    # Minimising steps the other way.
    x_min = np.asarray(attacks.run_attack(loss, x0, attacks.fgsm(8.0).replace(maximize=False)))
    np.testing.assert_allclose(x_min, np.clip(x0 - 8.0 * np.sign(g), 0, 255), atol=1e-4)


def test_momentum_accumulates_l1_normalised_gradients():
    """Two MI-FGSM steps by hand: m1 = g0/‖g0‖₁, m2 = μ m1 + g1/‖g1‖₁, x2 = x1 + α sign(m2)."""
    x0 = jnp.array([100.0, 100.0, 100.0])
    t = jnp.array([100.9, 40.0, 99.0])

    def loss(x):
        return -jnp.sum(jnp.array([100.0, 1.0, 1.0]) * (x - t) ** 2)

    mu, alpha = 0.9, 1.0
    g0 = np.asarray(jax.grad(loss)(x0))
    x1 = np.asarray(x0) + alpha * np.sign(g0)
    g1 = np.asarray(jax.grad(loss)(jnp.asarray(x1)))
    m2 = mu * g0 / np.abs(g0).sum() + g1 / np.abs(g1).sum()
    want = x1 + alpha * np.sign(m2)
    got = attacks.run_attack(loss, x0, attacks.AttackConfig(eps=8.0, step_size=alpha, steps=2, momentum=mu))
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)
    assert np.sign(m2[0]) != np.sign(g1[0])  # the momentum changed a direction: the case is not trivial


def test_return_losses_traces_every_iterate():
    rng = np.random.default_rng(5)
    x0 = rng.uniform(0, 255, (4, 4)).astype(np.float32)
    a = rng.normal(size=x0.shape).astype(np.float32)

    def loss(x):
        return jnp.sum(a * x)

    config = attacks.bim(8.0, steps=4)
    x_adv, losses = attacks.run_attack(loss, x0, config, return_losses=True)
    assert losses.shape == (5,)
    assert float(losses[0]) == pytest.approx(float(loss(x0)), rel=1e-6)
    assert float(losses[-1]) == pytest.approx(float(loss(x_adv)), rel=1e-6)
    assert np.all(np.diff(np.asarray(losses)) > 0)  # a linear loss rises at every step
    np.testing.assert_array_equal(np.asarray(x_adv), np.asarray(attacks.run_attack(loss, x0, config)))


@pytest.mark.parametrize("maximize", [True, False])
def test_restarts_keep_the_best_of_independent_runs(maximize):
    """restarts=R returns, of the R runs started from fold_in(key, r), the one with the best final loss (a loss with
    many local optima, so the runs end apart)."""
    rng = np.random.default_rng(9)
    x0 = rng.uniform(20, 230, (3, 3)).astype(np.float32)
    w = rng.uniform(0.5, 2.0, x0.shape).astype(np.float32)

    def loss(x):
        return jnp.sum(w * jnp.cos(jnp.pi * (x - x0) / 3.0))

    single = attacks.pgd(8.0, steps=4, step_size=0.5).replace(maximize=maximize)
    key = jax.random.key(3)
    runs = [attacks.run_attack(loss, x0, single, jax.random.fold_in(key, r), return_losses=True) for r in range(5)]
    finals = np.array([float(loss(x)) for x, _ in runs])
    assert np.ptp(finals) > 0.1  # the restarts really end at different optima
    best = int(np.argmax(finals) if maximize else np.argmin(finals))
    x_adv, losses = attacks.run_attack(loss, x0, single.replace(restarts=5), key, return_losses=True)
    np.testing.assert_allclose(np.asarray(x_adv), np.asarray(runs[best][0]), atol=1e-5)
    np.testing.assert_allclose(np.asarray(losses), np.asarray(runs[best][1]), rtol=1e-5)
    # a warm start is the first restart's starting point
    start = x0 + 7.0
    x_w, l_w = attacks.run_attack(loss, x0, single.replace(restarts=2), key, return_losses=True, start=start)
    first = attacks.run_attack(loss, x0, single, key, return_losses=True, start=start)
    second = attacks.run_attack(loss, x0, single, jax.random.fold_in(key, 1), return_losses=True)
    pick = first if (float(first[1][-1]) > float(second[1][-1])) == maximize else second
    np.testing.assert_allclose(np.asarray(x_w), np.asarray(pick[0]), atol=1e-5)
    with pytest.raises(ValueError, match="restarts > 1 needs random_start"):
        attacks.bim(8.0, steps=4).replace(restarts=3)
    with pytest.raises(ValueError, match="one restart"):
        attacks.run_attack_unrolled(loss, x0, single.replace(restarts=2), key)
    with pytest.raises(ValueError, match="only pgd"):
        attacks.attack_config("bim", 8.0, restarts=2)


def test_attack_on_outputs_equals_the_attack_between_two_forward_passes():
    """run_attack_on_outputs folds the clean forward pass and the one at the result into the attack loop. Reference:
    the three done apart (forward at x0, run_attack on loss(forward(x), clean), forward at x_adv), for every kind of
    step, a warm start, no steps, restarts and a vmapped batch. Different XLA programs of the same arithmetic: equal
    to float noise (1e-4 on 0..255 pixels; measured ≤ 3e-5); the loss's gradients are far from 0, so no sign step
    flips. The folded program evaluates the forward pass in 2 places (the loop's two branches), the reference in 3."""
    rng = np.random.default_rng(11)
    x0 = rng.uniform(20, 230, (2, 4, 3)).astype(np.float32)
    w = rng.normal(size=(24, 5)).astype(np.float32) / 40.0

    def forward(x):
        h = jnp.tanh(x.reshape(-1) @ w / 4.0)
        return {"h": h, "s": jnp.sum(h)}

    def loss_of_outputs(out, clean):  # depends on the clean outputs, as the trackers' labels do
        return jnp.sum(out["h"] * jnp.sign(clean["h"])) + 0.1 * out["s"] ** 2

    def reference(x, config, key, start=None):
        clean = forward(x)
        x_adv = attacks.run_attack(lambda xx: loss_of_outputs(forward(xx), clean), x, config, key, start=start)
        return x_adv, clean, forward(x_adv)

    key = jax.random.key(4)
    configs = [attacks.pgd(8.0, 5, 2.0), attacks.bim(6.0, 3), attacks.fgsm(4.0), attacks.mi_fgsm(8.0, 4),
               attacks.pgd(300.0, 3, 100.0, norm="l2"), attacks.bim(8.0, 0, 1.0),
               attacks.pgd(8.0, 3, 2.0).replace(restarts=2)]
    worst = 0.0
    for config, start in [(c, None) for c in configs] + [(configs[0], x0 + 5.0), (configs[1], x0 - 5.0)]:
        want = reference(x0, config, key, start)
        got = attacks.run_attack_on_outputs(forward, loss_of_outputs, x0, config, key, start)
        for g, r in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(np.asarray(g), np.asarray(r), atol=1e-4, err_msg=str((config, start)))
            worst = max(worst, float(np.abs(np.asarray(g) - np.asarray(r)).max()))
        assert np.abs(np.asarray(got[0]) - x0).max() > 0 or config.steps == 0
    print("max |folded - reference|", worst)
    batch = np.stack([x0, x0[::-1]])
    keys = jax.random.split(key, 2)
    config = attacks.pgd(8.0, 4, 2.0)
    got = jax.vmap(lambda x, k: attacks.run_attack_on_outputs(forward, loss_of_outputs, x, config, k))(batch, keys)
    for i in range(2):
        want = reference(batch[i], config, keys[i])
        for g, r in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(np.asarray(g)[i], np.asarray(r), atol=1e-4)

    # without the result's outputs (a surrogate's): one iteration fewer, the same attack
    x_adv, clean, none = attacks.run_attack_on_outputs(forward, loss_of_outputs, x0, config, key, final_outputs=False)
    want = reference(x0, config, key)
    assert none is None
    np.testing.assert_allclose(np.asarray(x_adv), np.asarray(want[0]), atol=1e-4)
    np.testing.assert_allclose(np.asarray(clean["h"]), np.asarray(want[1]["h"]), atol=1e-6)

    def count_forwards(fn):
        return str(jax.make_jaxpr(fn)(x0, key)).count("tanh")

    assert count_forwards(lambda x, k: attacks.run_attack_on_outputs(forward, loss_of_outputs, x, config, k)) == 2
    assert count_forwards(lambda x, k: reference(x, config, k)) == 3


# ------------------------------------------------------------------------------------------------ unrolled


def test_unrolled_forward_equals_the_loop():
    rng = np.random.default_rng(6)
    x0 = rng.uniform(0, 255, (3, 4, 2)).astype(np.float32)
    a, b = (rng.normal(size=x0.shape).astype(np.float32) for _ in range(2))
    loss = functools.partial(_quadratic, a, b)
    for config in (attacks.pgd(8.0, 4, 3.0), attacks.mi_fgsm(5.0, 3, norm="l2"), attacks.bim(4.0, 3)):
        key = jax.random.key(1)
        np.testing.assert_allclose(
            np.asarray(attacks.run_attack_unrolled(loss, x0, config, key)),
            np.asarray(attacks.run_attack(loss, x0, config, key)),
            atol=1e-4,
        )


def test_unrolled_straight_through_gradient_matches_its_analytic_derivative():
    """loss(x; θ) = θ Σ x²/2, so ∇ = θx and, with d sign(g)/dg := 1, two ascent steps give
    x1 = x0 + α sign(θ x0),  x2 = x1 + α sign(θ x1);  dx1/dθ = α x0,  dx2/dθ = dx1/dθ + α (x1 + θ dx1/dθ)."""
    x0 = jnp.array([10.0, 50.0, 120.0, 200.0])
    v = jnp.array([1.0, -2.0, 0.5, 3.0])
    alpha, theta = 2.0, 0.7
    config = attacks.AttackConfig(eps=None, step_size=alpha, steps=2)

    def f(th):
        x_adv = attacks.run_attack_unrolled(lambda x: th * jnp.sum(x * x) / 2, x0, config)
        return jnp.sum(v * x_adv)

    x1 = x0 + alpha * jnp.sign(theta * x0)
    dx1 = alpha * x0
    dx2 = dx1 + alpha * (x1 + theta * dx1)
    assert float(jax.grad(f)(theta)) == pytest.approx(float(jnp.sum(v * dx2)), rel=1e-5)
    # The default (non-unrolled) attack carries no gradient at all.
    g = jax.grad(lambda th: jnp.sum(attacks.run_attack(lambda x: th * jnp.sum(x * x), x0, config)))(theta)
    assert float(g) == 0.0


def test_unrolled_smooth_sign_gradient_matches_finite_differences():
    """With sign_fn = tanh(g/τ) the whole loop is smooth: d/dθ and d/dx0 of the result match central finite
    differences (float64; ε-ball and box inactive, projections are identities locally)."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(7)
        x0 = jnp.asarray(rng.uniform(80, 170, (3, 3)))
        a = jnp.asarray(rng.normal(size=(3, 3)))
        v = jnp.asarray(rng.normal(size=(3, 3)))
        config = attacks.AttackConfig(eps=50.0, step_size=1.5, steps=4, norm="linf", momentum=0.5)

        def smooth(g):
            return jnp.tanh(g / 0.3)

        def f(theta, x):
            def loss(z):
                return jnp.sum(jnp.sin(theta * a * z / 40.0)) + theta * jnp.sum(z * z) / 2e4

            return jnp.sum(v * attacks.run_attack_unrolled(loss, x, config, sign_fn=smooth))

        theta, h = 0.8, 1e-5
        g_theta, g_x = jax.grad(f, argnums=(0, 1))(theta, x0)
        fd_theta = (f(theta + h, x0) - f(theta - h, x0)) / (2 * h)
        assert float(g_theta) == pytest.approx(float(fd_theta), rel=1e-6, abs=1e-8)
        assert abs(float(g_theta)) > 1e-2  # a real dependence, not 0 == 0
        e = jnp.zeros((3, 3)).at[1, 2].set(1.0)
        fd_x = (f(theta, x0 + h * e) - f(theta, x0 - h * e)) / (2 * h)
        assert float(g_x[1, 2]) == pytest.approx(float(fd_x), rel=1e-6, abs=1e-8)


# ------------------------------------------------------------------------------------------------ toy tracker


class ToyTracker:
    """A duck-typed tracker whose "network" is a cheap smooth function of the crops (3x3 = 9 positions), to test
    the crop attacks and the refinement plumbing without compiling a CNN. Crops and box conventions are pysot's."""

    def box_to_center_size(self, box):
        return box[:2] + (box[2:] - 1.0) / 2.0, box[2:]

    def template_crop(self, frame, center, size, avg):
        return crop_pysot(frame, center, jnp.sqrt(jnp.prod(size + 0.5 * jnp.sum(size))), 12, avg)

    def search_crop(self, frame, center, size, avg):
        s_z = jnp.sqrt(jnp.prod(size + 0.5 * jnp.sum(size)))
        return crop_pysot(frame, center, 2 * s_z, 24, avg), 12 / s_z

    def embed_template(self, variables, z):
        z = z[None] if z.ndim == 3 else z
        return {"k": jnp.mean(z, axis=(1, 2)) * variables["w"] / 255.0}  # [1, 3]

    def head(self, variables, template, x):
        x = x[None] if x.ndim == 3 else x
        cells = x.reshape(x.shape[0], 3, 8, 3, 8, 3).mean(axis=(2, 4)).reshape(x.shape[0], 9, 3) / 255.0
        logits = jnp.sum(jnp.sin(3 * cells) * template["k"][:, None, :], axis=-1) + variables["b"]
        shift = jnp.tanh(2 * (cells[..., :2] - cells[..., 1:])) * 8.0
        return {"logits": logits, "shift": shift, "size": 6.0 * jnp.exp(cells.mean(-1, keepdims=True) - 0.5)}

    def init_with_crop(self, variables, frame, center, size, avg, z):  # the Tracker interface's generic pieces
        return Tracker.init_with_crop(self, variables, frame, center, size, avg, z)

    def dense(self, variables, template, x):
        return Tracker.dense(self, variables, template, x)

    def dense_from_head(self, raw):
        return Tracker.dense_from_head(self, raw)

    def dense_predictions(self, raw):
        grid = jnp.stack(jnp.meshgrid(jnp.arange(3.0), jnp.arange(3.0)), -1).reshape(9, 2) * 8 - 8
        centres = grid + raw["shift"]
        wh = jnp.concatenate([raw["size"], raw["size"] * 1.2], axis=-1)
        return jax.nn.sigmoid(raw["logits"]), jnp.concatenate([centres, wh], axis=-1)


TOY = ToyTracker()
TOY_VARS = {"w": jnp.array([1.5, -2.0, 0.7]), "b": jnp.float32(0.3)}


def _toy_pairs(n=3, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.uniform(0, 255, (n, 12, 12, 3)).astype(np.float32)
    x = rng.uniform(0, 255, (n, 24, 24, 3)).astype(np.float32)
    ref = np.tile(np.array([[0.0, 0.0, 6.0, 7.0]], np.float32), (n, 1)) + rng.normal(size=(n, 4)).astype(np.float32)
    return jnp.asarray(z), jnp.asarray(x), jnp.asarray(ref)


@pytest.mark.parametrize("target", attacks.TARGETS)
def test_crop_attack_targets_and_traced_losses(target):
    z, x, ref = _toy_pairs()
    config = attacks.bim(8.0, steps=4, step_size=2.0)
    z_adv, x_adv, losses = attacks.attack_crops(
        TOY, TOY_VARS, z, x, ref, attacks.dua_loss, config, target=target, return_losses=True
    )
    assert z_adv.shape == z.shape and x_adv.shape == x.shape and losses.shape == (3, 5)
    for adv, clean, attacked in ((z_adv, z, target in ("template", "both")), (x_adv, x, target in ("search", "both"))):
        if attacked:
            _budget_ok(adv, clean, config)
            assert np.max(np.abs(np.asarray(adv - clean))) > 0
        else:
            np.testing.assert_array_equal(np.asarray(adv), np.asarray(clean))
    losses = np.asarray(losses)
    assert np.all(losses[:, -1] > losses[:, 0])
    clean_loss = attacks.crop_losses(TOY, TOY_VARS, z, x, ref, attacks.dua_loss)
    adv_loss = attacks.crop_losses(TOY, TOY_VARS, z_adv, x_adv, ref, attacks.dua_loss, z, x)
    np.testing.assert_allclose(losses[:, 0], np.asarray(clean_loss), rtol=1e-5)
    np.testing.assert_allclose(losses[:, -1], np.asarray(adv_loss), rtol=1e-5)


def test_crop_attack_batch_equals_single_pairs_and_relabel():
    z, x, ref = _toy_pairs()
    config = attacks.pgd(6.0, steps=3, step_size=2.5)
    key = jax.random.key(5)
    z_adv, x_adv = attacks.attack_crops(
        TOY, TOY_VARS, z, x, ref, attacks.csa_loss, config, key, target="both", relabel=True
    )
    keys = jax.random.split(key, 3)
    single = jax.jit(attacks.attack_pair, static_argnums=(0, 5, 6, 8, 9))
    for i in range(3):
        zi, xi = single(TOY, TOY_VARS, z[i], x[i], ref[i], attacks.csa_loss, config, keys[i], "both", True)
        np.testing.assert_allclose(np.asarray(z_adv[i]), np.asarray(zi), atol=1e-4)
        np.testing.assert_allclose(np.asarray(x_adv[i]), np.asarray(xi), atol=1e-4)

    @jax.jit
    def relabelled_vs_current(z, x, ref, x_moved):
        """relabel=True is the loss with clean=None (labels from the current predictions)."""
        loss_fn, _ = attacks.pair_objective(TOY, TOY_VARS, z, x, ref, attacks.dua_loss, "search", True)
        fixed_fn, _ = attacks.pair_objective(TOY, TOY_VARS, z, x, ref, attacks.dua_loss, "search", False)
        current = attacks.dua_loss(*attacks.predict_pair(TOY, TOY_VARS, z, x_moved), ref)
        return loss_fn(x_moved), current, fixed_fn(x_moved)

    moved = x[0].at[8:16, 8:16].set(jnp.array([255.0, 0, 0]))  # moves the centre box off the reference
    relabelled, current, fixed = relabelled_vs_current(z[0], x[0], ref[0], moved)
    assert float(relabelled) == pytest.approx(float(current), rel=1e-6)
    assert float(fixed) != pytest.approx(float(current), rel=1e-3)  # the moved crop changed the labels


def test_refinement_is_vmappable_across_sequences_and_differentiable():
    rng = np.random.default_rng(9)
    frames = rng.integers(0, 255, (2, 40, 50, 3)).astype(np.uint8)
    boxes = np.array([[10, 12, 9, 8], [20, 5, 7, 11]], np.float32)
    # the toy tracker has no family training loss: the family-independent one
    refine = functools.partial(attacks.refine_template, TOY, TOY_VARS, steps=3, alpha=0.5, loss="generic")
    batched = jax.vmap(refine)(jnp.asarray(frames), jnp.asarray(boxes))
    for i in range(2):
        one = refine(frames[i], boxes[i])
        np.testing.assert_allclose(np.asarray(batched[i]), np.asarray(one), atol=1e-4)
    z0 = jax.jit(attacks.refinement_problem, static_argnums=0)(TOY, TOY_VARS, frames[0], boxes[0])[0]
    assert np.max(np.abs(np.asarray(batched[0]) - np.asarray(z0))) <= 1.5 + 1e-4  # 3 steps of 0.5, no eps-ball
    assert float(attacks.refinement_loss(TOY, TOY_VARS, batched[0], frames[0], boxes[0], "generic")) < float(
        attacks.refinement_loss(TOY, TOY_VARS, z0, frames[0], boxes[0], "generic")
    )
    states = jax.vmap(lambda f, b: attacks.refined_init(TOY, TOY_VARS, f, b, steps=3, alpha=0.5, loss="generic"))(
        frames, boxes
    )
    np.testing.assert_allclose(
        np.asarray(states.template["k"][:, 0]), np.asarray(TOY.embed_template(TOY_VARS, batched)["k"]), rtol=1e-5
    )
    # An adaptive attacker differentiates the refined template with respect to the first frame (straight-through).
    frame = jnp.asarray(frames[0], jnp.float32)
    grad = jax.grad(
        lambda f: jnp.sum(
            attacks.refine_template(TOY, TOY_VARS, f, boxes[0], steps=3, alpha=0.5, differentiable=True,
                                    loss="generic") ** 2
        )
    )(frame)
    assert np.all(np.isfinite(np.asarray(grad))) and np.any(np.asarray(grad) != 0)


# ------------------------------------------------------------------------------------------------ trackers


def _max_pool_is_differentiable() -> str | None:
    """Attacks need reverse-mode gradients through the networks under jit. None if they work, else the error."""
    from jaxtrack.models.layers import max_pool2d

    try:
        jax.jit(jax.grad(lambda x: jnp.sum(max_pool2d(x, 3, 2, ceil_mode=True))))(jnp.ones((1, 7, 7, 2)))
    except Exception as err:  # noqa: BLE001
        return f"{type(err).__name__}: {str(err).splitlines()[0]}"
    return None


POOL_ERROR = _max_pool_is_differentiable()
needs_gradients = pytest.mark.skipif(
    POOL_ERROR is not None, reason="no gradients through the networks: see test_networks_are_differentiable_under_jit"
)


def test_networks_are_differentiable_under_jit():
    assert POOL_ERROR is None, (
        "jaxtrack.models.layers.max_pool2d is not reverse-differentiable under jit: it passes its init value as a "
        "traced jnp.array, so lax.reduce_window falls back to the generic (untransposable) reduce_window instead "
        "of reduce_window_max. Pass the Python scalar -jnp.inf instead. Error: " + str(POOL_ERROR)
    )


SMALL = {"siamrpn_alex": dict(instance_size=191), "siamfcpp_alexnet": dict(instance_size=207)}


def _scene(seed=0, h=120, w=160):
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    frame[40:70, 30:60] = (200, 220, 40)  # the target: a bright square
    return frame, np.array([30, 40, 30, 30], np.float32)


def _tame(variables, factor=0.05):
    """Random heads saturate (logits of ±40, box offsets of exp(40)): every gradient of the losses vanishes. The
    output layers are the only ones with ≤ 20 channels in these families; scaling their weights keeps the random
    predictions in a realistic range (scores inside (0, 1), boxes of tens of pixels)."""
    params = jax.tree.map(lambda a: a * factor if a.ndim >= 1 and a.shape[-1] <= 20 else a, variables["params"])
    return {**variables, "params": params}


@functools.cache
def _tracker(name):
    tracker = tracking.create(name, **SMALL[name])
    return tracker, _tame(tracker.init_variables(jax.random.key(1)))


def _crop_batch(tracker):
    """Two (template crop, search crop, ground truth in the search crop) examples from two scenes."""
    zs, xs, refs = [], [], []
    for seed in (0, 1):
        frame, box = _scene(seed)
        moved = np.roll(frame, (3, 5), axis=(0, 1))  # the next frame: the target moved a little
        z, x, ref = _crops(tracker, frame, moved, box)
        zs.append(z)
        xs.append(x)
        refs.append(ref)
    return jnp.stack(zs), jnp.stack(xs), jnp.stack(refs)


@functools.partial(jax.jit, static_argnums=0)
def _crops(tracker, frame, next_frame, box):
    center, size = tracker.box_to_center_size(box)
    avg = channel_average(frame)
    x, scale = tracker.search_crop(next_frame, center, size, avg)
    return (
        tracker.template_crop(frame, center, size, avg),
        x,
        attacks.box_in_crop(box + jnp.array([5.0, 3, 0, 0]), center, scale),
    )


@needs_gradients
@pytest.mark.parametrize("name, target", [("siamrpn_alex", "search"), ("siamfcpp_alexnet", "template")])
def test_dua_loss_attack_increases_the_dua_loss(name, target):
    tracker, variables = _tracker(name)
    z, x, ref = _crop_batch(tracker)
    config = attacks.bim(8.0, steps=3, step_size=3.0)
    z_adv, x_adv, losses = attacks.attack_crops(
        tracker, variables, z, x, ref, attacks.dua_loss, config, target=target, return_losses=True
    )
    losses = np.asarray(losses)
    assert losses.shape == (2, 4) and np.all(np.isfinite(losses))
    assert np.all(losses[:, 1:].mean(axis=1) > losses[:, 0]), losses  # higher on average over the steps
    assert np.all(losses[:, -1] > losses[:, 0]), losses
    attacked, kept = (z_adv, z), (x_adv, x)
    if target == "search":
        attacked, kept = kept, attacked
    np.testing.assert_array_equal(np.asarray(kept[0]), np.asarray(kept[1]))
    _budget_ok(attacked[0], attacked[1], config)
    assert np.max(np.abs(np.asarray(attacked[0]) - np.asarray(attacked[1]))) > 1.0


@needs_gradients
@pytest.mark.parametrize("loss", ["family", "generic"])
def test_template_refinement_lowers_the_first_frame_tracking_loss(loss):
    tracker, variables = _tracker("siamrpn_alex")
    frame, box = _scene(0)
    center, size = tracker.box_to_center_size(jnp.asarray(box))
    z0 = tracker.template_crop(frame, center, size, channel_average(frame))
    # alpha 1.0 instead of MTP's 0.05 so that 3 steps move a random-weight network measurably.
    state = attacks.refined_init(tracker, variables, frame, box, steps=3, alpha=1.0, eps=2.0, loss=loss)
    z = attacks.refine_template(tracker, variables, frame, box, steps=3, alpha=1.0, eps=2.0, loss=loss)  # compiled once
    assert np.max(np.abs(np.asarray(z) - np.asarray(z0))) <= 2.0 + 1e-4  # z0 cropped outside jit
    assert np.all((np.asarray(z) >= 0) & (np.asarray(z) <= 255))
    before = float(attacks.refinement_loss(tracker, variables, z0, frame, box, loss))
    after = float(attacks.refinement_loss(tracker, variables, z, frame, box, loss))
    assert after < before, (before, after)
    np.testing.assert_allclose(np.asarray(state.center), np.asarray(center))
    np.testing.assert_allclose(np.asarray(state.size), np.asarray(size))


def test_mtp_refinement_loss_is_half_bce_plus_centreness_plus_iou():
    """``loss="mtp"`` (SiamFC++ only): focal α 0.5 with γ 0 is half the plain BCE, so the loss is
    0.5 · BCE(cls) / #positives + ctr + 1 · reg; BCE restated in NumPy from the raw logits and the positive cells
    (the same targets), ctr and reg from the family loss's unweighted terms. Other families are refused."""
    from jaxtrack import losses
    from jaxtrack.attacks.refine import refinement_problem

    tracker, variables = _tracker("siamfcpp_alexnet")
    frame, box = _scene(0)
    z0, x0, gt, _ = refinement_problem(tracker, variables, frame, jnp.asarray(box))
    centre = (tracker.config.instance_size - 1) / 2.0
    g = np.asarray(gt)
    xyxy = np.concatenate([centre + g[:2] - g[2:] / 2, centre + g[:2] + g[2:] / 2])[None]
    targets = losses.make_targets(tracker.config, jnp.asarray(xyxy), jnp.zeros((1,), bool))
    raw = tracker.head(variables, tracker.embed_template(variables, z0), x0)
    _, terms = losses.training_loss(tracker.config, raw, targets)
    logits = np.asarray(raw["cls"], np.float64).reshape(-1)
    label = np.asarray(targets["cls"]).reshape(-1)
    t = (label == 1).astype(np.float64)
    bce = np.maximum(logits, 0) - logits * t + np.log1p(np.exp(-np.abs(logits)))
    expected = 0.5 * np.sum(bce * (label != -1)) / max(t.sum(), 1.0) + float(terms["ctr"]) + float(terms["reg"])
    got = float(attacks.refinement_loss(tracker, variables, z0, frame, box, "mtp"))
    assert got == pytest.approx(expected, rel=1e-5)  # float32 sums over a few hundred cells
    assert got != pytest.approx(float(attacks.refinement_loss(tracker, variables, z0, frame, box, "family")), rel=1e-3)
    rpn, rpn_vars = _tracker("siamrpn_alex")
    with pytest.raises(ValueError, match="MTP's SiamFC\\+\\+ setting"):
        attacks.refinement_loss(rpn, rpn_vars, z0, frame, box, "mtp")


def test_attack_crops_rejects_bad_input():
    tracker = tracking.create("siamrpn_alex")
    z, x, ref = jnp.zeros((2, 127, 127, 3)), jnp.zeros((2, 255, 255, 3)), jnp.zeros((2, 4))
    with pytest.raises(ValueError, match="target"):
        attacks.attack_crops(tracker, {}, z, x, ref, attacks.dua_loss, attacks.fgsm(8.0), target="frame")
    with pytest.raises(ValueError, match="batch mismatch"):
        attacks.attack_crops(tracker, {}, z, x, ref[:1], attacks.dua_loss, attacks.fgsm(8.0))
    with pytest.raises(ValueError, match="must be"):
        attacks.attack_crops(tracker, {}, z[0], x, ref, attacks.dua_loss, attacks.fgsm(8.0))
    with pytest.raises(ValueError, match="PRNG key"):
        attacks.attack_crops(tracker, {}, z, x, ref, attacks.dua_loss, attacks.pgd(8.0, 2, 2.0))
    with pytest.raises(ValueError, match="non-positive"):
        attacks.refine_template(tracker, {}, np.zeros((50, 50, 3), np.uint8), [1, 1, 0, 5], steps=2)


# ------------------------------------------------------------------------------------------------ NanoTrack


def _nanotrack_v2(data_dir):
    if "nanotrack_v2" not in tracking.CONFIGS:
        pytest.skip("no nanotrack_v2 tracker in this checkout")
    from jaxtrack.convert.convert import abstract_variables, state_dict_to_variables
    from jaxtrack.convert.reader import load_torch_file

    path = data_dir / "weights/nanotrack/nanotrackv2.pth"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    tracker = tracking.create("nanotrack_v2")
    variables = state_dict_to_variables(
        load_torch_file(path), abstract_variables(tracker), ignore_prefixes=("neck.",), source=path.name
    )
    return tracker, variables


def test_pgd_lowers_the_best_score_of_nanotrack_on_a_real_frame(data_dir):
    """PGD-10 at ε = 8 (step 2, random start) on the search crop, Dua-Loss against the clean prediction, real
    NanoTrack v2 weights, OTB Crossing frames 0 (template) and 1 (search)."""
    from jaxtrack.data.sequence import load_otb_folder

    tracker, variables = _nanotrack_v2(data_dir)
    seq = load_otb_folder(data_dir / "sequences/OTB/Crossing")
    frame0, frame1, box0 = seq.frame(0), seq.frame(1), np.asarray(seq.ground_truth[0], np.float32)
    config = attacks.pgd(8.0, steps=10, step_size=2.0)

    @jax.jit
    def clean_and_attacked(variables, frame0, frame1, box0, key):
        center, size = tracker.box_to_center_size(box0)
        avg = channel_average(frame0)
        z = tracker.template_crop(frame0, center, size, avg)
        x, _ = tracker.search_crop(frame1, center, size, avg)
        scores, boxes = attacks.predict_pair(tracker, variables, z, x)
        _, x_adv = attacks.attack_pair(
            tracker, variables, z, x, attacks.best_box(scores, boxes), attacks.dua_loss, config, key
        )
        adv_scores, _ = attacks.predict_pair(tracker, variables, z, x_adv)
        return x, x_adv, scores.max(), adv_scores.max()

    x, x_adv, best, adv_best = clean_and_attacked(variables, frame0, frame1, box0, jax.random.key(0))
    _budget_ok(x_adv, x, config)
    assert float(best) > 0.99  # the clean tracker is sure of the target
    assert float(adv_best) < 0.5, (float(best), float(adv_best))  # measured: 0.99999 -> 0.07

"""Online attacks and template refinement as tracker wrappers (jaxtrack.attacks.online / refine, jaxtrack.robust).

The wrappers' mechanics (budgets, warm start, per-frame keys, chunked / batched runs, re-initialisation, the refined
template) are the same code for every family, so they are checked on the compact SiamFC++ with its shipped weights,
whose attacked programs compile in a fraction of NanoTrack's time (NanoTrack's attacked step: ~10 s of XLA
compilation each, and these tests build a dozen). What an attack does to a real tracker is checked on NanoTrack v2
with its real weights (the PGD-10 test here, tests/test_attacks.py, tests/test_iou_attack.py).
"""

from __future__ import annotations

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from jaxtrack import attacks, robust, tracking
from jaxtrack.attacks.crops import predict_pair
from jaxtrack.data.sequence import load_otb_folder
from jaxtrack.eval import metrics
from jaxtrack.weights import bundled_path, load_path, shared_path


@pytest.fixture(scope="module")
def nano(data_dir):
    tracker = tracking.create("nanotrack_v2")
    path = shared_path("nanotrack_v2")
    if path is None:
        pytest.skip("NanoTrack weights not in the shared data")
    variables = load_path(tracker, path).variables
    return tracker, variables


@pytest.fixture(scope="module")
def tiny():
    tracker = tracking.create("siamfcpp_tiny")
    return tracker, load_path(tracker, bundled_path("siamfcpp_tiny")).variables


@pytest.fixture(scope="module")
def crossing(data_dir):
    seq = load_otb_folder(data_dir / "sequences/OTB/Crossing")
    frames = np.concatenate(list(seq.iter_chunks(64)))
    return frames, np.asarray(seq.ground_truth, np.float64)


def _max_abs_diff(a, b):
    """max |a − b| over two pytrees of arrays (a SiamFC++ template is a tuple of feature maps)."""
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def test_zero_budget_attack_and_zero_step_refinement_track_like_the_clean_tracker(tiny, crossing):
    tracker, variables = tiny
    frames, gt = crossing
    frames = frames[:8]
    clean, clean_scores = tracker.track_sequence(variables, frames, gt[0])
    for wrapped in (
        attacks.attacked(tracker, attacks.attack_config("bim", eps=0.0, steps=2, step_size=1.0), target="both"),
        attacks.refined(tracker, steps=0),
    ):
        boxes, scores = wrapped.track_sequence(variables, frames, gt[0])
        np.testing.assert_allclose(np.asarray(boxes), np.asarray(clean), atol=1e-3, err_msg=wrapped.name)
        np.testing.assert_allclose(np.asarray(scores), np.asarray(clean_scores), atol=1e-5, err_msg=wrapped.name)


def test_search_attack_state_respects_the_budget_and_warm_start_carries_it(tiny, crossing):
    tracker, variables = tiny
    frames, gt = crossing
    eps = 4.0
    config = attacks.attack_config("pgd", eps=eps, steps=2)
    cold = attacks.attacked(tracker, config, warm_start=False)
    warm = attacks.attacked(tracker, config, warm_start=True)
    search_crop = jax.jit(tracker.search_crop)
    for t in (cold, warm):
        state = t.init(variables, frames[0], gt[0])
        assert float(jnp.max(jnp.abs(state.delta))) == 0.0 and int(state.frame) == 0
        for f in frames[1:4]:
            # the perturbation is added to the crop cut at the state before the step; x + delta stays in [0, 255]
            x, _ = search_crop(f, state.center, state.size, state.channel_avg)
            state, box, score = t.step(variables, state, f)
            d = np.asarray(state.delta)
            assert np.abs(d).max() <= eps and np.abs(d).max() > 0.5 * eps
            adv = np.asarray(x) + d
            assert adv.min() >= -1e-3 and adv.max() <= 255.0 + 1e-3  # delta = x_adv - x, rounded
        assert int(state.frame) == 3


def test_online_pgd10_search_attack_at_eps8_halves_nanotrack_auc_on_crossing(nano, crossing):
    """Issue 5 criterion: an online PGD-10 search attack at ε = 8 cuts NanoTrack's success AUC on Crossing ≥ 2×."""
    tracker, variables = nano
    frames, gt = crossing
    clean, _ = tracker.track_sequence(variables, frames, gt[0])
    attacked = attacks.attacked(tracker, attacks.attack_config("pgd", eps=8.0, steps=10), loss="dua")
    adv, _ = attacked.track_sequence(variables, frames, gt[0])
    auc_clean = metrics.success_auc(gt, np.asarray(clean))
    auc_adv = metrics.success_auc(gt, np.asarray(adv))
    assert auc_clean > 0.6, auc_clean
    assert auc_adv <= 0.5 * auc_clean, (auc_clean, auc_adv)


@pytest.mark.parametrize("case", ["dua", "relabel", "defended"])
def test_search_attack_step_equals_clean_forward_attack_and_step_done_apart(tiny, crossing, case):
    """The attacked step runs the clean forward pass (labels), the attack and the tracker's forward pass on the
    attacked crop as one loop (attacks.run_attack_on_outputs). Reference: the three done apart with the public
    pieces (dense, run_attack, step_with_crop), for the Dua-Loss, for RTAA's relabelling (labels from the current
    prediction at every step), and through a defended tracker (the adaptive attack: the head runs the U-Net).
    Different programs of the same arithmetic, so equal to float noise (perturbation 1e-3 grey levels, boxes 1e-3 px;
    measured ≤ 6e-5 and ≤ 6e-5 px on this frame). L2 steps, continuous in the gradient (an L∞ sign step may flip
    where a pixel's gradient is ~0: see the whole/chunked/batched test below). The warm start is passed through
    unchanged and not compared here: from its random first start the 3-step trajectory is sensitive to float noise
    (0.2-4.5 grey levels apart from the reference, before this fold as after)."""
    from jaxtrack.defense import defended_from_checkpoint

    tracker, variables = tiny
    if case == "defended":
        tracker, variables = defended_from_checkpoint(tracker, variables, "bundled")
    frames, gt = crossing
    eps = 2000.0
    config = attacks.attack_config("pgd", eps=eps, steps=3, step_size=800.0, norm="l2")
    relabel = case == "relabel"
    t = attacks.attacked(tracker, config, loss="dua", target="search", relabel=relabel)
    state = t.init(variables, frames[0], gt[0])
    new_state, box, score = t.step(variables, state, frames[1])

    @jax.jit
    def apart(state, frame):
        tr = state.track
        x, scale = tracker.search_crop(frame, tr.center, tr.size, tr.channel_avg)
        clean = tracker.dense(variables, tr.template, x)
        ref, labels = attacks.best_box(*clean), None if relabel else clean
        key = jax.random.fold_in(jax.random.key(0), 1)
        x_adv = attacks.run_attack(lambda xx: attacks.dua_loss(*tracker.dense(variables, tr.template, xx), ref, labels),
                                   x, config, key)
        return x_adv - x, tracker.step_with_crop(variables, tr, frame, x_adv, scale)

    delta, (track, box_apart, score_apart) = apart(state, frames[1])
    print(case, "max |diff|: delta", float(jnp.max(jnp.abs(new_state.delta - delta))), "box",
          np.abs(np.asarray(box) - np.asarray(box_apart)).max())
    np.testing.assert_allclose(np.asarray(new_state.delta), np.asarray(delta), atol=1e-3)
    np.testing.assert_allclose(np.asarray(box), np.asarray(box_apart), atol=1e-3)
    np.testing.assert_allclose(float(score), float(score_apart), atol=1e-5)
    assert float(jnp.max(jnp.abs(delta))) > 10.0  # the attack moved the crop


def test_attacked_tracker_is_the_same_whole_chunked_and_batched(tiny, crossing):
    """Per-frame PRNG keys, the state carried across chunks and the padding of batched sequences: the three ways
    of running an attacked tracker track alike. The search attack (a key per frame, a perturbation carried in the
    state) is what the three paths could get wrong; the template attack runs once in ``init``, with the key of
    frame 0 whatever the path (its re-initialisation is checked in the template-attack test).

    Guarantee: the same boxes up to float noise, not bit for bit. The whole, chunked and vmapped runs are different
    XLA programs (a scan of another length, a batch dimension), whose convolutions may sum in another order. The
    attack here takes L2 (normalised-gradient) steps, which move the crop by an amount continuous in the gradient,
    so float noise stays float noise: measured max |diff| 5e-3 px over 9 frames here (NanoTrack v2: 6e-3, default
    flags and YNNPACK convolutions alike). An L∞ sign step would flip pixels where the gradient is ~0 and the
    tracker's feedback amplifies that (NanoTrack: 1.9 px after 9 frames, IoU 0.99 after one), which says nothing
    about keys or state.
    """
    tracker, variables = tiny
    frames, gt = crossing
    frames = frames[:9]
    # random start in an L2 ball of 2,000 grey levels (~1/3 of L∞ ε = 4 spread over a 255² crop), one step of 1,000
    config = attacks.attack_config("pgd", eps=2000.0, steps=1, step_size=1000.0, norm="l2")
    t = attacks.attacked(tracker, config, loss="cls", target="search")
    whole, _ = t.track_sequence(variables, frames, gt[0])
    chunked, _ = t.track_chunks(variables, iter([frames[:4], frames[4:]]), gt[0], chunk_size=5)
    two = np.stack([frames, frames[::-1]])
    batched, _ = t.track_batch(variables, two, np.stack([gt[0], gt[0]]), [9, 6])
    # the second sequence of the batch is tracked on its own frames (and padded with NaN after its length)
    alone, _ = t.track_sequence(variables, frames[::-1], gt[0])  # causal: its first 6 boxes are those of 6 frames
    clean, _ = tracker.track_sequence(variables, frames, gt[0])
    whole, chunked, batched, alone = map(np.asarray, (whole, chunked, batched, alone))
    print("max |diff| px: chunked", np.abs(chunked - whole).max(), "batched", np.abs(batched[0] - whole).max(),
          "batched[1]", np.abs(batched[1, :6] - alone[:6]).max())
    atol = 0.05  # px: 9x the measured float noise, far below what a different key or state would give (below)
    np.testing.assert_allclose(chunked, whole, atol=atol)
    np.testing.assert_allclose(batched[0], whole, atol=atol)
    np.testing.assert_allclose(batched[1, :6], alone[:6], atol=atol)
    assert np.isnan(batched[1, 6:]).all()
    # the attack does move the boxes (so the equalities above are not those of an attack that does nothing)
    assert np.abs(whole - np.asarray(clean)).max() > 20 * atol


def test_template_attack_perturbs_the_template_within_budget_at_every_initialisation(tiny, crossing):
    tracker, variables = tiny
    frames, gt = crossing
    eps = 8.0
    t = attacks.attacked(tracker, attacks.attack_config("bim", eps=eps, steps=3), target="template")
    frame, box = frames[0], gt[0]

    @jax.jit  # one program for the reference computation (run op by op, NanoTrack compiles hundreds)
    def reference(variables, frame, box):
        center, size = tracker.box_to_center_size(jnp.asarray(box, jnp.float32))
        avg = jnp.mean(frame.reshape(-1, 3).astype(np.float32), 0)
        z = tracker.template_crop(frame, center, size, avg)
        x0, _ = tracker.search_crop(frame, center, size, avg)
        clean_pred = predict_pair(tracker, variables, z, x0)
        ref = attacks.best_box(*clean_pred)
        z_adv, _ = attacks.attack_pair(tracker, variables, z, x0, ref, attacks.dua_loss, t.attack.config,
                                       target="template")
        return z, x0, clean_pred, ref, z_adv, tracker.embed_template(variables, z)

    z, x0, clean_pred, ref, z_adv, clean_template = reference(variables, frame, box)
    state = t.init(variables, frame, box)
    # the same attack through attack_pair stays within ε of the clean crop (sign steps are chaotic in the last
    # float bits, so the jitted init's crop is not compared bit for bit)
    assert float(jnp.max(jnp.abs(z_adv - z))) <= eps + 1e-4
    # the state's template is not the clean one, and it raises the Dua-Loss on the first pair as much as z_adv does
    assert _max_abs_diff(state.template, clean_template) > 1e-2

    @jax.jit
    def dua_of(variables, template, x0, ref, clean_pred):
        scores, boxes = tracker.dense(variables, template, x0)
        return attacks.dua_loss(scores, boxes, ref, clean_pred)

    def dua(template):
        return float(dua_of(variables, template, x0, ref, clean_pred))

    clean_loss, state_loss, pair_loss = dua(clean_template), dua(state.template), dua(
        jax.jit(tracker.embed_template)(variables, z_adv))
    assert state_loss > clean_loss + 0.1 and pair_loss > clean_loss + 0.1
    assert abs(state_loss - pair_loss) < 0.1 * (pair_loss - clean_loss), (clean_loss, state_loss, pair_loss)
    # a re-initialisation (VOT restarts call init) attacks again: same frame, same result
    again = t.init(variables, frame, box)
    jax.tree.map(np.testing.assert_array_equal, again.template, state.template)


def test_refined_tracker_uses_the_refined_template_and_runs_vmapped(tiny, crossing):
    tracker, variables = tiny
    frames, gt = crossing
    steps = 3
    t = attacks.refined(tracker, steps=steps)
    assert t == attacks.refined(tracker, steps=steps)  # equal settings, equal trackers: compiled functions shared
    state = t.init(variables, frames[0], gt[0])
    z = attacks.refine_template(tracker, variables, frames[0], gt[0], steps)
    embedded = jax.jit(tracker.embed_template)(variables, z)  # jitted: run op by op, every layer compiles its own
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4),
                 state.template, embedded)
    # refinement lowers the first-frame loss
    z0, _, _, _ = jax.jit(attacks.refinement_problem, static_argnums=0)(tracker, variables, frames[0], gt[0])
    before = attacks.refinement_loss(tracker, variables, z0, frames[0], gt[0])
    after = attacks.refinement_loss(tracker, variables, z, frames[0], gt[0])
    assert float(after) < float(before)
    two = np.stack([frames[:5], frames[10:15]])
    boxes0 = np.stack([gt[0], gt[10]])
    batched, _ = t.track_batch(variables, two, boxes0, [5, 5])
    single, _ = t.track_sequence(variables, frames[10:15], gt[10])
    # vmapped sign steps may flip where a gradient is ~0 (float summation order): boxes agree to a fraction of a px
    np.testing.assert_allclose(np.asarray(batched[1]), np.asarray(single), atol=0.5)


def test_robust_wrap_stacks_refinement_under_the_attack(nano):
    tracker, _ = nano
    attack = attacks.OnlineAttack(attacks.attack_config("fgsm", eps=2.0))
    t, v = robust.wrap(tracker, "vars", refine=robust.Refinement(steps=2), attack=attack)
    assert v == "vars" and isinstance(t, attacks.AttackedTracker) and isinstance(t.base, attacks.RefinedTracker)
    assert t.base.base is tracker and t.innermost is tracker
    assert t.name == "nanotrack_v2_refine2_fgsm-dua-search-eps2"
    # a non-adaptive attack on a defended stack takes its gradients from the undefended one
    marker = attacks.refined(tracker, steps=5)  # any wrapper stands in for a defense here
    t2, _ = robust.wrap(tracker, "vars", defense=lambda b, v: (attacks.refined(b, steps=5), v), attack=attack,
                        adaptive=False)
    assert t2.base == marker and t2.surrogate is tracker
    assert robust.wrap(tracker, "vars") == (tracker, "vars")


def test_online_attack_validates_its_settings():
    config = attacks.attack_config("bim", eps=4.0, steps=2)
    with pytest.raises(ValueError, match="target"):
        attacks.OnlineAttack(config, target="frame")
    with pytest.raises(ValueError, match="unknown attack loss 'foo'"):
        attacks.OnlineAttack(config, loss="foo")
    with pytest.raises(ValueError, match="unknown attack 'cw'"):
        attacks.attack_config("cw", eps=4.0)
    assert attacks.attack_config("pgd", eps=8.0, steps=10).step_size == pytest.approx(2.0)
    assert attacks.OnlineAttack(attacks.attack_config("mifgsm", 8, 5)).describe() == "mifgsm5-dua-search-eps8"


def test_cls_and_reg_losses_are_the_two_terms_of_dua_loss():
    key = jax.random.key(1)
    scores = jax.random.uniform(key, (25,))
    boxes = jnp.concatenate([jax.random.normal(key, (25, 2)) * 5, 20 + jax.random.uniform(key, (25, 2)) * 10], 1)
    ref = jnp.array([0.0, 0.0, 24.0, 22.0])
    total = attacks.dua_loss(scores, boxes, ref, lam=0.7)
    parts = attacks.dua_cls_loss(scores, boxes, ref) + 0.7 * attacks.dua_reg_loss(scores, boxes, ref)
    np.testing.assert_allclose(float(total), float(parts), rtol=1e-6)
    assert set(["cls", "reg", "dua", "csa", "rtaa"]) <= set(attacks.LOSSES)

"""The tracker interface: scan == loop of steps, vmap == separate runs, chunks == one scan, bad input errors."""

import jax
import numpy as np
import pytest

from jaxtrack import tracking

# Small search sizes keep compilation cheap; the models take their sizes from the input shapes.
SMALL = {
    "siamfcpp_alexnet": dict(instance_size=207),  # score map 5x5
    "siamrpn_alex": dict(instance_size=191),  # score map 9x9
}


def _frames(n=6, h=120, w=160, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    frames = []
    for t in range(n):  # a bright square moving right over a noisy background
        f = base.copy()
        f[40:70, 30 + 4 * t : 60 + 4 * t] = (200, 220, 40)
        frames.append(f)
    return np.stack(frames)


@pytest.fixture(scope="module", params=sorted(SMALL))
def tracker_and_vars(request):
    tracker = tracking.create(request.param, **SMALL[request.param])
    return tracker, tracker.init_variables(jax.random.key(1))


def test_track_sequence_equals_loop_of_steps(tracker_and_vars):
    tracker, variables = tracker_and_vars
    frames = _frames()
    box0 = np.array([30, 40, 30, 30], np.float32)
    boxes, scores = tracker.track_sequence(variables, frames, box0)
    state = tracker.init(variables, frames[0], box0)
    loop_boxes, loop_scores = [box0], [1.0]
    for frame in frames[1:]:
        state, box, score = tracker.step(variables, state, frame)
        loop_boxes.append(np.asarray(box))
        loop_scores.append(float(score))
    np.testing.assert_allclose(np.asarray(boxes), np.stack(loop_boxes), atol=1e-3)
    np.testing.assert_allclose(np.asarray(scores), np.array(loop_scores), atol=1e-5)
    assert np.all(np.isfinite(np.asarray(boxes)))


def test_track_batch_equals_separate_sequences(tracker_and_vars):
    tracker, variables = tracker_and_vars
    frames = np.stack([_frames(seed=0), _frames(seed=1)[::-1]])
    boxes0 = np.array([[30, 40, 30, 30], [50, 40, 30, 30]], np.float32)
    lengths = np.array([6, 4])
    boxes, scores = tracker.track_batch(variables, frames, boxes0, lengths)
    boxes, scores = np.asarray(boxes), np.asarray(scores)
    for b in range(2):
        ref_boxes, ref_scores = tracker.track_sequence(variables, frames[b, : lengths[b]], boxes0[b])
        np.testing.assert_allclose(boxes[b, : lengths[b]], np.asarray(ref_boxes), atol=1e-3)
        np.testing.assert_allclose(scores[b, : lengths[b]], np.asarray(ref_scores), atol=1e-5)
    assert np.all(np.isnan(boxes[1, 4:])) and np.all(np.isnan(scores[1, 4:]))


def test_track_chunks_equals_one_scan(tracker_and_vars):
    tracker, variables = tracker_and_vars
    frames = _frames(n=9)
    box0 = np.array([30, 40, 30, 30], np.float32)
    ref_boxes, ref_scores = tracker.track_sequence(variables, frames, box0)
    seen = []
    chunks = (frames[i : i + 4] for i in range(0, 9, 4))  # 4 + 4 + 1 frames, padded to 4
    boxes, scores = tracker.track_chunks(variables, chunks, box0, chunk_size=4, on_chunk=seen.append)
    np.testing.assert_allclose(boxes, np.asarray(ref_boxes), atol=1e-3)
    np.testing.assert_allclose(scores, np.asarray(ref_scores), atol=1e-5)
    assert sum(seen) == 9


def test_pieces_compose_to_step(tracker_and_vars):
    """The exposed pieces (crops, embedding, head, decode) are what step runs."""
    tracker, variables = tracker_and_vars
    frames = _frames(n=2)
    state = tracker.init(variables, frames[0], np.array([30, 40, 30, 30], np.float32))
    x, scale = tracker.search_crop(frames[1], state.center, state.size, state.channel_avg)
    assert x.shape == (tracker.config.instance_size,) * 2 + (3,)
    raw = tracker.head(variables, state.template, x)
    center, size, score = tracker.decode(raw, state.center, state.size, scale, frames.shape[1:3])
    _, box, step_score = tracker.step(variables, state, frames[1])
    np.testing.assert_allclose(np.asarray(tracker.center_size_to_box(center, size)), np.asarray(box), atol=1e-4)
    assert float(score) == pytest.approx(float(step_score), abs=1e-6)


@pytest.mark.parametrize(
    "box, message",
    [
        ([10, 10, 0, 20], "non-positive width or height"),
        ([10, 10, 20, -3], "non-positive width or height"),
        ([500, 10, 20, 20], "entirely outside"),
        ([-50, 10, 20, 20], "entirely outside"),
        ([np.nan, 10, 20, 20], "NaN"),
        ([1, 2, 3], "4 values"),
    ],
)
def test_bad_boxes_are_rejected(box, message):
    tracker = tracking.create("siamrpn_alex")
    frame = np.zeros((120, 160, 3), np.uint8)
    with pytest.raises(ValueError, match=message):
        tracker.init({}, frame, box)
    with pytest.raises(ValueError, match=message):
        tracker.track_sequence({}, frame[None], box)


@pytest.mark.parametrize(
    "shape, message",
    [((120, 160), "grayscale"), ((120, 160, 1), "grayscale"), ((120, 160, 4), "4 channels")],
)
def test_non_bgr_frames_are_rejected(shape, message):
    tracker = tracking.create("siamrpn_alex")
    with pytest.raises(ValueError, match=message):
        tracker.init({}, np.zeros(shape, np.uint8), [10, 10, 20, 20])


def test_chunks_with_changing_frame_size_are_rejected(tracker_and_vars):
    tracker, variables = tracker_and_vars
    chunks = [_frames(n=3), _frames(n=3, h=100)]
    with pytest.raises(ValueError, match="frame size changed"):
        tracker.track_chunks(variables, chunks, [30, 40, 30, 30], chunk_size=3)


def test_published_configs():
    c = tracking.get_config("siamrpnpp_r50")
    assert (c.penalty_k, c.window_influence, c.lr, c.score_size) == (0.05, 0.42, 0.38, 25)
    c = tracking.get_config("siamrpnpp_r50_otb")
    assert (c.penalty_k, c.window_influence, c.lr, c.weighted_fusion) == (0.24, 0.5, 0.25, False)
    c = tracking.get_config("siamrpn_alex")
    assert (c.penalty_k, c.window_influence, c.lr, c.score_size) == (0.16, 0.40, 0.30, 21)
    c = tracking.get_config("siamfcpp_alexnet")
    assert (c.penalty_k, c.window_influence, c.lr, c.score_size) == (0.04, 0.21, 0.52, 17)
    with pytest.raises(KeyError, match="unknown tracker"):
        tracking.get_config("siamfoo")


def test_dense_predictions_match_the_decoded_step(tracker_and_vars):
    """The chosen position of ``decode`` is one of the dense predictions: mapping that box back to the frame
    with the crop scale and the pre-step centre gives the size-unsmoothed result of the step."""
    tracker, variables = tracker_and_vars
    frames = _frames(n=2)
    state = tracker.init(variables, frames[0], np.array([30, 40, 30, 30], np.float32))
    x, scale = tracker.search_crop(frames[1], state.center, state.size, state.channel_avg)
    raw = tracker.head(variables, state.template, x)
    scores, boxes = tracker.dense_predictions(raw)
    assert scores.shape == boxes.shape[:2] and boxes.shape[-1] == 4 and scores.shape[0] == 1
    assert np.all((np.asarray(scores) >= 0) & (np.asarray(scores) <= 1))
    center, _, score = tracker.decode(raw, state.center, state.size, scale, frames.shape[1:3])
    best = int(np.argmin(np.abs(np.asarray(scores[0]) - float(score))))
    predicted_center = np.asarray(state.center) + np.asarray(boxes[0, best, :2]) / float(scale)
    frame_hw = np.array(frames.shape[1:3][::-1], np.float32)
    np.testing.assert_allclose(np.asarray(center), np.clip(predicted_center, 0, frame_hw), atol=1e-2)


def test_overflowing_network_gives_finite_boxes_and_a_warning(tracker_and_vars):
    """Weights whose outputs are not finite (NaN here; random ResNet-50 weights overflow to inf - inf): the boxes
    stay at the previous state, here box0 on every frame (hand-worked), and every entry point warns with the frames
    (NaN padding of a short batched sequence is not reported)."""
    tracker, variables = tracker_and_vars
    broken = jax.tree_util.tree_map(lambda v: np.full_like(v, np.nan), variables)
    frames = _frames(4)
    box0 = np.array([30, 40, 30, 30], np.float32)
    with pytest.warns(tracking.NonFiniteScoreWarning, match=r"on 3 frame\(s\) \(frame 1, frame 2, frame 3\)"):
        boxes, scores = tracker.track_sequence(broken, frames, box0)
    # the state keeps its centre / size: SiamFC++ writes box0 back (centre x + (w - 1) / 2, box cx - (w - 1) / 2),
    # pysot's trackers write it half a pixel up-left (centre x + (w - 1) / 2, box cx - w / 2)
    held = box0 - (np.float32([0.5, 0.5, 0, 0]) if tracker.name.startswith("siamrpn") else 0)
    np.testing.assert_allclose(np.asarray(boxes[1:]), np.tile(held, (3, 1)), atol=1e-4)
    assert np.isnan(np.asarray(scores)[1:]).all()
    with pytest.warns(tracking.NonFiniteScoreWarning, match=r"on 4 frame\(s\) \(sequence 0 frame 1, "):
        tracker.track_batch(broken, np.stack([frames, frames]), np.stack([box0, box0]), [4, 2])
    with pytest.warns(tracking.NonFiniteScoreWarning):
        tracker.track_chunks(broken, iter([frames]), box0, chunk_size=4)


def test_equal_trackers_are_equal_data_and_share_compiled_programs():
    """Trackers and their wrappers are plain values: built twice with the same settings they are equal, hash alike
    and run the program compiled for the first (JAX's jit cache holds one entry for both); another setting is
    another tracker and another program. A defended tracker is plain data too (its U-Net arrays travel in the
    variables)."""
    from jaxtrack import attacks
    from jaxtrack.tracking import base

    # hyper-parameters no other test uses, so that no earlier test compiled these programs
    a, b = (tracking.create("siamrpn_alex", **SMALL["siamrpn_alex"], penalty_k=0.0371) for _ in range(2))
    assert a is not b and a == b and hash(a) == hash(b)
    other = tracking.create("siamrpn_alex", **SMALL["siamrpn_alex"], penalty_k=0.0372)
    assert other != a
    config = attacks.attack_config("bim", eps=2.0, steps=1)
    assert attacks.attacked(a, config, target="search") == attacks.attacked(b, config, target="search")
    assert attacks.attacked(a, config, target="search") != attacks.attacked(a, config, target="template")
    assert attacks.refined(a, steps=2) == attacks.refined(b, steps=2) != attacks.refined(a, steps=3)

    variables = a.init_variables(jax.random.key(1))
    frames, box0 = _frames(2), np.array([30, 40, 30, 30], np.float32)
    state = a.init(variables, frames[0], box0)
    before = base._jitted_step._cache_size()
    a.step(variables, state, frames[1])
    assert base._jitted_step._cache_size() == before + 1
    b.step(variables, state, frames[1])  # equal tracker: no new program
    assert base._jitted_step._cache_size() == before + 1
    other.step(variables, state, frames[1])
    assert base._jitted_step._cache_size() == before + 2

    from jaxtrack.defense import defended

    assert defended(a) == defended(b) and hash(defended(a)) == hash(defended(b))  # plain data: by value
    assert defended(a) != defended(a, where="search") and defended(a) != defended(other)


def test_random_init_compiles_once_per_tracker_and_draws_per_key():
    """``init_variables`` compiles its program once per tracker configuration in a process (an equal tracker
    built again, or another key, compiles nothing), the program is a function of the key (other keys, other
    weights), and under ``jax.eval_shape`` it gives the same shapes without running."""
    compiles = []  # XLA compilations, and persistent-cache lookups (the suite's cache would hide a recompilation)
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, seconds, **_: compiles.append(event) if event == "/jax/core/compile/backend_compile_duration"
        else None)
    jax.monitoring.register_event_listener(
        lambda event, **_: compiles.append(event) if event.startswith("/jax/compilation_cache/") else None)
    tracker = tracking.create("siamrpn_alex", **SMALL["siamrpn_alex"])
    a = tracker.init_variables(jax.random.key(11))
    first = len(compiles)
    b = tracking.create("siamrpn_alex", **SMALL["siamrpn_alex"]).init_variables(jax.random.key(12))
    again = tracker.init_variables(jax.random.key(11))
    assert compiles[first:] == []  # neither compiled nor looked up in the persistent cache again
    leaves_a, leaves_b, leaves_again = (jax.tree_util.tree_leaves(v) for v in (a, b, again))
    assert all(np.array_equal(x, y) for x, y in zip(leaves_a, leaves_again))
    kernels = [(x, y) for x, y in zip(leaves_a, leaves_b) if x.ndim == 4]
    assert kernels and not any(np.array_equal(x, y) for x, y in kernels)
    shapes = jax.eval_shape(tracker.init_variables, jax.random.key(0))
    assert jax.tree_util.tree_map(lambda s: s.shape, shapes) == jax.tree_util.tree_map(np.shape, a)

"""One tracker interface for every Siamese family, as pure functions.

A :class:`Tracker` holds a static configuration and a Flax module; everything it does is a pure function of
explicit inputs (``variables`` = the Flax variables dict, a :class:`TrackState`, frames). The pieces that
attacks, the defense and template refinement hook into are separate functions:

``template_crop``  frame → template crop z [Z,Z,3] (BGR float, 0..255)
``embed_template`` z → template embedding (kept in the state)
``search_crop``    frame, state → search crop x [X,X,3] and the crop scale
``head``           embedding, x → raw head outputs (dict of arrays, batch dim 1)
``decode``         raw outputs, state → new state, box, score

``init``/``step`` compose them for one frame; ``track_sequence`` runs a whole sequence as one ``lax.scan``;
``track_batch`` vmaps that over padded sequences; ``track_chunks`` streams a long sequence chunk by chunk
(frames loaded lazily, the state carried across chunks) so memory stays bounded.

Conventions: frames are ``HxWx3`` BGR, ``uint8`` or float in [0, 255], kept ``uint8`` until cropped.
Boxes are ``[x, y, w, h]``, 0-based, in frame pixels. The score of frame 0 (the initialisation frame) is 1.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Any, Callable, Iterable, Iterator

import flax
import jax
import jax.numpy as jnp
import numpy as np

from jaxtrack.tracking.crop import channel_average


@flax.struct.dataclass
class TrackState:
    """Per-sequence tracker state (a pytree).

    center: [2] target centre (cx, cy) in frame pixels, in the family's centre convention.
    size:   [2] target size (w, h) in frame pixels.
    channel_avg: [3] per-channel mean of the first frame (BGR), the crop padding colour.
    template: the template embedding pytree returned by ``embed_template`` (batch dim 1).
    """

    center: jax.Array
    size: jax.Array
    channel_avg: jax.Array
    template: Any


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


class NonFiniteScoreWarning(RuntimeWarning):
    """The network's score map was not finite on some frames (overflowing activations, e.g. random weights)."""


def warn_if_scores_not_finite(name: str, scores, lengths=None) -> None:
    """Warn, naming the tracker and the frames, when tracked ``scores`` [T] (or [B,T] with ``lengths``) hold NaN.

    A NaN score means the score map itself was not finite on that frame (argmax picks a NaN first); the state
    then keeps its previous box (``postprocess._clip``), so the boxes stay finite but carry no information.
    Scores that are still being traced (inside a caller's jit) are not checked.
    """
    if not _is_concrete(scores):
        return
    s = np.asarray(scores)
    if s.ndim == 1:
        s = s[None]
    valid = np.ones(s.shape, bool) if lengths is None else np.arange(s.shape[1])[None] < np.asarray(lengths)[:, None]
    bad = valid & ~np.isfinite(s)
    if bad.any():
        seq, frame = np.nonzero(bad)
        where = ", ".join(f"{'' if lengths is None else f'sequence {b} '}frame {t}" for b, t in zip(seq[:5], frame[:5]))
        more = f" and {len(seq) - 5} more" if len(seq) > 5 else ""
        warnings.warn(f"{name}: the score map is not finite on {len(seq)} frame(s) ({where}{more}); the box was "
                      "held at its previous value there (random or broken weights?)", NonFiniteScoreWarning,
                      stacklevel=3)


def check_frame_shape(shape: tuple[int, ...], what: str = "frame") -> None:
    """Reject frames that are not ``HxWx3`` (grayscale / RGBA must be converted by the reader)."""
    if len(shape) != 3 or shape[-1] != 3:
        hint = ""
        if len(shape) == 2 or (len(shape) == 3 and shape[-1] == 1):
            hint = " (grayscale: convert with cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) or read with jaxtrack.data.read_frame)"
        elif len(shape) == 3 and shape[-1] == 4:
            hint = " (4 channels: drop alpha with cv2.cvtColor(img, cv2.COLOR_BGRA2BGR) or read with jaxtrack.data.read_frame)"
        raise ValueError(f"{what} must be HxWx3 BGR, got shape {tuple(shape)}{hint}")


def check_init_box(box, frame_hw: tuple[int, int], what: str = "initial box") -> np.ndarray:
    """Validate an ``[x, y, w, h]`` box against a frame of size ``(H, W)``; returns it as float64."""
    b = np.asarray(box, dtype=np.float64).reshape(-1)
    if b.shape != (4,):
        raise ValueError(f"{what} must have 4 values [x, y, w, h], got {b.size}")
    if not np.all(np.isfinite(b)):
        raise ValueError(f"{what} {b.tolist()} contains NaN or infinity")
    x, y, w, h = b
    if w <= 0 or h <= 0:
        raise ValueError(f"{what} {b.tolist()} has non-positive width or height")
    H, W = frame_hw
    if x + w <= 0 or y + h <= 0 or x >= W or y >= H:
        raise ValueError(f"{what} {b.tolist()} lies entirely outside the {W}x{H} frame")
    return b


@dataclasses.dataclass(frozen=True)
class Tracker:
    """Static configuration + Flax module + pure functions. Subclasses define one tracker family.

    Trackers are plain immutable data that compare and hash by value (configuration, module, and for wrappers
    their settings): the jitted entry points take the tracker as a static argument, so equal trackers share
    their compiled programs however many times they are built.
    """

    config: Any
    model: Any  # flax.linen.Module with methods ``template`` and ``track``

    @property
    def name(self) -> str:
        return self.config.name

    # ------------------------------------------------------------------ family-specific (subclasses)
    def box_to_center_size(self, box: jax.Array) -> tuple[jax.Array, jax.Array]:
        raise NotImplementedError

    def center_size_to_box(self, center: jax.Array, size: jax.Array) -> jax.Array:
        raise NotImplementedError

    def template_crop(self, frame, center, size, channel_avg) -> jax.Array:
        raise NotImplementedError

    def search_crop(self, frame, center, size, channel_avg) -> tuple[jax.Array, jax.Array]:
        raise NotImplementedError

    def decode(self, raw, center, size, scale, frame_hw) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Raw head outputs of one crop → (new centre, new size, score of the chosen position)."""
        raise NotImplementedError

    def dense_predictions_single(self, raw) -> tuple[jax.Array, jax.Array]:
        """Raw outputs of ONE crop (no batch dim) → per-position target scores [N] in [0, 1] and boxes [N, 4]
        (cx, cy, w, h) in search-crop pixels, centre relative to the crop centre (before the penalty/window)."""
        raise NotImplementedError

    def dense_predictions(self, raw) -> tuple[jax.Array, jax.Array]:
        """``dense_predictions_single`` over a batch of raw outputs: scores [B, N], boxes [B, N, 4].

        This is what tracker losses (attacks, template refinement, the defense) work on: the same decoding the
        tracker applies, differentiable, for every family.
        """
        return jax.vmap(self.dense_predictions_single)(raw)

    def dense(self, variables, template, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Dense predictions of ONE search crop ``x`` [X,X,3] against a template embedding: scores [N] and boxes
        [N, 4] (``dense_predictions`` of ``head``, batch dimension dropped): what attack and refinement losses
        read."""
        return self.dense_from_head(self.head(variables, template, x))

    def dense_from_head(self, raw) -> tuple[jax.Array, jax.Array]:
        """:meth:`dense` from the raw head outputs of one crop (batch dimension 1): scores [N], boxes [N, 4]."""
        scores, boxes = self.dense_predictions(raw)
        return scores[0], boxes[0]

    # ------------------------------------------------------------------ network
    def init_variables(self, key: jax.Array, calibration_batch: int = 2) -> dict:
        """Randomly initialised Flax variables (``params`` + ``batch_stats``).

        Random weights on raw 0..255 inputs with BatchNorm running statistics at their defaults (mean 0,
        var 1) blow activations up (SiamFC++'s ``exp`` offsets overflow). So the running statistics are set
        from one train-mode pass over random uniform crops: every BN layer gets the exact mean/variance of
        its input in that pass (template-branch layers from the template pass, the rest from the search pass).

        Compiled once per tracker configuration and process (:func:`_compiled_init_variables`).
        """
        return _jitted_init_variables(self, key, calibration_batch)

    def _random_init(self, key, calibration_batch: int):
        c = self.config
        kinit, kz, kx = jax.random.split(key, 3)
        z = jax.random.uniform(kz, (calibration_batch, c.exemplar_size, c.exemplar_size, 3), maxval=255.0)
        x = jax.random.uniform(kx, (calibration_batch, c.instance_size, c.instance_size, 3), maxval=255.0)
        return self._init_and_calibrate(kinit, z, x)

    def _init_and_calibrate(self, key, z, x):
        variables = flax.core.unfreeze(self.model.init(key, z[:1], x[:1]))
        if "batch_stats" not in variables:
            return variables
        params = variables["params"]
        zeros = jax.tree_util.tree_map(jnp.zeros_like, variables["batch_stats"])
        zf, upd_z = self.model.apply(
            {"params": params, "batch_stats": zeros}, z, train=True, method=self.model.template, mutable=["batch_stats"]
        )
        _, upd_x = self.model.apply(
            {"params": params, "batch_stats": zeros}, zf, x, train=True, method=self.model.track, mutable=["batch_stats"]
        )
        momentum = 0.9  # jaxtrack.models.layers.batch_norm: new = 0.9 * old + 0.1 * batch statistic

        def pick(stats_z, stats_x):  # per BN layer: the search pass if it ran the layer, else the template pass
            used_x = jnp.sum(stats_x["var"]) > 0
            return jax.tree_util.tree_map(lambda a, b: jnp.where(used_x, b, a) / (1 - momentum), stats_z, stats_x)

        is_bn = lambda d: isinstance(d, dict) and set(d) == {"mean", "var"}  # noqa: E731
        stats = jax.tree_util.tree_map(pick, upd_z["batch_stats"], upd_x["batch_stats"], is_leaf=is_bn)
        return {**variables, "batch_stats": stats}

    def embed_template(self, variables, z: jax.Array):
        """Template embedding of crops z [Z,Z,3] (a batch dim is added) or [B,Z,Z,3]."""
        z = z[None] if z.ndim == 3 else z
        return self.model.apply(variables, z, method=self.model.template)

    def head(self, variables, template, x: jax.Array) -> dict:
        """Raw head outputs for search crops x [X,X,3] (a batch dim is added) or [B,X,X,3]."""
        x = x[None] if x.ndim == 3 else x
        return self.model.apply(variables, template, x, method=self.model.track)

    # ------------------------------------------------------------------ one frame, pure
    def init_pure(self, variables, frame, box) -> TrackState:
        check_frame_shape(frame.shape)
        box = jnp.asarray(box, jnp.float32)
        center, size = self.box_to_center_size(box)
        avg = channel_average(frame)
        z = self.template_crop(frame, center, size, avg)
        return self.init_with_crop(variables, frame, center, size, avg, z)

    def init_with_crop(self, variables, frame, center, size, channel_avg, z) -> TrackState:
        """The state after initialising on ``frame`` from the template crop ``z`` [Z,Z,3] (possibly modified:
        attacked by an online attacker, refined).

        This is where wrappers change how a template crop becomes the tracker's template (template refinement
        refines ``z`` against ``frame`` here); ``init_pure`` = crop, then this. ``center``/``size`` are the target
        in the family's centre convention, ``channel_avg`` the padding colour.
        """
        del frame
        return TrackState(center=center, size=size, channel_avg=channel_avg, template=self.embed_template(variables, z))

    def step_pure(self, variables, state: TrackState, frame) -> tuple[TrackState, jax.Array, jax.Array]:
        check_frame_shape(frame.shape)
        x, scale = self.search_crop(frame, state.center, state.size, state.channel_avg)
        return self.step_with_crop(variables, state, frame, x, scale)

    def step_with_crop(self, variables, state: TrackState, frame, x, scale) -> tuple[TrackState, jax.Array, jax.Array]:
        """``(new state, box [x, y, w, h], score)`` of a step on ``frame`` from the search crop ``x`` [X,X,3]
        (possibly modified: attacked by an online attacker) taken at ``scale`` crop pixels per frame pixel.

        ``step_pure`` = crop, then this; the counterpart of :meth:`init_with_crop` for the search branch.
        """
        return self.step_from_head(state, frame, self.head(variables, state.template, x), scale)

    def step_from_head(self, state: TrackState, frame, raw, scale) -> tuple[TrackState, jax.Array, jax.Array]:
        """:meth:`step_with_crop` from the raw head outputs of the crop (``head(variables, state.template, x)``),
        for a caller that has computed them already (an online attack's loop does)."""
        center, size, score = self.decode(raw, state.center, state.size, scale, frame.shape[:2])
        new_state = state.replace(center=center, size=size)
        return new_state, self.center_size_to_box(center, size), score

    # ------------------------------------------------------------------ jitted public API
    def init(self, variables, frame, box) -> TrackState:
        """State after initialising on ``frame`` with ``box`` [x, y, w, h] (jitted)."""
        check_frame_shape(np.shape(frame))
        if _is_concrete(box):
            check_init_box(box, np.shape(frame)[:2])
        return _jitted_init(self, variables, frame, box)

    def step(self, variables, state: TrackState, frame):
        """(new state, box [x, y, w, h], score) for the next frame (jitted)."""
        check_frame_shape(np.shape(frame))
        return _jitted_step(self, variables, state, frame)

    # ------------------------------------------------------------------ sequences
    def _masked_step(self, variables, state, frame, valid):
        """``step_pure`` on a valid frame; on padding (``valid`` False) the state as it was and NaN box / score.
        Both are computed and selected: this runs under ``vmap`` (``track_batch``), where a ``lax.cond`` would
        compute both branches anyway (and XLA:CPU mis-lowered a batched cond's convolutions on 8 devices).
        ``track_chunks`` skips padding without computing it: :func:`_scan_skipping_padding`."""
        new_state, box, score = self.step_pure(variables, state, frame)
        state = jax.tree_util.tree_map(lambda n, o: jnp.where(valid, n, o), new_state, state)
        return state, (jnp.where(valid, box, jnp.nan), jnp.where(valid, score, jnp.nan))

    def scan_frames(self, variables, state: TrackState, frames, valid):
        """Track frames [T,H,W,3] from ``state``; frames with ``valid[t] == False`` leave the state as it is
        and give NaN boxes/scores. Returns (final state, boxes [T,4], scores [T])."""

        def body(carry, inputs):
            frame, ok = inputs
            return self._masked_step(variables, carry, frame, ok)

        state, (boxes, scores) = jax.lax.scan(body, state, (frames, valid))
        return state, boxes, scores

    def _sequence_pure(self, variables, frames, box0, length):
        box0 = jnp.asarray(box0, jnp.float32)
        state = self.init_pure(variables, frames[0], box0)
        valid = jnp.arange(1, frames.shape[0]) < length
        _, boxes, scores = self.scan_frames(variables, state, frames[1:], valid)
        boxes = jnp.concatenate([box0[None], boxes], axis=0)
        scores = jnp.concatenate([jnp.ones((1,), scores.dtype), scores], axis=0)
        return boxes, scores

    def track_sequence(self, variables, frames, box0):
        """Boxes [T,4] and scores [T] for frames [T,H,W,3]; frame 0 is initialised with ``box0`` and its
        output box is ``box0``. One ``lax.scan`` under jit."""
        frames = jnp.asarray(frames)
        check_frame_shape(frames.shape[1:], "frames[t]")
        check_init_box(box0, frames.shape[1:3], "box0")
        boxes, scores = _jitted_sequence(self, variables, frames, box0, frames.shape[0])
        warn_if_scores_not_finite(self.name, scores)
        return boxes, scores

    def track_batch(self, variables, frames, boxes0, lengths):
        """vmap of ``track_sequence`` over sequences padded to a common length.

        frames [B,T,H,W,3] (sequences of one frame size), boxes0 [B,4], lengths [B] (frames of each sequence,
        1 ≤ length ≤ T). Entries at t ≥ length are NaN. Returns boxes [B,T,4], scores [B,T].
        """
        frames = jnp.asarray(frames)
        check_frame_shape(frames.shape[2:], "frames[b, t]")
        lengths = np.asarray(lengths)
        if lengths.shape != (frames.shape[0],) or lengths.min() < 1 or lengths.max() > frames.shape[1]:
            raise ValueError(f"lengths must be B={frames.shape[0]} values in [1, {frames.shape[1]}], got {lengths}")
        for b, box in enumerate(np.asarray(boxes0)):
            check_init_box(box, frames.shape[2:4], f"boxes0[{b}]")
        boxes, scores = _jitted_batch(self, variables, frames, jnp.asarray(boxes0, jnp.float32), jnp.asarray(lengths))
        warn_if_scores_not_finite(self.name, scores, lengths)
        return boxes, scores

    def compile_track_batch(self, variables, frames, boxes0, lengths):
        """Ahead-of-time compiled ``track_batch`` for these shapes (to time compilation apart from running).

        The returned executable takes ``(variables, frames, boxes0 float32, lengths)`` and does no input checks.
        """
        args = (variables, jnp.asarray(frames), jnp.asarray(boxes0, jnp.float32), jnp.asarray(lengths))
        return _jitted_batch.lower(self, *args).compile()

    def track_chunks(
        self,
        variables,
        chunks: Iterable[np.ndarray],
        box0,
        chunk_size: int,
        on_chunk: Callable[[int], None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Track a long sequence given as an iterator of frame chunks ([n,H,W,3], n ≤ chunk_size, uint8).

        Each chunk is padded to ``chunk_size`` (so one compiled scan serves every chunk) and masked; the state
        is carried from chunk to chunk, so device memory holds one chunk whatever the sequence length.
        ``on_chunk(n)`` is called after each chunk with its number of frames (for progress bars).
        Returns numpy boxes [T,4] and scores [T].
        """
        boxes_out: list[np.ndarray] = []
        scores_out: list[np.ndarray] = []
        state = None
        frame_shape = None
        for chunk in _iter_nonempty(chunks):
            n = n_in_chunk = chunk.shape[0]
            if n > chunk_size:
                raise ValueError(f"chunk of {n} frames is larger than chunk_size={chunk_size}")
            if state is None:
                frame_shape = chunk.shape[1:]
                check_frame_shape(frame_shape, "frames[t]")
                box0 = check_init_box(box0, frame_shape[:2], "box0")
                state = self.init(variables, chunk[0], box0.astype(np.float32))
                boxes_out.append(box0[None].astype(np.float32))
                scores_out.append(np.ones((1,), np.float32))
                chunk = chunk[1:]
                n -= 1
                if n == 0:
                    if on_chunk:
                        on_chunk(n_in_chunk)
                    continue
            elif chunk.shape[1:] != frame_shape:
                raise ValueError(f"frame size changed inside the sequence: {frame_shape} then {chunk.shape[1:]}")
            padded = np.zeros((chunk_size,) + tuple(frame_shape), chunk.dtype)
            padded[:n] = chunk
            valid = np.arange(chunk_size) < n
            state, boxes, scores = _jitted_scan(self, variables, state, padded, valid)
            boxes_out.append(np.asarray(boxes)[:n])
            scores_out.append(np.asarray(scores)[:n])
            if on_chunk:
                on_chunk(n_in_chunk)
        if state is None:
            raise ValueError("no frames to track")
        scores = np.concatenate(scores_out)
        warn_if_scores_not_finite(self.name, scores)
        return np.concatenate(boxes_out), scores


# The jitted entry points, one per composed function, with the tracker static: compiled programs are shared by
# equal trackers (see Tracker) and kept by JAX's own cache.
def _jitted_init_variables(tracker: Tracker, key, calibration_batch: int):
    """``tracker._random_init(key, calibration_batch)``, compiled once per tracker configuration, key type and
    calibration batch in this process; traced (``jax.eval_shape``, inside a ``jit``) as part of the caller's
    program."""
    if not _is_concrete(key):
        return tracker._random_init(key, calibration_batch)
    try:
        return _random_init_at_o0(tracker, key, calibration_batch)
    except Exception:  # noqa: BLE001  (a backend without that option; a genuine error is raised again below)
        return _random_init_default(tracker, key, calibration_batch)


def _random_init(tracker: Tracker, key, calibration_batch: int):
    return tracker._random_init(key, calibration_batch)


# Random initialisation runs once per network; most of its program is the initialisers' random draws (a threefry
# and truncated-normal kernel per parameter leaf, ~150 for NanoTrack), and LLVM's optimisation of those kernels is
# most of its compile time, for a program that runs once: NanoTrack's compiles in ~0.4x the time at XLA's lowest
# backend level (as the U-Net's init, jaxtrack.models.unet). The values are the same draws; float kernels may round
# differently in the last bit than at the default level.
_random_init_at_o0 = jax.jit(_random_init, static_argnums=(0, 2),
                             compiler_options={"xla_backend_optimization_level": 0})
_random_init_default = jax.jit(_random_init, static_argnums=(0, 2))


@functools.partial(jax.jit, static_argnums=0)
def _jitted_init(tracker: Tracker, variables, frame, box):
    return tracker.init_pure(variables, frame, box)


@functools.partial(jax.jit, static_argnums=0)
def _jitted_step(tracker: Tracker, variables, state, frame):
    return tracker.step_pure(variables, state, frame)


@functools.partial(jax.jit, static_argnums=0)
def _jitted_sequence(tracker: Tracker, variables, frames, box0, length):
    return tracker._sequence_pure(variables, frames, box0, length)


@functools.partial(jax.jit, static_argnums=0)
def _jitted_batch(tracker: Tracker, variables, frames, boxes0, lengths):
    return jax.vmap(tracker._sequence_pure, in_axes=(None, 0, 0, 0))(variables, frames, boxes0, lengths)


def _scan_skipping_padding(tracker: Tracker, variables, state: TrackState, frames, valid):
    """``tracker.scan_frames`` for one (never vmapped) sequence, where padding frames cost nothing: each step is a
    ``lax.cond`` whose padding branch keeps the state and gives a NaN box [4] and score [] (float32, as every
    ``step_pure`` returns; ``lax.cond`` checks that the branches agree)."""

    def body(carry, inputs):
        frame, ok = inputs

        def track(_):
            new_state, box, score = tracker.step_pure(variables, carry, frame)
            return new_state, (box, score)

        def hold(_):
            return carry, (jnp.full((4,), jnp.nan, jnp.float32), jnp.full((), jnp.nan, jnp.float32))

        return jax.lax.cond(ok, track, hold, None)

    state, (boxes, scores) = jax.lax.scan(body, state, (frames, valid))
    return state, boxes, scores


@functools.partial(jax.jit, static_argnums=0)
def _jitted_scan(tracker: Tracker, variables, state, frames, valid):
    return _scan_skipping_padding(tracker, variables, state, frames, valid)


def _iter_nonempty(chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    for chunk in chunks:
        chunk = np.asarray(chunk)
        if chunk.shape[0]:
            yield chunk

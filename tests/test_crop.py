"""Crops against NumPy/OpenCV re-statements of pysot ``get_subwindow`` and video_analyst
``get_subwindow_tracking`` on real frames."""

from __future__ import annotations

import functools

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtrack.tracking.crop import channel_average, crop_affine, crop_pysot
from reference_impls import pysot_get_subwindow, va_get_subwindow_tracking

FRAMES = ["Crossing/img/0001.jpg", "KiteSurf/img/0001.jpg", "Football1/img/0001.jpg"]

# (crop side, output side): smaller / larger than the output, odd / even, identity, exact 2x, .5 rounding
SIZES = [(60, 127), (61, 127), (400, 255), (600, 303), (97, 303), (127, 127), (254, 127), (60.5, 127), (61.5, 127)]


def _centres(h, w):
    return [
        (w / 2 + 0.3, h / 2 - 0.7),  # inside
        (3.2, h / 2 + 0.5),  # near the left border
        (w - 2.5, h / 3),  # near the right border
        (w / 3 + 0.1, 1.6),  # near the top border
        (2 * w / 3, h - 0.4),  # near the bottom border
        (-25.0, 40.25),  # partly outside (left)
        (w + 30.7, h + 12.0),  # partly / fully outside (bottom right)
    ]


# ------------------------------------------------------------------------------ reference re-statements


# ------------------------------------------------------------------------------------------------ tests


@functools.lru_cache(maxsize=None)
def _jitted(fn):
    return jax.jit(fn, static_argnums=3)


@pytest.fixture(scope="module", params=FRAMES)
def frame(request, data_dir):
    path = data_dir / "sequences" / "OTB" / request.param
    im = cv2.imread(str(path))
    if im is None:
        pytest.skip(f"cannot read {path}")
    return im


def _check(ours, ref, what):
    diff = np.abs(np.asarray(ours) - ref)
    assert ours.shape == ref.shape and ours.dtype == jnp.float32, what
    assert diff.mean() < 0.5, f"{what}: mean abs diff {diff.mean():.3f}, max {diff.max():.2f}"
    # the references quantise to uint8 (and use fixed-point weights): no pixel may be off by a grey level
    assert diff.max() < 1.0, f"{what}: mean abs diff {diff.mean():.3f}, max {diff.max():.2f}"


def test_channel_average(frame):
    np.testing.assert_allclose(channel_average(frame), np.mean(frame, axis=(0, 1)), rtol=1e-5)


@pytest.mark.parametrize("crop_size,out_size", SIZES)
def test_crop_pysot_matches_get_subwindow(frame, crop_size, out_size):
    avg = np.mean(frame, axis=(0, 1))
    crop = _jitted(crop_pysot)
    for pos in _centres(*frame.shape[:2]):
        ref = pysot_get_subwindow(frame, np.array(pos), out_size, round(crop_size), avg)
        ours = crop(frame, jnp.array(pos), crop_size, out_size, channel_average(frame))
        _check(ours, ref, f"pysot pos={pos} size={crop_size}->{out_size}")


@pytest.mark.parametrize("crop_size,out_size", SIZES)
def test_crop_affine_matches_warp_affine(frame, crop_size, out_size):
    avg = np.mean(frame, axis=(0, 1))
    crop = _jitted(crop_affine)
    for pos in _centres(*frame.shape[:2]):
        ref = va_get_subwindow_tracking(frame, np.array(pos), out_size, round(crop_size), avg)
        ours = crop(frame, jnp.array(pos), crop_size, out_size, avg)
        _check(ours, ref, f"affine pos={pos} size={crop_size}->{out_size}")


@pytest.mark.parametrize("crop_size,out_size", [(60, 127), (203, 255), (150, 303), (200, 100), (201, 67)])
def test_crop_pysot_float_resize_is_exact(frame, crop_size, out_size):
    """Without uint8 quantisation (float patch, window inside the frame) cv2.resize agrees to 1e-2."""
    im = frame.astype(np.float32)
    h, w = im.shape[:2]
    pos = (w / 2 - 3.3, h / 2 + 1.7)
    xmin = int(np.floor(pos[0] - (crop_size + 1) / 2 + 0.5))
    ymin = int(np.floor(pos[1] - (crop_size + 1) / 2 + 0.5))
    assert xmin >= 0 and ymin >= 0 and xmin + crop_size <= w and ymin + crop_size <= h
    ref = cv2.resize(im[ymin : ymin + crop_size, xmin : xmin + crop_size], (out_size, out_size))
    ours = np.asarray(_jitted(crop_pysot)(im, jnp.array(pos), crop_size, out_size, 0.0))
    assert np.abs(ours - ref).max() < 1e-2


def test_pad_value_is_truncated():
    im = np.full((20, 30, 3), 7, np.uint8)
    pad = np.array([10.9, 20.5, 30.01])
    far = jnp.array([200.0, 200.0])  # window entirely outside the frame
    for fn in (crop_pysot, crop_affine):
        out = np.asarray(fn(im, far, 40, 16, pad))
        np.testing.assert_array_equal(out, np.broadcast_to([10.0, 20.0, 30.0], out.shape))


def test_gradient_wrt_frame(frame):
    im = jnp.asarray(frame, jnp.float32)
    h, w = frame.shape[:2]
    weights = jax.random.normal(jax.random.key(0), (127, 127, 3))
    for fn in (crop_pysot, crop_affine):
        for pos in [(w / 2, h / 2), (-10.0, 5.0)]:

            def loss(f):
                return jnp.sum(fn(f, jnp.array(pos), 150.3, 127, channel_average(frame)) * weights)

            g = np.asarray(jax.grad(loss)(im))
            assert np.all(np.isfinite(g)) and np.abs(g).sum() > 0, (fn.__name__, pos)

    # gradient of the sum of an interior crop = how often each frame pixel is used; all mass is conserved
    g = jax.grad(lambda f: jnp.sum(crop_pysot(f, jnp.array([w / 2, h / 2]), 100, 127, 0.0)))(im)
    np.testing.assert_allclose(float(jnp.sum(g)), 127 * 127 * 3, rtol=1e-4)


def test_jit_with_traced_centre_and_size(frame):
    avg = channel_average(frame)
    for fn in (crop_pysot, crop_affine):
        jitted = jax.jit(lambda f, c, s, fn=fn: fn(f, c, s, 255, avg))
        for pos, s in [((100.2, 50.7), 300.4), ((10.0, 200.0), 411.0)]:
            ref = fn(frame, jnp.array(pos), s, 255, avg)
            np.testing.assert_allclose(jitted(frame, jnp.array(pos), jnp.float32(s)), ref, atol=1e-2)


def test_vmap_over_centres_equals_loop(frame):
    avg = channel_average(frame)
    h, w = frame.shape[:2]
    centres = jnp.array([[w / 2, h / 2], [0.0, 0.0], [w - 1.5, 12.25], [-40.0, h + 3.0]])
    sizes = jnp.array([120.0, 301.0, 64.0, 250.0])
    for fn in (crop_pysot, crop_affine):
        batched = jax.vmap(lambda c, s, fn=fn: fn(frame, c, s, 127, avg))(centres, sizes)
        loop = np.stack([np.asarray(fn(frame, c, s, 127, avg)) for c, s in zip(centres, sizes)])
        np.testing.assert_allclose(batched, loop, atol=1e-2)

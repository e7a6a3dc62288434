"""Differentiable image crops with the exact geometry of the reference trackers.

Two crop flavours exist in the reference code and they are *not* the same:

* :func:`crop_pysot` — STVIR/pysot ``SiameseTracker.get_subwindow`` (SiamRPN++, NanoTrack): cut an integer
  window of side ``round(crop_size)`` out of the frame (padding with the channel average), then
  ``cv2.resize`` it (``INTER_LINEAR``) to ``out_size``.
* :func:`crop_affine` — video_analyst ``get_subwindow_tracking`` (SiamFC++): one ``cv2.warpAffine`` with
  ``WARP_INVERSE_MAP | INTER_LINEAR`` and a constant border.

Both are written here as bilinear *gathers* in frame coordinates over a "virtual" frame that equals the image
inside and the pad value outside. Everything is jittable with a traced centre and crop size (the output size
is static), vmappable over centres/sizes/frames, and differentiable with respect to the frame values.
Frames are ``[H, W, C]`` (BGR, uint8 or float in [0, 255]); crops come out as float32 ``[out, out, C]``.

Things that mirror the references on purpose:

* **Pad value truncated to an integer.** pysot writes the channel average into a ``uint8`` array (float ->
  uint8 cast truncates); video_analyst passes ``tuple(map(int, avg_chans))`` as the border value. Both crops
  therefore use ``trunc(pad_value)``; pass the untruncated :func:`channel_average` and it is truncated here.
* **Rounding of the crop side.** Both references call Python ``round()`` on a float (banker's rounding, half
  to even); ``jnp.round`` is also half to even, so ``crop_size`` may be passed unrounded.
* The references quantise their outputs to uint8 (and OpenCV uses fixed-point interpolation weights); these
  crops stay in float32, so they differ from the references by less than one grey level per pixel.
  Unlike pysot (which truncates a float frame into uint8 when it has to pad), frame values are never rounded.
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["channel_average", "crop_pysot", "crop_affine"]


def channel_average(frame) -> jnp.ndarray:
    """Per-channel mean over H and W (``np.mean(img, axis=(0, 1))`` in pysot / video_analyst) -> ``[C]`` f32."""
    return jnp.mean(jnp.asarray(frame, jnp.float32), axis=(0, 1))


def _axis_taps(start_idx, frac):
    """Integer left taps and right weights of a 1-D bilinear sample."""
    base = jnp.floor(frac)
    return start_idx + base.astype(jnp.int32), frac - base


def _bilinear_gather(frame, ix0, wx, iy0, wy, pad):
    """Separable bilinear sampling of ``frame`` at the grid ``(iy0 + wy) x (ix0 + wx)``.

    ``ix0``/``iy0`` are int32 left/top taps, ``wx``/``wy`` the weights of the right/bottom taps. Taps outside
    the frame read ``pad``. Rows are interpolated first (``[oh, W, C]``), then columns; because the virtual
    frame is "image inside, constant outside", doing it per axis is exactly 2-D bilinear interpolation.
    """
    h, w = frame.shape[0], frame.shape[1]

    def rows(idx):
        valid = (idx >= 0) & (idx < h)
        r = jnp.take(frame, jnp.clip(idx, 0, h - 1), axis=0)
        return jnp.where(valid[:, None, None], r, pad)

    wy = wy[:, None, None]
    tmp = rows(iy0) * (1.0 - wy) + rows(iy0 + 1) * wy  # [oh, W, C]

    def cols(idx):
        valid = (idx >= 0) & (idx < w)
        c = jnp.take(tmp, jnp.clip(idx, 0, w - 1), axis=1)
        return jnp.where(valid[None, :, None], c, pad)

    wx = wx[None, :, None]
    return cols(ix0) * (1.0 - wx) + cols(ix0 + 1) * wx  # [oh, ow, C]


def _prepare(frame, pad_value):
    frame = jnp.asarray(frame, jnp.float32)
    if frame.ndim != 3:
        raise ValueError(f"frame must be [H, W, C], got shape {frame.shape}")
    pad = jnp.trunc(jnp.broadcast_to(jnp.asarray(pad_value, jnp.float32), (frame.shape[2],)))
    return frame, pad


def crop_pysot(frame, center_xy, crop_size, out_size: int, pad_value) -> jnp.ndarray:
    """pysot ``get_subwindow(im, pos=center_xy, model_sz=out_size, original_sz=round(crop_size), avg_chans)``.

    With ``sz = round(crop_size)``: ``c = (sz + 1) / 2``, ``xmin = floor(cx - c + 0.5)``, window
    ``[xmin, xmin + sz - 1]`` (same for y); out-of-frame pixels are ``trunc(pad_value)``; then cv2's
    ``INTER_LINEAR`` resize (half-pixel centres, source coordinate clamped to the patch):
    output pixel ``d`` samples the frame at ``xmin + clip((d + 0.5) * sz / out - 0.5, 0, sz - 1)``.
    When ``sz == out_size`` this is the identity copy that pysot does without resizing.

    Args:
      frame: ``[H, W, C]`` uint8 or float (BGR, 0..255).
      center_xy: ``[2]`` crop centre (x, y) in frame pixels (may be traced).
      crop_size: side of the window in frame pixels (may be traced, rounded half-to-even here).
      out_size: static output side.
      pad_value: ``[C]`` (or scalar) fill value, truncated to an integer like pysot's uint8 buffer.
    Returns:
      float32 ``[out_size, out_size, C]``.
    """
    frame, pad = _prepare(frame, pad_value)
    center = jnp.asarray(center_xy, jnp.float32)
    sz = jnp.round(jnp.asarray(crop_size, jnp.float32))
    c = (sz + 1.0) / 2.0
    start = jnp.floor(center - c + 0.5).astype(jnp.int32)  # [xmin, ymin]
    d = jnp.arange(out_size, dtype=jnp.float32)
    # (d + 0.5) * sz / out - 0.5 with an exact integer numerator and a single rounding.
    src = ((2.0 * d + 1.0) * sz - out_size) / (2.0 * out_size)
    src = jnp.clip(src, 0.0, sz - 1.0)
    ix0, wx = _axis_taps(start[0], src)
    iy0, wy = _axis_taps(start[1], src)
    return _bilinear_gather(frame, ix0, wx, iy0, wy, pad)


def crop_affine(frame, center_xy, crop_size, out_size: int, border_value) -> jnp.ndarray:
    """video_analyst ``get_subwindow_tracking(im, pos=center_xy, model_sz=out_size, original_sz, avg_chans)``.

    With ``sz = round(crop_size)`` (video_analyst's ``get_crop`` passes ``round(s_crop)``) the crop box is
    ``x0 = cx - (sz - 1) / 2``, ``x1 = cx + (sz - 1) / 2`` (same for y) and
    ``cv2.warpAffine(..., flags=INTER_LINEAR | WARP_INVERSE_MAP, borderMode=BORDER_CONSTANT)`` maps output
    pixel ``(u, v)`` to the frame point ``(x0 + u * (x1 - x0) / (out - 1), y0 + v * (y1 - y0) / (out - 1))``,
    sampled bilinearly; pixels outside the frame are ``trunc(border_value)`` (``tuple(map(int, avg_chans))``).

    Args as :func:`crop_pysot`. Returns float32 ``[out_size, out_size, C]``.
    """
    frame, pad = _prepare(frame, border_value)
    center = jnp.asarray(center_xy, jnp.float32)
    sz = jnp.round(jnp.asarray(crop_size, jnp.float32))
    half = (sz - 1.0) / 2.0
    lo = center - half
    hi = center + half
    step = (hi - lo) / (out_size - 1)
    u = jnp.arange(out_size, dtype=jnp.float32)
    ix0, wx = _axis_taps(0, lo[0] + u * step[0])
    iy0, wy = _axis_taps(0, lo[1] + u * step[1])
    return _bilinear_gather(frame, ix0, wx, iy0, wy, pad)

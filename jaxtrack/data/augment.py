"""Training-crop geometry and augmentation for Siamese trackers, in NumPy/OpenCV (no JAX: it runs in loaders).

Two stages, as pysot trains (``training_dataset/*/par_crop.py`` then ``pysot/datasets/augmentation.py``):

1. **Pre-crop** (:func:`precrop`): a ``crop_size`` square (511 in pysot) centred on the target, at the template's
   scale: with ``p = context_amount * (w + h)``, ``s_z = sqrt((w + p) * (h + p))`` is the template context side
   in frame pixels and the pre-crop covers ``s_x = s_z * crop_size / exemplar_size`` frame pixels. The frame
   window ``[c - s_x / 2, c + s_x / 2]`` goes to the output ``[0, crop_size - 1]`` through one ``cv2.warpAffine``
   (``INTER_LINEAR``, constant border = the frame's per-channel mean), exactly pysot's ``crop_hwc``. The target
   centre ``c = (x + (w - 1) / 2, y + (h - 1) / 2)`` (the trackers' convention, DESIGN.md section 5) lands on
   ``(crop_size - 1) / 2`` and the target size becomes ``w * (crop_size - 1) / s_x``. pysot's ``_get_bbox``
   instead approximates the size by ``w * exemplar_size / s_z`` (``crop_size / (crop_size - 1)`` = 0.2 % larger
   at 511); the boxes here are the exact ones.
2. **Final crop with augmentation** (:func:`augment`): a window of the pre-crop is warped to the template or
   search size. Its nominal side is ``out_size - 1`` pre-crop pixels centred on the pre-crop centre (a pure
   translation: the final crops keep the pre-crop's scale, as in pysot), then

   * ``style="pysot"`` (``Augmentation._shift_scale_aug``): per-axis scale ``1 + U(-1, 1) * scale`` (clipped so the
     window is at most the pre-crop), then a shift ``U(-1, 1) * shift`` pixels per axis, clipped so the window stays
     inside the pre-crop;
   * ``style="siamfcpp"`` (video_analyst ``crop_track_pair``): one isotropic scale ``U(1 / (1 + scale), 1 + scale)``
     (log-uniform for the template, as there), a shift ``U(-shift, shift) * side / 2`` per axis (a fraction of
     the window), both redrawn (at most 50 times, then none) until the box lies inside the output crop;

   then colour (pysot's PCA offsets, probability ``color``), motion blur (a random cross kernel of odd size
   5..45, probability ``blur``) and a horizontal flip (probability ``flip``); boxes follow every geometric step.
   Grayscale (pysot ``GRAY``, decided once per pair) is applied after the warp instead of before it: it is a
   per-pixel linear map, so the two orders differ only by rounding.

Boxes here are corner boxes ``(x1, y1, x2, y2)`` with ``x2 - x1 = w`` (pysot's ``Corner``): ``x1 = cx - w / 2``.
Images are ``uint8`` BGR throughout; every random draw comes from the ``numpy.random.Generator`` passed in, in a
fixed order, so a sample is a pure function of the generator's seed.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

__all__ = [
    "AugmentParams",
    "PYSOT_RGB_VAR",
    "context_side",
    "precrop_geometry",
    "precrop",
    "channel_mean",
    "warp_window",
    "sample_window",
    "augment",
    "color_offset",
    "blur_kernel",
]

#: pysot ``Augmentation.rgbVar`` (PCA of ImageNet colours), used by the colour augmentation.
PYSOT_RGB_VAR = np.array(
    [[-0.55919361, 0.98062831, -0.41940627],
     [1.72091413, 0.19879334, -1.82968581],
     [4.64467907, 4.73710203, 4.88324118]], dtype=np.float32)

STYLES = ("pysot", "siamfcpp")
_SIAMFCPP_MAX_RETRY = 50  # video_analyst crop_track_pair._MAX_RETRY


@dataclasses.dataclass(frozen=True)
class AugmentParams:
    """One branch's augmentation (pysot ``DATASET.TEMPLATE`` / ``DATASET.SEARCH``).

    ``shift``: pixels (pysot) or a fraction of half the window (siamfcpp); ``scale``: relative scale change;
    ``blur``, ``color``, ``flip``: probabilities. All zero means "no augmentation".
    """

    shift: float = 0.0
    scale: float = 0.0
    blur: float = 0.0
    color: float = 0.0
    flip: float = 0.0

    def __post_init__(self):
        for name in ("shift", "scale"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"AugmentParams.{name} must be a finite number >= 0, got {v}")
        for name in ("blur", "color", "flip"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"AugmentParams.{name} is a probability in [0, 1], got {v}")


# ------------------------------------------------------------------------------------------- pre-crop


def context_side(w: float, h: float, context_amount: float = 0.5) -> float:
    """``s_z = sqrt((w + p) * (h + p))`` with ``p = context_amount * (w + h)`` (pysot / video_analyst)."""
    p = context_amount * (w + h)
    return float(math.sqrt((w + p) * (h + p)))


def precrop_geometry(box_xywh, crop_size: int, exemplar_size: int = 127, context_amount: float = 0.5):
    """Affine map frame -> pre-crop and the target box in pre-crop pixels.

    Returns ``(matrix [2, 3] float64, box (x1, y1, x2, y2) float64, scale)`` where ``scale`` is pre-crop pixels
    per frame pixel, ``(crop_size - 1) / s_x``.
    """
    x, y, w, h = (float(v) for v in np.asarray(box_xywh, dtype=np.float64).reshape(4))
    if not (w > 0 and h > 0 and all(math.isfinite(v) for v in (x, y, w, h))):
        raise ValueError(f"precrop: box {[x, y, w, h]} must be finite with positive width and height")
    cx, cy = x + (w - 1) / 2.0, y + (h - 1) / 2.0
    s_x = context_side(w, h, context_amount) * crop_size / exemplar_size
    a = (crop_size - 1) / s_x
    matrix = np.array([[a, 0.0, -a * (cx - s_x / 2.0)], [0.0, a, -a * (cy - s_x / 2.0)]], dtype=np.float64)
    c = (crop_size - 1) / 2.0
    box = np.array([c - w * a / 2.0, c - h * a / 2.0, c + w * a / 2.0, c + h * a / 2.0], dtype=np.float64)
    return matrix, box, a


def channel_mean(image: np.ndarray) -> np.ndarray:
    """Per-channel mean ``[3]`` float64 (pysot's ``np.mean(im, axis=(0, 1))``)."""
    return np.asarray(cv2.mean(image)[:3], dtype=np.float64)


def precrop(frame: np.ndarray, box_xywh, crop_size: int = 511, exemplar_size: int = 127,
            context_amount: float = 0.5, pad_value=None):
    """pysot's pre-crop of one frame: ``(crop uint8 [crop_size, crop_size, 3], box (x1, y1, x2, y2) float32,
    pad_value float32 [3])``. ``pad_value`` defaults to the frame's channel mean (pysot ``avg_chans``)."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"precrop: frame must be H x W x 3 uint8, got {frame.shape} {frame.dtype}")
    matrix, box, _ = precrop_geometry(box_xywh, crop_size, exemplar_size, context_amount)
    pad = channel_mean(frame) if pad_value is None else np.asarray(pad_value, dtype=np.float64).reshape(3)
    crop = cv2.warpAffine(frame, matrix, (crop_size, crop_size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=tuple(float(v) for v in pad))
    return crop, box.astype(np.float32), pad.astype(np.float32)


# ------------------------------------------------------------------------------------- final crops


def warp_window(image: np.ndarray, window, out_size: int, pad_value=(0.0, 0.0, 0.0)) -> np.ndarray:
    """pysot ``_crop_roi``: map the corner window ``(x1, y1, x2, y2)`` of ``image`` onto ``[0, out_size - 1]``."""
    x1, y1, x2, y2 = (float(v) for v in window)
    a = (out_size - 1) / (x2 - x1)
    b = (out_size - 1) / (y2 - y1)
    matrix = np.array([[a, 0.0, -a * x1], [0.0, b, -b * y1]], dtype=np.float64)
    return cv2.warpAffine(image, matrix, (out_size, out_size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=tuple(float(v) for v in pad_value))


def _map_box(box, window, out_size: int) -> np.ndarray:
    x1, y1, x2, y2 = window
    a = (out_size - 1) / (x2 - x1)
    b = (out_size - 1) / (y2 - y1)
    bx = np.asarray(box, dtype=np.float64)
    return np.array([(bx[0] - x1) * a, (bx[1] - y1) * b, (bx[2] - x1) * a, (bx[3] - y1) * b])


def _uniform_pm1(rng: np.random.Generator) -> float:
    return float(rng.random() * 2.0 - 1.0)  # pysot Augmentation.random()


def sample_window(rng: np.random.Generator, params: AugmentParams, out_size: int, image_size: int, box,
                  style: str = "pysot", template: bool = False):
    """Draw the crop window ``(x1, y1, x2, y2)`` in the pre-crop (side ``image_size``) for one branch."""
    c = (image_size - 1) / 2.0
    side = float(out_size - 1)
    if style == "pysot":
        w = h = side
        if params.scale:
            sx = 1.0 + _uniform_pm1(rng) * params.scale
            sy = 1.0 + _uniform_pm1(rng) * params.scale
            w *= min(sx, image_size / side)
            h *= min(sy, image_size / side)
        x1, y1, x2, y2 = c - w / 2.0, c - h / 2.0, c + w / 2.0, c + h / 2.0
        if params.shift:
            dx = _uniform_pm1(rng) * params.shift
            dy = _uniform_pm1(rng) * params.shift
            dx = max(-x1, min(image_size - 1 - x2, dx))
            dy = max(-y1, min(image_size - 1 - y2, dy))
            x1, x2, y1, y2 = x1 + dx, x2 + dx, y1 + dy, y2 + dy
        return (x1, y1, x2, y2)
    if style != "siamfcpp":
        raise ValueError(f"unknown augmentation style {style!r}; use one of {STYLES}")
    if not (params.scale or params.shift):
        return (c - side / 2.0, c - side / 2.0, c + side / 2.0, c + side / 2.0)
    for attempt in range(_SIAMFCPP_MAX_RETRY + 1):
        if attempt < _SIAMFCPP_MAX_RETRY:
            s_max = 1.0 + params.scale
            if template:
                r = float(np.exp(rng.uniform(np.log(1.0 / s_max), np.log(s_max))))
            else:
                r = float(rng.uniform(1.0 / s_max, s_max))
            half = side * r / 2.0
            # video_analyst: the crop centre moves by -d, so the target moves by +d (d in crop-window pixels)
            dx = float(rng.uniform(-params.shift, params.shift)) * half
            dy = float(rng.uniform(-params.shift, params.shift)) * half
        else:
            half, dx, dy = side / 2.0, 0.0, 0.0
        window = (c - dx - half, c - dy - half, c - dx + half, c - dy + half)
        b = _map_box(box, window, out_size)
        if np.all(b >= 0) and np.all(b <= out_size - 1):
            break
    return window


def color_offset(rng: np.random.Generator) -> np.ndarray:
    """pysot ``_color_aug`` offset ``[3]`` (BGR order) that is *subtracted* from the image."""
    offset = PYSOT_RGB_VAR @ rng.standard_normal((3, 1)).astype(np.float32)
    return offset[::-1].reshape(3).astype(np.float32)


def blur_kernel(rng: np.random.Generator) -> np.ndarray:
    """pysot ``_blur_aug.rand_kernel``: an odd size in 5..45, a cross of weight ``wx / size`` (column) and
    ``(1 - wx) / size`` (row)."""
    size = int(rng.choice(np.arange(5, 46, 2)))
    kernel = np.zeros((size, size), np.float32)
    c = size // 2
    wx = float(rng.random())
    kernel[:, c] += 1.0 / size * wx
    kernel[c, :] += 1.0 / size * (1.0 - wx)
    return kernel


def apply_blur_kernel(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``cv2.filter2D(image, -1, kernel)`` for pysot's cross kernels, as two 1-D box filters.

    The kernel is ``wx / size`` on its centre column plus ``(1 - wx) / size`` on its centre row, so the 2-D filter
    is ``wx`` times a vertical box filter plus ``(1 - wx)`` times a horizontal one (same default border,
    reflect-101): a few operations per pixel instead of up to 45 x 45 (checked against ``filter2D`` in the
    tests). Other kernels go to ``filter2D``.
    """
    size = kernel.shape[0]
    c = size // 2
    col, row = kernel[:, c].copy(), kernel[c, :].copy()
    col[c] = row[c] = 0.0
    cross = np.zeros_like(kernel)
    cross[:, c], cross[c, :] = kernel[:, c], kernel[c, :]
    if (kernel.shape != (size, size) or size % 2 == 0 or not np.array_equal(cross, kernel)
            or np.ptp(col[np.arange(size) != c]) > 0 or np.ptp(row[np.arange(size) != c]) > 0):
        return cv2.filter2D(image, -1, kernel)
    wx = float(col[0] * size)  # column weight (the centre holds wx / size + (1 - wx) / size)
    wy = float(row[0] * size)
    vertical = cv2.blur(image, (1, size))
    horizontal = cv2.blur(image, (size, 1))
    return cv2.addWeighted(vertical, wx, horizontal, wy, 0.0)


def augment(image: np.ndarray, box, out_size: int, params: AugmentParams, rng: np.random.Generator, *,
            gray: bool = False, style: str = "pysot", template: bool = False, pad_value=(0.0, 0.0, 0.0)):
    """One branch's final crop: ``(crop uint8 [out, out, 3], box (x1, y1, x2, y2) float32 in crop pixels)``.

    ``image`` is the pre-crop (target at its centre), ``box`` the target's corner box in it. Draw order (fixed):
    window (scale, shift), colour, blur, flip, as in pysot's ``Augmentation.__call__``.
    """
    window = sample_window(rng, params, out_size, int(image.shape[1]), box, style=style, template=template)
    crop = warp_window(image, window, out_size, pad_value)
    out_box = _map_box(box, window, out_size)
    if gray:
        crop = cv2.cvtColor(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    offset = color_offset(rng) if params.color > rng.random() else None
    kernel = blur_kernel(rng) if params.blur > rng.random() else None
    if kernel is not None:
        f = crop.astype(np.float32)
        if offset is not None:
            f -= offset
        f = apply_blur_kernel(f, kernel)
        crop = np.clip(np.rint(f), 0, 255).astype(np.uint8)
    elif offset is not None:
        # uint8 - float with OpenCV's saturation and round-half-even: clip(rint(x - offset)) in one pass
        crop = cv2.subtract(crop, tuple(float(v) for v in offset) + (0.0,))
    if params.flip and params.flip > rng.random():
        crop = np.ascontiguousarray(crop[:, ::-1])
        out_box = np.array([out_size - 1 - out_box[2], out_box[1], out_size - 1 - out_box[0], out_box[3]])
    return crop, out_box.astype(np.float32)

"""Seeded generator of short tracking videos with exact ground truth.

The embedded default data of the project (demo, tests, training smoke runs): no download, no licence, exact
boxes. One call renders a sequence in a few tens of milliseconds::

    from jaxtrack.data.synthetic import SyntheticConfig, generate_sequence, generate_dataset
    frames, boxes = generate_sequence(SyntheticConfig(), seed=0)   # [60,240,320,3] uint8 BGR, [60,4] float64
    generate_dataset("synthetic_otb", num_sequences=20)            # OTB layout, resumable

What is in a sequence:

* a textured background (gradient + multi-scale smoothed noise + coloured shapes), larger than the frame
  so the camera can shake;
* one textured **target** (a ``texture_size``-square patch of one texture family -- smooth colour blobs,
  checkerboard, stripes or noise -- with a border), moved by smooth motion with speed and heading changes
  (bouncing off the frame edges), changing scale and aspect ratio over time;
* look-alike **distractors** (same texture family, different patch, colours jittered from the target's)
  wandering *behind* the target, and one look-alike **occluder** that crosses *in front of* the target
  once, covering at most ``occlusion_strength * 0.8`` of its area (always partial);
* global **illumination** drift (gain and offset, smooth over time), additive sensor noise;
* **camera shake**: an integer global translation of the whole scene per frame; boxes move with it.

Ground-truth convention (exact by construction): in frame ``t`` the target texture is resized with
:func:`render_patch` (``cv2.resize``, ``INTER_AREA`` when shrinking in both axes else ``INTER_LINEAR``) to
exactly ``w x h`` pixels and written into the pixel block ``frame[y:y+h, x:x+w]``, where ``x, y, w, h`` are
integers. The ground truth is exactly that ``[x, y, w, h]`` (0-based; pixel columns ``x .. x+w-1``, which is
also pysot's convention: centre ``x + (w-1)/2``). The box always lies entirely inside the frame (a margin of
``shake_strength`` pixels is reserved so shake cannot push it out). Only illumination, noise and the occluder
change pixels inside the box afterwards; the box keeps the full target extent while it is occluded (as in OTB).

Each effect draws from its own random stream (``numpy.random.SeedSequence(seed).spawn``), so switching one
effect off leaves everything else in the sequence unchanged (e.g. with and without camera shake the boxes
differ by exactly the shake offsets).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from jaxtrack.fileio import atomic_directory, atomic_write_text

__all__ = [
    "SyntheticConfig",
    "SyntheticInfo",
    "TEXTURE_KINDS",
    "generate_sequence",
    "make_texture",
    "render_patch",
    "write_otb_sequence",
    "generate_dataset",
]

TEXTURE_KINDS = ("blobs", "checker", "stripes", "noise")

# Named random streams, in a fixed order: adding a stream at the end keeps old sequences identical.
_STREAMS = ("background", "target", "scale", "motion", "distractors", "occlusion", "illumination", "shake",
            "noise")


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of :func:`generate_sequence` (sizes in pixels, speeds in pixels per frame)."""

    num_frames: int = 60
    height: int = 240
    width: int = 320
    target_size_range: tuple[float, float] = (28.0, 64.0)  # initial sqrt(w*h) of the target
    aspect_range: tuple[float, float] = (0.5, 2.0)  # initial w/h of the target (log-uniform)
    min_target_size: int = 8  # smallest w or h ever rendered
    seed: int = 0  # used when generate_sequence gets no explicit seed
    texture_size: int = 64
    texture_kinds: tuple[str, ...] = TEXTURE_KINDS
    # smooth motion with speed changes
    motion: bool = True
    max_speed: float = 4.0  # upper bound of the target centre's speed (before camera shake)
    min_speed_fraction: float = 0.15  # slowest speed as a fraction of max_speed
    max_turn: float = 0.12  # upper bound of the heading change, radians per frame
    knot_interval: int = 15  # frames between independent random values of every smooth curve
    # scale and aspect-ratio change
    scale_change: bool = True
    scale_change_strength: float = 0.35  # |log(size / initial size)| <= this
    aspect_change_strength: float = 0.3  # |log(aspect / initial aspect)| <= this
    # look-alike objects
    num_distractors: int = 2  # behind the target
    occlusion: bool = True  # one occluder crossing in front of the target
    occlusion_strength: float = 0.4  # fraction of the target height the occluder overlaps (< 1)
    # global illumination drift
    illumination: bool = True
    gain_strength: float = 0.3  # gain in [1 - s, 1 + s]
    offset_strength: float = 25.0  # offset in [-s, s] grey levels
    # camera shake (integer global translation)
    camera_shake: bool = True
    shake_strength: int = 3  # |shake| <= this per axis; this margin is always reserved
    shake_probability: float = 0.5  # fraction of frames that are shaken
    noise_std: float = 2.0  # additive Gaussian sensor noise (grey levels)

    def __post_init__(self):
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")
        if self.shake_strength < 0 or int(self.shake_strength) != self.shake_strength:
            raise ValueError(f"shake_strength must be a non-negative integer, got {self.shake_strength}")
        lo, hi = self.target_size_range
        if not 0 < lo <= hi:
            raise ValueError(f"target_size_range must satisfy 0 < lo <= hi, got {self.target_size_range}")
        a_lo, a_hi = self.aspect_range
        if not 0 < a_lo <= a_hi:
            raise ValueError(f"aspect_range must satisfy 0 < lo <= hi, got {self.aspect_range}")
        free_h = self.height - 2 * self.shake_strength
        free_w = self.width - 2 * self.shake_strength
        if min(free_h, free_w) < 2 * self.min_target_size:
            raise ValueError(
                f"frame {self.height}x{self.width} too small for targets of at least {self.min_target_size} px "
                f"with a shake margin of {self.shake_strength} px"
            )
        if self.min_target_size < 2:
            raise ValueError(f"min_target_size must be >= 2, got {self.min_target_size}")
        if not self.texture_kinds or any(k not in TEXTURE_KINDS for k in self.texture_kinds):
            raise ValueError(f"texture_kinds must be a non-empty subset of {TEXTURE_KINDS}, got {self.texture_kinds}")
        if not 0 <= self.occlusion_strength < 1:
            raise ValueError(f"occlusion_strength must be in [0, 1), got {self.occlusion_strength}")
        if self.max_speed < 0 or self.noise_std < 0 or self.knot_interval < 1:
            raise ValueError("max_speed and noise_std must be >= 0 and knot_interval >= 1")
        if not 0 <= self.gain_strength < 1:
            raise ValueError(f"gain_strength must be in [0, 1), got {self.gain_strength}")

    def clean(self) -> "SyntheticConfig":
        """The same geometry and motion with every appearance effect off (exact target pixels)."""
        return dataclasses.replace(self, num_distractors=0, occlusion=False, illumination=False,
                                   camera_shake=False, noise_std=0.0)


@dataclasses.dataclass(frozen=True, eq=False)
class SyntheticInfo:
    """What :func:`generate_sequence` did, per frame (returned with ``return_info=True``).

    ``shake[t] = (sx, sy)``: frame pixel ``(u, v)`` shows scene point ``(u + sx, v + sy)``, so boxes are
    ``world_boxes - shake``. ``occluder_boxes`` is NaN outside the occlusion event. ``visible_fraction`` is the
    part of the target box not covered by the occluder (distractors are behind the target).
    """

    target_texture: np.ndarray  # [S, S, 3] uint8
    texture_kind: str
    world_boxes: np.ndarray  # [T, 4] boxes before camera shake
    shake: np.ndarray  # [T, 2] int (sx, sy)
    gain: np.ndarray  # [T]
    offset: np.ndarray  # [T]
    occluder_boxes: np.ndarray  # [T, 4] frame coordinates, NaN when absent
    visible_fraction: np.ndarray  # [T]
    distractor_boxes: np.ndarray  # [T, K, 4] frame coordinates


# ------------------------------------------------------------------------------------------ primitives


def _smooth_curve(rng: np.random.Generator, n: int, knot_interval: int, lo: float, hi: float,
                  start: float | None = None) -> np.ndarray:
    """A smooth random curve of ``n`` values in ``[lo, hi]``: random knots joined by cosine easing."""
    n_knots = n // knot_interval + 2
    knots = rng.uniform(lo, hi, size=n_knots)
    if start is not None:
        knots[0] = start
    t = np.arange(n, dtype=np.float64) / knot_interval
    k = np.floor(t).astype(int)
    frac = t - k
    ease = 0.5 - 0.5 * np.cos(np.pi * frac)
    return knots[k] + (knots[k + 1] - knots[k]) * ease


def _random_colors(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` saturated-ish BGR colours, mutually distinct."""
    hsv = np.stack([rng.uniform(0, 180, n), rng.uniform(120, 255, n), rng.uniform(90, 255, n)], axis=1)
    # spread the hues so a texture's colours differ
    hsv[:, 0] = (hsv[0, 0] + np.arange(n) * (180.0 / max(n, 1)) + rng.uniform(-15, 15, n)) % 180
    bgr = cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2BGR)[0]
    return bgr.astype(np.float32)


def make_texture(rng: np.random.Generator, kind: str, size: int = 64,
                 like: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One ``size x size x 3`` uint8 texture patch with a border; returns ``(texture, palette)``.

    ``palette`` is the 3 colours used (``[3, 3]`` float32 BGR). With ``like`` (a palette) the colours are
    jittered copies of it, which makes look-alike distractors: same family, different patch.
    """
    if kind not in TEXTURE_KINDS:
        raise ValueError(f"unknown texture kind {kind!r}; expected one of {TEXTURE_KINDS}")
    if like is None:
        palette = _random_colors(rng, 3)
    else:
        palette = np.clip(np.asarray(like, np.float32) + rng.uniform(-30, 30, size=(3, 3)), 0, 255).astype(np.float32)
    c0, c1, cb = palette
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == "blobs":
        g = int(rng.integers(3, 7))
        m = cv2.resize(rng.uniform(0, 1, (g, g)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
        m = (m - m.min()) / max(float(np.ptp(m)), 1e-6)
    elif kind == "checker":
        cell = int(rng.integers(5, 14))
        ox, oy = rng.integers(0, cell, size=2)
        m = (((xx + ox) // cell + (yy + oy) // cell) % 2).astype(np.float32)
    elif kind == "stripes":
        freq = rng.uniform(2.0, 6.0) / size
        ang = rng.uniform(0, np.pi)
        phase = rng.uniform(0, 2 * np.pi)
        m = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (xx * np.cos(ang) + yy * np.sin(ang)) + phase)
    else:  # noise
        g = max(4, size // int(rng.integers(4, 9)))
        m = cv2.resize(rng.uniform(0, 1, (g, g)).astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
        m = np.clip(m + rng.normal(0, 0.12, (size, size)).astype(np.float32), 0, 1)
    tex = c0[None, None, :] + (c1 - c0)[None, None, :] * m[..., None]
    # a little fine detail so that every texture has gradients everywhere
    tex += rng.normal(0, 6, size=tex.shape).astype(np.float32)
    t = max(2, size // 16)
    tex[:t], tex[-t:], tex[:, :t], tex[:, -t:] = cb, cb, cb, cb
    return np.clip(tex, 0, 255).astype(np.uint8), palette


def render_patch(texture: np.ndarray, w: int, h: int) -> np.ndarray:
    """Resize a texture to exactly ``h x w`` pixels (the rule the generator uses for every object)."""
    th, tw = texture.shape[:2]
    interp = cv2.INTER_AREA if (w <= tw and h <= th) else cv2.INTER_LINEAR
    return cv2.resize(texture, (int(w), int(h)), interpolation=interp)


def _paste(dst: np.ndarray, patch: np.ndarray, x0: int, y0: int) -> None:
    """Write ``patch`` with its top-left at ``(x0, y0)``, clipped to ``dst``."""
    ph, pw = patch.shape[:2]
    H, W = dst.shape[:2]
    ax0, ay0 = max(x0, 0), max(y0, 0)
    ax1, ay1 = min(x0 + pw, W), min(y0 + ph, H)
    if ax1 > ax0 and ay1 > ay0:
        dst[ay0:ay1, ax0:ax1] = patch[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0]


def _round(v):
    return np.floor(np.asarray(v, dtype=np.float64) + 0.5).astype(np.int64)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Gradient + multi-scale smoothed noise + random coloured shapes, ``h x w x 3`` uint8."""
    c0, c1 = rng.uniform(30, 225, size=(2, 3)).astype(np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = xx * np.float32(np.cos(ang)) + yy * np.float32(np.sin(ang))
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
    img = c0 + (c1 - c0) * ramp[..., None]
    for cell, amp in ((64, 35.0), (24, 25.0)):
        small = rng.normal(0, 1, size=(h // cell + 2, w // cell + 2, 3)).astype(np.float32)
        img += amp * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    # coloured shapes (solid, so that they look unlike the textured target)
    n_shapes = int(rng.integers(6, 14))
    scale = min(h, w)
    for _ in range(n_shapes):
        color = tuple(float(c) for c in rng.uniform(0, 255, 3))
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.uniform(0.04, 0.18) * scale)
        kind = int(rng.integers(0, 3))
        thick = -1 if rng.uniform() < 0.7 else int(rng.integers(2, 5))
        if kind == 0:
            cv2.circle(img, (cx, cy), r, color, thick, lineType=cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(img, (cx - r, cy - r // 2), (cx + r, cy + r // 2), color, thick)
        else:
            cv2.ellipse(img, (cx, cy), (r, max(2, r // 3)), float(rng.uniform(0, 180)), 0, 360, color, thick,
                        lineType=cv2.LINE_AA)
    small = rng.normal(0, 1, size=(h // 4 + 2, w // 4 + 2, 3)).astype(np.float32)
    img += 10.0 * cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(img, 0, 255).astype(np.uint8)


def _wander(rng: np.random.Generator, cfg: SyntheticConfig, n: int, speed_scale: float,
            lo: np.ndarray, hi: np.ndarray, size: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """Centres ``[n, 2]`` of a smooth bouncing motion inside ``[lo + size/2, hi - size/2]``.

    ``size`` is ``[n, 2]`` (w, h) per frame. Speed and turn rate are smooth random curves.
    """
    speed = _smooth_curve(rng, n, cfg.knot_interval, cfg.min_speed_fraction, 1.0) * cfg.max_speed * speed_scale
    turn = _smooth_curve(rng, n, cfg.knot_interval, -cfg.max_turn, cfg.max_turn)
    heading = rng.uniform(0, 2 * np.pi)
    c = np.empty((n, 2))
    half = size / 2.0
    p = start.astype(np.float64).copy() if start is not None else rng.uniform(lo + half[0], hi - half[0])
    for t in range(n):
        if t > 0:
            heading += turn[t]
            p = p + speed[t] * np.array([np.cos(heading), np.sin(heading)])
        lo_t, hi_t = lo + half[t], np.maximum(hi - half[t], lo + half[t])
        for a in range(2):  # bounce off the walls
            if p[a] < lo_t[a] or p[a] > hi_t[a]:
                p[a] = min(max(p[a], lo_t[a]), hi_t[a])
                heading = (np.pi - heading) if a == 0 else -heading
        c[t] = p
    return c


# ---------------------------------------------------------------------------------------------- generate


def generate_sequence(config: SyntheticConfig | None = None, seed: int | None = None, *,
                      return_info: bool = False):
    """Render one sequence: ``(frames [T,H,W,3] uint8 BGR, boxes [T,4] float64 x,y,w,h 0-based)``.

    ``seed`` defaults to ``config.seed``; the same (config, seed) always gives the same sequence. With
    ``return_info=True`` a third value, :class:`SyntheticInfo`, describes every effect per frame.
    """
    cfg = config if config is not None else SyntheticConfig()
    seed = cfg.seed if seed is None else seed
    rngs = dict(zip(_STREAMS, (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(_STREAMS)))))
    T, H, W, m = cfg.num_frames, cfg.height, cfg.width, int(cfg.shake_strength)
    Hc, Wc = H + 2 * m, W + 2 * m

    # --- target appearance and size (world coordinates = frame coordinates without shake)
    r = rngs["target"]
    kind = cfg.texture_kinds[int(r.integers(0, len(cfg.texture_kinds)))]
    texture, palette = make_texture(r, kind, cfg.texture_size)
    region_lo = np.array([m, m], np.float64)
    region_hi = np.array([W - m, H - m], np.float64)
    region = region_hi - region_lo
    s0 = math.exp(r.uniform(math.log(cfg.target_size_range[0]), math.log(cfg.target_size_range[1])))
    a0 = math.exp(r.uniform(math.log(cfg.aspect_range[0]), math.log(cfg.aspect_range[1])))

    rs = rngs["scale"]
    log_s = _smooth_curve(rs, T, cfg.knot_interval, -cfg.scale_change_strength, cfg.scale_change_strength, 0.0)
    log_a = _smooth_curve(rs, T, cfg.knot_interval, -cfg.aspect_change_strength, cfg.aspect_change_strength, 0.0)
    if not cfg.scale_change:
        log_s[:] = 0.0
        log_a[:] = 0.0
    wh = np.stack([s0 * math.sqrt(a0) * np.exp(log_s + log_a / 2), s0 / math.sqrt(a0) * np.exp(log_s - log_a / 2)], 1)
    wh = np.clip(wh, cfg.min_target_size, 0.9 * region)

    rm = rngs["motion"]
    if cfg.motion:
        centre = _wander(rm, cfg, T, 1.0, region_lo, region_hi, wh)
    else:
        half0 = wh.max(axis=0) / 2
        centre = np.repeat(rm.uniform(region_lo + half0, region_hi - half0)[None], T, axis=0)
        centre = np.clip(centre, region_lo + wh / 2, region_hi - wh / 2)

    # integer pixel extents: w_i = round(w), x0 = round(cx - w_i/2), inside the region (rounding the size
    # first keeps a constant-size target constant-size)
    lo_i, hi_i = region_lo.astype(np.int64), region_hi.astype(np.int64)
    size = np.clip(_round(wh), cfg.min_target_size, hi_i - lo_i)
    p0 = np.clip(_round(centre - size / 2), lo_i, hi_i - size)
    world = np.concatenate([p0, size], axis=1).astype(np.int64)  # [T, 4] x, y, w, h

    # --- camera shake
    shake = np.zeros((T, 2), np.int64)
    if cfg.camera_shake and m > 0:
        rk = rngs["shake"]
        amp = _round(np.clip(rk.normal(0, m / 1.5, size=(T, 2)), -m, m))
        shaken = rk.uniform(size=T) < cfg.shake_probability
        shake = amp * shaken[:, None]
    boxes_i = world.copy()
    boxes_i[:, :2] -= shake

    # --- distractors (behind) and occluder (in front), frame coordinates
    rd = rngs["distractors"]
    canvas_lo, canvas_hi = np.array([-m, -m], float), np.array([W + m, H + m], float)
    distractors = []  # (texture, boxes [T,4] int in frame coords)
    for _ in range(cfg.num_distractors):
        tex_d, _ = make_texture(rd, kind, cfg.texture_size, like=palette)
        whd = wh[0] * rd.uniform(0.7, 1.3) * np.exp(
            _smooth_curve(rd, T, cfg.knot_interval, -0.2, 0.2, 0.0))[:, None] * np.ones((1, 2))
        whd = np.clip(whd, cfg.min_target_size, 0.9 * region)
        cd = _wander(rd, cfg, T, 0.8, canvas_lo, canvas_hi, whd)
        q0 = _round(cd - whd / 2)
        qs = np.maximum(_round(cd + whd / 2) - q0, 2)
        bd = np.concatenate([q0, qs], 1)
        bd[:, :2] -= shake
        distractors.append((tex_d, bd))
    distractor_boxes = (np.stack([b for _, b in distractors], 1).astype(np.float64)
                        if distractors else np.zeros((T, 0, 4)))

    ro = rngs["occlusion"]
    occ_tex, _ = make_texture(ro, kind, cfg.texture_size, like=palette)
    occ = np.full((T, 4), -1, np.int64)
    occ_valid = np.zeros(T, bool)
    if cfg.occlusion and T >= 6 and cfg.occlusion_strength > 0:
        L = int(np.clip(T // 3, 6, 30))
        t0 = int(ro.integers(T // 6, max(T // 6, T - L) + 1))
        side = 1.0 if ro.uniform() < 0.5 else -1.0
        direction = 1.0 if ro.uniform() < 0.5 else -1.0
        for t in range(t0, min(T, t0 + L)):
            bx, by, bw, bh = boxes_i[t]
            ow, oh = 0.8 * bw, 0.8 * bh
            prog = (t - t0) / (L - 1)
            ocx = bx + bw / 2 + direction * (2 * prog - 1) * (bw / 2 + ow / 2 + 2)
            ocy = by + bh / 2 + side * (bh / 2 + oh / 2 - cfg.occlusion_strength * bh)
            q0 = _round([ocx - ow / 2, ocy - oh / 2])
            q1 = _round([ocx + ow / 2, ocy + oh / 2])
            # never cover more than occlusion_strength of the target height
            if side > 0:
                q0[1] = max(q0[1], by + bh - int(math.floor(cfg.occlusion_strength * bh)))
            else:
                q1[1] = min(q1[1], by + int(math.floor(cfg.occlusion_strength * bh)))
            if q1[0] > q0[0] and q1[1] > q0[1]:
                occ[t] = [q0[0], q0[1], q1[0] - q0[0], q1[1] - q0[1]]
                occ_valid[t] = True

    # --- illumination and noise
    ri = rngs["illumination"]
    gain = 1.0 + _smooth_curve(ri, T, cfg.knot_interval, -cfg.gain_strength, cfg.gain_strength)
    offset = _smooth_curve(ri, T, cfg.knot_interval, -cfg.offset_strength, cfg.offset_strength)
    if not cfg.illumination:
        gain[:] = 1.0
        offset[:] = 0.0
    noise_bank = None
    rn = rngs["noise"]
    if cfg.noise_std > 0:
        noise_bank = rn.normal(0, cfg.noise_std, size=(H + 32, W + 32, 3)).astype(np.float32)
        noise_off = rn.integers(0, 33, size=(T, 2))

    # --- render
    bg = _background(rngs["background"], Hc, Wc)
    frames = np.empty((T, H, W, 3), np.uint8)
    visible = np.ones(T)
    for t in range(T):
        sx, sy = int(shake[t, 0]), int(shake[t, 1])
        f = bg[m + sy:m + sy + H, m + sx:m + sx + W].copy()
        for tex_d, bd in distractors:
            x, y, w, h = (int(v) for v in bd[t])
            if x < W and y < H and x + w > 0 and y + h > 0:
                _paste(f, render_patch(tex_d, w, h), x, y)
        x, y, w, h = (int(v) for v in boxes_i[t])
        f[y:y + h, x:x + w] = render_patch(texture, w, h)
        if occ_valid[t]:
            ox, oy, ow, oh = (int(v) for v in occ[t])
            _paste(f, render_patch(occ_tex, ow, oh), ox, oy)
            ix = max(0, min(x + w, ox + ow) - max(x, ox))
            iy = max(0, min(y + h, oy + oh) - max(y, oy))
            visible[t] = 1.0 - ix * iy / float(w * h)
        if gain[t] != 1.0 or offset[t] != 0.0 or noise_bank is not None:
            g = f.astype(np.float32)
            g *= np.float32(gain[t])
            g += np.float32(offset[t])
            if noise_bank is not None:
                ny, nx = noise_off[t]
                g += noise_bank[ny:ny + H, nx:nx + W]
            np.clip(g, 0, 255, out=g)
            f = (g + 0.5).astype(np.uint8)
        frames[t] = f

    boxes = boxes_i.astype(np.float64)
    if not return_info:
        return frames, boxes
    occ_f = occ.astype(np.float64)
    occ_f[~occ_valid] = np.nan
    info = SyntheticInfo(
        target_texture=texture, texture_kind=kind, world_boxes=world.astype(np.float64), shake=shake,
        gain=gain, offset=offset, occluder_boxes=occ_f, visible_fraction=visible,
        distractor_boxes=distractor_boxes,
    )
    return frames, boxes, info


# ------------------------------------------------------------------------------------------------ on disk


def _fmt(v: float) -> str:
    return np.format_float_positional(float(v), trim="-")


def write_otb_sequence(root: str | os.PathLike, name: str, frames: np.ndarray, boxes: np.ndarray, *,
                       quality: int = 95, overwrite: bool = False) -> Path:
    """Write ``<root>/<name>/img/0001.jpg ...`` (JPEG ``quality``) and ``groundtruth_rect.txt`` (1-based,
    comma separated, exact decimal values) so that :func:`jaxtrack.data.sequence.load_otb_folder` reads it.

    Atomic: everything is written into a temporary folder in ``root`` that is then renamed to ``name``; an
    interrupted call leaves no half-written sequence (only a hidden ``.<name>.tmp-*`` folder). An existing
    sequence raises ``FileExistsError`` unless ``overwrite=True``.
    """
    frames = np.asarray(frames)
    boxes = np.asarray(boxes, dtype=np.float64)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be [T, H, W, 3] uint8, got {frames.shape} {frames.dtype}")
    if boxes.shape != (frames.shape[0], 4):
        raise ValueError(f"boxes must be [{frames.shape[0]}, 4] for {frames.shape[0]} frames, got {boxes.shape}")
    if not name or os.sep in name or name.startswith("."):
        raise ValueError(f"invalid sequence name {name!r}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    dest = root / name
    if dest.exists() and not overwrite:
        raise FileExistsError(f"sequence folder already exists: {dest}")
    with atomic_directory(dest) as tmp:
        (tmp / "img").mkdir()
        digits = max(4, len(str(len(frames))))
        params = [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)]
        for i, f in enumerate(frames, start=1):
            ok, buf = cv2.imencode(".jpg", f, params)
            if not ok:
                raise ValueError(f"JPEG encoding failed for frame {i} of {name!r}")
            buf.tofile(str(tmp / "img" / f"{i:0{digits}d}.jpg"))
        lines = [",".join(_fmt(v) for v in (b[0] + 1, b[1] + 1, b[2], b[3])) for b in boxes.tolist()]
        (tmp / "groundtruth_rect.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dest


def _sequence_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def generate_dataset(root: str | os.PathLike, num_sequences: int, config: SyntheticConfig | None = None,
                     seed: int = 0, *, prefix: str = "synthetic", quality: int = 95,
                     progress: bool = False) -> list[Path]:
    """Write ``num_sequences`` sequences ``<root>/<prefix>_0000 ...`` in OTB layout; return their folders.

    Resumable: sequences already present (complete, thanks to the atomic writes) are skipped, and leftovers of
    an interrupted write are removed. Sequence ``i`` uses the seed ``SeedSequence([seed, i])``, so it does not
    depend on ``num_sequences``; a manifest (``<prefix>.synthetic.json``) records config, seed and prefix, and
    resuming with different ones raises ``ValueError`` instead of mixing two datasets.
    """
    cfg = config if config is not None else SyntheticConfig()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    manifest = {"config": dataclasses.asdict(cfg), "seed": int(seed), "prefix": prefix, "quality": int(quality)}
    manifest = json.loads(json.dumps(manifest))  # tuples -> lists, as read back
    mpath = root / f"{prefix}.synthetic.json"
    if mpath.is_file():
        old = json.loads(mpath.read_text(encoding="utf-8"))
        if old != manifest:
            raise ValueError(
                f"{mpath} records a dataset generated with other settings (seed={old.get('seed')}, "
                f"quality={old.get('quality')}, config={old.get('config')}); use another root or prefix"
            )
    else:
        atomic_write_text(mpath, json.dumps(manifest, indent=1))
    for stale in root.glob(f".{prefix}_*.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)

    it = range(int(num_sequences))
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc=f"synthetic -> {root}")
    out = []
    for i in it:
        name = f"{prefix}_{i:04d}"
        dest = root / name
        if dest.exists():
            if not ((dest / "groundtruth_rect.txt").is_file() and (dest / "img").is_dir()):
                raise ValueError(f"{dest} exists but is not a complete sequence (no groundtruth_rect.txt/img); "
                                 f"remove it or choose another root")
        else:
            frames, boxes = generate_sequence(cfg, _sequence_seed(seed, i))
            write_otb_sequence(root, name, frames, boxes, quality=quality)
        out.append(dest)
    return out

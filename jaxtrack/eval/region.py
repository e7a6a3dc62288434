"""VOT region overlap in pure NumPy, with the numbers of pysot's ``toolkit/utils/region`` extension.

pysot's ``vot_overlap(pred, gt, bound)`` (a Cython wrapper around the VOT toolkit's ``region.c``,
``compute_polygon_overlap``) does **not** compute an exact polygon intersection: it *rasterises* both regions
onto one pixel grid and divides pixel counts. The numbers the field reports (pysot's and video_analyst's VOT
accuracy and EAO) come from that rasterisation, so :func:`vot_overlap` restates it operation by operation,
including its single-precision (``float``) arithmetic. The semantics, restated:

* A region is a 4-value rectangle ``[x, y, w, h]`` (turned into the polygon
  ``(x, y), (x+w, y), (x+w, y+h), (x, y+h)``), a polygon of ``2k`` values ``x1, y1, …``, or a 1-value VOT
  record (``1`` init / ``2`` failure / ``0`` skipped), whose overlap is NaN. Coordinates are stored as float32.
* ``bound = (W, H)`` becomes the region ``top 0, bottom H, left 0, right W`` (no bound: ±inf).
* Each polygon's bounding box is rounded outwards (floor left/top, ceil right/bottom) and intersected with
  the bound. The mask origin is the smallest left/top of the two, its size ``int(max right − origin) + 1``
  (so pixel column ``W`` and row ``H`` are *inside* a ``(W, H)`` bound: pixels are inclusive).
* Early zero: when one bounded box area is < 1e-10 times the other's (this includes an empty box), when the
  mask would be empty, or when the two bounded boxes do not overlap with positive area (boxes that only touch
  give 0 even though their edge pixels coincide).
* Rasterisation (``rasterize_polygon``, non-legacy mode — pysot never sets the legacy flag): the polygon is
  shifted to the mask origin (float32 addition) and every vertex rounded half away from zero. For each pixel
  row ``y`` every non-horizontal edge whose integer end rows enclose ``y`` (inclusive) gives a node
  ``int(x_i + (y − y_i) / (y_j − y_i) · (x_j − x_i))`` (truncation toward zero). Sorted nodes are walked in
  pairs; a pair of equal nodes skips one node (a vertex on the row gives two equal nodes); the pixels from
  the first to the second node **inclusive** (clamped to the mask) are set.
* Overlap = |mask1 ∧ mask2| / |mask1 ∨ mask2|, computed in float32 (NaN if both masks are empty).

Consequence worth knowing: on integer corners, the rectangle ``[0, 0, 10, 10]`` covers 11 × 11 pixels, so its
overlap with ``[5, 0, 10, 10]`` is 66/176 = 0.375, not the continuous 1/3.

:func:`polygon_iou_exact` is the continuous alternative (exact areas of convex polygons clipped to the bound,
as got10k's Shapely-based ``poly_iou`` computes them); it is *not* what pysot reports.
"""

from __future__ import annotations

from collections.abc import Sequence as _Seq

import numpy as np

__all__ = ["vot_overlap", "vot_overlap_traj", "rasterize_polygon", "region_to_polygon", "polygon_area",
           "polygon_iou_exact"]

_F32 = np.float32


def region_to_polygon(region) -> np.ndarray | None:
    """``[K, 2]`` float32 vertices of a 4-value rectangle or a ``2k``-value polygon; ``None`` for a
    1-value VOT record. Raises ``ValueError`` for any other length."""
    r = np.asarray(region, dtype=np.float64).reshape(-1)
    if r.size == 1:
        return None
    if r.size == 4:
        x, y, w, h = r
        pts = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float64)
    elif r.size >= 6 and r.size % 2 == 0:
        pts = r.reshape(-1, 2)
    else:
        raise ValueError(f"a region has 1 (VOT record), 4 (x, y, w, h) or an even number >= 6 of values "
                         f"(polygon), got {r.size}: {r.tolist()}")
    return pts.astype(_F32)


def _round_half_away(v: np.ndarray) -> np.ndarray:
    """C ``round``: halves away from zero (NumPy's ``round`` rounds halves to even)."""
    v = np.asarray(v, dtype=np.float64)
    return (np.sign(v) * np.floor(np.abs(v) + 0.5)).astype(_F32)


def _row_intervals(px: np.ndarray, py: np.ndarray, widths: np.ndarray, heights: np.ndarray,
                   n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The pixel runs ``region.c``'s non-legacy ``rasterize_polygon`` fills, for F polygons at once.

    ``px, py``: ``[F, K]`` float32 vertices in mask coordinates; ``widths, heights``: ``[F]`` mask sizes; rows
    ``0 … n_rows − 1`` are scanned (rows at or beyond a polygon's mask height get no runs). Returns ``lo, hi``
    ``[F, n_rows, M]``: inclusive columns of the runs in the order the C loop fills them (``lo > hi``: unused).
    """
    f, kk = px.shape
    xs = _round_half_away(px).astype(np.float64)
    ys = _round_half_away(py).astype(np.float64)
    xj, yj = np.roll(xs, 1, axis=1), np.roll(ys, 1, axis=1)  # edge i goes from vertex j = i - 1 to vertex i
    yi_int, yj_int = np.trunc(ys)[:, None, :], np.trunc(yj)[:, None, :]
    rows = np.arange(n_rows, dtype=np.float64)[None, :, None]  # [1, R, 1]
    crosses = (
        ((yi_int <= rows) & (yj_int > rows))
        | ((yj_int <= rows) & (yi_int > rows))
        | ((yi_int < rows) & (yj_int >= rows))
        | ((yj_int < rows) & (yi_int >= rows))
    )
    r = (yj - ys)[:, None, :]
    k = (xj - xs)[:, None, :]
    crosses &= r != 0
    crosses &= rows < np.asarray(heights, np.float64)[:, None, None]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # (double) x_i + (double)(pixelY - y_i) / r * k, truncated toward zero by the (int) cast
        nodes = np.trunc(xs[:, None, :] + ((rows - ys[:, None, :]) / r) * k)
    nodes = np.sort(np.where(crosses, nodes, np.inf), axis=2).reshape(f * n_rows, kk)
    count = crosses.sum(axis=2).reshape(-1)  # nodes per row, the valid ones first after sorting
    width = np.repeat(np.asarray(widths, np.float64), n_rows)
    idx = np.arange(len(nodes))
    i = np.zeros(len(nodes), dtype=np.int64)
    active = count >= 2
    los, his = [], []
    for _ in range(kk):  # the C loop consumes at least one node per iteration
        active &= i < count - 1
        if not active.any():
            break
        a = nodes[idx, np.minimum(i, kk - 1)]
        b = nodes[idx, np.minimum(i + 1, kk - 1)]
        dup = active & (a == b)  # a vertex on the row gives two equal nodes: the first is skipped
        stop = active & ~dup & (a >= width)
        fill = active & ~dup & ~stop & (b >= 0)
        los.append(np.where(fill, np.maximum(a, 0), 1.0))
        his.append(np.where(fill, np.minimum(b, width - 1), 0.0))
        i = np.where(dup, i + 1, np.where(active & ~stop, i + 2, i))
        active &= ~stop
    if not los:
        z = np.zeros((f, n_rows, 0))
        return z, z
    return np.stack(los, axis=1).reshape(f, n_rows, -1), np.stack(his, axis=1).reshape(f, n_rows, -1)


def _union_count(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Pixels covered by the inclusive runs ``[lo, hi]`` (``lo > hi``: unused) of ``[F, R, M]`` arrays → ``[F]``."""
    if lo.shape[-1] == 0:
        return np.zeros(lo.shape[0], dtype=np.int64)
    used = lo <= hi
    start = np.where(used, lo, np.inf)
    order = np.argsort(start, axis=-1, kind="stable")
    start = np.take_along_axis(start, order, axis=-1)
    end = np.take_along_axis(np.where(used, hi + 1, -np.inf), order, axis=-1)  # half-open ends
    before = np.concatenate([np.full(end.shape[:-1] + (1,), -np.inf), end[..., :-1]], axis=-1)
    reach = np.maximum.accumulate(before, axis=-1)
    with np.errstate(invalid="ignore"):
        gain = np.where(np.isfinite(start), np.maximum(0.0, end - np.maximum(start, reach)), 0.0)
    return gain.sum(axis=(1, 2)).astype(np.int64)


def rasterize_polygon(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boolean ``[height, width]`` mask of ``region.c``'s non-legacy ``rasterize_polygon``.

    ``points`` are ``[K, 2]`` vertices already expressed in mask coordinates (stored as float32). The overlap
    itself is computed from the same pixel runs, without building masks.
    """
    pts = np.asarray(points, _F32).reshape(-1, 2)
    mask = np.zeros((max(height, 0), max(width, 0)), dtype=bool)
    if width <= 0 or height <= 0 or len(pts) == 0:
        return mask
    lo, hi = _row_intervals(pts[None, :, 0], pts[None, :, 1], np.array([width]), np.array([height]), height)
    cols = np.arange(width)[None, :]
    for m in range(lo.shape[-1]):
        mask |= (cols >= lo[0, :, m:m + 1]) & (cols <= hi[0, :, m:m + 1])
    return mask


def _bounds(p: np.ndarray) -> np.ndarray:
    """``[F, K, 2]`` vertices → ``[F, 4]`` (top, bottom, left, right) rounded outwards, float32."""
    return np.stack([np.floor(p[..., 1].min(axis=1)), np.ceil(p[..., 1].max(axis=1)),
                     np.floor(p[..., 0].min(axis=1)), np.ceil(p[..., 0].max(axis=1))], axis=1).astype(_F32)


def _intersect(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.stack([np.maximum(a[:, 0], b[:, 0]), np.minimum(a[:, 1], b[:, 1]),
                     np.maximum(a[:, 2], b[:, 2]), np.minimum(a[:, 3], b[:, 3])], axis=1).astype(_F32)


def _area32(b: np.ndarray) -> np.ndarray:
    return ((b[:, 3] - b[:, 2]) * (b[:, 1] - b[:, 0])).astype(_F32)  # float32 operands: float32 arithmetic


def _bounds_overlap_is_zero(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``bounds_overlap(a, b) == 0`` of region.c, in float32 (``MAX(0, NaN)`` stays NaN, hence not zero)."""
    inter = _area32(_intersect(a, b))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = inter / ((_area32(a) + _area32(b)) - inter)
    return (ratio == 0) | (ratio < 0)


def _bound_box(bound) -> np.ndarray:
    if bound is None:
        return np.array([-np.inf, np.inf, -np.inf, np.inf], dtype=_F32)
    b = tuple(bound)
    if len(b) != 2:
        raise ValueError(f"bound must be (width, height) or None, got {bound!r}")
    return np.array([0, b[1], 0, b[0]], dtype=_F32)


_MAX_CELLS = 1 << 21  # frames × rows × vertices rasterised at once


def _polygon_overlaps(p1: np.ndarray, p2: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """``compute_polygon_overlap`` for F pairs: ``p1 [F, K1, 2]``, ``p2 [F, K2, 2]`` float32 → ``[F]`` float."""
    f = len(p1)
    out = np.full(f, np.nan)
    # NaN vertices: undefined in region.c; NaN overlaps are never > 0, so they act as failures.
    finite = np.all(np.isfinite(p1), axis=(1, 2)) & np.all(np.isfinite(p2), axis=(1, 2))
    if not finite.any():
        return out
    p1, p2 = p1[finite], p2[finite]
    bb = bound[None, :]
    b1 = _intersect(_bounds(p1), bb)
    b2 = _intersect(_bounds(p2), bb)
    x = np.minimum(b1[:, 2], b2[:, 2])
    y = np.minimum(b1[:, 0], b2[:, 0])
    with np.errstate(invalid="ignore", over="ignore"):
        width = np.trunc(np.maximum(b1[:, 3], b2[:, 3]) - x).astype(np.float64) + 1
        height = np.trunc(np.maximum(b1[:, 1], b2[:, 1]) - y).astype(np.float64) + 1
    a1 = _area32(b1).astype(np.float64)
    a2 = _area32(b2).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        zero = (a1 / a2 < 1e-10) | (a2 / a1 < 1e-10) | ~(width >= 1) | ~(height >= 1)
    zero |= _bounds_overlap_is_zero(b1, b2)
    res = np.zeros(len(p1))
    todo = np.flatnonzero(~zero)
    if len(todo):
        shift = np.stack([-x, -y], axis=1)[:, None, :].astype(_F32)
        q1 = (p1 + shift).astype(_F32)  # offset_polygon: float32 additions
        q2 = (p2 + shift).astype(_F32)
        heights = height.astype(np.int64)
        widths = width.astype(np.int64)
        kmax = max(p1.shape[1], p2.shape[1])
        todo = todo[np.argsort(heights[todo], kind="stable")]
        s = 0
        while s < len(todo):
            e = s + 1
            while e < len(todo) and (e - s + 1) * int(heights[todo[e]]) * kmax <= _MAX_CELLS:
                e += 1
            sel = todo[s:e]
            n_rows = int(heights[sel].max())
            lo1, hi1 = _row_intervals(q1[sel, :, 0], q1[sel, :, 1], widths[sel], heights[sel], n_rows)
            lo2, hi2 = _row_intervals(q2[sel, :, 0], q2[sel, :, 1], widths[sel], heights[sel], n_rows)
            union = _union_count(np.concatenate([lo1, lo2], axis=-1), np.concatenate([hi1, hi2], axis=-1))
            inter = _union_count(lo1, hi1) + _union_count(lo2, hi2) - union
            with np.errstate(divide="ignore", invalid="ignore"):
                res[sel] = (inter.astype(_F32) / union.astype(_F32)).astype(np.float64)
            s = e
    out[finite] = res
    return out


def vot_overlap(region1, region2, bound=None) -> float:
    """pysot's ``vot_overlap``: overlap of two regions (4-value boxes or polygons) on a pixel grid.

    ``bound`` is the image ``(width, height)`` or ``None``. A 1-value VOT record (``[1]``, ``[2]``, ``[0]``)
    on either side gives NaN. The value is a float32 ratio of pixel counts (see the module docstring).
    """
    p1 = region_to_polygon(region1)
    p2 = region_to_polygon(region2)
    if p1 is None or p2 is None:
        return float("nan")
    return float(_polygon_overlaps(p1[None], p2[None], _bound_box(bound))[0])


def vot_overlap_traj(regions1: _Seq, regions2: _Seq, bound=None) -> list[float]:
    """Frame-wise :func:`vot_overlap` of two equally long region lists (computed in vectorised batches)."""
    if len(regions1) != len(regions2):
        raise ValueError(f"trajectories differ in length: {len(regions1)} and {len(regions2)}")
    b = _bound_box(bound)
    out = np.full(len(regions1), np.nan)
    groups: dict[tuple[int, int], list[tuple[int, np.ndarray, np.ndarray]]] = {}
    for i, (r1, r2) in enumerate(zip(regions1, regions2)):
        p1, p2 = region_to_polygon(r1), region_to_polygon(r2)
        if p1 is not None and p2 is not None:
            groups.setdefault((len(p1), len(p2)), []).append((i, p1, p2))
    for items in groups.values():
        idx = np.array([it[0] for it in items])
        out[idx] = _polygon_overlaps(np.stack([it[1] for it in items]), np.stack([it[2] for it in items]), b)
    return out.tolist()


# ----------------------------------------------------------------------------------- exact geometry


def polygon_area(points) -> float:
    """Signed shoelace area of ``[K, 2]`` vertices (positive when counter-clockwise in x-right/y-up axes)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(p) < 3:
        return 0.0
    x, y = p[:, 0], p[:, 1]
    return float(0.5 * (np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)))


def _clip_convex(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Sutherland–Hodgman: ``subject`` polygon clipped by the convex, positively oriented ``clip``."""
    out = subject
    for k in range(len(clip)):
        if len(out) == 0:
            break
        a, b = clip[k], clip[(k + 1) % len(clip)]
        edge = b - a

        def side(p):
            return edge[0] * (p[..., 1] - a[1]) - edge[1] * (p[..., 0] - a[0])

        inp = out
        s = side(inp)
        res = []
        for i in range(len(inp)):
            cur, prev = inp[i], inp[i - 1]
            sc, sp = s[i], s[i - 1]
            if sc >= 0:
                if sp < 0:
                    res.append(prev + (cur - prev) * (sp / (sp - sc)))
                res.append(cur)
            elif sp >= 0:
                res.append(prev + (cur - prev) * (sp / (sp - sc)))
        out = np.array(res, dtype=np.float64).reshape(-1, 2)
    return out


def _oriented(p: np.ndarray) -> np.ndarray:
    return p if polygon_area(p) >= 0 else p[::-1]


def polygon_iou_exact(region1, region2, bound=None) -> float:
    """Continuous IoU of two convex regions (boxes or polygons), both clipped to ``(0, 0)–(W, H)`` first.

    got10k's convention (Shapely areas; ``inter / (union + eps)`` clipped to [0, 1]); exact for convex
    polygons, which VOT's quadrilaterals are. This is **not** pysot's rasterised :func:`vot_overlap`.
    """
    ps = []
    for r in (region1, region2):
        p = region_to_polygon(r)
        if p is None:
            return float("nan")
        p = _oriented(p.astype(np.float64) if np.asarray(r).size != 4 else
                      _exact_rect(np.asarray(r, np.float64).reshape(-1)))
        if bound is not None:
            w, h = bound
            p = _clip_convex(p, np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64))
        ps.append(p)
    a1, a2 = abs(polygon_area(ps[0])), abs(polygon_area(ps[1]))
    inter_poly = _clip_convex(ps[0], ps[1]) if len(ps[1]) >= 3 and len(ps[0]) >= 3 else np.zeros((0, 2))
    inter = abs(polygon_area(inter_poly))
    union = a1 + a2 - inter
    return float(np.clip(inter / (union + np.finfo(float).eps), 0.0, 1.0))


def _exact_rect(r: np.ndarray) -> np.ndarray:
    x, y, w, h = r
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float64)

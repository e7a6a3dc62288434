"""jaxtrack.losses: label assignment against loop-based NumPy re-statements of the reference code, loss values
against PyTorch re-statements of the reference loss functions, gradients, jit / vmap.

References (restated here from their logic, never by calling jaxtrack):

* video_analyst ``make_densebox_target.py`` + ``densebox_target.py`` (negative pairs), ``focal_loss.py`` /
  ``common_loss.py::sigmoid_focal_loss``, ``sigmoid_ce_centerness.py``, ``iou_loss.py``;
* pysot ``anchor_target.py``, ``anchor.py``, ``bbox.py``, ``loss.py``, ``model_builder.py``;
* NanoTrack (SiamTrackers) ``point_target.py``, ``point.py``, ``loss.py``, ``iou_loss.py``, ``model_builder.py``.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jaxtrack import losses
from jaxtrack.tracking import get_config

FCPP = get_config("siamfcpp_alexnet")  # x 303, score 17, stride 8
RPNPP = get_config("siamrpnpp_r50")  # x 255, score 25, stride 8, 5 anchors
RPN_ALEX = get_config("siamrpn_alex")  # x 287, score 21
RPN_ALEX_TRAIN = dataclasses.replace(RPN_ALEX, instance_size=255)  # pysot trains AlexNet at 255 -> 17
NANO2 = get_config("nanotrack_v2")  # x 255, score 16, stride 16
NANO3 = get_config("nanotrack_v3")  # score 15
MIXED = np.array([False, True, False, False, True, False])  # negative-pair flags for the 6 crafted boxes


def crafted_boxes(x_size: int) -> np.ndarray:
    """(x1, y1, x2, y2) crop boxes: centred, off-centre, tiny, huge, partly outside the crop, and one whose
    edges fall exactly on grid positions."""
    c = x_size / 2.0
    return np.array(
        [
            [c - 40.3, c - 30.7, c + 41.2, c + 29.9],  # centred
            [c + 10.5, c - 75.2, c + 95.1, c - 20.4],  # off-centre
            [c - 5.2, c - 3.1, c + 3.3, c + 6.4],  # tiny
            [8.0, 15.5, x_size - 12.25, x_size - 3.0],  # huge
            [-60.0, x_size - 90.0, 70.5, x_size + 40.0],  # partly outside
            [c - 64.0, c - 32.0, c + 64.0, c + 48.0],  # integer edges (ties on the grid)
        ],
        np.float32,
    )


# ============================================================================ NumPy re-statements (loops)


def np_densebox_target(box, negative, x_size, score_size, total_stride):
    """video_analyst make_densebox_target (one gt box) + DenseboxTarget's negative-pair relabelling."""
    box = np.asarray(box, np.float32)
    score_offset = (x_size - 1 - (score_size - 1) * total_stride) // 2
    cls = np.zeros((score_size, score_size), np.int64)
    ctr = np.zeros((score_size, score_size), np.float32)
    gt = np.zeros((score_size, score_size, 4), np.float32)
    for i in range(score_size):  # row (y)
        for j in range(score_size):  # col (x)
            x = np.float32(score_offset + j * total_stride)
            y = np.float32(score_offset + i * total_stride)
            off_l, off_t = x - box[0], y - box[1]
            off_r, off_b = -(x - box[2]), -(y - box[3])
            if off_l > 0 and off_t > 0 and off_r > 0 and off_b > 0:
                cls[i, j] = 1
                c = (min(off_l, off_r) * min(off_t, off_b)) / (
                    max(off_l, off_r) * max(off_t, off_b) + np.float32(1e-5)
                )
                ctr[i, j] = np.sqrt(np.abs(c))
                gt[i, j] = box
    if negative:
        was_pos = cls == 1
        cls[cls == 0] = -1
        cls[was_pos] = 0
    return cls, ctr, gt


def np_anchor_target(box, negative, config, thr_high=0.6, thr_low=0.3):
    """pysot AnchorTarget.__call__ without the random `select` (every candidate kept), pysot layouts:
    cls / delta_weight / overlap [A, S, S], delta [4, A, S, S]."""
    stride, size = config.anchor_stride, config.score_size
    # Anchors.generate_anchors
    base = []
    for r in config.anchor_ratios:
        ws = int(math.sqrt(stride * stride * 1.0 / r))
        hs = int(ws * r)
        for s in config.anchor_scales:
            base.append((ws * s, hs * s))
    anchor_num = len(base)
    im_c = config.instance_size // 2  # TRAIN.SEARCH_SIZE // 2
    a0x = im_c - size // 2 * stride  # generate_all_anchors
    cls = -1 * np.ones((anchor_num, size, size), np.int64)
    delta = np.zeros((4, anchor_num, size, size), np.float32)
    weight = np.zeros((anchor_num, size, size), np.float32)
    overlap = np.zeros((anchor_num, size, size), np.float32)
    x1, y1, x2, y2 = (float(v) for v in box)
    tcx, tcy, tw, th = (x1 + x2) * 0.5, (y1 + y2) * 0.5, x2 - x1, y2 - y1
    if negative:
        cx = size // 2 + int(np.ceil((tcx - im_c) / stride + 0.5))
        cy = size // 2 + int(np.ceil((tcy - im_c) / stride + 0.5))
        l, r = max(0, cx - 3), min(size, cx + 4)
        u, d = max(0, cy - 3), min(size, cy + 4)
        for a in range(anchor_num):
            for y in range(u, d):
                for x in range(l, r):
                    cls[a, y, x] = 0
        return cls, delta, weight, overlap
    pos = []
    for a, (w, h) in enumerate(base):
        for y in range(size):
            for x in range(size):
                acx = a0x + x * stride
                acy = a0x + y * stride
                ax1, ay1, ax2, ay2 = acx - w * 0.5, acy - h * 0.5, acx + w * 0.5, acy + h * 0.5
                ww = max(0.0, min(x2, ax2) - max(x1, ax1))
                hh = max(0.0, min(y2, ay2) - max(y1, ay1))
                inter = ww * hh
                iou = inter / ((ax2 - ax1) * (ay2 - ay1) + tw * th - inter)
                overlap[a, y, x] = iou
                delta[:, a, y, x] = [(tcx - acx) / w, (tcy - acy) / h, np.log(tw / w), np.log(th / h)]
                if iou > thr_high:
                    pos.append((a, y, x))
                if iou < thr_low:
                    cls[a, y, x] = 0
    for p in pos:
        cls[p] = 1
        weight[p] = 1.0 / (len(pos) + 1e-6)
    return cls, delta, weight, overlap


def np_point_target(box, negative, config):
    """NanoTrack PointTarget.__call__ without the random `select`: cls [S, S], delta [4, S, S]."""
    stride, size = config.stride, config.score_size
    ori = config.instance_size // 2 - size // 2 * stride  # Point.generate_points, im_c = SEARCH_SIZE // 2
    cls = -1 * np.ones((size, size), np.int64)
    delta = np.zeros((4, size, size), np.float32)
    x1, y1, x2, y2 = (float(v) for v in box)
    tcx, tcy, tw, th = (x1 + x2) * 0.5, (y1 + y2) * 0.5, x2 - x1, y2 - y1
    for i in range(size):
        for j in range(size):
            px, py = ori + stride * j, ori + stride * i
            small = (tcx - px) ** 2 / (tw / 4) ** 2 + (tcy - py) ** 2 / (th / 4) ** 2
            large = (tcx - px) ** 2 / (tw / 2) ** 2 + (tcy - py) ** 2 / (th / 2) ** 2
            if negative:
                if small < 1:
                    cls[i, j] = 0
                continue
            delta[:, i, j] = [px - x1, py - y1, x2 - px, y2 - py]
            if small < 1:
                cls[i, j] = 1
            if large > 1:
                cls[i, j] = 0
    return cls, delta


# ============================================================================ PyTorch re-statements (losses)


def torch_siamfcpp_loss(cls_pred, ctr_pred, box_pred, cls_gt, ctr_gt, box_gt, alpha=0.25, gamma=2.0):
    """video_analyst FocalLoss + SigmoidCrossEntropyCenterness + IOULoss; tensors (B, HW, C)."""
    tiny = np.finfo(np.float32).tiny
    # FocalLoss.forward
    mask = ~(cls_gt == -1)
    mask = mask.type(torch.float32)
    vlabel = cls_gt * mask
    zero_mat = torch.zeros(cls_pred.shape[0], cls_pred.shape[1], cls_pred.shape[2] + 1)
    one_mat = torch.ones_like(zero_mat)
    onehot = zero_mat.scatter(2, vlabel.type(torch.LongTensor), one_mat)[:, :, 1:]
    p = torch.sigmoid(cls_pred)
    ce = F.binary_cross_entropy_with_logits(cls_pred, onehot, reduction="none")
    p_t = p * onehot + (1 - p) * (1 - onehot)
    focal = ce * ((1 - p_t) ** gamma)
    focal = (alpha * onehot + (1 - alpha) * (1 - onehot)) * focal
    positive_mask = (cls_gt > 0).type(torch.float32)
    l_cls = (focal.sum(dim=2) * mask.squeeze(2)).sum() / torch.clamp(positive_mask.sum(), min=1.0)
    # SigmoidCrossEntropyCenterness.forward
    cmask = (~(ctr_gt == 0)).type(torch.float32)
    l = F.binary_cross_entropy_with_logits(ctr_pred, ctr_gt, reduction="none") * cmask
    l = l - F.binary_cross_entropy(ctr_gt, ctr_gt, reduction="none") * cmask
    l_ctr = l.sum() / torch.clamp(cmask.sum(), min=1.0)
    # IOULoss.forward
    rmask = ((~(cls_gt == 0)) * (~(cls_gt == -1))).type(torch.float32).squeeze(2)
    gt, pred = box_gt, box_pred
    aog = torch.abs(gt[:, :, 2] - gt[:, :, 0] + 1) * torch.abs(gt[:, :, 3] - gt[:, :, 1] + 1)
    aop = torch.abs(pred[:, :, 2] - pred[:, :, 0] + 1) * torch.abs(pred[:, :, 3] - pred[:, :, 1] + 1)
    iw = torch.min(pred[:, :, 2], gt[:, :, 2]) - torch.max(pred[:, :, 0], gt[:, :, 0]) + 1
    ih = torch.min(pred[:, :, 3], gt[:, :, 3]) - torch.max(pred[:, :, 1], gt[:, :, 1]) + 1
    inter = torch.clamp(iw, min=0) * torch.clamp(ih, min=0)
    iou = torch.clamp(inter / (aog + aop - inter), min=0)
    l_reg = (-torch.log(torch.clamp(iou, min=tiny)) * rmask).sum() / torch.clamp(rmask.sum(), min=1.0)
    return l_cls, l_ctr, l_reg


def torch_select_cross_entropy_loss(pred, label):
    """pysot / NanoTrack select_cross_entropy_loss (index tensors kept 1-D, see jaxtrack.losses.common)."""
    pred = pred.reshape(-1, 2)
    label = label.reshape(-1)

    def part(select):
        if select.numel() == 0:
            return 0
        return F.nll_loss(torch.index_select(pred, 0, select), torch.index_select(label, 0, select))

    pos = label.eq(1).nonzero().reshape(-1)
    neg = label.eq(0).nonzero().reshape(-1)
    return part(pos) * 0.5 + part(neg) * 0.5


def torch_pysot_loss(cls, loc, label_cls, label_loc, label_loc_weight):
    """pysot ModelBuilder.forward after the head: NCHW cls [B, 2K, S, S], loc [B, 4K, S, S]."""
    b, a2, h, w = cls.size()
    logp = F.log_softmax(cls.view(b, 2, a2 // 2, h, w).permute(0, 2, 3, 4, 1).contiguous(), dim=4)
    l_cls = torch_select_cross_entropy_loss(logp, label_cls)
    # weight_l1_loss
    b, _, sh, sw = loc.size()
    diff = (loc.view(b, 4, -1, sh, sw) - label_loc).abs().sum(dim=1).view(b, -1, sh, sw)
    l_loc = (diff * label_loc_weight).sum().div(b)
    return l_cls, l_loc


def torch_nanotrack_loss(cls, loc, label_cls, label_loc):
    """NanoTrack ModelBuilder.forward after the head: NCHW cls [B, 2, S, S], loc [B, 4, S, S]."""
    logp = F.log_softmax(cls.permute(0, 2, 3, 1).contiguous(), dim=3)
    l_cls = torch_select_cross_entropy_loss(logp, label_cls)
    # select_iou_loss + linear_iou
    pos = label_cls.reshape(-1).eq(1).nonzero().reshape(-1)
    pred = torch.index_select(loc.permute(0, 2, 3, 1).reshape(-1, 4), 0, pos)
    target = torch.index_select(label_loc.permute(0, 2, 3, 1).reshape(-1, 4), 0, pos)
    pl, pt, pr, pb = pred[:, 0], pred[:, 1], pred[:, 2], pred[:, 3]
    tl, tt, tr, tb = target[:, 0], target[:, 1], target[:, 2], target[:, 3]
    pred_area = (pl + pr) * (pt + pb)
    target_area = (tl + tr) * (tt + tb)
    w_i = torch.min(pl, tl) + torch.min(pr, tr)
    h_i = torch.min(pb, tb) + torch.min(pt, tt)
    inter = w_i * h_i
    union = target_area + pred_area - inter
    ious = (inter + 1.0) / (union + 1.0)
    return l_cls, (1 - ious).mean()


# ============================================================================ helpers


def _np(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


@pytest.fixture(scope="module")
def fcpp_targets():
    boxes = crafted_boxes(FCPP.instance_size)
    neg = np.array([False, False, False, False, False, False])
    t_pos = _np(losses.make_targets(FCPP, boxes, neg))
    t_neg = _np(losses.make_targets(FCPP, boxes, ~neg))
    return boxes, t_pos, t_neg


# ============================================================================ SiamFC++ targets


def test_siamfcpp_targets_match_video_analyst(fcpp_targets):
    boxes, t_pos, t_neg = fcpp_targets
    for negative, t in ((False, t_pos), (True, t_neg)):
        for n, box in enumerate(boxes):
            cls, ctr, gt = np_densebox_target(box, negative, FCPP.instance_size, FCPP.score_size, FCPP.total_stride)
            np.testing.assert_array_equal(t["cls"][n], cls, err_msg=f"box {n} negative={negative}")
            np.testing.assert_allclose(t["ctr"][n], ctr, rtol=1e-6, atol=1e-7)
            np.testing.assert_array_equal(t["box"][n], gt)
    # crafted cases cover: positives everywhere for the huge box, a single cell or none for the tiny one
    assert (t_pos["cls"][3] == 1).sum() > 200 and (t_pos["cls"][2] == 1).sum() <= 1
    assert (t_neg["cls"] == 1).sum() == 0
    # negative pairs keep the centre-ness target (video_analyst's DenseboxTarget leaves ctr_gt untouched)
    np.testing.assert_array_equal(t_neg["ctr"], t_pos["ctr"])


def test_siamfcpp_positive_cells_lie_in_the_box(fcpp_targets):
    from jaxtrack.models.heads import densebox_centers

    boxes, t_pos, _ = fcpp_targets
    centres = np.asarray(densebox_centers(FCPP.score_size, FCPP.instance_size, FCPP.total_stride))
    assert centres[0, 0].tolist() == [87.0, 87.0]
    for n, box in enumerate(boxes):
        p = centres[t_pos["cls"][n] == 1]
        assert np.all((p[:, 0] > box[0]) & (p[:, 0] < box[2]) & (p[:, 1] > box[1]) & (p[:, 1] < box[3]))


# ============================================================================ SiamRPN targets


@pytest.mark.parametrize("config", [RPNPP, RPN_ALEX, RPN_ALEX_TRAIN], ids=["r50", "alex287", "alex255"])
def test_siamrpn_targets_match_pysot_without_sampling(config):
    boxes = crafted_boxes(config.instance_size)
    k, s = config.num_anchors, config.score_size
    for negative in (False, True):
        t = _np(losses.make_targets(config, boxes, np.full(len(boxes), negative)))
        assert t["cls"].shape == (len(boxes), s, s, k) and t["loc"].shape == (len(boxes), s, s, 4 * k)
        for n, box in enumerate(boxes):
            cls, delta, weight, overlap = np_anchor_target(box, negative, config)
            np.testing.assert_array_equal(t["cls"][n], cls.transpose(1, 2, 0), err_msg=f"box {n} neg={negative}")
            np.testing.assert_allclose(t["overlap"][n], overlap.transpose(1, 2, 0), atol=2e-6)
            np.testing.assert_allclose(t["loc_weight"][n], weight.transpose(1, 2, 0), rtol=1e-6)
            np.testing.assert_allclose(
                t["loc"][n], delta.transpose(2, 3, 0, 1).reshape(s, s, 4 * k), rtol=1e-5, atol=1e-6
            )
        if not negative:
            assert (t["cls"][0] == 1).sum() > 0 and (t["cls"][2] == 1).sum() == 0  # centred box / tiny box


def test_siamrpn_negative_pair_window():
    """The 7x7 window sits on the cell nearest the box centre; off-centre boxes move it; all anchors."""
    config = RPNPP
    box = np.tile(np.array([[150.0, 60.0, 190.0, 100.0]], np.float32), (6, 1))  # centre (127 + 43, 127 - 47)
    t = _np(losses.make_targets(config, box, np.ones(6, bool)))
    ys, xs = np.nonzero((t["cls"][0] == 0).all(axis=-1))
    cx = 12 + math.ceil(43 / 8 + 0.5)
    cy = 12 + math.ceil(-47 / 8 + 0.5)
    assert set(xs.tolist()) == set(range(cx - 3, cx + 4)) and set(ys.tolist()) == set(range(cy - 3, cy + 4))
    assert (t["cls"][0] == 0).sum() == 49 * config.num_anchors and (t["cls"] == 1).sum() == 0


def test_siamrpn_sampling_invariants():
    config = RPNPP
    boxes = crafted_boxes(config.instance_size)
    n = len(boxes)
    for negative in (False, True):
        full = _np(losses.make_targets(config, boxes, np.full(n, negative)))
        t = _np(losses.make_targets(config, boxes, np.full(n, negative), key=jax.random.key(3)))
        for i in range(n):
            pos, neg = t["cls"][i] == 1, t["cls"][i] == 0
            cand_pos, cand_neg = full["cls"][i] == 1, full["cls"][i] == 0
            assert np.all(cand_pos[pos]) and np.all(cand_neg[neg])  # subsets of the candidates
            if negative:
                assert pos.sum() == 0 and neg.sum() == min(16, cand_neg.sum())
                assert np.all(t["loc_weight"][i] == 0)
                continue
            assert pos.sum() == min(16, cand_pos.sum()) and neg.sum() == min(48, cand_neg.sum())
            assert pos.sum() + neg.sum() <= 64
            assert np.all(t["overlap"][i][pos] > 0.6) and np.all(t["overlap"][i][neg] < 0.3)
            np.testing.assert_allclose(t["loc_weight"][i][pos], 1.0 / (pos.sum() + 1e-6), rtol=1e-6)
            assert np.all(t["loc_weight"][i][~pos] == 0)
    # every box has > 48 negative candidates: the sample depends on the key, and only on it
    t1 = _np(losses.make_targets(config, boxes, np.zeros(n, bool), key=jax.random.key(3)))
    t1_again = _np(losses.make_targets(config, boxes, np.zeros(n, bool), key=jax.random.key(3)))
    t2 = _np(losses.make_targets(config, boxes, np.zeros(n, bool), key=jax.random.key(4)))
    np.testing.assert_array_equal(t1["cls"], t1_again["cls"])
    assert all(not np.array_equal(t1["cls"][i] == 0, t2["cls"][i] == 0) for i in range(n))
    # fewer positives kept than candidates (pysot's own constants never truncate the <= 14 positives of a box)
    few = losses.siamrpn.TargetParams(pos_num=4, total_num=20)
    t = _np(losses.siamrpn.make_targets(config, boxes, np.zeros(n, bool), jax.random.key(3), params=few))
    full = _np(losses.make_targets(config, boxes, np.zeros(n, bool)))
    assert (full["cls"][0] == 1).sum() > 4
    for i in range(n):
        pos = t["cls"][i] == 1
        assert pos.sum() == min(4, (full["cls"][i] == 1).sum()) and (t["cls"][i] == 0).sum() == 16
        assert np.all(full["cls"][i][pos] == 1)
        np.testing.assert_allclose(t["loc_weight"][i][pos], 1.0 / (pos.sum() + 1e-6), rtol=1e-6)


def test_sample_mask_is_uniform():
    mask = jnp.array([True, False, True, True, False, True, True, True, False, True, True, True])  # 9 candidates
    keys = jax.random.split(jax.random.key(0), 3000)
    kept = np.asarray(jax.vmap(lambda k: losses.sample_mask(k, mask, 3))(keys))
    assert np.all(kept.sum(axis=1) == 3) and not kept[:, ~np.asarray(mask)].any()
    freq = kept[:, np.asarray(mask)].mean(axis=0)
    np.testing.assert_allclose(freq, 1 / 3, atol=0.04)
    np.testing.assert_array_equal(losses.sample_mask(None, mask, 3), mask)
    np.testing.assert_array_equal(losses.sample_mask(keys[0], mask, 20), mask)


def test_siamrpn_targets_decode_to_the_box():
    """Decoding the regression targets with the tracker's own anchors/decoder gives back the gt box (at every
    anchor: pysot computes the deltas everywhere, only the weights select the positives)."""
    from jaxtrack.tracking.postprocess import pysot_anchors, siamrpn_decode

    config = RPNPP
    boxes = crafted_boxes(config.instance_size)
    t = losses.make_targets(config, boxes, np.zeros(6, bool))
    anchors = pysot_anchors(config.anchor_stride, config.anchor_ratios, config.anchor_scales, config.score_size)
    k = config.num_anchors
    for i, box in enumerate(boxes):
        cls = jnp.zeros(t["loc"].shape[1:3] + (2 * k,))
        _, dec = siamrpn_decode(cls, t["loc"][i], anchors)
        dec = np.asarray(dec).reshape(k, config.score_size, config.score_size, 4).transpose(1, 2, 0, 3)
        want = [(box[0] + box[2]) / 2 - 127, (box[1] + box[3]) / 2 - 127, box[2] - box[0], box[3] - box[1]]
        np.testing.assert_allclose(dec, np.broadcast_to(want, dec.shape), rtol=1e-5, atol=2e-3)


# ============================================================================ NanoTrack targets


@pytest.mark.parametrize("config", [NANO2, NANO3], ids=["v2", "v3"])
def test_nanotrack_targets_match_point_target(config):
    boxes = crafted_boxes(config.instance_size)
    for negative in (False, True):
        t = _np(losses.make_targets(config, boxes, np.full(len(boxes), negative)))
        for n, box in enumerate(boxes):
            cls, delta = np_point_target(box, negative, config)
            np.testing.assert_array_equal(t["cls"][n], cls, err_msg=f"box {n} neg={negative}")
            np.testing.assert_allclose(t["loc"][n], delta.transpose(1, 2, 0), rtol=1e-6, atol=1e-4)
    assert (t["cls"] == 1).sum() == 0


def test_nanotrack_sampling_and_decoding():
    from jaxtrack.tracking.nanotrack import nanotrack_decode, nanotrack_points

    config = NANO2
    boxes = crafted_boxes(config.instance_size)
    n = len(boxes)
    for negative in (False, True):
        full = _np(losses.make_targets(config, boxes, np.full(n, negative)))
        t = _np(losses.make_targets(config, boxes, np.full(n, negative), key=jax.random.key(7)))
        for i in range(n):
            pos, neg = t["cls"][i] == 1, t["cls"][i] == 0
            assert np.all(full["cls"][i][pos] == 1) and np.all(full["cls"][i][neg] == 0)
            assert pos.sum() == min(16, (full["cls"][i] == 1).sum())
            assert neg.sum() == min(16 if negative else 48, (full["cls"][i] == 0).sum())
    # the point targets decode (with the tracker's decoder) to the gt box
    points = nanotrack_points(config.stride, config.score_size)
    full = _np(losses.make_targets(config, boxes, np.zeros(n, bool)))
    for i, box in enumerate(boxes):
        _, dec = nanotrack_decode(jnp.zeros((16, 16, 2)), full["loc"][i], points)
        want = [(box[0] + box[2]) / 2 - 127, (box[1] + box[3]) / 2 - 127, box[2] - box[0], box[3] - box[1]]
        np.testing.assert_allclose(np.asarray(dec), np.broadcast_to(want, dec.shape), rtol=1e-5, atol=1e-3)


# ============================================================================ loss values vs PyTorch


def _random_fcpp_raw(rng, b, s, targets):
    cls = rng.normal(0, 2, (b, s, s)).astype(np.float32)
    ctr = rng.normal(0, 2, (b, s, s)).astype(np.float32)
    gt = np.asarray(targets["box"])
    jitter = rng.normal(0, 8, (b, s, s, 4)).astype(np.float32)
    box = np.where(gt.any(-1, keepdims=True), gt, 150.0) + jitter
    box[0, 0, 0] = [200, 200, 100, 90]  # an inverted box
    return {"cls": cls, "ctr": ctr, "box": box}


def test_siamfcpp_loss_matches_video_analyst(fcpp_targets):
    boxes = fcpp_targets[0]
    rng = np.random.default_rng(0)
    negative = MIXED
    t = _np(losses.make_targets(FCPP, boxes, negative))
    raw = _random_fcpp_raw(rng, len(boxes), FCPP.score_size, t)
    total, metrics = losses.training_loss(FCPP, raw, t)
    b = len(boxes)
    th = lambda a, c: torch.from_numpy(np.array(a, copy=True).reshape(b, -1, c))
    ref = torch_siamfcpp_loss(
        th(raw["cls"], 1), th(raw["ctr"], 1), th(raw["box"], 4),
        th(t["cls"].astype(np.float32), 1), th(t["ctr"], 1), th(t["box"], 4),
    )
    for name, r in zip(("cls", "ctr", "reg"), ref):
        np.testing.assert_allclose(float(metrics[name]), float(r), rtol=2e-5, err_msg=name)
    np.testing.assert_allclose(float(total), float(ref[0] + ref[1] + 3.0 * ref[2]), rtol=2e-5)
    assert float(metrics["num_pos"]) == (t["cls"] == 1).sum()


@pytest.mark.parametrize("config", [RPNPP, RPN_ALEX_TRAIN], ids=["r50", "alex255"])
def test_siamrpn_loss_matches_pysot(config):
    rng = np.random.default_rng(1)
    boxes = crafted_boxes(config.instance_size)
    negative = MIXED
    k, s, b = config.num_anchors, config.score_size, len(boxes)
    t = _np(losses.make_targets(config, boxes, negative))
    raw = {
        "cls": rng.normal(0, 2, (b, s, s, 2 * k)).astype(np.float32),
        "loc": rng.normal(0, 0.5, (b, s, s, 4 * k)).astype(np.float32),
    }
    total, metrics = losses.training_loss(config, raw, t)
    # pysot-layout labels from the NumPy re-statement, raw outputs converted to NCHW
    ref_t = [np_anchor_target(box, neg, config) for box, neg in zip(boxes, negative)]
    label_cls = torch.from_numpy(np.stack([r[0] for r in ref_t]))
    label_loc = torch.from_numpy(np.stack([r[1] for r in ref_t]))
    label_w = torch.from_numpy(np.stack([r[2] for r in ref_t]))
    nchw = lambda a: torch.from_numpy(np.array(a, copy=True)).permute(0, 3, 1, 2).contiguous()
    l_cls, l_loc = torch_pysot_loss(nchw(raw["cls"]), nchw(raw["loc"]), label_cls, label_loc, label_w)
    np.testing.assert_allclose(float(metrics["cls"]), float(l_cls), rtol=2e-5)
    np.testing.assert_allclose(float(metrics["reg"]), float(l_loc), rtol=2e-5)
    np.testing.assert_allclose(float(total), float(l_cls + 1.2 * l_loc), rtol=2e-5)


@pytest.mark.parametrize("config", [NANO2, NANO3], ids=["v2", "v3"])
def test_nanotrack_loss_matches_reference(config):
    rng = np.random.default_rng(2)
    boxes = crafted_boxes(config.instance_size)
    negative = MIXED
    s, b = config.score_size, len(boxes)
    t = _np(losses.make_targets(config, boxes, negative))
    raw = {
        "cls": rng.normal(0, 2, (b, s, s, 2)).astype(np.float32),
        "loc": np.exp(rng.normal(3.5, 0.7, (b, s, s, 4))).astype(np.float32),
    }
    total, metrics = losses.training_loss(config, raw, t)
    ref_t = [np_point_target(box, neg, config) for box, neg in zip(boxes, negative)]
    label_cls = torch.from_numpy(np.stack([r[0] for r in ref_t]))
    label_loc = torch.from_numpy(np.stack([r[1] for r in ref_t]))
    nchw = lambda a: torch.from_numpy(np.array(a, copy=True)).permute(0, 3, 1, 2).contiguous()
    l_cls, l_loc = torch_nanotrack_loss(nchw(raw["cls"]), nchw(raw["loc"]), label_cls, label_loc)
    np.testing.assert_allclose(float(metrics["cls"]), float(l_cls), rtol=2e-5)
    np.testing.assert_allclose(float(metrics["reg"]), float(l_loc), rtol=2e-5)
    np.testing.assert_allclose(float(total), float(l_cls + l_loc), rtol=2e-5)


# ============================================================================ gradients, perfect vs wrong


def _perfect_and_wrong(config, t):
    """Raw outputs that reproduce the targets exactly, and ones that get them all wrong."""
    fam = config.family
    if fam == "siamfcpp":
        pos = t["cls"] == 1
        c = np.clip(t["ctr"], 1e-4, 1 - 1e-4)
        perfect = {"cls": np.where(pos, 15.0, -15.0), "ctr": np.log(c / (1 - c)), "box": np.where(pos[..., None], t["box"], 100.0)}
        wrong = {"cls": -perfect["cls"], "ctr": -perfect["ctr"], "box": perfect["box"] + np.array([30.0, -20, 25, 40])}
    elif fam == "siamrpn":
        fg = np.where(t["cls"] == 1, 15.0, -15.0)
        perfect = {"cls": np.concatenate([-fg, fg], axis=-1), "loc": t["loc"]}
        wrong = {"cls": -perfect["cls"], "loc": t["loc"] + 0.5}
    else:
        fg = np.where(t["cls"] == 1, 15.0, -15.0)[..., None]
        perfect = {"cls": np.concatenate([-fg, fg], axis=-1), "loc": np.maximum(t["loc"], 1.0)}
        wrong = {"cls": -perfect["cls"], "loc": perfect["loc"] * np.array([2.0, 0.3, 1.5, 0.5])}
    cast = lambda d: {k: np.asarray(v, np.float32) for k, v in d.items()}
    return cast(perfect), cast(wrong)


CONFIGS = [FCPP, RPNPP, NANO2]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.family)
def test_perfect_prediction_beats_wrong_and_gradients_are_finite(config):
    boxes = crafted_boxes(config.instance_size)
    t = _np(losses.make_targets(config, boxes, MIXED, key=jax.random.key(0)))
    perfect, wrong = _perfect_and_wrong(config, t)
    lp, mp = losses.training_loss(config, perfect, t)
    lw, _ = losses.training_loss(config, wrong, t)
    assert float(lp) < 1e-3 < float(lw), (float(lp), float(lw))
    if "iou" in mp:
        assert float(mp["iou"]) > 0.999
    # gradients: finite for random, perfect and saturated raw outputs
    rng = np.random.default_rng(3)
    random = {k: (v + rng.normal(0, 3, v.shape)).astype(np.float32) for k, v in wrong.items()}
    extreme = {k: np.where(rng.random(v.shape) < 0.5, 1e4, -1e4).astype(np.float32) for k, v in wrong.items()}
    if config.family == "nanotrack":
        random["loc"], extreme["loc"] = np.abs(random["loc"]), np.abs(extreme["loc"])
    grad_fn = jax.jit(jax.grad(lambda r: losses.training_loss(config, r, t)[0]))
    for raw in (perfect, wrong, random, extreme):
        g = grad_fn(raw)
        for k, v in g.items():
            assert np.all(np.isfinite(np.asarray(v))), (config.family, k)
    g = grad_fn(random)
    assert all(float(jnp.abs(v).sum()) > 0 for v in g.values())


def test_empty_batches_give_finite_zero_terms():
    for config in CONFIGS:
        boxes = crafted_boxes(config.instance_size)
        t = _np(losses.make_targets(config, boxes, np.ones(6, bool)))
        _, wrong = _perfect_and_wrong(config, t)
        total, metrics = losses.training_loss(config, wrong, t)
        assert np.isfinite(float(total)) and float(metrics["reg"]) == 0.0 and float(metrics["num_pos"]) == 0


# ============================================================================ jit / vmap / API


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.family)
def test_jit_and_vmap(config):
    boxes = crafted_boxes(config.instance_size)
    negative = MIXED
    key = jax.random.key(5)
    eager = _np(losses.make_targets(config, boxes, negative, key))
    jitted = _np(jax.jit(lambda b, n, k: losses.make_targets(config, b, n, k))(boxes, negative, key))
    for k in eager:
        np.testing.assert_allclose(eager[k], jitted[k], rtol=1e-6)
    rng = np.random.default_rng(4)
    _, wrong = _perfect_and_wrong(config, eager)
    raw = {k: (v + rng.normal(0, 1, v.shape)).astype(np.float32) for k, v in wrong.items()}
    if config.family == "nanotrack":
        raw["loc"] = np.abs(raw["loc"]) + 1
    # vmap over two groups of three crops = the loss of each group alone
    split = lambda tree: jax.tree_util.tree_map(lambda a: np.asarray(a).reshape((2, 3) + a.shape[1:]), tree)
    f = jax.jit(jax.vmap(lambda r, t: losses.training_loss(config, r, t)[0]))
    got = np.asarray(f(split(raw), split(eager)))
    for g in range(2):
        part_raw = {k: v[3 * g : 3 * g + 3] for k, v in raw.items()}
        part_t = {k: v[3 * g : 3 * g + 3] for k, v in eager.items()}
        np.testing.assert_allclose(got[g], float(losses.training_loss(config, part_raw, part_t)[0]), rtol=1e-5)
    # vmapped target making (one crop per call) = batched
    vm = _np(jax.vmap(lambda b, n: losses.make_targets(config, b[None], n[None]))(boxes, negative))
    ref = _np(losses.make_targets(config, boxes, negative))
    for k in ref:
        np.testing.assert_allclose(vm[k][:, 0], ref[k], rtol=1e-6, atol=1e-7)


def test_api_weights_and_dispatch(data_dir):
    assert losses.LOSS_WEIGHTS["siamfcpp"] == losses.siamfcpp.LossWeights(1.0, 1.0, 3.0, 0.25, 2.0)
    assert losses.LOSS_WEIGHTS["siamrpn"] == losses.siamrpn.LossWeights(cls=1.0, reg=1.2)
    import yaml

    for v in ("v2", "v3"):
        cfg = yaml.safe_load((data_dir / "weights" / "nanotrack" / f"config{v}.yaml").read_text())
        w = losses.LOSS_WEIGHTS["nanotrack"]
        assert (w.cls, w.reg) == (cfg["TRAIN"]["CLS_WEIGHT"], cfg["TRAIN"]["LOC_WEIGHT"])
        assert cfg["TRAIN"]["OUTPUT_SIZE"] == get_config(f"nanotrack_{v}").score_size
    # custom weights are honoured
    boxes = crafted_boxes(NANO2.instance_size)
    t = losses.make_targets(NANO2, boxes, MIXED)
    _, wrong = _perfect_and_wrong(NANO2, _np(t))
    total, m = losses.training_loss(NANO2, wrong, t, losses.nanotrack.LossWeights(cls=2.0, reg=0.5))
    np.testing.assert_allclose(float(total), 2 * float(m["cls"]) + 0.5 * float(m["reg"]), rtol=1e-6)

    class Bogus:
        family = "siamfc"
        name = "bogus"

    with pytest.raises(ValueError, match="no tracker family 'siamfc' registered"):
        losses.make_targets(Bogus(), boxes, MIXED)


def test_target_shapes_match_tracker_heads():
    """Targets have the shapes of the raw head outputs of the real trackers (shapes only, no compute)."""
    from jaxtrack import tracking

    for name in ("siamfcpp_alexnet", "nanotrack_v2"):
        tr = tracking.create(name)
        c = tr.config
        z = jax.ShapeDtypeStruct((2, c.exemplar_size, c.exemplar_size, 3), jnp.float32)
        x = jax.ShapeDtypeStruct((2, c.instance_size, c.instance_size, 3), jnp.float32)
        variables = jax.eval_shape(tr.model.init, jax.random.key(0), z, x)
        raw = jax.eval_shape(lambda v, z, x, tr=tr: tr.head(v, tr.embed_template(v, z), x), variables, z, x)
        t = losses.make_targets(c, crafted_boxes(c.instance_size)[:2], np.array([False, True]))
        assert t["cls"].shape == raw["cls"].shape[: t["cls"].ndim]
        key = "box" if c.family == "siamfcpp" else "loc"
        assert t[key].shape == raw[key].shape
        out = jax.eval_shape(lambda r, c=c, t=t: losses.training_loss(c, r, t), raw)
        assert out[0].shape == ()

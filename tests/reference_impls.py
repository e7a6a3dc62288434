"""Reference re-statements (test-only): pysot / video_analyst tracker code restated line by line in NumPy/OpenCV.

Crops: pysot ``SiameseTracker.get_subwindow`` and video_analyst ``get_subwindow_tracking``. Post-processing:
pysot ``Anchors`` + ``SiamRPNTracker.track`` and video_analyst ``SiamFCppTracker.track`` after the model.
They are the independent references of ``test_crop``, ``test_postprocess`` and ``test_reference_trackers``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def pysot_get_subwindow(im, pos, model_sz, original_sz, avg_chans):
    """STVIR/pysot ``SiameseTracker.get_subwindow`` (without the tensor conversion), line by line."""
    sz = original_sz
    im_sz = im.shape
    c = (original_sz + 1) / 2
    context_xmin = np.floor(pos[0] - c + 0.5)
    context_xmax = context_xmin + sz - 1
    context_ymin = np.floor(pos[1] - c + 0.5)
    context_ymax = context_ymin + sz - 1
    left_pad = int(max(0.0, -context_xmin))
    top_pad = int(max(0.0, -context_ymin))
    right_pad = int(max(0.0, context_xmax - im_sz[1] + 1))
    bottom_pad = int(max(0.0, context_ymax - im_sz[0] + 1))
    context_xmin += left_pad
    context_xmax += left_pad
    context_ymin += top_pad
    context_ymax += top_pad
    r, c, k = im.shape
    if any([top_pad, bottom_pad, left_pad, right_pad]):
        te_im = np.zeros((r + top_pad + bottom_pad, c + left_pad + right_pad, k), np.uint8)
        te_im[top_pad : top_pad + r, left_pad : left_pad + c, :] = im
        if top_pad:
            te_im[0:top_pad, left_pad : left_pad + c, :] = avg_chans
        if bottom_pad:
            te_im[r + top_pad :, left_pad : left_pad + c, :] = avg_chans
        if left_pad:
            te_im[:, 0:left_pad, :] = avg_chans
        if right_pad:
            te_im[:, c + left_pad :, :] = avg_chans
        patch = te_im[int(context_ymin) : int(context_ymax + 1), int(context_xmin) : int(context_xmax + 1), :]
    else:
        patch = im[int(context_ymin) : int(context_ymax + 1), int(context_xmin) : int(context_xmax + 1), :]
    if not np.array_equal(model_sz, original_sz):
        patch = cv2.resize(patch, (model_sz, model_sz))
    return patch.astype(np.float32)


def va_get_subwindow_tracking(im, pos, model_sz, original_sz, avg_chans):
    """video_analyst ``get_subwindow_tracking`` (``cxywh2xyxy`` casts to float32), line by line."""
    box = np.array([pos[0], pos[1], original_sz, original_sz], dtype=np.float32)
    xyxy = np.array(
        [box[0] - (box[2] - 1) / 2, box[1] - (box[3] - 1) / 2, box[0] + (box[2] - 1) / 2, box[1] + (box[3] - 1) / 2],
        dtype=np.float32,
    )
    m13, m23 = xyxy[0], xyxy[1]
    m11 = (xyxy[2] - m13) / (model_sz - 1)
    m22 = (xyxy[3] - m23) / (model_sz - 1)
    mat = np.array([m11, 0, m13, 0, m22, m23]).reshape(2, 3)
    patch = cv2.warpAffine(
        im,
        mat,
        (model_sz, model_sz),
        flags=(cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP),
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=tuple(map(int, avg_chans)),
    )
    return patch.astype(np.float32)


def ref_pysot_anchor(stride, ratios, scales, score_size):
    """pysot ``Anchors.generate_anchors`` + ``SiamRPNTracker.generate_anchor``."""
    anchor_num = len(ratios) * len(scales)
    anchors = np.zeros((anchor_num, 4), dtype=np.float32)
    size = stride * stride
    count = 0
    for r in ratios:
        ws = int(math.sqrt(size * 1.0 / r))
        hs = int(ws * r)
        for s in scales:
            w, h = ws * s, hs * s
            anchors[count][:] = [-w * 0.5, -h * 0.5, w * 0.5, h * 0.5][:]
            count += 1
    x1, y1, x2, y2 = anchors[:, 0], anchors[:, 1], anchors[:, 2], anchors[:, 3]
    anchor = np.stack([(x1 + x2) * 0.5, (y1 + y2) * 0.5, x2 - x1, y2 - y1], 1)
    anchor = np.tile(anchor, score_size * score_size).reshape((-1, 4))
    ori = -(score_size // 2) * stride
    xlist = [ori + stride * dx for dx in range(score_size)]
    ylist = [ori + stride * dy for dy in range(score_size)]
    xx, yy = np.meshgrid(xlist, ylist)
    xx = np.tile(xx.flatten(), (anchor_num, 1)).flatten()
    yy = np.tile(yy.flatten(), (anchor_num, 1)).flatten()
    anchor[:, 0], anchor[:, 1] = xx.astype(np.float32), yy.astype(np.float32)
    return anchor


def ref_pysot_track(cls_nchw, loc_nchw, anchors, window, center_pos, size, img_hw, k_pen, wi, lr_cfg):
    """pysot ``SiamRPNTracker.track`` after ``model.track`` (torch permute/view as numpy transpose/reshape)."""
    w_z = size[0] + 0.5 * np.sum(size)
    h_z = size[1] + 0.5 * np.sum(size)
    s_z = np.sqrt(w_z * h_z)
    scale_z = 127 / s_z
    # _convert_score
    score = cls_nchw.transpose(1, 2, 3, 0).reshape(2, -1).transpose(1, 0).astype(np.float64)
    e = np.exp(score - score.max(axis=1, keepdims=True))
    score = (e / e.sum(axis=1, keepdims=True))[:, 1]
    # _convert_bbox
    delta = loc_nchw.transpose(1, 2, 3, 0).reshape(4, -1).astype(np.float64)
    delta[0, :] = delta[0, :] * anchors[:, 2] + anchors[:, 0]
    delta[1, :] = delta[1, :] * anchors[:, 3] + anchors[:, 1]
    delta[2, :] = np.exp(delta[2, :]) * anchors[:, 2]
    delta[3, :] = np.exp(delta[3, :]) * anchors[:, 3]
    pred_bbox = delta

    def change(r):
        return np.maximum(r, 1.0 / r)

    def sz(w, h):
        pad = (w + h) * 0.5
        return np.sqrt((w + pad) * (h + pad))

    s_c = change(sz(pred_bbox[2, :], pred_bbox[3, :]) / (sz(size[0] * scale_z, size[1] * scale_z)))
    r_c = change((size[0] / size[1]) / (pred_bbox[2, :] / pred_bbox[3, :]))
    penalty = np.exp(-(r_c * s_c - 1) * k_pen)
    pscore = penalty * score
    pscore = pscore * (1 - wi) + window * wi
    best_idx = np.argmax(pscore)
    bbox = pred_bbox[:, best_idx] / scale_z
    lr = penalty[best_idx] * score[best_idx] * lr_cfg
    cx = bbox[0] + center_pos[0]
    cy = bbox[1] + center_pos[1]
    width = size[0] * (1 - lr) + bbox[2] * lr
    height = size[1] * (1 - lr) + bbox[3] * lr
    # _bbox_clip
    cx = max(0, min(cx, img_hw[1]))
    cy = max(0, min(cy, img_hw[0]))
    width = max(10, min(width, img_hw[1]))
    height = max(10, min(height, img_hw[0]))
    out = [cx - width / 2, cy - height / 2, width, height]
    return dict(best_idx=best_idx, pscore=pscore, center=np.array([cx, cy]), size=np.array([width, height]),
                bbox=np.array(out), best_score=score[best_idx], scale_z=scale_z)


def ref_siamfcpp_track(score, box, window, target_pos, target_sz, scale_x, x_size, im_hw, k_pen, wi, test_lr):
    """video_analyst ``SiamFCppTracker.track`` after the model: xyxy2cxywh, _postprocess_score/_box,
    _restrict_box, cxywh2xywh."""
    bbox = np.array(box, dtype=np.float32)  # xyxy2cxywh
    box_wh = np.concatenate(
        [(bbox[..., [0]] + bbox[..., [2]]) / 2, (bbox[..., [1]] + bbox[..., [3]]) / 2,
         bbox[..., [2]] - bbox[..., [0]] + 1, bbox[..., [3]] - bbox[..., [1]] + 1], axis=-1)

    def change(r):
        return np.maximum(r, 1.0 / r)

    def sz(w, h):
        pad = (w + h) * 0.5
        return np.sqrt((w + pad) * (h + pad))

    def sz_wh(wh):
        pad = (wh[0] + wh[1]) * 0.5
        return np.sqrt((wh[0] + pad) * (wh[1] + pad))

    target_sz_in_crop = target_sz * scale_x
    s_c = change(sz(box_wh[:, 2], box_wh[:, 3]) / (sz_wh(target_sz_in_crop)))
    r_c = change((target_sz_in_crop[0] / target_sz_in_crop[1]) / (box_wh[:, 2] / box_wh[:, 3]))
    penalty = np.exp(-(r_c * s_c - 1) * k_pen)
    pscore = penalty * score
    pscore = pscore * (1 - wi) + window * wi
    best = np.argmax(pscore)
    pred_in_crop = box_wh[best, :] / np.float32(scale_x)
    lr = penalty[best] * score[best] * test_lr
    res_x = pred_in_crop[0] + target_pos[0] - (x_size // 2) / scale_x
    res_y = pred_in_crop[1] + target_pos[1] - (x_size // 2) / scale_x
    res_w = target_sz[0] * (1 - lr) + pred_in_crop[2] * lr
    res_h = target_sz[1] * (1 - lr) + pred_in_crop[3] * lr
    pos = np.array([res_x, res_y], np.float64)
    siz = np.array([res_w, res_h], np.float64)
    pos[0] = max(0, min(im_hw[1], pos[0]))
    pos[1] = max(0, min(im_hw[0], pos[1]))
    siz[0] = max(10, min(im_hw[1], siz[0]))
    siz[1] = max(10, min(im_hw[0], siz[1]))
    rect = np.array([pos[0] - (siz[0] - 1) / 2, pos[1] - (siz[1] - 1) / 2, siz[0], siz[1]])
    return dict(best_idx=best, pscore=pscore, center=pos, size=siz, bbox=rect, best_score=score[best])

"""PyTorch re-statements of the reference tracker networks (test-only).

Module / attribute names follow pysot (STVIR/pysot ``pysot/models``) and video_analyst
(MegviiDetection/video_analyst ``videoanalyst/model``) exactly, so that ``state_dict()`` keys have the same
schema as the reference checkpoints (see ``trackers.md`` §1.6 / §2.2). Used to check the Flax models
numerically and to produce synthetic checkpoints for converter tests.

Builders:

* :func:`siamfcpp_alexnet` -> :class:`SiamTrack` (``feature(z)``, ``track(x, c_z_k, r_z_k)``); ``width_mult``
  scales every channel count as ``SiamFCppAlexNet(width_mult=...)`` does (0.25: the ``siamfcpp_tiny`` network)
* :func:`siamrpn_r50_l234` -> :class:`ModelBuilder` (``template(z)``, ``track(x)``)
* :func:`siamrpn_alex` -> :class:`ModelBuilder`
* :func:`randomize_` -> random weights and calibrated, perturbed BN running statistics.

Weights: :func:`torch_to_flax` (twin state dict -> Flax variables) and its inverse :func:`load_flax_variables_`
(Flax variables -> the twin, in place), so both sides can run the same weights from either end.

Attack objective (for comparing attack cost with the JAX side): :func:`siamfcpp_dense` / :func:`siamrpn_dense`
decode the raw outputs to per-cell ``scores [N]`` and ``boxes [N, 4]`` (``cx, cy, w, h`` relative to the crop
centre) exactly as the trackers' ``dense_predictions`` do, and :func:`dua_loss` restates
``jaxtrack.attacks.dua_loss`` (IoU labels from the clean boxes, balanced BCE + mean ``1 - IoU`` of the positives).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
import numpy as np

# --------------------------------------------------------------------------------------------------------------
# shared op


def xcorr_depthwise(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Grouped-conv depthwise correlation with one group per (sample, channel), as both references do."""
    b, c = kernel.shape[:2]
    out = F.conv2d(x.reshape(1, b * c, x.shape[2], x.shape[3]), kernel.reshape(b * c, 1, *kernel.shape[2:]), groups=b * c)
    return out.reshape(b, c, out.shape[2], out.shape[3])


# --------------------------------------------------------------------------------------------------------------
# video_analyst (SiamFC++)


class conv_bn_relu(nn.Module):  # noqa: N801  (reference name)
    def __init__(self, cin, cout, stride=1, kszie=3, pad=0, has_bn=True, has_relu=True, bias=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size=kszie, stride=stride, padding=pad, bias=bias)
        self.bn = nn.BatchNorm2d(cout) if has_bn else None
        self.relu = nn.ReLU() if has_relu else None

    def forward(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.relu is not None:
            x = self.relu(x)
        return x


def scaled_channels(channels: int, width_mult: float) -> int:
    """``jaxtrack.models.siamfcpp.scaled_channels``: ``channels * width_mult`` rounded, at least 8."""
    return channels if width_mult == 1.0 else max(8, int(round(channels * width_mult)))


class AlexNetBN(nn.Module):
    def __init__(self, width_mult: float = 1.0):
        super().__init__()
        c = [3] + [scaled_channels(n, width_mult) for n in (96, 256, 384, 384, 256)]
        self.conv1 = conv_bn_relu(c[0], c[1], stride=2, kszie=11, pad=0)
        self.pool1 = nn.MaxPool2d(3, 2, 0, ceil_mode=True)
        self.conv2 = conv_bn_relu(c[1], c[2], 1, 5, 0)
        self.pool2 = nn.MaxPool2d(3, 2, 0, ceil_mode=True)
        self.conv3 = conv_bn_relu(c[2], c[3], 1, 3, 0)
        self.conv4 = conv_bn_relu(c[3], c[4], 1, 3, 0)
        self.conv5 = conv_bn_relu(c[4], c[5], 1, 3, 0, has_relu=False)

    def forward(self, x):
        x = self.pool1(self.conv1(x))
        x = self.pool2(self.conv2(x))
        return self.conv5(self.conv4(self.conv3(x)))


class DenseboxHead(nn.Module):
    def __init__(self, total_stride=8, num_conv3x3=3, head_conv_bn=(False, False, True), head_width=256):
        super().__init__()
        self.total_stride = total_stride
        self.num_conv3x3 = num_conv3x3
        self.bi = nn.Parameter(torch.tensor(0.0))
        self.si = nn.Parameter(torch.tensor(1.0))
        for i in range(num_conv3x3):
            setattr(self, f"cls_p5_conv{i + 1}", conv_bn_relu(head_width, head_width, 1, 3, 0, has_bn=head_conv_bn[i]))
            setattr(self, f"bbox_p5_conv{i + 1}", conv_bn_relu(head_width, head_width, 1, 3, 0, has_bn=head_conv_bn[i]))
        self.cls_score_p5 = conv_bn_relu(head_width, 1, 1, 1, 0, has_relu=False)
        self.ctr_score_p5 = conv_bn_relu(head_width, 1, 1, 1, 0, has_relu=False)
        self.bbox_offsets_p5 = conv_bn_relu(head_width, 4, 1, 1, 0, has_relu=False)

    def forward(self, c_out, r_out, x_size):
        cls, bbox = c_out, r_out
        for i in range(self.num_conv3x3):
            cls = getattr(self, f"cls_p5_conv{i + 1}")(cls)
            bbox = getattr(self, f"bbox_p5_conv{i + 1}")(bbox)
        b = cls.shape[0]
        cls_score = self.cls_score_p5(cls).permute(0, 2, 3, 1).reshape(b, -1, 1)
        ctr_score = self.ctr_score_p5(cls).permute(0, 2, 3, 1).reshape(b, -1, 1)
        offsets = torch.exp(self.si * self.bbox_offsets_p5(bbox) + self.bi) * self.total_stride
        # centre grid: (x, y) per cell, flattened row-major (x fastest)
        n = offsets.shape[-1]
        score_offset = (x_size - 1 - (n - 1) * self.total_stride) // 2
        ii, jj = torch.meshgrid(torch.arange(n, dtype=torch.float32), torch.arange(n, dtype=torch.float32), indexing="ij")
        xy = score_offset + torch.stack([jj, ii], -1).reshape(1, -1, 2) * self.total_stride
        off = offsets.permute(0, 2, 3, 1).reshape(b, -1, 4)
        bbox = torch.cat([xy - off[:, :, :2], xy + off[:, :, 2:]], 2)
        return cls_score, ctr_score, bbox


class SiamTrack(nn.Module):
    def __init__(self, backbone, head, head_width=256):
        super().__init__()
        self.basemodel = backbone
        self.head = head
        self.r_z_k = conv_bn_relu(head_width, head_width, 1, 3, 0, has_relu=False)
        self.c_z_k = conv_bn_relu(head_width, head_width, 1, 3, 0, has_relu=False)
        self.r_x = conv_bn_relu(head_width, head_width, 1, 3, 0, has_relu=False)
        self.c_x = conv_bn_relu(head_width, head_width, 1, 3, 0, has_relu=False)

    def feature(self, z):
        f_z = self.basemodel(z)
        return [self.c_z_k(f_z), self.r_z_k(f_z)]

    def track(self, x, c_z_k, r_z_k):
        f_x = self.basemodel(x)
        c_out = xcorr_depthwise(self.c_x(f_x), c_z_k)
        r_out = xcorr_depthwise(self.r_x(f_x), r_z_k)
        return self.head(c_out, r_out, x.shape[-1])

    def forward(self, z, x):
        return self.track(x, *self.feature(z))


def siamfcpp_alexnet(width_mult: float = 1.0) -> SiamTrack:
    """video_analyst's SiamFC++ AlexNet; ``width_mult`` != 1 scales every channel count (``siamfcpp_tiny``: 0.25)."""
    width = scaled_channels(256, width_mult)
    return SiamTrack(AlexNetBN(width_mult), DenseboxHead(head_width=width), head_width=width)


# --------------------------------------------------------------------------------------------------------------
# pysot (SiamRPN / SiamRPN++)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, dilation=1):
        super().__init__()
        padding = 2 - stride
        if downsample is not None and dilation > 1:
            dilation = dilation // 2
            padding = dilation
        if dilation > 1:
            padding = dilation
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=padding, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class ResNet(nn.Module):
    def __init__(self, layers=(3, 4, 6, 3), used_layers=(2, 3, 4)):
        super().__init__()
        self.inplanes = 64
        self.used_layers = list(used_layers)
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=0, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=1, dilation=2) if 3 in used_layers else nn.Identity()
        self.layer4 = self._make_layer(512, layers[3], stride=1, dilation=4) if 4 in used_layers else nn.Identity()

    def _make_layer(self, planes, blocks, stride=1, dilation=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            if stride == 1 and dilation == 1:
                ds_conv = nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False)
            else:
                dd, pad = (dilation // 2, dilation // 2) if dilation > 1 else (1, 0)
                ds_conv = nn.Conv2d(self.inplanes, planes * 4, 3, stride=stride, padding=pad, dilation=dd, bias=False)
            downsample = nn.Sequential(ds_conv, nn.BatchNorm2d(planes * 4))
        blocks_ = [Bottleneck(self.inplanes, planes, stride, downsample, dilation)]
        self.inplanes = planes * 4
        blocks_ += [Bottleneck(self.inplanes, planes, dilation=dilation) for _ in range(1, blocks)]
        return nn.Sequential(*blocks_)

    def forward(self, x):
        x_ = self.relu(self.bn1(self.conv1(x)))
        p1 = self.layer1(self.maxpool(x_))
        p2 = self.layer2(p1)
        p3 = self.layer3(p2)
        p4 = self.layer4(p3)
        out = [[x_, p1, p2, p3, p4][i] for i in self.used_layers]
        return out[0] if len(out) == 1 else out


class AdjustLayer(nn.Module):
    def __init__(self, cin, cout, center_size=7):
        super().__init__()
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.center_size = center_size

    def forward(self, x):
        x = self.downsample(x)
        if x.size(3) < 20:
            left = (x.size(3) - self.center_size) // 2
            x = x[:, :, left : left + self.center_size, left : left + self.center_size]
        return x


class AdjustAllLayer(nn.Module):
    def __init__(self, in_channels, out_channels, center_size=7):
        super().__init__()
        self.num = len(out_channels)
        if self.num == 1:
            self.downsample = AdjustLayer(in_channels[0], out_channels[0], center_size)
        else:
            for i in range(self.num):
                self.add_module(f"downsample{i + 2}", AdjustLayer(in_channels[i], out_channels[i], center_size))

    def forward(self, features):
        if self.num == 1:
            return self.downsample(features)
        return [getattr(self, f"downsample{i + 2}")(f) for i, f in enumerate(features)]


class DepthwiseXCorr(nn.Module):
    def __init__(self, cin, hidden, cout, kernel_size=3):
        super().__init__()
        self.conv_kernel = nn.Sequential(nn.Conv2d(cin, hidden, kernel_size, bias=False), nn.BatchNorm2d(hidden), nn.ReLU())
        self.conv_search = nn.Sequential(nn.Conv2d(cin, hidden, kernel_size, bias=False), nn.BatchNorm2d(hidden), nn.ReLU())
        self.head = nn.Sequential(
            nn.Conv2d(hidden, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(), nn.Conv2d(hidden, cout, 1)
        )

    def forward(self, kernel, search):
        return self.head(xcorr_depthwise(self.conv_search(search), self.conv_kernel(kernel)))


class DepthwiseRPN(nn.Module):
    def __init__(self, anchor_num=5, in_channels=256, out_channels=256):
        super().__init__()
        self.cls = DepthwiseXCorr(in_channels, out_channels, 2 * anchor_num)
        self.loc = DepthwiseXCorr(in_channels, out_channels, 4 * anchor_num)

    def forward(self, z_f, x_f):
        return self.cls(z_f, x_f), self.loc(z_f, x_f)


class MultiRPN(nn.Module):
    def __init__(self, anchor_num, in_channels, weighted=False):
        super().__init__()
        self.weighted = weighted
        for i, c in enumerate(in_channels):
            self.add_module(f"rpn{i + 2}", DepthwiseRPN(anchor_num, c, c))
        if weighted:
            self.cls_weight = nn.Parameter(torch.ones(len(in_channels)))
            self.loc_weight = nn.Parameter(torch.ones(len(in_channels)))

    def forward(self, z_fs, x_fs):
        outs = [getattr(self, f"rpn{i + 2}")(z, x) for i, (z, x) in enumerate(zip(z_fs, x_fs))]
        cls = [o[0] for o in outs]
        loc = [o[1] for o in outs]
        if self.weighted:
            cw = F.softmax(self.cls_weight, 0)
            lw = F.softmax(self.loc_weight, 0)
            return sum(c * w for c, w in zip(cls, cw)), sum(l_ * w for l_, w in zip(loc, lw))
        return sum(cls) / len(cls), sum(loc) / len(loc)


class AlexNetLegacy(nn.Module):
    def __init__(self, width_mult=1.0):
        super().__init__()
        c = [3] + [int(v * width_mult) for v in (96, 256, 384, 384, 256)]
        self.features = nn.Sequential(
            nn.Conv2d(c[0], c[1], 11, stride=2),
            nn.BatchNorm2d(c[1]),
            nn.MaxPool2d(3, 2),
            nn.ReLU(),
            nn.Conv2d(c[1], c[2], 5),
            nn.BatchNorm2d(c[2]),
            nn.MaxPool2d(3, 2),
            nn.ReLU(),
            nn.Conv2d(c[2], c[3], 3),
            nn.BatchNorm2d(c[3]),
            nn.ReLU(),
            nn.Conv2d(c[3], c[4], 3),
            nn.BatchNorm2d(c[4]),
            nn.ReLU(),
            nn.Conv2d(c[4], c[5], 3),
            nn.BatchNorm2d(c[5]),
        )

    def forward(self, x):
        return self.features(x)


class ModelBuilder(nn.Module):
    """pysot ModelBuilder without the training / mask parts; ``neck`` is optional as in pysot."""

    def __init__(self, backbone, rpn_head, neck=None):
        super().__init__()
        self.backbone = backbone
        if neck is not None:
            self.neck = neck
        self.rpn_head = rpn_head

    def _features(self, img):
        f = self.backbone(img)
        return self.neck(f) if hasattr(self, "neck") else f

    def template(self, z):
        self.zf = self._features(z)
        return self.zf

    def track(self, x):
        cls, loc = self.rpn_head(self.zf, self._features(x))
        return {"cls": cls, "loc": loc}

    def forward(self, z, x):
        self.template(z)
        return self.track(x)


def siamrpn_r50_l234(weighted: bool = True) -> ModelBuilder:
    return ModelBuilder(
        ResNet((3, 4, 6, 3), (2, 3, 4)),
        MultiRPN(5, [256, 256, 256], weighted),
        neck=AdjustAllLayer([512, 1024, 2048], [256, 256, 256]),
    )


def siamrpn_alex() -> ModelBuilder:
    return ModelBuilder(AlexNetLegacy(1.0), DepthwiseRPN(5, 256, 256))


# --------------------------------------------------------------------------------------------------------------
# randomisation


@torch.no_grad()
def randomize_(model: nn.Module, calibrate=None, seed: int = 0) -> nn.Module:
    """Random weights and non-trivial BN statistics, with activations kept at a sane scale.

    Convs: He-normal weights, small random biases. BN: weight U(0.5, 1.5), bias N(0, 0.2). If ``calibrate`` (a
    callable running the model's forward) is given, the running statistics are first estimated in train mode
    (cumulative average), then perturbed (mean + N(0, 0.1·std), var · U(0.7, 1.4)). Other parameters (e.g.
    SiamFC++ ``si``/``bi``, pysot ``cls_weight``/``loc_weight``) get random values near their defaults.
    Leaves the model in eval mode.
    """
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g)

    def rand(*shape):
        return torch.rand(*shape, generator=g)

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.weight[0].numel()
            m.weight.copy_(randn(*m.weight.shape) * math.sqrt(2.0 / fan_in))
            if m.bias is not None:
                m.bias.copy_(randn(*m.bias.shape) * 0.1)
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.copy_(0.5 + rand(*m.weight.shape))
            m.bias.copy_(randn(*m.bias.shape) * 0.2)
            m.running_mean.copy_(randn(*m.running_mean.shape) * 0.1)
            m.running_var.copy_(0.5 + rand(*m.running_var.shape))
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "si":
            p.copy_(0.2 + 0.2 * rand(()))
        elif leaf == "bi":
            p.copy_(0.5 + 0.5 * randn(()))
        elif leaf in ("cls_weight", "loc_weight"):
            p.copy_(1.0 + randn(*p.shape))

    if calibrate is not None:
        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration calls
        model.train()
        calibrate(model)
        for m in bns:
            m.momentum = 0.1
            std = m.running_var.clamp_min(1e-6).sqrt()
            m.running_mean.add_(0.1 * std * randn(*std.shape))
            m.running_var.mul_(0.7 + 0.7 * rand(*std.shape))
            m.num_batches_tracked.zero_()
    model.eval()
    return model


def torch_to_flax(state_dict) -> dict:
    """Generic state-dict -> Flax variables renaming (the schema the converter relies on)."""
    params: dict = {}
    stats: dict = {}
    for key, tensor in state_dict.items():
        *path, leaf = key.split(".")
        if leaf == "num_batches_tracked":
            continue
        a = tensor.detach().cpu().numpy().astype(np.float32)
        target = params
        if leaf in ("running_mean", "running_var"):
            target, leaf = stats, leaf[len("running_") :]
        elif leaf == "weight" and a.ndim == 4:
            a, leaf = a.transpose(2, 3, 1, 0), "kernel"
        elif leaf == "weight" and a.ndim == 1:
            leaf = "scale"
        node = target
        for p in path:
            node = node.setdefault(p, {})
        assert leaf not in node, key
        node[leaf] = a
    return {"params": params, "batch_stats": stats}


def _flax_leaf(variables: dict, key: str, like: torch.Tensor) -> np.ndarray:
    """The Flax array for state-dict ``key`` (the inverse of :func:`torch_to_flax`'s renaming), in torch layout."""
    *path, leaf = key.split(".")
    collection = "params"
    if leaf in ("running_mean", "running_var"):
        collection, leaf = "batch_stats", leaf[len("running_") :]
    elif leaf == "weight" and like.ndim == 4:
        leaf = "kernel"
    elif leaf == "weight" and like.ndim == 1:
        leaf = "scale"
    node = variables[collection]
    for p in [*path, leaf]:
        node = node[p]
    a = np.asarray(node, np.float32)
    return a.transpose(3, 2, 0, 1) if leaf == "kernel" else a


@torch.no_grad()
def load_flax_variables_(model: nn.Module, variables) -> nn.Module:
    """Copy Flax ``variables`` (a tree with the schema of :func:`torch_to_flax`) into ``model``; every state-dict
    entry must be found with the right shape (``num_batches_tracked`` excepted). Leaves the model in eval mode."""
    for key, tensor in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        a = _flax_leaf(variables, key, tensor)
        if tuple(a.shape) != tuple(tensor.shape):
            raise ValueError(f"{key}: Flax shape {a.shape} (torch layout) vs twin {tuple(tensor.shape)}")
        tensor.copy_(torch.from_numpy(np.array(a, np.float32, order="C")))
    return model.eval()


# --------------------------------------------------------------------------------------------------------------
# dense predictions and the Dua-Loss (restating jaxtrack.tracking.families and jaxtrack.attacks.losses)


def siamfcpp_dense(cls_score, ctr_score, bbox, instance_size: int):
    """``SiamFCppTracker.dense_predictions_single`` on :meth:`SiamTrack.track`'s outputs of one crop:
    ``sigmoid(cls)·sigmoid(ctr)`` and the ``x0, y0, x1, y1`` boxes as ``cx, cy, w, h`` relative to the crop centre
    (``instance_size // 2``, video_analyst's offset; ``w = x1 − x0 + 1``)."""
    score = (torch.sigmoid(cls_score) * torch.sigmoid(ctr_score)).reshape(-1)
    x0, y0, x1, y1 = bbox.reshape(-1, 4).unbind(-1)
    half = instance_size // 2
    return score, torch.stack([(x0 + x1) / 2 - half, (y0 + y1) / 2 - half, x1 - x0 + 1, y1 - y0 + 1], -1)


def siamrpn_dense(cls, loc, anchors):
    """pysot ``_convert_score`` / ``_convert_bbox`` (``jaxtrack.tracking.postprocess.siamrpn_decode``) on
    :meth:`ModelBuilder.track`'s ``cls [1, 2K, S, S]`` and ``loc [1, 4K, S, S]``; ``anchors [K·S·S, 4]``."""
    anchors = torch.as_tensor(np.asarray(anchors, np.float32))
    score = F.softmax(cls.permute(1, 2, 3, 0).reshape(2, -1), dim=0)[1]
    delta = loc.permute(1, 2, 3, 0).reshape(4, -1)
    aw, ah = anchors[:, 2], anchors[:, 3]
    boxes = torch.stack([delta[0] * aw + anchors[:, 0], delta[1] * ah + anchors[:, 1],
                         torch.exp(delta[2]) * aw, torch.exp(delta[3]) * ah], -1)
    return score, boxes


_DELTA = 1e-6  # jaxtrack.attacks.losses._DELTA
_MAX_SIDE = 1e8  # jaxtrack.attacks.losses._MAX_SIDE


def box_iou(a, b):
    """IoU of ``(cx, cy, w, h)`` boxes, sides clamped to ``[0, 1e8]``; 0 for empty unions."""
    aw, ah = a[..., 2].clamp(0, _MAX_SIDE), a[..., 3].clamp(0, _MAX_SIDE)
    bw, bh = b[..., 2].clamp(0, _MAX_SIDE), b[..., 3].clamp(0, _MAX_SIDE)
    ix = torch.minimum(a[..., 0] + aw / 2, b[..., 0] + bw / 2) - torch.maximum(a[..., 0] - aw / 2, b[..., 0] - bw / 2)
    iy = torch.minimum(a[..., 1] + ah / 2, b[..., 1] + bh / 2) - torch.maximum(a[..., 1] - ah / 2, b[..., 1] - bh / 2)
    inter = ix.clamp_min(0) * iy.clamp_min(0)
    union = aw * ah + bw * bh - inter
    ok = union > 0
    return torch.where(ok, inter / torch.where(ok, union, torch.ones_like(union)), torch.zeros_like(union))


@torch.no_grad()
def iou_labels(boxes, ref, pos_iou: float = 0.6, neg_iou: float = 0.3):
    """1 positive (IoU > pos_iou, and the best-overlapping cell), 0 negative (IoU < neg_iou), −1 ignored."""
    iou = box_iou(boxes, ref)
    dist = ((boxes[:, :2] - ref[:2]) ** 2).sum(-1)
    best = torch.argmax(iou) if float(iou.max()) > 0 else torch.argmin(dist)
    pos = (iou > pos_iou) | (torch.arange(iou.shape[0]) == best)
    neg = (iou < neg_iou) & ~pos
    return torch.where(pos, 1.0, torch.where(neg, 0.0, -1.0))


def _masked_mean(values, mask):
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def _bce(scores, target: float):
    return -(target * torch.log(scores + _DELTA) + (1.0 - target) * torch.log(1.0 - scores + _DELTA))


def dua_loss(scores, boxes, ref, clean_boxes, lam: float = 1.0):
    """``jaxtrack.attacks.dua_loss`` (``reg="iou"``): labels from the clean boxes against ``ref``, then
    ``½ mean_P −log s + ½ mean_Q −log(1 − s) + λ · mean_P (1 − IoU(b, ref))``."""
    labels = iou_labels(clean_boxes, ref)
    cls = 0.5 * _masked_mean(_bce(scores, 1.0), labels == 1) + 0.5 * _masked_mean(_bce(scores, 0.0), labels == 0)
    return cls + lam * _masked_mean(1.0 - box_iou(boxes, ref), labels == 1)

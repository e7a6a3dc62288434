"""NanoTrack v2 restated in PyTorch (test-only): HonglinChu/SiamTrackers ``NanoTrack``
(``nanotrack/models/backbone/mobile_v3.py``, ``head/ban_v2.py``), module names as the checkpoint's keys so that the
real ``nanotrackv2.pth`` loads with ``strict=True``.

* :func:`nanotrack_v2` -> :class:`NanoTrackV2` (``template(z)``, ``track(x)``; NCHW float BGR in [0, 255]);
  :func:`load_nanotrack_v2` builds it with a checkpoint's weights;
* :func:`nanotrack_dense` decodes one crop's ``cls`` / ``loc`` to per-cell scores and ``cx, cy, w, h`` boxes as
  ``jaxtrack.tracking.nanotrack.nanotrack_decode`` does; :func:`jaxtrack.testing.torch_twins.dua_loss` scores them.

Used by ``tests/test_nanotrack.py`` (outputs, Dua-Loss and its gradient against the JAX network) and
``benchmarks/attack_speed.py`` (JAX vs PyTorch attack cost on the real network).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .torch_twins import AdjustLayer

__all__ = ["NanoTrackV2", "load_nanotrack_v2", "nanotrack_dense", "nanotrack_v2"]


def _nano_divisible(value: float, divisor: int = 8) -> int:
    """mobile_v3 ``_make_divisible``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class NanoSELayer(nn.Module):
    """mobile_v3 ``SELayer``: global average, ``fc`` = Linear, ReLU, Linear, h-sigmoid; rescale."""

    def __init__(self, channel: int, reduction: int = 4):
        super().__init__()
        squeezed = _nano_divisible(channel // reduction)
        self.fc = nn.Sequential(nn.Linear(channel, squeezed), nn.ReLU(), nn.Linear(squeezed, channel), nn.Hardsigmoid())

    def forward(self, x):
        return x * self.fc(x.mean((2, 3)))[:, :, None, None]


class NanoInvertedResidual(nn.Module):
    """mobile_v3 ``InvertedResidual`` (``conv`` sequential indexed as the checkpoint)."""

    def __init__(self, inp: int, hidden: int, oup: int, k: int, stride: int, use_se: bool, use_hs: bool):
        super().__init__()
        act = nn.Hardswish if use_hs else nn.ReLU
        se = NanoSELayer(hidden) if use_se else nn.Identity()
        pad = (k - 1) // 2
        self.identity = stride == 1 and inp == oup
        if inp == hidden:
            self.conv = nn.Sequential(
                nn.Conv2d(hidden, hidden, k, stride, pad, groups=hidden, bias=False), nn.BatchNorm2d(hidden), act(),
                se, nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup))
        else:
            self.conv = nn.Sequential(
                nn.Conv2d(inp, hidden, 1, bias=False), nn.BatchNorm2d(hidden), act(),
                nn.Conv2d(hidden, hidden, k, stride, pad, groups=hidden, bias=False), nn.BatchNorm2d(hidden), se, act(),
                nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup))

    def forward(self, x):
        return x + self.conv(x) if self.identity else self.conv(x)


# (kernel, expansion, out channels, SE, hard-swish, stride): mobilenetv3_small as NanoTrack v2 cuts it
NANOTRACK_V2_BLOCKS = ((3, 1, 16, 1, 0, 2), (3, 4.5, 24, 0, 0, 2), (3, 3.67, 24, 0, 0, 1), (5, 4, 40, 1, 1, 2),
                       (5, 6, 40, 1, 1, 1), (5, 6, 40, 1, 1, 1), (5, 3, 48, 1, 1, 1), (5, 3, 48, 1, 1, 1))


class NanoBackbone(nn.Module):
    def __init__(self, blocks=NANOTRACK_V2_BLOCKS):
        super().__init__()
        cin = _nano_divisible(16)
        layers = [nn.Sequential(nn.Conv2d(3, cin, 3, 2, 1, bias=False), nn.BatchNorm2d(cin), nn.Hardswish())]
        for k, t, c, se, hs, s in blocks:
            cout = _nano_divisible(c)
            layers.append(NanoInvertedResidual(cin, _nano_divisible(cin * t), cout, k, s, bool(se), bool(hs)))
            cin = cout
        self.features = nn.Sequential(*layers)

    def forward(self, x):
        return self.features(x)


class NanoCALayer(nn.Module):
    def __init__(self, channels: int = 64):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels, 1)
        self.fc2 = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        y = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
        return x * y


class NanoPixelwiseXCorr(nn.Module):
    """ban_v2 ``PixelwiseXCorr``: 1x1 conv + BN per branch, pixel-wise correlation, channel attention."""

    def __init__(self, channels: int = 48, corr_channels: int = 64):
        super().__init__()
        self.conv_kernel = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels))
        self.conv_search = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels))
        self.CA_layer = NanoCALayer(corr_channels)

    def forward(self, kernel, search):
        kernel, search = self.conv_kernel(kernel), self.conv_search(search)
        b, c, h, w = search.shape
        corr = torch.matmul(kernel.reshape(b, c, -1).transpose(1, 2), search.reshape(b, c, -1))
        return self.CA_layer(corr.reshape(b, -1, h, w))


def _nano_tower(cin: int, channels: int, layers: int = 6) -> nn.Sequential:
    mods = []
    for i in range(layers):
        c = cin if i == 0 else channels
        mods += [nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False), nn.Conv2d(c, channels, 1, bias=False),
                 nn.BatchNorm2d(channels), nn.ReLU6()]
    return nn.Sequential(*mods)


class NanoBANHead(nn.Module):
    """ban_v2 ``DepthwiseBAN``: raw ``cls [B, 2, 16, 16]`` logits and ``loc = exp(.) [B, 4, 16, 16]``."""

    def __init__(self, channels: int = 48):
        super().__init__()
        self.corr_pw_reg = NanoPixelwiseXCorr(channels)
        self.corr_pw_cls = NanoPixelwiseXCorr(channels)
        self.cls_pw_tower = _nano_tower(64, 96)
        self.bbox_pw_tower = _nano_tower(64, 96)
        self.cls_pred = nn.Sequential(nn.Conv2d(96, 2, 1))
        self.bbox_pred = nn.Sequential(nn.Conv2d(96, 4, 1))

    def forward(self, zf, xf):
        cls = self.cls_pred(self.cls_pw_tower(self.corr_pw_cls(zf, xf)))
        loc = torch.exp(self.bbox_pred(self.bbox_pw_tower(self.corr_pw_reg(zf, xf))))
        return cls, loc


class NanoTrackV2(nn.Module):
    """NanoTrack v2's ``ModelBuilder`` (``template(z)``, ``track(x)``; inputs NCHW float BGR in [0, 255]).

    ``neck`` (an ``AdjustLayer`` that ``template`` / ``track`` never call) is built only so that the checkpoint
    ``nanotrackv2.pth`` loads with ``strict=True``.
    """

    def __init__(self):
        super().__init__()
        self.backbone = NanoBackbone()
        self.neck = AdjustLayer(64, 64)
        self.ban_head = NanoBANHead(48)

    def template(self, z):
        self.zf = self.backbone(z)

    def track(self, x):
        cls, loc = self.ban_head(self.zf, self.backbone(x))
        return {"cls": cls, "loc": loc}


def nanotrack_v2() -> NanoTrackV2:
    return NanoTrackV2()


def load_nanotrack_v2(state_dict) -> NanoTrackV2:
    """The twin with ``state_dict`` (``nanotrackv2.pth``'s, arrays or tensors) loaded with ``strict=True``, in eval
    mode, parameters frozen (gradients w.r.t. the inputs only)."""
    twin = nanotrack_v2()
    twin.load_state_dict({k: torch.as_tensor(np.array(v)) for k, v in state_dict.items()}, strict=True)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin.eval()


def nanotrack_dense(cls, loc, points):
    """``NanoTracker._convert_score`` / ``_convert_bbox`` on one crop's ``cls [1, 2, S, S]``, ``loc [1, 4, S, S]``
    with the grid ``points [S·S, 2]`` (x, y offsets from the crop centre): softmax foreground score and ``cx, cy,
    w, h`` boxes from the (l, t, r, b) distances."""
    points = torch.as_tensor(np.asarray(points, np.float32))
    score = F.softmax(cls.permute(1, 2, 3, 0).reshape(2, -1), dim=0)[1]
    d = loc.permute(1, 2, 3, 0).reshape(4, -1)
    x1, y1 = points[:, 0] - d[0], points[:, 1] - d[1]
    x2, y2 = points[:, 0] + d[2], points[:, 1] + d[3]
    return score, torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], -1)

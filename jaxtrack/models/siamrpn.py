"""SiamRPN trackers of pysot (``ModelBuilder``): top-level modules ``backbone``, ``neck`` (if any), ``rpn_head``.

* :class:`SiamRPNPP` -- ``siamrpn_r50_l234_dwxcorr`` (``weighted=True``, VOT model) and
  ``siamrpn_r50_l234_dwxcorr_otb`` (``weighted=False``): atrous ResNet-50 layers 2/3/4, AdjustAllLayer to 256
  channels (template maps centre-cropped to 7x7), MultiRPN. z 127 / x 255 -> 25x25.
* :class:`SiamRPNAlex` -- ``siamrpn_alex_dwxcorr``: AlexNetLegacy, no neck, DepthwiseRPN. z 127 / x 287 -> 21x21.

Outputs keep pysot's channel order: ``cls`` channel c (NHWC last axis) = pysot NCHW channel c, i.e. 2 * 5
channels, ``loc`` 4 * 5 channels (see pysot's anchor-major layout).

Usage::

    zf = model.apply(variables, z, method=model.template)
    out = model.apply(variables, zf, x, method=model.track)   # dict(cls=[B,25,25,10], loc=[B,25,25,20])
"""

from __future__ import annotations

import flax.linen as nn
import jax

from .alexnet import AlexNetLegacy
from .heads import DepthwiseRPN, MultiRPN
from .neck import AdjustAllLayer
from .resnet_atrous import ResNetAtrous

__all__ = ["SiamRPNPP", "SiamRPNAlex"]


class SiamRPNPP(nn.Module):
    """SiamRPN++ ResNet-50 (``siamrpn_r50_l234_dwxcorr``). Inputs NHWC float32 BGR in [0, 255].

    ``template(z) -> (zf2, zf3, zf4)`` neck outputs [B, 7, 7, 256];
    ``track(zf, x) -> dict(cls=[B, 25, 25, 10], loc=[B, 25, 25, 20])`` raw RPN outputs.
    """

    weighted: bool = True
    anchor_num: int = 5

    def setup(self):
        self.backbone = ResNetAtrous(layers=(3, 4, 6, 3), used_layers=(2, 3, 4))
        self.neck = AdjustAllLayer(out_channels=(256, 256, 256))
        self.rpn_head = MultiRPN(anchor_num=self.anchor_num, in_channels=(256, 256, 256), weighted=self.weighted)

    def template(self, z: jax.Array, train: bool = False):
        return self.neck(self.backbone(z, train), train)

    def track(self, zf, x: jax.Array, train: bool = False) -> dict:
        xf = self.neck(self.backbone(x, train), train)
        cls, loc = self.rpn_head(zf, xf, train)
        return {"cls": cls, "loc": loc}

    def __call__(self, z: jax.Array, x: jax.Array, train: bool = False) -> dict:
        return self.track(self.template(z, train), x, train)


class SiamRPNAlex(nn.Module):
    """SiamRPN AlexNet (``siamrpn_alex_dwxcorr``). Inputs NHWC float32 BGR in [0, 255].

    ``template(z) -> [B, 6, 6, 256]`` backbone features;
    ``track(zf, x) -> dict(cls=[B, 21, 21, 10], loc=[B, 21, 21, 20])`` for x 287.
    """

    anchor_num: int = 5
    width_mult: float = 1.0

    def setup(self):
        self.backbone = AlexNetLegacy(width_mult=self.width_mult)
        self.rpn_head = DepthwiseRPN(anchor_num=self.anchor_num, out_channels=int(256 * self.width_mult))

    def template(self, z: jax.Array, train: bool = False):
        return self.backbone(z, train)

    def track(self, zf, x: jax.Array, train: bool = False) -> dict:
        cls, loc = self.rpn_head(zf, self.backbone(x, train), train)
        return {"cls": cls, "loc": loc}

    def __call__(self, z: jax.Array, x: jax.Array, train: bool = False) -> dict:
        return self.track(self.template(z, train), x, train)

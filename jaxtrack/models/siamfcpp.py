"""SiamFC++ with the AlexNet backbone (video_analyst ``SiamTrack``, experiment ``siamfcpp_alexnet``).

Parameter tree = video_analyst state-dict keys: ``basemodel`` (AlexNet-BN ``conv1..conv5``), the adjust convs
``c_z_k``, ``r_z_k``, ``c_x``, ``r_x`` (3x3 conv with bias + BN, no ReLU) and ``head`` (DenseboxHead, with the
scalar parameters ``head/si`` and ``head/bi`` of shape ()).

Sizes: z 127 -> 6x6 -> kernels 4x4; x 303 -> 28x28 -> 26x26 -> xcorr 23x23 -> head towers 17x17.

Usage::

    model = SiamFCppAlexNet()
    zf = model.apply(variables, z, method=model.template)      # (c_z_k, r_z_k), each [B, 4, 4, 256]
    out = model.apply(variables, zf, x, method=model.track)    # dict(cls, ctr, box)
"""

from __future__ import annotations

import flax.linen as nn
import jax

from .alexnet import AlexNetBN
from .heads import DenseboxHead
from .layers import ConvBNReLU, xcorr_depthwise

__all__ = ["SiamFCppAlexNet"]


class SiamFCppAlexNet(nn.Module):
    """SiamFC++ AlexNet. Inputs NHWC float32 BGR in [0, 255].

    ``template(z) -> (c_z_k, r_z_k)``; ``track(zf, x) -> dict``:

    * ``cls``: [B, 17, 17] classification logits; ``ctr``: [B, 17, 17] centre-ness logits
      (score = sigmoid(cls) * sigmoid(ctr));
    * ``box``: [B, 17, 17, 4] boxes (x0, y0, x1, y1) in search-crop pixels for cell (row i, col j).
    """

    head_width: int = 256
    total_stride: int = 8
    num_conv3x3: int = 3
    head_conv_bn: tuple[bool, ...] = (False, False, True)

    def setup(self):
        w = self.head_width
        self.basemodel = AlexNetBN()
        self.c_z_k = ConvBNReLU(w, 3, has_relu=False)
        self.r_z_k = ConvBNReLU(w, 3, has_relu=False)
        self.c_x = ConvBNReLU(w, 3, has_relu=False)
        self.r_x = ConvBNReLU(w, 3, has_relu=False)
        self.head = DenseboxHead(
            total_stride=self.total_stride,
            num_conv3x3=self.num_conv3x3,
            head_conv_bn=tuple(self.head_conv_bn),
            head_width=w,
        )

    def template(self, z: jax.Array, train: bool = False):
        f_z = self.basemodel(z, train)
        return (self.c_z_k(f_z, train), self.r_z_k(f_z, train))

    def track(self, zf, x: jax.Array, train: bool = False) -> dict:
        c_z_k, r_z_k = zf
        f_x = self.basemodel(x, train)
        c_x = self.c_x(f_x, train)
        r_x = self.r_x(f_x, train)
        c_out = xcorr_depthwise(c_x, c_z_k)
        r_out = xcorr_depthwise(r_x, r_z_k)
        return self.head(c_out, r_out, x.shape[2], train)

    def __call__(self, z: jax.Array, x: jax.Array, train: bool = False) -> dict:
        return self.track(self.template(z, train), x, train)

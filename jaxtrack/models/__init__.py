"""jaxtrack.models: Flax Linen re-implementations of the pysot / video_analyst tracker networks.

Parameter trees mirror the PyTorch state dicts (key split on '.'), so checkpoint conversion is a renaming
(conv ``weight`` OIHW -> ``kernel`` HWIO, BN ``weight`` -> ``scale``, ``running_mean/var`` -> ``batch_stats``
``mean/var``). Every model has ``template(z)``, ``track(zf, x)`` and ``__call__(z, x)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .alexnet import AlexNetBN, AlexNetLegacy
from .heads import DenseboxHead, DepthwiseRPN, DepthwiseXCorr, MultiRPN, densebox_centers
from .layers import max_pool2d, xcorr_depthwise
from .nanotrack import NanoTrack
from .neck import AdjustAllLayer, AdjustLayer
from .resnet_atrous import Bottleneck, ResNetAtrous, resnet50_atrous
from .siamfcpp import SiamFCppAlexNet
from .siamrpn import SiamRPNAlex, SiamRPNPP
from .unet import DefenseUNet  # noqa: F401  (the DuaLossDef pre-processor)

__all__ = [
    "AlexNetBN",
    "AlexNetLegacy",
    "AdjustAllLayer",
    "AdjustLayer",
    "Bottleneck",
    "DenseboxHead",
    "DepthwiseRPN",
    "DepthwiseXCorr",
    "MultiRPN",
    "NanoTrack",
    "ResNetAtrous",
    "SiamFCppAlexNet",
    "SiamRPNAlex",
    "SiamRPNPP",
    "densebox_centers",
    "init_variables",
    "max_pool2d",
    "resnet50_atrous",
    "xcorr_depthwise",
]


def init_variables(model, key: jax.Array, z_size: int, x_size: int) -> dict:
    """Randomly initialised variables (``{'params': ..., 'batch_stats': ...}``) from ``model.init`` on zeros
    of shape [1, z_size, z_size, 3] / [1, x_size, x_size, 3]."""
    z = jnp.zeros((1, z_size, z_size, 3), jnp.float32)
    x = jnp.zeros((1, x_size, x_size, 3), jnp.float32)
    variables = model.init(key, z, x)
    return {k: v for k, v in variables.items()}

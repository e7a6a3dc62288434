"""The tracker-family registry: one :class:`TrackerFamily` per family, keyed by the ``family`` attribute of its
configuration class.

A family is what shares a tracker loop, a network builder and a training loss (``siamfcpp``, ``siamrpn``,
``nanotrack``); a named tracker (``jaxtrack.tracking.configs.CONFIGS``) is one configuration of a family.
Not to be confused with a *checkpoint kind* (:mod:`jaxtrack.convert`): the layout of one published PyTorch
checkpoint, which fills the network of one named tracker.

Adding a family: a module with its configuration dataclass (with a class attribute ``family = "NAME"``), its
:class:`~jaxtrack.tracking.base.Tracker` subclass and a loss module exposing ``make_targets``, ``loss`` and
``DEFAULT_WEIGHTS`` (see :mod:`jaxtrack.losses`); one :func:`register` call at the end of the module; its named
configurations in ``CONFIGS``. Nothing else dispatches on the family.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class TrackerFamily:
    """How to build and train the trackers of one family.

    name:          the configuration class's ``family`` attribute.
    config_class:  the frozen dataclass of the family's hyper-parameters.
    tracker_class: ``config -> Tracker subclass`` (a family may have variants, e.g. the OpenCV emulation).
    build_model:   ``config -> flax.linen.Module``: the network.
    loss_module:   import path of the training-loss module (imported when first used).
    """

    name: str
    config_class: type
    tracker_class: Callable[[Any], type]
    build_model: Callable[[Any], Any]
    loss_module: str

    def losses(self):
        """The training-loss module (``make_targets``, ``loss``, ``DEFAULT_WEIGHTS``)."""
        return importlib.import_module(self.loss_module)


FAMILIES: dict[str, TrackerFamily] = {}


def register(family: TrackerFamily, *, replace: bool = False) -> TrackerFamily:
    """Add ``family`` to :data:`FAMILIES` (``ValueError`` if its name is taken, unless ``replace``)."""
    if family.config_class.family != family.name:
        raise ValueError(f"family {family.name!r}: {family.config_class.__name__}.family is "
                         f"{family.config_class.family!r}")
    if family.name in FAMILIES and not replace:
        raise ValueError(f"tracker family {family.name!r} is already registered (pass replace=True to change it)")
    FAMILIES[family.name] = family
    return family


def family_of(config) -> TrackerFamily:
    """The registered family of a tracker configuration (``ValueError`` naming the known ones otherwise)."""
    name = getattr(config, "family", None)
    if name not in FAMILIES:
        raise ValueError(f"no tracker family {name!r} registered (config {getattr(config, 'name', config)!r}); "
                         f"known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]

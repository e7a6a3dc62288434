"""jaxtrack.convert: PyTorch checkpoints (.pth/.pt/.pkl) → Flax variables, without torch.

``load_torch_file`` reads ``torch.save`` files (zip and legacy formats) with an allow-listed unpickler;
``convert_state_dict`` maps the state dict of a registered checkpoint kind onto a variables tree it is given.
Writing weights folders and finding a tracker's target tree is the weights layer's (:mod:`jaxtrack.weights`).
"""

from jaxtrack.convert.convert import (
    CHECKPOINT_KINDS,
    CheckpointKind,
    abstract_variables,
    convert_state_dict,
    get_checkpoint_kind,
    register_checkpoint_kind,
    state_dict_to_variables,
    unwrap_state_dict,
)
from jaxtrack.convert.reader import ALLOWED_GLOBALS, UnsafeCheckpointError, load_torch_file

__all__ = [
    "ALLOWED_GLOBALS",
    "CHECKPOINT_KINDS",
    "CheckpointKind",
    "UnsafeCheckpointError",
    "abstract_variables",
    "convert_state_dict",
    "get_checkpoint_kind",
    "load_torch_file",
    "register_checkpoint_kind",
    "state_dict_to_variables",
    "unwrap_state_dict",
]

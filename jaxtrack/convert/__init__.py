"""jaxtrack.convert: PyTorch checkpoints (.pth/.pt/.pkl) → Flax variables, without torch.

``load_torch_file`` reads ``torch.save`` files (zip and legacy formats) with an allow-listed unpickler;
``convert_checkpoint`` maps a checkpoint kind's state dict onto its tracker's variables and writes a converted folder
(``variables/`` orbax checkpoint + ``card.json``) that ``load_converted`` and ``jaxtrack track --weights`` read.
"""

from jaxtrack.convert.convert import (
    CHECKPOINT_KINDS,
    CheckpointKind,
    abstract_variables,
    compatible_kinds,
    convert_checkpoint,
    get_checkpoint_kind,
    is_converted_folder,
    load_converted,
    read_card,
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
    "compatible_kinds",
    "convert_checkpoint",
    "get_checkpoint_kind",
    "is_converted_folder",
    "load_converted",
    "load_torch_file",
    "read_card",
    "register_checkpoint_kind",
    "state_dict_to_variables",
    "unwrap_state_dict",
]

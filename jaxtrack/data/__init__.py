"""jaxtrack.data: sequences on disk (OTB folders, video files) and the synthetic generator.

Frames are ``H x W x 3`` uint8 BGR; boxes are ``[x, y, w, h]`` float64, 0-based, in frame pixels.
"""

from jaxtrack.data.sequence import (
    Sequence,
    load_otb_folder,
    load_video,
    read_boxes,
    read_frame,
    validate_box,
    write_boxes,
)
from jaxtrack.data.synthetic import (
    SyntheticConfig,
    SyntheticInfo,
    generate_dataset,
    generate_sequence,
    write_otb_sequence,
)

__all__ = [
    "Sequence",
    "load_otb_folder",
    "load_video",
    "read_boxes",
    "read_frame",
    "validate_box",
    "write_boxes",
    "SyntheticConfig",
    "SyntheticInfo",
    "generate_dataset",
    "generate_sequence",
    "write_otb_sequence",
]

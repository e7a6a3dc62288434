"""jaxtrack.data: sequences on disk (OTB folders, video files, benchmark datasets) and the synthetic generator.

Frames are ``H x W x 3`` uint8 BGR; boxes are ``[x, y, w, h]`` float64, 0-based, in frame pixels.
"""

from jaxtrack.data.datasets import DATASET_NAMES, load_dataset, read_pysot_json
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
from jaxtrack.data.vot import (
    get_axis_aligned_bbox,
    load_vot_folder,
    polygon_to_aabb,
    rect_to_polygon,
    vot_init_box,
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
    "DATASET_NAMES",
    "load_dataset",
    "read_pysot_json",
    "load_vot_folder",
    "get_axis_aligned_bbox",
    "polygon_to_aabb",
    "rect_to_polygon",
    "vot_init_box",
]

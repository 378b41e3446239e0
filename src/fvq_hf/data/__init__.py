"""Data: training/evaluation datasets, the embedded demo photographs, image/tensor conversions."""

from .datasets import (
    TRAIN_CROPS,
    DemoCropDataset,
    HFImageDataset,
    ImageFolderDataset,
    adm_random_crop_flip,
    build_dataset,
    collate_images,
    holdout_split,
    random_crop_flip,
    shard_for_process,
)
from .demo import (
    DEMO_EVAL_SETS,
    DEMO_HELDOUT_CELLS,
    DEMO_HELDOUT_LAYOUTS,
    DEMO_PHOTOS,
    EVAL_TOKENS_PER_CODE,
    demo_eval_samples,
    demo_heldout_boxes,
    load_demo_photos,
)
from .images import center_crop_resize, make_grid, pil_to_tensor, tensor_to_pil

__all__ = [
    "DEMO_EVAL_SETS",
    "DEMO_HELDOUT_CELLS",
    "DEMO_HELDOUT_LAYOUTS",
    "DEMO_PHOTOS",
    "EVAL_TOKENS_PER_CODE",
    "TRAIN_CROPS",
    "DemoCropDataset",
    "HFImageDataset",
    "ImageFolderDataset",
    "adm_random_crop_flip",
    "build_dataset",
    "center_crop_resize",
    "collate_images",
    "demo_eval_samples",
    "demo_heldout_boxes",
    "holdout_split",
    "load_demo_photos",
    "make_grid",
    "pil_to_tensor",
    "random_crop_flip",
    "shard_for_process",
    "tensor_to_pil",
]

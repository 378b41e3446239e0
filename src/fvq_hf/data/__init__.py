"""Data: the embedded demo photographs and image/tensor conversions."""

from .demo import DEMO_PHOTOS, load_demo_photos
from .images import center_crop_resize, make_grid, pil_to_tensor, tensor_to_pil

__all__ = ["DEMO_PHOTOS", "center_crop_resize", "load_demo_photos", "make_grid", "pil_to_tensor", "tensor_to_pil"]

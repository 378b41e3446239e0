"""Evaluation protocols: how images are cropped, stored and compared before a number is reported.

The same tokenizer gets different rFID, PSNR and SSIM under different protocols (crop, resize, file format and
FID implementation each move rFID), so every result names its protocol. Three are implemented:

``fvq``: the FVQ paper's tables (arXiv 2509.10140: rFID and LPIPS in Tables 1 and 8, PSNR and SSIM in Table 7),
    as its public evaluation code computes them (yfChang-cv/FVQ,
    ``tokenizer/tokenizer_image/eval_fid_usage_lpips.py``, ``eval_fid.py`` and ``crop_image.py``):

    - ImageNet val, a 256 × 256 centre crop of the raw image **without resizing** (torchvision ``CenterCrop``:
      offsets ``round((H − 256) / 2)``, zero padding for images smaller than the crop).
    - rFID between the reference crops and the reconstructions, **both saved as JPEG** (Pillow's default
      quality 75, because the files keep ImageNet's ``.JPEG`` names) and read back, with torch-fidelity's
      ``inception-v3-compat`` 2048-d features. The reference crop is cut from the image in its stored mode
      (grey, RGB or CMYK) and converted to RGB only when read back, as ``crop_image.py`` and torch-fidelity do.
    - PSNR on the BT.601 **Y channel** (IQA-PyTorch ``psnr``, ``test_y_channel=True``, ``color_space="ycbcr"``).
    - SSIM with ``piq.ssim(..., data_range=2.)`` on images in [0, 1], which inflates SSIM; reported as
      ``ssim`` next to the SSIM with the right range (``ssim_correct_range``, data range 1).
    - LPIPS with **AlexNet** (IQA-PyTorch's ``lpips``: v0.1 heads, inputs mapped to [-1, 1]).
    - PSNR, SSIM and LPIPS compare the uint8-rounded input and reconstruction in memory (no JPEG); only rFID
      reads the JPEG files.

``adm``: LlamaGen's tokenizer evaluation (FoundationVision/LlamaGen,
    ``tokenizer/tokenizer_image/reconstruction_vq_ddp.py`` and ``tokenizer/validation/val_ddp.py``), which
    uses ADM's preprocessing and evaluator:

    - ADM's ``center_crop_arr``: halve with a box filter while the short side is ≥ twice the size, **resize**
      the short side to the size with bicubic, then centre crop.
    - Reference and reconstruction stored as **PNG** (lossless: the uint8 arrays are the files), the
      reconstruction quantised as ``uint8(clamp(127.5 x + 128, 0, 255))`` (truncation).
    - rFID with the TF Inception graph of ADM's evaluator; here torch-fidelity's ``inception-v3-compat``
      features, which reproduce that graph's resize and normalisation.
    - PSNR on RGB in [0, 1] (scikit-image ``peak_signal_noise_ratio``), SSIM with scikit-image's
      ``structural_similarity(..., data_range=2.0, channel_axis=-1)`` on images in [0, 1] (7 × 7 uniform
      window; inflated the same way, so ``ssim_correct_range`` is reported too).
    - LPIPS is not part of LlamaGen's script; AlexNet LPIPS is reported so the number sits beside FVQ's.

``fast``: the in-memory protocol training uses: whatever crop the dataset makes (centre crop + bicubic resize for
    folders and ``datasets``), float tensors in [-1, 1], PSNR on RGB, SSIM with data range 2 on [-1, 1]
    images (the correct range), LPIPS with VGG16, rFID with pytorch-fid's preprocessing. Quick, comparable
    between our own runs, not with published tables.
"""

from __future__ import annotations

import io
import logging
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationProtocol:
    """How images are prepared and compared. See the module docstring for the sources of each choice.

    Attributes:
        name: ``"fvq"``, ``"adm"`` or ``"fast"``.
        crop: ``"center-crop"`` (no resize), ``"adm-center-crop"`` (resize short side + centre crop) or
            ``"dataset"`` (whatever the dataset does).
        file_format: format the rFID images are stored in and read back from (``"JPEG"``, ``"PNG"`` or None).
        jpeg_quality: Pillow JPEG quality (75 is Pillow's default, what a ``.JPEG`` file name gets).
        quantize: ``"round"`` (``round((x + 1) · 127.5)``) or ``"truncate"`` (``uint8(127.5 x + 128)``).
        psnr: ``"y"`` (BT.601 luma, images in [0, 1]) or ``"rgb"``.
        ssim_window: ``"gaussian"`` (piq) or ``"uniform"`` (scikit-image).
        ssim_data_range: the data range passed to SSIM for images in [0, 1] (``fast``: in [-1, 1]).
        lpips_net: ``"alex"`` or ``"vgg"``.
        inception: ``"torch-fidelity"`` (``inception-v3-compat``) or ``"pytorch-fid"``.
        source: the paper / code the protocol reproduces.
    """

    name: str
    crop: str
    file_format: str | None
    quantize: str
    psnr: str
    ssim_window: str
    ssim_data_range: float
    lpips_net: str
    inception: str
    source: str
    jpeg_quality: int = 75

    @property
    def in_memory(self) -> bool:
        """True for ``fast``: images stay [-1, 1] float tensors, nothing is quantised or stored."""
        return self.crop == "dataset"

    def describe(self, resolution: int) -> str:
        """One line naming every choice that changes a number."""
        if self.in_memory:
            return (
                f"fast (in-memory): dataset crop to {resolution} px, float tensors in [-1, 1] (no uint8, no file "
                "round trip); PSNR on RGB; SSIM Gaussian 11 × 11 (torchmetrics, reflect-padded borders) with data range 2 on [-1, 1] "
                "(correct range); "
                "LPIPS VGG16; rFID pytorch-fid InceptionV3 preprocessing"
            )
        crop = {
            "center-crop": f"centre crop {resolution} × {resolution} of the raw image without resizing",
            "adm-center-crop": f"ADM center_crop_arr to {resolution} px (box halving, bicubic resize of the short side, centre crop)",
        }[self.crop]
        stored = f"JPEG quality {self.jpeg_quality}" if self.file_format == "JPEG" else self.file_format
        ssim = "Gaussian 11 × 11 (piq)" if self.ssim_window == "gaussian" else "uniform 7 × 7 (scikit-image)"
        return (
            f"{self.name}: {crop}; rFID on reference and reconstruction stored as {stored} and read back, "
            f"{self.inception} InceptionV3 features; PSNR on {'the BT.601 Y channel' if self.psnr == 'y' else 'RGB'}; "
            f"SSIM {ssim} with data range {self.ssim_data_range:g} on [0, 1] images as published "
            f"(ssim_correct_range: data range 1); LPIPS {'AlexNet' if self.lpips_net == 'alex' else 'VGG16'} v0.1; "
            f"per-image metrics on uint8 images in memory ({self.source})"
        )

    def as_dict(self) -> dict:
        return asdict(self)


PROTOCOLS = {
    "fvq": EvaluationProtocol(
        name="fvq",
        crop="center-crop",
        file_format="JPEG",
        quantize="round",
        psnr="y",
        ssim_window="gaussian",
        ssim_data_range=2.0,
        lpips_net="alex",
        inception="torch-fidelity",
        source="FVQ paper arXiv 2509.10140; yfChang-cv/FVQ tokenizer/tokenizer_image/eval_fid_usage_lpips.py",
    ),
    "adm": EvaluationProtocol(
        name="adm",
        crop="adm-center-crop",
        file_format="PNG",
        quantize="truncate",
        psnr="rgb",
        ssim_window="uniform",
        ssim_data_range=2.0,
        lpips_net="alex",
        inception="torch-fidelity",
        source="LlamaGen (FoundationVision/LlamaGen tokenizer/tokenizer_image/reconstruction_vq_ddp.py) with ADM's crop",
    ),
    "fast": EvaluationProtocol(
        name="fast",
        crop="dataset",
        file_format=None,
        quantize="round",
        psnr="rgb",
        ssim_window="gaussian",
        ssim_data_range=2.0,
        lpips_net="vgg",
        inception="pytorch-fid",
        source="fvq_hf's training-time evaluation",
    ),
}


def get_protocol(protocol: str | EvaluationProtocol) -> EvaluationProtocol:
    """The protocol named ``protocol`` (``"fvq"``, ``"adm"``, ``"fast"``), or ``protocol`` itself."""
    if isinstance(protocol, EvaluationProtocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[protocol]


# ------------------------------------------------------------------------------------------- image steps
def center_crop_no_resize(image: Image.Image, size: int) -> Image.Image:
    """The central ``size`` × ``size`` pixels of ``image`` at its own scale (torchvision ``CenterCrop`` semantics).

    Offsets are ``round((H − size) / 2)`` with Python's round (ties to even), and an image smaller than the crop
    is first padded with zeros (left/top get the smaller half), as torchvision pads PIL images. The mode is kept.
    """
    width, height = image.size
    if width < size or height < size:
        pad_w, pad_h = max(size - width, 0), max(size - height, 0)
        canvas = Image.new(image.mode, (width + pad_w, height + pad_h), 0)
        canvas.paste(image, (pad_w // 2, pad_h // 2))
        image, (width, height) = canvas, canvas.size
    top = round((height - size) / 2.0)  # Python's round: ties to even, as torchvision
    left = round((width - size) / 2.0)
    return image.crop((left, top, left + size, top + size))


def adm_center_crop(image: Image.Image, size: int) -> Image.Image:
    """ADM's ``center_crop_arr`` (guided-diffusion, used by LlamaGen): box-halve, bicubic-resize the short side, crop."""
    while min(image.size) >= 2 * size:
        image = image.resize(tuple(side // 2 for side in image.size), resample=Image.BOX)
    scale = size / min(image.size)
    image = image.resize(tuple(round(side * scale) for side in image.size), resample=Image.BICUBIC)
    array = np.asarray(image)
    top, left = (array.shape[0] - size) // 2, (array.shape[1] - size) // 2
    return Image.fromarray(array[top : top + size, left : left + size])


def file_round_trip(image: Image.Image, file_format: str | None, quality: int = 75) -> Image.Image:
    """``image`` written as ``file_format`` and read back, in memory (the pixels a file on disk would hold).

    PNG is lossless, so it returns ``image`` unchanged without encoding it.
    """
    if file_format is None or file_format.upper() == "PNG":
        return image
    if file_format.upper() not in ("JPEG", "JPG"):
        raise ValueError(f"unsupported evaluation file format {file_format!r}")
    if image.mode not in ("L", "RGB", "CMYK"):
        image = image.convert("RGB")  # what JPEG can store
    buffer = io.BytesIO()
    # quality 75 with libjpeg's default 4:2:0 chroma subsampling: what Image.save("x.JPEG") writes
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        decoded.load()
        return decoded.copy()


def pil_to_uint8(image: Image.Image) -> torch.Tensor:
    """(3, H, W) uint8 RGB tensor of a PIL image."""
    return torch.from_numpy(np.array(image.convert("RGB"), dtype=np.uint8)).permute(2, 0, 1).contiguous()


def quantize(images: torch.Tensor, mode: str = "round") -> torch.Tensor:
    """uint8 images of float images in [-1, 1], rounded as the protocol's reference code does.

    ``"round"``: ``round((x + 1) · 127.5)`` (FVQ's ``save_img_tensor``); ``"truncate"``:
    ``uint8(clamp(127.5 x + 128, 0, 255))`` (LlamaGen), which rounds halves up.
    """
    images = images.float()
    if mode == "round":
        values = ((images.clamp(-1, 1) + 1) * 127.5).round()
    elif mode == "truncate":
        values = (127.5 * images + 128.0).clamp(0, 255).floor()
    else:
        raise ValueError(f"quantize mode must be 'round' or 'truncate', not {mode!r}")
    return values.nan_to_num(128.0).to(torch.uint8)


def round_trip_batch(images: torch.Tensor, file_format: str | None, quality: int = 75) -> torch.Tensor:
    """(B, 3, H, W) uint8 images after ``file_round_trip``; unchanged for PNG / None."""
    if file_format is None or file_format.upper() == "PNG":
        return images
    out = []
    for image in images.cpu():
        pil = Image.fromarray(image.permute(1, 2, 0).numpy())
        out.append(pil_to_uint8(file_round_trip(pil, file_format, quality)))
    return torch.stack(out).to(images.device)


def prepare_image(image: Image.Image, protocol: EvaluationProtocol, size: int) -> dict[str, torch.Tensor]:
    """The model input (3, size, size) in [-1, 1] and the rFID reference (3, size, size) uint8 of one image.

    The model sees the RGB crop; the reference is the crop as the protocol stores it (for ``fvq`` cut in the
    image's own mode, JPEG-encoded and converted to RGB when read back).
    """
    if protocol.crop == "center-crop":
        crop = center_crop_no_resize(image.convert("RGB"), size)
        stored = center_crop_no_resize(image if image.mode in ("L", "RGB", "CMYK") else image.convert("RGB"), size)
        reference = pil_to_uint8(file_round_trip(stored, protocol.file_format, protocol.jpeg_quality))
    elif protocol.crop == "adm-center-crop":
        crop = adm_center_crop(image.convert("RGB"), size)
        reference = pil_to_uint8(file_round_trip(crop, protocol.file_format, protocol.jpeg_quality))
    else:
        raise ValueError(f"protocol {protocol.name!r} takes its images from the dataset, not prepare_image")
    pixels = pil_to_uint8(crop).float() / 127.5 - 1
    return {"pixel_values": pixels, "reference": reference}


def collate_protocol_images(items: list) -> dict:
    """Stack the items that could be read (``prepare_image`` dicts); ``"skipped"`` counts those that could not."""
    items_read = [item for item in items if item is not None]
    if not items_read:
        return {"pixel_values": torch.empty(0), "reference": torch.empty(0, dtype=torch.uint8), "skipped": len(items)}
    return {
        "pixel_values": torch.stack([item["pixel_values"] for item in items_read]),
        "reference": torch.stack([item["reference"] for item in items_read]),
        "skipped": len(items) - len(items_read),
    }


class ProtocolImageFolder(Dataset):
    """Every image file below ``root`` (recursively, sorted), prepared by ``protocol`` (``fvq`` or ``adm``).

    Items are ``prepare_image`` dicts; an unreadable file gives None (a warning names it) and is counted by
    ``collate_protocol_images``.
    """

    def __init__(self, root: str, protocol: str | EvaluationProtocol, resolution: int = 256):
        from ..data.datasets import list_image_files

        self.protocol, self.resolution = get_protocol(protocol), resolution
        if self.protocol.in_memory:
            raise ValueError("the fast protocol uses the training datasets (fvq_hf.data), not ProtocolImageFolder")
        self.files = list_image_files(root)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor] | None:
        path = self.files[index]
        try:
            with Image.open(path) as image:
                image.load()
                return prepare_image(image, self.protocol, self.resolution)
        except Exception as error:  # noqa: BLE001 - truncated, corrupt, not an image: skip it, never stop the run
            logger.warning("skipping unreadable image %s (%s: %s)", path, type(error).__name__, error)
            return None


def protocol_hf_dataset(name_or_path: str, protocol: str | EvaluationProtocol, resolution: int = 256, **kwargs):
    """A ``datasets`` image dataset (``fvq_hf.data.HFImageDataset`` arguments) prepared by ``protocol``."""
    from ..data import HFImageDataset

    protocol = get_protocol(protocol)

    class _Prepared(HFImageDataset):
        def transform(self, image: Image.Image, index: int) -> dict[str, torch.Tensor]:
            return prepare_image(image, protocol, self.resolution)

    return _Prepared(name_or_path, resolution, train=False, **kwargs)

"""FVQModel: a VQGAN / LlamaGen tokenizer whose codebook is produced by a projector (VQBridge by default)."""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import Decoder, Encoder
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from diffusers.utils.accelerate_utils import apply_forward_hook
from torch import nn

from ..quantization.projectors import PROJECTOR_TYPES, build_projector, parse_bridge_preset
from ..quantization.search import DEFAULT_CHUNK_SIZE
from ..quantization.vector_quantizer import VectorQuantizer


@dataclass
class FVQModelOutput(BaseOutput):
    """
    Output of ``FVQModel.forward``.

    Args:
        sample (`torch.Tensor` of shape `(batch_size, channels, height, width)`): The reconstruction, in [-1, 1].
        indices (`torch.LongTensor` of shape `(batch_size, height / f, width / f)`): The chosen code of every token.
        codebook_loss (`torch.Tensor`): ``mean((ẑ − sg(z))²)``; trains the codebook and its projector.
        commitment_loss (`torch.Tensor`): ``β · mean((sg(ẑ) − z)²)``; keeps the encoder near its codes.
    """

    sample: torch.Tensor
    indices: torch.LongTensor
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor


def _block_types(levels: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    # LlamaGen places attention after each residual block of the lowest resolution only
    down = ("DownEncoderBlock2D",) * (levels - 1) + ("AttnDownEncoderBlock2D",)
    up = ("AttnUpDecoderBlock2D",) + ("UpDecoderBlock2D",) * (levels - 1)
    return down, up


def _architecture(block_out_channels: tuple[int, ...], **extra) -> dict:
    down, up = _block_types(len(block_out_channels))
    return {"block_out_channels": block_out_channels, "down_block_types": down, "up_block_types": up, **extra}


_BRIDGE_FIELDS = {
    "patch_size": "bridge_patch_size",
    "hidden_size": "bridge_hidden_size",
    "num_heads": "bridge_num_heads",
    "depth": "bridge_depth",
    "mlp_ratio": "bridge_mlp_ratio",
}

MODEL_PRESETS: dict[str, dict] = {
    # the paper's VQ-16 (LlamaGen's tokenizer with d = 256): 16× downsampling, 16 × 16 tokens at 256 px
    "vq-16": _architecture((128, 128, 256, 256, 512), codebook_size=16384, bridge="L/4", sample_size=256),
    "vq-16-65k": _architecture((128, 128, 256, 256, 512), codebook_size=65536, bridge="L/8", sample_size=256),
    "vq-16-262k": _architecture((128, 128, 256, 256, 512), codebook_size=262144, bridge="L/8", sample_size=256),
    # 8× downsampling, 32 × 32 tokens at 256 px
    "vq-8": _architecture((128, 256, 256, 512), codebook_size=16384, bridge="L/4", sample_size=256),
    # a CPU-sized tokenizer for demos and tests: 4× downsampling, 8 × 8 tokens at 32 px
    "tiny": _architecture(
        (32, 64, 64),
        layers_per_block=1,
        latent_channels=64,
        norm_num_groups=16,
        codebook_size=4096,
        bridge="L/4",
        sample_size=32,
    ),
}


def check_images(images: torch.Tensor, in_channels: int, downsample_factor: int) -> None:
    """Refuse anything but a float (B, in_channels, H, W) batch whose sides are multiples of the downsampling."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor of shape (B, C, H, W), got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(
            f"images must have shape (B, C, H, W), got {tuple(images.shape)}; add a batch dimension with images[None]"
        )
    if not images.dtype.is_floating_point:
        raise TypeError(
            f"images must be float tensors in [-1, 1], got dtype {images.dtype}; "
            "convert 0–255 images with images.float() / 127.5 - 1"
        )
    if images.shape[1] != in_channels:
        raise ValueError(f"this model takes {in_channels}-channel images, got {images.shape[1]} channels")
    f = downsample_factor
    h, w = images.shape[-2:]
    if h % f or w % f:
        raise ValueError(
            f"this model downsamples by {f}: image height and width must be multiples of {f}, got {h}×{w}. "
            f"Resize or crop to e.g. {max(f, h // f * f)}×{max(f, w // f * f)}."
        )


def load_pretrained(loader, pretrained_model_name_or_path, **kwargs):
    """``loader(pretrained_model_name_or_path, **kwargs)`` (a diffusers ``from_pretrained``), with a local
    ``subfolder`` that must exist and is loaded directly, and a clear error for a truncated weights file."""
    subfolder = kwargs.get("subfolder")
    local = os.path.isdir(pretrained_model_name_or_path)
    if subfolder and local and not os.path.isdir(os.path.join(pretrained_model_name_or_path, subfolder)):
        # diffusers would fall back to the folder's root model without a word: a mistyped subfolder (or a
        # folded-only folder asked for unfolded/) must not silently give another model
        found = sorted(
            name
            for name in os.listdir(pretrained_model_name_or_path)
            if os.path.isfile(os.path.join(pretrained_model_name_or_path, name, "config.json"))
        )
        raise FileNotFoundError(
            f"{pretrained_model_name_or_path!r} has no subfolder {subfolder!r} (subfolders with a model: "
            f"{', '.join(found) or 'none'}); drop subfolder to load the model at its root"
        )
    if subfolder and local:
        # diffusers looks for local weights at the folder's root before the subfolder: a training output
        # holds the folded model at the root and the unfolded one in unfolded/, so point at it directly
        pretrained_model_name_or_path = os.path.join(pretrained_model_name_or_path, kwargs.pop("subfolder"))
    try:
        return loader(pretrained_model_name_or_path, **kwargs)
    except OSError as error:
        if "Unable to load weights" not in str(error):
            raise
        raise OSError(
            f"{error}The weights file of {pretrained_model_name_or_path!r} is truncated or corrupt (an interrupted "
            "download or copy?). Delete it and load again; for a Hub id pass force_download=True."
        ) from error


class FVQModel(ModelMixin, ConfigMixin):
    r"""
    An FVQ image tokenizer: encoder → ``quant_conv`` → vector quantizer over a projected codebook →
    ``post_quant_conv`` → decoder. Encoder and decoder are diffusers' ``Encoder`` / ``Decoder``, laid out as in
    LlamaGen's VQGAN, so a folded model (``fold``) is a stock diffusers ``VQModel`` (``to_diffusers``).

    Images are float tensors in [-1, 1] of shape (B, C, H, W), H and W multiples of the downsampling factor
    ``2 ** (len(block_out_channels) - 1)``.

    Parameters:
        in_channels (`int`, defaults to 3): Image channels in.
        out_channels (`int`, defaults to 3): Image channels out.
        down_block_types (`tuple[str]`): Encoder blocks, one per resolution level (diffusers names).
        up_block_types (`tuple[str]`): Decoder blocks, lowest resolution first.
        block_out_channels (`tuple[int]`, defaults to `(128, 128, 256, 256, 512)`): Channels per level; their
            number sets the downsampling factor.
        layers_per_block (`int`, defaults to 2): Residual blocks per encoder level (decoder: one more).
        act_fn (`str`, defaults to `"silu"`): Activation.
        latent_channels (`int`, defaults to 256): Encoder output channels ("z channels") before ``quant_conv``.
        norm_num_groups (`int`, defaults to 32): GroupNorm groups.
        sample_size (`int`, defaults to 256): Training resolution, informational.
        codebook_size (`int`, defaults to 16384): Number of codes K.
        codebook_dim (`int`, defaults to 256): Code dimension d.
        commitment_beta (`float`, defaults to 0.25): Commitment weight β.
        l2_normalize (`bool`, defaults to False): LlamaGen's ``codebook_l2_norm``: latents and lookup codebook are
            l2-normalised at every lookup (cosine distance), as in LlamaGen's released tokenizer.
        codebook_init_l2 (`bool`, defaults to False): FVQ's ``codebook_l2_norm``: the raw codebook's rows are
            l2-normalised once at init; the lookup stays plain L2 over the projected codebook. A converted or loaded
            model's weights are what they are: this only records how training started.
        projector (`str`, defaults to `"vqbridge"`): ``"vqbridge"``, ``"linear"``, ``"mlp"`` or ``"none"``.
        bridge_patch_size (`int`, defaults to 4): VQBridge tile side p.
        bridge_hidden_size (`int`, defaults to 256): VQBridge token width.
        bridge_num_heads (`int`, defaults to 4): VQBridge attention heads (4 in every official preset).
        bridge_depth (`int`, defaults to 2): VQBridge ViT blocks.
        bridge_mlp_ratio (`float`, defaults to 2.0): VQBridge MLP width ratio.
        bridge_output_init_std (`float`, defaults to 0.0): Std of the bridge's final Linear at init; 0 is the
            paper's zero initialisation.
        codebook_init_std (`float`, *optional*): Std of a N(0, std²) init of the raw codebook; ``None`` is the
            paper's uniform(−1/K, 1/K). See ``VectorQuantizer``.
        bridge_flavour (`str`, defaults to `"vit"`): ``"vit"`` (the paper's bridge) or ``"dit"`` (sin-cos positions
            and adaLN-Zero from a learned constant, as the official released training scripts use).
        bridge_num_condition_embeddings (`int`, defaults to 1): Rows of the DiT flavour's condition table (1, or
            1,001 for an official class-conditional bridge).
        bridge_condition_index (`int`, defaults to 0): The row of that table the bridge uses (1000, the null class,
            for a 1,001-row table converted from an official checkpoint).
        folded (`bool`, defaults to False): Set by ``fold``: the codebook is a projected codebook computed once,
            and no projector is left.
        search_chunk_size (`int`, defaults to 2**24): Memory bound of the nearest-code search (distances held
            at once); does not change the result.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        down_block_types: tuple[str, ...] = MODEL_PRESETS["vq-16"]["down_block_types"],
        up_block_types: tuple[str, ...] = MODEL_PRESETS["vq-16"]["up_block_types"],
        block_out_channels: tuple[int, ...] = (128, 128, 256, 256, 512),
        layers_per_block: int = 2,
        act_fn: str = "silu",
        latent_channels: int = 256,
        norm_num_groups: int = 32,
        sample_size: int = 256,
        codebook_size: int = 16384,
        codebook_dim: int = 256,
        commitment_beta: float = 0.25,
        l2_normalize: bool = False,
        projector: str = "vqbridge",
        bridge_patch_size: int = 4,
        bridge_hidden_size: int = 256,
        bridge_num_heads: int = 4,
        bridge_depth: int = 2,
        bridge_mlp_ratio: float = 2.0,
        bridge_output_init_std: float = 0.0,
        codebook_init_std: float | None = None,
        bridge_flavour: str = "vit",
        bridge_num_condition_embeddings: int = 1,
        folded: bool = False,
        search_chunk_size: int | None = DEFAULT_CHUNK_SIZE,
        codebook_init_l2: bool = False,
        bridge_condition_index: int = 0,
    ):
        super().__init__()
        if projector not in PROJECTOR_TYPES:
            raise ValueError(f"Unknown projector {projector!r}; choose one of {', '.join(PROJECTOR_TYPES)}.")
        if folded and projector != "none":
            raise ValueError("a folded model has no projector left: use projector='none' with folded=True")
        if len(down_block_types) != len(block_out_channels) or len(up_block_types) != len(block_out_channels):
            raise ValueError("down_block_types, up_block_types and block_out_channels need one entry per level")
        self.encoder = Encoder(
            in_channels=in_channels,
            out_channels=latent_channels,
            down_block_types=down_block_types,
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            act_fn=act_fn,
            norm_num_groups=norm_num_groups,
            double_z=False,
        )
        self.quant_conv = nn.Conv2d(latent_channels, codebook_dim, 1)
        self.quantize = VectorQuantizer(
            codebook_size,
            codebook_dim,
            projector=build_projector(
                projector,
                codebook_size,
                codebook_dim,
                bridge_preset=None,
                patch_size=bridge_patch_size,
                hidden_size=bridge_hidden_size,
                num_heads=bridge_num_heads,
                depth=bridge_depth,
                mlp_ratio=bridge_mlp_ratio,
                output_init_std=bridge_output_init_std,
                flavour=bridge_flavour,
                num_condition_embeddings=bridge_num_condition_embeddings,
                condition_index=bridge_condition_index,
            ),
            beta=commitment_beta,
            l2_normalize=l2_normalize,
            chunk_size=search_chunk_size,
            codebook_init_std=codebook_init_std,
            codebook_init_l2=codebook_init_l2,
        )
        self.post_quant_conv = nn.Conv2d(codebook_dim, latent_channels, 1)
        self.decoder = Decoder(
            in_channels=latent_channels,
            out_channels=out_channels,
            up_block_types=up_block_types,
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            act_fn=act_fn,
            norm_num_groups=norm_num_groups,
        )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_preset(cls, name: str, **overrides) -> FVQModel:
        """Build a fresh model from a named preset (``MODEL_PRESETS``: ``vq-16``, ``vq-8``, ``tiny``, …).

        Keyword arguments override any config field; ``bridge="L/8"`` (or an official name such as
        ``"QBridge-B/4-d1"``, see ``BRIDGE_PRESETS``) sets the VQBridge fields (patch, hidden size, heads, depth, MLP
        ratio) from a bridge preset, and ``projector="linear"`` (or ``"mlp"``, ``"none"``) swaps the projector for an
        ablation.
        """
        if name not in MODEL_PRESETS:
            raise ValueError(f"Unknown FVQModel preset {name!r}; available presets: {', '.join(MODEL_PRESETS)}.")
        config = dict(MODEL_PRESETS[name])
        bridge = overrides.pop("bridge", config.pop("bridge", None))
        if bridge is not None:
            config.update({_BRIDGE_FIELDS[k]: v for k, v in parse_bridge_preset(bridge).items()})
        unknown = sorted(set(overrides) - set(cls._init_signature_keys()))
        if unknown:
            raise TypeError(
                f"FVQModel has no config field(s) {', '.join(unknown)}; "
                f"valid fields: {', '.join(cls._init_signature_keys())}"
            )
        config.update(overrides)
        return cls(**config)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> FVQModel:
        """Load a saved or pushed FVQModel (folded or not) from a local folder or a Hub id, as diffusers does."""
        return load_pretrained(super().from_pretrained, pretrained_model_name_or_path, **kwargs)

    @classmethod
    def _init_signature_keys(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    # ------------------------------------------------------------------ properties
    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.config.block_out_channels) - 1)

    def tokens_per_image(self, resolution: int) -> int:
        """Codes one ``resolution`` × ``resolution`` image is tokenized into: one per latent position."""
        return (resolution // self.downsample_factor) ** 2

    @property
    def codebook(self) -> torch.Tensor:
        """The lookup codebook Ĉ (K, d) as the quantizer uses it (projected, normalised when l2)."""
        return self.quantize.get_codebook()

    # ------------------------------------------------------------------ checks
    def _check_images(self, images: torch.Tensor) -> None:
        check_images(images, self.config.in_channels, self.downsample_factor)

    # ------------------------------------------------------------------ the tokenizer
    def encode_latents(self, images: torch.Tensor) -> torch.Tensor:
        """Images → continuous latents (B, d, H/f, W/f), before quantisation."""
        self._check_images(images)
        return self.quant_conv(self.encoder(images))

    def decode_quantized(self, quantized: torch.Tensor) -> torch.Tensor:
        """Quantised latents (B, d, h, w) → images."""
        return self.decoder(self.post_quant_conv(quantized))

    def forward(self, images: torch.Tensor, return_dict: bool = True) -> FVQModelOutput | tuple:
        """Reconstruct ``images``; returns the reconstruction, the code indices and the two VQ losses."""
        quantized, indices, (codebook_loss, commitment_loss) = self.quantize(
            self.encode_latents(images), return_loss_breakdown=True
        )
        sample = self.decode_quantized(quantized)
        if not return_dict:
            return sample, indices, codebook_loss, commitment_loss
        return FVQModelOutput(
            sample=sample, indices=indices, codebook_loss=codebook_loss, commitment_loss=commitment_loss
        )

    # the forward hook lets pipelines that offload models to the CPU move the tokenizer in for these calls
    @apply_forward_hook
    def encode_indices(self, images: torch.Tensor) -> torch.LongTensor:
        """Images (B, C, H, W) in [-1, 1] → token indices (B, H/f, W/f)."""
        _, indices, _ = self.quantize(self.encode_latents(images))
        return indices

    @apply_forward_hook
    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Token indices (B, h, w) → images (B, C, h·f, w·f) in [-1, 1]."""
        if not isinstance(indices, torch.Tensor) or indices.ndim != 3:
            shape = tuple(indices.shape) if isinstance(indices, torch.Tensor) else type(indices).__name__
            raise ValueError(f"indices must be a tensor of shape (B, h, w), got {shape}")
        return self.decode_quantized(self.quantize.indices_to_codes(indices))

    # ------------------------------------------------------------------ export
    @torch.no_grad()
    def fold(self) -> FVQModel:
        """A new model whose plain codebook is this model's lookup codebook, computed once.

        The projector and the raw codebook are gone (an l2-normalised codebook is stored normalised):
        inference costs what a plain VQGAN costs, and the indices and reconstructions are those of this model.
        """
        codebook = self.quantize.get_codebook().detach()
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("quantize.")}
        state["quantize.embedding.weight"] = codebook
        folded = self.__class__.from_config(self.config, projector="none", folded=True)
        folded.load_state_dict(state)
        return self._placed_like_self(folded)

    def _placed_like_self(self, other: nn.Module) -> nn.Module:
        other = other.to(self.device)
        if other.dtype != self.dtype:  # a dtype-free .to() avoids diffusers' keep-in-fp32 warning
            other = other.to(dtype=self.dtype)
        return other.train(self.training)

    def to_diffusers(self):
        """A stock ``diffusers.VQModel`` with these weights and the folded codebook.

        ``vq.decode(vq.encode(x).latents).sample`` equals this model's reconstruction, and with
        ``force_not_quantize=True, shape=(B, h, w, d)`` the VQModel decodes this model's indices.

        An l2-normalised model (LlamaGen's) exports too: its codes are stored at unit length, and with unit codes
        the L2-nearest code of any latent is its cosine-nearest code, whose value is what the model decodes. That
        holds for inference; training the VQModel further would not keep the codes normalised.
        """
        from diffusers import VQModel

        folded = self.fold()
        c = self.config
        vq = VQModel(
            in_channels=c.in_channels,
            out_channels=c.out_channels,
            down_block_types=tuple(c.down_block_types),
            up_block_types=tuple(c.up_block_types),
            block_out_channels=tuple(c.block_out_channels),
            layers_per_block=c.layers_per_block,
            act_fn=c.act_fn,
            latent_channels=c.latent_channels,
            sample_size=c.sample_size,
            num_vq_embeddings=c.codebook_size,
            norm_num_groups=c.norm_num_groups,
            vq_embed_dim=c.codebook_dim,
            lookup_from_codebook=True,
        )
        vq.load_state_dict(folded.state_dict(), strict=True)
        return self._placed_like_self(vq).eval()

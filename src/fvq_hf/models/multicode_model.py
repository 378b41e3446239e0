"""MultiCodeFVQModel: FVQ tokenizers with several codes per position, RQ-VAE's residual quantizer or VAR's
multi-scale one, over one codebook produced by a projector (VQBridge by default); arXiv 2509.10140, Sec. 4.4."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import Decoder, Encoder
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from diffusers.utils.accelerate_utils import apply_forward_hook
from torch import nn

from ..quantization.multiscale_quantizer import VAR_SCALES, MultiScaleQuantizer
from ..quantization.projectors import PROJECTOR_TYPES, build_projector, parse_bridge_preset
from ..quantization.residual_quantizer import ResidualQuantizer
from ..quantization.search import DEFAULT_CHUNK_SIZE
from .fvq_model import _BRIDGE_FIELDS, MODEL_PRESETS, _architecture, check_images, load_pretrained

QUANTIZER_TYPES = ("residual", "multiscale")

MULTICODE_PRESETS: dict[str, dict] = {
    # FVQ's RQ-VAE run (the paper's Table 4): the official VQ-32, 32× downsampling, 8 × 8 × 4 codes at 256 px
    "rq-8x8x4": _architecture(
        (128, 128, 256, 256, 512, 512), quantizer="residual", codebook_size=16384, bridge="L/4", sample_size=256
    ),
    # FVQ's VAR run: VAR's tokenizer (ch 128, 16× downsampling, 3 × 3 quant convs) with K = 16,384, d = 256
    "var-10scale": _architecture(
        (128, 128, 256, 256, 512),
        quantizer="multiscale",
        codebook_size=16384,
        codebook_dim=256,
        latent_channels=256,
        quant_conv_kernel_size=3,
        codebook_init_std=1.0,
        bridge="L/4",
        sample_size=256,
    ),
    # VAR's own released tokenizer (vae_ch160v4096z32): ch 160, K = 4,096, d = 32, no projector
    "var-original": _architecture(
        (160, 160, 320, 320, 640),
        quantizer="multiscale",
        codebook_size=4096,
        codebook_dim=32,
        latent_channels=32,
        quant_conv_kernel_size=3,
        codebook_init_std=1.0,
        projector="none",
        sample_size=256,
    ),
    # CPU-sized tokenizers for demos and tests: FVQModel's "tiny" (4× downsampling, 8 × 8 positions at 32 px)
    "rq-tiny": {**MODEL_PRESETS["tiny"], "quantizer": "residual"},
    "var-tiny": {
        **MODEL_PRESETS["tiny"],
        "quantizer": "multiscale",
        "scales": (1, 2, 3, 4, 6, 8),
        "quant_conv_kernel_size": 3,
        "codebook_init_std": 1.0,
    },
}


@dataclass
class MultiCodeFVQModelOutput(BaseOutput):
    """
    Output of ``MultiCodeFVQModel.forward``.

    Args:
        sample (`torch.Tensor` of shape `(batch_size, channels, height, width)`): The reconstruction, in [-1, 1].
        indices (`torch.LongTensor`): The chosen codes: `(batch_size, height / f, width / f, rq_depth)` for the
            residual quantizer; VAR's flat token sequence `(batch_size, Σ pn²)`, scale by scale, each row-major,
            for the multi-scale one (``model.quantize.unflatten_indices`` splits it into scales).
        codebook_loss (`torch.Tensor`): The codebook term, averaged over depths or scales.
        commitment_loss (`torch.Tensor`): The commitment term (× β), averaged over depths or scales.
    """

    sample: torch.Tensor
    indices: torch.LongTensor
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor


class MultiCodeFVQModel(ModelMixin, ConfigMixin):
    r"""
    A multi-code FVQ image tokenizer: encoder → ``quant_conv`` → ``ResidualQuantizer`` (RQ-VAE) or
    ``MultiScaleQuantizer`` (VAR) over one projected codebook → ``post_quant_conv`` → decoder. Encoder and decoder
    are diffusers' ``Encoder`` / ``Decoder`` as in ``FVQModel``. A stock diffusers ``VQModel`` holds one code per
    position, so these models are saved and loaded as ``MultiCodeFVQModel`` only (``to_diffusers`` says so).

    Images are float tensors in [-1, 1] of shape (B, C, H, W), H and W multiples of the downsampling factor; the
    multi-scale quantizer also needs the latent side to be its last scale (256 px for the VAR presets).

    Parameters:
        in_channels (`int`, defaults to 3): Image channels in.
        out_channels (`int`, defaults to 3): Image channels out.
        down_block_types (`tuple[str]`): Encoder blocks, one per resolution level (diffusers names).
        up_block_types (`tuple[str]`): Decoder blocks, lowest resolution first.
        block_out_channels (`tuple[int]`, defaults to `(128, 128, 256, 256, 512)`): Channels per level; their
            number sets the downsampling factor.
        layers_per_block (`int`, defaults to 2): Residual blocks per encoder level (decoder: one more).
        act_fn (`str`, defaults to `"silu"`): Activation.
        latent_channels (`int`, defaults to 256): Encoder output channels before ``quant_conv``.
        norm_num_groups (`int`, defaults to 32): GroupNorm groups.
        sample_size (`int`, defaults to 256): Training resolution, informational.
        quantizer (`str`, defaults to `"residual"`): ``"residual"`` (RQ-VAE, ``rq_depth`` codes per position) or
            ``"multiscale"`` (VAR, one token map per scale of ``scales``).
        codebook_size (`int`, defaults to 16384): Number of codes K, shared by every depth or scale.
        codebook_dim (`int`, defaults to 256): Code dimension d.
        commitment_beta (`float`, defaults to 0.25): Commitment weight β.
        rq_depth (`int`, defaults to 4): Codes per position of the residual quantizer.
        scales (`tuple[int]`, defaults to `(1, 2, 3, 4, 5, 6, 8, 10, 13, 16)`): Token-map sides of the multi-scale
            quantizer, the last equal to the latent side.
        num_phi (`int`, defaults to 4): φ convolutions shared over the scales (VAR's ``share_quant_resi``).
        phi_ratio (`float`, defaults to 0.5): φ(h) = (1 − r)·h + r·conv(h) (VAR's ``quant_resi``).
        quant_conv_kernel_size (`int`, defaults to 1): Kernel of ``quant_conv`` / ``post_quant_conv``: 1 as in
            LlamaGen (and the official FVQ RQ-VAE), 3 as in VAR.
        projector (`str`, defaults to `"vqbridge"`): ``"vqbridge"``, ``"linear"``, ``"mlp"`` or ``"none"``.
        bridge_patch_size (`int`, defaults to 4): VQBridge tile side p.
        bridge_hidden_size (`int`, defaults to 256): VQBridge token width.
        bridge_num_heads (`int`, defaults to 4): VQBridge attention heads.
        bridge_depth (`int`, defaults to 2): VQBridge ViT blocks.
        bridge_mlp_ratio (`float`, defaults to 2.0): VQBridge MLP width ratio.
        bridge_output_init_std (`float`, defaults to 0.0): Std of the bridge's final Linear at init (0: the paper's).
        bridge_flavour (`str`, defaults to `"vit"`): ``"vit"`` (the paper's bridge) or ``"dit"`` (the official
            released scripts').
        bridge_num_condition_embeddings (`int`, defaults to 1): Rows of the DiT flavour's condition table.
        bridge_condition_index (`int`, defaults to 0): The row of that table the bridge uses.
        codebook_init_std (`float`, *optional*): Std of a N(0, std²) init of the raw codebook; ``None`` is
            uniform(−1/K, 1/K) (the official RQ-VAE's); VAR leaves ``nn.Embedding``'s N(0, 1) (1.0).
        cosine_search (`bool`, defaults to False): Multi-scale only: choose codes by cosine similarity (VAR's
            ``using_znorm``) instead of L2 distance; see ``MultiScaleQuantizer``.
        folded (`bool`, defaults to False): Set by ``fold``: the codebook is the projected codebook computed once.
        search_chunk_size (`int`, defaults to 2**24): Memory bound of the nearest-code search.
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
        quantizer: str = "residual",
        codebook_size: int = 16384,
        codebook_dim: int = 256,
        commitment_beta: float = 0.25,
        rq_depth: int = 4,
        scales: tuple[int, ...] = VAR_SCALES,
        num_phi: int = 4,
        phi_ratio: float = 0.5,
        quant_conv_kernel_size: int = 1,
        projector: str = "vqbridge",
        bridge_patch_size: int = 4,
        bridge_hidden_size: int = 256,
        bridge_num_heads: int = 4,
        bridge_depth: int = 2,
        bridge_mlp_ratio: float = 2.0,
        bridge_output_init_std: float = 0.0,
        bridge_flavour: str = "vit",
        bridge_num_condition_embeddings: int = 1,
        bridge_condition_index: int = 0,
        codebook_init_std: float | None = None,
        cosine_search: bool = False,
        folded: bool = False,
        search_chunk_size: int | None = DEFAULT_CHUNK_SIZE,
    ):
        super().__init__()
        if quantizer not in QUANTIZER_TYPES:
            raise ValueError(f"Unknown quantizer {quantizer!r}; choose one of {', '.join(QUANTIZER_TYPES)}.")
        if projector not in PROJECTOR_TYPES:
            raise ValueError(f"Unknown projector {projector!r}; choose one of {', '.join(PROJECTOR_TYPES)}.")
        if folded and projector != "none":
            raise ValueError("a folded model has no projector left: use projector='none' with folded=True")
        if cosine_search and quantizer != "multiscale":
            raise ValueError(
                "cosine_search is an option of the multi-scale quantizer (VAR's using_znorm); the residual one "
                "searches by L2 distance: drop cosine_search"
            )
        if quant_conv_kernel_size not in (1, 3):
            raise ValueError(f"quant_conv_kernel_size must be 1 (LlamaGen) or 3 (VAR), got {quant_conv_kernel_size}")
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
        padding = quant_conv_kernel_size // 2
        self.quant_conv = nn.Conv2d(latent_channels, codebook_dim, quant_conv_kernel_size, padding=padding)
        projector_module = build_projector(
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
        )
        common = {
            "projector": projector_module,
            "beta": commitment_beta,
            "chunk_size": search_chunk_size,
            "codebook_init_std": codebook_init_std,
        }
        if quantizer == "residual":
            self.quantize = ResidualQuantizer(codebook_size, codebook_dim, depth=rq_depth, **common)
        else:
            self.quantize = MultiScaleQuantizer(
                codebook_size,
                codebook_dim,
                scales=tuple(scales),
                num_phi=num_phi,
                phi_ratio=phi_ratio,
                cosine_search=cosine_search,
                **common,
            )
        self.post_quant_conv = nn.Conv2d(codebook_dim, latent_channels, quant_conv_kernel_size, padding=padding)
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
    def from_preset(cls, name: str, **overrides) -> MultiCodeFVQModel:
        """Build a fresh model from a named preset (``MULTICODE_PRESETS``: ``rq-8x8x4``, ``var-10scale``,
        ``var-original``, ``rq-tiny``, ``var-tiny``).

        Keyword arguments override any config field; ``bridge="L/8"`` (or an official name such as
        ``"QBridge-B/4"``) sets the VQBridge fields from a bridge preset.
        """
        if name not in MULTICODE_PRESETS:
            raise ValueError(
                f"Unknown MultiCodeFVQModel preset {name!r}; available presets: {', '.join(MULTICODE_PRESETS)}."
            )
        config = dict(MULTICODE_PRESETS[name])
        bridge = overrides.pop("bridge", config.pop("bridge", None))
        if bridge is not None:
            config.update({_BRIDGE_FIELDS[k]: v for k, v in parse_bridge_preset(bridge).items()})
        keys = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        unknown = sorted(set(overrides) - set(keys))
        if unknown:
            raise TypeError(
                f"MultiCodeFVQModel has no config field(s) {', '.join(unknown)}; valid fields: {', '.join(keys)}"
            )
        config.update(overrides)
        return cls(**config)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> MultiCodeFVQModel:
        """Load a saved or pushed MultiCodeFVQModel (folded or not) from a local folder or a Hub id, as diffusers
        does; a local ``subfolder`` (e.g. ``unfolded``) must exist, as for ``FVQModel``."""
        return load_pretrained(super().from_pretrained, pretrained_model_name_or_path, **kwargs)

    # ------------------------------------------------------------------ properties
    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.config.block_out_channels) - 1)

    def tokens_per_image(self, resolution: int) -> int:
        """Codes one ``resolution`` × ``resolution`` image is tokenized into: ``rq_depth`` per latent position, or
        Σ pn² over the scales (a multi-scale tokenizer takes one size only)."""
        if self.config.quantizer == "multiscale":
            return self.quantize.num_tokens
        return (resolution // self.downsample_factor) ** 2 * self.config.rq_depth

    @property
    def codebook(self) -> torch.Tensor:
        """The lookup codebook Ĉ (K, d) every depth or scale chooses from."""
        return self.quantize.get_codebook()

    @property
    def num_levels(self) -> int:
        """Depths (residual) or scales (multi-scale)."""
        return self.quantize.num_levels

    # ------------------------------------------------------------------ the tokenizer
    def encode_latents(self, images: torch.Tensor) -> torch.Tensor:
        """Images → continuous latents (B, d, H/f, W/f), before quantisation."""
        check_images(images, self.config.in_channels, self.downsample_factor)
        if self.config.quantizer == "multiscale":
            side = self.config.scales[-1]
            h, w = (s // self.downsample_factor for s in images.shape[-2:])
            if (h, w) != (side, side):
                size = side * self.downsample_factor
                raise ValueError(
                    f"this multi-scale tokenizer takes {size}×{size} images (its last scale is {side} × {side} "
                    f"tokens at {self.downsample_factor}× downsampling), got {images.shape[-2]}×{images.shape[-1]}"
                )
        return self.quant_conv(self.encoder(images))

    def decode_quantized(self, quantized: torch.Tensor) -> torch.Tensor:
        """Quantised latents (B, d, h, w) → images."""
        return self.decoder(self.post_quant_conv(quantized))

    def _quantize(self, latents: torch.Tensor):
        quantized, indices, losses = self.quantize(latents, return_loss_breakdown=True)
        if self.config.quantizer == "multiscale":
            indices = self.quantize.flatten_indices(indices)
        return quantized, indices, losses

    def forward(self, images: torch.Tensor, return_dict: bool = True) -> MultiCodeFVQModelOutput | tuple:
        """Reconstruct ``images``; returns the reconstruction, the code indices and the two VQ losses."""
        quantized, indices, (codebook_loss, commitment_loss) = self._quantize(self.encode_latents(images))
        sample = self.decode_quantized(quantized)
        if not return_dict:
            return sample, indices, codebook_loss, commitment_loss
        return MultiCodeFVQModelOutput(
            sample=sample, indices=indices, codebook_loss=codebook_loss, commitment_loss=commitment_loss
        )

    @apply_forward_hook
    def encode_indices(self, images: torch.Tensor) -> torch.LongTensor:
        """Images (B, C, H, W) in [-1, 1] → codes: (B, H/f, W/f, rq_depth), or VAR's token sequence (B, Σ pn²)."""
        return self._quantize(self.encode_latents(images))[1]

    @apply_forward_hook
    def decode_indices(
        self, indices: torch.Tensor | Sequence[torch.Tensor], num_levels: int | None = None
    ) -> torch.Tensor:
        """Codes → images (B, C, H, W) in [-1, 1], from the first ``num_levels`` depths or scales (``None``: all given).

        Args:
            indices: what ``encode_indices`` returns, or its first depths (``indices[..., :k]``) or first scales
                (the token sequence's first Σ pn² tokens, or a list of per-scale maps).
            num_levels: how many depths or scales to use, from the first.
        """
        return self.decode_quantized(self.quantize.indices_to_features(indices, num_levels=num_levels))

    @apply_forward_hook
    def decode_coarse_to_fine(self, indices: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The images decoded from the accumulated features after each depth or scale, coarse to fine, all at full
        size (decoding each scale's token map at its own size gives poor pictures)."""
        return [self.decode_quantized(features) for features in self.quantize.coarse_to_fine(indices)]

    # ------------------------------------------------------------------ export
    @torch.no_grad()
    def fold(self) -> MultiCodeFVQModel:
        """A new model whose plain codebook is this model's lookup codebook, computed once; the projector and the
        raw codebook are gone, the codes and reconstructions are this model's."""
        codebook = self.quantize.get_codebook().detach()
        state = {
            k: v
            for k, v in self.state_dict().items()
            if not (k.startswith("quantize.projector.") or k == "quantize.embedding.weight")
        }
        state["quantize.embedding.weight"] = codebook
        folded = self.__class__.from_config(self.config, projector="none", folded=True)
        folded.load_state_dict(state)
        folded = folded.to(self.device)
        if folded.dtype != self.dtype:
            folded = folded.to(dtype=self.dtype)
        return folded.train(self.training)

    def to_diffusers(self):
        """Not possible without loss: a stock diffusers ``VQModel`` looks up one code per position and has neither
        a residual depth nor VAR's scales and φ convolutions."""
        raise NotImplementedError(
            f"a {self.config.quantizer} tokenizer has several codes per position; a stock diffusers VQModel holds "
            "one, so exporting to it would change the reconstructions. Save it with save_pretrained and load it "
            "with fvq_hf.MultiCodeFVQModel.from_pretrained."
        )

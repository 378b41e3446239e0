"""Codebook projectors: functions f that map the raw codebook C (K × d) to the lookup codebook Ĉ = f(C).

The projector is what FVQ is about. Every projector here takes the raw codebook as a (K, d) tensor and
returns a (K, d) tensor, so the quantizer never needs to know which one it holds:

- ``"none"``: Ĉ = C, a plain VQGAN codebook (the collapsing baseline);
- ``"linear"``: a single ``Linear(d, d)`` (SimVQ / VQGAN-LC style);
- ``"mlp"``: a 5-layer MLP (``Linear + ReLU`` × 4, ``Linear``);
- ``"vqbridge"``: :class:`VQBridge`, the compress–process–recover ViT of the paper.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

PROJECTOR_TYPES = ("none", "linear", "mlp", "vqbridge")

# Bridge widths keep a head dimension of 64, as in the paper's hidden = 64 × 4 heads = 256 for "L".
BRIDGE_WIDTHS = {"S": (64, 1), "B": (128, 2), "L": (256, 4), "XL": (512, 8)}
BRIDGE_PRESETS = ("S/4", "B/4", "L/4", "L/8", "XL/8", "S/2", "B/8", "XL/4", "L/16")


def parse_bridge_preset(name: str) -> dict:
    """Turn a preset name such as ``"L/4"`` into ``VQBridge`` keyword arguments.

    The letter picks the width (hidden size and heads, see ``BRIDGE_WIDTHS``), the number is the patch
    size p: each bridge token covers a p × p tile of the codebook grid, i.e. p² codes.
    """
    width, _, patch = name.partition("/")
    if width not in BRIDGE_WIDTHS or not patch.isdigit() or int(patch) < 1:
        raise ValueError(
            f"Unknown VQBridge preset {name!r}. A preset is WIDTH/PATCH with WIDTH one of "
            f"{', '.join(BRIDGE_WIDTHS)} and PATCH a positive integer; the paper's are {', '.join(BRIDGE_PRESETS[:5])}."
        )
    hidden_size, num_heads = BRIDGE_WIDTHS[width]
    return {"hidden_size": hidden_size, "num_heads": num_heads, "patch_size": int(patch)}


def _sizes_that_work(codebook_size: int, patch_size: int, count: int = 4) -> str:
    side = max(patch_size, round(math.sqrt(max(codebook_size, 1)) / patch_size) * patch_size)
    sides = sorted({max(patch_size, side + k * patch_size) for k in range(-(count // 2), count)})[:count]
    return ", ".join(f"{s * s:,} ({s}²)" for s in sides)


def check_bridge_grid(codebook_size: int, patch_size: int) -> int:
    """Return √K, or raise a ``ValueError`` saying which codebook sizes work with this patch size."""
    side = math.isqrt(codebook_size) if codebook_size > 0 else 0
    if side * side != codebook_size:
        raise ValueError(
            f"codebook_size={codebook_size:,} is not a perfect square: VQBridge views the codebook as a "
            f"√K × √K grid. Sizes that work with patch size {patch_size}: {_sizes_that_work(codebook_size, patch_size)}."
        )
    if side % patch_size:
        raise ValueError(
            f"codebook_size={codebook_size:,} gives a {side} × {side} grid, which patch size {patch_size} does not "
            f"divide. Use a patch size that divides {side}, or one of these sizes: "
            f"{_sizes_that_work(codebook_size, patch_size)}."
        )
    return side


def slot_indices(indices: torch.Tensor, side: int, patch_size: int) -> torch.Tensor:
    """The slot (position inside its p × p tile, 0 … p² − 1) of each code index of a side × side codebook grid."""
    return (indices // side % patch_size) * patch_size + indices % side % patch_size


class _Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden_size={dim} must be divisible by num_heads={num_heads}.")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _ViTBlock(nn.Module):
    """Pre-norm transformer block; the norms carry no affine parameters, as in the paper's bridge."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = _Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class _DiTBlock(_ViTBlock):
    """A ViT block whose norms are shifted, scaled and gated by adaLN-Zero modulation from a condition vector."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__(dim, num_heads, mlp_ratio)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(_modulate(self.norm1(x), shift_msa, scale_msa))
        return x + gate_mlp.unsqueeze(1) * self.mlp(_modulate(self.norm2(x), shift_mlp, scale_mlp))


class _ConstantEmbedder(nn.Module):
    """The DiT flavour's condition: a learned vector (row 0 of a label-embedding table), the same for every code."""

    def __init__(self, rows: int, dim: int):
        super().__init__()
        self.embedding_table = nn.Embedding(rows, dim)

    def forward(self) -> torch.Tensor:
        return self.embedding_table.weight[:1]


def sincos_pos_embed_2d(dim: int, side: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding (1, side², dim) in the MAE / DiT layout.

    Tokens are numbered row-major; the first half of the channels encodes the column, the second the row
    (MAE's meshgrid puts the width coordinate first).
    """
    if dim % 4:
        raise ValueError(f"a 2-D sin-cos position embedding needs a hidden size divisible by 4, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    coords = torch.arange(side, dtype=torch.float64)
    rows, cols = coords.repeat_interleave(side), coords.repeat(side)

    def encode(pos: torch.Tensor) -> torch.Tensor:
        angles = pos[:, None] * omega[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(cols), encode(rows)], dim=1).float()[None]


class _PatchEmbed(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, patch_size: int):
        super().__init__()
        self.proj = nn.Conv2d(dim_in, dim_out, kernel_size=patch_size, stride=patch_size)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        return self.proj(grid).flatten(2).transpose(1, 2)  # (1, tokens, hidden)


class _FinalLayer(nn.Module):
    def __init__(self, hidden: int, patch_size: int, dim_out: int, modulated: bool = False):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden, patch_size * patch_size * dim_out)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden)) if modulated else None

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm_final(x)
        if self.adaLN_modulation is not None:
            shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
            x = _modulate(x, shift, scale)
        return self.linear(x)


class VQBridge(ModelMixin, ConfigMixin):
    r"""
    VQBridge: the compress–process–recover projector of FVQ (arXiv 2509.10140).

    The raw codebook C (K × d) is viewed as a d-channel √K × √K image. A p × p, stride-p convolution
    compresses each tile of p² codes into one token (compress); ``depth`` pre-norm ViT blocks let all tokens
    interact (process); a LayerNorm and a zero-initialised Linear expand every token back to its p² codes,
    which are unpatchified to (K, d) (recover). Because the last Linear starts at zero, the projected codebook
    is all zeros at step 0 and the codes separate as training proceeds. After training the projection is
    computed once and stored as a plain codebook (see ``FVQModel.fold``), so inference pays nothing for it.

    Parameters:
        codebook_size (`int`, defaults to 16384): Number of codes K; must be a perfect square whose side √K is
            divisible by ``patch_size``.
        codebook_dim (`int`, defaults to 256): Code dimension d.
        patch_size (`int`, defaults to 4): Tile side p; each bridge token covers p² codes.
        hidden_size (`int`, defaults to 256): Width of the bridge tokens (the paper finds hidden = d best).
        num_heads (`int`, defaults to 4): Attention heads of each ViT block.
        depth (`int`, defaults to 2): Number of ViT blocks (the paper finds 2 better than 1 or 4).
        mlp_ratio (`float`, defaults to 2.0): MLP width as a multiple of ``hidden_size``.
        output_init_std (`float`, defaults to 0.0): Initial standard deviation of the final Linear's weight.
            ``0.0`` is the paper's zero initialisation; a small positive value (e.g. ``1e-3``) starts the codes
            apart; it departs from the official recipe, and the config records it.
        flavour (`str`, defaults to `"vit"`): ``"vit"`` is the paper's bridge (no positional embedding).
            ``"dit"`` is the flavour the official released training scripts use: a fixed 2-D sin-cos positional
            embedding on the tokens and adaLN-Zero modulation of every block from one learned constant vector.
        num_condition_embeddings (`int`, defaults to 1): Rows of the DiT flavour's constant table (row 0 is
            used; official checkpoints may carry more). Ignored by the ViT flavour.
    """

    @register_to_config
    def __init__(
        self,
        codebook_size: int = 16384,
        codebook_dim: int = 256,
        patch_size: int = 4,
        hidden_size: int = 256,
        num_heads: int = 4,
        depth: int = 2,
        mlp_ratio: float = 2.0,
        output_init_std: float = 0.0,
        flavour: str = "vit",
        num_condition_embeddings: int = 1,
    ):
        super().__init__()
        if flavour not in ("vit", "dit"):
            raise ValueError(f"Unknown VQBridge flavour {flavour!r}; choose 'vit' (the paper's) or 'dit' (the official scripts').")
        self.grid_side = check_bridge_grid(codebook_size, patch_size)
        self.x_embedder = _PatchEmbed(codebook_dim, hidden_size, patch_size)
        dit = flavour == "dit"
        if dit:
            tiles = self.grid_side // patch_size
            self.pos_embed = nn.Parameter(sincos_pos_embed_2d(hidden_size, tiles), requires_grad=False)
            self.y_embedder = _ConstantEmbedder(num_condition_embeddings, hidden_size)
        block = _DiTBlock if dit else _ViTBlock
        self.blocks = nn.ModuleList(block(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.final_layer = _FinalLayer(hidden_size, patch_size, codebook_dim, modulated=dit)
        self.reset_parameters()

    @classmethod
    def from_preset(cls, name: str, codebook_size: int = 16384, codebook_dim: int = 256, **overrides) -> "VQBridge":
        """Build a bridge from a preset such as ``"L/4"`` (see ``BRIDGE_PRESETS``); keywords override it."""
        return cls(codebook_size=codebook_size, codebook_dim=codebook_dim, **{**parse_bridge_preset(name), **overrides})

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        # the patch convolution is a Linear over each flattened p × p × d tile
        weight = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        if self.config.flavour == "dit":
            nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
            for module in [*(b.adaLN_modulation[-1] for b in self.blocks), self.final_layer.adaLN_modulation[-1]]:
                nn.init.zeros_(module.weight)  # adaLN-Zero: every block starts as the identity
                nn.init.zeros_(module.bias)
        std = self.config.output_init_std
        if std > 0:
            nn.init.normal_(self.final_layer.linear.weight, std=std)
        else:
            nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def forward(self, codebook: torch.Tensor) -> torch.Tensor:
        """Map the raw codebook (K, d) to the projected codebook (K, d)."""
        k, d = codebook.shape
        side, p = self.grid_side, self.config.patch_size
        grid = codebook.t().reshape(1, d, side, side)  # code k sits at row k // side, column k % side
        x = self.x_embedder(grid)
        if self.config.flavour == "dit":
            c = self.y_embedder()
            x = x + self.pos_embed
            for block in self.blocks:
                x = block(x, c)
            x = self.final_layer(x, c)
        else:
            for block in self.blocks:
                x = block(x)
            x = self.final_layer(x)
        # channels ordered (row in tile, column in tile, d)
        tiles = side // p
        x = x.reshape(tiles, tiles, p, p, d).permute(4, 0, 2, 1, 3).reshape(d, k)
        return x.t()

    def slot_of(self, indices: torch.Tensor) -> torch.Tensor:
        """The slot (position inside its p × p tile, 0 … p² − 1) of each code index.

        All codes of one slot come from the same rows of the final Linear, so they tend to live or die
        together; the number of live slots is worth logging beside usage.
        """
        return slot_indices(indices, self.grid_side, self.config.patch_size)


class LinearProjector(nn.Module):
    """Ĉ = C Wᵀ + b: the single-Linear projector of SimVQ / VQGAN-LC, the paper's weak baseline."""

    def __init__(self, codebook_dim: int):
        super().__init__()
        self.linear = nn.Linear(codebook_dim, codebook_dim)

    def forward(self, codebook: torch.Tensor) -> torch.Tensor:
        return self.linear(codebook)


class MLPProjector(nn.Module):
    """The paper's 5-layer MLP baseline: (Linear + ReLU) × (num_layers − 1), then Linear, all of width d."""

    def __init__(self, codebook_dim: int, num_layers: int = 5):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(num_layers - 1):
            layers += [nn.Linear(codebook_dim, codebook_dim), nn.ReLU()]
        layers.append(nn.Linear(codebook_dim, codebook_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, codebook: torch.Tensor) -> torch.Tensor:
        return self.net(codebook)


def build_projector(
    projector: str,
    codebook_size: int,
    codebook_dim: int,
    bridge_preset: str | None = "L/4",
    **bridge_kwargs,
) -> nn.Module | None:
    """Build the projector named by ``projector`` (one of ``PROJECTOR_TYPES``); ``"none"`` returns ``None``.

    For ``"vqbridge"`` the preset gives the defaults and ``bridge_kwargs`` (``patch_size``, ``hidden_size``,
    ``num_heads``, ``depth``, ``mlp_ratio``, ``output_init_std``, ``flavour``, ``num_condition_embeddings``)
    override them; ``None`` values are ignored.
    """
    if projector == "none":
        return None
    if projector == "linear":
        return LinearProjector(codebook_dim)
    if projector == "mlp":
        return MLPProjector(codebook_dim)
    if projector == "vqbridge":
        kwargs = parse_bridge_preset(bridge_preset) if bridge_preset else {}
        kwargs.update({k: v for k, v in bridge_kwargs.items() if v is not None})
        return VQBridge(codebook_size=codebook_size, codebook_dim=codebook_dim, **kwargs)
    raise ValueError(f"Unknown projector {projector!r}; choose one of {', '.join(PROJECTOR_TYPES)}.")

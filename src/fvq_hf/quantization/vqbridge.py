"""VQBridge: the compress–process–recover projector of FVQ (arXiv 2509.10140, Sec. 3.2, Fig. 4).

The raw codebook C (K × d) is viewed as a d-channel √K × √K image; a p × p patch embedding compresses each tile of
p² codes into one token, a few ViT blocks let every token see every other, and a zero-initialised Linear expands
each token back into its p² codes. After training the output is computed once and stored as a plain codebook.

Presets carry the names of the official code's ``QBridge_models`` table, so a checkpoint's ``QB_type`` names the
bridge exactly: ``WIDTH/PATCH`` with an optional depth suffix, e.g. ``"L/4"``, ``"B/4-d1"``, ``"S/4-d4"``, also
written as in the official code (``"QBridge-L/4"``, ``"Qbridge-S/4-d4"``). Every official preset has 4 attention
heads; the width letter sets the head dimension (``XS`` 8, ``S`` 16, ``B`` 32, ``L`` 64, ``XL`` 128, i.e. hidden
sizes 32 to 512); depth is 2 unless the name ends in ``-d1`` or ``-d4``; the MLP ratio is 2. The number of heads
does not show in a checkpoint's tensors, which is why the names must mean what they mean there.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

BRIDGE_NUM_HEADS = 4
BRIDGE_HEAD_DIMS = {"XS": 8, "S": 16, "B": 32, "L": 64, "XL": 128}
# (hidden size, heads) of each width letter
BRIDGE_WIDTHS = {width: (head_dim * BRIDGE_NUM_HEADS, BRIDGE_NUM_HEADS) for width, head_dim in BRIDGE_HEAD_DIMS.items()}
BRIDGE_DEPTH = 2
BRIDGE_MLP_RATIO = 2.0

# The presets of the official code, short names; the paper's released runs use L/4 (16k codes) and L/8 (65k, 262k).
BRIDGE_PRESETS = (
    "L/4",
    "L/8",
    "XS/2",
    "S/2",
    "S/4",
    "S/8",
    "B/2",
    "B/4",
    "B/8",
    "L/2",
    "XL/4",
    "XL/8",
    "B/4-d1",
    "L/4-d1",
    "S/4-d4",
    "B/4-d4",
    "L/2-d4",
    "L/4-d4",
    "XL/4-d4",
)
# Two more names of the official table, for a bridge as wide as a SigLIP2-B feature (head dimension 192).
_WIDE_PRESETS = {
    "siglip2-B-p16-256/4": {"hidden_size": 768, "patch_size": 4, "depth": 2},
    "d4-siglip2-B-p16-256/4": {"hidden_size": 768, "patch_size": 4, "depth": 4},
}
_PRESET_NAME = re.compile(r"(?:[Qq][Bb]ridge-)?(XS|S|B|L|XL)/(\d+)(?:-d(\d+))?")
_OFFICIAL_PREFIX = re.compile(r"^[Qq][Bb]ridge-")


def official_bridge_name(preset: str) -> str:
    """The name the official code gives a preset (``"L/4"`` → ``"QBridge-L/4"``; it spells one ``Qbridge-S/4-d4``)."""
    return ("Qbridge-" if preset == "S/4-d4" else "QBridge-") + preset


def parse_bridge_preset(name: str) -> dict:
    """Turn a preset name such as ``"L/4"`` or ``"QBridge-B/4-d1"`` into ``VQBridge`` keyword arguments.

    The letter picks the width (hidden size ``4 × head dimension`` with 4 heads, see ``BRIDGE_WIDTHS``), the number
    is the patch size p (each bridge token covers a p × p tile of the codebook grid, i.e. p² codes), and an optional
    ``-dN`` sets the depth (2 otherwise). Returns ``hidden_size``, ``num_heads``, ``patch_size``, ``depth`` and
    ``mlp_ratio``; raises a ``ValueError`` listing the known presets for anything else.
    """
    stripped = _OFFICIAL_PREFIX.sub("", name, count=1) if isinstance(name, str) else None
    if stripped in _WIDE_PRESETS:
        return {"num_heads": BRIDGE_NUM_HEADS, "mlp_ratio": BRIDGE_MLP_RATIO, **_WIDE_PRESETS[stripped]}
    match = _PRESET_NAME.fullmatch(name) if isinstance(name, str) else None
    if match is None or int(match[2]) < 1 or (match[3] is not None and int(match[3]) < 1):
        raise ValueError(
            f"Unknown VQBridge preset {name!r}. A preset is WIDTH/PATCH[-dDEPTH] with WIDTH one of "
            f"{', '.join(BRIDGE_WIDTHS)}, optionally prefixed 'QBridge-' as in the official code; the official "
            f"presets are {', '.join(BRIDGE_PRESETS)}."
        )
    hidden_size, num_heads = BRIDGE_WIDTHS[match[1]]
    return {
        "hidden_size": hidden_size,
        "num_heads": num_heads,
        "patch_size": int(match[2]),
        "depth": int(match[3]) if match[3] else BRIDGE_DEPTH,
        "mlp_ratio": BRIDGE_MLP_RATIO,
    }


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
            f"√K × √K grid. Sizes that work with patch size {patch_size}: "
            f"{_sizes_that_work(codebook_size, patch_size)}."
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
    """The DiT flavour's condition: one row of a label-embedding table, the same vector for every code."""

    def __init__(self, rows: int, dim: int, index: int = 0):
        super().__init__()
        if not 0 <= index < rows:
            raise ValueError(f"condition_index={index} is not a row of a {rows}-row condition table")
        self.index = index
        self.embedding_table = nn.Embedding(rows, dim)

    def forward(self) -> torch.Tensor:
        return self.embedding_table.weight[self.index : self.index + 1]


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
    VQBridge: the compress–process–recover projector of FVQ (arXiv 2509.10140, Sec. 3.2).

    The raw codebook C (K × d) is viewed as a d-channel √K × √K image. A p × p, stride-p convolution
    compresses each tile of p² codes into one token (compress); ``depth`` pre-norm ViT blocks let all tokens
    interact (process); a LayerNorm and a zero-initialised Linear expand every token back to its p² codes,
    which are unpatchified to (K, d) (recover). Because the last Linear starts at zero, the projected codebook
    is all zeros at step 0 and the codes separate as training proceeds. After training the projection is
    computed once and stored as a plain codebook (see ``FVQModel.fold``), so inference pays nothing for it.

    ``VQBridge.from_preset("L/4", codebook_size=16384, codebook_dim=256)`` builds one of the official presets
    (``BRIDGE_PRESETS``; every one has 4 heads, see the module docstring); the defaults below are ``L/4``.

    Parameters:
        codebook_size (`int`, defaults to 16384): Number of codes K; must be a perfect square whose side √K is
            divisible by ``patch_size``.
        codebook_dim (`int`, defaults to 256): Code dimension d.
        patch_size (`int`, defaults to 4): Tile side p; each bridge token covers p² codes.
        hidden_size (`int`, defaults to 256): Width of the bridge tokens (the paper finds hidden = d best).
        num_heads (`int`, defaults to 4): Attention heads of each ViT block (4 in every official preset).
        depth (`int`, defaults to 2): Number of ViT blocks (the paper finds 2 better than 1 or 4).
        mlp_ratio (`float`, defaults to 2.0): MLP width as a multiple of ``hidden_size``.
        output_init_std (`float`, defaults to 0.0): Initial standard deviation of the final Linear's weight.
            ``0.0`` is the paper's zero initialisation; a small positive value (e.g. ``1e-3``) starts the codes
            apart; it departs from the official recipe, and the config records it.
        flavour (`str`, defaults to `"vit"`): ``"vit"`` is the paper's bridge (no positional embedding).
            ``"dit"`` is the flavour the official released training scripts use: a fixed 2-D sin-cos positional
            embedding on the tokens and adaLN-Zero modulation of every block from one learned constant vector.
        num_condition_embeddings (`int`, defaults to 1): Rows of the DiT flavour's condition table. The official
            released scripts train with a 1-row table; class-conditional official bridges carry 1,001 (1,000 classes
            and the null class). Ignored by the ViT flavour.
        condition_index (`int`, defaults to 0): The row of that table the bridge is computed with. For a 1,001-row
            table the official conversion to a plain codebook uses row 1000, the null class, and so does
            ``fvq-convert``. Ignored by the ViT flavour.
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
        condition_index: int = 0,
    ):
        super().__init__()
        if flavour not in ("vit", "dit"):
            raise ValueError(
                f"Unknown VQBridge flavour {flavour!r}; choose 'vit' (the paper's) or 'dit' (the official scripts')."
            )
        self.grid_side = check_bridge_grid(codebook_size, patch_size)
        self.x_embedder = _PatchEmbed(codebook_dim, hidden_size, patch_size)
        dit = flavour == "dit"
        if dit:
            tiles = self.grid_side // patch_size
            self.pos_embed = nn.Parameter(sincos_pos_embed_2d(hidden_size, tiles), requires_grad=False)
            self.y_embedder = _ConstantEmbedder(num_condition_embeddings, hidden_size, condition_index)
        block = _DiTBlock if dit else _ViTBlock
        self.blocks = nn.ModuleList(block(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.final_layer = _FinalLayer(hidden_size, patch_size, codebook_dim, modulated=dit)
        self.reset_parameters()

    @classmethod
    def from_preset(cls, name: str, codebook_size: int = 16384, codebook_dim: int = 256, **overrides) -> VQBridge:
        """Build a bridge from a preset such as ``"L/4"`` or ``"QBridge-B/4-d1"`` (``BRIDGE_PRESETS``).

        Keyword arguments override the preset's fields.
        """
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

    def live_slots(self, counts: torch.Tensor) -> int:
        """How many of the p² slots have at least one code used, given a (K,) code histogram (e.g. the counts of
        a ``CodebookUsage``, or a level's or the overall row of a ``LevelUsage``)."""
        if counts.shape != (self.config.codebook_size,):
            raise ValueError(f"expected a ({self.config.codebook_size},) code histogram, got {tuple(counts.shape)}")
        return int(self.slot_of(torch.nonzero(counts > 0).flatten()).unique().numel())

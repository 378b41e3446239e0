"""FVQTransformer: LlamaGen's class-conditional GPT over tokenizer codes (FVQ trains it unchanged, paper §4.3).

A decoder-only Llama: RMSNorm pre-norm blocks, SwiGLU, fused bias-free ``wqkv``, 2-D rotary positions, a class
token in front of the image tokens. Submodule names follow LlamaGen's ``autoregressive/models/gpt.py``, so its
c2i checkpoints load with ``strict=True`` (``fvq-convert`` drops the ``freqs_cis`` and KV-cache buffers they may
carry). The rotary table and the KV cache are not part of ``state_dict()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from .decode_kernels import DecodeKernels, forced_form

# LlamaGen's class-conditional sizes (layers, heads, width); head dim 64 throughout
TRANSFORMER_PRESETS: dict[str, dict] = {
    "GPT-B": {"n_layer": 12, "n_head": 12, "dim": 768},
    "GPT-L": {"n_layer": 24, "n_head": 16, "dim": 1024},
    "GPT-XL": {"n_layer": 36, "n_head": 20, "dim": 1280},
    "GPT-XXL": {"n_layer": 48, "n_head": 24, "dim": 1536},
    "GPT-XXXL": {"n_layer": 48, "n_head": 40, "dim": 2560},
    # CPU-sized, for tests and the embedded demo; multiple_of 32 keeps the SwiGLU hidden size at 8·dim/3
    "tiny": {"n_layer": 4, "n_head": 4, "dim": 128, "multiple_of": 32},
}


@dataclass
class FVQTransformerOutput(BaseOutput):
    """
    Output of ``FVQTransformer.forward``.

    Args:
        logits (`torch.FloatTensor` of shape `(batch_size, num_tokens, vocab_size)`): fp32 logits; ``logits[:, t]``
            predicts image token t from the class and tokens ``0 … t−1``.
    """

    logits: torch.FloatTensor


def swiglu_hidden_size(dim: int, multiple_of: int, ffn_dim_multiplier: float | None = None) -> int:
    """LlamaGen's SwiGLU width: ``int(2 · 4·dim / 3)``, optionally scaled, rounded up to ``multiple_of``."""
    hidden = int(2 * 4 * dim / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return math.ceil(hidden / multiple_of) * multiple_of


def rope_2d_table(grid_size: int, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, each (1 + grid_size², head_dim / 2), for the class position then the raster-ordered grid.

    Rotation pairs are interleaved ``(x[2j], x[2j+1])``; the first head_dim/4 pairs turn with the token's row,
    the last head_dim/4 with its column, at frequencies ``base^(−4k / head_dim)``. The class position has
    cos = sin = 0, so its query and key are exactly zero, as in LlamaGen.
    """
    if head_dim % 4:
        raise ValueError(f"2-D RoPE needs a head dimension divisible by 4, got {head_dim}")
    quarter = head_dim // 4
    # fp32 throughout, in this order, so the angles are LlamaGen's to the last bit
    freqs = 1.0 / (base ** (torch.arange(quarter, dtype=torch.float32) * 2 / (head_dim // 2)))
    angles = torch.outer(torch.arange(grid_size, dtype=torch.float32), freqs)  # (grid, quarter)
    rows = angles[:, None, :].expand(grid_size, grid_size, quarter)
    cols = angles[None, :, :].expand(grid_size, grid_size, quarter)
    grid = torch.cat([rows, cols], dim=-1).reshape(grid_size * grid_size, 2 * quarter)
    zero = torch.zeros(1, 2 * quarter)
    return torch.cat([zero, grid.cos()]), torch.cat([zero, grid.sin()])


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of ``x`` (..., D) by angles given as cos/sin (..., D/2); computed in fp32.

    The definition, written as LlamaGen writes it. The model runs ``apply_rope_pairs``, the same values to the
    last bit in fewer kernels (a test checks the two agree).
    """
    pairs = x.float().unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack([even * cos - odd * sin, odd * cos + even * sin], dim=-1)
    return rotated.flatten(-2).type_as(x)


def rope_pair_tables(cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rotary table (T, D/2) as (T, D) factors for ``x · cos2 + swap_pairs(x) · sin2``.

    ``cos2`` repeats each cosine for both members of its pair, ``sin2`` is ``(−sin, sin)`` per pair, so
    ``even · cos + odd · (−sin)`` and ``odd · cos + even · sin`` are ``apply_rope``'s values to the last bit
    (negation is exact) in three elementwise kernels instead of ten.
    """
    return cos.repeat_interleave(2, dim=-1), torch.stack([-sin, sin], dim=-1).flatten(-2)


def apply_rope_pairs(x: torch.Tensor, cos2: torch.Tensor, sin2: torch.Tensor) -> torch.Tensor:
    """``apply_rope`` for ``x`` (..., D) with the broadcastable (..., D) factors of ``rope_pair_tables``."""
    x32 = x.float()
    swapped = x32.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)
    return (x32 * cos2 + swapped * sin2).type_as(x)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``x / rms(x)`` computed in fp32, cast back to ``x``'s dtype, then scaled (LlamaGen's order)."""
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).type_as(x) * weight


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


class KVCache:
    """Keys and values of every layer for the tokens fed so far; preallocated, filled left to right.

    Not a module and never registered on the model: it lives for one sampling call, and eager attention reads
    only the filled prefix. Written only through ``write`` (a chunk of positions) and ``write_position`` (one).
    Zero-filled: the compiled decode step (a position given as a tensor) attends over every position under a
    mask, and a masked entry must still be finite (uninitialised memory can hold NaN, and NaN · 0 is NaN).
    """

    def __init__(
        self, num_layers: int, batch_size: int, num_kv_heads: int, max_length: int, head_dim: int, dtype, device
    ):
        shape = (batch_size, num_kv_heads, max_length, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.positions = torch.arange(max_length, device=device)[None]  # (1, T): the mask row of one query
        self.length = 0
        self.max_length = max_length

    @property
    def batch_size(self) -> int:
        return self.keys[0].shape[0]

    def write(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k``, ``v`` (B, H_kv, T, D) at positions ``start …``; return keys and values up to their end."""
        end = start + k.shape[2]
        self.keys[layer][:, :, start:end] = k
        self.values[layer][:, :, start:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def write_position(
        self, layer: int, position: int | torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``write`` for one position, ``k``, ``v`` (B, H_kv, D); returns keys, values and the mask to attend with.

        ``position`` an int: two in-place copies, and the filled prefix ``[: position + 1]`` with no mask (the
        new query sees all of it). A tensor ``[position]`` (the compiled step: shapes must not depend on the
        position, or each step would compile again): ``index_copy_``, and the whole cache with a mask of the
        filled positions.
        """
        if isinstance(position, int):
            self.keys[layer].select(2, position).copy_(k)
            self.values[layer].select(2, position).copy_(v)
            return self.keys[layer][:, :, : position + 1], self.values[layer][:, :, : position + 1], None
        self.keys[layer].index_copy_(2, position, k.unsqueeze(2))
        self.values[layer].index_copy_(2, position, v.unsqueeze(2))
        return self.keys[layer], self.values[layer], self.positions <= position

    def keep_rows(self, rows: slice) -> None:
        """Drop the other batch rows (e.g. the unconditional half once guidance ends), copying what stays."""
        self.keys = [k[rows].contiguous() for k in self.keys]
        self.values = [v[rows].contiguous() for v in self.values]


class Attention(nn.Module):
    """Causal self-attention with 2-D RoPE. ``forward`` takes whole sequences, ``decode`` one new position per row
    (eval only); both split heads and rotate through ``_heads`` and attend through ``_attend``."""

    def __init__(self, dim: int, n_head: int, n_kv_head: int, attn_dropout_p: float, resid_dropout_p: float):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = n_head, n_kv_head, dim // n_head
        self.wqkv = nn.Linear(dim, (n_head + 2 * n_kv_head) * self.head_dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)
        self.attn_dropout_p = attn_dropout_p
        self.resid_dropout = nn.Dropout(resid_dropout_p)

    def _heads(self, qkv: torch.Tensor, cos2: torch.Tensor, sin2: torch.Tensor):
        """``qkv`` (..., (H + 2·H_kv)·D) → q (..., H, D), k (..., H_kv, D) rotated, v (..., H_kv, D).
        q and k are rotated together (one set of kernels); ``cos2``/``sin2`` broadcast as (..., 1, D)."""
        heads = qkv.unflatten(-1, (self.n_head + 2 * self.n_kv_head, self.head_dim))
        qk = apply_rope_pairs(heads[..., : self.n_head + self.n_kv_head, :], cos2, sin2)
        return qk[..., : self.n_head, :], qk[..., self.n_head :, :], heads[..., self.n_head + self.n_kv_head :, :]

    def _attend(self, q, k, v, **sdpa) -> torch.Tensor:
        """SDPA of q (B, H, T, D) over k, v (B, H_kv, S, D), the key/value heads repeated for grouped queries."""
        if self.n_kv_head != self.n_head:
            k = k.repeat_interleave(self.n_head // self.n_kv_head, dim=1)
            v = v.repeat_interleave(self.n_head // self.n_kv_head, dim=1)
        return F.scaled_dot_product_attention(q, k, v, **sdpa)

    def forward(self, x, cos2, sin2, cache: KVCache | None = None, layer: int = 0, start: int = 0) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = (part.transpose(1, 2) for part in self._heads(self.wqkv(x), cos2[:, None], sin2[:, None]))
        if cache is not None:
            k, v = cache.write(layer, start, k, v)
        if start == 0:
            causal, mask = t > 1, None
        elif t == 1:
            causal, mask = False, None  # one new token sees the whole filled prefix: nothing to mask
        else:
            causal = False
            mask = torch.ones(t, start + t, dtype=torch.bool, device=x.device).tril(start)
        out = self._attend(
            q, k, v, attn_mask=mask, is_causal=causal, dropout_p=self.attn_dropout_p if self.training else 0.0
        )
        return self.resid_dropout(self.wo(out.transpose(1, 2).reshape(b, t, -1)))

    def decode(self, x, cos2, sin2, cache: KVCache, layer: int, position: int, kernels) -> torch.Tensor:
        """``forward`` for one position per row, ``x`` (R, dim): written to the cache in place, attending over the
        filled prefix ``[: position + 1]`` without a mask (one query sees all of it), or, for a tensor
        ``position``, over the whole cache masked to that prefix; Linears via ``kernels``."""
        q, k, v = self._heads(kernels(self.wqkv, x), cos2, sin2)
        k, v, mask = cache.write_position(layer, position, k, v)
        out = self._attend(q.unsqueeze(2), k, v, attn_mask=mask)
        return kernels(self.wo, out.flatten(1))


def plain_linear(linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """The decode kernels of the compiled step: ``linear(x)`` as written, for the compiler to lower."""
    return F.linear(x, linear.weight)


class FeedForward(nn.Module):
    """SwiGLU ``w2(silu(w1 x) · w3 x)``; ``decode`` is the same with the Linears computed by ``kernels``."""

    def __init__(self, dim: int, hidden: int, ffn_dropout_p: float):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.ffn_dropout = nn.Dropout(ffn_dropout_p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn_dropout(self.w2(F.silu(self.w1(x)) * self.w3(x)))

    def decode(self, x: torch.Tensor, kernels) -> torch.Tensor:
        return kernels(self.w2, F.silu(kernels(self.w1, x)) * kernels(self.w3, x))


class TransformerBlock(nn.Module):
    def __init__(
        self, dim, n_head, n_kv_head, hidden, norm_eps, attn_dropout_p, resid_dropout_p, ffn_dropout_p, drop_path
    ):
        super().__init__()
        self.attention = Attention(dim, n_head, n_kv_head, attn_dropout_p, resid_dropout_p)
        self.feed_forward = FeedForward(dim, hidden, ffn_dropout_p)
        self.attention_norm = RMSNorm(dim, norm_eps)
        self.ffn_norm = RMSNorm(dim, norm_eps)
        self.drop_path = drop_path

    def _residual(self, x: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
        if self.training and self.drop_path > 0:  # stochastic depth, per sample
            keep = x.new_empty(x.shape[0], 1, 1).bernoulli_(1 - self.drop_path) / (1 - self.drop_path)
            update = update * keep
        return x + update

    def forward(self, x, cos2, sin2, cache=None, layer=0, start=0):
        h = self._residual(x, self.attention(self.attention_norm(x), cos2, sin2, cache, layer, start))
        return self._residual(h, self.feed_forward(self.ffn_norm(h)))

    def decode(self, x, cos2, sin2, cache: KVCache, layer: int, position: int, kernels) -> torch.Tensor:
        """``forward`` in eval mode for one position per row, ``x`` (R, dim)."""
        h = x + self.attention.decode(self.attention_norm(x), cos2, sin2, cache, layer, position, kernels)
        return h + self.feed_forward.decode(self.ffn_norm(h), kernels)


class LabelEmbedder(nn.Module):
    """Class embedding with one extra row, the null class, that classifier-free guidance conditions on."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + 1, dim)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.embedding_table(labels).unsqueeze(1)


class FVQTransformer(ModelMixin, ConfigMixin):
    r"""
    LlamaGen's class-conditional GPT over the codes of an image tokenizer, raster order, one class token first.

    ``forward(input_ids, class_labels)`` is teacher forcing: ``logits[:, t]`` predicts token t from the class and
    ``input_ids[:, :t]``, so ``F.cross_entropy(logits.flatten(0, 1), input_ids.flatten())`` is the training loss.
    Sampling goes through ``fvq_hf.generate`` (a KV cache made per call with ``new_cache``).

    Parameters:
        vocab_size (`int`, defaults to 16384): Codebook size K of the tokenizer whose codes are modelled.
        num_classes (`int`, defaults to 1000): Classes; the embedding table has one more row, the null class
            ``num_classes`` used for classifier-free guidance.
        block_size (`int`, defaults to 256): Image tokens per sample, a square (256 = 16 × 16, 576 = 24 × 24).
        dim (`int`, defaults to 768): Model width.
        n_layer (`int`, defaults to 12): Transformer blocks.
        n_head (`int`, defaults to 12): Attention heads (head dim = dim / n_head, divisible by 4 for 2-D RoPE).
        n_kv_head (`int`, *optional*): Key/value heads (grouped-query attention); ``None`` = ``n_head``.
        multiple_of (`int`, defaults to 256): The SwiGLU hidden size ``int(8·dim/3)`` is rounded up to this.
        ffn_dim_multiplier (`float`, *optional*): Scales the SwiGLU hidden size before rounding.
        norm_eps (`float`, defaults to 1e-5): RMSNorm epsilon.
        rope_base (`float`, defaults to 10000): Rotary base.
        token_dropout_p (`float`, defaults to 0.1): Dropout on the embeddings of [class, tokens].
        attn_dropout_p (`float`, defaults to 0.0): Dropout on attention weights.
        resid_dropout_p (`float`, defaults to 0.1): Dropout after the attention output projection.
        ffn_dropout_p (`float`, defaults to 0.1): Dropout after the SwiGLU output projection.
        drop_path_rate (`float`, defaults to 0.0): Stochastic depth, rising linearly to this over the layers.
        class_dropout_prob (`float`, defaults to 0.1): In training, a label becomes the null class with this
            probability, which teaches the unconditional model that guidance needs.
        initializer_range (`float`, defaults to 0.02): Std of the N(0, σ²) init of every Linear and Embedding;
            the output head starts at zero.
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        vocab_size: int = 16384,
        num_classes: int = 1000,
        block_size: int = 256,
        dim: int = 768,
        n_layer: int = 12,
        n_head: int = 12,
        n_kv_head: int | None = None,
        multiple_of: int = 256,
        ffn_dim_multiplier: float | None = None,
        norm_eps: float = 1e-5,
        rope_base: float = 10000.0,
        token_dropout_p: float = 0.1,
        attn_dropout_p: float = 0.0,
        resid_dropout_p: float = 0.1,
        ffn_dropout_p: float = 0.1,
        drop_path_rate: float = 0.0,
        class_dropout_prob: float = 0.1,
        initializer_range: float = 0.02,
    ):
        super().__init__()
        grid = math.isqrt(block_size)
        if grid * grid != block_size:
            raise ValueError(f"block_size must be a square number of tokens (e.g. 256 = 16 × 16), got {block_size}")
        if dim % n_head:
            raise ValueError(f"dim ({dim}) must be divisible by n_head ({n_head})")
        n_kv_head = n_kv_head or n_head
        if n_head % n_kv_head:
            raise ValueError(f"n_head ({n_head}) must be a multiple of n_kv_head ({n_kv_head})")
        hidden = swiglu_hidden_size(dim, multiple_of, ffn_dim_multiplier)
        self.cls_embedding = LabelEmbedder(num_classes, dim)
        self.tok_embeddings = nn.Embedding(vocab_size, dim)
        self.tok_dropout = nn.Dropout(token_dropout_p)
        rates = [drop_path_rate * i / max(n_layer - 1, 1) for i in range(n_layer)]  # linear, as LlamaGen's
        self.layers = nn.ModuleList(
            TransformerBlock(
                dim, n_head, n_kv_head, hidden, norm_eps, attn_dropout_p, resid_dropout_p, ffn_dropout_p, r
            )
            for r in rates
        )
        self.norm = RMSNorm(dim, norm_eps)
        self.output = nn.Linear(dim, vocab_size, bias=False)
        # plain attributes, not buffers: the rotary table stays fp32 when the model is cast to bf16, and neither it
        # nor the decode kernels (which may hold packed copies of the weights) are part of state_dict()
        self._rope = rope_pair_tables(*rope_2d_table(grid, dim // n_head, rope_base))
        self._decode_kernels: dict[tuple, DecodeKernels] = {}
        self._weights_seen: tuple | None = None
        self._step_kernels: tuple | None = None  # ((rows, forced form), kernels) of the sequence being sampled
        self._compiled_steps: dict = {}  # torch.compile mode -> the compiled decode step
        self._compiled_weights: tuple | None = None  # _weights_signature() when the steps were compiled
        self._init_weights(initializer_range)

    def _init_weights(self, std: float) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=std)
        nn.init.zeros_(self.output.weight)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> FVQTransformer:
        """A fresh model from ``TRANSFORMER_PRESETS`` (``GPT-B``, ``GPT-L``, ``GPT-XL``, ``GPT-XXL``, ``tiny``);
        keyword arguments override config fields, e.g. ``vocab_size=4096, block_size=64, num_classes=10``."""
        if name not in TRANSFORMER_PRESETS:
            raise ValueError(f"Unknown FVQTransformer preset {name!r}; available: {', '.join(TRANSFORMER_PRESETS)}")
        return cls(**{**TRANSFORMER_PRESETS[name], **overrides})

    # ------------------------------------------------------------------ properties
    @property
    def grid_size(self) -> int:
        return math.isqrt(self.config.block_size)

    @property
    def null_class_id(self) -> int:
        """The label of the null class (the unconditional model): ``num_classes``."""
        return self.config.num_classes

    @property
    def head_dim(self) -> int:
        return self.config.dim // self.config.n_head

    # ------------------------------------------------------------------ checks
    def check_class_labels(self, class_labels: torch.Tensor, allow_null: bool = True) -> None:
        top = self.config.num_classes + (1 if allow_null else 0)
        if class_labels.dtype.is_floating_point or class_labels.ndim != 1:
            raise ValueError(
                f"class_labels must be a 1-D integer tensor, got {class_labels.dtype} {tuple(class_labels.shape)}"
            )
        if len(class_labels) and (class_labels.min() < 0 or class_labels.max() >= top):
            bad = class_labels[(class_labels < 0) | (class_labels >= top)].tolist()
            raise ValueError(
                f"class label(s) {bad} outside this model's table: labels are 0 … {self.config.num_classes - 1}"
                + (f", and {self.null_class_id} is the null (unconditional) class" if allow_null else "")
            )

    def _check_tokens(self, input_ids: torch.Tensor, max_length: int) -> None:
        if input_ids.dtype.is_floating_point or input_ids.ndim != 2:
            raise ValueError(
                f"input_ids must be an integer tensor of shape (B, N), got {input_ids.dtype} {tuple(input_ids.shape)}"
            )
        if input_ids.shape[1] > max_length:
            raise ValueError(
                f"input_ids has {input_ids.shape[1]} tokens; this model takes at most {max_length} per image"
            )
        if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= self.config.vocab_size):
            raise ValueError(
                f"token ids must lie in 0 … {self.config.vocab_size - 1} (the tokenizer's codebook), got "
                f"{input_ids.min().item()} … {input_ids.max().item()}: is this the transformer trained for this tokenizer?"
            )

    # ------------------------------------------------------------------ model
    def _embed_labels(self, class_labels: torch.Tensor) -> torch.Tensor:
        if self.training and self.config.class_dropout_prob > 0:
            drop = torch.rand(class_labels.shape, device=class_labels.device) < self.config.class_dropout_prob
            class_labels = torch.where(drop, torch.full_like(class_labels, self.null_class_id), class_labels)
        return self.cls_embedding(class_labels)

    def _rope_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if self._rope[0].device != device:
            self._rope = tuple(t.to(device) for t in self._rope)
        return self._rope

    def _blocks(self, h: torch.Tensor, start: int, cache: KVCache | None) -> torch.Tensor:
        cos2, sin2 = (t[start : start + h.shape[1]] for t in self._rope_on(h.device))
        for i, layer in enumerate(self.layers):
            h = layer(h, cos2, sin2, cache, i, start)
        return self.output(self.norm(h)).float()

    def forward(
        self, input_ids: torch.LongTensor, class_labels: torch.LongTensor, return_dict: bool = True
    ) -> FVQTransformerOutput | tuple:
        """Teacher forcing: ``input_ids`` (B, N) an image's tokens in raster order (N ≤ block_size),
        ``class_labels`` (B,) → logits (B, N, vocab_size), ``logits[:, t]`` predicting ``input_ids[:, t]``."""
        self._check_tokens(input_ids, self.config.block_size)
        self.check_class_labels(class_labels)
        if class_labels.shape[0] != input_ids.shape[0]:
            raise ValueError(f"{input_ids.shape[0]} token sequences but {class_labels.shape[0]} class labels")
        # the class token predicts token 0; the last token predicts nothing and is not fed
        h = torch.cat([self._embed_labels(class_labels), self.tok_embeddings(input_ids[:, :-1])], dim=1)
        h = h[:, : input_ids.shape[1]]
        logits = self._blocks(self.tok_dropout(h), 0, None)
        return FVQTransformerOutput(logits=logits) if return_dict else (logits,)

    # ------------------------------------------------------------------ incremental decoding
    def new_cache(self, batch_size: int, max_length: int | None = None) -> KVCache:
        """An empty KV cache for ``batch_size`` sequences of at most ``max_length`` positions (class + tokens)."""
        max_length = max_length or self.config.block_size
        return KVCache(
            self.config.n_layer,
            batch_size,
            self.config.n_kv_head or self.config.n_head,
            max_length,
            self.head_dim,
            self.dtype,
            self.device,
        )

    def forward_cached(
        self,
        cache: KVCache,
        class_labels: torch.LongTensor | None = None,
        input_ids: torch.LongTensor | None = None,
        compile_mode: str | None = None,
    ) -> torch.FloatTensor:
        """Feed new positions through ``cache`` and return the logits (B, vocab_size) of the next token.

        The first call passes ``class_labels`` (and optionally a prefix of image tokens); each later call passes
        the tokens sampled since (B, 1). Logits equal those of ``forward`` on the whole sequence. With
        ``compile_mode`` (a ``torch.compile`` mode), a call feeding one position per row runs the decode step
        compiled (``compiled_decode_step``).
        """
        pieces = []
        if class_labels is not None:
            if cache.length:
                raise ValueError("class_labels start a sequence: pass them on the first call only, with an empty cache")
            self.check_class_labels(class_labels)
            pieces.append(self.cls_embedding(class_labels))
        elif cache.length == 0:
            raise ValueError("the first call must pass class_labels: the class token comes first")
        if input_ids is not None:
            self._check_tokens(input_ids, self.config.block_size)
            pieces.append(self.tok_embeddings(input_ids))
        h = self.tok_dropout(torch.cat(pieces, dim=1))
        start = cache.length
        if start + h.shape[1] > min(cache.max_length, self.config.block_size):
            raise ValueError("the sequence is full: a sample has block_size tokens, the last of which predicts nothing")
        if start == 0:  # a new sequence: look the decode kernels up again (the weights may have changed since)
            self._step_kernels = None
        if h.shape[1] == 1 and not self.training and compile_mode is None:
            logits = self._decode_step(h[:, 0], start, cache, self._sequence_kernels(h.shape[0]))
        elif h.shape[1] == 1 and not self.training:
            if start == 0:
                self._check_compiled_weights()
            self._rope_on(h.device)  # outside the compiled code, which must not move the table
            position = torch.tensor([start], device=h.device)
            step = self.compiled_decode_step(compile_mode)
            # read when the step compiles (its first call); torch.compile's options= did not reach this setting
            with torch._inductor.config.patch(freezing=h.device.type == "cpu" and h.dtype != torch.float32):
                logits = step(h[:, 0], position, cache, plain_linear)
        else:
            logits = self._blocks(h, start, cache)[:, -1]
        cache.length = start + h.shape[1]
        return logits

    def _decode_linears(self) -> list[nn.Linear]:
        return [m for m in self.layers.modules() if isinstance(m, nn.Linear)] + [self.output]

    def _weights_signature(self) -> tuple:
        """The storage and version of every weight a decode step reads: it changes when they are moved, cast,
        loaded or trained."""
        return tuple((m.weight.data_ptr(), m.weight._version) for m in self._decode_linears())

    def _kernels_for(self, rows: int) -> DecodeKernels:
        """The decode kernels for ``rows`` rows, measured once per process (see ``decode_kernels``) and rebuilt
        when the weights change (moved, cast, loaded or trained: their storage or version differs)."""
        weights = self._weights_signature()
        if weights != self._weights_seen:
            self._decode_kernels, self._weights_seen = {}, weights
        key = (rows, forced_form())
        if key not in self._decode_kernels:
            self._decode_kernels[key] = DecodeKernels.for_model(self._decode_linears(), rows)
        return self._decode_kernels[key]

    def _sequence_kernels(self, rows: int) -> DecodeKernels:
        """``_kernels_for(rows)``, looked up once per sequence: checking 61 weights' storage every step of GPT-B
        cost ~0.16 ms of a ~40 ms step; weights do not change between the steps of one sampling call."""
        key = (rows, forced_form())
        if self._step_kernels is None or self._step_kernels[0] != key:
            self._step_kernels = (key, self._kernels_for(rows))
        return self._step_kernels[1]

    def _decode_step(self, h: torch.Tensor, position: int | torch.Tensor, cache: KVCache, kernels) -> torch.Tensor:
        """One new position per row, ``h`` (R, dim), through every block's ``decode`` (eval only); fp32 logits
        (R, vocab). ``kernels(linear, x)`` computes the Linears: eager, those measured fastest on this machine
        for R rows; compiled, ``plain_linear`` (the compiler chooses). ``position`` an int or a tensor ``[int]``."""
        cos2, sin2 = (t[position] for t in self._rope_on(h.device))
        for i, layer in enumerate(self.layers):
            h = layer.decode(h, cos2, sin2, cache, i, position, kernels)
        return kernels(self.output, self.norm(h)).float()

    def _check_compiled_weights(self) -> None:
        """Compiled on a CPU with bf16 / fp16 weights, the step holds its own (frozen, prepacked) copy of them,
        which torch.compile does not see change when a weight is modified in place: if they changed, compile
        again."""
        weights = self._weights_signature()
        if self._compiled_steps and weights != self._compiled_weights:
            torch._dynamo.reset()  # every compiled function of the process: the next calls compile again
            self._compiled_steps = {}
        self._compiled_weights = weights

    def compiled_decode_step(self, mode: str = "default"):
        """The decode step through ``torch.compile(mode=mode)``, made once per mode and kept with the model.

        Its shapes never change from step to step: the position is a tensor and attention runs over the whole
        zero-filled cache under a mask (as LlamaGen's ``--compile`` does), so it compiles once per row count and
        dtype, and a CUDA-graph mode (``"reduce-overhead"``) can replay one graph for every step (untested: no
        GPU was available; a CPU skips the graphs). On a CPU, bf16 / fp16 weights are frozen into the compiled
        code (inductor's ``freezing``), which lets it prepack them for its matrix kernels (a second copy of the
        weights). Frozen fp32 weights measured slower than eager on a CPU, so fp32 is not frozen; the figures
        are ``benchmarks/sampling.py``'s (``--compile_modes``). Its tokens are the eager step's up to the order of
        floating-point additions.
        """
        from torch._inductor import list_mode_options  # imported here: importing the compiler takes seconds

        modes = tuple(list_mode_options())
        if mode not in modes:
            raise ValueError(f"compile_mode must be one of {', '.join(map(repr, modes))} or None (eager), got {mode!r}")
        if mode not in self._compiled_steps:
            self._compiled_steps[mode] = torch.compile(self._decode_step, mode=mode, fullgraph=True, dynamic=False)
        return self._compiled_steps[mode]

"""The official LlamaGen / FVQ tokenizer layout, written independently of fvq_hf: random state dicts with the
exact key names and shapes of the official checkpoints, and a forward pass computed directly from them.

Facts it is written from (the official FVQ code, ``QBridge_models`` in its bridge files):

- LlamaGen layout: ``encoder.conv_blocks.{i}.res.{j}`` / ``.attn.{j}`` (1×1 q, k, v, proj_out; attention at the
  lowest resolution only), ``encoder.mid.{0,1,2}``, ``quant_conv``, ``quantize.embedding.weight``,
  ``quantize.codebook_used`` (a usage buffer), ``post_quant_conv``, the decoder mirrored (lowest resolution first).
- FVQ adds ``quantize.qbridge.*``. A VQBridge preset ``QBridge-<W>/<p>[-d<N>]`` has 4 heads of dimension 8, 16,
  32, 64, 128 for W = XS, S, B, L, XL, patch p, depth N (2 if absent), MLP ratio 2. The DiT flavour adds a sin-cos
  ``pos_embed``, a label table ``y_embedder.embedding_table`` (1 row when trained unconditionally, 1,001 rows
  = 1,000 classes + the null class otherwise) and adaLN modulations; the official conversion to a plain codebook
  computes the bridge with label 1000, which the 1-row flavour maps to its row 0.
- Baselines: ``Qbridge-lin/1`` is ``qbridge.linear`` (one ``Linear(d, d)`` on every code), ``Qbridge-lin/5`` is
  ``qbridge.linear_5`` (``Linear, ReLU`` × 4, ``Linear``, at Sequential indices 0, 2, 4, 6, 8), ``Qbridge-none``
  has no weights.
- ``codebook_l2_norm``: LlamaGen's quantizer normalises latents and codes at every lookup (cosine); FVQ's only
  normalises the raw embedding once at init, and its lookup is plain L2 over the bridged codebook.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def _conv(sd, name, cin, cout, k, g):
    sd[f"{name}.weight"] = torch.randn(cout, cin, k, k, generator=g) / math.sqrt(cin * k * k)
    sd[f"{name}.bias"] = torch.randn(cout, generator=g) * 0.02


def _norm(sd, name, c, g):
    sd[f"{name}.weight"] = 1 + 0.1 * torch.randn(c, generator=g)
    sd[f"{name}.bias"] = 0.1 * torch.randn(c, generator=g)


def _linear(sd, name, cin, cout, g):
    sd[f"{name}.weight"] = torch.randn(cout, cin, generator=g) / math.sqrt(cin)
    sd[f"{name}.bias"] = torch.randn(cout, generator=g) * 0.02


def _res(sd, name, cin, cout, g):
    _norm(sd, f"{name}.norm1", cin, g)
    _conv(sd, f"{name}.conv1", cin, cout, 3, g)
    _norm(sd, f"{name}.norm2", cout, g)
    _conv(sd, f"{name}.conv2", cout, cout, 3, g)
    if cin != cout:
        _conv(sd, f"{name}.nin_shortcut", cin, cout, 1, g)


def _attn(sd, name, c, g):
    _norm(sd, f"{name}.norm", c, g)
    for part in ("q", "k", "v", "proj_out"):
        _conv(sd, f"{name}.{part}", c, c, 1, g)


# official bridge names → (head dimension, patch, depth); every one has 4 heads and MLP ratio 2
HEAD_DIM = {"XS": 8, "S": 16, "B": 32, "L": 64, "XL": 128}
OFFICIAL_BRIDGES = {
    "QBridge-XS/2": ("XS", 2, 2),
    "QBridge-S/2": ("S", 2, 2),
    "QBridge-S/4": ("S", 4, 2),
    "QBridge-S/8": ("S", 8, 2),
    "Qbridge-S/4-d4": ("S", 4, 4),
    "QBridge-B/2": ("B", 2, 2),
    "QBridge-B/4": ("B", 4, 2),
    "QBridge-B/8": ("B", 8, 2),
    "QBridge-B/4-d1": ("B", 4, 1),
    "QBridge-B/4-d4": ("B", 4, 4),
    "QBridge-L/2": ("L", 2, 2),
    "QBridge-L/4": ("L", 4, 2),
    "QBridge-L/8": ("L", 8, 2),
    "QBridge-L/2-d4": ("L", 2, 4),
    "QBridge-L/4-d1": ("L", 4, 1),
    "QBridge-L/4-d4": ("L", 4, 4),
    "QBridge-XL/4": ("XL", 4, 2),
    "QBridge-XL/4-d4": ("XL", 4, 4),
    "QBridge-XL/8": ("XL", 8, 2),  # in the ViT-flavour table only
}
OFFICIAL_HEADS = 4


def bridge_shape(qb_type: str) -> dict:
    """``make_official_state_dict`` arguments for an official bridge name."""
    width, patch, depth = OFFICIAL_BRIDGES[qb_type]
    return {"bridge_hidden": HEAD_DIM[width] * OFFICIAL_HEADS, "bridge_patch": patch, "bridge_depth": depth}


def make_official_state_dict(
    ch=128,
    ch_mult=(1, 1, 2, 2, 4),
    num_res_blocks=2,
    z_channels=256,
    codebook_size=16384,
    codebook_dim=256,
    bridge: str | None = None,  # None, "vit", "dit", "lin1" or "lin5"
    bridge_hidden=256,
    bridge_patch=4,
    bridge_depth=2,
    bridge_mlp_ratio=2,
    label_rows=1,
    seed=0,
) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    levels = len(ch_mult)
    # encoder
    _conv(sd, "encoder.conv_in", 3, ch, 3, g)
    block_in = ch
    for i in range(levels):
        block_out = ch * ch_mult[i]
        for j in range(num_res_blocks):
            _res(sd, f"encoder.conv_blocks.{i}.res.{j}", block_in, block_out, g)
            block_in = block_out
            if i == levels - 1:
                _attn(sd, f"encoder.conv_blocks.{i}.attn.{j}", block_in, g)
        if i != levels - 1:
            _conv(sd, f"encoder.conv_blocks.{i}.downsample.conv", block_in, block_in, 3, g)
    _res(sd, "encoder.mid.0", block_in, block_in, g)
    _attn(sd, "encoder.mid.1", block_in, g)
    _res(sd, "encoder.mid.2", block_in, block_in, g)
    _norm(sd, "encoder.norm_out", block_in, g)
    _conv(sd, "encoder.conv_out", block_in, z_channels, 3, g)
    # quantizer
    _conv(sd, "quant_conv", z_channels, codebook_dim, 1, g)
    sd["quantize.embedding.weight"] = torch.randn(codebook_size, codebook_dim, generator=g)
    sd["quantize.codebook_used"] = torch.randint(0, codebook_size, (65536,), generator=g)
    _conv(sd, "post_quant_conv", codebook_dim, z_channels, 1, g)
    # decoder
    block_in = ch * ch_mult[-1]
    _conv(sd, "decoder.conv_in", z_channels, block_in, 3, g)
    _res(sd, "decoder.mid.0", block_in, block_in, g)
    _attn(sd, "decoder.mid.1", block_in, g)
    _res(sd, "decoder.mid.2", block_in, block_in, g)
    for i in range(levels):
        block_out = ch * ch_mult[levels - i - 1]
        for j in range(num_res_blocks + 1):
            _res(sd, f"decoder.conv_blocks.{i}.res.{j}", block_in, block_out, g)
            block_in = block_out
            if i == 0:
                _attn(sd, f"decoder.conv_blocks.{i}.attn.{j}", block_in, g)
        if i != levels - 1:
            _conv(sd, f"decoder.conv_blocks.{i}.upsample.conv", block_in, block_in, 3, g)
    _norm(sd, "decoder.norm_out", block_in, g)
    _conv(sd, "decoder.conv_out", block_in, 3, 3, g)
    if bridge == "lin1":
        _linear(sd, "quantize.qbridge.linear", codebook_dim, codebook_dim, g)
    elif bridge == "lin5":
        for n in (0, 2, 4, 6, 8):
            _linear(sd, f"quantize.qbridge.linear_5.{n}", codebook_dim, codebook_dim, g)
    elif bridge:
        q = "quantize.qbridge"
        h, p, d = bridge_hidden, bridge_patch, codebook_dim
        _conv(sd, f"{q}.x_embedder.proj", d, h, p, g)
        for n in range(bridge_depth):
            _linear(sd, f"{q}.blocks.{n}.attn.qkv", h, 3 * h, g)
            _linear(sd, f"{q}.blocks.{n}.attn.proj", h, h, g)
            _linear(sd, f"{q}.blocks.{n}.mlp.fc1", h, h * bridge_mlp_ratio, g)
            _linear(sd, f"{q}.blocks.{n}.mlp.fc2", h * bridge_mlp_ratio, h, g)
            if bridge == "dit":
                _linear(sd, f"{q}.blocks.{n}.adaLN_modulation.1", h, 6 * h, g)
        _linear(sd, f"{q}.final_layer.linear", h, p * p * d, g)
        if bridge == "dit":
            _linear(sd, f"{q}.final_layer.adaLN_modulation.1", h, 2 * h, g)
            tiles = math.isqrt(codebook_size) // p
            sd[f"{q}.pos_embed"] = torch.randn(1, tiles * tiles, h, generator=g)
            sd[f"{q}.y_embedder.embedding_table.weight"] = torch.randn(label_rows, h, generator=g)
    return sd


# --------------------------------------------------------------------------- the forward pass, from raw tensors
def _gn(sd, name, x):
    return F.group_norm(x, 32, sd[f"{name}.weight"], sd[f"{name}.bias"], eps=1e-6)


def _c(sd, name, x, **kw):
    return F.conv2d(x, sd[f"{name}.weight"], sd[f"{name}.bias"], **kw)


def _res_fwd(sd, name, x):
    h = _c(sd, f"{name}.conv1", F.silu(_gn(sd, f"{name}.norm1", x)), padding=1)
    h = _c(sd, f"{name}.conv2", F.silu(_gn(sd, f"{name}.norm2", h)), padding=1)
    if f"{name}.nin_shortcut.weight" in sd:
        x = _c(sd, f"{name}.nin_shortcut", x)
    return x + h


def _attn_fwd(sd, name, x):
    h = _gn(sd, f"{name}.norm", x)
    q, k, v = (_c(sd, f"{name}.{p}", h) for p in ("q", "k", "v"))
    b, c, hh, ww = q.shape
    weights = torch.softmax(torch.bmm(q.reshape(b, c, -1).permute(0, 2, 1), k.reshape(b, c, -1)) * c**-0.5, dim=2)
    out = torch.bmm(v.reshape(b, c, -1), weights.permute(0, 2, 1)).reshape(b, c, hh, ww)
    return x + _c(sd, f"{name}.proj_out", out)


def _levels(sd, part):
    return len({k.split(".")[2] for k in sd if k.startswith(f"{part}.conv_blocks.")})


def _blocks(sd, prefix, kind):
    return len({k.split(".")[4] for k in sd if k.startswith(f"{prefix}.{kind}.")})


def _level_fwd(sd, prefix, h):
    for j in range(_blocks(sd, prefix, "res")):
        h = _res_fwd(sd, f"{prefix}.res.{j}", h)
        if f"{prefix}.attn.{j}.q.weight" in sd:
            h = _attn_fwd(sd, f"{prefix}.attn.{j}", h)
    return h


def reference_encode(sd, x):
    h = _c(sd, "encoder.conv_in", x, padding=1)
    for i in range(_levels(sd, "encoder")):
        prefix = f"encoder.conv_blocks.{i}"
        h = _level_fwd(sd, prefix, h)
        if f"{prefix}.downsample.conv.weight" in sd:
            h = _c(sd, f"{prefix}.downsample.conv", F.pad(h, (0, 1, 0, 1)), stride=2)
    h = _res_fwd(sd, "encoder.mid.2", _attn_fwd(sd, "encoder.mid.1", _res_fwd(sd, "encoder.mid.0", h)))
    h = _c(sd, "encoder.conv_out", F.silu(_gn(sd, "encoder.norm_out", h)), padding=1)
    return _c(sd, "quant_conv", h)


def reference_decode(sd, z):
    h = _c(sd, "decoder.conv_in", _c(sd, "post_quant_conv", z), padding=1)
    h = _res_fwd(sd, "decoder.mid.2", _attn_fwd(sd, "decoder.mid.1", _res_fwd(sd, "decoder.mid.0", h)))
    for i in range(_levels(sd, "decoder")):
        prefix = f"decoder.conv_blocks.{i}"
        h = _level_fwd(sd, prefix, h)
        if f"{prefix}.upsample.conv.weight" in sd:
            h = _c(sd, f"{prefix}.upsample.conv", F.interpolate(h, scale_factor=2.0, mode="nearest"), padding=1)
    return _c(sd, "decoder.conv_out", F.silu(_gn(sd, "decoder.norm_out", h)), padding=1)


def _lin(sd, name, x):
    return F.linear(x, sd[f"{name}.weight"], sd[f"{name}.bias"])


def reference_bridge(sd, num_heads=OFFICIAL_HEADS, label=1000):
    """FVQ's qbridge applied to the raw codebook, from the raw tensors: what the official conversion folds.

    ``label`` is the class the DiT flavour is computed with (the official conversion passes 1000); a 1-row table
    is unconditional and uses its row 0 whatever the label. The baselines and ``Qbridge-none`` are handled too.
    """
    q = "quantize.qbridge"
    raw = sd["quantize.embedding.weight"]
    if f"{q}.linear.weight" in sd:
        return _lin(sd, f"{q}.linear", raw)
    if f"{q}.linear_5.0.weight" in sd:
        x = raw
        for n in (0, 2, 4, 6):
            x = F.relu(_lin(sd, f"{q}.linear_5.{n}", x))
        return _lin(sd, f"{q}.linear_5.8", x)
    if f"{q}.x_embedder.proj.weight" not in sd:
        return raw
    k, d = raw.shape
    side = math.isqrt(k)
    w = sd[f"{q}.x_embedder.proj.weight"]
    hidden, p = w.shape[0], w.shape[-1]
    x = F.conv2d(raw.t().reshape(1, d, side, side), w, sd[f"{q}.x_embedder.proj.bias"], stride=p)
    x = x.flatten(2).transpose(1, 2)
    dit = f"{q}.pos_embed" in sd
    if dit:
        x = x + sd[f"{q}.pos_embed"]
        table = sd[f"{q}.y_embedder.embedding_table.weight"]
        row = 0 if table.shape[0] == 1 else label
        c = table[row : row + 1]

    def norm(t):
        return F.layer_norm(t, (hidden,), eps=1e-6)

    def attention(name, t):
        n = t.shape[1]
        qkv = _lin(sd, f"{name}.qkv", t).reshape(1, n, 3, num_heads, hidden // num_heads).permute(2, 0, 3, 1, 4)
        scores = (qkv[0] @ qkv[1].transpose(-1, -2)) / math.sqrt(hidden // num_heads)
        out = (scores.softmax(-1) @ qkv[2]).transpose(1, 2).reshape(1, n, hidden)
        return _lin(sd, f"{name}.proj", out)

    def mlp(name, t):
        return _lin(sd, f"{name}.fc2", F.gelu(_lin(sd, f"{name}.fc1", t), approximate="tanh"))

    depth = len({key.split(".")[3] for key in sd if key.startswith(f"{q}.blocks.")})
    for n in range(depth):
        b = f"{q}.blocks.{n}"
        if dit:
            sh1, sc1, g1, sh2, sc2, g2 = _lin(sd, f"{b}.adaLN_modulation.1", F.silu(c)).chunk(6, dim=1)
            x = x + g1[:, None] * attention(f"{b}.attn", norm(x) * (1 + sc1[:, None]) + sh1[:, None])
            x = x + g2[:, None] * mlp(f"{b}.mlp", norm(x) * (1 + sc2[:, None]) + sh2[:, None])
        else:
            x = x + attention(f"{b}.attn", norm(x))
            x = x + mlp(f"{b}.mlp", norm(x))
    x = norm(x)
    if dit:
        shift, scale = _lin(sd, f"{q}.final_layer.adaLN_modulation.1", F.silu(c)).chunk(2, dim=1)
        x = x * (1 + scale[:, None]) + shift[:, None]
    x = _lin(sd, f"{q}.final_layer.linear", x)  # (1, tiles², p·p·d), DiT's unpatchify order
    tiles = side // p
    x = torch.einsum("hwpqc->chpwq", x.reshape(tiles, tiles, p, p, d)).reshape(d, k)
    return x.t()


def reference_reconstruct(sd, x, l2_normalize=False, bridge_heads=OFFICIAL_HEADS, label=1000):
    """Indices and reconstruction of the official model, computed from the raw tensors.

    ``l2_normalize`` is LlamaGen's ``codebook_l2_norm`` (cosine lookup). FVQ's ``codebook_l2_norm`` changes nothing
    here: it acted on the raw embedding at init, and the weights are what they are.
    """
    z = reference_encode(sd, x)
    codebook = reference_bridge(sd, bridge_heads, label)
    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    if l2_normalize:
        flat, codebook = F.normalize(flat, dim=-1), F.normalize(codebook, dim=-1)
    distances = flat.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1) - 2 * flat @ codebook.t()
    indices = distances.argmin(1)
    b, _, h, w = z.shape
    quantized = codebook[indices].reshape(b, h, w, -1).permute(0, 3, 1, 2)
    return indices.reshape(b, h, w), reference_decode(sd, quantized), codebook


# --------------------------------------------------------------------------- multi-code layouts (FVQ RQ-VAE, VAR)
# FVQ's RQ-VAE writes the single-code layout above (its bridge the DiT flavour with a 1-row label table); its depth
# is a constant of the model code. VAR's VQVAE (FVQ's VAR tokenizer and VAR's own release) has its own layout:
# ``encoder.down.{i}.block.{j}`` / ``.attn.{j}`` (attention with one fused 1×1 ``qkv`` of 3C rows, q first, then
# k, v), ``encoder.mid.{block_1,attn_1,block_2}``, 3×3 ``quant_conv`` / ``post_quant_conv``, the decoder's
# ``up.{i}`` numbered from the highest resolution, ``quantize.quant_resi.qresi_ls.{k}`` (4 φ shared over the
# scales; ``quant_resi.qresi`` when one is shared by all, ``quant_resi.{k}`` when each scale has its own) and the
# ``quantize.ema_vocab_hit_SV`` usage buffer, one row per scale. FVQ's VAR adds ``quantize.qbridge.*`` (DiT flavour,
# 1-row table) and ``quantize.codebook_used``.
def make_var_state_dict(
    ch=160,
    ch_mult=(1, 1, 2, 2, 4),
    num_res_blocks=2,
    z_channels=32,
    codebook_size=4096,
    num_scales=10,
    phi="partial",  # "partial" (qresi_ls.k), "shared" (qresi) or "each" (k)
    num_phi=4,
    bridge=False,  # FVQ's VAR: a DiT-flavoured bridge with a 1-row label table
    bridge_hidden=256,
    bridge_patch=4,
    bridge_depth=2,
    seed=0,
) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    levels = len(ch_mult)

    def attn(name, c):
        _norm(sd, f"{name}.norm", c, g)
        _conv(sd, f"{name}.qkv", c, 3 * c, 1, g)
        _conv(sd, f"{name}.proj_out", c, c, 1, g)

    _conv(sd, "encoder.conv_in", 3, ch, 3, g)
    block_in = ch
    for i in range(levels):
        block_out = ch * ch_mult[i]
        for j in range(num_res_blocks):
            _res(sd, f"encoder.down.{i}.block.{j}", block_in, block_out, g)
            block_in = block_out
            if i == levels - 1:
                attn(f"encoder.down.{i}.attn.{j}", block_in)
        if i != levels - 1:
            _conv(sd, f"encoder.down.{i}.downsample.conv", block_in, block_in, 3, g)
    _res(sd, "encoder.mid.block_1", block_in, block_in, g)
    attn("encoder.mid.attn_1", block_in)
    _res(sd, "encoder.mid.block_2", block_in, block_in, g)
    _norm(sd, "encoder.norm_out", block_in, g)
    _conv(sd, "encoder.conv_out", block_in, z_channels, 3, g)
    _conv(sd, "quant_conv", z_channels, z_channels, 3, g)
    sd["quantize.embedding.weight"] = torch.randn(codebook_size, z_channels, generator=g)
    sd["quantize.ema_vocab_hit_SV"] = torch.rand(num_scales, codebook_size, generator=g)
    names = {"partial": [f"qresi_ls.{k}" for k in range(num_phi)], "shared": ["qresi"]}
    for name in names.get(phi, [str(k) for k in range(num_phi)]):
        _conv(sd, f"quantize.quant_resi.{name}", z_channels, z_channels, 3, g)
    _conv(sd, "post_quant_conv", z_channels, z_channels, 3, g)
    block_in = ch * ch_mult[-1]
    _conv(sd, "decoder.conv_in", z_channels, block_in, 3, g)
    _res(sd, "decoder.mid.block_1", block_in, block_in, g)
    attn("decoder.mid.attn_1", block_in)
    _res(sd, "decoder.mid.block_2", block_in, block_in, g)
    for i in reversed(range(levels)):
        block_out = ch * ch_mult[i]
        for j in range(num_res_blocks + 1):
            _res(sd, f"decoder.up.{i}.block.{j}", block_in, block_out, g)
            block_in = block_out
            if i == levels - 1:
                attn(f"decoder.up.{i}.attn.{j}", block_in)
        if i != 0:
            _conv(sd, f"decoder.up.{i}.upsample.conv", block_in, block_in, 3, g)
    _norm(sd, "decoder.norm_out", block_in, g)
    _conv(sd, "decoder.conv_out", block_in, 3, 3, g)
    if bridge:
        sd["quantize.codebook_used"] = torch.randint(0, codebook_size, (65536,), generator=g).float()
        bridged = make_official_state_dict(
            ch=32,
            ch_mult=(1,),
            num_res_blocks=1,
            z_channels=32,
            codebook_size=codebook_size,
            codebook_dim=z_channels,
            bridge="dit",
            bridge_hidden=bridge_hidden,
            bridge_patch=bridge_patch,
            bridge_depth=bridge_depth,
            label_rows=1,
            seed=seed + 1,
        )
        sd.update({k: v for k, v in bridged.items() if k.startswith("quantize.qbridge.")})
    return sd


def _var_attn_fwd(sd, name, x):
    h = _gn(sd, f"{name}.norm", x)
    q, k, v = _c(sd, f"{name}.qkv", h).chunk(3, dim=1)
    b, c, hh, ww = q.shape
    weights = torch.softmax(torch.bmm(q.reshape(b, c, -1).permute(0, 2, 1), k.reshape(b, c, -1)) * c**-0.5, dim=2)
    out = torch.bmm(v.reshape(b, c, -1), weights.permute(0, 2, 1)).reshape(b, c, hh, ww)
    return x + _c(sd, f"{name}.proj_out", out)


def _var_level_fwd(sd, prefix, h):
    blocks = len({k.split(".")[4] for k in sd if k.startswith(f"{prefix}.block.")})
    for j in range(blocks):
        h = _res_fwd(sd, f"{prefix}.block.{j}", h)
        if f"{prefix}.attn.{j}.qkv.weight" in sd:
            h = _var_attn_fwd(sd, f"{prefix}.attn.{j}", h)
    return h


def _var_mid_fwd(sd, part, h):
    h = _res_fwd(sd, f"{part}.mid.block_1", h)
    return _res_fwd(sd, f"{part}.mid.block_2", _var_attn_fwd(sd, f"{part}.mid.attn_1", h))


def reference_var_encode(sd, x):
    levels = len({k.split(".")[2] for k in sd if k.startswith("encoder.down.")})
    h = _c(sd, "encoder.conv_in", x, padding=1)
    for i in range(levels):
        h = _var_level_fwd(sd, f"encoder.down.{i}", h)
        if i != levels - 1:
            h = _c(sd, f"encoder.down.{i}.downsample.conv", F.pad(h, (0, 1, 0, 1)), stride=2)
    h = _c(sd, "encoder.conv_out", F.silu(_gn(sd, "encoder.norm_out", _var_mid_fwd(sd, "encoder", h))), padding=1)
    return _c(sd, "quant_conv", h, padding=1)


def reference_var_decode(sd, f_hat):
    levels = len({k.split(".")[2] for k in sd if k.startswith("decoder.up.")})
    h = _c(sd, "decoder.conv_in", _c(sd, "post_quant_conv", f_hat, padding=1), padding=1)
    h = _var_mid_fwd(sd, "decoder", h)
    for i in reversed(range(levels)):
        h = _var_level_fwd(sd, f"decoder.up.{i}", h)
        if i != 0:
            h = _c(sd, f"decoder.up.{i}.upsample.conv", F.interpolate(h, scale_factor=2.0, mode="nearest"), padding=1)
    return _c(sd, "decoder.conv_out", F.silu(_gn(sd, "decoder.norm_out", h)), padding=1)


def _var_phi(sd, si, num_scales, x, ratio=0.5):
    """VAR's φ of scale ``si``: its sharing scheme read from the keys, its choice by VAR's nearest-tick rule."""
    q = "quantize.quant_resi"
    if f"{q}.qresi.weight" in sd:
        name = f"{q}.qresi"
    else:
        shared = f"{q}.qresi_ls.0.weight" in sd
        count = len({k.split(".")[-2] for k in sd if k.startswith(f"{q}.qresi_ls." if shared else f"{q}.")})
        margin = 1 / 3 / count if count == 4 else 1 / 2 / count
        ticks = np.linspace(margin, 1 - margin, count)
        k = int(np.argmin(np.abs(ticks - si / (num_scales - 1))))
        name = f"{q}.qresi_ls.{k}" if shared else f"{q}.{k}"
    return x * (1 - ratio) + _c(sd, name, x, padding=1) * ratio


def reference_var_reconstruct(sd, x, scales, bridge_heads=OFFICIAL_HEADS):
    """Per-scale index maps and reconstruction of VAR's VQVAE forward pass (FVQ's: through the bridge), computed
    from the raw tensors: area-downsampled residual, nearest code, bicubic upsampling, φ, accumulate."""
    f = reference_var_encode(sd, x)
    codebook = reference_bridge(sd, bridge_heads, label=0)
    b, d, side, _ = f.shape
    rest, f_hat, maps = f.clone(), torch.zeros_like(f), []
    for si, pn in enumerate(scales):
        last = si == len(scales) - 1
        r = rest if last else F.interpolate(rest, size=(pn, pn), mode="area")
        flat = r.permute(0, 2, 3, 1).reshape(-1, d)
        distances = flat.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1) - 2 * flat @ codebook.t()
        idx = distances.argmin(1)
        h = codebook[idx].reshape(b, pn, pn, d).permute(0, 3, 1, 2)
        if not last:
            h = F.interpolate(h, size=(side, side), mode="bicubic")
        h = _var_phi(sd, si, len(scales), h)
        f_hat, rest = f_hat + h, rest - h
        maps.append(idx.reshape(b, pn, pn))
    return maps, reference_var_decode(sd, f_hat)


def reference_rq_reconstruct(sd, x, depth=4, bridge_heads=OFFICIAL_HEADS):
    """Codes (B, h, w, depth) and reconstruction of FVQ's RQ-VAE forward pass, from the raw tensors: the bridged
    codebook searched (plain L2) by z, then by what each depth left, the reconstruction decoding the sum of codes."""
    z = reference_encode(sd, x)
    codebook = reference_bridge(sd, bridge_heads, label=0)
    b, d, h, w = z.shape
    residual = z.permute(0, 2, 3, 1).reshape(-1, d)
    total, codes = torch.zeros_like(residual), []
    for _ in range(depth):
        distances = residual.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1) - 2 * residual @ codebook.t()
        idx = distances.argmin(1)
        residual, total = residual - codebook[idx], total + codebook[idx]
        codes.append(idx.reshape(b, h, w))
    return torch.stack(codes, dim=-1), reference_decode(sd, total.reshape(b, h, w, d).permute(0, 3, 1, 2))

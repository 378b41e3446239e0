"""Autoregressive sampling of image tokens from an ``FVQTransformer``, with classifier-free guidance and a KV cache."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..models.fvq_transformer import FVQTransformer


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Keep the ``top_k`` largest logits (0 = all) and the smallest set whose probability reaches ``top_p``
    (1 = all; the most likely token always stays); the rest become −inf. ``logits`` is (B, V) and is not modified."""
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        # drop a token once the tokens before it exceed top_p, so the one that crosses it stays (LlamaGen's rule)
        drop_sorted = torch.zeros_like(cumulative, dtype=torch.bool)
        drop_sorted[..., 1:] = cumulative[..., :-1] > top_p
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    return logits


def sample_next_token(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.LongTensor:
    """One token per row of ``logits`` (B, V): greedy when ``top_k == 1``, else a draw from the filtered,
    temperature-scaled distribution using ``generator`` only."""
    if top_k == 1:
        return logits.argmax(-1)
    if temperature != 1.0:  # x / 1 is x: skip the kernel
        logits = logits / temperature
    probs = filter_logits(logits, top_k, top_p).softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _check_sampling(guidance_scale, temperature, top_k, top_p, guidance_interval) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}; for the most likely token use top_k=1 (greedy)")
    if guidance_scale < 0:
        raise ValueError(f"guidance_scale must be ≥ 0, got {guidance_scale}; values ≤ 1 sample without guidance")
    if top_k < 0 or int(top_k) != top_k:
        raise ValueError(f"top_k must be a whole number ≥ 0 (0 turns it off), got {top_k}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must lie in (0, 1] (1 turns it off), got {top_p}")
    if guidance_interval is not None and guidance_interval < 0:
        raise ValueError(f"guidance_interval must be ≥ 0 tokens or None (all tokens), got {guidance_interval}")


def _as_label_tensor(class_labels, device) -> torch.LongTensor:
    if isinstance(class_labels, int):
        class_labels = [class_labels]
    labels = torch.as_tensor(class_labels, device=device)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"class_labels must be integers, got {labels.dtype}")
    return labels.long().reshape(-1)


@torch.no_grad()
def generate(
    transformer: FVQTransformer,
    class_labels: int | Sequence[int] | torch.Tensor,
    guidance_scale: float = 1.0,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    guidance_interval: int | None = None,
    generator: torch.Generator | None = None,
    callback: Callable[[int, torch.LongTensor], None] | None = None,
    compile_mode: str | None = None,
) -> torch.LongTensor:
    """Sample one image's tokens per class label; returns a LongTensor (B, h, w) for the tokenizer to decode.

    Args:
        transformer: the class-conditional GPT.
        class_labels: one label or a sequence (B,) of labels in ``0 … num_classes − 1``.
        guidance_scale: classifier-free guidance s: with s > 1 the batch is doubled (conditional rows first, then
            the null class) and tokens are drawn from ``uncond + s · (cond − uncond)`` of the raw logits; s ≤ 1
            samples the conditional model alone.
        temperature: divides the (guided) logits; must be > 0.
        top_k: keep the k most likely tokens (0 = off, 1 = greedy).
        top_p: nucleus sampling threshold (1 = off).
        guidance_interval: guide only the first this many tokens (None = all). Once it ends, the unconditional
            rows are dropped from the KV cache, so the rest costs what unguided sampling costs. (LlamaGen's
            ``cfg_interval=c`` guides the first c + 2 tokens.)
        generator: the only source of randomness; a fixed seed gives the same tokens. With none, a fresh
            generator is seeded from the operating system; torch's global RNG is never touched.
        callback: called after each token as ``callback(t, tokens)`` with ``tokens`` (B, t + 1) sampled so far.
        compile_mode: None runs the decode step eagerly, with the kernels calibrated on this machine; a
            ``torch.compile`` mode (``"default"``, ``"max-autotune-no-cudagraphs"``, on a GPU ``"reduce-overhead"``)
            runs it compiled (``FVQTransformer.compiled_decode_step``): the first call of a process compiles,
            which takes far longer than it saves on one image.
    """
    _check_sampling(guidance_scale, temperature, top_k, top_p, guidance_interval)
    device = transformer.device
    labels = _as_label_tensor(class_labels, device)
    transformer.check_class_labels(labels, allow_null=False)
    if generator is None:
        generator = torch.Generator(device)
        generator.seed()
    batch, num_tokens = labels.shape[0], transformer.config.block_size
    guided = guidance_scale > 1.0
    guided_tokens = num_tokens if guidance_interval is None else min(guidance_interval, num_tokens)
    if guided and guided_tokens > 0:
        labels = torch.cat([labels, torch.full_like(labels, transformer.null_class_id)])
    else:
        guided = False

    was_training = transformer.training
    transformer.eval()
    try:
        cache = transformer.new_cache(labels.shape[0])
        tokens = torch.empty(batch, num_tokens, dtype=torch.long, device=device)
        logits = transformer.forward_cached(cache, class_labels=labels, compile_mode=compile_mode)
        for t in range(num_tokens):
            if guided:
                cond, uncond = logits.float().chunk(2)
                logits = uncond + guidance_scale * (cond - uncond)
            tokens[:, t] = sample_next_token(logits, temperature, top_k, top_p, generator)
            if callback is not None:
                callback(t, tokens[:, : t + 1])
            if t + 1 == num_tokens:
                break
            if guided and t + 1 == guided_tokens:
                cache.keep_rows(slice(0, batch))  # guidance ends: the null-class rows are no longer needed
                guided = False
            fed = tokens[:, t : t + 1]
            ids = torch.cat([fed, fed]) if guided else fed
            logits = transformer.forward_cached(cache, input_ids=ids, compile_mode=compile_mode)
    finally:
        transformer.train(was_training)
    return tokens.view(batch, transformer.grid_size, transformer.grid_size)

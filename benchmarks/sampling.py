"""Sampling speed of FVQTransformer: tokens and images per second, with and without the KV cache, guidance on.

    python benchmarks/sampling.py                                  # GPT-B, 256 tokens, batch 1 and 16, CPU (+ CUDA)
    python benchmarks/sampling.py --llamagen_repo ~/LlamaGen       # LlamaGen's own generate() on the same weights too
    python benchmarks/sampling.py --device cuda --batch_sizes 1 16 64

The model is ``FVQTransformer.from_preset(--preset)`` with random weights: the preset's N(0, 0.02) init, and an
N(0, 0.02) output head instead of the zero head of a fresh model (a zero head gives uniform logits). Every
method samples ``--num_tokens`` tokens per image with classifier-free guidance (the batch doubled), temperature
1, no top-k / top-p, from the same seed:

- ``fvq_hf.generate`` (KV cache);
- recomputation: the plain loop this script writes, a full teacher-forcing ``forward`` over the class and every
  token sampled so far for each new token. Its cost grows with the prefix, so by default it is timed on every
  ``--uncached_stride``-th step (each at the midpoint of its group of prefix lengths) and summed with the group
  sizes as weights; ``--uncached_stride 1`` runs the real loop and checks its tokens against the cache's;
- with ``--llamagen_repo PATH`` (a checkout of FoundationVision/LlamaGen), LlamaGen's ``Transformer`` loaded with
  the same state dict and its own ``autoregressive/models/generate.py:generate()``, imported from that path when
  this script runs (nothing of LlamaGen is copied here).

The memory-bandwidth bound: a decode step reads every weight of the blocks' Linear layers and of the output head
once (the embedding rows are negligible), so ``num_tokens · weight bytes / read bandwidth`` is the least time a
batch can take when weights are streamed from memory; the read bandwidth of this machine is measured here (the
best of a few ``.sum()`` over a tensor far larger than the caches). The table gives each time's fraction of it.
Prints a Markdown table and writes JSON (commit, versions, machine, settings, load average) to
``benchmarks/results/sampling.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import torch
from provenance import git_commit, machine
from torch import nn

import fvq_hf
from fvq_hf import FVQTransformer, generate
from fvq_hf.generation.sampling import sample_next_token

METHODS = {
    "cache": "fvq_hf.generate (KV cache)",
    "recompute": "full forward over the prefix for every token (no cache)",
    "llamagen": "LlamaGen's own generate() on the same weights",
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="GPT-B", help="FVQTransformer preset")
    p.add_argument("--vocab_size", type=int, default=16384, help="codebook size K of the tokens")
    p.add_argument("--num_classes", type=int, default=1000)
    p.add_argument("--num_tokens", type=int, default=256, help="tokens per image, a square (256 = 16 × 16)")
    p.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 16], help="images per sampling call")
    p.add_argument("--guidance_scale", type=float, default=1.75)
    p.add_argument("--top_k", type=int, default=0, help="0 = off; 1 = greedy (then every method's tokens must agree)")
    p.add_argument("--repeats", type=int, default=2, help="timed calls per measurement (the best is reported)")
    p.add_argument(
        "--uncached_stride",
        type=int,
        default=16,
        help="time every N-th step of the recomputation loop and sum with weights N (1: the whole loop)",
    )
    p.add_argument("--no-uncached", dest="uncached", action="store_false", help="skip the recomputation baseline")
    p.add_argument("--llamagen_repo", default=None, help="a FoundationVision/LlamaGen checkout to time side by side")
    p.add_argument("--device", default=None, help="cpu or cuda; default: cpu, and cuda too when present")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--bandwidth_mib", type=int, default=512, help="size of the tensor read to measure bandwidth")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results", "sampling.json"))
    return p.parse_args(argv)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def read_bandwidth(device: str, mib: int, repeats: int = 5) -> dict:
    """Bytes per second of reading a large tensor (``.sum()``) and of copying it (read + write), best of a few."""
    x = torch.ones(mib * 2**20 // 4, dtype=torch.float32, device=device)
    y = torch.empty_like(x)
    result = {"tensor_bytes": x.numel() * 4}
    for name, op, bytes_moved in (
        ("read", lambda: x.sum(), x.numel() * 4),
        ("copy", lambda: y.copy_(x), 2 * x.numel() * 4),
    ):
        op()
        best = float("inf")
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            op()
            _sync(device)
            best = min(best, time.perf_counter() - start)
        result[f"{name}_bytes_per_s"] = bytes_moved / best
    return result


def weight_bytes_per_token(model: FVQTransformer) -> int:
    """Bytes of the weights one decode step reads: every Linear of the blocks and the output head."""
    linears = [m for m in model.layers.modules() if isinstance(m, nn.Linear)] + [model.output]
    return sum(m.weight.numel() * m.weight.element_size() for m in linears)


def make_model(args, device: str) -> FVQTransformer:
    torch.manual_seed(args.seed)
    model = FVQTransformer.from_preset(
        args.preset, vocab_size=args.vocab_size, num_classes=args.num_classes, block_size=args.num_tokens
    )
    nn.init.normal_(model.output.weight, mean=0.0, std=model.config.initializer_range)  # a zero head: uniform logits
    return model.to(device).eval()


def _guide(logits: torch.Tensor, guided: bool, scale: float) -> torch.Tensor:
    if not guided:
        return logits
    cond, uncond = logits.float().chunk(2)
    return uncond + scale * (cond - uncond)


@torch.inference_mode()
def recompute_step(model, tokens, rows, t, args, generator) -> torch.LongTensor:
    """The next token from a full forward over the class and ``tokens[:, :t]`` (no cache)."""
    batch, guided = tokens.shape[0], rows.shape[0] > tokens.shape[0]
    ids = tokens[:, : t + 1]  # forward feeds the class and ids[:, :-1]; column t is a placeholder
    logits = model(torch.cat([ids, ids]) if guided else ids, rows).logits[:, -1]
    return sample_next_token(_guide(logits, guided, args.guidance_scale)[:batch], 1.0, args.top_k, 1.0, generator)


def sample_recompute(model, labels, args, generator) -> torch.LongTensor:
    """Sampling without a cache: every token recomputes the whole prefix."""
    rows = _rows(model, labels, args)
    tokens = torch.zeros(len(labels), model.config.block_size, dtype=torch.long, device=labels.device)
    for t in range(model.config.block_size):
        tokens[:, t] = recompute_step(model, tokens, rows, t, args, generator)
    return tokens


def _rows(model, labels, args) -> torch.LongTensor:
    if args.guidance_scale > 1.0:
        return torch.cat([labels, torch.full_like(labels, model.null_class_id)])
    return labels


def time_recompute_strided(model, labels, args, generator, device) -> float:
    """Seconds the recomputation loop takes, from every ``stride``-th step weighted by its group's size."""
    n, stride = model.config.block_size, args.uncached_stride
    rows = _rows(model, labels, args)
    tokens = torch.randint(0, model.config.vocab_size, (len(labels), n), generator=generator, device="cpu").to(device)
    total = 0.0
    for first in range(0, n, stride):
        size = min(stride, n - first)
        t = first + (size - 1) // 2  # the middle of the group; the step's cost grows linearly with t
        _sync(device)
        start = time.perf_counter()
        recompute_step(model, tokens, rows, t, args, generator)
        _sync(device)
        total += size * (time.perf_counter() - start)
    return total


def load_llamagen(repo: str, model: FVQTransformer, device: str):
    """LlamaGen's Transformer with ``model``'s weights and its generate(), imported from ``repo`` at run time."""
    repo = os.path.abspath(os.path.expanduser(repo))
    if not os.path.isfile(os.path.join(repo, "autoregressive", "models", "gpt.py")):
        raise SystemExit(
            f"--llamagen_repo {repo}: no autoregressive/models/gpt.py (a FoundationVision/LlamaGen checkout?)"
        )
    sys.path.insert(0, repo)  # gpt.py imports utils.drop_path from the repository root
    from autoregressive.models.generate import generate as llamagen_generate
    from autoregressive.models.gpt import ModelArgs, Transformer

    c = model.config
    ref = Transformer(
        ModelArgs(
            dim=c.dim,
            n_layer=c.n_layer,
            n_head=c.n_head,
            n_kv_head=c.n_kv_head,
            multiple_of=c.multiple_of,
            ffn_dim_multiplier=c.ffn_dim_multiplier,
            rope_base=c.rope_base,
            norm_eps=c.norm_eps,
            vocab_size=c.vocab_size,
            num_classes=c.num_classes,
            block_size=c.block_size,
            token_dropout_p=0.0,
            resid_dropout_p=0.0,
            ffn_dropout_p=0.0,
            model_type="c2i",
        )
    )
    result = ref.load_state_dict(model.state_dict(), strict=False)
    if result.unexpected_keys or any("freqs_cis" not in k for k in result.missing_keys):
        raise SystemExit(f"LlamaGen's Transformer does not take these weights: {result}")
    return ref.to(device).eval(), llamagen_generate


def best_of(fn, repeats: int, device: str) -> tuple[float, list[float], object]:
    times, out = [], None
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return min(times), times, out


def bench_batch(args, model, llamagen, labels, record) -> None:
    """Time every method at one batch size; ``record(batch, method, seconds, times, **extra)`` keeps each."""
    device, batch, n = str(model.device), len(labels), model.config.block_size

    def cached():
        g = torch.Generator(device).manual_seed(args.seed)
        return generate(model, labels, args.guidance_scale, top_k=args.top_k, generator=g).flatten(1)

    seconds, times, cached_tokens = best_of(cached, args.repeats, device)
    record(batch, "cache", seconds, times, tokens_checksum=int(cached_tokens.sum()))

    if llamagen is not None:
        ref, llamagen_generate = llamagen

        def theirs():
            torch.manual_seed(args.seed)  # LlamaGen samples from the global RNG
            return llamagen_generate(
                ref,
                labels,
                n,
                cfg_scale=args.guidance_scale,
                temperature=1.0,
                top_k=args.top_k,
                top_p=1.0,
                sample_logits=args.top_k != 1,
            )

        seconds, times, their_tokens = best_of(theirs, args.repeats, device)
        same = bool(torch.equal(their_tokens.long(), cached_tokens))
        record(batch, "llamagen", seconds, times, same_tokens_as_cache=same)

    if args.uncached:
        if args.uncached_stride == 1:
            g = torch.Generator(device).manual_seed(args.seed)
            seconds, times, tokens = best_of(lambda: sample_recompute(model, labels, args, g), 1, device)
            extra = {"estimated": False, "same_tokens_as_cache": bool(torch.equal(tokens, cached_tokens))}
        else:
            g = torch.Generator(device).manual_seed(args.seed)
            seconds = time_recompute_strided(model, labels, args, g, device)
            times, extra = [seconds], {"estimated": True, "stride": args.uncached_stride}
        record(batch, "recompute", seconds, times, **extra)


def bench_device(args, device: str) -> dict:
    model = make_model(args, device)
    n = model.config.block_size
    weight_bytes = weight_bytes_per_token(model)
    bandwidth = read_bandwidth(device, args.bandwidth_mib)
    bound_per_batch = n * weight_bytes / bandwidth["read_bytes_per_s"]
    llamagen = load_llamagen(args.llamagen_repo, model, device) if args.llamagen_repo else None
    runs = []
    with torch.inference_mode():  # warm-up outside the timings: kernels, allocator, thread pool
        cache = model.new_cache(2)
        model.forward_cached(cache, class_labels=torch.tensor([0, 0], device=device))
        for _ in range(min(8, n - 1)):
            model.forward_cached(cache, input_ids=torch.zeros(2, 1, dtype=torch.long, device=device))

    def record(batch, method, seconds, times, **extra):
        run = {
            "device": device,
            "batch_size": batch,
            "method": method,
            "num_tokens": n,
            "seconds": seconds,
            "seconds_all": times,
            "tokens_per_s": batch * n / seconds,
            "images_per_s": batch / seconds,
            "bandwidth_bound_s": bound_per_batch,
            "fraction_of_bound": bound_per_batch / seconds,
            **extra,
        }
        runs.append(run)
        print(
            f"  {device} batch {batch:>3} {method:<10} {seconds:8.2f} s  {run['tokens_per_s']:8.1f} tokens/s",
            flush=True,
        )
        return run

    for batch in args.batch_sizes:
        bench_batch(args, model, llamagen, torch.arange(batch, device=device) % args.num_classes, record)
    return {
        "device": device,
        "machine": machine(device),
        "bandwidth": bandwidth,
        "weight_bytes_per_token": weight_bytes,
        "parameters": sum(p.numel() for p in model.parameters()),
        "runs": runs,
    }


def print_table(results: list[dict]) -> None:
    print()
    print(
        "| device | batch | method | s / batch | tokens/s | images/s | cache speed-up | fraction of bandwidth bound |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for result in results:
        for run in result["runs"]:
            cache = next(r for r in result["runs"] if r["method"] == "cache" and r["batch_size"] == run["batch_size"])
            recompute = [
                r for r in result["runs"] if r["method"] == "recompute" and r["batch_size"] == run["batch_size"]
            ]
            speedup = (
                f"{recompute[0]['seconds'] / cache['seconds']:.1f}×" if run["method"] == "cache" and recompute else ""
            )
            name = METHODS[run["method"]] + (
                f" (every {run['stride']}th step, weighted)" if run.get("estimated") else ""
            )
            if run.get("same_tokens_as_cache") is False:
                name += " (tokens differ from the cache's)"
            print(
                f"| {run['device']} | {run['batch_size']} | {name} | {run['seconds']:.2f} | {run['tokens_per_s']:.1f} | "
                f"{run['images_per_s']:.3f} | {speedup} | {100 * run['fraction_of_bound']:.0f} % |"
            )
    for result in results:
        bw = result["bandwidth"]
        print(
            f"\n{result['device']}: weights read per token {result['weight_bytes_per_token'] / 1e6:.1f} MB, measured read "
            f"bandwidth {bw['read_bytes_per_s'] / 1e9:.1f} GB/s (copy {bw['copy_bytes_per_s'] / 1e9:.1f} GB/s), bound "
            f"{result['runs'][0]['bandwidth_bound_s']:.2f} s per {result['runs'][0]['num_tokens']} tokens"
        )


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    load_before = os.getloadavg()
    started = time.time()
    results = [bench_device(args, device) for device in devices]
    print_table(results)
    output = {
        "benchmark": "sampling speed",
        "methods": METHODS,
        "commit": git_commit(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "fvq_hf": fvq_hf.__version__},
        "machine": machine(devices[-1]),
        "settings": {k: v for k, v in vars(args).items() if k != "output"},
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "wall_seconds": time.time() - started,
        "results": results,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as handle:
        json.dump(output, handle, indent=1)
    print(f"\nload average before {load_before}, after {output['load_average_after']}\nwrote {args.output}")


if __name__ == "__main__":
    main()

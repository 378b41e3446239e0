"""Sampling speed of FVQTransformer: tokens and images per second, with and without the KV cache, guidance on.

    python benchmarks/sampling.py                                  # GPT-B, 256 tokens, batch 1 and 16, CPU (+ CUDA)
    python benchmarks/sampling.py --llamagen_repo ~/LlamaGen       # LlamaGen's own generate() on the same weights too
    python benchmarks/sampling.py --device cuda --batch_sizes 1 16 64

The model is ``FVQTransformer.from_preset(--preset)`` with random weights: the preset's N(0, 0.02) init, and an
N(0, 0.02) output head instead of the zero head of a fresh model (a zero head gives uniform logits). Every
method samples ``--num_tokens`` tokens per image with classifier-free guidance (the batch doubled), temperature
1, no top-k / top-p, from the same seed:

- ``fvq_hf.generate`` (KV cache), fp32, its Linears run with the kernels its calibration chose on this machine
  (``fvq_hf.models.decode_kernels``); beside it the same call with each kernel form forced (``--form_batch_sizes``),
  so the calibration's choice can be checked against every form it chose between;
- the same with bf16 weights (``model.to(torch.bfloat16)``), calibrated and each form forced (``--no-bf16`` skips);
- each of these models with its decode step compiled (``generate(..., compile_mode=m)`` for every ``--compile_modes``
  m; skipped where no C++ compiler is found). The first call compiles; its seconds are recorded beside the row
  (``first_call_seconds``), the timed calls come after it;
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
The methods of one batch size run in alternation, ``--repeats`` rounds, and each reports its median. Prints the
calibration's choices and a Markdown table, and writes JSON (commit, versions, machine with its CPU model,
instruction sets, threads and BLAS, settings, load average) to ``benchmarks/results/sampling.json``, which keeps
one entry per machine: a run replaces its own machine's entry and leaves the others, so figures from different
CPUs sit side by side. ``--table`` prints the table of every machine in that file without running anything.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch
from provenance import git_commit, machine
from torch import nn

import fvq_hf
from fvq_hf import FVQTransformer, generate
from fvq_hf.generation.sampling import sample_next_token
from fvq_hf.models import decode_kernels

METHODS = {
    "cache": "fvq_hf.generate (KV cache), kernels as calibrated",
    "cache:linear": "fvq_hf.generate, every Linear as F.linear (forced)",
    "cache:weight_x_t": "fvq_hf.generate, every Linear as weight @ x.T (forced)",
    "cache bf16": "fvq_hf.generate, bf16 weights, kernels as calibrated",
    "cache bf16:linear": "fvq_hf.generate, bf16 weights, F.linear (forced)",
    "cache bf16:weight_x_t": "fvq_hf.generate, bf16 weights, weight @ x.T (forced)",
    "cache bf16:packed": "fvq_hf.generate, bf16 weights, oneDNN prepacked (forced)",
    **{
        f"cache{dtype} compiled:{mode}": f"fvq_hf.generate{weights}, decode step torch.compile(mode={mode!r})"
        for dtype, weights in (("", ""), (" bf16", ", bf16 weights"))
        for mode in ("default", "max-autotune-no-cudagraphs", "max-autotune", "reduce-overhead")
    },
    "recompute": "full forward over the prefix for every token (no cache)",
    "cache (weight @ x.T hard-wired)": "fvq_hf.generate before the calibration: every Linear as weight @ x.T",
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
    p.add_argument("--repeats", type=int, default=3, help="rounds of alternating timed calls (median reported)")
    p.add_argument(
        "--form_batch_sizes", type=int, nargs="*", default=[1], help="batch sizes at which every kernel form is timed"
    )
    p.add_argument("--no-bf16", dest="bf16", action="store_false", help="skip the bf16-weight rows")
    p.add_argument(
        "--compile_modes",
        nargs="*",
        default=["default", "max-autotune-no-cudagraphs"],
        help="torch.compile modes of the decode step to time (none: no compiled rows)",
    )
    p.add_argument("--table", action="store_true", help="only print the table of every machine in --output")
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


def machine_key(info: dict) -> str:
    """The name of a machine's entry in the results: CPU model, threads, device (and GPU)."""
    threads = info["torch_threads"]
    return f"{info.get('gpu') or info.get('cpu_model', info['processor'])} · {threads} thread{'s' * (threads != 1)}"


def sampler(args, model, labels, form=None, compile_mode=None):
    def call():
        with decode_kernels.force_form(form):
            g = torch.Generator(str(model.device)).manual_seed(args.seed)
            tokens = generate(
                model, labels, args.guidance_scale, top_k=args.top_k, generator=g, compile_mode=compile_mode
            )
            return tokens.flatten(1)

    return call


def can_compile(device: str) -> bool:
    """Whether ``torch.compile`` can build here: on a CPU it needs a C++ compiler."""
    if device != "cpu":
        return True
    from torch._inductor.cpp_builder import get_cpp_compiler
    from torch._inductor.exc import InvalidCxxCompiler

    try:
        return bool(get_cpp_compiler())
    except InvalidCxxCompiler:
        return False


def bench_batch(args, model, model_bf16, llamagen, labels, record) -> None:
    """Time every method at one batch size, in alternation; ``record(batch, method, times, **extra)`` keeps each."""
    device, batch, n = str(model.device), len(labels), model.config.block_size
    methods = {"cache": sampler(args, model, labels)}
    if batch in args.form_batch_sizes:
        for form in decode_kernels.available_forms(model.device, model.dtype):
            methods[f"cache:{form}"] = sampler(args, model, labels, form)
    if model_bf16 is not None:
        methods["cache bf16"] = sampler(args, model_bf16, labels)
        if batch in args.form_batch_sizes:
            for form in decode_kernels.available_forms(model_bf16.device, model_bf16.dtype):
                methods[f"cache bf16:{form}"] = sampler(args, model_bf16, labels, form)
    compile_modes = args.compile_modes if can_compile(device) else []
    if args.compile_modes and not compile_modes:
        print("  no C++ compiler found: the compiled rows are skipped")
    first_calls = {}
    for mode in compile_modes:
        for dtype, m in (("", model), (" bf16", model_bf16)):
            if m is not None:
                name = f"cache{dtype} compiled:{mode}"
                methods[name] = sampler(args, m, labels, compile_mode=mode)
                _sync(device)
                start = time.perf_counter()
                methods[name]()  # compiles (or finds the graph compiled for another batch size)
                _sync(device)
                first_calls[name] = time.perf_counter() - start
                print(f"  {device} batch {batch:>3} {name}: first call {first_calls[name]:.1f} s", flush=True)
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
            ).long()

        methods["llamagen"] = theirs
    times, tokens = {name: [] for name in methods}, {}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            _sync(device)
            start = time.perf_counter()
            tokens[name] = fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    for name in methods:
        extra = {"same_tokens_as_cache": bool(torch.equal(tokens[name], tokens["cache"]))}
        if name == "cache":
            extra = {"tokens_checksum": int(tokens[name].sum())}
        if name in first_calls:
            extra["first_call_seconds"] = first_calls[name]
        record(batch, name, times[name], **extra)

    if args.uncached:
        g = torch.Generator(device).manual_seed(args.seed)
        if args.uncached_stride == 1:
            start = time.perf_counter()
            recomputed = sample_recompute(model, labels, args, g)
            extra = {"estimated": False, "same_tokens_as_cache": bool(torch.equal(recomputed, tokens["cache"]))}
            seconds = time.perf_counter() - start
        else:
            seconds = time_recompute_strided(model, labels, args, g, device)
            extra = {"estimated": True, "stride": args.uncached_stride}
        record(batch, "recompute", [seconds], **extra)


def calibrate(model: FVQTransformer, rows: int) -> dict:
    """Seconds the first decode kernels for ``rows`` rows cost (measuring, packing), and what was chosen."""
    start = time.perf_counter()
    kernels = model._kernels_for(rows)
    seconds = time.perf_counter() - start
    chosen = decode_kernels.calibration()
    per_shape = {
        f"{out}x{inp}": {
            "form": kernels.forms[(out, inp)],
            "median_call_us": {f: round(1e6 * t, 1) for f, t in chosen[key]["seconds"].items()},
        }
        for key in chosen
        for (dev, dtype, r, out, inp) in [key]
        if dtype == model.dtype and r == rows and dev == model.device.type
    }
    return {"dtype": str(model.dtype).removeprefix("torch."), "rows": rows, "seconds": seconds, "shapes": per_shape}


def bench_device(args, device: str) -> dict:
    model = make_model(args, device)
    model_bf16 = make_model(args, device).to(torch.bfloat16) if args.bf16 else None
    n = model.config.block_size
    weight_bytes = weight_bytes_per_token(model)
    bandwidth = read_bandwidth(device, args.bandwidth_mib)
    bound_per_batch = n * weight_bytes / bandwidth["read_bytes_per_s"]
    llamagen = load_llamagen(args.llamagen_repo, model, device) if args.llamagen_repo else None
    guided = args.guidance_scale > 1.0
    calibrations = []
    for m in [model] + ([model_bf16] if model_bf16 is not None else []):
        for batch in args.batch_sizes:  # the first decode on this machine: the calibration, timed
            calibrations.append(calibrate(m, batch * (2 if guided else 1)))
            c = calibrations[-1]
            choice = ", ".join(f"{s} {v['form']} {v['median_call_us']}" for s, v in c["shapes"].items())
            print(f"  calibration {c['dtype']} {c['rows']} rows: {1000 * c['seconds']:.0f} ms; µs per call {choice}")
    runs = []
    with torch.inference_mode():  # warm-up outside the timings: kernels, allocator, thread pool
        for m in [model] + ([model_bf16] if model_bf16 is not None else []):
            cache = m.new_cache(2)
            m.forward_cached(cache, class_labels=torch.tensor([0, 0], device=device))
            for _ in range(min(8, n - 1)):
                m.forward_cached(cache, input_ids=torch.zeros(2, 1, dtype=torch.long, device=device))

    def record(batch, method, times, **extra):
        seconds = statistics.median(times)
        bound = bound_per_batch / 2 if "bf16" in method else bound_per_batch  # bf16 weights: half the bytes
        run = {
            "device": device,
            "batch_size": batch,
            "method": method,
            "num_tokens": n,
            "seconds": seconds,
            "seconds_all": times,
            "tokens_per_s": batch * n / seconds,
            "images_per_s": batch / seconds,
            "bandwidth_bound_s": bound,
            "fraction_of_bound": bound / seconds,
            **extra,
        }
        runs.append(run)
        print(
            f"  {device} batch {batch:>3} {method:<22} {seconds:8.2f} s  {run['tokens_per_s']:8.1f} tokens/s",
            flush=True,
        )
        return run

    for batch in args.batch_sizes:
        bench_batch(args, model, model_bf16, llamagen, torch.arange(batch, device=device) % args.num_classes, record)
    return {
        "device": device,
        "machine": machine(device),
        "bandwidth": bandwidth,
        "weight_bytes_per_token": weight_bytes,
        "parameters": sum(p.numel() for p in model.parameters()),
        "calibration": calibrations,
        "runs": runs,
    }


def _method_name(run: dict) -> str:
    name = METHODS[run["method"]] + (f" (every {run['stride']}-th step, weighted)" if run.get("estimated") else "")
    if run.get("same_tokens_as_cache") is False:
        name += " (bf16: other samples than fp32's)" if "bf16" in run["method"] else " (tokens differ!)"
    return name


def print_table(entries: dict) -> None:
    """One Markdown table of every machine's runs, with each time's ratio to LlamaGen's loop in the same run."""
    print()
    print(
        "| machine | batch | method | s / batch | vs LlamaGen's loop | tokens/s | KV cache vs recomputation "
        "| fraction of bandwidth bound |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for key, entry in entries.items():
        for result in entry["results"]:
            runs = result["runs"]
            for run in runs:
                same_batch = {r["method"]: r for r in runs if r["batch_size"] == run["batch_size"]}
                ratio = f"{run['seconds'] / same_batch['llamagen']['seconds']:.2f}×" if "llamagen" in same_batch else ""
                speedup = ""
                if run["method"] in ("cache", "cache (weight @ x.T hard-wired)") and "recompute" in same_batch:
                    speedup = f"{same_batch['recompute']['seconds'] / run['seconds']:.1f}×"
                print(
                    f"| {key} | {run['batch_size']} | {_method_name(run)} | {run['seconds']:.2f} | {ratio} | "
                    f"{run['tokens_per_s']:.1f} | {speedup} | {100 * run['fraction_of_bound']:.0f} % |"
                )
    for key, entry in entries.items():
        for result in entry["results"]:
            bw = result["bandwidth"]
            load = entry.get("load_average_before"), entry.get("load_average_after")
            print(
                f"\n{key} ({result['device']}, commit {str(entry.get('commit'))[:7]}, load {load[0][0]:.1f} before, "
                f"{load[1][0]:.1f} after): weights read per token {result['weight_bytes_per_token'] / 1e6:.1f} MB, "
                f"read bandwidth {bw['read_bytes_per_s'] / 1e9:.1f} GB/s, bound "
                f"{result['runs'][0]['bandwidth_bound_s']:.2f} s per {result['runs'][0]['num_tokens']} tokens"
            )


def load_entries(path: str) -> dict:
    """The per-machine entries already in ``path`` (a file from before entries existed becomes one entry)."""
    if not os.path.exists(path):
        return {}
    with open(path) as handle:
        data = json.load(handle)
    if "machines" in data:
        return data["machines"]
    entry = {k: v for k, v in data.items() if k not in ("benchmark", "methods")}
    entry["settings"]["llamagen_repo"] = bool(entry["settings"].get("llamagen_repo"))  # never a local folder
    for result in entry["results"]:
        for run in result["runs"]:  # that decode step ran every Linear as weight @ x.T, chosen by hand
            run["method"] = "cache (weight @ x.T hard-wired)" if run["method"] == "cache" else run["method"]
    return {machine_key(data["machine"]): entry}


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.table:
        print_table(load_entries(args.output))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    load_before = os.getloadavg()
    started = time.time()
    results = [bench_device(args, device) for device in devices]
    settings = {k: v for k, v in vars(args).items() if k not in ("output", "table")}
    settings["llamagen_repo"] = bool(args.llamagen_repo)  # a local folder is not recorded
    entry = {
        "commit": git_commit(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "fvq_hf": fvq_hf.__version__},
        "machine": machine(devices[-1]),
        "settings": settings,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "wall_seconds": time.time() - started,
        "results": results,
    }
    entries = load_entries(args.output)
    entries[machine_key(entry["machine"])] = entry
    print_table(entries)
    output = {
        "benchmark": "sampling speed",
        "methods": METHODS,
        "note": "one entry per machine (CPU model or GPU, threads); a run replaces only its own machine's entry",
        "machines": entries,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as handle:
        json.dump(output, handle, indent=1)
    print(f"\nload average before {load_before}, after {entry['load_average_after']}")
    print(f"wrote {os.path.relpath(args.output)} ({machine_key(entry['machine'])})")


if __name__ == "__main__":
    main()

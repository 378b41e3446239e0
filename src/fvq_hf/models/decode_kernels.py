"""The decode step's matrix products: a few rows times every weight, each with the kernel measured fastest here.

A decode step multiplies a handful of rows (the batch, doubled under guidance) by every Linear weight of the model
once, so it is bound by how fast a kernel streams a weight, and that depends on the CPU and its BLAS: the same
form was the faster one on one 2-core VM and several times slower on another (the figures are in the README and
``benchmarks/results/``). So nothing here is chosen by CPU name. The first time a model decodes with a given number of rows on a device, ``DecodeKernels`` times every
form it can use on the model's own weights (one call per weight and form, in rotating order so no form always
reads a weight the previous one just brought into cache: about two decode steps' worth of matrix products) and
keeps, per weight shape and for the rest of the process, ``F.linear`` unless another form is clearly faster.
Every form computes the same product; fp32 forms differ at most in the order of the additions, and the tests
check that forcing each form gives the same tokens.

Forms:

- ``linear``: ``F.linear(x, W)``.
- ``weight_x_t``: ``(W @ x.T).T``, made contiguous: the BLAS sees one wide matrix times a few columns.
- ``packed``: oneDNN's linear with the weight reordered once into its blocked layout (a copy of the weight kept
  with the model). Offered for bf16 / fp16 weights only, where the reorder lets the CPU's bf16 instructions
  stream half the bytes of fp32; for fp32 it measured no faster than ``linear`` and would double the memory.
"""

from __future__ import annotations

import contextlib
import statistics
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

FORMS = ("linear", "weight_x_t", "packed")

# (device type, dtype, rows, out features, in features) -> {"form": chosen, "seconds": {form: seconds}}, per process
_CHOICES: dict[tuple, dict] = {}
# a form forced by the caller (tests, the benchmark); None = measure
_FORCED: list[str | None] = [None]
# timed calls per form and weight shape: one per weight, several rounds for a shape only one weight has (the head)
_MIN_SAMPLES = 6
# a form other than F.linear must be this much faster (median paired ratio) to be chosen: noise keeps F.linear
_MARGIN = 0.1
# half-precision dtypes already warned about in this process (decoding them on a CPU without their instructions)
_WARNED_SLOW_DTYPES: set[torch.dtype] = set()


def _linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return F.linear(x, weight)


def _weight_x_t(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return torch.mm(weight, x.t()).t().contiguous()


def _packing_supported(dtype: torch.dtype) -> bool:
    if dtype == torch.bfloat16:
        return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if dtype == torch.float16:
        return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_fp16_supported()
    return False


def _warn_if_half_precision_is_emulated(device: torch.device, dtype: torch.dtype) -> None:
    """Without bf16 / fp16 instructions every half-precision product converts to fp32 on the way: measured 1.2× (batch
    1) to 3.8× (batch 16) slower than fp32 on a 2-core AVX2 CPU (README, Sampling speed). Say so once per process."""
    if device.type != "cpu" or dtype not in (torch.bfloat16, torch.float16) or dtype in _WARNED_SLOW_DTYPES:
        return
    if _packing_supported(dtype):
        return
    _WARNED_SLOW_DTYPES.add(dtype)
    warnings.warn(
        f"decoding with {dtype} weights on a CPU without {dtype} matrix instructions "
        f"({'AVX-512 BF16 or AMX' if dtype == torch.bfloat16 else 'AVX-512 FP16 or AMX-FP16'}): "
        "every product converts to float32 on the way, so this is slower than keeping the model in float32. Keep "
        "it in float32 here (model.to(torch.float32)), or compile the decode step (compile_mode="
        '"max-autotune-no-cudagraphs"), whose GEMM templates read the half-precision weights directly.',
        stacklevel=3,
    )


def available_forms(device: torch.device, dtype: torch.dtype) -> tuple[str, ...]:
    """The forms this device and weight dtype can run; off the CPU, ``F.linear`` alone (cuBLAS picks its own)."""
    if device.type != "cpu":
        return ("linear",)
    return ("linear", "weight_x_t") + (("packed",) if _packing_supported(dtype) else ())


def _prepare(form: str, weight: torch.Tensor, rows: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function of ``x`` (rows, in) computing ``F.linear(x, weight)`` with ``form``."""
    if form == "linear":
        return lambda x: _linear(x, weight)
    if form == "weight_x_t":
        return lambda x: _weight_x_t(x, weight)
    if form == "packed":
        packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), rows)
        return lambda x: torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")
    raise ValueError(f"unknown kernel form {form!r}; choose from {', '.join(FORMS)}")


@contextlib.contextmanager
def force_form(form: str | None):
    """Within this context every decode uses ``form`` (for tests and the benchmark); ``None`` measures."""
    if form is not None and form not in FORMS:
        raise ValueError(f"unknown kernel form {form!r}; choose from {', '.join(FORMS)}")
    previous, _FORCED[0] = _FORCED[0], form
    try:
        yield
    finally:
        _FORCED[0] = previous


def forced_form() -> str | None:
    """The form ``force_form`` set, or None (measure)."""
    return _FORCED[0]


def calibration() -> dict[tuple, dict]:
    """What the calibration chose in this process: ``{(device, dtype, rows, out, in): {"form", "seconds"}}``."""
    return {key: {"form": c["form"], "seconds": dict(c["seconds"])} for key, c in _CHOICES.items()}


def _calibrate(weights: list[torch.Tensor], rows: int, forms: tuple[str, ...]) -> tuple[str, dict, dict]:
    """Time every form on every weight of one shape, in rotating order, at least ``_MIN_SAMPLES`` calls per form;
    return the fastest form, the median seconds per call of each, and every form's prepared functions.

    The choice is the median over the calls of each form's time divided by the first form's (``F.linear``) time
    on the same weight in the same round: a call slowed by another process (a shared machine) moves the median
    little, and another form replaces ``F.linear`` only when it is at least ``_MARGIN`` faster.
    """
    prepared = {form: [_prepare(form, w, rows) for w in weights] for form in forms}
    x = torch.randn(rows, weights[0].shape[1], dtype=weights[0].dtype, device=weights[0].device)
    for form in forms:  # first calls (allocations, kernel selection) outside the timing
        prepared[form][0](x)
    seconds = {form: [] for form in forms}
    rounds = -(-_MIN_SAMPLES // len(weights))
    for r in range(rounds):
        for i in range(len(weights)):
            for j in range(len(forms)):
                form = forms[(r + i + j) % len(forms)]
                start = time.perf_counter()
                prepared[form][i](x)
                seconds[form].append(time.perf_counter() - start)
    ratio = {form: statistics.median(a / b for a, b in zip(seconds[form], seconds[forms[0]])) for form in forms}
    median = {form: statistics.median(seconds[form]) for form in forms}
    best = min(forms, key=ratio.__getitem__)
    return (best if ratio[best] < 1 - _MARGIN else forms[0]), median, prepared


class DecodeKernels:
    """For one model on one device, dtype and row count: the function computing each Linear of a decode step.

    ``kernels(linear, x)`` is ``linear(x)`` for ``x`` (rows, in) without bias. Built by ``for_model`` from the
    process's calibration (measured on first use), or from the form ``force_form`` names.
    """

    def __init__(self, functions: dict[nn.Linear, Callable[[torch.Tensor], torch.Tensor]], forms: dict[tuple, str]):
        self.functions = functions
        self.forms = forms  # (out, in) -> the form used

    def __call__(self, linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        return self.functions[linear](x)

    @classmethod
    def for_model(cls, linears: list[nn.Linear], rows: int) -> DecodeKernels:
        weight = linears[0].weight
        device, dtype = weight.device, weight.dtype
        _warn_if_half_precision_is_emulated(device, dtype)
        forms = available_forms(device, dtype)
        by_shape: dict[tuple, list[nn.Linear]] = {}
        for linear in linears:
            by_shape.setdefault(tuple(linear.weight.shape), []).append(linear)
        functions, chosen = {}, {}
        for shape, group in by_shape.items():
            weights = [linear.weight.detach() for linear in group]
            key = (device.type, dtype, rows, *shape)
            form = _FORCED[0]
            if form is not None and form not in forms:
                raise ValueError(f"kernel form {form!r} is not available for {dtype} on {device.type}: {forms}")
            if form is None and key in _CHOICES:
                form = _CHOICES[key]["form"]
            if form is None:
                form, seconds, prepared = _calibrate(weights, rows, forms)
                _CHOICES[key] = {"form": form, "seconds": seconds}
                group_functions = prepared[form]
            else:
                group_functions = [_prepare(form, w, rows) for w in weights]
            functions.update(zip(group, group_functions))
            chosen[shape] = form
        return cls(functions, chosen)

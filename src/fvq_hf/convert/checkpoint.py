"""The bottom of the converters: reading a checkpoint file safely, finding its weights, and checking them key by
key against the model built for them. The tokenizer (``tokenizer.py``) and GPT (``transformer.py``) converters
both stand on this; neither imports the other.
"""

from __future__ import annotations

import argparse
import os
import pickle

import torch

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class ConversionError(ValueError):
    """The source file cannot be converted; the message names the file or keys at fault and what to do."""


def read_checkpoint_file(path: str | os.PathLike) -> tuple[object, str]:
    """Open a checkpoint safely: ``.safetensors``, or a torch file under ``weights_only=True`` that may hold
    argparse's ``Namespace`` and nothing else beyond tensors and plain containers. Returns (content, format)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ConversionError(
            f"{path!r} is a folder, not a checkpoint file: fvq-convert reads one official .pt / .pth / .safetensors "
            "file (a converted folder loads as it is, with FVQModel / FVQPipeline.from_pretrained)"
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint file at {path!r}")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(path), "safetensors"
        except Exception as error:  # safetensors raises its own error types for a bad header
            raise ConversionError(
                f"{path!r} is not a readable safetensors file (truncated or corrupt?): {error}"
            ) from error
    with open(path, "rb") as handle:
        head = handle.read(64)
    if not head.startswith((b"PK", b"\x80")):  # torch.save writes a zip archive (legacy files: a pickle)
        raise _not_a_checkpoint(path, head, "neither a zip archive nor a pickle")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConversionError(
            f"{path!r} holds pickled objects other than tensors, plain containers and argparse.Namespace, and "
            "fvq-convert does not unpickle them: unpickling can run arbitrary code. If you trust the file, load it "
            "yourself, save its state dict with safetensors.torch.save_file and convert that. "
            f"torch said: {first_line}"
        ) from error
    except Exception as error:  # torch.load fails on a damaged file in many ways (KeyError: 101 …)
        raise ConversionError(
            f"{path!r} is not a readable PyTorch checkpoint (truncated or corrupt?): "
            + f"{type(error).__name__}: {error}".splitlines()[0]
        ) from error
    return raw, "PyTorch pickle (weights_only)"


def _not_a_checkpoint(path: str, head: bytes, why: str) -> ConversionError:
    text = f"text beginning {head[:40].decode('ascii')!r}" if _looks_like_text(head) else why
    return ConversionError(
        f"{path!r} is not a PyTorch checkpoint ({text}): fvq-convert reads files written by torch.save (.pt / .pth) "
        "or safetensors (.safetensors). Check that the download finished and saved the checkpoint itself, not a web "
        "page or a Git LFS pointer (`git lfs pull` fetches the real file)."
    )


def _looks_like_text(head: bytes) -> bool:
    return bool(head) and all(32 <= b < 127 or b in b"\t\r\n" for b in head)


def strip_wrapper_prefix(name: str) -> str:
    for prefix in _WRAPPER_PREFIXES:  # DistributedDataParallel / torch.compile wrappers
        name = name.removeprefix(prefix)
    return name


def split_container(path: str, raw) -> tuple[dict[str, torch.Tensor], str, dict, int | None]:
    """The weights of a training checkpoint (EMA preferred, then ``model``, ``module``, ``state_dict``, else the
    dict itself) under key names without wrapper prefixes, its ``args`` as a dict and its ``steps``. The values are
    not checked yet (:func:`pick_weights` does), so a caller can first say whether the keys are of its kind."""
    if not isinstance(raw, dict):
        raise ConversionError(f"{path!r} holds a {type(raw).__name__}, not a checkpoint dict or a state dict")
    args = raw.get("args")
    args = vars(args) if isinstance(args, argparse.Namespace) else dict(args) if isinstance(args, dict) else {}
    steps = raw.get("steps")
    for key in ("ema", "model", "module", "state_dict"):
        if isinstance(raw.get(key), dict):
            weights, weights_key = raw[key], key
            break
    else:
        weights, weights_key = raw, "state dict"
    state = {strip_wrapper_prefix(str(name)): value for name, value in weights.items()}
    return state, weights_key, args, int(steps) if isinstance(steps, int) else None


def pick_weights(
    path: str, raw, required: dict[str, str], kind: str, hint: str = ""
) -> tuple[dict[str, torch.Tensor], str, dict, int | None]:
    """:func:`split_container`, then check that the weights are of ``kind``: every key of ``required`` (key: what
    it is) present, and every value a tensor. The error names the keys that are missing, not those present."""
    state, weights_key, args, steps = split_container(path, raw)
    missing = [f"{key!r} ({what})" for key, what in required.items() if key not in state]
    if missing:
        sample = ", ".join(sorted(state)[:5]) or "none"
        raise ConversionError(
            f"{path!r} does not look like {kind} checkpoint: its {weights_key} has no {' and no '.join(missing)} among its "
            f"{len(state)} keys (first: {sample}){hint}"
        )
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ConversionError(
                f"{path!r}: entry {name!r} of the {weights_key} is a {type(value).__name__}, not a tensor"
            )
    return state, weights_key, args, steps


def match_keys(
    expected: dict[str, torch.Tensor],
    renamed: dict[str, tuple[str, torch.Tensor]],
    unknown: list[str],
    what: str,
    hint: str = "",
) -> dict[str, torch.Tensor]:
    """Check source tensors against the state dict of the model built for them; return the model's state dict.

    ``renamed`` maps each model key to (the source key it came from, its tensor); ``unknown`` lists source keys
    that had no model name. Raises ``ConversionError`` naming every unknown, missing or mis-shaped key.
    """
    unknown = sorted(unknown + [source for name, (source, _) in renamed.items() if name not in expected])
    misshaped = [
        f"{source} {tuple(tensor.shape)}"
        + (f" → {name}" if name != source else "")
        + f" expects {tuple(expected[name].shape)}"
        for name, (source, tensor) in renamed.items()
        if name in expected and tuple(tensor.shape) != tuple(expected[name].shape)
    ]
    missing = sorted(set(expected) - set(renamed))
    problems = [
        f"{label} ({len(keys)}): {separator.join(keys)}"
        for label, keys, separator in (
            ("unknown keys", unknown, ", "),
            ("missing keys", missing, ", "),
            ("mis-shaped keys", misshaped, "; "),
        )
        if keys
    ]
    if problems:
        raise ConversionError(f"{what} does not match the model inferred from it{hint}:\n  " + "\n  ".join(problems))
    return {name: tensor for name, (_, tensor) in renamed.items()}

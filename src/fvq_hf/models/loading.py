"""Loading a saved tokenizer without knowing its kind: the config's ``_class_name`` says which class wrote it."""

from __future__ import annotations

import os

from .fvq_model import FVQModel, load_pretrained
from .multicode_model import MultiCodeFVQModel

TOKENIZER_CLASSES = {cls.__name__: cls for cls in (FVQModel, MultiCodeFVQModel)}


def tokenizer_class(pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> type:
    """``FVQModel`` or ``MultiCodeFVQModel``, whichever saved the tokenizer at ``pretrained_model_name_or_path``
    (a folder or a Hub id; ``kwargs`` as for ``from_pretrained``, e.g. ``subfolder``, ``revision``)."""
    config_kwargs = {k: v for k, v in kwargs.items() if k in ("subfolder", "revision", "cache_dir", "token")}
    # through load_pretrained, as from_pretrained goes: a local subfolder that is missing is named, never skipped
    config = load_pretrained(FVQModel.load_config, os.fspath(pretrained_model_name_or_path), **config_kwargs)
    name = config.get("_class_name")
    if name not in TOKENIZER_CLASSES:
        raise ValueError(
            f"{os.fspath(pretrained_model_name_or_path)!r} holds a {name or 'model of no named class'}, not an fvq_hf "
            f"tokenizer ({' or '.join(TOKENIZER_CLASSES)}); give the folder or Hub id of a tokenizer"
        )
    return TOKENIZER_CLASSES[name]


def load_tokenizer(pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> FVQModel | MultiCodeFVQModel:
    """``from_pretrained`` of the class that saved the tokenizer: a single-code ``FVQModel`` or a multi-code
    ``MultiCodeFVQModel`` (RQ-VAE, VAR)."""
    cls = tokenizer_class(pretrained_model_name_or_path, **kwargs)
    return cls.from_pretrained(os.fspath(pretrained_model_name_or_path), **kwargs)

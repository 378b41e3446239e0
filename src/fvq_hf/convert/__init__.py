"""Converters of official checkpoints into fvq_hf folders (the ``fvq-convert`` command, :mod:`.cli`).

Three layers, data flowing down: :mod:`.checkpoint` reads a file safely, finds its weights and checks them key by
key against the model built for them; :mod:`.tokenizer` (FVQ / LlamaGen VQGANs → ``FVQModel`` or diffusers
``VQModel``) and :mod:`.transformer` (LlamaGen c2i GPTs → ``FVQTransformer`` or a whole ``FVQPipeline``) stand on
it, side by side, with :mod:`.multicode` (FVQ's RQ-VAE and VAR tokenizers, VAR's own → ``MultiCodeFVQModel``) on
:mod:`.tokenizer`; :mod:`.cli` on all three. Their model cards are written by :mod:`fvq_hf.hub.converted_cards`.
"""

from .checkpoint import ConversionError, read_checkpoint_file, split_container, strip_wrapper_prefix
from .cli import main, parse_args
from .multicode import convert_residual_checkpoint, convert_var_checkpoint, infer_var_config, is_var_state
from .tokenizer import (
    ConversionResult,
    SourceCheckpoint,
    convert_checkpoint,
    convert_state_dict,
    infer_config,
    load_checkpoint,
    rename_key,
    save_converted,
)
from .transformer import (
    LLAMAGEN_GPT_MODELS,
    LLAMAGEN_SAMPLING,
    TransformerConversion,
    attention_heads,
    convert_gpt_checkpoint,
    describe_conversion,
    imagenet_id2label,
    infer_transformer_config,
    is_gpt_state,
    save_converted_gpt,
)

__all__ = [
    "LLAMAGEN_GPT_MODELS",
    "LLAMAGEN_SAMPLING",
    "ConversionError",
    "ConversionResult",
    "SourceCheckpoint",
    "TransformerConversion",
    "attention_heads",
    "convert_checkpoint",
    "convert_gpt_checkpoint",
    "convert_residual_checkpoint",
    "convert_state_dict",
    "convert_var_checkpoint",
    "describe_conversion",
    "imagenet_id2label",
    "infer_config",
    "infer_transformer_config",
    "infer_var_config",
    "is_gpt_state",
    "is_var_state",
    "load_checkpoint",
    "main",
    "parse_args",
    "read_checkpoint_file",
    "rename_key",
    "save_converted",
    "save_converted_gpt",
    "split_container",
    "strip_wrapper_prefix",
]

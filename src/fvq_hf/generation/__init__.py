"""Generation: sampling image tokens from an FVQTransformer, and the FVQPipeline that decodes them."""

from .pipeline import FVQPipeline
from .sampling import filter_logits, generate, sample_next_token

__all__ = ["FVQPipeline", "filter_logits", "generate", "sample_next_token"]

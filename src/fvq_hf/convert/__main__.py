"""``python -m fvq_hf.convert``: the same as ``fvq-convert``."""

from .cli import main

main()

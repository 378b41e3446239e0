"""The FVQ Space: reconstruct images through a tokenizer and generate images of a class, in the browser.

    python spaces/app.py                       # http://127.0.0.1:7860, the models in spaces/models.yaml
    python spaces/app.py --port 7861 --config my-models.yaml
    FVQ_SPACE_TOKENIZERS=your-org/fvq-16k python spaces/app.py

The same file runs unchanged on Hugging Face Spaces (sdk: gradio), where the server listens where the Space
says (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT). The app itself is fvq_hf.space.build_demo.
"""

from __future__ import annotations

import argparse
import os

try:  # ZeroGPU hardware: `spaces` is imported before torch touches CUDA (elsewhere it is not installed)
    import spaces  # noqa: F401
except ImportError:
    pass

from fvq_hf.space import build_demo, launch_demo
from fvq_hf.space.ui import CONCURRENCY_LIMIT

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--config",
        default=os.environ.get("FVQ_SPACE_CONFIG", os.path.join(HERE, "models.yaml")),
        help="YAML or JSON file listing the tokenizers and generators (default: $FVQ_SPACE_CONFIG or models.yaml)",
    )
    parser.add_argument("--host", default=None, help="address to listen on (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: $FVQ_SPACE_DEVICE, else cuda if any)")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY_LIMIT, help="requests run at once per event")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    demo = build_demo(args.config, device=args.device, concurrency_limit=args.concurrency)
    registry = demo.fvq_registry
    print(f"fvq Space: {args.config}, device {registry.device}", flush=True)
    for kind in ("tokenizers", "generators"):
        for spec in getattr(registry.config, kind):
            state = spec.source if spec.available else "MISSING: " + spec.missing_message().replace("**", "")
            print(f"  {kind[:-1]} {spec.name}: {state}", flush=True)
    launch_demo(demo, server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()

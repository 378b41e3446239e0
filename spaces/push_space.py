"""Publish this folder as a Hugging Face Space, with fvq_hf's source next to app.py (fvq_hf is not on PyPI).

    python spaces/push_space.py --repo_id your-org/fvq-space            # token from `hf auth login` or $HF_TOKEN
    python spaces/push_space.py --repo_id your-org/fvq-space --hardware zero-a10g   # ZeroGPU: spaces.GPU is used

Uploads README.md (the Space card), app.py, models.yaml, requirements.txt, latency.json and screenshots/*.png,
and the package as fvq_hf/ (src/fvq_hf plus the card templates in model_cards/, as pip would install them), in
one commit. The Hub then installs requirements.txt and runs `python app.py`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SPACE_FILES = ("README.md", "app.py", "models.yaml", "requirements.txt", "latency.json")


def stage(folder: str) -> list[str]:
    """Copy what the Space needs into ``folder``; returns the relative paths, sorted."""
    for name in SPACE_FILES:
        if os.path.isfile(os.path.join(HERE, name)):
            shutil.copy2(os.path.join(HERE, name), os.path.join(folder, name))
    shots = os.path.join(HERE, "screenshots")
    if os.path.isdir(shots):
        os.makedirs(os.path.join(folder, "screenshots"), exist_ok=True)
        for name in os.listdir(shots):
            if name.endswith(".png"):
                shutil.copy2(os.path.join(shots, name), os.path.join(folder, "screenshots", name))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(os.path.join(ROOT, "src", "fvq_hf"), os.path.join(folder, "fvq_hf"), ignore=ignore)
    shutil.copytree(os.path.join(ROOT, "model_cards"), os.path.join(folder, "fvq_hf", "model_cards"), ignore=ignore)
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, files in os.walk(folder) for f in files)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo_id", required=True, help="the Space, e.g. your-org/fvq-space")
    parser.add_argument("--token", default=None, help="a write token (default: the logged-in one)")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--hardware", default=None, help="e.g. cpu-basic, zero-a10g, t4-small")
    args = parser.parse_args(argv)

    from huggingface_hub import HfApi

    api = HfApi(token=args.token)
    api.create_repo(
        args.repo_id, repo_type="space", space_sdk="gradio", private=args.private, exist_ok=True,
        space_hardware=args.hardware,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        files = stage(folder)
        commit = api.upload_folder(
            repo_id=args.repo_id, repo_type="space", folder_path=folder, commit_message="Upload the FVQ Space"
        )
    print(f"uploaded {len(files)} files to https://huggingface.co/spaces/{args.repo_id}")
    return str(commit)


if __name__ == "__main__":
    main()

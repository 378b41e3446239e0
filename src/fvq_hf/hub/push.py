"""Uploading a written folder (weights, config, model card) to the Hugging Face Hub in one commit."""

from __future__ import annotations

import os
from dataclasses import dataclass

# what a training run's output folder holds besides the model: resumable state and logs, never published
# (run.json, the run's record, names folders of the machine it ran on)
TRAINING_STATE_PATTERNS = ("checkpoints/**", "logs/**", "metrics.jsonl", "run.json", ".*")


@dataclass(frozen=True)
class HubTarget:
    """Where to publish: the four Hub flags (``--push_to_hub``, ``--hub_model_id``, ``--hub_token``,
    ``--hub_private``) as one value; ``None`` in its place means "do not push"."""

    repo_id: str
    token: str | None = None
    private: bool | None = None


def default_repo_id(output_dir: str | os.PathLike, repo_id: str | None = None) -> str:
    """``repo_id`` if given, else the output folder's name (the Hub adds the user's namespace)."""
    return repo_id or os.path.basename(os.path.abspath(output_dir))


def push_folder(
    output_dir: str | os.PathLike,
    repo_id: str,
    token: str | None = None,
    private: bool | None = None,
    ignore_patterns: list[str] | tuple[str, ...] | None = None,
    commit_message: str = "Upload with fvq_hf",
) -> str:
    """Create ``repo_id`` if needed and upload ``output_dir`` in one commit; return the commit's URL.

    Args:
        output_dir: the folder to upload, as written (``save_pretrained`` output with its ``README.md``).
        repo_id: ``"org/name"``, or ``"name"`` for the token's own namespace.
        token: a Hub token; ``None`` uses the one ``hf auth login`` stored.
        private: create the repository as private; ``None`` leaves the Hub's default (and an existing
            repository's visibility) alone.
        ignore_patterns: glob patterns of files not to upload, e.g. :data:`TRAINING_STATE_PATTERNS`.
        commit_message: the commit's title on the Hub.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(output_dir),
        ignore_patterns=list(ignore_patterns) if ignore_patterns else None,
        commit_message=commit_message,
    )
    return str(info)

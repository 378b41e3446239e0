"""Result images as files of their own, so that concurrent requests never share one being written.

Gradio saves a PIL image a handler returns to ``<cache>/<hash of its bytes>/image.png`` by truncating and
rewriting that file. Two clients that get the same image (the same request sent twice) therefore write the same
path while the first may still be downloading it, and that download ends early. A file path a handler returns
is instead copied into the cache under a temporary name and renamed into place, so the handlers return paths
that :class:`ResultFiles` wrote: each image to a new file, written in full before the handler hands its name on.
"""

from __future__ import annotations

import os
import tempfile
import time

from PIL import Image


class ResultFiles:
    """Writes result images as PNG files with unique names in ``folder`` (default: a new folder in the system's
    temp directory, which Gradio serves from) and removes those older than ``max_age_s`` seconds as new ones are
    written, so a long-running Space does not fill its disk. ``max_age_s`` must cover the time between a handler
    returning and Gradio copying its files (immediate), not the client's download (from Gradio's own copy)."""

    def __init__(self, folder: str | os.PathLike | None = None, max_age_s: float = 600.0):
        if max_age_s <= 0:
            raise ValueError(f"max_age_s={max_age_s} must be positive (seconds a result file is kept)")
        self.folder = os.fspath(folder) if folder else tempfile.mkdtemp(prefix="fvq-space-results-")
        os.makedirs(self.folder, exist_ok=True)
        self.max_age_s = max_age_s

    def save(self, image: Image.Image, name: str = "image") -> str:
        """Write ``image`` as a PNG under a name no other call gets (created exclusively, and returned only once
        written in full); returns its path."""
        self.prune()
        handle, path = tempfile.mkstemp(dir=self.folder, prefix=f"{name}-", suffix=".png")
        try:
            with os.fdopen(handle, "wb") as file:
                image.save(file, format="PNG")
        except BaseException:
            os.unlink(path)
            raise
        return path

    def prune(self) -> None:
        """Remove result files older than ``max_age_s``."""
        cutoff = time.time() - self.max_age_s
        with os.scandir(self.folder) as entries:
            for entry in entries:
                try:
                    if entry.is_file() and entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                except FileNotFoundError:  # another request pruned it first
                    pass

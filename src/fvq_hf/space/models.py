"""Which models the Space serves, and loading them: a config file or environment variables, local folders or Hub
ids, CPU when there is no GPU, and a message naming the command that makes a model that is missing.

Config file (YAML or JSON; ``FVQ_SPACE_CONFIG`` names it), relative paths resolved against the file's folder::

    tokenizers:
      - name: FVQ demo tokenizer (32 px photos)
        path: ../outputs/fvq-demo                   # a local folder, used when it exists
        hub_id: your-org/fvq-demo                   # else this Hub repo
        command: python training/train_tokenizer.py --config training/configs/demo-cpu.yaml
    generators:
      - name: MNIST digits
        path: ../outputs/fvq-mnist-generator
        command: python training/generation_demo.py

Environment variables replace the file's lists: ``FVQ_SPACE_TOKENIZERS`` and ``FVQ_SPACE_GENERATORS``, comma
separated, each entry ``folder_or_hub_id`` or ``name=folder_or_hub_id`` (an existing folder, or a path starting
with ``.``, ``/`` or ``~``, is local; ``owner/name`` otherwise is a Hub id). ``FVQ_SPACE_DEVICE`` forces a device.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass, field

import torch

KINDS = ("tokenizers", "generators")
MARKERS = {"tokenizers": "config.json", "generators": "model_index.json"}  # what a finished folder holds
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelUnavailable(RuntimeError):
    """A configured model that cannot be served; the message says why and, for a local folder, what makes it."""


@dataclass
class ModelSpec:
    name: str
    path: str | None = None  # local folder (absolute once resolved)
    hub_id: str | None = None
    subfolder: str | None = None
    command: str | None = None  # the command that writes ``path``
    marker: str = "config.json"  # the file a finished model folder has (a pipeline's: model_index.json)

    @property
    def exists_locally(self) -> bool:
        """The folder holds a finished model (a training run still writing it has no config file yet)."""
        return self.path is not None and os.path.isfile(os.path.join(self.path, self.subfolder or "", self.marker))

    @property
    def hub_reachable(self) -> bool:
        """A Hub id is usable unless the Hub is offline (``HF_HUB_OFFLINE``) and the repo is not in the cache."""
        if not self.hub_id:
            return False
        from huggingface_hub import constants, snapshot_download

        if not constants.HF_HUB_OFFLINE:
            return True
        try:
            snapshot_download(self.hub_id, local_files_only=True)
        except Exception:  # noqa: BLE001 - not cached: offline, this id cannot be loaded
            return False
        return True

    @property
    def source(self) -> str | None:
        """What ``from_pretrained`` is given: the local folder when it exists, else the Hub id (when reachable)."""
        if self.exists_locally:
            return self.path
        return self.hub_id if self.hub_reachable else None

    @property
    def available(self) -> bool:
        return self.source is not None

    @property
    def shown_source(self) -> str | None:
        """Where the model comes from, as the page shows it: the Hub id, or the folder relative to the working
        directory (``outputs/fvq-demo`` when the app runs from the repository), or else the folder's own name; never
        a machine folder such as ``/tmp/…``."""
        source = self.source
        if source is None or source != self.path:
            return source
        relative = os.path.relpath(source)
        return os.path.basename(source) if relative.startswith("..") else relative

    def missing_message(self) -> str:
        if self.path and os.path.isdir(self.path):
            where = f"`{self.path}` holds no finished model yet (no {self.marker}; is it still training?)"
        else:
            where = f"`{self.path}` does not exist" if self.path else "no folder is configured"
        if self.hub_id:
            where += f" and the Hub is offline with `{self.hub_id}` not in the cache"
        elif not self.path:
            where = "no folder or Hub id is configured"
        make = f" Make it with `{self.command}`." if self.command else ""
        hub = " Or give it a `hub_id` in the config." if not self.hub_id else ""
        return f"**{self.name}** is not available: {where}.{make}{hub}"


@dataclass
class SpaceConfig:
    tokenizers: list[ModelSpec] = field(default_factory=list)
    generators: list[ModelSpec] = field(default_factory=list)

    def hub_ids(self) -> list[str]:
        return [s.hub_id for s in self.tokenizers + self.generators if s.hub_id]


def _resolve(path: str | None, base: str) -> str | None:
    if not path:
        return None
    path = os.path.expanduser(path)
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(base, path))


def _spec_from_entry(entry: dict | str, base: str, marker: str = "config.json") -> ModelSpec:
    if isinstance(entry, str):
        entry = _parse_env_entry(entry)
    unknown = set(entry) - {"name", "path", "hub_id", "subfolder", "command"}
    if unknown:
        raise ValueError(
            f"unknown model config key(s) {sorted(unknown)}; known: name, path, hub_id, subfolder, command"
        )
    if not entry.get("path") and not entry.get("hub_id"):
        raise ValueError(f"model entry {entry} needs a path or a hub_id")
    name = entry.get("name") or entry.get("hub_id") or os.path.basename(os.path.normpath(entry["path"]))
    return ModelSpec(
        name=str(name),
        path=_resolve(entry.get("path"), base),
        hub_id=entry.get("hub_id"),
        subfolder=entry.get("subfolder"),
        command=entry.get("command"),
        marker=marker,
    )


def _parse_env_entry(text: str) -> dict:
    name, _, value = text.strip().rpartition("=")
    value = value.strip()
    local = os.path.isdir(os.path.expanduser(value)) or value.startswith((".", "/", "~")) or not HUB_ID.match(value)
    entry = {"path": value} if local else {"hub_id": value}
    if name.strip():
        entry["name"] = name.strip()
    return entry


def read_config_file(path: str | os.PathLike) -> dict:
    path = os.fspath(path)
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    if path.endswith(".json"):
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise TypeError(f"{path}: expected a mapping with 'tokenizers' and/or 'generators'")
    unknown = set(data) - set(KINDS)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {sorted(unknown)}; known: {', '.join(KINDS)}")
    return data


def load_space_config(path: str | os.PathLike | None = None, environ: dict | None = None) -> SpaceConfig:
    """The models to serve: ``path`` (or ``$FVQ_SPACE_CONFIG``), then ``$FVQ_SPACE_TOKENIZERS`` /
    ``$FVQ_SPACE_GENERATORS`` replace a list when set. Relative paths in the file are relative to its folder,
    those in the environment to the working directory."""
    environ = os.environ if environ is None else environ
    path = path or environ.get("FVQ_SPACE_CONFIG")
    data, base = {}, os.getcwd()
    if path:
        data, base = read_config_file(path), os.path.dirname(os.path.abspath(os.fspath(path)))
    config = SpaceConfig()
    for kind in KINDS:
        marker = MARKERS[kind]
        entries = [_spec_from_entry(e, base, marker) for e in data.get(kind) or []]
        env_value = environ.get(f"FVQ_SPACE_{kind.upper()}")
        if env_value is not None:
            entries = [_spec_from_entry(e, os.getcwd(), marker) for e in env_value.split(",") if e.strip()]
        names = [e.name for e in entries]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"{kind}: the names {duplicates} are used twice; give each model its own name")
        setattr(config, kind, entries)
    return config


def pick_device(preferred: str | None = None) -> torch.device:
    """``preferred`` or ``$FVQ_SPACE_DEVICE`` if given, else CUDA when there is a GPU, else the CPU."""
    preferred = preferred or os.environ.get("FVQ_SPACE_DEVICE")
    if preferred:
        return torch.device(preferred)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class CardUsage:
    usage: float  # fraction of the codebook used on the evaluation set
    dataset: str | None  # what it was evaluated on, as the card's model-index names it


def read_card_usage(source: str | os.PathLike) -> CardUsage | None:
    """The codebook usage in a tokenizer card's ``model-index`` (a folder's README.md, or a Hub id's card), or
    ``None`` when there is no card or it has no usage metric."""
    from huggingface_hub import ModelCard

    source = os.fspath(source)
    try:
        if os.path.isdir(source):
            readme = os.path.join(source, "README.md")
            if not os.path.isfile(readme):
                return None
            card = ModelCard.load(readme, ignore_metadata_errors=True)
        else:
            card = ModelCard.load(source, ignore_metadata_errors=True)
    except Exception:  # noqa: BLE001 - no card on the Hub, offline, or unreadable YAML
        return None
    for result in card.data.eval_results or []:
        if result.metric_type == "usage" and result.metric_value is not None:
            return CardUsage(float(result.metric_value), result.dataset_name)
    return None


class ModelRegistry:
    """Loads each configured model once, on first use, onto ``device``; safe to call from several threads."""

    def __init__(self, config: SpaceConfig, device: str | torch.device | None = None):
        self.config = config
        self.device = pick_device(str(device) if device is not None else None)
        self._lock = threading.Lock()
        self._loaded: dict[tuple[str, str], object] = {}
        self._usage: dict[str, CardUsage | None] = {}

    # -------------------------------------------------------------- lookup
    def names(self, kind: str) -> list[str]:
        return [s.name for s in getattr(self.config, kind)]

    def available_names(self, kind: str) -> list[str]:
        return [s.name for s in getattr(self.config, kind) if s.available]

    def spec(self, kind: str, name: str) -> ModelSpec:
        for spec in getattr(self.config, kind):
            if spec.name == name:
                return spec
        known = ", ".join(self.names(kind)) or "none configured"
        raise ModelUnavailable(f"no {kind[:-1]} named {name!r}; configured: {known}")

    def missing_messages(self, kind: str) -> list[str]:
        return [s.missing_message() for s in getattr(self.config, kind) if not s.available]

    # -------------------------------------------------------------- loading
    def _load(self, kind: str, name: str, loader):
        spec = self.spec(kind, name)
        if not spec.available:
            raise ModelUnavailable(spec.missing_message())
        key = (kind, name)
        with self._lock:
            if key not in self._loaded:
                try:
                    self._loaded[key] = loader(spec)
                except Exception as error:
                    where = "folder" if spec.exists_locally else "Hub repo"
                    hint = f" Make it with `{spec.command}`." if spec.command else ""
                    raise ModelUnavailable(
                        f"**{spec.name}** could not be loaded from the {where} `{spec.source}`: "
                        f"{type(error).__name__}: {error}.{hint}"
                    ) from error
            return self._loaded[key]

    def tokenizer(self, name: str):
        """The tokenizer called ``name`` (an ``FVQModel``, or a ``MultiCodeFVQModel`` for RQ-VAE and VAR), in eval
        mode on the registry's device."""
        from ..models import load_tokenizer

        def load(spec: ModelSpec):
            kwargs = {"subfolder": spec.subfolder} if spec.subfolder else {}
            return load_tokenizer(spec.source, **kwargs).to(self.device).eval()

        return self._load("tokenizers", name, load)

    def pipeline(self, name: str):
        """The ``FVQPipeline`` called ``name`` on the registry's device, progress bar off."""
        from ..generation import FVQPipeline

        def load(spec: ModelSpec):
            pipe = FVQPipeline.from_pretrained(spec.source).to(self.device)
            pipe.set_progress_bar_config(disable=True)
            return pipe

        return self._load("generators", name, load)

    def card_usage(self, name: str) -> CardUsage | None:
        """The codebook usage the tokenizer's card reports for its evaluation set (cached)."""
        if name not in self._usage:
            spec = self.spec("tokenizers", name)
            self._usage[name] = read_card_usage(spec.source) if spec.available else None
        return self._usage[name]

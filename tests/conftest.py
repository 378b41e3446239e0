import os
import signal
import subprocess
import sys
import time

# No network here: without these a Hub id costs ~20 s of retries before failing.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import huggingface_hub
import pytest
import torch
from hub_mock import FakeHub

from fvq_hf import FVQModel

if "OMP_NUM_THREADS" not in os.environ:  # a caller who set the thread count (a shared machine) keeps it
    torch.set_num_threads(min(2, os.cpu_count() or 1))


def small_model(**overrides) -> FVQModel:
    """A tokenizer small enough for CPU tests: 4× downsampling, 1,024 codes of 32 dims, a narrow VQBridge."""
    config = {"codebook_size": 1024, "codebook_dim": 32, "bridge": "S/4", "bridge_output_init_std": 0.02}
    config.update(overrides)
    torch.manual_seed(0)
    return FVQModel.from_preset("tiny", **config).eval()


@pytest.fixture
def images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(2, 3, 32, 32) * 2 - 1


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """An in-memory Hub behind huggingface_hub's real HTTP client (see hub_mock.py)."""
    fake = FakeHub()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # nothing leaves the mock transport
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    huggingface_hub.set_client_factory(fake.client)
    yield fake
    huggingface_hub.set_client_factory(huggingface_hub.utils._http.default_client_factory)


def kill_at_checkpoint(script_args: list[str], checkpoint_dir, timeout: float = 300) -> None:
    """Run ``python <script_args>`` and SIGKILL it (no clean-up, as when a job is pre-empted) as soon as
    ``checkpoint_dir`` exists."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, *script_args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    deadline = time.time() + timeout
    while not checkpoint_dir.is_dir():
        assert process.poll() is None and time.time() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()

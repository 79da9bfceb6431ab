from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# No test may reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random causal LM folder (tokenizer included); treat it as read-only."""
    from tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """torch's 2 OpenMP threads run small ops ~100x slower whenever another process holds a core."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _forget_configured_languages():
    """Params(...) makes its languages the ones okapi.languages.get_language returns; one test's made-up
    language must not leak into the next."""
    yield
    from okapi.languages import configure

    configure({})

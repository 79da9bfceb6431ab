"""The offline policy: no model or dataset hub is reached unless the user asks for it with OKAPI_ALLOW_HUB=1.

Every stage applies it on start (okapi.cli.run), and library entry points that load models apply it again, so a
test, a notebook or a default `dvc repro` never downloads. With OKAPI_ALLOW_HUB=1 nothing is forced offline and
hub ids (e.g. a BLOOMZ reference model) are accepted where a local folder is expected.
"""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping
from pathlib import Path

ALLOW_HUB = "OKAPI_ALLOW_HUB"
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


def hub_allowed(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Whether the user let transformers, datasets and huggingface_hub download (OKAPI_ALLOW_HUB=1)."""
    return environ.get(ALLOW_HUB) == "1"


def apply_offline_policy(environ: MutableMapping[str, str] = os.environ) -> None:
    """Set the HF libraries offline unless the hub is allowed; a value the user exported is kept either way."""
    if not hub_allowed(environ):
        environ.setdefault("HF_HUB_OFFLINE", "1")
        environ.setdefault("HF_DATASETS_OFFLINE", "1")
    environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def is_hub_id(spec: str | Path, environ: MutableMapping[str, str] = os.environ) -> bool:
    """A model named by hub id ("org/name") that may be loaded: the hub is allowed and no such local path exists."""
    return hub_allowed(environ) and not Path(spec).exists() and _HUB_ID.fullmatch(str(spec)) is not None

"""What every stage script shares: logging set-up, offline defaults, and one clear line per bad input."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

from okapi.config import ConfigError
from okapi.hub import apply_offline_policy
from okapi.io import DataError
from okapi.languages import UnknownLanguageError

log = logging.getLogger("okapi")

# Errors that are the user's to fix: printed as one sentence, exit code 2, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, DataError, UnknownLanguageError)


def setup_logging(level: str | None = None) -> None:
    logging.basicConfig(
        level=getattr(logging, (level or os.environ.get("OKAPI_LOG_LEVEL", "INFO")).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # httpx logs every request line at INFO; keep the stage log readable.
    for noisy in ("httpx", "httpx2", "httpcore", "httpcore2", "openai", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return p


def run(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> int:
    """Run a stage's main; user errors become one line on stderr and exit code 2."""
    from okapi.llama_server import EmbeddedServerError
    from okapi.teacher import TeacherFatalError

    apply_offline_policy()  # before any HF library is imported: they read the variables once
    setup_logging()
    try:
        main(argv)
    except (*USER_ERRORS, TeacherFatalError, EmbeddedServerError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0

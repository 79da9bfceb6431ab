"""Publish a dataset the pipeline wrote, with its card, to the Hugging Face Hub (issue 15, item 3).

    OKAPI_ALLOW_HUB=1 HF_TOKEN=hf_... python -m okapi.publish --repo-id ORG/NAME --lang vi
    python -m okapi.publish --repo-id ORG/NAME --lang vi --dataset pairs --dry-run   # what would go up

Hub access is off by default, like every download in the pipeline: without ``OKAPI_ALLOW_HUB=1`` the command
stops before it builds a client. The token comes from the environment (``HF_TOKEN``) only and is handed to
``huggingface_hub.HfApi``; it never reaches a log or a file. The folder must hold its card (README.md, written by
the stage) and the card must parse with ``huggingface_hub.DatasetCard``; only the card and the Parquet files go up,
in one commit (``HfApi.upload_folder``), into a dataset repo created if missing (``HfApi.create_repo``).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from pathlib import Path
from typing import Any

from okapi.config import ConfigError
from okapi.languages import get_language

log = logging.getLogger(__name__)

# dataset name -> (folder under the repository root, languages: per language or English only)
DATASETS: dict[str, str] = {
    "translated": "data/translated/{lang}",
    "pairs": "data/rankings/{lang}",
    "generated": "data/generated",
}
_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
CARD = "README.md"


def dataset_folder(root: Path, dataset: str, lang: str | None) -> Path:
    """The folder a stage wrote ``dataset`` (for ``lang``) into, under the repository ``root``."""
    if dataset not in DATASETS:
        raise ConfigError(f"--dataset {dataset!r} is invalid; allowed: {', '.join(DATASETS)}")
    if "{lang}" in DATASETS[dataset]:
        if not lang:
            raise ConfigError(f"--dataset {dataset} needs --lang (a language code from params.yaml)")
        get_language(lang)
    return root / DATASETS[dataset].format(lang=lang)


def files_to_upload(folder: Path) -> list[str]:
    """The card and the Parquet files of ``folder`` (names relative to it); the card must parse."""
    from huggingface_hub import DatasetCard

    card = folder / CARD
    if not card.is_file():
        raise ConfigError(f"{card}: no dataset card; run the stage that writes {folder} (dvc repro) first")
    try:
        DatasetCard.load(card)
    except ValueError as err:
        raise ConfigError(f"{card}: not a valid dataset card ({err})") from err
    parquet = sorted(p.name for p in folder.glob("*.parquet"))
    if not parquet:
        raise ConfigError(f"{folder}: no Parquet file to publish")
    return [CARD, *parquet]


def publish(api: Any, repo_id: str, folder: Path, files: list[str], *, private: bool, message: str) -> Any:
    """Create the dataset repo (if missing) and upload ``files`` of ``folder`` in one commit; the commit info."""
    api.create_repo(repo_id=repo_id, repo_type="dataset", private=private, exist_ok=True)
    return api.upload_folder(
        repo_id=repo_id,
        repo_type="dataset",
        folder_path=str(folder),
        allow_patterns=files,
        commit_message=message,
    )


def _main(argv: list[str] | None) -> None:
    p = argparse.ArgumentParser(prog="python -m okapi.publish", description=__doc__.split("\n\n")[0])
    p.add_argument("--repo-id", required=True, help="the Hub dataset repo, ORG/NAME")
    p.add_argument("--lang", help="language code (translated and pairs datasets)")
    p.add_argument("--dataset", default="translated", choices=list(DATASETS))
    p.add_argument("--root", type=Path, default=Path("."), help="the pipeline's repository root")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.add_argument("--dry-run", action="store_true", help="check and list what would be uploaded; no hub access")
    args = p.parse_args(argv)
    if not _REPO_ID_RE.match(args.repo_id):
        raise ConfigError(f"--repo-id {args.repo_id!r} is invalid; allowed: ORG/NAME (letters, digits, - _ .)")
    folder = dataset_folder(args.root, args.dataset, args.lang)
    files = files_to_upload(folder)
    if args.dry_run:
        log.info("would upload %s from %s to the dataset repo %s", ", ".join(files), folder, args.repo_id)
        return
    if os.environ.get("OKAPI_ALLOW_HUB") != "1":
        raise ConfigError("hub access is off: set OKAPI_ALLOW_HUB=1 (and HF_TOKEN) to upload, or use --dry-run")
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        raise ConfigError("HF_HUB_OFFLINE is set: unset it to upload")
    token = os.environ.get("HF_TOKEN")
    if not token:
        raise ConfigError("HF_TOKEN is not set: export a Hugging Face token with write access to upload")

    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    what = f"{args.dataset}" + (f" ({args.lang})" if args.lang and "{lang}" in DATASETS[args.dataset] else "")
    try:
        info = publish(
            HfApi(token=token),
            args.repo_id,
            folder,
            files,
            private=args.private,
            message=f"Okapi pipeline: {what} dataset and card",
        )
    except HfHubHTTPError as err:
        raise ConfigError(f"upload to the dataset repo {args.repo_id} failed: {str(err).splitlines()[0]}") from err
    log.info("uploaded %s to %s: %s", ", ".join(files), args.repo_id, getattr(info, "commit_url", info))


def main(argv: list[str] | None = None) -> int:
    from okapi.cli import run

    return run(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())

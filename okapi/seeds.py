"""The seed tasks generation draws its in-context examples from (paper §2.1).

Two sets, chosen by ``generate.seed_tasks``:

- ``project`` (the embedded default): ``data/seeds/seed_tasks.jsonl``, written by this project: 25 general tasks
  plus 30 tasks in Okapi's four new categories (the records with an ``okapi_category`` field).
- ``alpaca`` (the paper profiles): Alpaca's 175 published seed tasks (tatsu-lab/stanford_alpaca,
  ``seed_tasks.jsonl``) plus the same 30 Okapi-category tasks, as the paper starts from "Alpaca's 175 seeds plus 30
  new ones". Alpaca's file is not shipped: ``python -m okapi.seeds fetch`` imports it with ``dvc import-url`` into
  ``data/seeds/alpaca/seed_tasks.jsonl`` (a ``.dvc`` file records its URL and checksum; ``dvc update`` refreshes it).

Both files are in Alpaca's seed format: one JSON object per line with ``id``, ``name``, ``instruction``,
``instances`` (a list of ``{input, output}``) and ``is_classification``. Alpaca's ids (``seed_task_<n>``) clash with
ours, so its records are renamed ``alpaca:<id>`` when read.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Literal

from okapi.io import DataError

log = logging.getLogger(__name__)

SeedSet = Literal["project", "alpaca"]
SEED_SETS: tuple[str, ...] = ("project", "alpaca")
# The paper's four new seed categories; our records carry one of these in ``okapi_category``.
OKAPI_CATEGORIES = ("relation_extraction", "event_extraction", "event_summarization", "logical_reasoning")
ALPACA_SEEDS_URL = "https://raw.githubusercontent.com/tatsu-lab/stanford_alpaca/main/seed_tasks.jsonl"
ALPACA_FILE = "seed_tasks.jsonl"
ALPACA_ID_PREFIX = "alpaca:"


def okapi_category_seeds(seeds: list[dict[str, Any]], path: Path) -> list[dict[str, Any]]:
    """The project's seeds in Okapi's new categories; stops when a category is unknown or none is marked."""
    picked = []
    for seed in seeds:
        category = seed.get("okapi_category")
        if category is None:
            continue
        if category not in OKAPI_CATEGORIES:
            raise DataError(
                f"{path}: seed {seed['id']!r} has okapi_category {category!r}; allowed: {', '.join(OKAPI_CATEGORIES)}"
            )
        picked.append(seed)
    if not picked:
        raise DataError(f"{path}: no seed task has an okapi_category field; the Okapi-category seeds are missing")
    return picked


def load_alpaca_seeds(path: Path) -> list[dict[str, Any]]:
    """Alpaca's published seed tasks, checked record by record (the file and line are named on the first bad one),
    with ids renamed ``alpaca:<id>``."""
    from okapi.selfinstruct import load_seeds

    if not path.is_file():
        raise DataError(
            f"{path}: Alpaca's seed tasks are not fetched (generate.seed_tasks = 'alpaca' needs them); run "
            "`python -m okapi.seeds fetch` and commit the .dvc file, or set generate.seed_tasks: project"
        )
    seeds = load_seeds(path)
    for seed in seeds:
        if "okapi_category" in seed:
            raise DataError(f"{path}: seed {seed['id']!r} has an okapi_category field; this is not Alpaca's file")
    return [{**seed, "id": ALPACA_ID_PREFIX + seed["id"]} for seed in seeds]


def load_seed_set(kind: str, project_file: Path, alpaca_dir: Path | None) -> list[dict[str, Any]]:
    """The seed tasks of ``kind``: ``project`` -> the project's file as is; ``alpaca`` -> Alpaca's seed tasks
    (``alpaca_dir/seed_tasks.jsonl``) followed by the project's Okapi-category seeds."""
    from okapi.selfinstruct import load_seeds

    if kind not in SEED_SETS:
        raise DataError(f"generate.seed_tasks = {kind!r} is invalid; allowed: {', '.join(SEED_SETS)}")
    project = load_seeds(project_file)
    okapi = okapi_category_seeds(project, project_file)
    if kind == "project":
        return project
    if alpaca_dir is None:
        raise DataError(
            "generate.seed_tasks = 'alpaca' needs the folder of Alpaca's seed tasks: pass --alpaca-seeds "
            "(dvc.yaml passes data/seeds/alpaca)"
        )
    alpaca = load_alpaca_seeds(alpaca_dir / ALPACA_FILE)
    log.info("seed tasks: %d of Alpaca's and %d in Okapi's new categories", len(alpaca), len(okapi))
    return alpaca + okapi


def fetch_alpaca_seeds(dest_dir: Path, url: str = ALPACA_SEEDS_URL) -> str:
    """``dvc import-url`` Alpaca's seed file into ``dest_dir``; checks every record and undoes the import when one
    is malformed. Returns "imported" or "present" (already imported: nothing is fetched twice)."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    target = dest_dir / ALPACA_FILE
    if Path(f"{target}.dvc").is_file():
        return "present"
    try:
        repo = Repo(".")
    except DvcException as err:
        raise DataError(f"not inside a DVC project ({err}); run fetch from the project root") from err
    dest_dir.mkdir(parents=True, exist_ok=True)
    with repo:
        log.info("dvc import-url %s %s", url, target)
        try:
            repo.imp_url(url, out=str(target))
        except DvcException as err:
            raise DataError(f"could not import Alpaca's seed tasks from {url}: {err.__cause__ or err}") from err
    try:
        load_alpaca_seeds(target)
    except DataError:
        # A kept .dvc file would make the next fetch skip a file that cannot be used.
        target.unlink(missing_ok=True)
        Path(f"{target}.dvc").unlink(missing_ok=True)
        raise
    return "imported"


def _main(argv: list[str] | None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m okapi.seeds",
        description="Alpaca's seed tasks for generate.seed_tasks: alpaca (`fetch` imports them with dvc import-url).",
    )
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", help="dvc import-url Alpaca's seed_tasks.jsonl into data/seeds/alpaca/")
    f.add_argument("--dest", type=Path, default=Path("data/seeds/alpaca"))
    f.add_argument("--url", default=ALPACA_SEEDS_URL, help=f"default: {ALPACA_SEEDS_URL}")
    args = p.parse_args(argv)
    done = fetch_alpaca_seeds(args.dest, args.url)
    n = len(load_alpaca_seeds(args.dest / ALPACA_FILE))
    where = args.dest / ALPACA_FILE
    if done == "present":
        sys.stdout.write(f"{where} is already imported ({n} seed tasks); `dvc update {where}.dvc` refreshes it\n")
    else:
        sys.stdout.write(
            f"imported {n} seed tasks into {where}; commit {where}.dvc (git add {args.dest}) and set "
            "generate.seed_tasks: alpaca in params.yaml\n"
        )


def main(argv: list[str] | None = None) -> int:
    from okapi.cli import run

    return run(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())

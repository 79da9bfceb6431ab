"""Okapi's released data (Lai et al., 2023; github.com/nlp-uoregon/Okapi) in our data contracts.

The authors released, per language, the ChatGPT-translated Alpaca instructions (``multilingual-alpaca-52k``), the
instructions for RLHF (``multilingual-rl-tuning-64k``), the ranked response pairs (``multilingual-ranking-data-42k``)
and the translated ARC / HellaSwag / MMLU (``okapi-eval``). With ``released.use: true`` in params.yaml the pipeline
starts from these files instead of generating, translating and ranking, and sends no teacher request at all.

The files enter the project through ``dvc import-url`` (``python -m okapi.released fetch`` runs it per file), so
each one has a ``.dvc`` file recording its URL and checksum: ``dvc update`` refreshes it, ``dvc push`` / ``dvc
pull`` move it like any other output. Layout under ``data/released/``::

    multilingual-alpaca-52k/<lang>.json
    multilingual-rl-tuning-64k/<lang>.json
    multilingual-ranking-data-42k/<lang>.json
    okapi-eval/m_arc/<lang>_test.json, <lang>_train.json       (few-shot examples)
    okapi-eval/m_mmlu/<lang>_test.json, <lang>_dev.json        (few-shot examples)
    okapi-eval/m_hellaswag/<lang>_val.json

The stage ``released@<lang>`` converts them (:func:`convert_language`) into ``sft`` / ``full`` / ``rank`` /
``ppo`` prompt splits, preference ``pairs`` and evaluation files, which ``translate@<lang>`` and ``rank@<lang>``
then pass on in place of the teacher's work.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from okapi.config import ConfigError, check
from okapi.io import DataError, read_jsonl, read_rows, write_json, write_parquet
from okapi.languages import get_language
from okapi.schemas import BENCHMARK_SCHEMA, PAIRS, PROMPTS

log = logging.getLogger(__name__)

# kind -> folder name in the release (and under data/released/)
DATASETS: dict[str, str] = {
    "alpaca": "multilingual-alpaca-52k",
    "rl": "multilingual-rl-tuning-64k",
    "ranking": "multilingual-ranking-data-42k",
}
EVAL_DIR = "okapi-eval"
# benchmark -> (release folder, splits the evaluate stage reads: the scored split first, then the few-shot one)
EVAL_FILES: dict[str, tuple[str, tuple[str, ...]]] = {
    "arc": ("m_arc", ("test", "train")),
    "mmlu": ("m_mmlu", ("test", "dev")),
    "hellaswag": ("m_hellaswag", ("val",)),
}
KINDS = (*DATASETS, "eval")
PARTS = ("instructions", "ranking", "eval")
PART_KINDS: dict[str, tuple[str, ...]] = {"instructions": ("alpaca", "rl"), "ranking": ("ranking",), "eval": ("eval",)}

INSTRUCTION_FIELDS = ("instruction", "input", "output")
RANKING_FIELDS = ("instruction", "input", "prefered_output", "rejected_output")  # [sic], as released
_RANKING_ALIASES = {"preferred_output": "prefered_output"}
_LFS_POINTER = "version https://git-lfs.github.com/spec/"

DEFAULT_BASE_URL = "https://media.githubusercontent.com/media/nlp-uoregon/Okapi/main/datasets"
DEFAULT_EVAL_BASE_URL = "http://nlp.uoregon.edu/download/okapi-eval/datasets"


@dataclass
class ReleasedConfig:
    """The ``released`` section: Okapi's released data (github.com/nlp-uoregon/Okapi, CC BY-NC 4.0) instead of the
    teacher's generate / translate / sample / rank."""

    use: bool = False
    """true: the pipeline takes ``parts`` from Okapi's released files (fetch them first) instead of the teacher.
    Global: a per-language override may not change use or parts (generate is shared by all languages)."""
    parts: list[str] = field(default_factory=lambda: list(PARTS))
    """instructions: SFT/PPO data (generate and translation skipped; needs ranking, whose prompts are the rank
    split); ranking: preference pairs (sample and the teacher's ranking skipped); eval: the benchmarks."""
    base_url: str = DEFAULT_BASE_URL
    """Where the instruction and ranking files are. Git LFS files: the media URL serves the data,
    raw.githubusercontent.com would serve the LFS pointer."""
    eval_base_url: str = DEFAULT_EVAL_BASE_URL
    """Where the translated benchmark files are."""
    limit: int | None = None
    """Rows kept per released instruction / ranking file (null: all); a language may override only this."""
    seed: int = 42
    """Which rows a limit keeps."""

    def __post_init__(self) -> None:
        check(self.limit is None or self.limit >= 1, "released.limit", self.limit, "null or an integer >= 1")
        check(
            bool(self.parts) and all(p in PARTS for p in self.parts) and len(set(self.parts)) == len(self.parts),
            "released.parts",
            self.parts,
            f"a non-empty list of distinct parts out of {', '.join(PARTS)}",
        )
        check(
            "instructions" not in self.parts or "ranking" in self.parts,
            "released.parts",
            self.parts,
            "a list with ranking whenever it has instructions (the release's ranking prompts are its rank split)",
        )
        for key in ("base_url", "eval_base_url"):
            url = getattr(self, key)
            check(
                url.startswith(("http://", "https://", "s3://", "gs://", "azure://", "ssh://", "hdfs://")),
                f"released.{key}",
                url,
                "a URL that dvc import-url can read (http://, https://, s3://, gs://, azure://, ssh://, hdfs://)",
            )

    def provides(self, part: str) -> bool:
        """Whether the pipeline takes ``part`` from the release (instead of the teacher)."""
        return self.use and part in self.parts

    def kinds(self) -> tuple[str, ...]:
        """The release files (fetch's --what) that ``parts`` need."""
        return tuple(kind for part in self.parts for kind in PART_KINDS[part])


def released_config(params: Any) -> ReleasedConfig:
    """The ``released`` section for ``params.lang``; a language may override ``limit`` but not ``use``/``parts``."""
    cfg = params.section("released")
    glob = params.section_global("released")
    for key in ("use", "parts"):
        if getattr(cfg, key) != getattr(glob, key):
            raise ConfigError(
                f"parameter languages.{params.lang}.released.{key} is not allowed: released.{key} switches the "
                "whole pipeline (generate is shared by all languages); set it at the top level only"
            )
    return cfg


# ------------------------------------------------------------------------------------------------ file paths


def release_files(lang: str, kinds: tuple[str, ...] = KINDS) -> list[str]:
    """Paths of a language's release files, relative to the release root (and to data/released/)."""
    files = [f"{DATASETS[k]}/{lang}.json" for k in kinds if k in DATASETS]
    if "eval" in kinds:
        files += [f"{EVAL_DIR}/{folder}/{lang}_{s}.json" for folder, splits in EVAL_FILES.values() for s in splits]
    return files


def release_url(rel: str, cfg: ReleasedConfig) -> str:
    if rel.startswith(EVAL_DIR + "/"):
        return cfg.eval_base_url.rstrip("/") + "/" + rel[len(EVAL_DIR) + 1 :]
    return cfg.base_url.rstrip("/") + "/" + rel


# ------------------------------------------------------------------------------------------------ converters


def _is_lfs_pointer(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(len(_LFS_POINTER)).decode("utf-8", errors="replace") == _LFS_POINTER


def _load(path: Path, what: str) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected Okapi's released {what})")
    if _is_lfs_pointer(path):
        raise DataError(
            f"{path}: is a Git LFS pointer, not the data; fetch from a URL that serves LFS content, e.g. "
            f"released.base_url = {DEFAULT_BASE_URL}"
        )
    return read_jsonl(path)


def _as_text(value: Any, path: Path, number: int, key: str, casts: Counter[str]) -> str | None:
    """Release values are mostly strings; numbers, booleans and lists occur and are cast to text."""
    if value is None or isinstance(value, str):
        return value
    casts[key] += 1
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
        return "\n".join(str(v) for v in value)
    raise DataError(
        f"{path}, record {number}: field {key!r} is a {type(value).__name__}; allowed: a string, a number, a "
        "boolean or a list of strings/numbers"
    )


def _check_fields(rec: dict[str, Any], allowed: tuple[str, ...], path: Path, number: int) -> dict[str, Any]:
    rec = {_RANKING_ALIASES.get(k, k) if "prefered_output" in allowed else k: v for k, v in rec.items()}
    for key in rec:
        if key not in allowed:
            raise DataError(f"{path}, record {number}: unexpected field {key!r}; allowed fields: {', '.join(allowed)}")
    return rec


def _keep_limit(rows: list[dict[str, Any]], limit: int | None, seed: int) -> list[dict[str, Any]]:
    """A seeded, order-independent subset (the same rows whatever else the file holds), in file order."""
    if limit is None or len(rows) <= limit:
        return rows
    chosen = set(
        sorted(range(len(rows)), key=lambda i: hashlib.sha256(f"{seed}:{rows[i]['id']}".encode()).hexdigest())[:limit]
    )
    return [r for i, r in enumerate(rows) if i in chosen]


def _convert(
    path: str | Path,
    lang: str,
    kind: str,
    fields: tuple[str, ...],
    required: tuple[str, ...],
    build: Any,
    limit: int | None,
    seed: int,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Shared loop of the converters: ``build(values)`` returns (drop reason or None, dedup key, row fields)."""
    get_language(lang)
    p = Path(path)
    records = _load(p, f"{DATASETS[kind]}/{lang}.json")
    rows: list[dict[str, Any]] = []
    dropped: Counter[str] = Counter()
    casts: Counter[str] = Counter()
    seen: set[tuple[str, ...]] = set()
    for number, raw in enumerate(records, start=1):
        rec = _check_fields(raw, fields, p, number)
        for key in required:
            if key not in rec:
                raise DataError(f"{p}, record {number}: missing field {key!r} (required: {', '.join(required)})")
        values = {k: _as_text(rec.get(k), p, number, k, casts) or "" for k in fields}
        reason, dedup, row = build(values)
        if reason is None and dedup in seen:
            reason = "duplicate"
        if reason is not None:
            dropped[reason] += 1
            continue
        seen.add(dedup)
        rows.append({"id": f"okapi-{kind}-{lang}-{number - 1}", "lang": lang, **row})
    kept = _keep_limit(rows, limit, seed)
    stats = {"read": len(records), "valid": len(rows), "kept": len(kept), "dropped": dict(dropped)}
    stats["cast_to_text"] = dict(casts)
    return kept, stats


def _instruction_row(v: dict[str, str]) -> tuple[str | None, tuple[str, ...], dict[str, str]]:
    reason = (
        "empty_instruction" if not v["instruction"].strip() else "empty_output" if not v["output"].strip() else None
    )
    return reason, (v["instruction"], v["input"]), v


def _ranking_row(v: dict[str, str]) -> tuple[str | None, tuple[str, ...], dict[str, str]]:
    chosen, rejected = v["prefered_output"], v["rejected_output"]
    if not v["instruction"].strip():
        reason = "empty_instruction"
    elif not chosen.strip() or not rejected.strip():
        reason = "empty_response"
    elif chosen == rejected:
        reason = "identical_responses"
    else:
        reason = None
    row = {"instruction": v["instruction"], "input": v["input"], "chosen": chosen, "rejected": rejected}
    return reason, tuple(v[k] for k in RANKING_FIELDS), row


def convert_instructions(
    path: str | Path, lang: str, kind: str, limit: int | None = None, seed: int = 42
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """PROMPTS rows from multilingual-alpaca-52k / multilingual-rl-tuning-64k ``<lang>.json`` records
    {instruction, input, output}. Ids are ``okapi-<kind>-<lang>-<n>`` (n: position in the file), stable across
    limits. Rows with an empty instruction or output, or a repeated (instruction, input), are dropped and counted
    by reason.

    Input columns: none (the release's JSON: instruction, input, output).
    Output columns: schemas.PROMPTS: id, lang, instruction, input, output.
    """
    required = ("instruction", "output")
    return _convert(path, lang, kind, INSTRUCTION_FIELDS, required, _instruction_row, limit, seed)


def convert_ranking(
    path: str | Path, lang: str, limit: int | None = None, seed: int = 42
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """PAIRS rows from multilingual-ranking-data-42k ``<lang>.json`` records {instruction, input,
    prefered_output [sic], rejected_output}; ids ``okapi-ranking-<lang>-<n>``. Empty or identical responses and
    repeated pairs are dropped and counted by reason.

    Input columns: none (the release's JSON: instruction, input, prefered_output, rejected_output).
    Output columns: schemas.PAIRS: id, lang, instruction, input, chosen, rejected.
    """
    required = ("instruction", "prefered_output", "rejected_output")
    return _convert(path, lang, "ranking", RANKING_FIELDS, required, _ranking_row, limit, seed)


def ranking_prompts(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The distinct prompts of the pairs (the ``rank`` split), each under its first pair's id.

    Input columns: schemas.PAIRS.
    Output columns: schemas.PROMPTS (output empty: the release ranks responses, it has no reference answer).
    """
    seen: set[tuple[str, str]] = set()
    out = []
    for pair in pairs:
        key = (pair["instruction"], pair["input"])
        if key not in seen:
            seen.add(key)
            out.append({k: pair[k] for k in ("id", "lang", "instruction", "input")} | {"output": ""})
    return out


def convert_language(src: Path, lang: str, out: Path, cfg: ReleasedConfig) -> dict[str, Any]:
    """Convert one language's release files of ``cfg.parts`` under ``src`` into ``out``: instructions ->
    sft/full/ppo.parquet (PROMPTS), ranking -> pairs.parquet (PAIRS) and rank.parquet (its prompts), eval ->
    eval/<benchmark>_<split>.parquet. Everything is read and checked before anything is written. Returns the
    metrics."""
    from okapi.import_eval import convert_records

    outputs: list[tuple[list[dict[str, Any]], Path, Any]] = []
    files: dict[str, Any] = {}
    splits: dict[str, int] = {}
    if "ranking" in cfg.parts:
        pairs, files["ranking"] = convert_ranking(src / DATASETS["ranking"] / f"{lang}.json", lang, cfg.limit, cfg.seed)
        _check_nonempty(pairs, src / DATASETS["ranking"] / f"{lang}.json")
        outputs += [(pairs, out / "pairs.parquet", PAIRS), (ranking_prompts(pairs), out / "rank.parquet", PROMPTS)]
        splits["pairs"] = len(pairs)
    if "instructions" in cfg.parts:
        converted = {}
        for kind in ("alpaca", "rl"):
            path = src / DATASETS[kind] / f"{lang}.json"
            converted[kind], files[kind] = convert_instructions(path, lang, kind, cfg.limit, cfg.seed)
            _check_nonempty(converted[kind], path)
        alpaca, rl = converted["alpaca"], converted["rl"]
        outputs += [
            (alpaca, out / "sft.parquet", PROMPTS),
            (alpaca + rl, out / "full.parquet", PROMPTS),
            (rl, out / "ppo.parquet", PROMPTS),
        ]
        splits.update(sft=len(alpaca), full=len(alpaca) + len(rl), ppo=len(rl))
    if "eval" in cfg.parts:
        files["eval"] = {}
        for bench, (folder, bench_splits) in EVAL_FILES.items():
            for split in bench_splits:
                path = src / EVAL_DIR / folder / f"{lang}_{split}.json"
                records = _load(path, f"{folder}/{lang}_{split}.json")
                kept = convert_records(bench, records, path)
                if not kept:
                    raise DataError(
                        f"{path}: none of its {len(records)} records can be scored (reasons in the log above)"
                    )
                outputs.append((kept, out / "eval" / f"{bench}_{split}.parquet", BENCHMARK_SCHEMA[bench]))
                files["eval"][f"{bench}_{split}"] = {"read": len(records), "kept": len(kept)}
    for rows, path, schema in outputs:
        write_parquet(rows, path, schema)
    metrics = {"use": True, "parts": list(cfg.parts), "lang": lang, "files": files, "splits": splits}
    write_json(metrics, out / "manifest.json")
    return metrics


def _check_nonempty(rows: list[dict[str, Any]], path: Path) -> None:
    if not rows:
        raise DataError(f"{path}: no usable record (the drops by reason are in the stage's metrics and log)")


def read_converted_instructions(src: Path) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """What translate@<lang> writes in place of the teacher's translations, from released@<lang>'s folder: the
    TRANSLATIONS rows (all accepted, source "released") and the sft/full/rank/ppo splits.

    Input columns: released@<lang>'s folder: schemas.PROMPTS files per split.
    Output columns: schemas.TRANSLATIONS rows, and schemas.PROMPTS rows per split (sft, full, rank, ppo).
    """
    splits = {name: read_rows(src / f"{name}.parquet", PROMPTS) for name in ("sft", "full", "rank", "ppo")}
    split_of = {r["id"]: name for name in ("sft", "ppo", "rank") for r in splits[name]}
    rows = [
        {**r, "source": "released", "split": split_of[r["id"]], "status": "ok", "attempts": 0}
        for r in splits["full"] + splits["rank"]
    ]
    return rows, splits


def read_converted_eval(src: Path, lang: str) -> dict[str, tuple[Any, list[dict[str, Any]]]]:
    """{<benchmark>_<split>: (schema, records)} from released@<lang>'s eval/ folder.

    Input columns: released@<lang>'s eval/ folder: <benchmark>_<split>.parquet.
    Output columns: schemas.BENCHMARK_SCHEMA[benchmark] records (MULTIPLE_CHOICE or HELLASWAG).
    """

    if not (src / "eval").is_dir():
        raise DataError(f"{src}/eval: missing; released@{lang} did not convert the evaluation files")
    evals = {}
    for path in sorted((src / "eval").glob("*.parquet")):
        schema = BENCHMARK_SCHEMA[path.stem.split("_")[0]]
        evals[path.stem] = (schema, read_rows(path, schema))
    return evals


# ------------------------------------------------------------------------------------------------ fetching


def fetch(langs: list[str], kinds: tuple[str, ...], cfg: ReleasedConfig, dest: Path) -> dict[str, list[str]]:
    """``dvc import-url`` every release file of ``langs`` into ``dest`` (skipping files already imported).

    Returns {"imported": [...], "present": [...]}; raises DataError naming every file that failed (others stay
    imported: each file is its own .dvc stage, so a rerun fetches only what is missing)."""
    for lang in langs:
        get_language(lang)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ConfigError(f"unknown release part {unknown[0]!r}; allowed: {', '.join(KINDS)}")
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    done: dict[str, list[str]] = {"imported": [], "present": []}
    failed: list[str] = []
    try:
        repo = Repo(".")
    except DvcException as err:
        raise DataError(f"not inside a DVC project ({err}); run fetch from the project root") from err
    with repo:
        for lang in langs:
            for rel in release_files(lang, kinds):
                target = dest / rel
                if Path(f"{target}.dvc").is_file():
                    done["present"].append(str(target))
                    continue
                url = release_url(rel, cfg)
                target.parent.mkdir(parents=True, exist_ok=True)
                log.info("dvc import-url %s %s", url, target)
                try:
                    repo.imp_url(url, out=str(target))
                except DvcException as err:
                    cause = err.__cause__ or err
                    failed.append(f"{url}: {cause}")
                    continue
                if _is_lfs_pointer(target):
                    # Undo the import: a pointer is not the data, and a kept .dvc file would make reruns skip it.
                    target.unlink()
                    Path(f"{target}.dvc").unlink()
                    failed.append(
                        f"{url}: served a Git LFS pointer, not the data (use a URL that serves LFS content, e.g. "
                        f"released.base_url = {DEFAULT_BASE_URL})"
                    )
                    continue
                done["imported"].append(str(target))
    if failed:
        raise DataError(
            f"could not import {len(failed)} release file(s) ({len(done['imported'])} imported, "
            f"{len(done['present'])} already present): " + "; ".join(failed)
        )
    return done


def _main(argv: list[str] | None) -> None:
    from okapi.params import load_params

    p = argparse.ArgumentParser(
        prog="python -m okapi.released",
        description="Okapi's released data: `fetch` imports the files with dvc import-url; `convert` turns one "
        "release file into Parquet.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", help="dvc import-url the release files of some languages into data/released/")
    f.add_argument("--lang", nargs="+", help="language codes (default: every language in params.yaml)")
    f.add_argument(
        "--what", nargs="+", help=f"release files, out of {' '.join(KINDS)} (default: those released.parts needs)"
    )
    f.add_argument("--dest", type=Path, default=Path("data/released"))
    f.add_argument("--params", default="params.yaml")
    f.add_argument("--base-url", help="overrides released.base_url")
    f.add_argument("--eval-base-url", help="overrides released.eval_base_url")
    c = sub.add_parser("convert", help="one release file -> Parquet (PROMPTS or PAIRS)")
    c.add_argument("--kind", required=True, choices=list(DATASETS))
    c.add_argument("--lang", required=True)
    c.add_argument("--src", required=True, type=Path)
    c.add_argument("--out", required=True, type=Path)
    c.add_argument("--limit", type=int)
    args = p.parse_args(argv)
    if args.command == "convert":
        if args.kind == "ranking":
            rows, stats = convert_ranking(args.src, args.lang, args.limit)
            write_parquet(rows, args.out, PAIRS)
        else:
            rows, stats = convert_instructions(args.src, args.lang, args.kind, args.limit)
            write_parquet(rows, args.out, PROMPTS)
        sys.stdout.write(f"{args.src} -> {args.out}: {json.dumps(stats, sort_keys=True)}\n")
        return
    params = load_params(args.params)
    cfg = params.section("released")
    overrides = {"base_url": args.base_url, "eval_base_url": args.eval_base_url}
    cfg = ReleasedConfig(**{**cfg.__dict__, **{k: v for k, v in overrides.items() if v}})
    done = fetch(args.lang or params.languages, tuple(args.what or cfg.kinds()), cfg, args.dest)
    sys.stdout.write(
        f"imported {len(done['imported'])} file(s), {len(done['present'])} already present under {args.dest}; "
        "commit the .dvc files (git add data/released) and set released.use: true in params.yaml\n"
    )


def main(argv: list[str] | None = None) -> int:
    from okapi.cli import run

    return run(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())

"""Import Okapi's released benchmark translations (JSON) into our Parquet contracts.

The paper's authors released their ChatGPT translations of ARC, MMLU and HellaSwag; with them a user can evaluate
on the paper's own test sets instead of re-translating. Each release file is a JSON list (or JSON Lines) of
records in the m_arc / m_mmlu / m_hellaswag shapes, named ``<lang>_<split>.json``:

- ARC: ``train``, ``validation``, ``test``;
- MMLU: ``dev``, ``val``, ``test``;
- HellaSwag: ``val``.

Each split becomes ``<out>/<benchmark>_<split>.parquet`` (schemas.MULTIPLE_CHOICE / schemas.HELLASWAG), which
:mod:`okapi.evaluate` reads directly (``arc_test`` + ``arc_train`` shots, ``mmlu_test`` + ``mmlu_dev`` shots,
``hellaswag_val``). Records that cannot be scored are rejected with a reason, never repaired by guessing.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path
from typing import Any

from okapi.config import ConfigError
from okapi.io import DataError, read_jsonl, write_parquet
from okapi.languages import get_language
from okapi.schemas import BENCHMARK_SCHEMA, BENCHMARKS, OPTION_FIELDS, record_name, record_problem

log = logging.getLogger(__name__)

SPLITS: dict[str, tuple[str, ...]] = {
    "arc": ("train", "validation", "test"),
    "mmlu": ("dev", "val", "test"),
    "hellaswag": ("val",),
}
_FILE_NAME = re.compile(r"(?P<lang>[a-z]{2,3})_(?P<split>[a-z]+)\.jsonl?")


def _text(value: Any) -> str | None:
    # Release files sometimes carry numeric answers/options as JSON numbers; they are text in the contract.
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def convert_record(benchmark: str, rec: dict[str, Any]) -> dict[str, Any]:
    """One release record in our contract's shape (values that are not text become null and fail validation).

    Input columns: none (one release record, m_arc / m_mmlu / m_hellaswag shape).
    Output columns: one record of schemas.BENCHMARK_SCHEMA[benchmark].
    """
    if benchmark == "hellaswag":
        ind = rec.get("ind")
        if isinstance(ind, str) and ind.strip().isdigit():
            ind = int(ind)
        endings = rec.get("endings")
        ctx_a, ctx_b = _text(rec.get("ctx_a")), _text(rec.get("ctx_b"))
        ctx = _text(rec.get("ctx"))
        if ctx is None and ctx_a is not None and ctx_b is not None:
            ctx = f"{ctx_a} {ctx_b}".strip()
        return {
            "ind": ind if isinstance(ind, int) and not isinstance(ind, bool) else None,
            "activity_label": _text(rec.get("activity_label")),
            "ctx_a": ctx_a,
            "ctx_b": ctx_b,
            "ctx": ctx,
            "endings": [_text(e) for e in endings] if isinstance(endings, list) else None,
            "source_id": _text(rec.get("source_id")),
            "split": _text(rec.get("split")),
            "split_type": _text(rec.get("split_type")),
            "label": _text(rec.get("label")),
        }
    answer = _text(rec.get("answer"))
    return {
        "id": _text(rec.get("id")),
        "answer": answer.strip().upper() if answer else answer,
        "instruction": _text(rec.get("instruction")),
        **{f: _text(rec.get(f)) for f in OPTION_FIELDS},
    }


def _problem(benchmark: str, rec: dict[str, Any], seen: set[Any]) -> str | None:
    key = "ind" if benchmark == "hellaswag" else "id"
    if rec[key] is None or rec[key] == "":
        return f"field {key!r} is missing"
    if rec[key] in seen:
        return f"duplicate {key} {rec[key]!r} (ids must be unique to trace results back)"
    problem = record_problem(benchmark, rec)
    return f"field {problem[0]!r} {problem[1]}" if problem else None


def convert_records(benchmark: str, records: list[dict[str, Any]], src: Path) -> list[dict[str, Any]]:
    """The records of one release file in our contract's shape; unscorable ones are logged and left out.

    Input columns: none (the release file's records).
    Output columns: schemas.BENCHMARK_SCHEMA[benchmark] records that pass schemas.record_problem.
    """
    kept, seen = [], set()
    for i, raw in enumerate(records):
        rec = convert_record(benchmark, raw)
        problem = _problem(benchmark, rec, seen)
        if problem:
            log.warning("%s, %s rejected: %s", src, record_name(benchmark, raw, i), problem)
            continue
        seen.add(rec["ind" if benchmark == "hellaswag" else "id"])
        kept.append(rec)
    return kept


def import_split(benchmark: str, src: Path, out_file: Path) -> dict[str, int]:
    """Convert one release file; returns {read, written, rejected}. Writes nothing when no record survives."""
    records = read_jsonl(src)
    kept = convert_records(benchmark, records, src)
    if kept:
        write_parquet(kept, out_file, BENCHMARK_SCHEMA[benchmark])
    else:
        log.error("%s: every record was rejected; %s not written", src, out_file)
    return {"read": len(records), "written": len(kept), "rejected": len(records) - len(kept)}


def find_sources(benchmark: str, lang: str, src: Path) -> dict[str, Path]:
    """{split: release file} from a file named <lang>_<split>.json or a folder holding such files."""
    splits = SPLITS[benchmark]
    if src.is_file():
        match = _FILE_NAME.fullmatch(src.name)
        if not match or match["split"] not in splits:
            raise DataError(
                f"{src}: file name must be <lang>_<split>.json with split one of {', '.join(splits)} for {benchmark}"
            )
        if match["lang"] != lang:
            raise DataError(f"{src}: file is for language {match['lang']!r} but --lang is {lang!r}")
        return {match["split"]: src}
    if not src.is_dir():
        raise DataError(f"{src}: no such file or folder")
    found = {}
    for split in splits:
        for suffix in (".json", ".jsonl"):
            if (src / f"{lang}_{split}{suffix}").is_file():
                found[split] = src / f"{lang}_{split}{suffix}"
                break
    if not found:
        expected = ", ".join(f"{lang}_{s}.json" for s in splits)
        raise DataError(f"{src}: no {benchmark} release files for {lang!r}; expected one of {expected}")
    return found


def import_benchmark(benchmark: str, lang: str, src: Path, out_dir: Path) -> dict[str, dict[str, int]]:
    """Import every split found for (benchmark, lang); returns {split: {read, written, rejected}}."""
    if benchmark not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark {benchmark!r}; allowed: {', '.join(BENCHMARKS)}")
    get_language(lang)
    sources = find_sources(benchmark, lang, Path(src))
    return {
        split: import_split(benchmark, path, Path(out_dir) / f"{benchmark}_{split}.parquet")
        for split, path in sources.items()
    }


def _main(argv: list[str] | None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m okapi.import_eval", description="Okapi's released benchmark JSON -> Parquet per split."
    )
    p.add_argument("--benchmark", required=True, choices=BENCHMARKS)
    p.add_argument("--lang", required=True)
    p.add_argument("--src", required=True, type=Path, help="a <lang>_<split>.json file or a folder of them")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    args = p.parse_args(argv)
    summary = import_benchmark(args.benchmark, args.lang, args.src, args.out)
    lines = [
        f"{args.benchmark} {args.lang} {split}: read {s['read']}, written {s['written']}, rejected {s['rejected']}"
        + (f" -> {args.out / f'{args.benchmark}_{split}.parquet'}" if s["written"] else " (nothing written)")
        for split, s in summary.items()
    ]
    total = {k: sum(s[k] for s in summary.values()) for k in ("read", "written", "rejected")}
    lines.append(f"total: read {total['read']}, written {total['written']}, rejected {total['rejected']}")
    sys.stdout.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    from okapi.cli import run

    return run(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())

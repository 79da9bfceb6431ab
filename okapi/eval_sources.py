"""English sources of the evaluation sets: our small local samples, or the real benchmarks from the hub.

The translate stage translates these into every language. Records come out in Okapi's shapes (schemas.py):
m_arc / m_mmlu {id, answer, instruction, option_a..option_e} and m_hellaswag {ind, activity_label, ctx_a, ctx_b,
ctx, endings, source_id, split, split_type, label}.

A hub source is written ``<dataset id>[:<config>]@<split>``, e.g. ``allenai/ai2_arc:ARC-Challenge@test``,
``Rowan/hellaswag@validation``, ``cais/mmlu:all@test``; it needs network access (OKAPI_ALLOW_HUB=1).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from okapi.config import ConfigError
from okapi.io import DataError, read_jsonl
from okapi.schemas import BENCHMARKS, LETTERS, OPTION_FIELDS

_HUB_SPEC = re.compile(r"(?P<name>[\w.-]+/[\w.-]+)(?::(?P<config>[\w.-]+))?@(?P<split>[\w.-]+)")


def parse_hub_spec(spec: str, key: str) -> tuple[str, str | None, str]:
    m = _HUB_SPEC.fullmatch(spec)
    if m is None:
        raise ConfigError(
            f"parameter {key} = {spec!r} is invalid; allowed: <dataset id>[:<config>]@<split>, "
            "e.g. allenai/ai2_arc:ARC-Challenge@test"
        )
    return m["name"], m["config"], m["split"]


def _arc(rec: dict[str, Any], n: int) -> dict[str, Any]:
    labels = [str(x) for x in rec["choices"]["label"]]
    texts = list(rec["choices"]["text"])
    # Some ARC questions label their options 1-4 instead of A-D.
    letters = [LETTERS[int(x) - 1] if x.isdigit() else x for x in labels]
    key = str(rec["answerKey"])
    answer = LETTERS[int(key) - 1] if key.isdigit() else key
    out = {"id": str(rec.get("id", n)), "answer": answer, "instruction": rec["question"]}
    for letter, option in zip(LETTERS, OPTION_FIELDS, strict=True):
        out[option] = texts[letters.index(letter)] if letter in letters else None
    return out


def _mmlu(rec: dict[str, Any], n: int) -> dict[str, Any]:
    choices = list(rec["choices"])
    out = {
        "id": f"{rec.get('subject', 'mmlu')}/{n}",
        "answer": LETTERS[int(rec["answer"])],
        "instruction": rec["question"],
    }
    for i, option in enumerate(OPTION_FIELDS):
        out[option] = choices[i] if i < len(choices) else None
    return out


def _hellaswag(rec: dict[str, Any], n: int) -> dict[str, Any]:
    return {
        "ind": int(rec.get("ind", n)),
        "activity_label": rec["activity_label"],
        "ctx_a": rec["ctx_a"],
        "ctx_b": rec["ctx_b"],
        "ctx": rec.get("ctx") or f"{rec['ctx_a']} {rec['ctx_b'].capitalize()}",
        "endings": list(rec["endings"]),
        "source_id": str(rec.get("source_id", n)),
        "split": str(rec.get("split", "val")),
        "split_type": str(rec.get("split_type", "indomain")),
        "label": str(rec["label"]),
    }


_CONVERT = {"arc": _arc, "mmlu": _mmlu, "hellaswag": _hellaswag}


def from_hub(benchmark: str, spec: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Load a benchmark split with `datasets` and convert it to Okapi's record shape.

    Input columns: none (a hub dataset: ARC, MMLU or HellaSwag in its own columns).
    Output columns: English records of schemas.BENCHMARK_SCHEMA[benchmark] (MULTIPLE_CHOICE or HELLASWAG).
    """
    import datasets

    name, config, split = parse_hub_spec(spec, f"translate.eval_sources.{benchmark}")
    ds = datasets.load_dataset(name, config, split=split)
    out = []
    for n, rec in enumerate(ds):
        if limit is not None and n >= limit:
            break
        try:
            out.append(_CONVERT[benchmark](dict(rec), n))
        except (KeyError, ValueError, IndexError, TypeError) as err:
            raise DataError(f"{spec}, record {n}: cannot convert to the Okapi {benchmark} shape ({err!r})") from err
    return out


def load_sources(local_dir: Path, hub: dict[str, str], limit: int | None = None) -> dict[str, list[dict[str, Any]]]:
    """{benchmark: English records}: from ``hub`` where it names the benchmark, else ``local_dir/<benchmark>.jsonl``.

    Input columns: none (<benchmark>.jsonl files or hub datasets).
    Output columns: English records of schemas.BENCHMARK_SCHEMA[benchmark], by benchmark, in schemas.BENCHMARKS
        order.
    """
    unknown = sorted(set(hub) - set(BENCHMARKS))
    if unknown:
        raise ConfigError(f"unknown benchmark translate.eval_sources.{unknown[0]}; allowed: {', '.join(BENCHMARKS)}")
    return {
        b: from_hub(b, hub[b], limit) if b in hub else read_jsonl(Path(local_dir) / f"{b}.jsonl") for b in BENCHMARKS
    }

"""English sources of the evaluation sets: our small local samples, or the real benchmarks from the hub.

The translate stage translates these into every language. Records come out in Okapi's shapes (schemas.py):
m_arc / m_mmlu {id, answer, instruction, option_a..option_e} and m_hellaswag {ind, activity_label, ctx_a, ctx_b,
ctx, endings, source_id, split, split_type, label}.

A hub source is written ``<dataset id>[:<config>]@<split>``, e.g. ``allenai/ai2_arc:ARC-Challenge@test``,
``Rowan/hellaswag@validation``, ``cais/mmlu:all@test``; it needs network access (OKAPI_ALLOW_HUB=1).

Besides each benchmark's evaluation split (key ``arc``, ``mmlu``, ``hellaswag``), the split an evaluation protocol
draws its shots from has its own key, ``<benchmark>_<split>`` (okapi.protocols.SHOT_SPLIT: ``arc_train``,
``mmlu_dev``, ``hellaswag_train``), e.g. ``allenai/ai2_arc:ARC-Challenge@train`` or ``cais/mmlu:all@dev``, or a
local ``<benchmark>_<split>.jsonl``; it is loaded only when the protocol asks for it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from okapi.config import ConfigError
from okapi.io import DataError, read_jsonl
from okapi.protocols import SHOT_SPLIT
from okapi.schemas import BENCHMARKS, LETTERS, OPTION_FIELDS

SHOT_KEYS = tuple(f"{b}_{SHOT_SPLIT[b]}" for b in BENCHMARKS)  # the shot splits' source keys
SOURCE_KEYS = BENCHMARKS + SHOT_KEYS

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


def benchmark_of(key: str) -> str:
    """The benchmark a source key belongs to: ``arc_train`` -> ``arc``."""
    return key.split("_", 1)[0]


def from_hub(benchmark: str, spec: str, limit: int | None = None, key: str | None = None) -> list[dict[str, Any]]:
    """Load a benchmark split with `datasets` and convert it to Okapi's record shape.

    Input columns: none (a hub dataset: ARC, MMLU or HellaSwag in its own columns).
    Output columns: English records of schemas.BENCHMARK_SCHEMA[benchmark] (MULTIPLE_CHOICE or HELLASWAG).
    """
    import datasets

    name, config, split = parse_hub_spec(spec, f"translate.eval_sources.{key or benchmark}")
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


def check_sources(local_dir: Path, hub: dict[str, str], shot_keys: list[str]) -> None:
    """Stop, before any request, when a shot split the protocol needs has neither a hub spec nor a local file."""
    for key in shot_keys:
        if key not in SHOT_KEYS:
            raise ConfigError(f"unknown shot split {key!r}; allowed: {', '.join(SHOT_KEYS)}")
        local = Path(local_dir) / f"{key}.jsonl"
        if key not in hub and not local.is_file():
            bench, split = key.split("_", 1)
            raise ConfigError(
                f"evaluate.protocol draws {bench} shots from its {split} split, but no English source is set: "
                f"set translate.eval_sources.{key} (e.g. {_SHOT_EXAMPLES[key]}) or provide {local}"
            )


_SHOT_EXAMPLES = {
    "arc_train": "allenai/ai2_arc:ARC-Challenge@train",
    "mmlu_dev": "cais/mmlu:all@dev",
    "hellaswag_train": "Rowan/hellaswag@train",
}


def load_sources(
    local_dir: Path, hub: dict[str, str], limit: int | None = None, shot_keys: list[str] | tuple[str, ...] = ()
) -> dict[str, list[dict[str, Any]]]:
    """{key: English records} for every benchmark and for the shot splits in ``shot_keys`` (e.g. ``arc_train``):
    from ``hub`` where it names the key, else ``local_dir/<key>.jsonl``.

    Input columns: none (<key>.jsonl files or hub datasets).
    Output columns: English records of schemas.BENCHMARK_SCHEMA[benchmark], by key: the benchmarks in
        schemas.BENCHMARKS order, then the shot splits.
    """
    unknown = sorted(set(hub) - set(SOURCE_KEYS))
    if unknown:
        raise ConfigError(f"unknown benchmark translate.eval_sources.{unknown[0]}; allowed: {', '.join(SOURCE_KEYS)}")
    check_sources(local_dir, hub, list(shot_keys))
    out = {}
    for key in (*BENCHMARKS, *shot_keys):
        bench = benchmark_of(key)
        out[key] = from_hub(bench, hub[key], limit, key) if key in hub else read_jsonl(Path(local_dir) / f"{key}.jsonl")
    return out

"""Pyarrow schemas of every Parquet file passed between stages: the data contracts.

Writers cast to these schemas (``okapi.io.write_parquet``); readers check them (``okapi.io.read_parquet``) and
stop with a clear error on mismatch. Every row carries a stable ``id`` that survives translation, sampling and
ranking, so any output row traces back to its English source instruction.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

_str = pa.string()

# Output of `generate`: English instructions. source is "seed", "pool" or "generated".
INSTRUCTIONS = pa.schema(
    [
        ("id", _str),
        ("source", _str),
        ("instruction", _str),
        ("input", _str),
        ("output", _str),
        ("max_similarity", pa.float64()),  # ROUGE-L F vs. the pool at the time it was kept (null: seed/pool)
        ("avg_similarity", pa.float64()),
        ("most_similar_instructions", pa.list_(_str)),
    ]
)

# Output of `translate@<lang>`: one row per English example; status "ok" or "rejected".
TRANSLATIONS = pa.schema(
    [
        ("id", _str),
        ("lang", _str),
        ("source", _str),
        ("split", _str),  # "sft" (pool part), "rank", "ppo" (generated parts); rejected rows keep theirs
        ("instruction", _str),
        ("input", _str),
        ("output", _str),
        ("en_instruction", _str),
        ("en_input", _str),
        ("en_output", _str),
        ("status", _str),
        ("reason", _str),
        ("raw", _str),
        ("attempts", pa.int32()),
        ("back_score", pa.float64()),  # chrF of the back-translation vs. the English source (null: not scored)
    ]
)

# Okapi's m_arc / m_mmlu records (3 to 5 options; unused options are null).
MULTIPLE_CHOICE = pa.schema(
    [
        ("id", _str),
        ("answer", _str),
        ("instruction", _str),
        ("option_a", _str),
        ("option_b", _str),
        ("option_c", _str),
        ("option_d", _str),
        ("option_e", _str),
    ]
)

# Okapi's m_hellaswag records.
HELLASWAG = pa.schema(
    [
        ("ind", pa.int64()),
        ("activity_label", _str),
        ("ctx_a", _str),
        ("ctx_b", _str),
        ("ctx", _str),
        ("endings", pa.list_(_str)),
        ("source_id", _str),
        ("split", _str),
        ("split_type", _str),
        ("label", _str),
    ]
)

# Output of `sample@<lang>`: T responses per ranking prompt.
SAMPLES = pa.schema(
    [
        ("id", _str),
        ("lang", _str),
        ("instruction", _str),
        ("input", _str),
        ("responses", pa.list_(_str)),
    ]
)

# Output of `rank@<lang>`: the teacher's two-turn ranking per prompt (ranks: 1 = best; null when rejected).
RANKINGS = pa.schema(
    [
        ("id", _str),
        ("lang", _str),
        ("instruction", _str),
        ("input", _str),
        ("responses", pa.list_(_str)),
        ("ranks", pa.list_(pa.int32())),
        ("english", _str),  # the teacher's turn-1 English translation, kept for inspection
        ("status", _str),
        ("reason", _str),
        ("raw", _str),
        ("attempts", pa.int32()),
    ]
)

# Preference pairs for the reward model.
PAIRS = pa.schema(
    [
        ("id", _str),
        ("lang", _str),
        ("instruction", _str),
        ("input", _str),
        ("chosen", _str),
        ("rejected", _str),
    ]
)

# Prompts (SFT targets included where known) used by SFT, PPO and evaluation of generations.
PROMPTS = pa.schema(
    [
        ("id", _str),
        ("lang", _str),
        ("instruction", _str),
        ("input", _str),
        ("output", _str),
    ]
)

# -- the eval-record contract ---------------------------------------------------------------------------------------
# One home for what an evaluation record is (translate writes them, import_eval / released convert Okapi's release
# into them, evaluate scores them): the benchmarks in one order, each one's schema, and the record checks.
BENCHMARKS: tuple[str, ...] = ("arc", "hellaswag", "mmlu")
BENCHMARK_SCHEMA: dict[str, pa.Schema] = {"arc": MULTIPLE_CHOICE, "hellaswag": HELLASWAG, "mmlu": MULTIPLE_CHOICE}
MULTIPLE_CHOICE_BENCHMARKS = tuple(b for b in BENCHMARKS if BENCHMARK_SCHEMA[b] is MULTIPLE_CHOICE)
LETTERS = ("A", "B", "C", "D", "E")
OPTION_FIELDS = tuple(f"option_{c.lower()}" for c in LETTERS)
MMLU_OPTIONS = 4  # the okapi MMLU prompt always lists A. to D.


def record_problem(benchmark: str, rec: dict[str, Any]) -> tuple[str, str] | None:
    """(field, what is wrong) for the first problem in one record, or None when the record is usable."""
    if benchmark == "hellaswag":
        for key in ("activity_label", "ctx_a", "ctx_b"):
            if not isinstance(rec.get(key), str):
                return key, "is missing (a string is required; ctx_b may be empty)"
        if not (rec["activity_label"] + rec["ctx_a"] + rec["ctx_b"]).strip():
            return "ctx_a", "is empty (the context needs text)"
        endings = rec.get("endings")
        if not isinstance(endings, list) or len(endings) < 2:
            return "endings", "must be a list of at least 2 endings"
        for i, ending in enumerate(endings):
            if not isinstance(ending, str) or not ending.strip():
                return "endings", f"ending {i} is empty"
        label = rec.get("label")
        label = label.strip() if isinstance(label, str) else label
        if not isinstance(label, str) or not label.isdigit() or int(label) >= len(endings):
            return "label", f"= {rec.get('label')!r} is not an ending index; allowed: '0'..'{len(endings) - 1}'"
        return None
    if not isinstance(rec.get("instruction"), str) or not rec["instruction"].strip():
        return "instruction", "is missing or empty"
    present = [bool(isinstance(rec.get(f), str) and rec[f]) for f in OPTION_FIELDS]
    n = sum(present)
    if n < 2:
        return "options", f"has {n} option(s); at least 2 (option_a, option_b, ...) are required"
    if not all(present[:n]):
        gap = OPTION_FIELDS[present.index(False)]
        return gap, "is missing while a later option is set; options must fill option_a, option_b, ... in order"
    if benchmark == "mmlu" and n != MMLU_OPTIONS:
        return "options", f"has {n} options; MMLU records need exactly 4 (option_a..option_d, option_e empty)"
    allowed = LETTERS[:n]
    if rec.get("answer") not in allowed:
        return "answer", f"= {rec.get('answer')!r} is not one of its options; allowed: {', '.join(allowed)}"
    return None


def record_name(benchmark: str, rec: dict[str, Any], index: int) -> str:
    key = "ind" if benchmark == "hellaswag" else "id"
    value = rec.get(key)
    return f"record {index} ({key}={value!r})" if value is not None else f"record {index}"


BY_NAME = {
    "instructions": INSTRUCTIONS,
    "translations": TRANSLATIONS,
    "multiple_choice": MULTIPLE_CHOICE,
    "hellaswag": HELLASWAG,
    "samples": SAMPLES,
    "rankings": RANKINGS,
    "pairs": PAIRS,
    "prompts": PROMPTS,
}

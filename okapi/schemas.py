"""Pyarrow schemas of every Parquet file passed between stages: the data contracts.

Writers cast to these schemas (``okapi.io.write_parquet``); readers check them (``okapi.io.read_parquet``) and
stop with a clear error on mismatch. Every row carries a stable ``id`` that survives translation, sampling and
ranking, so any output row traces back to its English source instruction.
"""

from __future__ import annotations

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

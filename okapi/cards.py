"""Dataset cards (issue 15, item 3): a Hugging Face dataset-card README.md next to every dataset a stage writes.

A card is YAML metadata between ``---`` lines (language, license, size_categories, task_categories, tags,
pretty_name, and ``configs`` naming the Parquet file of each split, so ``datasets.load_dataset`` on a published
folder finds the splits) followed by a Markdown body: where the rows came from and which teacher wrote them, the
prompt version, each filter with the rows it removed, split sizes and the params that produced the data. The
stage that writes the data writes the card in the same step (``okapi.io.write_text``, atomic), so a card always
describes the data beside it. ``huggingface_hub.DatasetCard`` parses every card (tests check it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from okapi.io import write_text

# The embedded seeds are self-instruct's and the pool is Alpaca's (CC BY-NC 4.0), and Okapi releases its data
# under CC BY-NC 4.0: the most permissive licence every input allows.
DEFAULT_LICENSE = "cc-by-nc-4.0"
# Hugging Face's size_categories values, by upper bound.
_SIZES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
)
# Teacher settings worth recording; base_url and anything key-like are left out on purpose.
_TEACHER_KEYS = ("backend", "model", "dialect", "mode", "temperature", "max_tokens", "prompt_version")


def size_category(rows: int) -> str:
    """Hugging Face's size category for a dataset of ``rows`` rows."""
    for bound, name in _SIZES:
        if rows < bound:
            return name
    return "n>100M"


@dataclass
class Card:
    """What a card says; ``render`` turns it into README.md text."""

    title: str
    languages: list[str]
    summary: str
    splits: dict[str, tuple[str, int]]  # split name -> (Parquet file relative to the card, rows)
    source: str
    teacher: dict[str, Any] | None = None
    filters: list[tuple[str, int, str]] = field(default_factory=list)  # (filter, rows removed, how)
    params: dict[str, Any] = field(default_factory=dict)
    task_categories: list[str] = field(default_factory=lambda: ["text-generation"])
    tags: list[str] = field(default_factory=lambda: ["okapi", "instruction-tuning", "synthetic"])
    license: str = DEFAULT_LICENSE
    extra_configs: dict[str, str] = field(default_factory=dict)  # config name -> Parquet file (a single split)

    def render(self) -> str:
        total = max((n for _, n in self.splits.values()), default=0)
        meta = {
            "language": self.languages,
            "license": self.license,
            "size_categories": [size_category(total)],
            "task_categories": self.task_categories,
            "tags": self.tags,
            "pretty_name": self.title,
            "configs": [
                {
                    "config_name": "default",
                    "data_files": [{"split": name, "path": path} for name, (path, _) in self.splits.items()],
                },
                *(
                    {"config_name": name, "data_files": [{"split": "train", "path": path}]}
                    for name, path in self.extra_configs.items()
                ),
            ],
        }
        lines = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(), "---", ""]
        lines += [f"# {self.title}", "", self.summary, "", "## Source", "", self.source, ""]
        if self.teacher:
            lines += ["## Teacher", ""]
            lines += [f"- {k}: `{v}`" for k, v in self.teacher.items()]
            lines.append("")
        lines += ["## Filters", ""]
        if self.filters:
            lines += ["| filter | rows removed | how |", "|---|---:|---|"]
            lines += [f"| {name} | {n} | {how} |" for name, n, how in self.filters]
        else:
            lines.append("No filter removed rows.")
        lines += ["", "## Splits", "", "| split | file | rows |", "|---|---|---:|"]
        lines += [f"| {name} | `{path}` | {n} |" for name, (path, n) in self.splits.items()]
        lines += ["", "## Parameters", "", "The params (params.yaml sections) that produced this data:", ""]
        lines += ["```yaml", yaml.safe_dump(self.params, sort_keys=True, allow_unicode=True).rstrip(), "```", ""]
        lines += [
            "## Licence and citation",
            "",
            f"Released under {self.license}. Built with the Okapi pipeline (Lai et al., 2023, "
            '"Okapi: Instruction-tuned Large Language Models in Multiple Languages with Reinforcement Learning '
            'from Human Feedback").',
            "",
        ]
        return "\n".join(lines)

    def write(self, path: str | Path) -> None:
        write_text(self.render(), path)


def teacher_summary(tcfg: Any) -> dict[str, Any]:
    """The teacher settings a card records (never the endpoint or a key)."""
    data = dataclasses.asdict(tcfg) if dataclasses.is_dataclass(tcfg) else dict(tcfg)
    return {k: data[k] for k in _TEACHER_KEYS if k in data}


def section_params(**sections: Any) -> dict[str, Any]:
    """{section: its values} from config dataclasses (or mappings), for a card's Parameters block."""
    out = {}
    for name, value in sections.items():
        out[name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    if "teacher" in out and isinstance(out["teacher"], Mapping):
        out["teacher"] = {k: v for k, v in out["teacher"].items() if k not in ("base_url",)}
    return out


# -- the cards of the pipeline's three datasets ---------------------------------------------------------------------
def _reason_filters(counts: Mapping[str, int], what: str, how: str) -> list[tuple[str, int, str]]:
    return [(f"{what}: {reason}", n, how) for reason, n in sorted(counts.items()) if n]


def generated_card(rows: list[dict[str, Any]], metrics: Mapping[str, Any], params: dict[str, Any]) -> Card:
    """The card of generate's English instructions (schemas.INSTRUCTIONS) from its rows and metrics."""
    by_source: dict[str, int] = {}
    for r in rows:
        by_source[r["source"]] = by_source.get(r["source"], 0) + 1
    teacher = params.get("teacher") or {}
    counts = ", ".join(f"{n} {s}" for s, n in sorted(by_source.items())) or "no rows"
    return Card(
        title="Okapi generated instructions (English)",
        languages=["en"],
        summary=(
            "English instruction / input / output rows: the seed tasks, the instruction pool (if any) and new "
            f"instructions the teacher wrote by self-instruct (Alpaca's procedure with Okapi's changes). Rows: {counts}."
        ),
        splits={"train": ("instructions.parquet", len(rows))},
        source=(
            "Self-instruct from the seed tasks (data/seeds) and `generate.pool_path`; each generated instruction "
            "was kept only if its ROUGE-L similarity to every instruction already kept stayed below "
            f"`generate.rouge_threshold`. {metrics.get('skipped', '')}".strip()
        ),
        teacher={k: teacher[k] for k in _TEACHER_KEYS if k in teacher},
        filters=_reason_filters(
            metrics.get("rejected_by_reason") or {}, "self-instruct filter", "generated task dropped before keeping"
        ),
        params=params,
    )


def translation_card(
    lang: str,
    language_name: str,
    split_sizes: Mapping[str, int],
    all_rows: int,
    metrics: Mapping[str, Any],
    params: dict[str, Any],
    released: bool,
) -> Card:
    """The card of translate@<lang>'s folder: all.parquet plus the sft/full/rank/ppo splits (schemas.PROMPTS)."""
    filters: list[tuple[str, int, str]] = []
    if not released:
        filters += _reason_filters(
            metrics.get("rejected_by_reason") or {},
            "translation check",
            "every answer failed the check, re-asks included (translate.max_attempts)",
        )
    bt = metrics.get("back_translation")
    if bt:
        filters.append(
            (
                "back-translation score",
                int(bt.get("rejected", 0)),
                f"chrF of the teacher's English back-translation below translate.min_back_score = {bt['min_back_score']}",
            )
        )
    dc = metrics.get("decontamination") or {}
    if dc.get("mode") not in (None, "off"):
        benches = ", ".join(f"{b} {n}" for b, n in (dc.get("by_benchmark") or {}).items())
        filters.append(
            (
                "decontamination",
                int(dc.get("dropped_rows", 0)),
                f"{dc['ngram']}-gram overlap with an evaluation item, mode {dc['mode']} "
                f"(contaminated rows by benchmark: {benches or 'none'})",
            )
        )
    teacher = params.get("teacher") or {}
    source = (
        "Okapi's released translations (github.com/nlp-uoregon/Okapi), converted by released@" + lang
        if released
        else "English rows of `generate` (seed tasks, pool and self-instruct), translated by the teacher with the "
        "paper's Fig. 2 instructions; every answer was checked (JSON keys, code kept, not left in English) "
        "before it was accepted. all.parquet keeps every row with its English source, status and reason."
    )
    return Card(
        title=f"Okapi instructions in {language_name} ({lang})",
        languages=[lang],
        summary=(
            f"Instruction data in {language_name}: sft (the RLHF track's SFT data), rank (prompts for the "
            "preference ranking), ppo (PPO prompts) and full (every accepted row, the SFT-only baseline's data). "
            f"all.parquet has all {all_rows} rows, rejected ones included."
        ),
        splits={name: (f"{name}.parquet", n) for name, n in split_sizes.items()},
        source=source,
        teacher=None if released else {k: teacher[k] for k in _TEACHER_KEYS if k in teacher},
        filters=filters,
        params=params,
        extra_configs={"all": "all.parquet"},
    )


def pairs_card(
    lang: str, language_name: str, pairs: int, rankings: int, metrics: Mapping[str, Any], params: dict[str, Any]
) -> Card:
    """The card of rank@<lang>'s folder: preference pairs (schemas.PAIRS) and the rankings (schemas.RANKINGS)."""
    released = metrics.get("source") == "released"
    teacher = params.get("teacher") or {}
    filters = (
        []
        if released
        else _reason_filters(metrics.get("rejected_by_reason") or {}, "ranking answer", "no parseable ranking")
        + _reason_filters(metrics.get("dropped_by_reason") or {}, "sample", "prompt dropped before ranking")
    )
    return Card(
        title=f"Okapi preference pairs in {language_name} ({lang})",
        languages=[lang],
        summary=(
            f"Preference pairs (chosen, rejected) in {language_name} for the reward model, from the teacher's "
            "ranking of the SFT model's sampled responses per prompt."
        ),
        splits={"train": ("pairs.parquet", pairs)},
        source=(
            "Okapi's released ranking data (github.com/nlp-uoregon/Okapi), converted by released@" + lang
            if released
            else "Responses sampled from this language's SFT model (sample@" + lang + ") for the rank split's "
            "prompts, ranked by the teacher in two turns (translate to English, then rank); pairs per "
            f"`rank.pairs`. rankings.parquet ({rankings} rows) keeps each ranking with its status and reason."
        ),
        teacher=None if released else {k: teacher[k] for k in _TEACHER_KEYS if k in teacher},
        filters=filters,
        params=params,
        tags=["okapi", "rlhf", "preference", "synthetic"],
        extra_configs={"rankings": "rankings.parquet"},
    )

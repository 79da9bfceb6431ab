"""Cells of the report's tables: one language's value ± stderr and n, the average of languages, the paired outcomes
of two models on the same documents, and the paper's mean over a row's languages (all in percent).

Input: the evaluate stage's results ({lang: {model: {benchmark: {acc, acc_stderr, acc_norm, acc_norm_stderr, n}}}})
and per-document outcomes (:data:`DocResults`); okapi.report lays the cells out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from okapi.io import DataError
from okapi.paper_tables import PaperTable
from okapi.stats import Discordance, mean_stderr


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


# The evaluate stage's per-document outcomes: {lang: {model: {benchmark: {doc_id: {"acc": 0/1, "acc_norm": 0/1}}}}}
DocResults = dict[str, dict[str, dict[str, dict[int, dict[str, float]]]]]


@dataclass
class Cell:
    value: float | None
    stderr: float | None
    n: int | None


def is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def cell_of(results: dict, lang: str, model: str, benchmark: str, metric: str) -> Cell:
    """One language's cell: the metric, its standard error and n, in percent; a missing result is all None."""
    entry = results.get(lang, {}).get(model, {}).get(benchmark)
    if entry is None:
        return Cell(None, None, None)
    where = f"results[{lang!r}][{model!r}][{benchmark!r}]"
    value = entry.get(metric) if isinstance(entry, dict) else None
    if not is_number(value) or not 0.0 <= value <= 1.0:
        raise DataError(f"{where}: metric {metric!r} = {value!r} is invalid; expected a fraction between 0 and 1")
    # lm-eval has no standard error for a single document (it writes "N/A"); such a cell shows none.
    stderr = entry.get(f"{metric}_stderr")
    if stderr is not None and is_number(stderr) and stderr < 0:
        raise DataError(f"{where}: {metric}_stderr = {stderr!r} is invalid; expected a number >= 0")
    n = entry.get("n")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise DataError(f"{where}: n = {n!r} is invalid; expected the number of documents, an integer >= 1")
    return Cell(100.0 * float(value), 100.0 * float(stderr) if is_number(stderr) else None, n)


def average_cell(cells: list[Cell]) -> Cell:
    present = [c for c in cells if c.value is not None]
    if not present:
        return Cell(None, None, None)
    stderrs = [c.stderr for c in present]
    ns = [c.n for c in present]
    return Cell(
        _mean([c.value for c in present if c.value is not None]),
        mean_stderr([se for se in stderrs if se is not None]) if all(se is not None for se in stderrs) else None,
        sum(n for n in ns if n is not None) if all(n is not None for n in ns) else None,
    )


def discordance(
    docs: DocResults, results: dict, lang: str, pair: tuple[str, str], benchmark: str, metric: str
) -> Discordance | None:
    """Paired outcomes of ``pair`` on one language's documents; None when either model has no per-document file."""
    per_model = []
    for model in pair:
        outcomes = docs.get(lang, {}).get(model, {}).get(benchmark)
        if outcomes is None:
            return None
        mean = sum(o[metric] for o in outcomes.values()) / len(outcomes)
        value = cell_of(results, lang, model, benchmark, metric).value
        # A per-document file from another run than the metrics would make the test and the table disagree.
        if value is None or abs(100.0 * mean - value) > 1e-6:
            raise DataError(
                f"per-document results of {model!r} on {lang} {benchmark} average {100.0 * mean:.4f} % but the "
                f"evaluation metrics say {value}; rerun the evaluate stage so both come from the same run"
            )
        per_model.append(outcomes)
    a, b = per_model
    if set(a) != set(b):
        raise DataError(
            f"{lang} {benchmark}: {pair[0]!r} and {pair[1]!r} were scored on different documents "
            f"({len(a)} vs {len(b)} doc_ids); a paired test needs the same documents"
        )
    return Discordance.from_pairs([(a[d][metric], b[d][metric]) for d in sorted(a)])


def paper_values(paper: PaperTable | None, members: list[str], model_order: list[str]) -> list[float | None]:
    """The paper's mean over ``members`` per model (its own number for one language); None if it lacks any member."""
    out: list[float | None] = []
    for model in model_order:
        values = [paper.value(code, model) for code in members] if paper is not None else [None]
        out.append(_mean([v for v in values if v is not None]) if all(v is not None for v in values) else None)
    return out

"""The paper's result tables (Tables 3-8), plots and a metrics summary from the per-language evaluation results.

Layout as in the paper: one table per benchmark, rows are languages grouped into high / medium / low resource
(okapi.languages, paper Table 1), then the languages outside Table 1 (group X, or the group params.yaml names),
with an "Ave Group" row closing each group present and an overall "Average" row (the mean over all target
languages, not over groups, which is how the paper's Average rows come out); English, the source language, comes
after the Average, apart from it. Columns are the models in the configured order, cells are a metric in percent
with one decimal.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from okapi.io import DataError, atomic_path, write_json, write_text
from okapi.languages import GROUP_NAMES, UnknownLanguageError, get_language, report_groups

log = logging.getLogger(__name__)

BENCHMARK_NAMES = {"arc": "ARC", "hellaswag": "HellaSwag", "mmlu": "MMLU"}  # paper order: Tables 3, 4, 5
METRICS = ("acc", "acc_norm")
GROUP_KEYS = {"H": "ave_high", "M": "ave_medium", "L": "ave_low", "X": "ave_other"}
SOURCE_GROUP = "EN"  # English: reported apart, not in the Average


@dataclass
class Row:
    kind: str  # "language", "group" (Ave Group) or "average"
    group: str  # H / M / L, "" for the overall average
    label: str
    code: str  # language code, "" for average rows
    values: list[float | None]  # percent, one per model


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _language(code: str, where: str) -> None:
    try:
        get_language(code)
    except UnknownLanguageError as err:
        raise DataError(f"{where}: {err}") from err


def _value(results: dict, lang: str, model: str, benchmark: str, metric: str) -> float | None:
    entry = results.get(lang, {}).get(model, {}).get(benchmark)
    if entry is None:
        return None
    value = entry.get(metric) if isinstance(entry, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise DataError(
            f"results[{lang!r}][{model!r}][{benchmark!r}]: metric {metric!r} = {value!r} is invalid; "
            "expected a fraction between 0 and 1"
        )
    return 100.0 * float(value)


def benchmarks_in(results: dict) -> list[str]:
    found = {b for models in results.values() for benches in models.values() for b in benches}
    unknown = sorted(found - set(BENCHMARK_NAMES))
    if unknown:
        raise DataError(f"results: unknown benchmark {unknown[0]!r}; allowed: {', '.join(BENCHMARK_NAMES)}")
    return [b for b in BENCHMARK_NAMES if b in found]


def build_table(results: dict, benchmark: str, model_order: list[str], metric: str = "acc_norm") -> list[Row]:
    """Rows of one benchmark's table: languages by group (okapi.languages.report_groups), Ave Group rows, Average,
    then English (the source language) apart."""
    rows: list[Row] = []
    source_rows: list[Row] = []
    per_model_all: list[list[float]] = [[] for _ in model_order]
    for group, members in report_groups(list(results)):
        per_model: list[list[float]] = [[] for _ in model_order]
        for code in members:
            values = [_value(results, code, m, benchmark, metric) for m in model_order]
            row = Row("language", group, get_language(code).name, code, values)
            if group == SOURCE_GROUP:
                source_rows.append(row)
                continue
            rows.append(row)
            for i, v in enumerate(values):
                if v is not None:
                    per_model[i].append(v)
                    per_model_all[i].append(v)
        if group != SOURCE_GROUP:
            rows.append(Row("group", group, "Ave Group", "", [_mean(v) for v in per_model]))
    if rows:
        rows.append(Row("average", "", "Average", "", [_mean(v) for v in per_model_all]))
    return rows + source_rows


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def to_markdown(rows: list[Row], benchmark: str, model_order: list[str], metric: str) -> str:
    name = BENCHMARK_NAMES[benchmark]
    lines = [
        f"### {name} ({metric}, %)",
        "",
        f"Performance of the models on the translated {name} dataset; metric: {metric} in percent. "
        "Ave Group: mean over the group's languages; Average: mean over all target languages (English, the source "
        "language, is listed apart).",
        "",
        "| Group | Language | " + " | ".join(model_order) + " |",
        "|---|---|" + "---:|" * len(model_order),
    ]
    previous = None
    for row in rows:
        group = GROUP_NAMES.get(row.group, "") if row.group != previous else ""
        previous = row.group
        if row.kind == "language":
            label = f"{row.label} ({row.code})"
            cells = [_cell(v) for v in row.values]
        else:
            label = f"**{row.label}**"
            cells = [f"**{_cell(v)}**" for v in row.values]
        lines.append(f"| {group} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _csv_text(header: list[str], body: list[list[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(body)
    return buf.getvalue()


def to_csv(rows: list[Row], model_order: list[str], metric: str) -> str:
    header = ["group", "language", "code", *[f"{m} ({metric} %)" for m in model_order]]
    body = [[row.group, row.label, row.code, *["" if v is None else f"{v:.2f}" for v in row.values]] for row in rows]
    return _csv_text(header, body)


def to_plot_csv(rows: list[Row], model_order: list[str]) -> str:
    """One row per language (x) with one column per model (y): the shape `dvc plots` draws as grouped bars."""
    body = [
        [row.code, row.group, *["" if v is None else f"{v:.2f}" for v in row.values]]
        for row in rows
        if row.kind == "language"
    ]
    return _csv_text(["lang", "group", *model_order], body)


def plot_png(rows: list[Row], benchmark: str, model_order: list[str], metric: str, path: Path) -> None:
    """Grouped bars per language, languages clustered by resource group, with the group and overall averages."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    positions, labels, x, starts = [], [], 0.0, []
    for row in rows:
        if row.kind == "language" and (not starts or starts[-1][0] != row.group):
            x += 0.6 if starts else 0.0  # a gap between resource groups
            starts.append((row.group, x))
        if row.kind == "average":
            x += 0.6
        positions.append(x)
        labels.append(row.code or ("Ave " + row.group if row.kind == "group" else "Average"))
        x += 1.0
    width = 0.8 / max(len(model_order), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.12 * len(rows) * (len(model_order) + 1) + 2), 4.5))
    for i, model in enumerate(model_order):
        xs = [p + (i - (len(model_order) - 1) / 2) * width for p in positions]
        ys = [row.values[i] if row.values[i] is not None else math.nan for row in rows]
        ax.bar(xs, ys, width=width, label=model)
    for group, start in starts:
        ax.axvline(start - 0.8, color="grey", linewidth=0.5)
        ax.text(start - 0.5, 1.0, GROUP_NAMES[group], transform=ax.get_xaxis_transform(), va="bottom", fontsize=8)
    ax.set_xticks(positions)
    ax.set_xticklabels(labels, rotation=60, fontsize=8)
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(f"{BENCHMARK_NAMES[benchmark]} by language and resource group", pad=16)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def summarize(tables: dict[str, list[Row]], model_order: list[str], metric: str) -> dict[str, Any]:
    summary: dict[str, Any] = {"metric": metric}
    for benchmark, rows in tables.items():
        per_model: dict[str, Any] = {}
        for i, model in enumerate(model_order):
            entry: dict[str, Any] = {}
            for row in rows:
                if row.kind == "group" and row.values[i] is not None:
                    entry[GROUP_KEYS[row.group]] = round(row.values[i], 4)
                if row.kind == "average" and row.values[i] is not None:
                    entry["average"] = round(row.values[i], 4)
                if row.kind == "language" and row.group == SOURCE_GROUP and row.values[i] is not None:
                    entry["english"] = round(row.values[i], 4)
            entry["languages"] = sum(
                1 for r in rows if r.kind == "language" and r.group != SOURCE_GROUP and r.values[i] is not None
            )
            per_model[model] = entry
        summary[benchmark] = per_model
    return summary


def build_report(
    results: dict[str, dict[str, dict[str, dict]]],
    out_dir: Path,
    metrics_path: Path,
    model_order: list[str],
    metric: str = "acc_norm",
) -> dict[str, Any]:
    """Write reports/<benchmark>.{md,csv,png}, reports/plots/<benchmark>.csv and the summary JSON; return it."""
    if metric not in METRICS:
        raise DataError(f"report metric {metric!r} is invalid; allowed: {', '.join(METRICS)}")
    if not results:
        raise DataError("results: no languages to report")
    if not model_order or len(set(model_order)) != len(model_order):
        raise DataError(f"model order {model_order!r} is invalid; expected distinct model names")
    for lang in results:
        _language(lang, f"results[{lang!r}]")
    found = {m for models in results.values() for m in models}
    absent = [m for m in model_order if m not in found]
    if absent:
        raise DataError(
            f"model {absent[0]!r} has no results in any language; models with results: {', '.join(sorted(found))}"
        )
    ignored = sorted(found - set(model_order))
    if ignored:
        log.info("models not in the report's column order, left out: %s", ", ".join(ignored))
    out_dir = Path(out_dir)
    tables = {b: build_table(results, b, model_order, metric) for b in benchmarks_in(results)}
    for benchmark, rows in tables.items():
        write_text(to_markdown(rows, benchmark, model_order, metric), out_dir / f"{benchmark}.md")
        write_text(to_csv(rows, model_order, metric), out_dir / f"{benchmark}.csv")
        write_text(to_plot_csv(rows, model_order), out_dir / "plots" / f"{benchmark}.csv")
        plot_png(rows, benchmark, model_order, metric, out_dir / f"{benchmark}.png")
    summary = summarize(tables, model_order, metric)
    write_json(summary, metrics_path)
    log.info("report for %d languages, %d benchmarks written to %s", len(results), len(tables), out_dir)
    return summary


def load_results(paths: list[Path]) -> dict[str, dict[str, dict[str, dict]]]:
    """{lang: {model: {benchmark: result}}} from the evaluate stage's metrics/eval/<lang>.json files."""
    results: dict[str, dict] = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise DataError(f"{path}: evaluation results not found")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err
        if not isinstance(data, dict) or not isinstance(data.get("lang"), str):
            raise DataError(f"{path}: expected an object with a top-level 'lang' and one entry per model")
        lang = data.pop("lang")
        _language(lang, f"{path}: field 'lang'")
        if lang in results:
            raise DataError(f"{path}: results for language {lang!r} were already read from another file")
        for model, benches in data.items():
            if not isinstance(benches, dict) or not all(isinstance(v, dict) for v in benches.values()):
                raise DataError(f"{path}: model {model!r} must map each benchmark to its result object")
        results[lang] = data
    return results

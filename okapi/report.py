"""The paper's result tables (Tables 3-8), plots and a metrics summary from the per-language evaluation results.

Layout as in the paper: one table per benchmark, rows are languages grouped into high / medium / low resource
(okapi.languages, paper Table 1), then the languages outside Table 1 (group X, or the group params.yaml names),
with an "Ave Group" row closing each group present and an overall "Average" row (the mean over all target
languages, not over groups, which is how the paper's Average rows come out); English, the source language, comes
after the Average, apart from it. Columns are the models in the configured order, cells are a metric in percent
with one decimal.

Every cell carries its uncertainty: ``value ± stderr`` (lm-eval's standard error; for the average rows the standard
error of a mean of independent languages, okapi.stats) and its document count n. Given the evaluate stage's
per-document results, the RLHF-vs-SFT and SFT-vs-base differences get a paired test over the same documents
(okapi.stats.paired_test: exact McNemar per language, the same sign-flip test across languages for the average
rows) and differences significant at 95 % are marked. With ``compare_paper`` the paper's published numbers
(okapi.paper_tables) stand beside ours with the difference, and each table ends with how many languages reproduce
the paper within our 95 % interval.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from okapi.config import check, check_choices
from okapi.io import DataError, atomic_path, read_jsonl, write_json, write_text
from okapi.languages import GROUP_NAMES, UnknownLanguageError, get_language, report_groups
from okapi.paper_tables import PAPER_MODEL_NAMES, PaperTable
from okapi.report_cells import DocResults, average_cell, cell_of, discordance, paper_values
from okapi.stats import Z95, PairedResult, paired_test

log = logging.getLogger(__name__)


@dataclass
class ReportConfig:
    """The ``report`` section: what the paper's tables show."""

    models: list[str] = field(default_factory=lambda: ["base", "sft", "rlhf"])
    """Columns of the tables, in order: model names the evaluate stage scored."""
    metric: Literal["acc", "acc_norm"] = "acc_norm"
    """The score in the tables (the paper reports lm-eval's acc_norm)."""
    compare_paper: bool = False
    """Put the paper's published numbers (data/paper/okapi_tables.csv, Tables 3-8) beside ours with the difference,
    and end each table with how many languages reproduce the paper within our 95 % interval (paper profiles: true)."""
    paper_model: Literal["bloom-7b", "llama-7b"] = "bloom-7b"
    """Which base model's tables compare_paper compares with: bloom-7b (Tables 3-5: BLOOM, BLOOMZ, SFT, RLHF) or
    llama-7b (Tables 6-8: LLaMA, SFT, RLHF on LLaMA's 14 languages)."""

    def __post_init__(self) -> None:
        check_choices(self, "report")
        check(len(self.models) >= 1, "report.models", self.models, "a non-empty list of model names")


BENCHMARK_NAMES = {"arc": "ARC", "hellaswag": "HellaSwag", "mmlu": "MMLU"}  # paper order: Tables 3, 4, 5
METRICS = ("acc", "acc_norm")
GROUP_KEYS = {"H": "ave_high", "M": "ave_medium", "L": "ave_low", "X": "ave_other"}
SOURCE_GROUP = "EN"  # English: reported apart, not in the Average
# Paired comparisons the report tests, (A, B) meaning "A vs B"; a pair runs when both models are report columns.
COMPARISONS: tuple[tuple[str, str], ...] = (("rlhf", "sft"), ("sft", "base"))


@dataclass
class Row:
    kind: str  # "language", "group" (Ave Group) or "average"
    group: str  # H / M / L, "" for the overall average
    label: str
    code: str  # language code, "" for average rows
    values: list[float | None]  # percent, one per model
    stderrs: list[float | None] = field(default_factory=list)  # percent, one per model
    ns: list[int | None] = field(default_factory=list)  # documents, one per model (summed over averaged languages)
    tests: dict[tuple[str, str], PairedResult] = field(default_factory=dict)  # paired tests that could run
    paper: list[float | None] = field(default_factory=list)  # the paper's number per model, when compared


def _language(code: str, where: str) -> None:
    try:
        get_language(code)
    except UnknownLanguageError as err:
        raise DataError(f"{where}: {err}") from err


def benchmarks_in(results: dict) -> list[str]:
    found = {b for models in results.values() for benches in models.values() for b in benches}
    unknown = sorted(found - set(BENCHMARK_NAMES))
    if unknown:
        raise DataError(f"results: unknown benchmark {unknown[0]!r}; allowed: {', '.join(BENCHMARK_NAMES)}")
    return [b for b in BENCHMARK_NAMES if b in found]


def build_table(
    results: dict,
    benchmark: str,
    model_order: list[str],
    metric: str = "acc_norm",
    docs: DocResults | None = None,
    paper: PaperTable | None = None,
) -> list[Row]:
    """Rows of one benchmark's table: languages by group (okapi.languages.report_groups), Ave Group rows, the
    Average over the target languages, then English (the source language) apart.

    ``docs`` (per-document outcomes) adds the paired tests of :data:`COMPARISONS`; ``paper`` adds the paper's
    numbers (for average rows, the paper's mean over the same languages).
    """
    docs = docs or {}
    pairs = [pair for pair in COMPARISONS if all(m in model_order for m in pair)]

    def row(kind: str, group: str, label: str, code: str, members: list[str]) -> Row:
        per_lang = [[cell_of(results, c, m, benchmark, metric) for m in model_order] for c in members]
        cells = (
            per_lang[0]
            if kind == "language"
            else [average_cell([r[i] for r in per_lang]) for i in range(len(model_order))]
        )
        tests = {}
        for pair in pairs:
            found = [discordance(docs, results, c, pair, benchmark, metric) for c in members]
            if found and all(d is not None for d in found):
                tests[pair] = paired_test([d for d in found if d is not None])
        return Row(
            kind,
            group,
            label,
            code,
            [c.value for c in cells],
            [c.stderr for c in cells],
            [c.n for c in cells],
            tests,
            paper_values(paper, members, model_order) if paper is not None else [],
        )

    rows: list[Row] = []
    source_rows: list[Row] = []
    targets: list[str] = []
    for group, members in report_groups(list(results)):
        language_rows = [row("language", group, get_language(c).name, c, [c]) for c in members]
        if group == SOURCE_GROUP:
            source_rows.extend(language_rows)
            continue
        rows.extend(language_rows)
        rows.append(row("group", group, "Ave Group", "", members))
        targets.extend(members)
    if targets:
        rows.append(row("average", "", "Average", "", targets))
    return rows + source_rows


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _signed(diff: float) -> str:
    text = f"{diff:+.1f}"
    return "+0.0" if text == "-0.0" else text  # a difference that rounds to zero has no sign


def _pairs(rows: list[Row], model_order: list[str]) -> list[tuple[str, str]]:
    return [pair for pair in COMPARISONS if all(m in model_order for m in pair)]


def _paper_columns(rows: list[Row], model_order: list[str]) -> list[int]:
    """Indexes of the models the paper reports a number for in at least one row."""
    return [i for i in range(len(model_order)) if any(r.paper and r.paper[i] is not None for r in rows)]


def _within(row: Row, i: int) -> bool | None:
    """Whether the paper's number lies within our 95 % interval for model ``i``; None if it cannot be told."""
    ours, se, theirs = row.values[i], row.stderrs[i], row.paper[i] if row.paper else None
    if ours is None or se is None or theirs is None:
        return None
    return abs(ours - theirs) <= Z95 * se + 1e-9


def _ours_cell(row: Row, i: int) -> str:
    value, se = row.values[i], row.stderrs[i] if row.stderrs else None
    if value is None:
        return "n/a"
    return f"{value:.1f} ± {se:.1f}" if se is not None else f"{value:.1f}"


def _n_cell(row: Row) -> str:
    ns = row.ns or [None] * len(row.values)
    present = [n for n, v in zip(ns, row.values, strict=True) if v is not None]
    if present and all(n is not None for n in present) and len(set(present)) == 1:
        return str(present[0])
    return "/".join("–" if n is None else str(n) for n in ns)


def _diff_cell(row: Row, model_order: list[str], pair: tuple[str, str]) -> str:
    a, b = (model_order.index(m) for m in pair)
    if row.values[a] is None or row.values[b] is None:
        return "n/a"
    text = _signed(row.values[a] - row.values[b])
    test = row.tests.get(pair)
    if test is not None:
        text += ("\\*" if test.significant else "") + f" (p={test.p_value:.2g})"
    return text


def _paper_diff_cell(row: Row, i: int) -> str:
    theirs = row.paper[i] if row.paper else None
    if row.values[i] is None or theirs is None:
        return "n/a"
    return _signed(row.values[i] - theirs) + (" ✓" if _within(row, i) else "")


def reproduction_counts(rows: list[Row], model_order: list[str]) -> dict[str, tuple[int, int]]:
    """{model: (languages whose paper number lies within our 95 % interval, languages compared)}."""
    counts = {}
    for i in _paper_columns(rows, model_order):
        verdicts = [_within(r, i) for r in rows if r.kind == "language"]
        told = [v for v in verdicts if v is not None]
        counts[model_order[i]] = (sum(told), len(told))
    return counts


def protocol_line(results: dict, benchmark: str) -> str:
    """The evaluation protocol and shots behind one table, as the evaluate stage recorded them in each result."""
    seen = sorted(
        {
            (str(entry.get("protocol", "not recorded")), entry.get("num_fewshot"))
            for models in results.values()
            for benches in models.values()
            if isinstance(entry := benches.get(benchmark), dict)
        },
        key=str,
    )
    parts = [f"{p}, {n}-shot" if isinstance(n, int) else p for p, n in seen]
    return "Protocol: " + "; ".join(parts) + " (okapi/protocols.py)." if parts else "Protocol: not recorded."


def to_markdown(
    rows: list[Row],
    benchmark: str,
    model_order: list[str],
    metric: str,
    paper: PaperTable | None = None,
    protocol: str | None = None,
) -> str:
    name = BENCHMARK_NAMES[benchmark]
    pairs = _pairs(rows, model_order)
    paper_cols = _paper_columns(rows, model_order) if paper is not None else []
    header = ["Group", "Language", "n"]
    for i, model in enumerate(model_order):
        header.append(model)
        if i in paper_cols:
            header += [f"{model} (paper)", f"{model} − paper"]
    header += [f"{a} − {b}" for a, b in pairs]
    lines = [
        f"### {name} ({metric}, %)",
        "",
        f"Performance of the models on the translated {name} dataset; metric: {metric} in percent. "
        "Ave Group: mean over the group's languages; Average: mean over all target languages (English, the source "
        "language, is listed apart).",
        "",
        "| " + " | ".join(header) + " |",
        "|---|---|" + "---:|" * (len(header) - 2),
    ]
    previous = None
    for row in rows:
        group = GROUP_NAMES.get(row.group, "") if row.group != previous else ""
        previous = row.group
        cells = [_n_cell(row)]
        for i in range(len(model_order)):
            cells.append(_ours_cell(row, i))
            if i in paper_cols:
                cells += [_cell(row.paper[i]), _paper_diff_cell(row, i)]
        cells += [_diff_cell(row, model_order, pair) for pair in pairs]
        if row.kind == "language":
            label = f"{row.label} ({row.code})"
        else:
            label = f"**{row.label}**"
            cells = [f"**{c}**" for c in cells]
        lines.append(f"| {group} | {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Cells: value ± standard error (lm-eval's per language; for Ave Group and Average the standard error of a mean "
        "of independent languages, sqrt(Σ se²) / K). n: documents scored per model (summed over an average row's "
        "languages; one number per model when they differ).",
    ]
    if pairs:
        tested = any(row.tests for row in rows)
        lines.append(
            "A − B: difference in points; \\* marks a difference significant at 95 % in a paired test over the same "
            "documents (exact McNemar per language; the exact sign-flip test of the mean of per-language differences "
            "for average rows), p its two-sided p-value."
            + ("" if tested else " No per-document results were found, so no paired test was run.")
        )
    if paper is not None:
        lines.append(
            f"Paper: Table {paper.table} of Lai et al. (2023), {PAPER_MODEL_NAMES[paper.paper_model]} "
            "(for average rows, the mean of the paper's per-language numbers over the languages of that row; n/a "
            "where the paper lacks one of them). ✓: the paper's number lies within our 95 % interval (value ± 1.96 "
            "stderr). The paper reports acc_norm for ARC and HellaSwag and acc for MMLU (Open LLM Leaderboard)."
        )
        counts = reproduction_counts(rows, model_order)
        parts = [f"{model} {within}/{total}" for model, (within, total) in counts.items()]
        lines += [
            "",
            f"**Reproduction of Table {paper.table} ({PAPER_MODEL_NAMES[paper.paper_model]}):** languages whose "
            "published number lies within our 95 % interval: " + (", ".join(parts) if parts else "none compared") + ".",
        ]
    if protocol:
        lines += ["", protocol]
    return "\n".join(lines) + "\n"


def _csv_text(header: list[str], body: list[list[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(body)
    return buf.getvalue()


def _fmt(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def to_csv(rows: list[Row], model_order: list[str], metric: str) -> str:
    pairs = _pairs(rows, model_order)
    paper_cols = _paper_columns(rows, model_order)
    header = ["group", "language", "code"]
    for i, m in enumerate(model_order):
        header += [f"{m} ({metric} %)", f"{m} stderr", f"{m} n"] + ([f"{m} paper"] if i in paper_cols else [])
    for a, b in pairs:
        header += [f"{a}-{b} diff", f"{a}-{b} p", f"{a}-{b} significant"]
    body = []
    for row in rows:
        line: list[Any] = [row.group, row.label, row.code]
        for i in range(len(model_order)):
            n = row.ns[i] if row.ns else None
            line += [_fmt(row.values[i]), _fmt(row.stderrs[i] if row.stderrs else None), "" if n is None else n]
            if i in paper_cols:
                line.append(_fmt(row.paper[i]))
        for pair in pairs:
            a, b = (model_order.index(m) for m in pair)
            diff = None if None in (row.values[a], row.values[b]) else row.values[a] - row.values[b]  # type: ignore[operator]
            test = row.tests.get(pair)
            line += [
                _fmt(diff),
                "" if test is None else f"{test.p_value:.4g}",
                "" if test is None else test.significant,
            ]
        body.append(line)
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
    """Grouped bars per language with 95 % error bars, languages clustered by resource group, the group and overall
    averages; the paper's numbers as black ticks and significant paired differences as stars, when present."""
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
    paper_label = "paper"
    top = 0.0
    for i, model in enumerate(model_order):
        xs = [p + (i - (len(model_order) - 1) / 2) * width for p in positions]
        ys = [row.values[i] if row.values[i] is not None else math.nan for row in rows]
        errs = [Z95 * row.stderrs[i] if row.stderrs and row.stderrs[i] is not None else 0.0 for row in rows]
        ax.bar(xs, ys, width=width, label=model, yerr=errs, capsize=1.5, error_kw={"elinewidth": 0.6})
        top = max([top, *[y + e for y, e in zip(ys, errs, strict=True) if not math.isnan(y)]])
        theirs = [
            (x_, row.paper[i]) for x_, row in zip(xs, rows, strict=True) if row.paper and row.paper[i] is not None
        ]
        if theirs:
            ax.scatter(*zip(*theirs, strict=True), marker="_", s=60, color="black", zorder=3, label=paper_label)
            paper_label = "_nolegend_"  # one legend entry for all the paper's ticks
            top = max([top, *[v for _, v in theirs]])
        for pair in COMPARISONS:
            if pair[0] != model or pair[1] not in model_order:
                continue
            for x_, y, e, row in zip(xs, ys, errs, rows, strict=True):
                test = row.tests.get(pair)
                if test is not None and test.significant and not math.isnan(y):
                    ax.text(x_, y + e + 0.5, "*", ha="center", va="bottom", fontsize=9)
    for group, start in starts:
        ax.axvline(start - 0.8, color="grey", linewidth=0.5)
        ax.text(start - 0.5, 1.0, GROUP_NAMES[group], transform=ax.get_xaxis_transform(), va="bottom", fontsize=8)
    ax.set_xticks(positions)
    ax.set_xticklabels(labels, rotation=60, fontsize=8)
    ax.set_ylim(0, min(100.0, top * 1.08 + 1))
    ax.set_ylabel(f"{metric} (%), bars: 95 % interval")
    ax.set_title(f"{BENCHMARK_NAMES[benchmark]} by language and resource group", pad=16)
    pairs = [f"{a} vs {b}" for a, b in COMPARISONS if a in model_order and b in model_order]
    if pairs and any(row.tests for row in rows):
        ax.set_xlabel(
            "* on a bar: significant at 95 % in a paired test against\nthe model it is compared with ("
            + ", ".join(pairs)
            + ")",
            fontsize=8,
        )
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def summarize(
    tables: dict[str, list[Row]], model_order: list[str], metric: str, papers: dict[str, PaperTable] | None = None
) -> dict[str, Any]:
    """Averages per model with their stderr and n, the paired tests of the Average row, and the paper comparison."""
    summary: dict[str, Any] = {"metric": metric}
    for benchmark, rows in tables.items():
        per_model: dict[str, Any] = {}
        for i, model in enumerate(model_order):
            entry: dict[str, Any] = {}
            for row in rows:
                if row.values[i] is None:
                    continue
                if row.kind == "language":
                    if row.group != SOURCE_GROUP:
                        continue
                    key = "english"
                else:
                    key = GROUP_KEYS[row.group] if row.kind == "group" else "average"
                entry[key] = round(row.values[i], 4)
                if row.stderrs and row.stderrs[i] is not None:
                    entry[f"{key}_stderr"] = round(row.stderrs[i], 4)
                if row.ns and row.ns[i] is not None:
                    entry[f"{key}_n"] = row.ns[i]
            entry["languages"] = sum(
                1 for r in rows if r.kind == "language" and r.group != SOURCE_GROUP and r.values[i] is not None
            )
            per_model[model] = entry
        average = next((r for r in rows if r.kind == "average"), None)
        for pair, test in (average.tests if average is not None else {}).items():
            languages = [r.tests[pair] for r in rows if r.kind == "language" and pair in r.tests]
            per_model[f"{pair[0]}_vs_{pair[1]}"] = {
                "average_diff": round(100.0 * test.diff, 4),
                "average_p": round(test.p_value, 6),
                "average_significant": test.significant,
                "significant_languages": sum(t.significant for t in languages),
                "languages": len(languages),
            }
        paper = (papers or {}).get(benchmark)
        if paper is not None:
            counts = reproduction_counts(rows, model_order)
            per_model["paper"] = {
                "table": paper.table,
                **{model: {"within_95": within, "languages": total} for model, (within, total) in counts.items()},
            }
        summary[benchmark] = per_model
    return summary


def build_report(
    results: dict[str, dict[str, dict[str, dict]]],
    out_dir: Path,
    metrics_path: Path,
    model_order: list[str],
    metric: str = "acc_norm",
    docs: DocResults | None = None,
    papers: dict[str, PaperTable] | None = None,
) -> dict[str, Any]:
    """Write reports/<benchmark>.{md,csv,png}, reports/plots/<benchmark>.csv and the summary JSON; return it.

    ``docs``: per-document outcomes for the paired tests; ``papers``: {benchmark: the paper's table} to compare with.
    """
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
    papers = papers or {}
    tables = {
        b: build_table(results, b, model_order, metric, docs=docs, paper=papers.get(b)) for b in benchmarks_in(results)
    }
    # Everything is computed (and every input checked) before the first file is written.
    summary = summarize(tables, model_order, metric, papers)
    for benchmark, rows in tables.items():
        markdown = to_markdown(
            rows, benchmark, model_order, metric, papers.get(benchmark), protocol_line(results, benchmark)
        )
        write_text(markdown, out_dir / f"{benchmark}.md")
        write_text(to_csv(rows, model_order, metric), out_dir / f"{benchmark}.csv")
        write_text(to_plot_csv(rows, model_order), out_dir / "plots" / f"{benchmark}.csv")
        plot_png(rows, benchmark, model_order, metric, out_dir / f"{benchmark}.png")
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


def load_doc_results(folder: Path, langs: list[str]) -> DocResults:
    """Per-document outcomes written by the evaluate stage: ``folder/<lang>/<model>_<benchmark>.jsonl``.

    A language without a folder is left out (its rows get no paired test); a malformed line stops with its file.
    """
    docs: DocResults = {}
    for lang in langs:
        lang_dir = Path(folder) / lang
        if not lang_dir.is_dir():
            log.warning("no per-document results for %s in %s; its rows get no paired test", lang, folder)
            continue
        for path in sorted(lang_dir.glob("*.jsonl")):
            # Benchmark names have no underscore; model names may.
            model, _, benchmark = path.stem.rpartition("_")
            if not model or benchmark not in BENCHMARK_NAMES:
                raise DataError(
                    f"{path}: expected a file named <model>_<benchmark>.jsonl with a benchmark among "
                    f"{', '.join(BENCHMARK_NAMES)}"
                )
            outcomes: dict[int, dict[str, float]] = {}
            for i, rec in enumerate(read_jsonl(path, required=("doc_id", *METRICS)), start=1):
                doc_id = rec["doc_id"]
                if isinstance(doc_id, bool) or not isinstance(doc_id, int) or doc_id in outcomes:
                    raise DataError(f"{path}, record {i}: doc_id {doc_id!r} is invalid; expected a unique integer")
                for metric in METRICS:
                    if rec[metric] not in (0, 1) or isinstance(rec[metric], bool):
                        raise DataError(f"{path}, record {i}: {metric} = {rec[metric]!r} is invalid; expected 0 or 1")
                outcomes[doc_id] = {metric: float(rec[metric]) for metric in METRICS}
            if not outcomes:
                raise DataError(f"{path}: no documents; expected one JSON line per scored document")
            docs.setdefault(lang, {}).setdefault(model, {})[benchmark] = outcomes
    return docs

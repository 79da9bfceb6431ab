"""okapi.report: the paper's table layout, group averages on hand-made numbers, plots and the metrics summary."""

from __future__ import annotations

import csv
import json

import pytest

from okapi.io import DataError
from okapi.report import build_report, build_table, load_results

MODELS = ["base", "sft", "rlhf"]
# acc_norm per language (fractions as lm-eval reports them); acc differs so a wrong metric choice shows.
NUMBERS = {
    "vi": (0.337, 0.350, 0.362),
    "ru": (0.275, 0.292, 0.303),
    "hi": (0.292, 0.285, 0.296),
    "id": (0.360, 0.374, 0.388),
    "bn": (0.262, 0.268, 0.289),
}


def results(numbers=NUMBERS, benchmarks=("arc", "hellaswag")) -> dict:
    return {
        lang: {
            model: {
                b: {"acc": 0.01, "acc_norm": v, "acc_stderr": 0.1, "acc_norm_stderr": 0.1, "n": 25} for b in benchmarks
            }
            for model, v in zip(MODELS, values, strict=True)
        }
        for lang, values in numbers.items()
    }


def test_rows_are_grouped_with_group_and_overall_averages():
    rows = build_table(results(), "arc", MODELS)
    assert [(r.kind, r.group, r.label) for r in rows] == [
        ("language", "H", "Russian"),  # Table 1 order inside a group, whatever the input order
        ("language", "H", "Vietnamese"),
        ("group", "H", "Ave Group"),
        ("language", "M", "Indonesian"),
        ("language", "M", "Hindi"),
        ("group", "M", "Ave Group"),
        ("language", "L", "Bengali"),
        ("group", "L", "Ave Group"),
        ("average", "", "Average"),
    ]
    assert rows[2].values == pytest.approx([30.6, 32.1, 33.25])
    assert rows[5].values == pytest.approx([32.6, 32.95, 34.2])
    assert rows[7].values == pytest.approx([26.2, 26.8, 28.9])
    # The paper's Average is over languages (152.6 / 5), not over the three group means (29.8).
    assert rows[8].values == pytest.approx([30.52, 31.38, 32.76])


def test_build_report_writes_tables_plots_and_summary(tmp_path):
    out, summary_path = tmp_path / "reports", tmp_path / "metrics" / "summary.json"
    summary = build_report(results(), out, summary_path, MODELS)
    assert json.loads(summary_path.read_text()) == summary
    assert summary["metric"] == "acc_norm" and set(summary) == {"metric", "arc", "hellaswag"}
    # Averages keep their keys and gain stderr (sqrt(sum se^2) / K, se = 10 points each) and n (25 per language).
    assert summary["arc"]["rlhf"] == pytest.approx(
        {
            "ave_high": 33.25,
            "ave_high_stderr": 7.0711,
            "ave_high_n": 50,
            "ave_medium": 34.2,
            "ave_medium_stderr": 7.0711,
            "ave_medium_n": 50,
            "ave_low": 28.9,
            "ave_low_stderr": 10.0,
            "ave_low_n": 25,
            "average": 32.76,
            "average_stderr": 4.4721,
            "average_n": 125,
            "languages": 5,
        }
    )
    assert "rlhf_vs_sft" not in summary["arc"]  # no per-document results, no paired test
    for benchmark in ("arc", "hellaswag"):
        for name in (f"{benchmark}.md", f"{benchmark}.csv", f"{benchmark}.png", f"plots/{benchmark}.csv"):
            assert (out / name).is_file()
        assert (out / f"{benchmark}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "mmlu.md").exists()
    md = (out / "arc.md").read_text()
    assert "### ARC (acc_norm, %)" in md
    assert "| Group | Language | n | base | sft | rlhf | rlhf − sft | sft − base |" in md
    assert "| High-Resource | Russian (ru) | 25 | 27.5 ± 10.0 | 29.2 ± 10.0 | 30.3 ± 10.0 | +1.1 | +1.7 |" in md
    assert "|  | **Ave Group** | **50** | **30.6 ± 7.1** | **32.1 ± 7.1** |" in md
    assert "|  | **Average** | **125** | **30.5 ± 4.5** | **31.4 ± 4.5** | **32.8 ± 4.5** | **+1.4** | **+0.9** |" in md
    assert "No per-document results were found, so no paired test was run." in md
    table = list(csv.DictReader((out / "arc.csv").open()))
    assert table[-1]["language"] == "Average" and table[-1]["sft (acc_norm %)"] == "31.38"
    assert table[-1]["sft stderr"] == "4.47" and table[-1]["sft n"] == "125" and table[-1]["rlhf-sft p"] == ""
    plot = list(csv.DictReader((out / "plots" / "arc.csv").open()))
    assert [r["lang"] for r in plot] == ["ru", "vi", "id", "hi", "bn"]
    assert plot[0] == {"lang": "ru", "group": "H", "base": "27.50", "sft": "29.20", "rlhf": "30.30"}


def test_acc_metric_and_missing_cells(tmp_path):
    data = results()
    del data["id"]["rlhf"]  # a model not evaluated for one language
    summary = build_report(data, tmp_path / "r", tmp_path / "s.json", MODELS, metric="acc")
    assert summary["arc"]["base"]["average"] == pytest.approx(1.0)
    md = (tmp_path / "r" / "arc.md").read_text()
    assert "### ARC (acc, %)" in md and "| Indonesian (id) | 25 | 1.0 ± 10.0 | 1.0 ± 10.0 | n/a | n/a | +0.0 |" in md
    assert summary["arc"]["rlhf"]["languages"] == 4


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda r: r.update(zz=r["vi"]), ["results['zz']", "unknown language code 'zz'", "languages.zz.name"]),
        (lambda r: r["vi"]["sft"]["arc"].update(acc_norm=37.2), ["results['vi']['sft']['arc']", "37.2", "0 and 1"]),
        (lambda r: r["vi"]["sft"]["arc"].pop("acc_norm"), ["'acc_norm' = None"]),
        (lambda r: r["vi"]["sft"].update(gsm8k={"acc_norm": 0.1}), ["unknown benchmark 'gsm8k'"]),
        (lambda r: [m.pop("rlhf") for m in r.values()], ["model 'rlhf' has no results", "base, sft"]),
    ],
)
def test_bad_results_are_one_clear_error(tmp_path, mutate, words):
    data = results()
    mutate(data)
    with pytest.raises(DataError) as err:
        build_report(data, tmp_path / "r", tmp_path / "s.json", MODELS)
    for word in words:
        assert word in str(err.value)
    assert not (tmp_path / "s.json").exists()


def test_load_results_reads_the_evaluate_stage_files(tmp_path):
    paths = []
    for lang, per_model in results().items():
        path = tmp_path / f"{lang}.json"
        path.write_text(json.dumps({"lang": lang, **per_model}))
        paths.append(path)
    assert load_results(paths) == results()
    with pytest.raises(DataError, match="already read"):
        load_results([paths[0], paths[0]])
    (tmp_path / "bad.json").write_text(json.dumps({"base": {}}))
    with pytest.raises(DataError, match=r"bad\.json: expected an object with a top-level 'lang'"):
        load_results([tmp_path / "bad.json"])
    (tmp_path / "xx.json").write_text(json.dumps({"lang": "xx", "base": {"arc": {"acc_norm": 0.3}}}))
    with pytest.raises(DataError, match=r"xx\.json: field 'lang': unknown language code 'xx'"):
        load_results([tmp_path / "xx.json"])


def test_languages_outside_table_1_and_english_keep_the_layout(tmp_path):
    from okapi.params import Params

    Params({"languages": {"vi": {}, "ja": {}, "tl": {}, "sw": {"group": "L"}, "en": {}}})
    numbers = {
        "vi": (0.30, 0.32, 0.34),
        "ja": (0.26, 0.28, 0.30),
        "tl": (0.28, 0.30, 0.32),
        "sw": (0.24, 0.26, 0.28),
        "en": (0.50, 0.52, 0.54),
    }
    rows = build_table(results(numbers), "arc", MODELS)
    assert [(r.kind, r.group, r.label) for r in rows] == [
        ("language", "H", "Vietnamese"),
        ("group", "H", "Ave Group"),
        ("language", "L", "Swahili"),  # the group the params name
        ("group", "L", "Ave Group"),
        ("language", "X", "Japanese"),  # outside Table 1: its own group, same layout
        ("language", "X", "Tagalog"),
        ("group", "X", "Ave Group"),
        ("average", "", "Average"),
        ("language", "EN", "English"),  # the source language, apart and not in the Average
    ]
    assert rows[6].values == pytest.approx([27.0, 29.0, 31.0])
    assert rows[7].values == pytest.approx([27.0, 29.0, 31.0])  # (30 + 24 + 26 + 28) / 4: English left out
    summary = build_report(results(numbers), tmp_path / "r", tmp_path / "s.json", MODELS)
    rlhf = summary["arc"]["rlhf"]
    assert {k: v for k, v in rlhf.items() if not k.endswith(("_stderr", "_n"))} == pytest.approx(
        {"ave_high": 34.0, "ave_low": 28.0, "ave_other": 31.0, "average": 31.0, "english": 54.0, "languages": 4}
    )
    assert rlhf["english_n"] > 0 and rlhf["average_n"] == 4 * rlhf["english_n"]  # n sums over the averaged languages
    md = (tmp_path / "r" / "arc.md").read_text()
    assert "| Outside Table 1 | Japanese (ja) |" in md and "| Source language | English (en) |" in md
    assert (tmp_path / "r" / "arc.png").stat().st_size > 0

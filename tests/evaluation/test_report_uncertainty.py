"""okapi.report with per-document results and the paper's numbers: paired tests, ± and n, the reproduction summary.

The "paper profile" test fills the paper's BLOOM-7B layout (26 languages; base, BLOOMZ, SFT, RLHF) from a fixture
and checks the Markdown, CSV, PNG and summary a reviewer reads.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from okapi.evaluate import samples_file_name, write_samples_dir
from okapi.io import DataError
from okapi.languages import TARGET_LANGUAGES
from okapi.paper_tables import load_paper_tables
from okapi.report import build_report, load_doc_results
from okapi.stats import proportion_stderr

ROOT = Path(__file__).resolve().parents[2]
PAPER_CSV = ROOT / "data" / "paper" / "okapi_tables.csv"


def fixture(outcomes: dict[str, dict[str, list[int]]], benchmark: str = "arc") -> tuple[dict, dict]:
    """(results as the evaluate stage writes them, per-document outcomes) from {lang: {model: [0/1 per doc]}}."""
    results: dict = {}
    docs: dict = {}
    for lang, per_model in outcomes.items():
        for model, hits in per_model.items():
            n, k = len(hits), sum(hits)
            se = proportion_stderr(k, n)
            results.setdefault(lang, {}).setdefault(model, {})[benchmark] = {
                "acc": k / n,
                "acc_stderr": se,
                "acc_norm": k / n,
                "acc_norm_stderr": se,
                "n": n,
            }
            docs.setdefault(lang, {}).setdefault(model, {})[benchmark] = {
                i: {"acc": float(h), "acc_norm": float(h)} for i, h in enumerate(hits)
            }
    return results, docs


# The embedded run's shape: 6 documents per cell, differences of one or two documents.
EMBEDDED = {
    "es": {"base": [1, 1, 1, 0, 0, 0], "sft": [1, 1, 0, 0, 0, 0], "rlhf": [1, 1, 1, 0, 0, 0]},
    "vi": {"base": [1, 0, 0, 0, 0, 0], "sft": [0, 1, 0, 0, 0, 0], "rlhf": [1, 1, 0, 0, 0, 0]},
}


def test_embedded_sized_cells_show_pm_and_n_and_nothing_significant(tmp_path):
    results, docs = fixture(EMBEDDED)
    summary = build_report(results, tmp_path / "r", tmp_path / "s.json", ["base", "sft", "rlhf"], docs=docs)
    md = (tmp_path / "r" / "arc.md").read_text()
    # 3/6 = 50.0 with lm-eval's stderr 22.4; rlhf - sft = +16.7 on one discordant document: McNemar p = 1.
    assert (
        "| High-Resource | Spanish (es) | 6 | 50.0 ± 22.4 | 33.3 ± 21.1 | 50.0 ± 22.4 | +16.7 (p=1) | -16.7 (p=1) |"
        in md
    )
    # vi sft vs base: two discordant documents, one each way.
    assert "| Vietnamese (vi) | 6 | 16.7 ± 16.7 | 16.7 ± 16.7 | 33.3 ± 21.1 | +16.7 (p=1) | +0.0 (p=1) |" in md
    # Average: stderr sqrt(22.4^2 + 16.7^2) / 2 = 13.9 over 12 documents; pooled sign-flip test, 2 of 2 -> p = 0.5.
    assert "| **Average** | **12** | **33.3 ± 13.9** | **25.0 ± 13.4** | **41.7 ± 15.4** | **+16.7 (p=0.5)** |" in md
    assert "\\*" not in md.split("\n\n")[2]  # no cell of the table is marked significant
    assert summary["arc"]["rlhf_vs_sft"] == {
        "average_diff": pytest.approx(16.6667),
        "average_p": 0.5,
        "average_significant": False,
        "significant_languages": 0,
        "languages": 2,
    }
    assert summary["arc"]["rlhf"]["average_stderr"] == pytest.approx(15.4, abs=0.05)
    assert summary["arc"]["rlhf"]["average_n"] == 12
    table = list(csv.DictReader((tmp_path / "r" / "arc.csv").open()))
    assert table[0]["rlhf-sft p"] == "1" and table[0]["rlhf-sft significant"] == "False"


def test_a_clear_difference_is_marked_in_its_language_and_the_average(tmp_path):
    outcomes = {
        "es": {"base": [1] * 10 + [0] * 30, "sft": [1] * 10 + [0] * 30, "rlhf": [1] * 30 + [0] * 10},
        "vi": {"base": [1] * 10 + [0] * 30, "sft": [1] * 11 + [0] * 29, "rlhf": [1] * 12 + [0] * 28},
    }
    results, docs = fixture(outcomes)
    summary = build_report(results, tmp_path / "r", tmp_path / "s.json", ["base", "sft", "rlhf"], docs=docs)
    md = (tmp_path / "r" / "arc.md").read_text()
    assert "| Spanish (es) | 40 | 25.0 ± 6.9 | 25.0 ± 6.9 | 75.0 ± 6.9 | +50.0\\* (p=1.9e-06) | +0.0 (p=1) |" in md
    assert "| Vietnamese (vi) | 40 | 25.0 ± 6.9 | 27.5 ± 7.1 | 30.0 ± 7.3 | +2.5 (p=1) | +2.5 (p=1) |" in md
    assert "| **Average** | **80** | **25.0 ± 4.9** | **26.2 ± 5.0** | **52.5 ± 5.0** | **+26.2\\* (p=" in md
    assert summary["arc"]["rlhf_vs_sft"]["significant_languages"] == 1
    assert summary["arc"]["rlhf_vs_sft"]["average_significant"] is True
    assert summary["arc"]["sft_vs_base"]["average_significant"] is False


def write_doc_results(rows: dict, folder):
    """The evaluate stage's samples folder: ``<model>_<benchmark>.jsonl`` per model and benchmark."""
    write_samples_dir({samples_file_name(m, b): r for m, per in rows.items() for b, r in per.items()}, folder)


def test_per_document_results_must_match_the_metrics_and_each_other(tmp_path):
    results, docs = fixture(EMBEDDED)
    stale = json.loads(json.dumps(docs, default=str))  # a copy with string doc_ids is fine for mutation
    docs["es"]["rlhf"]["arc"][5]["acc_norm"] = 1.0  # 4/6 in the file, 3/6 in the metrics
    with pytest.raises(DataError, match=r"'rlhf' on es arc average 66\.6667 % .* rerun the evaluate stage"):
        build_report(results, tmp_path / "r", tmp_path / "s.json", ["base", "sft", "rlhf"], docs=docs)
    assert not (tmp_path / "s.json").exists() and not (tmp_path / "r").exists()
    _, docs = fixture(EMBEDDED)
    docs["vi"]["sft"]["arc"] = {i + 10: v for i, v in docs["vi"]["sft"]["arc"].items()}
    with pytest.raises(DataError, match="vi arc: 'rlhf' and 'sft' were scored on different documents"):
        build_report(results, tmp_path / "r", tmp_path / "s.json", ["base", "sft", "rlhf"], docs=docs)
    assert stale  # the untouched copy is still a mapping of the same shape


def test_doc_results_round_trip_through_the_evaluate_stages_files(tmp_path):
    results, docs = fixture(EMBEDDED)
    for lang in EMBEDDED:
        rows = {
            model: {"arc": [{"doc_id": i, **o} for i, o in per["arc"].items()]} for model, per in docs[lang].items()
        }
        write_doc_results(rows, tmp_path / "eval_results" / lang)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "eval_results").rglob("*.jsonl"))[:2] == [
        "eval_results/es/base_arc.jsonl",
        "eval_results/es/rlhf_arc.jsonl",
    ]
    assert load_doc_results(tmp_path / "eval_results", ["es", "vi", "ru"]) == docs  # ru: no folder, no tests
    bad = tmp_path / "eval_results" / "es" / "sft_arc.jsonl"
    bad.write_text('{"doc_id": 0, "acc": 1, "acc_norm": 0.5}\n')
    with pytest.raises(DataError, match=r"sft_arc\.jsonl, record 1: acc_norm = 0\.5 is invalid; expected 0 or 1"):
        load_doc_results(tmp_path / "eval_results", ["es"])
    bad.write_text('{"doc_id": 0, "acc": 1}\n')
    with pytest.raises(DataError, match="missing field 'acc_norm'"):
        load_doc_results(tmp_path / "eval_results", ["es"])
    bad.write_text('{"doc_id": 0, "acc": 1, "acc_norm": 1}\n{"doc_id": 0, "acc": 1, "acc_norm": 1}\n')
    with pytest.raises(DataError, match="record 2: doc_id 0 is invalid; expected a unique integer"):
        load_doc_results(tmp_path / "eval_results", ["es"])


# --- the paper profile's layout, filled from a fixture ---------------------------------------------------------

N_DOCS = 400
OFF = {"rlhf": {"bn", "ta", "ne"}, "bloomz": set(TARGET_LANGUAGES[:20])}  # cells we put 10 points off the paper


def paper_fixture() -> tuple[dict, dict]:
    """Every language's cell equals the paper's Table 3 number (to 1/400), except OFF cells, 10 points higher."""
    table = load_paper_tables(PAPER_CSV)[("bloom-7b", "arc")]
    outcomes: dict = {}
    for code in TARGET_LANGUAGES:
        for model in ("base", "bloomz", "sft", "rlhf"):
            value = table.value(code, model) + (10.0 if code in OFF.get(model, set()) else 0.0)
            k = round(value / 100 * N_DOCS)
            outcomes.setdefault(code, {})[model] = [1] * k + [0] * (N_DOCS - k)  # nested: paired tests are sharp
    return fixture(outcomes)


def test_paper_profile_layout_shows_the_papers_column_and_the_reproduction_summary(tmp_path):
    results, docs = paper_fixture()
    papers = {"arc": load_paper_tables(PAPER_CSV)[("bloom-7b", "arc")]}
    models = ["base", "bloomz", "sft", "rlhf"]
    summary = build_report(results, tmp_path / "r", tmp_path / "s.json", models, docs=docs, papers=papers)
    md = (tmp_path / "r" / "arc.md").read_text()
    assert (
        "| Group | Language | n | base | base (paper) | base − paper | bloomz | bloomz (paper) | bloomz − paper "
        "| sft | sft (paper) | sft − paper | rlhf | rlhf (paper) | rlhf − paper | rlhf − sft | sft − base |"
    ) in md
    # Russian, Table 3: BLOOM 27.5, BLOOMZ 25.5, SFT 29.2, RLHF 30.3; ours 110/400 = 27.5 etc.
    assert (
        "| High-Resource | Russian (ru) | 400 | 27.5 ± 2.2 | 27.5 | +0.0 ✓ | 35.5 ± 2.4 | 25.5 | +10.0 | "
        "29.2 ± 2.3 | 29.2 | +0.1 ✓ | 30.2 ± 2.3 | 30.3 | -0.1 ✓ | +1.0 (p=0.12) | +1.7\\* (p=0.016) |"
    ) in md
    # Average rows: the paper's column is the mean of its rows over our languages (all 26 -> its published 30.0).
    average = next(line for line in md.splitlines() if "**Average**" in line)
    assert "| **10400** |" in average and "| **28.2** |" in average and "| **30.0** |" in average
    assert (
        "**Reproduction of Table 3 (BLOOM-7B):** languages whose published number lies within our 95 % interval: "
        "base 26/26, bloomz 6/26, sft 26/26, rlhf 23/26."
    ) in md
    assert "Paper: Table 3 of Lai et al. (2023), BLOOM-7B" in md
    assert summary["arc"]["paper"] == {
        "table": 3,
        "base": {"within_95": 26, "languages": 26},
        "bloomz": {"within_95": 6, "languages": 26},
        "sft": {"within_95": 26, "languages": 26},
        "rlhf": {"within_95": 23, "languages": 26},
    }
    table = list(csv.DictReader((tmp_path / "r" / "arc.csv").open()))
    assert table[0]["code"] == "ru" and table[0]["rlhf paper"] == "30.30" and table[0]["rlhf n"] == "400"
    png = (tmp_path / "r" / "arc.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_llama_tables_leave_languages_llama_lacks_without_a_paper_number(tmp_path):
    results, docs = fixture({c: EMBEDDED["es"] for c in ("es", "vi", "ru")})
    papers = {"arc": load_paper_tables(PAPER_CSV)[("llama-7b", "arc")]}
    build_report(results, tmp_path / "r", tmp_path / "s.json", ["base", "sft", "rlhf"], docs=docs, papers=papers)
    md = (tmp_path / "r" / "arc.md").read_text()
    assert "| Spanish (es) | 6 | 50.0 ± 22.4 | 36.8 | +13.2 ✓ |" in md  # Table 6: LLaMA 36.8 on Spanish
    assert "| Vietnamese (vi) | 6 | 50.0 ± 22.4 | n/a | n/a |" in md  # Table 6 has no Vietnamese
    assert "**Reproduction of Table 6 (LLaMA-7B):** " in md and "base 2/2, sft 2/2, rlhf 2/2." in md
    group = next(line for line in md.splitlines() if "**Ave Group**" in line)
    assert "| **n/a** | **n/a** |" in group  # the paper has no mean over a group with Vietnamese in it


def test_report_stage_with_the_paper_profile_params(tmp_path):
    from stages.report import main

    results, docs = fixture(EMBEDDED)
    params = yaml.safe_load((ROOT / "configs" / "paper" / "params.yaml").read_text())
    assert params["report"]["compare_paper"] is True and params["report"]["paper_model"] == "bloom-7b"
    params["languages"] = {"es": {}, "vi": {}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "eval").mkdir()
    for lang, per_model in results.items():
        (tmp_path / "eval" / f"{lang}.json").write_text(json.dumps({"lang": lang, **per_model}))
        rows = {m: {"arc": [{"doc_id": i, **o} for i, o in docs[lang][m]["arc"].items()]} for m in per_model}
        write_doc_results(rows, tmp_path / "eval_results" / lang)
    argv = ["--results", str(tmp_path / "eval"), "--out", str(tmp_path / "r"), "--summary", str(tmp_path / "s.json")]
    argv += [
        "--docs",
        str(tmp_path / "eval_results"),
        "--paper",
        str(PAPER_CSV),
        "--params",
        str(tmp_path / "params.yaml"),
    ]
    main(argv)
    md = (tmp_path / "r" / "arc.md").read_text()
    assert "**Reproduction of Table 3 (BLOOM-7B):**" in md and "(p=1)" in md
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["arc"]["paper"]["rlhf"] == {"within_95": 2, "languages": 2}
    # compare_paper without the file is one clear error; a bad paper_model names the key and the choices.
    from okapi.config import ConfigError

    with pytest.raises(ConfigError, match="report.compare_paper is true but no --paper file"):
        main(argv[:-4] + argv[-2:])
    params["report"]["paper_model"] = "llama-13b"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(
        ConfigError, match=r"report.paper_model = 'llama-13b' is invalid; allowed: 'bloom-7b', 'llama-7b'"
    ):
        main(argv)

"""data/paper/okapi_tables.csv: the paper's Tables 3-8, spot-checked against the paper's text, and its loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from okapi.io import DataError
from okapi.languages import TABLE_1, TARGET_LANGUAGES
from okapi.paper_tables import HEADER, load_paper_tables, paper_table

PAPER_CSV = Path(__file__).resolve().parents[2] / "data" / "paper" / "okapi_tables.csv"

# Typed from the paper's text (Lai et al., 2023), three languages per table, one from each resource group where
# the table has it: (base, BLOOMZ, SFT, RLHF) for BLOOM-7B, (base, SFT, RLHF) for LLaMA-7B.
SPOT_CHECKS = {
    ("bloom-7b", "arc", 3): {
        "ru": (27.5, 25.5, 29.2, 30.3),
        "ca": (34.7, 35.8, 35.1, 38.9),
        "kn": (24.7, 24.6, 24.5, 24.6),
    },
    ("bloom-7b", "hellaswag", 4): {
        "zh": (51.2, 42.6, 51.8, 53.8),
        "ar": (43.3, 39.5, 44.3, 47.0),
        "te": (29.2, 30.7, 30.0, 31.7),
    },
    ("bloom-7b", "mmlu", 5): {
        "de": (28.1, 25.6, 27.0, 28.6),
        "hr": (26.0, 26.1, 26.4, 27.7),
        "bn": (28.2, 25.9, 27.1, 26.8),
    },
    ("llama-7b", "arc", 6): {"ru": (32.1, 32.8, 37.7), "sk": (29.0, 34.3, 37.2), "hr": (33.0, 33.8, 35.9)},
    ("llama-7b", "hellaswag", 7): {"fr": (55.7, 55.6, 56.9), "da": (46.7, 47.7, 51.7), "ca": (49.6, 49.2, 49.0)},
    ("llama-7b", "mmlu", 8): {"nl": (29.8, 30.0, 31.1), "uk": (29.4, 30.8, 31.6), "sr": (29.2, 29.7, 30.4)},
}


@pytest.fixture(scope="module")
def tables():
    return load_paper_tables(PAPER_CSV)


@pytest.mark.parametrize(("key", "expected"), list(SPOT_CHECKS.items()), ids=lambda k: str(k))
def test_spot_checks_against_the_papers_text(tables, key, expected):
    model, benchmark, number = key
    table = paper_table(tables, model, benchmark)
    assert table.table == number
    systems = ("base", "bloomz", "sft", "rlhf") if model == "bloom-7b" else ("base", "sft", "rlhf")
    assert table.systems() == list(systems)
    for code, values in expected.items():
        assert tuple(table.value(code, s) for s in systems) == values, (number, code)


def test_published_averages_and_averages_rows(tables):
    assert tables[("bloom-7b", "arc")].rows["average"] == {"base": 28.2, "bloomz": 27.4, "sft": 28.4, "rlhf": 30.0}
    assert tables[("llama-7b", "mmlu")].rows["average"] == {"base": 29.8, "sft": 30.1, "rlhf": 30.8}
    for (model, _), table in tables.items():
        groups = {"ave_high": "H", "ave_medium": "M", "ave_low": "L", "average": None}
        for row, group in groups.items():
            if row not in table.rows:
                assert model == "llama-7b" and row == "ave_low"  # LLaMA supports no low-resource language
                continue
            members = [c for c in table.languages() if group is None or TABLE_1[c].category == group]
            for system, published in table.rows[row].items():
                mean = sum(table.value(c, system) for c in members) / len(members)
                # The paper rounds to one decimal: its averages are the means of its rows up to that rounding.
                assert abs(mean - published) <= 0.05 + 1e-9, (table.table, row, system, mean, published)


def test_language_sets_follow_table_1(tables):
    llama = [c for c in TARGET_LANGUAGES if TABLE_1[c].llama]
    assert len(llama) == 14
    for benchmark in ("arc", "hellaswag", "mmlu"):
        assert tables[("bloom-7b", benchmark)].languages() == list(TARGET_LANGUAGES)
        assert tables[("llama-7b", benchmark)].languages() == llama


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("3,bloom-7b,arc,xx,1,2,3,4", ["line 2", "row 'xx'", "language code"]),
        ("3,bloom-7b,arc,ru,1,2,3,abc", ["line 2", "column rlhf", "'abc'", "percentage"]),
        ("3,bloom-7b,arc,ru,1,2,3,140", ["column rlhf", "'140'", "between 0 and 100"]),
        ("3,gpt-4,arc,ru,1,2,3,4", ["'gpt-4'", "bloom-7b, llama-7b"]),
        ("4,bloom-7b,arc,ru,1,2,3,4", ["table '4'", "Table 3"]),
        ("3,bloom-7b,arc,ru,1,2,3", ["7 fields", "expected 8"]),
    ],
)
def test_a_bad_line_is_one_clear_error(tmp_path, line, words):
    path = tmp_path / "t.csv"
    path.write_text(",".join(HEADER) + "\n" + line + "\n")
    with pytest.raises(DataError) as err:
        load_paper_tables(path)
    for word in words:
        assert word in str(err.value)


def test_bad_header_duplicate_row_and_missing_file(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("language,value\n")
    with pytest.raises(DataError, match="header"):
        load_paper_tables(path)
    path.write_text(",".join(HEADER) + "\n" + "3,bloom-7b,arc,ru,1,2,3,4\n" * 2)
    with pytest.raises(DataError, match="line 3: row 'ru' of Table 3 appears twice"):
        load_paper_tables(path)
    with pytest.raises(DataError, match="not found"):
        load_paper_tables(tmp_path / "none.csv")
    with pytest.raises(DataError, match="llama-7b hellaswag"):
        paper_table({}, "llama-7b", "hellaswag")

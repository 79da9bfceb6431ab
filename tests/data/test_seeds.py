"""Seed sets: the project's own, or Alpaca's published seed tasks (fixture records written by us in its format)
plus the project's 30 Okapi-category seeds; malformed files stop with the file and record named."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fakes import FakeTeacher

from okapi.io import DataError
from okapi.seeds import ALPACA_FILE, OKAPI_CATEGORIES, load_seed_set
from okapi.selfinstruct import GenerateConfig, generate, load_seeds

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "data" / "seeds" / "seed_tasks.jsonl"


def alpaca_records(n: int = 6) -> list[dict]:
    """Records in the shape of Alpaca's seed_tasks.jsonl (ids seed_task_<n>, like ours)."""
    return [
        {
            "id": f"seed_task_{i}",
            "name": f"alpaca_like_{i}",
            "instruction": f"Name {i + 2} rivers that cross more than one country.",
            "instances": [{"input": "", "output": "The Danube and the Rhine."}],
            "is_classification": i % 2 == 0,
        }
        for i in range(n)
    ]


def write_alpaca(folder: Path, records: list, raw_lines: list[str] = ()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r) for r in records] + list(raw_lines)
    (folder / ALPACA_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_project_seeds_mark_30_okapi_category_tasks() -> None:
    seeds = load_seed_set("project", PROJECT, ROOT / "no-such-folder")  # Alpaca's folder is not read
    assert seeds == load_seeds(PROJECT)
    marked = [s for s in seeds if "okapi_category" in s]
    assert len(marked) == 30 and {s["okapi_category"] for s in marked} == set(OKAPI_CATEGORIES)
    assert len(seeds) - len(marked) == 25


def test_alpaca_set_is_alpacas_seeds_plus_the_okapi_category_ones(tmp_path: Path) -> None:
    folder = write_alpaca(tmp_path / "alpaca", alpaca_records(6))
    seeds = load_seed_set("alpaca", PROJECT, folder)
    assert len(seeds) == 6 + 30
    assert [s["id"] for s in seeds[:6]] == [f"alpaca:seed_task_{i}" for i in range(6)]  # no clash with ours
    assert all(s.get("okapi_category") in OKAPI_CATEGORIES for s in seeds[6:])
    assert seeds[0]["is_classification"] is True and seeds[1]["is_classification"] is False
    assert len({s["id"] for s in seeds}) == len(seeds)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ('{"id": "x", "name": "n", "instruction": "Say hi.", "instances": [{"input": ""}]}', "line 7: field instances"),
        ('{"id": "x", "name": "n", "instruction": "Say hi.", "instances": "none"}', "line 7: field 'instances'"),
        ('{"id": "x", "name": "n", "instruction": "", "instances": []}', "line 7: field 'instruction'"),
        (
            '{"id": "x", "name": "n", "instruction": "Hi there.", "instances": [{"input": "", "output": "o"}], '
            '"is_classification": "no"}',
            "line 7: field 'is_classification'",
        ),
        ("{not json", "line 7: not valid JSON"),
        (json.dumps(alpaca_records(1)[0]), "seed id 'seed_task_0' appears 2 times"),
    ],
)
def test_a_malformed_alpaca_file_names_the_file_and_record(tmp_path: Path, bad: str, message: str) -> None:
    folder = write_alpaca(tmp_path / "alpaca", alpaca_records(6), [bad])
    with pytest.raises(DataError) as err:
        load_seed_set("alpaca", PROJECT, folder)
    assert str(folder / ALPACA_FILE) in str(err.value) and message in str(err.value)


def test_alpaca_set_without_the_fetched_file_says_how_to_fetch_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"not fetched .* `python -m okapi.seeds fetch`"):
        load_seed_set("alpaca", PROJECT, tmp_path)


def test_project_file_without_okapi_categories_or_with_an_unknown_one_is_refused(tmp_path: Path) -> None:
    plain = tmp_path / "plain.jsonl"
    plain.write_text("\n".join(json.dumps(r) for r in alpaca_records(3)) + "\n")
    with pytest.raises(DataError, match="no seed task has an okapi_category"):
        load_seed_set("project", plain, tmp_path)
    odd = tmp_path / "odd.jsonl"
    odd.write_text(json.dumps({**alpaca_records(1)[0], "okapi_category": "poetry"}) + "\n")
    with pytest.raises(DataError, match="okapi_category 'poetry'; allowed: relation_extraction"):
        load_seed_set("project", odd, tmp_path)
    with pytest.raises(DataError, match="needs the folder of Alpaca's seed tasks: pass --alpaca-seeds"):
        load_seed_set("alpaca", PROJECT, None)
    with pytest.raises(DataError, match="generate.seed_tasks = 'both' is invalid"):
        load_seed_set("both", PROJECT, tmp_path)


def test_generation_draws_its_examples_from_alpacas_and_the_okapi_category_seeds(tmp_path: Path) -> None:
    seeds = load_seed_set("alpaca", PROJECT, write_alpaca(tmp_path / "alpaca", alpaca_records(20)))
    allowed = {s["instruction"] for s in seeds}
    general = {s["instruction"] for s in load_seeds(PROJECT) if "okapi_category" not in s}
    answer = (
        "1. Instruction: Describe a sunrise over the sea in two sentences.\n1. Input:\n<noinput>\n1. Output:\nOk.\n###"
    )
    teacher = FakeTeacher(lambda messages, attempt: answer)
    cfg = GenerateConfig(num_instructions=50, request_batch_size=4, max_rounds=3, structured=False, num_tasks=8)
    rows, metrics = generate(teacher, seeds, [], cfg)
    shown = [
        m.group(1).strip()
        for messages, _ in teacher.calls
        for m in re.finditer(r"^\d+\. Instruction: (.*)$", messages[0]["content"], re.MULTILINE)
    ]
    assert len(shown) == 12 * 3 and set(shown) <= allowed
    assert not set(shown) & general  # the project's 25 general seeds are not used with Alpaca's
    assert any(s.startswith("Name ") for s in shown) and set(shown) - {s for s in shown if s.startswith("Name ")}
    assert metrics["seeds"] == 50 and sum(r["source"] == "seed" for r in rows) == 50
    assert GenerateConfig().seed_tasks == "project"

"""okapi.import_eval: Okapi's released benchmark JSON -> one Parquet per split, bad records rejected and counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from okapi import schemas
from okapi.evaluate import benchmark_files, load_benchmark_file
from okapi.import_eval import import_benchmark, main
from okapi.io import DataError, read_rows


def mc(i: int, answer: str = "A", n_options: int = 4, **extra) -> dict:
    rec = {"id": f"Q{i}", "answer": answer, "instruction": f"Question {i}?"}
    for j, letter in enumerate("abcde"):
        rec[f"option_{letter}"] = f"choice {letter}{i}" if j < n_options else None
    rec.update(extra)
    return rec


def write(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")


def test_arc_release_folder_becomes_one_parquet_per_split(tmp_path, capsys):
    src = tmp_path / "release"
    write(src / "vi_train.json", [mc(1), mc(2, "C", 3)])
    write(src / "vi_validation.json", [mc(3, "E", 5)])
    test_records = [
        mc(4, "b"),  # lower-case letter: normalised
        mc(5, "D", 3),  # answer outside its 3 options: rejected
        mc(4, "A"),  # duplicate id: rejected
        {k: v for k, v in mc(6).items() if k != "option_e"},  # option_e key absent: null
        mc(7, "A", option_b=42),  # a JSON number is text in the contract
        {"id": "Q8", "answer": "A", "option_a": "x", "option_b": "y"},  # no instruction: rejected
    ]
    write(src / "vi_test.json", test_records)
    write(src / "de_test.json", [mc(9)])  # another language: ignored
    out = tmp_path / "out"
    code = main(["--benchmark", "arc", "--lang", "vi", "--src", str(src), "--out", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["arc_test.parquet", "arc_train.parquet", "arc_validation.parquet"]
    assert "arc vi test: read 6, written 3, rejected 3" in stdout
    assert "total: read 9, written 6, rejected 3" in stdout
    rows = read_rows(out / "arc_test.parquet", schemas.MULTIPLE_CHOICE)
    assert [r["id"] for r in rows] == ["Q4", "Q6", "Q7"]
    assert rows[0]["answer"] == "B" and rows[1]["option_e"] is None and rows[2]["option_b"] == "42"
    assert read_rows(out / "arc_validation.parquet", schemas.MULTIPLE_CHOICE)[0]["option_e"] == "choice e3"
    # The evaluate step finds the imported test split and its train shots, and accepts every written record.
    eval_file, shots = benchmark_files(out, "arc")
    assert (eval_file.name, shots.name) == ("arc_test.parquet", "arc_train.parquet")
    assert len(load_benchmark_file("arc", eval_file)) == 3


def test_mmlu_needs_four_options_and_hellaswag_labels_are_text(tmp_path):
    write(tmp_path / "vi_dev.json", [mc(1), mc(2, "B", 5)])
    summary = import_benchmark("mmlu", "vi", tmp_path / "vi_dev.json", tmp_path / "out")
    assert summary == {"dev": {"read": 2, "written": 1, "rejected": 1}}
    hs = {
        "ind": "12",
        "activity_label": "Cooking",
        "ctx_a": "A man cooks.",
        "ctx_b": "he",
        "endings": ["a", "b", "c", "d"],
        "source_id": "x",
        "split": "val",
        "split_type": "zeroshot",
        "label": 2,
    }
    write(tmp_path / "hs" / "vi_val.json", [hs, {**hs, "ind": 13, "label": 4}])
    summary = import_benchmark("hellaswag", "vi", tmp_path / "hs", tmp_path / "out")
    assert summary == {"val": {"read": 2, "written": 1, "rejected": 1}}
    (row,) = read_rows(tmp_path / "out" / "hellaswag_val.parquet", schemas.HELLASWAG)
    assert row["ind"] == 12 and row["label"] == "2" and row["ctx"] == "A man cooks. he"
    assert benchmark_files(tmp_path / "out", "hellaswag") == (tmp_path / "out" / "hellaswag_val.parquet", None)


def test_all_rejected_writes_nothing(tmp_path, capsys):
    write(tmp_path / "vi_test.json", [mc(1, "Z")])
    assert (
        main(
            [
                "--benchmark",
                "arc",
                "--lang",
                "vi",
                "--src",
                str(tmp_path / "vi_test.json"),
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    assert "read 1, written 0, rejected 1 (nothing written)" in capsys.readouterr().out
    assert not (tmp_path / "out" / "arc_test.parquet").exists()


@pytest.mark.parametrize(
    ("name", "lang", "words"),
    [
        ("vi_dev.json", "vi", ["split one of train, validation, test"]),
        ("de_test.json", "vi", ["for language 'de' but --lang is 'vi'"]),
        ("tests.json", "vi", ["<lang>_<split>.json"]),
    ],
)
def test_bad_file_names_are_one_clear_error(tmp_path, name, lang, words):
    write(tmp_path / name, [mc(1)])
    with pytest.raises(DataError) as err:
        import_benchmark("arc", lang, tmp_path / name, tmp_path / "out")
    for word in words:
        assert word in str(err.value)


def test_cli_errors_exit_2(tmp_path, capsys):
    assert main(["--benchmark", "arc", "--lang", "vi", "--src", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "expected one of vi_train.json, vi_validation.json, vi_test.json" in capsys.readouterr().err
    (tmp_path / "vi_test.json").write_text("[{broken", encoding="utf-8")
    assert main(["--benchmark", "arc", "--lang", "vi", "--src", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "vi_test.json: not valid JSON" in capsys.readouterr().err
    assert main(["--benchmark", "arc", "--lang", "xx", "--src", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "unknown language code 'xx'" in capsys.readouterr().err

"""Bad input stops a stage with one clear sentence and exit code 2, before any model loads or request is sent."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from stagekit import ROOT, assert_one_clear_error, run_stage, write_params


def test_language_missing_from_params_lists_the_listed_codes(tmp_path):
    proc = run_stage(
        "sft",
        [
            "--lang",
            "xx",
            "--model",
            "m",
            "--data",
            "d",
            "--out",
            "o",
            "--metrics",
            "m.json",
            "--params",
            str(ROOT / "params.yaml"),
        ],
        tmp_path,
    )
    # Any code may be a language now; one the params do not list is named with the ones they do.
    assert_one_clear_error(proc, "language 'xx' is not listed under languages", "vi, es")


def test_language_not_in_params(tmp_path):
    proc = run_stage(
        "sample",
        [
            "--lang",
            "de",
            "--model",
            "m",
            "--prompts",
            "p",
            "--out",
            "o.parquet",
            "--metrics",
            "m.json",
            "--params",
            str(ROOT / "params.yaml"),
        ],
        tmp_path,
    )
    assert_one_clear_error(proc, "'de' is not listed under languages")


def test_malformed_seed_file_names_file_and_line(tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(
        '{"id": "seed_task_0", "name": "a", "instruction": "Say hi.", "instances": [{"input": "", "output": "Hi."}], '
        '"is_classification": false}\n{not json\n'
    )
    out = tmp_path / "out.parquet"
    proc = run_stage(
        "generate",
        [
            "--seeds",
            str(seeds),
            "--out",
            str(out),
            "--cache",
            str(tmp_path / "c.jsonl"),
            "--metrics",
            str(tmp_path / "m.json"),
            "--params",
            str(ROOT / "params.yaml"),
        ],
        tmp_path,
    )
    assert_one_clear_error(proc, "seeds.jsonl", "line 2")
    assert not out.exists() and not (tmp_path / "c.jsonl").exists()


def test_remote_teacher_without_key_stops_before_any_request(tmp_path):
    params = write_params(tmp_path, **{"teacher.backend": "openai", "teacher.base_url": "https://api.openai.com/v1"})
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stages.generate",
            "--seeds",
            str(ROOT / "data/seeds/seed_tasks.jsonl"),
            "--out",
            str(tmp_path / "o.parquet"),
            "--cache",
            str(tmp_path / "c.jsonl"),
            "--metrics",
            str(tmp_path / "m.json"),
            "--params",
            str(params),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_clear_error(proc, "OPENAI_API_KEY")
    assert not (tmp_path / "c.jsonl").exists()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"sft.learning_rate": -1.0}, ["sft.learning_rate"]),
        ({"sft.colour": "blue"}, ["unknown parameter sft.colour"]),
        ({"languages.vi": {"sft": {"num_train_epochs": "three"}}}, ["num_train_epochs"]),
        ({"languages.zz": {}}, ["unknown language code 'zz'", "add languages.zz.name", "languages.zz.script"]),
        ({"languages.zz": {"name": "Zedish"}}, ["unknown language code 'zz'", "languages.zz.script"]),
        ({"languages.ja": {"script": "Kanji"}}, ["languages.ja.script", "'Kanji' is not a Unicode script"]),
        ({"languages.ja": {"colour": "red"}}, ["unknown key languages.ja.colour", "name, script, group, langid"]),
    ],
)
def test_bad_params_name_the_key(tmp_path, change, words):
    params = write_params(tmp_path, **change)
    proc = run_stage(
        "sft",
        [
            "--lang",
            "vi",
            "--model",
            str(tmp_path / "nomodel"),
            "--data",
            "d.parquet",
            "--out",
            "o",
            "--metrics",
            "m.json",
            "--params",
            str(params),
        ],
        tmp_path,
    )
    assert_one_clear_error(proc, *words)


def test_bad_teacher_param_stops_a_teacher_stage_before_any_request(tmp_path):
    params = write_params(tmp_path, **{"teacher.max_concurrency": 0})
    proc = run_stage(
        "generate",
        [
            "--seeds",
            str(ROOT / "data/seeds/seed_tasks.jsonl"),
            "--out",
            "o.parquet",
            "--cache",
            "c.jsonl",
            "--metrics",
            "m.json",
            "--params",
            str(params),
        ],
        tmp_path,
    )
    assert_one_clear_error(proc, "teacher.max_concurrency = 0", "an integer >= 1")
    assert not (tmp_path / "c.jsonl").exists()

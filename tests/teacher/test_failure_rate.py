"""teacher.max_failure_rate is one rule (okapi.teacher.enforce_failure_rate) that every teacher stage applies:
a teacher whose answers never fit stops generate and rank with a non-zero exit and one sentence, writes no
output, and keeps the teacher cache so nothing that was paid for is lost."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from openai_server import FakeOpenAIServer
from stagekit import ROOT, fake_teacher_params, run_stage

from okapi.cache import read_cache
from okapi.io import write_parquet
from okapi.schemas import SAMPLES
from okapi.teacher import TeacherConfig, TeacherFatalError, enforce_failure_rate


def test_rule_counts_units_and_names_the_key():
    cfg = TeacherConfig(max_failure_rate=0.5)
    assert enforce_failure_rate("x", 0, 0, cfg) == 0.0  # nothing asked, nothing failed
    assert enforce_failure_rate("x", 1, 2, cfg) == 0.5  # at the bound passes
    with pytest.raises(TeacherFatalError, match=r"x: 2 of 3 \(67%\).*teacher.max_failure_rate = 0.5.*bad \(2\)"):
        enforce_failure_rate("x", 2, 3, cfg, {"bad": 2, "never": 0})


def _garbage(messages):
    return "I would rather not answer in JSON."


@pytest.fixture(scope="module")
def server():
    with FakeOpenAIServer(_garbage) as srv:
        yield srv


def _params(tmp_path: Path, url: str) -> Path:
    return fake_teacher_params(
        tmp_path,
        url,
        **{"teacher.max_attempts": 1},
        **{"generate.num_instructions": 12, "generate.max_rounds": 2, "generate.request_batch_size": 3},
    )


def _run(stage: str, args: list[str]) -> subprocess.CompletedProcess:
    return run_stage(stage, args, env={"OPENAI_API_KEY": "sk-test"})


def test_generate_stops_when_nothing_usable_is_kept(tmp_path, server):
    out, cache = tmp_path / "generated.parquet", tmp_path / "generate.sqlite"
    proc = _run(
        "generate",
        [
            *("--seeds", str(ROOT / "data/seeds/seed_tasks.jsonl"), "--out", str(out), "--cache", str(cache)),
            *("--metrics", str(tmp_path / "generate.json"), "--params", str(_params(tmp_path, server.base_url))),
        ],
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("error: generate: requested instructions not kept: 12 of 12 (100%)"), error
    assert "teacher.max_failure_rate = 0.8" in error and "answer_rejected (6)" in error
    assert not out.exists() and not (tmp_path / "generate.json").exists()
    assert len(read_cache(cache)) == 6  # every answer bought is in the cache for the rerun


def test_rank_stops_when_the_rankings_do_not_parse(tmp_path, server):
    samples = [
        {"id": f"s{i}", "lang": "es", "instruction": f"Pregunta {i}", "input": "", "responses": ["a", "b", "c", "d"]}
        for i in range(3)
    ]
    write_parquet(samples, tmp_path / "samples.parquet", SAMPLES)
    cache = tmp_path / "rank-es.sqlite"
    proc = _run(
        "rank",
        [
            *("--lang", "es", "--samples", str(tmp_path / "samples.parquet"), "--out", str(tmp_path / "rank")),
            *("--cache", str(cache), "--metrics", str(tmp_path / "rank.json")),
            *("--params", str(_params(tmp_path, server.base_url))),
        ],
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "error: rank@es prompts: 3 of 3 (100%) were unusable" in proc.stderr
    assert not (tmp_path / "rank").exists() and not (tmp_path / "rank.json").exists()
    assert read_cache(cache)  # the unusable answers were bought: they stay cached for a rerun

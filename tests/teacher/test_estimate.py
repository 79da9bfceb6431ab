"""okapi.estimate: the very requests a stage sends (cache hits left out), modelled rows, and the CLI's JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from openai_server import FakeOpenAIServer

from okapi.estimate import TokenCounter, estimate, for_language
from okapi.io import write_parquet
from okapi.params import load_params
from okapi.ranking import rank_samples
from okapi.schemas import INSTRUCTIONS, SAMPLES
from okapi.teacher import Teacher
from okapi.translate import translate_eval, translate_instructions

ROOT = Path(__file__).resolve().parents[2]


def words() -> TokenCounter:
    return TokenCounter("words", lambda t: len(t.split()), True)


def responder(messages):
    first, last = messages[0]["content"], messages[-1]["content"]
    if "Translate the values" in first:
        src = json.loads(first[first.index("{") : first.rindex("}") + 1])
        return json.dumps({k: f"{v} (traducido)" for k, v in src.items()})
    if len(messages) > 2 and "rank" in last.lower():
        return json.dumps({"ranks": [2, 1, 4, 3]})
    return "Instruction: translated. Response 1: a. Response 2: b. Response 3: c. Response 4: d."


def _row(i: int, source: str) -> dict:
    return {
        "id": f"{source}-{i}",
        "source": source,
        "instruction": f"Write a short poem about item number {i} and the sea.",
        "input": "" if i % 2 else f"Context {i}: waves, salt and wind.",
        "output": f"A poem about item {i}: the sea is wide and deep.",
        "max_similarity": None,
        "avg_similarity": None,
        "most_similar_instructions": [],
    }


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    (tmp_path / "data/seeds").mkdir(parents=True)
    shutil.copy(ROOT / "data/seeds/seed_tasks.jsonl", tmp_path / "data/seeds")
    shutil.copytree(ROOT / "data/eval_sources", tmp_path / "data/eval_sources")
    return tmp_path


def _params(root: Path, url: str, **teacher) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["languages"] = {"es": {}}
    params["teacher"].update(
        backend="openai",
        base_url=url,
        model="m",
        dialect="none",
        max_concurrency=2,
        prices={"m": {"prompt": 1.0, "completion": 2.0}},
        **teacher,
    )
    params["translate"].update(limit=None, eval_limit=3, langid=False, structured=False)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _first_attempts(srv: FakeOpenAIServer) -> list[list[dict]]:
    # Re-asks carry the rejected answer and the reason (3+ messages); an estimate counts first attempts.
    return [r["messages"] for r in srv.requests if len(r["messages"]) == 1]


def test_translate_estimate_counts_the_requests_the_stage_sends_then_excludes_cached(workspace):
    rows = [_row(i, "seed") for i in range(4)] + [_row(i, "generated") for i in range(8)]
    write_parquet(rows, workspace / "data/generated/instructions.parquet", INSTRUCTIONS)
    with FakeOpenAIServer(responder) as srv:
        params = load_params(_params(workspace, srv.base_url))
        before = estimate(params, workspace, words())["stages"]["translate@es"]
        assert before["source"] == "real"

        cfg = for_language(params, "es").section("translate")
        teacher = Teacher(
            for_language(params, "es").section("teacher"),
            srv.base_url,
            workspace / "data/teacher_cache/translate-es.sqlite",
        )
        translate_instructions(teacher, rows, "es", cfg)
        from okapi.eval_sources import load_sources

        for bench, records in load_sources(workspace / "data/eval_sources", {}, cfg.eval_limit).items():
            translate_eval(teacher, bench, records, "es", cfg)
        teacher.close()
        sent = _first_attempts(srv)
        counter = words()
        # The 4 seed rows repeat 4 of the generated rows word for word: the stage sends each such request once,
        # and the estimate counts it once.
        assert before["requests"] == len(sent) == 8 + 3 * 3
        assert before["cached_requests"] == 4
        assert before["prompt_tokens"] == sum(counter.messages(m) for m in sent)
        assert before["cost_usd"] == pytest.approx((before["prompt_tokens"] + 2 * before["completion_tokens"]) / 1e6)

        after = estimate(params, workspace, words())["stages"]["translate@es"]
        assert after["requests"] == 0 and after["prompt_tokens"] == 0 and after["cached_requests"] == len(sent) + 4


def test_rank_estimate_counts_both_turns_of_every_sample(workspace):
    samples = [
        {"id": f"s{i}", "lang": "es", "instruction": f"Pregunta {i}", "input": "", "responses": ["a", "b", "c", "d"]}
        for i in range(5)
    ]
    write_parquet(samples, workspace / "data/samples/es.parquet", SAMPLES)
    with FakeOpenAIServer(responder) as srv:
        params = load_params(_params(workspace, srv.base_url))
        before = estimate(params, workspace, words())["stages"]["rank@es"]
        teacher = Teacher(
            for_language(params, "es").section("teacher"), srv.base_url, workspace / "data/teacher_cache/rank-es.sqlite"
        )
        rank_samples(teacher, samples, "es", for_language(params, "es").section("rank"))
        teacher.close()
        turn1 = [m for m in srv.requests if len(m["messages"]) == 1]
        assert before["source"] == "real" and before["requests"] == len(srv.requests) == 10
        # Turn 1 is exact; turn 2 embeds turn 1's answer, known only once it is cached.
        counter = words()
        assert before["prompt_tokens"] >= sum(counter.messages(r["messages"]) for r in turn1)
        after = estimate(params, workspace, words())["stages"]["rank@es"]
        assert after["requests"] == 0 and after["cached_requests"] == 10


def test_missing_inputs_are_modelled_and_said_so(workspace):
    params = load_params(_params(workspace, "http://127.0.0.1:9/v1"))
    out = estimate(params, workspace, words())["stages"]
    gen_rows = params.section_global("generate").num_instructions
    seeds = sum(1 for line in (workspace / "data/seeds/seed_tasks.jsonl").read_text().splitlines() if line.strip())
    assert out["translate@es"]["source"] == "modelled"
    assert out["translate@es"]["requests"] == seeds + gen_rows + 3 * 3  # limit null: every row, + 3 per benchmark
    assert "instructions: " in out["translate@es"]["note"] and "seed-task lengths" in out["translate@es"]["note"]
    assert out["rank@es"]["source"] == "modelled" and out["rank@es"]["requests"] % 2 == 0
    assert out["generate"]["source"] == "modelled" and out["generate"]["requests"] > 0


def test_estimate_follows_the_stage_for_english_and_for_the_protocols_shot_splits(workspace):
    path = _params(workspace, "http://127.0.0.1:9/v1")
    raw = yaml.safe_load(path.read_text())
    raw["languages"] = {"es": {}, "en": {}}
    raw["evaluate"]["protocol"] = "okapi_paper"  # ARC shots from train, MMLU shots from dev: translated too
    path.write_text(yaml.safe_dump(raw))
    for key in ("arc_train", "mmlu_dev"):  # local English shot splits, as data/eval_sources/<key>.jsonl
        shutil.copy(
            workspace / f"data/eval_sources/{key.split('_')[0]}.jsonl", workspace / f"data/eval_sources/{key}.jsonl"
        )
    params = load_params(path)
    gen_rows = params.section_global("generate").num_instructions
    seeds = sum(1 for line in (workspace / "data/seeds/seed_tasks.jsonl").read_text().splitlines() if line.strip())
    out = estimate(params, workspace, words())["stages"]
    # translate@es: 3 records of each benchmark and of each shot split (eval_limit 3), as the stage sends them.
    assert out["translate@es"]["requests"] == seeds + gen_rows + 3 * 3 + 2 * 3
    assert "arc_train: 3 from data/eval_sources" in out["translate@es"]["note"]
    # English: translate sends nothing, and rank sends the ranking alone (no translation turn).
    assert out["translate@en"]["requests"] == 0
    assert out["rank@en"]["requests"] * 2 == out["rank@es"]["requests"]


def test_cli_writes_the_issue_shape_with_an_exact_offline_openai_tokenizer(workspace):
    params = _params(workspace, "http://127.0.0.1:9/v1")
    raw = yaml.safe_load(params.read_text())
    raw["teacher"].update(model="gpt-3.5-turbo", prices={"gpt-3.5-turbo": {"prompt": 0.5, "completion": 1.5}})
    raw["teacher"].update(mode="batch")
    params.write_text(yaml.safe_dump(raw))
    out = workspace / "estimate.json"
    env = {
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "PATH": "/usr/bin:/bin",
        "TIKTOKEN_CACHE_DIR": str(workspace),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "okapi.estimate", "--params", str(params), "--json", str(out)],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["tokenizer"] == "cl100k_base" and result["tokenizer_exact"] is True
    assert set(result["stages"]) == {"generate", "translate@es", "rank@es"}
    row = result["stages"]["translate@es"]
    assert set(row) >= {"requests", "prompt_tokens", "completion_tokens", "cost_usd"}
    # Batch mode: half of 0.5 / 1.5 USD per 1M tokens.
    assert row["cost_usd"] == pytest.approx(
        (row["prompt_tokens"] * 0.25 + row["completion_tokens"] * 0.75) / 1e6, abs=1e-4
    )
    assert result["total"]["requests"] == sum(r["requests"] for r in result["stages"].values())
    assert "translate@es" in proc.stdout and "total" in proc.stdout

    bad = subprocess.run(
        [sys.executable, "-m", "okapi.estimate", "--params", str(params), "--keep-rate", "2"],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "--keep-rate = 2.0 is invalid" in bad.stderr

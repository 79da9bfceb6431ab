"""Stored ROUGE-L rounds (okapi.filter_replay): a rerun from the teacher cache replays the filter's decisions with
the very same rows and metrics, and never reuses a decision once the threshold, the pool or an answer changed."""

from __future__ import annotations

import hashlib
import json
import random
import re
import sqlite3
from pathlib import Path

import pytest
from fakes import FakeTeacher
from tiny import small_config

from okapi.cache import ResponseCache
from okapi.rouge_filter import RougeFilter
from okapi.selfinstruct import GenerateConfig, generate, load_seeds

SEEDS_PATH = Path(__file__).resolve().parents[2] / "data" / "seeds" / "seed_tasks.jsonl"
WORDS = "river stone cloud market letter garden violin engine ladder candle harbor orbit pepper mirror tunnel".split()


def responder(salt: str = ""):
    """Tasks that depend only on the prompt (like cached answers): short instructions over a small vocabulary, so
    the filter keeps some and rejects others as too similar, plus a blacklisted one the filter never sees."""

    def respond(messages, attempt):
        prompt = messages[0]["content"]
        rng = random.Random(hashlib.sha256((salt + prompt).encode()).hexdigest())
        assert "tasks 4 to 10" in prompt
        tasks = []
        for i in range(6):
            words = rng.sample(WORDS, 5)
            tasks.append({"instruction": f"Explain how the {' '.join(words)} relate.", "input": "", "output": f"o{i}"})
        tasks.append({"instruction": "Draw a picture of a harbor.", "input": "", "output": "no"})
        return json.dumps({"tasks": tasks})

    return respond


def cfg(**kw) -> GenerateConfig:
    base = dict(
        num_instructions=40,
        request_batch_size=3,
        num_tasks=10,
        num_prompt_instructions=3,
        max_rounds=12,
        structured=True,
        avg_similarity=True,
    )
    return small_config(GenerateConfig, **{**base, **kw})


@pytest.fixture
def queries(monkeypatch):
    """Counts the filter's query path (every candidate the filter computes instead of replaying)."""
    calls = []
    original = RougeFilter.query

    def counted(self, text, **kw):
        calls.append(text)
        return original(self, text, **kw)

    monkeypatch.setattr(RougeFilter, "query", counted)
    return calls


PER_ROUND = 3 * 6  # candidates the filter sees per round: 3 requests x 6 tasks (the 7th is blacklisted)


def filtered(metrics) -> int:
    """Candidates that reached the ROUGE-L filter in a run."""
    return metrics["kept"] + metrics["rejected_by_reason"]["rouge_similar"]


def run(store_path: Path | None, teacher=None, pool=(), **kw):
    seeds = load_seeds(SEEDS_PATH)
    teacher = teacher or FakeTeacher(responder())
    store = ResponseCache(store_path) if store_path is not None else None
    try:
        return generate(teacher, seeds, list(pool), cfg(**kw), decisions=store)
    finally:
        if store is not None:
            store.close()


def test_a_rerun_replays_every_round_with_the_same_rows_and_metrics(tmp_path, queries):
    plain = run(None)
    assert queries, "the filter was not used"
    gen = [r for r in plain[0] if r["source"] == "generated"]
    assert len(gen) == 40 and plain[1]["rejected_by_reason"]["rouge_similar"] > 0  # both outcomes occur
    assert plain[1]["rounds"] > 2

    queries.clear()
    first = run(tmp_path / "c.sqlite")
    assert first == plain and len(queries) > 0
    queries.clear()
    again = run(tmp_path / "c.sqlite")
    assert again == plain
    assert queries == []  # every decision came from the stored rounds


def test_a_changed_threshold_pool_or_answer_never_reuses_a_stored_round(tmp_path, queries):
    path = tmp_path / "c.sqlite"
    run(path)
    for change in (
        dict(rouge_threshold=0.6),
        dict(
            pool=[
                {"instruction": "Explain how the river stone cloud market letter relate.", "input": "", "output": "x"}
            ]
        ),
        dict(teacher=FakeTeacher(responder(salt="other answers"))),
    ):
        expected = run(None, **change)
        queries.clear()
        got = run(path, **change)
        assert got == expected
        assert len(queries) == filtered(expected[1]), f"{change}: some decision was replayed"


def test_an_answer_changed_in_a_later_round_replays_only_the_rounds_before_it(tmp_path, queries):
    path = tmp_path / "c.sqlite"
    run(path)
    base = responder()
    changed_prompts = set()

    class LaterRoundsDiffer(FakeTeacher):
        def run(self, requests, parse, **kw):
            if requests[0].key.startswith("gen-r2-"):
                changed_prompts.add(requests[0].messages[0]["content"])
            return super().run(requests, parse, **kw)

    other = responder(salt="r2")
    teacher = LaterRoundsDiffer(lambda m, a: other(m, a) if m[0]["content"] in changed_prompts else base(m, a))
    expected = run(None, teacher=LaterRoundsDiffer(teacher.responder))
    assert expected != run(None)
    queries.clear()
    got = run(path, teacher=teacher)
    assert got == expected
    assert len(queries) == filtered(expected[1]) - 2 * PER_ROUND  # rounds 0 and 1 replayed, the rest computed


def test_a_run_killed_at_round_3_then_rerun_gives_the_uninterrupted_output(tmp_path, queries):
    class Killed(BaseException):
        pass

    class DiesAtRound3(FakeTeacher):
        def run(self, requests, parse, **kw):
            if requests[0].key.startswith("gen-r3-"):
                raise Killed  # like a SIGKILL: nothing after this point runs, no cleanup code of ours
            return super().run(requests, parse, **kw)

    expected = run(None)
    path = tmp_path / "c.sqlite"
    with pytest.raises(Killed):
        run(path, teacher=DiesAtRound3(responder()))
    # The finished rounds are committed in the cache file (read through a second connection, as after a kill).
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*) FROM derived").fetchone()[0] == 3
    conn.close()
    queries.clear()
    got = run(path)
    assert got == expected
    assert len(queries) == filtered(expected[1]) - 3 * PER_ROUND  # rounds 0-2 replayed


def test_a_larger_target_extends_the_round_that_reached_the_smaller_one(tmp_path, queries):
    path = tmp_path / "c.sqlite"
    small = run(path, num_instructions=17)
    assert small == run(None, num_instructions=17)
    expected = run(None, num_instructions=40)
    queries.clear()
    assert run(path, num_instructions=40) == expected
    assert 0 < len(queries)
    queries.clear()
    assert run(path, num_instructions=17) == small and queries == []  # a prefix of the stored rounds


def test_without_average_similarity_the_records_hold_none_and_replay(tmp_path, queries):
    path = tmp_path / "c.sqlite"
    first = run(path, avg_similarity=False)
    assert all(r["avg_similarity"] is None for r in first[0])
    queries.clear()
    assert run(path, avg_similarity=False) == first and queries == []
    queries.clear()
    with_avg = run(path, avg_similarity=True)  # a different setting: computed again
    assert queries and any(r["avg_similarity"] is not None for r in with_avg[0])


def test_the_stage_replays_from_its_teacher_cache_with_byte_identical_outputs(tmp_path):
    from openai_server import FakeOpenAIServer
    from stagekit import ROOT, fake_teacher_params, run_stage

    respond = responder()
    changes = {f"generate.{k}": v for k, v in dict(num_instructions=30, num_tasks=10, request_batch_size=3).items()}

    def stage(name: str, cache: Path) -> tuple[bytes, dict, str]:
        out, metrics = tmp_path / name / "instructions.parquet", tmp_path / name / "generate.json"
        args = ["--seeds", str(ROOT / "data/seeds/seed_tasks.jsonl"), "--out", str(out), "--cache", str(cache)]
        proc = run_stage(
            "generate", [*args, "--metrics", str(metrics), "--params", str(params)], env={"OPENAI_API_KEY": "sk-test"}
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return out.read_bytes(), json.loads(metrics.read_text()), proc.stderr

    with FakeOpenAIServer(lambda messages: respond(messages, 0)) as server:
        params = fake_teacher_params(tmp_path, server.base_url, **changes)
        cache = tmp_path / "cache" / "generate.sqlite"
        first, first_metrics, _ = stage("first", cache)
        without = tmp_path / "cache" / "answers-only.sqlite"
        without.write_bytes(cache.read_bytes())
        conn = sqlite3.connect(without)
        conn.execute("DROP TABLE derived")
        conn.close()
        sent = len(server.requests)
        replayed, replayed_metrics, log = stage("replayed", cache)
        computed, computed_metrics, _ = stage("computed", without)
        assert len(server.requests) == sent  # both reruns answered from the cache
    assert replayed == computed == first
    assert replayed_metrics == computed_metrics
    assert {k: v for k, v in replayed_metrics.items() if k != "teacher"} == {
        k: v for k, v in first_metrics.items() if k != "teacher"
    }
    assert re.search(r"ROUGE-L filter: [1-9]\d* candidates replayed from stored rounds, 0 computed", log), log


def test_a_stage_sigkilled_in_round_3_resumes_to_the_uninterrupted_output(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time

    from openai_server import FakeOpenAIServer
    from stagekit import ROOT, fake_teacher_params

    respond = responder()
    gate, arrived = threading.Event(), []
    lock = threading.Lock()

    def answer(messages):
        with lock:
            arrived.append(1)
            n = len(arrived)
        if n > 6 and not gate.is_set():  # rounds 0 and 1 are 2 x 3 requests; round 2's hang until the kill
            gate.wait(60)
        return respond(messages, 0)

    changes = {f"generate.{k}": v for k, v in dict(num_instructions=30, num_tasks=10, request_batch_size=3).items()}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OPENAI_API_KEY": "sk-test"}

    def command(name: str, cache: Path) -> list[str]:
        out = tmp_path / name
        return [
            *(sys.executable, "-m", "stages.generate", "--seeds", str(ROOT / "data/seeds/seed_tasks.jsonl")),
            *("--out", str(out / "instructions.parquet"), "--cache", str(cache)),
            *("--metrics", str(out / "generate.json"), "--params", str(params)),
        ]

    with FakeOpenAIServer(answer) as server:
        params = fake_teacher_params(tmp_path, server.base_url, **changes)
        cache = tmp_path / "cache" / "generate.sqlite"
        proc = subprocess.Popen(
            command("killed", cache), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 120
        while len(arrived) <= 6 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None and len(arrived) > 6, "the stage did not reach round 2"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        gate.set()
        conn = sqlite3.connect(cache)  # what the killed run left committed (its write-ahead log included)
        assert conn.execute("SELECT COUNT(*) FROM derived").fetchone()[0] == 2
        conn.close()
        assert not (tmp_path / "killed" / "instructions.parquet").exists()
        for name, path in (("resumed", cache), ("uninterrupted", tmp_path / "fresh" / "generate.sqlite")):
            done = subprocess.run(command(name, path), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "resumed" / "instructions.parquet").read_bytes() == (
        tmp_path / "uninterrupted" / "instructions.parquet"
    ).read_bytes()
    resumed = json.loads((tmp_path / "resumed" / "generate.json").read_text())
    uninterrupted = json.loads((tmp_path / "uninterrupted" / "generate.json").read_text())
    assert resumed.pop("teacher")["cache_hits"] == 6 and uninterrupted.pop("teacher")["cache_hits"] == 0
    assert resumed == uninterrupted

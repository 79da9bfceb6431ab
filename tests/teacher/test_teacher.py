"""The teacher client against a real HTTP server on loopback, with injected faults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from openai_server import FakeOpenAIServer

from okapi.cache import read_cache
from okapi.config import ConfigError, from_dict
from okapi.teacher import ChatRequest, ParseError, Teacher, TeacherConfig, TeacherFatalError, open_teacher

CANARY = "sk-canary-4c1d9f-never-log-me"


def echo(messages):
    return "answer: " + messages[-1]["content"]


def cfg(url: str, **kw) -> TeacherConfig:
    base = {"backend": "openai", "base_url": url, "model": "m", "backoff_base_s": 0.01, "timeout_s": 2.0}
    base.update(kw)
    return from_dict(TeacherConfig, base, "teacher")


def reqs(n: int) -> list[ChatRequest]:
    return [ChatRequest(key=f"r{i}", messages=[{"role": "user", "content": f"q{i}"}]) for i in range(n)]


def ident(text: str) -> str:
    return text


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)


def test_answers_are_cached_and_a_rerun_sends_nothing(tmp_path, key):
    with FakeOpenAIServer(echo) as srv:
        c = cfg(srv.base_url, max_concurrency=4)
        t = Teacher(c, srv.base_url, tmp_path / "cache.jsonl")
        out = t.run(reqs(10), ident)
        t.close()
        assert [o.value for o in out] == [f"answer: q{i}" for i in range(10)]
        assert len(srv.requests) == 10
        t2 = Teacher(c, srv.base_url, tmp_path / "cache.jsonl")
        out2 = t2.run(reqs(10), ident)
        t2.close()
        assert [o.value for o in out2] == [o.value for o in out]
        assert len(srv.requests) == 10  # zero new requests
        assert t2.account()["requests_sent"] == 0
        assert t2.account()["cache_hits"] == 10
        assert t.account()["prompt_tokens"] == 100


def _two_tracked_servers(tmp_path, n: int, per_url: int | None, delay: float) -> tuple[list, Counter[int], list]:
    """Run n requests against two fake servers; return the outcomes, each server's peak of requests in flight,
    and the two servers' request logs."""
    import threading

    in_flight: Counter[int] = Counter()
    peak: Counter[int] = Counter()
    lock = threading.Lock()

    def tracking(index):
        def respond(messages):
            with lock:
                in_flight[index] += 1
                peak[index] = max(peak[index], in_flight[index])
            time.sleep(delay)
            with lock:
                in_flight[index] -= 1
            return "answer: " + messages[-1]["content"]

        return respond

    with FakeOpenAIServer(tracking(0)) as a, FakeOpenAIServer(tracking(1)) as b:
        t = Teacher(
            cfg(a.base_url, max_concurrency=8), [a.base_url, b.base_url], tmp_path / "c.sqlite", per_url=per_url
        )
        out = t.run(reqs(n), ident)
        t.close()
    assert [o.value for o in out] == [f"answer: q{i}" for i in range(n)]
    return out, peak, [a.requests, b.requests]


def test_several_servers_share_the_requests_one_in_flight_each(tmp_path, key):
    """The embedded teacher's shape: N equal servers that answer one request at a time. Every request is answered
    once, both servers work, and neither ever has two requests at once (max_concurrency is for one URL only)."""
    _, peak, (a, b) = _two_tracked_servers(tmp_path, 20, None, 0.02)
    assert len(a) + len(b) == 20
    assert len(a) >= 5 and len(b) >= 5
    assert peak == {0: 1, 1: 1}


def test_servers_with_parallel_slots_get_that_many_requests_each(tmp_path, key):
    """teacher.embedded.slots: a server that decodes N requests together gets up to N in flight, never more."""
    _, peak, (a, b) = _two_tracked_servers(tmp_path, 24, 3, 0.05)
    assert len(a) + len(b) == 24
    assert peak == {0: 3, 1: 3}


def test_embedded_teacher_without_xllamacpp_is_one_clear_error(monkeypatch, tmp_path):
    import importlib.util

    from okapi import llama_server

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "xllamacpp" else real(name, *a))
    with pytest.raises(llama_server.EmbeddedServerError, match=r"xllamacpp is not installed; install it with: make"):
        with llama_server.llama_servers(tmp_path / "m.gguf", "m"):
            pass


def test_bad_embedded_slots_name_the_key():
    with pytest.raises(ConfigError, match=r"teacher\.embedded\.slots.*an integer >= 1"):
        from_dict(TeacherConfig, {"embedded": {"slots": 0}}, "teacher")


def test_requests_from_a_generator_are_built_only_as_slots_free(tmp_path, key):
    """A caller with 180K requests may pass a generator: the teacher takes the next request only when a slot is
    about to send it, so no more than max_concurrency requests are ever built and unanswered; outcomes come back
    in the generator's order, cache hits included."""
    import threading

    built = answered = 0
    ahead: list[int] = []
    lock = threading.Lock()

    def respond(messages):
        nonlocal answered
        time.sleep(0.01)
        with lock:
            answered += 1
        return "answer: " + messages[-1]["content"]

    def lazy(n):
        nonlocal built
        for req in reqs(n):
            with lock:
                built += 1
                ahead.append(built - answered)
            yield req

    with FakeOpenAIServer(respond) as srv:
        t = Teacher(cfg(srv.base_url, max_concurrency=3), srv.base_url, tmp_path / "c.sqlite")
        t.run(reqs(5), ident)  # the first five are then cache hits, taken without a slot
        out = t.run(lazy(30), ident, total=30)
        t.close()
    assert [o.key for o in out] == [f"r{i}" for i in range(30)]
    assert [o.value for o in out] == [f"answer: q{i}" for i in range(30)]
    assert len(srv.requests) == 30
    assert max(ahead[5:]) <= 3 + 1  # the three in flight and the one being taken
    assert t.account()["cache_hits"] == 5


def test_identical_requests_in_one_run_are_bought_once(tmp_path, key):
    """Two items that make the same request (the same cache key) get one answer, sent once, however the requests
    interleave; the copies count as cache hits."""
    with FakeOpenAIServer(echo) as srv:
        t = Teacher(cfg(srv.base_url, max_concurrency=8), srv.base_url, tmp_path / "c.sqlite")
        same = [ChatRequest(key=f"d{i}", messages=[{"role": "user", "content": f"q{i % 3}"}]) for i in range(12)]
        out = t.run(same, ident)
        t.close()
    assert [o.key for o in out] == [f"d{i}" for i in range(12)]
    assert [o.value for o in out] == [f"answer: q{i % 3}" for i in range(12)]
    assert sorted(r["messages"][0]["content"] for r in srv.requests) == ["q0", "q1", "q2"]
    assert t.account()["requests_sent"] == 3 and t.account()["cache_hits"] == 9


TRANSPORTS = pytest.mark.parametrize("http", ["aiohttp", "httpx"])


@TRANSPORTS
def test_both_transports_send_the_same_request(tmp_path, key, monkeypatch, http):
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-test")
    with FakeOpenAIServer(echo) as srv:
        t = Teacher(cfg(srv.base_url, http_client=http), srv.base_url, tmp_path / "cache.sqlite")
        req = ChatRequest(key="r", messages=[{"role": "user", "content": "q"}], schema={"type": "object"})
        out = t.run([req], ident)
        t.close()
    assert out[0].value == "answer: q"
    assert srv.requests == [
        {
            "model": "m",
            "messages": [{"role": "user", "content": "q"}],
            "max_tokens": 512,
            "temperature": 0.0,
            "response_format": {"type": "json_object", "schema": {"type": "object"}},
            "seed": srv.requests[0]["seed"],
        }
    ]
    path, headers = srv.chat_calls[0]
    assert path == "/v1/chat/completions"
    assert headers["authorization"] == f"Bearer {CANARY}"
    assert headers["content-type"] == "application/json"
    assert headers["openai-project"] == "proj-test"


@TRANSPORTS
def test_transient_faults_are_retried_by_cause(tmp_path, key, http):
    with FakeOpenAIServer(echo, hang_s=3.0) as srv:
        srv.faults = ["429", "500", "hang", "drop", "badjson", "empty"]
        c = cfg(srv.base_url, max_concurrency=1, timeout_s=0.5, http_client=http)
        t = Teacher(c, srv.base_url, tmp_path / "cache.jsonl")
        out = t.run(reqs(3), ident)
        t.close()
    assert all(o.ok for o in out)
    retries = t.account()["retries"]
    assert retries["rate_limit"] == 1
    assert retries["server_error"] == 1
    assert retries["timeout"] == 1
    assert retries["connection"] == 1
    assert retries["invalid_body"] == 2


@TRANSPORTS
@pytest.mark.parametrize(("fault", "words"), [("401", "API key"), ("404", "does not know model")])
def test_fatal_errors_stop_without_retry(tmp_path, key, fault, words, http):
    with FakeOpenAIServer(echo) as srv:
        srv.faults = [fault]
        t = Teacher(cfg(srv.base_url, max_concurrency=1, http_client=http), srv.base_url, tmp_path / "cache.jsonl")
        with pytest.raises(TeacherFatalError, match=words):
            t.run(reqs(1), ident)
        t.close()
        assert len(srv.requests) == 1


@TRANSPORTS
def test_unreachable_server_is_one_clear_error(tmp_path, key, http):
    url = "http://127.0.0.1:9/v1"  # discard port: nothing listens
    t = Teacher(cfg(url, max_retries=1, http_client=http), url, tmp_path / "cache.jsonl")
    with pytest.raises(TeacherFatalError, match="cannot reach the teacher"):
        t.run(reqs(1), ident)
    t.close()


def test_rejected_answers_are_reasked_then_kept_with_reason(tmp_path, key):
    def parse(text: str) -> str:
        if "good" not in text:
            raise ParseError("no 'good' in answer")
        return text

    seen: Counter[str] = Counter()

    def respond(messages):
        q = messages[-1]["content"]
        seen[q] += 1
        return "good one" if q == "q0" and seen[q] == 2 else "bad"

    with FakeOpenAIServer(respond) as srv:
        t = Teacher(cfg(srv.base_url, max_concurrency=1, max_attempts=3), srv.base_url, tmp_path / "c.jsonl")
        out = t.run(reqs(2), parse)
        t.close()
        temps = sorted(r["temperature"] for r in srv.requests)
    assert out[0].ok and out[0].value == "good one" and out[0].attempts == 2
    assert not out[1].ok and out[1].reason == "no 'good' in answer" and out[1].text == "bad"
    assert out[1].attempts == 3
    assert temps == [0.0, 0.0, 0.7, 0.7, 0.7]  # a re-ask samples instead of repeating a deterministic answer
    acc = t.account()
    assert acc["accepted"] == 1 and acc["rejected"] == 1


def test_missing_key_for_remote_teacher_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    c = cfg("https://api.example.invalid/v1")
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        with open_teacher(c, tmp_path / "c.jsonl"):
            pass
    assert not (tmp_path / "c.jsonl").exists()


def test_bad_teacher_params_name_the_key():
    with pytest.raises(ConfigError, match="teacher.max_concurrency"):
        from_dict(TeacherConfig, {"max_concurrency": 0}, "teacher")
    with pytest.raises(ConfigError, match="unknown parameter teacher.colour"):
        from_dict(TeacherConfig, {"colour": 1}, "teacher")
    with pytest.raises(ConfigError, match="teacher.dialect"):
        from_dict(TeacherConfig, {"dialect": "xml"}, "teacher")
    with pytest.raises(ConfigError, match="teacher.base_url"):
        from_dict(TeacherConfig, {"backend": "openai"}, "teacher")


def test_cache_key_ignores_the_api_key_and_endpoint(tmp_path, monkeypatch):
    req = reqs(1)[0]
    monkeypatch.setenv("OPENAI_API_KEY", "one")
    a = Teacher(cfg("http://a.invalid/v1"), "http://a.invalid/v1", tmp_path / "a.jsonl").cache_key(req, 0)
    monkeypatch.setenv("OPENAI_API_KEY", "two")
    b = Teacher(cfg("http://b.invalid/v1"), "http://b.invalid/v1", tmp_path / "b.jsonl").cache_key(req, 0)
    assert a == b


_CHILD = r"""
import sys
from okapi.config import from_dict
from okapi.teacher import ChatRequest, Teacher, TeacherConfig
url, cache = sys.argv[1], sys.argv[2]
c = from_dict(TeacherConfig, {"backend": "openai", "base_url": url, "model": "m", "max_concurrency": 2}, "teacher")
t = Teacher(c, url, cache)
reqs = [ChatRequest(key=f"r{i}", messages=[{"role": "user", "content": f"q{i}"}]) for i in range(40)]
out = t.run(reqs, lambda s: s)
print(sum(o.ok for o in out))
"""


def test_sigkill_then_rerun_sends_no_duplicate_and_leaks_no_key(tmp_path, key):
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "OPENAI_API_KEY": CANARY}
    cache = tmp_path / "cache.jsonl"
    with FakeOpenAIServer(echo, latency_s=0.05) as srv:
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, srv.base_url, str(cache)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(200):  # wait until part of the work is done, then kill hard
            if cache.exists() and len(read_cache(cache)) >= 10:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        _, err1 = proc.communicate()
        done_before = len(read_cache(cache))
        assert 0 < done_before < 40
        rerun = subprocess.run(
            [sys.executable, "-c", _CHILD, srv.base_url, str(cache)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert rerun.stdout.strip() == "40"
        answered = Counter(json.dumps(r["messages"]) for r in srv.requests)
    assert len(read_cache(cache)) == 40
    # A request may have been in flight at the kill, but nothing answered and cached was asked again.
    dupes = [m for m, n in answered.items() if n > 1]
    assert len(dupes) <= 2  # at most the max_concurrency requests in flight at the kill
    assert CANARY.encode() not in cache.read_bytes()
    assert CANARY not in rerun.stdout + rerun.stderr + err1.decode()
    assert all(h == f"Bearer {CANARY}" for h in srv.auth_headers)


# -- batch mode (OpenAI Batch API) ----------------------------------------------------------------------------------


def bcfg(url: str, **kw) -> TeacherConfig:
    return cfg(url, mode="batch", batch_poll_s=0.01, **kw)


def test_batch_mode_answers_everything_and_a_rerun_sends_nothing(tmp_path, key):
    cache = tmp_path / "cache.jsonl"
    with FakeOpenAIServer(echo) as srv:
        srv.batch_polls = 3
        t = Teacher(bcfg(srv.base_url), srv.base_url, cache)
        out = t.run(reqs(10), ident)
        t.close()
        assert [o.value for o in out] == [f"answer: q{i}" for i in range(10)]
        assert srv.requests == []  # nothing went to the online endpoint
        assert len(srv.batches) == 1
        (batch,) = srv.batches.values()
        assert srv.batch_retrieves[batch["id"]] == 3  # polled until it completed
        lines = [json.loads(x) for x in srv.files[batch["input_file_id"]].decode().splitlines()]
        assert [x["custom_id"] for x in lines] == [t.cache_key(r, 0) for r in reqs(10)]
        assert {(x["method"], x["url"]) for x in lines} == {("POST", "/v1/chat/completions")}
        assert lines[0]["body"] == {
            "model": "m",
            "messages": reqs(1)[0].messages,
            "max_tokens": 512,
            "temperature": 0.0,
            # the request's own seed, from its cache key: the same request always asks for the same sample
            "seed": int(t.cache_key(reqs(1)[0], 0)[:8], 16) & 0x7FFFFFFF,
        }
        assert batch["completion_window"] == "24h"
        assert len(read_cache(cache)) == 10
        assert not t.batch_state_path.exists()
        acc = t.account()
        assert acc["requests_sent"] == 10 and acc["batches"] == 1 and acc["prompt_tokens"] == 100

        files_before = len(srv.files)
        t2 = Teacher(bcfg(srv.base_url), srv.base_url, cache)
        out2 = t2.run(reqs(10), ident)
        t2.close()
        assert [o.value for o in out2] == [o.value for o in out]
        assert len(srv.batches) == 1 and len(srv.files) == files_before  # no upload, no batch
        assert t2.account()["requests_sent"] == 0 and t2.account()["cache_hits"] == 10


def test_batch_mode_reasks_rejected_answers_in_a_new_batch(tmp_path, key):
    def parse(text: str) -> str:
        if "q0" not in text:
            raise ParseError("not q0")
        return text

    with FakeOpenAIServer(echo) as srv:
        t = Teacher(bcfg(srv.base_url, max_attempts=2), srv.base_url, tmp_path / "c.jsonl")
        out = t.run(reqs(3), parse)
        t.close()
    assert out[0].ok and out[0].attempts == 1
    assert [o.reason for o in out[1:]] == ["not q0", "not q0"] and all(o.attempts == 2 for o in out[1:])
    assert len(srv.batches) == 2
    assert sorted(b["temperature"] for b in srv.batch_lines) == [0.0, 0.0, 0.0, 0.7, 0.7]
    assert t.account()["reasked"] == 2 and t.account()["rejected"] == 2


def test_a_run_killed_while_polling_resumes_the_same_batch(tmp_path, key):
    cache = tmp_path / "cache.jsonl"
    with FakeOpenAIServer(echo) as srv:
        srv.batch_polls = 10_000  # the first run gives up polling long before the batch completes
        first = Teacher(bcfg(srv.base_url, batch_max_wait_s=0.05), srv.base_url, cache)
        with pytest.raises(TeacherFatalError, match="rerun resumes polling"):
            first.run(reqs(6), ident)
        first.close()
        (batch_id,) = srv.batches
        state = json.loads(first.batch_state_path.read_text())
        assert state["batches"] == [batch_id]
        assert CANARY not in first.batch_state_path.read_text()

        elsewhere = "http://127.0.0.1:9/v1"
        moved = Teacher(bcfg(elsewhere), elsewhere, cache)
        with pytest.raises(TeacherFatalError, match="lists batches"):  # never polled at another endpoint
            moved.run(reqs(6), ident)
        moved.close()

        srv.batch_polls = srv.batch_retrieves[batch_id] + 2
        second = Teacher(bcfg(srv.base_url), srv.base_url, cache)
        out = second.run(reqs(6), ident)
        second.close()
    assert [o.value for o in out] == [f"answer: q{i}" for i in range(6)]
    assert list(srv.batches) == [batch_id]  # one batches.create in all
    assert not second.batch_state_path.exists()
    assert second.account()["batches"] == 0 and second.account()["requests_sent"] == 6


def test_failed_batch_items_are_retried_in_the_next_batch(tmp_path, key):
    with FakeOpenAIServer(echo) as srv:
        srv.batch_item_faults = ["500", None, "429", "drop", None, "empty"]
        t = Teacher(bcfg(srv.base_url), srv.base_url, tmp_path / "c.jsonl")
        out = t.run(reqs(6), ident)
        t.close()
    assert [o.value for o in out] == [f"answer: q{i}" for i in range(6)]
    assert len(srv.batches) == 2
    second = [b for b in srv.batches.values() if b["id"] != "batch_2"]
    assert second[0]["request_counts"]["total"] == 4
    assert t.account()["retries"] == {"batch_incomplete": 1, "invalid_body": 1, "rate_limit": 1, "server_error": 1}


def test_batch_items_that_keep_failing_or_are_rejected_are_fatal(tmp_path, key):
    with FakeOpenAIServer(echo) as srv:
        srv.batch_item_faults = [None, "500", "500"]
        t = Teacher(bcfg(srv.base_url, max_retries=1), srv.base_url, tmp_path / "a.jsonl")
        with pytest.raises(TeacherFatalError, match=r"1 request\(s\) kept failing in batches .*server_error"):
            t.run(reqs(2), ident)
        t.close()
        assert len(read_cache(tmp_path / "a.jsonl")) == 1  # the good answer is kept

        srv.batch_item_faults = ["400"]
        t = Teacher(bcfg(srv.base_url), srv.base_url, tmp_path / "b.jsonl")
        with pytest.raises(TeacherFatalError, match=r"rejected \(HTTP 400\)"):
            t.run(reqs(2), ident)
        t.close()
        assert not t.batch_state_path.exists()
        assert len(read_cache(tmp_path / "b.jsonl")) == 1


@pytest.mark.parametrize(("outcome", "words"), [("failed", "failed: model m is unknown"), ("cancelled", "cancelled")])
def test_failed_or_cancelled_batch_is_one_clear_error(tmp_path, key, outcome, words):
    with FakeOpenAIServer(echo) as srv:
        srv.batch_outcomes = [outcome]
        t = Teacher(bcfg(srv.base_url), srv.base_url, tmp_path / "c.jsonl")
        with pytest.raises(TeacherFatalError, match=words):
            t.run(reqs(2), ident)
        t.close()
    assert not t.batch_state_path.exists()  # a rerun submits again instead of waiting on a dead batch


def test_expired_batch_resubmits_what_it_did_not_answer(tmp_path, key):
    with FakeOpenAIServer(echo) as srv:
        srv.batch_outcomes = ["expired"]
        srv.batch_item_faults = [None, "drop", "drop"]
        t = Teacher(bcfg(srv.base_url), srv.base_url, tmp_path / "c.jsonl")
        out = t.run(reqs(3), ident)
        t.close()
    assert all(o.ok for o in out) and len(srv.batches) == 2
    assert t.account()["retries"] == {"batch_incomplete": 2}


def test_batch_mode_needs_a_batch_api(tmp_path, key):
    with pytest.raises(ConfigError, match="teacher.mode"):
        from_dict(TeacherConfig, {"mode": "batch"}, "teacher")  # embedded llama.cpp has no Batch API
    with pytest.raises(ConfigError, match="teacher.batch_completion_window"):
        from_dict(TeacherConfig, {"batch_completion_window": "1h"}, "teacher")


_BATCH_CHILD = r"""
import sys
from okapi.config import from_dict
from okapi.teacher import ChatRequest, Teacher, TeacherConfig
url, cache = sys.argv[1], sys.argv[2]
c = from_dict(
    TeacherConfig,
    {"backend": "openai", "base_url": url, "model": "m", "mode": "batch", "batch_poll_s": 0.01},
    "teacher",
)
reqs = [ChatRequest(key=f"r{i}", messages=[{"role": "user", "content": f"q{i}"}]) for i in range(8)]
Teacher(c, url, cache).run(reqs, lambda s: s)
"""


def test_sigkill_while_a_batch_runs_then_rerun_resumes_it(tmp_path, key):
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "OPENAI_API_KEY": CANARY}
    cache = tmp_path / "cache.jsonl"
    with FakeOpenAIServer(echo) as srv:
        srv.batch_polls = 10**9  # in progress until the child is dead
        proc = subprocess.Popen([sys.executable, "-c", _BATCH_CHILD, srv.base_url, str(cache)], env=env)
        for _ in range(400):  # wait until it has submitted and is polling, then kill hard
            if srv.batch_retrieves:
                break
            time.sleep(0.025)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        (batch_id,) = srv.batches
        srv.batch_polls = srv.batch_retrieves[batch_id] + 1
        t = Teacher(cfg(srv.base_url, mode="batch", batch_poll_s=0.01), srv.base_url, cache)
        out = t.run(reqs(8), ident)
        t.close()
    assert [o.value for o in out] == [f"answer: q{i}" for i in range(8)]
    assert list(srv.batches) == [batch_id] and srv.requests == []
    assert not t.batch_state_path.exists()

"""teacher.budget_usd against the loopback OpenAI server: stop before crossing, resume, and one clear error."""

from __future__ import annotations

import pytest
from openai_server import FakeOpenAIServer

from okapi.budget import Budget, Price, prompt_tokens_upper_bound
from okapi.cache import read_cache
from okapi.config import ConfigError, from_dict
from okapi.teacher import BudgetExceeded, ChatRequest, Teacher, TeacherConfig

# The fake server bills 10 prompt + 5 completion tokens per answer: at 1000 USD per 1M tokens, $0.015 an answer.
PRICES = {"m": {"prompt": 1000.0, "completion": 1000.0}}
PER_ANSWER = 0.015


def echo(messages):
    return "answer: " + messages[-1]["content"]


def cfg(url: str, **kw) -> TeacherConfig:
    base = {
        "backend": "openai",
        "base_url": url,
        "model": "m",
        "backoff_base_s": 0.01,
        "timeout_s": 5.0,
        "max_tokens": 16,
        "prices": PRICES,
        "max_concurrency": 1,
    }
    base.update(kw)
    return from_dict(TeacherConfig, base, "teacher")


def reqs(n: int) -> list[ChatRequest]:
    return [ChatRequest(key=f"r{i}", messages=[{"role": "user", "content": f"q{i}"}]) for i in range(n)]


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")


def test_worst_case_bounds_the_prompt_by_its_bytes():
    msgs = [{"role": "user", "content": "xin chào"}]  # 9 UTF-8 bytes
    assert prompt_tokens_upper_bound(msgs) == 3 + 4 + 4 + 9
    budget = Budget(1.0, Price(1000.0, 2000.0), 0.0, "c")
    assert budget.worst_case(msgs, 100) == pytest.approx((20 * 1000 + 100 * 2000) / 1e6)


def test_stops_before_the_request_that_would_cross_then_resumes_with_a_larger_budget(tmp_path):
    cache = tmp_path / "c.sqlite"
    with FakeOpenAIServer(echo) as srv:
        t = Teacher(cfg(srv.base_url, budget_usd=0.1), srv.base_url, cache)
        with pytest.raises(BudgetExceeded) as err:
            t.run(reqs(10), lambda s: s)
        t.close()
        # A request's worst case is (13 prompt bytes + 16 max_tokens) * 1000 / 1e6 = $0.029: after 5 answers
        # ($0.075) the 6th could reach $0.104 > $0.1, so it is not sent.
        assert len(srv.requests) == 5
        msg = str(err.value)
        assert "spent $0.0750 of $0.1" in msg and "teacher.budget_usd" in msg and "\n" not in msg
        assert len(read_cache(cache)) == 5
        assert t.account()["estimated_cost_usd"] == pytest.approx(5 * PER_ANSWER)

        more = Teacher(cfg(srv.base_url, budget_usd=1.0), srv.base_url, cache)
        out = more.run(reqs(10), lambda s: s)
        more.close()
        assert [o.value for o in out] == [f"answer: q{i}" for i in range(10)]
        assert len(srv.requests) == 10  # the first 5 came from the cache, never sent again
        assert more.account()["cache_hits"] == 5 and more.account()["requests_sent"] == 5


def test_the_budget_holds_with_requests_in_flight(tmp_path):
    with FakeOpenAIServer(echo, latency_s=0.02) as srv:
        t = Teacher(cfg(srv.base_url, budget_usd=0.2, max_concurrency=4), srv.base_url, tmp_path / "c.sqlite")
        with pytest.raises(BudgetExceeded):
            t.run(reqs(40), lambda s: s)
        t.close()
        spent = len(srv.requests) * PER_ANSWER
        assert 0 < spent <= 0.2
        # Every request sent was answered and cached: nothing bought is lost.
        assert len(read_cache(tmp_path / "c.sqlite")) == len(srv.requests)


def test_a_budget_already_spent_sends_nothing_but_cached_answers_still_serve(tmp_path):
    cache = tmp_path / "c.sqlite"
    with FakeOpenAIServer(echo) as srv:
        t = Teacher(cfg(srv.base_url), srv.base_url, cache)
        t.run(reqs(4), lambda s: s)  # $0.06 in the cache
        t.close()
        again = Teacher(cfg(srv.base_url, budget_usd=0.05), srv.base_url, cache)
        assert [o.ok for o in again.run(reqs(4), lambda s: s)] == [True] * 4  # all cached: nothing to buy
        with pytest.raises(BudgetExceeded, match=r"budget_usd = 0.05 is already spent.*\$0.0600.*nothing was sent"):
            again.run(reqs(6), lambda s: s)
        again.close()
        assert len(srv.requests) == 4


def test_batch_mode_submits_only_what_the_budget_allows(tmp_path):
    cache = tmp_path / "c.sqlite"
    with FakeOpenAIServer(echo) as srv:
        c = cfg(srv.base_url, mode="batch", batch_poll_s=0.01, budget_usd=0.1)
        t = Teacher(c, srv.base_url, cache)
        with pytest.raises(BudgetExceeded):
            t.run(reqs(10), lambda s: s)
        t.close()
        # Batch price is half: worst case $0.0145 a request, so 6 fit in $0.1 and the 7th does not.
        assert len(srv.batch_lines) == 6 and len(read_cache(cache)) == 6
        rest = Teacher(cfg(srv.base_url, mode="batch", batch_poll_s=0.01, budget_usd=1.0), srv.base_url, cache)
        assert all(o.ok for o in rest.run(reqs(10), lambda s: s))
        rest.close()
        assert len(srv.batch_lines) == 10
        assert rest.account()["estimated_cost_usd"] == pytest.approx(4 * PER_ANSWER / 2)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"budget_usd": -1.0}, "teacher.budget_usd = -1.0 is invalid"),
        ({"budget_usd": 5.0, "prices": {}}, "needs the price of teacher.model 'm'"),
        ({"budget_usd": 5.0, "prices": {"m": {"prompt": 1.0}}}, "teacher.prices.m lacks 'completion'"),
        ({"budget_usd": 5.0, "prices": {"m": {"prompt": 1.0, "completion": -2}}}, "teacher.prices.m.completion"),
    ],
)
def test_bad_budget_input_is_one_clear_error_before_anything_is_sent(extra, words):
    with pytest.raises(ConfigError) as err:
        cfg("http://127.0.0.1:9/v1", **extra)
    assert words in str(err.value) and "\n" not in str(err.value)

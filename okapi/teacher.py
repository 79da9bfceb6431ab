"""The one client for every teacher call (generation, translation, ranking, eval-set translation).

Built on the ``openai`` package, so any OpenAI-compatible server works by ``base_url``: OpenAI itself, vLLM, the
llama.cpp server, Ollama. The embedded default is llama-cpp-python's server on 127.0.0.1 (``okapi.llama_server``).

Every request/response pair goes through a content-addressed cache keyed by (model, messages, decoding params,
prompt version, attempt) -- never by the API key or the endpoint -- appended to a JSON Lines file as answers
arrive, so a stage killed at any point resends nothing it already paid for. Answer validation is the caller's
``parse`` function: a rejected answer is re-asked up to ``max_attempts`` times (each attempt has its own cache key)
and is otherwise returned as rejected, with its raw text and the reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx2 as httpx  # the HTTP client the openai package itself uses
import openai
from tqdm import tqdm

from okapi.config import ConfigError, check

log = logging.getLogger(__name__)

API_KEY_ENV = "OPENAI_API_KEY"
# llama.cpp's server ignores the key, but the openai package insists on one.
_LOCAL_PLACEHOLDER_KEY = "sk-local-no-key"


@dataclass
class EmbeddedConfig:
    n_ctx: int = 4096
    n_threads: int = 2
    startup_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        check(self.n_ctx >= 512, "teacher.embedded.n_ctx", self.n_ctx, "an integer >= 512")
        check(self.n_threads >= 1, "teacher.embedded.n_threads", self.n_threads, "an integer >= 1")


@dataclass
class TeacherConfig:
    # embedded: start llama-cpp-python's server with the SmolLM2 GGUF; openai: any compatible server by base_url.
    backend: Literal["embedded", "openai"] = "embedded"
    base_url: str | None = None
    model: str = "SmolLM2-135M-Instruct"
    # How structured output is requested: none (plain text, the paper's prompts), openai (json_schema), llama_cpp.
    dialect: Literal["none", "openai", "llama_cpp"] = "llama_cpp"
    max_concurrency: int = 2
    timeout_s: float = 120.0
    max_retries: int = 6
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    max_attempts: int = 3
    temperature: float = 0.0
    retry_temperature: float = 0.7
    max_tokens: int = 512
    prompt_version: str = "okapi-v1"
    # Stop the stage when more than this fraction of rows ends rejected.
    max_failure_rate: float = 0.5
    # USD per 1M tokens, by model name: {"gpt-4o-mini": {"prompt": 0.15, "completion": 0.6}}.
    prices: dict[str, dict[str, float]] = field(default_factory=dict)
    embedded: EmbeddedConfig = field(default_factory=EmbeddedConfig)

    def __post_init__(self) -> None:
        check(self.max_concurrency >= 1, "teacher.max_concurrency", self.max_concurrency, "an integer >= 1")
        check(self.timeout_s > 0, "teacher.timeout_s", self.timeout_s, "a number of seconds > 0")
        check(self.max_retries >= 0, "teacher.max_retries", self.max_retries, "an integer >= 0")
        check(self.max_attempts >= 1, "teacher.max_attempts", self.max_attempts, "an integer >= 1")
        check(0 <= self.temperature <= 2, "teacher.temperature", self.temperature, "a number in [0, 2]")
        check(self.max_tokens >= 1, "teacher.max_tokens", self.max_tokens, "an integer >= 1")
        check(0 <= self.max_failure_rate <= 1, "teacher.max_failure_rate", self.max_failure_rate, "a number in [0, 1]")
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


class _InvalidBody(ValueError):
    """A 200 answer without usable content; retried like a server error."""


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


@dataclass
class _Reply:
    text: str
    prompt_tokens: int
    completion_tokens: int


class ResponseCache:
    """Append-only JSON Lines cache: one {"key", "text", "prompt_tokens", "completion_tokens"} per line.

    A line is written (and flushed) as soon as its answer arrives, so a SIGKILL loses at most the line being
    written; a torn last line is ignored on load.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._entries: dict[str, _Reply] = {}
        if self.path.exists():
            with self.path.open("r", encoding="utf-8") as fh:
                for line in fh:
                    try:
                        rec = json.loads(line)
                        self._entries[rec["key"]] = _Reply(
                            rec["text"], rec.get("prompt_tokens", 0), rec.get("completion_tokens", 0)
                        )
                    except (json.JSONDecodeError, KeyError, TypeError):
                        log.warning("ignoring a torn or malformed line in %s", self.path)
        self._fh = self.path.open("a", encoding="utf-8")

    def get(self, key: str) -> _Reply | None:
        return self._entries.get(key)

    def put(self, key: str, reply: _Reply) -> None:
        self._entries[key] = reply
        rec = {
            "key": key,
            "text": reply.text,
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
        }
        self._fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self._fh.flush()

    def __len__(self) -> int:
        return len(self._entries)

    def close(self) -> None:
        self._fh.close()


def response_format(dialect: str, schema: dict[str, Any] | None) -> dict[str, Any] | None:
    if schema is None or dialect == "none":
        return None
    if dialect == "openai":
        return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    return {"type": "json_object", "schema": schema}


class Teacher:
    """Runs many chat requests against one endpoint with caching, retries, bounded concurrency and accounting."""

    def __init__(self, cfg: TeacherConfig, base_url: str, cache_path: str | os.PathLike[str]) -> None:
        self.cfg = cfg
        self.base_url = base_url
        self.cache = ResponseCache(cache_path)
        self.stats: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()

    # -- public API -------------------------------------------------------------------------------------------
    def run(
        self,
        requests: Sequence[ChatRequest],
        parse: Callable[[str], Any],
        *,
        desc: str = "teacher",
        max_attempts: int | None = None,
    ) -> list[Outcome]:
        """Answer every request; ``parse`` turns an answer's text into a value or raises ParseError(reason)."""
        return asyncio.run(self._run_all(list(requests), parse, desc, max_attempts or self.cfg.max_attempts))

    def account(self) -> dict[str, Any]:
        """The spending account: requests sent, cache hits, retries by cause, tokens and estimated cost."""
        price = self.cfg.prices.get(self.cfg.model, {})
        cost = (
            self.stats["prompt_tokens"] * price.get("prompt", 0.0)
            + self.stats["completion_tokens"] * price.get("completion", 0.0)
        ) / 1e6
        return {
            "requests_sent": self.stats["sent"],
            "cache_hits": self.stats["cache_hits"],
            "accepted": self.stats["accepted"],
            "rejected": self.stats["rejected"],
            "reasked": self.stats["reasked"],
            "retries": dict(sorted(self.retries.items())),
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
        payload = {
            "model": self.cfg.model,
            "messages": req.messages,
            "max_tokens": req.max_tokens or self.cfg.max_tokens,
            "temperature": self._temperature(req, attempt),
            "response_format": response_format(self.cfg.dialect, req.schema),
            "prompt_version": self.cfg.prompt_version,
            "attempt": attempt,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def _temperature(self, req: ChatRequest, attempt: int) -> float:
        if req.temperature is not None and attempt == 0:
            return req.temperature
        # A deterministic teacher would repeat a rejected answer; re-asks sample instead.
        return self.cfg.temperature if attempt == 0 else self.cfg.retry_temperature

    async def _run_all(
        self, requests: list[ChatRequest], parse: Callable[[str], Any], desc: str, max_attempts: int
    ) -> list[Outcome]:
        api_key = os.environ.get(API_KEY_ENV) if self.cfg.backend == "openai" else _LOCAL_PLACEHOLDER_KEY
        client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=api_key or _LOCAL_PLACEHOLDER_KEY,
            timeout=self.cfg.timeout_s,
            max_retries=0,  # retries are ours: counted by cause, with jitter, honouring Retry-After
        )
        sem = asyncio.Semaphore(self.cfg.max_concurrency)
        # In a log file (dvc repro, CI) a bar redrawn per request drowns everything else.
        bar = tqdm(total=len(requests), desc=desc, unit="req", leave=False, mininterval=0.1 if _tty() else 30.0)
        try:
            tasks = [self._answer(client, sem, req, parse, max_attempts, bar) for req in requests]
            return await asyncio.gather(*tasks)
        finally:
            bar.close()
            await client.close()

    async def _answer(
        self,
        client: openai.AsyncOpenAI,
        sem: asyncio.Semaphore,
        req: ChatRequest,
        parse: Callable[[str], Any],
        max_attempts: int,
        bar: tqdm,
    ) -> Outcome:
        reason: str | None = None
        text: str | None = None
        for attempt in range(max_attempts):
            key = self.cache_key(req, attempt)
            reply = self.cache.get(key)
            if reply is not None:
                self.stats["cache_hits"] += 1
                self.stats["cached_prompt_tokens"] += reply.prompt_tokens
                self.stats["cached_completion_tokens"] += reply.completion_tokens
            else:
                async with sem:
                    reply = await self._send(client, req, attempt)
                self.cache.put(key, reply)
                self.stats["prompt_tokens"] += reply.prompt_tokens
                self.stats["completion_tokens"] += reply.completion_tokens
            text = reply.text
            try:
                value = parse(text)
            except ParseError as err:
                reason = str(err) or "unparseable answer"
                if attempt + 1 < max_attempts:
                    self.stats["reasked"] += 1
                continue
            self.stats["accepted"] += 1
            self._tick(bar)
            return Outcome(req.key, value, text, None, attempt + 1)
        self.stats["rejected"] += 1
        self._tick(bar)
        return Outcome(req.key, None, text, reason, max_attempts)

    def _tick(self, bar: tqdm) -> None:
        bar.set_postfix(sent=self.stats["sent"], hits=self.stats["cache_hits"], rejected=self.stats["rejected"])
        bar.update(1)

    async def _send(self, client: openai.AsyncOpenAI, req: ChatRequest, attempt: int) -> _Reply:
        kwargs: dict[str, Any] = {
            "model": self.cfg.model,
            "messages": req.messages,
            "max_tokens": req.max_tokens or self.cfg.max_tokens,
            "temperature": self._temperature(req, attempt),
        }
        fmt = response_format(self.cfg.dialect, req.schema)
        if fmt is not None:
            kwargs["response_format"] = fmt
        if attempt:
            kwargs["seed"] = attempt
        cause: str = "unknown"
        last_conn: Exception | None = None
        for retry in range(self.cfg.max_retries + 1):
            wait: float | None = None
            try:
                self.stats["sent"] += 1
                resp = await client.chat.completions.create(**kwargs)
                text = resp.choices[0].message.content
                if not isinstance(text, str):
                    raise _InvalidBody("answer has no message content")
                usage = resp.usage
                return _Reply(
                    text,
                    usage.prompt_tokens if usage else 0,
                    usage.completion_tokens if usage else 0,
                )
            except openai.RateLimitError as err:
                cause, wait = "rate_limit", _retry_after(err.response)
            except openai.InternalServerError:
                cause = "server_error"
            except openai.APITimeoutError:
                cause = "timeout"
            except openai.APIConnectionError as err:
                cause, last_conn = "connection", err
            except (openai.APIResponseValidationError, json.JSONDecodeError, IndexError, TypeError, _InvalidBody):
                cause = "invalid_body"
            except openai.AuthenticationError as err:
                raise TeacherFatalError(
                    f"the teacher at {self.base_url} rejected the API key (HTTP 401); check {API_KEY_ENV}"
                ) from err
            except openai.PermissionDeniedError as err:
                raise TeacherFatalError(
                    f"the teacher at {self.base_url} denied access (HTTP 403) for model {self.cfg.model!r}"
                ) from err
            except openai.NotFoundError as err:
                raise TeacherFatalError(
                    f"the teacher at {self.base_url} does not know model {self.cfg.model!r} or the chat endpoint "
                    "(HTTP 404); check teacher.model and teacher.base_url"
                ) from err
            except openai.BadRequestError as err:
                raise TeacherFatalError(
                    f"the teacher at {self.base_url} rejected a request as malformed (HTTP 400): {_short(err)}"
                ) from err
            except openai.APIStatusError as err:
                if err.status_code >= 500:
                    cause = "server_error"
                else:
                    raise TeacherFatalError(
                        f"the teacher at {self.base_url} answered HTTP {err.status_code}: {_short(err)}"
                    ) from err
            self.retries[cause] += 1
            if retry == self.cfg.max_retries:
                break
            delay = wait if wait is not None else self._backoff(retry)
            log.debug("teacher request failed (%s); retrying in %.2fs", cause, delay)
            await asyncio.sleep(delay)
        if cause == "connection":
            raise TeacherFatalError(
                f"cannot reach the teacher at {self.base_url} after {self.cfg.max_retries + 1} tries "
                f"({type(last_conn).__name__}); check teacher.base_url and that the server is running"
            )
        raise TeacherFatalError(
            f"the teacher at {self.base_url} kept failing ({cause}) after {self.cfg.max_retries + 1} tries; "
            "answers already received are cached and will not be requested again"
        )

    def _backoff(self, retry: int) -> float:
        base = min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * (2**retry))
        return base * (0.5 + random.random() / 2)


def _tty() -> bool:
    return sys.stderr.isatty()


def _retry_after(response: httpx.Response | None) -> float | None:
    if response is None:
        return None
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _short(err: openai.APIStatusError) -> str:
    msg = getattr(err, "message", "") or str(err)
    return msg[:300]


def failure_rate(outcomes: Sequence[Outcome]) -> float:
    return sum(not o.ok for o in outcomes) / len(outcomes) if outcomes else 0.0


def check_failure_rate(outcomes: Sequence[Outcome], cfg: TeacherConfig, what: str) -> None:
    """Stop the stage when too many answers were rejected (DESIGN: never a silent default)."""
    rate = failure_rate(outcomes)
    if rate > cfg.max_failure_rate:
        reasons = Counter(o.reason for o in outcomes if not o.ok).most_common(3)
        raise TeacherFatalError(
            f"{what}: {rate:.0%} of {len(outcomes)} teacher answers were rejected, above "
            f"teacher.max_failure_rate = {cfg.max_failure_rate}; most common reasons: {reasons}"
        )


@contextmanager
def open_teacher(cfg: TeacherConfig, cache_path: str | os.PathLike[str]) -> Iterator[Teacher]:
    """A ready Teacher: the embedded llama.cpp server started for the duration, or the configured endpoint."""
    require_api_key(cfg)
    if cfg.backend == "embedded":
        from okapi.llama_server import llama_server, smollm2_gguf_path

        with llama_server(
            smollm2_gguf_path(),
            cfg.model,
            n_ctx=cfg.embedded.n_ctx,
            n_threads=cfg.embedded.n_threads,
            startup_timeout_s=cfg.embedded.startup_timeout_s,
        ) as base_url:
            teacher = Teacher(cfg, base_url, cache_path)
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

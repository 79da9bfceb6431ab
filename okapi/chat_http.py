"""The chat-completions call over HTTP: the one request the teacher sends a hundred thousand times.

Two ways to make it, chosen by ``teacher.http_client``:

- ``aiohttp``: a plain POST of the request body on one aiohttp session (its C HTTP parser), the response read and
  decoded with ``json``. This is the OpenAI protocol as the SDK speaks it (the same path, body, bearer key and
  organisation/project headers) without the SDK's request machinery, which cost ~1 ms of CPU per request: at a few
  hundred requests per second the client's one event loop was the bottleneck (README, Performance).
- ``httpx``: the openai SDK's own client on its default transport.

Both return the decoded JSON body and report failures the same way, so ``okapi.teacher`` classifies them once:
:class:`HTTPStatusError` for an answer with an error status, :class:`ChatTimeout` when no answer came in time,
:class:`ChatConnectionError` when the connection was refused or dropped, :class:`InvalidBody` for an answer that is
not JSON. The Batch API (files, batches) always goes through the SDK on httpx; :func:`from_sdk` turns its errors
into the same four.
"""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import httpx2 as httpx  # the HTTP client the openai package itself uses
import openai

CHAT_PATH = "/chat/completions"
# The SDK adds these headers from the environment; a direct call must too (a project key bills the project).
_ENV_HEADERS = {"OPENAI_ORG_ID": "OpenAI-Organization", "OPENAI_PROJECT_ID": "OpenAI-Project"}


class HTTPStatusError(Exception):
    """The server answered with an error status."""

    def __init__(self, status: int, message: str, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.retry_after = retry_after


class ChatTimeout(Exception):
    """No answer within teacher.timeout_s."""


class ChatConnectionError(Exception):
    """The connection was refused, reset or closed before a whole answer came."""


class InvalidBody(ValueError):
    """The answer is not a usable chat completion."""


ChatFailure = HTTPStatusError | ChatTimeout | ChatConnectionError | InvalidBody


class ChatPoster(Protocol):
    async def post(self, body: dict[str, Any]) -> Any: ...

    async def close(self) -> None: ...


class AiohttpPoster:
    """POSTs chat requests to one base URL on an aiohttp session with up to ``connections`` open connections."""

    def __init__(self, base_url: str, api_key: str, timeout_s: float, connections: int, ssl: Any) -> None:
        self.url = base_url.rstrip("/") + CHAT_PATH
        self.headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "okapi-teacher (aiohttp)",
        }
        self.headers.update({h: os.environ[e] for e, h in _ENV_HEADERS.items() if os.environ.get(e)})
        # Per operation, as the SDK's timeout is: connecting, and then each wait for more of the answer.
        timeout = aiohttp.ClientTimeout(total=None, connect=timeout_s, sock_read=timeout_s)
        # HTTP(S)_PROXY and NO_PROXY apply as they do to the SDK, looked up once: aiohttp's trust_env looks them (and
        # ~/.netrc) up again in a worker thread for every request, two thread hops per answer.
        self.proxy = _env_proxy(self.url)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections, ssl=ssl), timeout=timeout, trust_env=False
        )

    async def post(self, body: dict[str, Any]) -> Any:
        try:
            data = json.dumps(body).encode()
            async with self.session.post(self.url, data=data, headers=self.headers, proxy=self.proxy) as resp:
                raw = await resp.read()
                status = resp.status
                retry_after = resp.headers.get("retry-after")
        except (TimeoutError, aiohttp.ServerTimeoutError) as err:
            raise ChatTimeout(f"no answer within the timeout ({type(err).__name__})") from err
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as err:
            raise ChatConnectionError(f"{type(err).__name__}: {err}") from err
        if status >= 400:
            raise HTTPStatusError(status, _error_message(raw), _seconds(retry_after))
        try:
            return json.loads(raw)
        except ValueError as err:  # not JSON, or not UTF-8
            raise InvalidBody(f"answer is not JSON ({type(err).__name__})") from err

    async def close(self) -> None:
        await self.session.close()


class SdkPoster:
    """The same POST through the openai SDK's client (httpx transport), its request-building skipped where it can
    be: the raw post avoids the per-call TypedDict transform and pydantic model of a typed chat call."""

    def __init__(self, client: openai.AsyncOpenAI) -> None:
        self.client = client

    async def post(self, body: dict[str, Any]) -> Any:
        # Only the bearer key, as the SDK's own chat call sends (its default would add an admin key from the env).
        options: dict[str, Any] = {"security": {"bearer_auth": True}}
        try:
            resp = await self.client.post(CHAT_PATH, body=body, cast_to=httpx.Response, options=options)
        except openai.APIError as err:
            raise from_sdk(err) from err
        try:
            return resp.json()
        except ValueError as err:
            raise InvalidBody(f"answer is not JSON ({type(err).__name__})") from err

    async def close(self) -> None:
        await self.client.close()


def from_sdk(err: openai.APIError) -> ChatFailure | openai.APIError:
    """The SDK's error as one of ours (the SDK's own when it is none of them)."""
    if isinstance(err, openai.APIStatusError):
        message = getattr(err, "message", "") or str(err)
        return HTTPStatusError(err.status_code, message[:300], _seconds(err.response.headers.get("retry-after")))
    if isinstance(err, openai.APITimeoutError):  # before its base class, APIConnectionError
        return ChatTimeout(str(err))
    if isinstance(err, openai.APIConnectionError):
        return ChatConnectionError(f"{type(err).__name__}: {err}")
    if isinstance(err, openai.APIResponseValidationError):
        return InvalidBody(str(err))
    return err


def _env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (HTTP_PROXY / HTTPS_PROXY, NO_PROXY honoured), or None."""
    parts = urlsplit(url)
    if urllib.request.proxy_bypass_environment(parts.hostname or ""):
        return None
    return urllib.request.getproxies_environment().get(parts.scheme)


def _error_message(raw: bytes) -> str:
    """The error's own message (OpenAI's {"error": {"message": ...}}) or the start of the body."""
    try:
        body = json.loads(raw)
        message = body["error"]["message"] if isinstance(body.get("error"), dict) else body["error"]
    except (ValueError, KeyError, TypeError, AttributeError):
        message = raw.decode("utf-8", "replace")
    return str(message)[:300]


def _seconds(value: str | None) -> float | None:
    """A Retry-After header in seconds (its HTTP-date form is not used by OpenAI-compatible servers)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None

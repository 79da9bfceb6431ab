"""The embedded teacher's throughput by layout: llama-cpp-python servers x threads each, side by side in one run.

The same 24 translation requests (Fig. 2's prompt on our seed tasks, into Vietnamese, with the JSON-schema
structured output the stages use, greedy) go through okapi.teacher.Teacher against each layout; each layout starts
its servers first (not timed) and gets a fresh cache. Reported: wall seconds, completion tokens/s over all servers,
and the speed-up over the old default (1 server, 2 threads). Whether the answers were the same in every layout is
printed too (they were, on our machine: greedy decoding, one request at a time per server).

    python benchmarks/embedded_teacher.py [--requests 24] [--layouts 1x2,1x1,2x1]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from okapi.config import from_dict  # noqa: E402
from okapi.io import read_jsonl  # noqa: E402
from okapi.llama_server import llama_servers, smollm2_gguf_path  # noqa: E402
from okapi.teacher import ChatRequest, Teacher, TeacherConfig  # noqa: E402
from okapi.translate import _schema, build_messages  # noqa: E402


def requests(n: int) -> list[ChatRequest]:
    seeds = read_jsonl(ROOT / "data/seeds/seed_tasks.jsonl")
    out = []
    for i in range(n):
        seed = seeds[i % len(seeds)]
        inst = seed.get("instances", [{}])[0] if "instances" in seed else seed
        record = {"instruction": seed["instruction"], "output": inst.get("output", "")}
        out.append(
            ChatRequest(
                key=f"t{i}", messages=build_messages(record, "Vietnamese"), schema=_schema(list(record)), max_tokens=256
            )
        )
    return out


def run_layout(servers: int, threads: int, reqs: list[ChatRequest]) -> dict[str, object]:
    cfg = from_dict(TeacherConfig, {"embedded": {"servers": servers, "n_threads": threads}}, "teacher")
    with llama_servers(smollm2_gguf_path(), cfg.model, servers=servers, n_threads=threads) as urls:
        with tempfile.TemporaryDirectory() as tmp:
            teacher = Teacher(cfg, urls, Path(tmp) / "cache.sqlite")
            t0 = time.perf_counter()
            outcomes = teacher.run(reqs, lambda text: text, desc=f"{servers}x{threads}")
            wall = time.perf_counter() - t0
            account = teacher.account()
            teacher.close()
    tokens = account["completion_tokens"]
    return {
        "layout": f"{servers} server(s) x {threads} thread(s)",
        "wall_s": round(wall, 2),
        "completion_tokens": tokens,
        "tokens_per_s": round(tokens / wall, 1),
        "answers": [o.text for o in outcomes],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=24)
    ap.add_argument(
        "--layouts", default="1x2,1x1,2x1", help="servers x threads, comma-separated; the first is the base"
    )
    args = ap.parse_args()
    reqs = requests(args.requests)
    results = []
    for layout in args.layouts.split(","):
        servers, threads = (int(x) for x in layout.split("x"))
        results.append(run_layout(servers, threads, reqs))
        print(json.dumps({k: v for k, v in results[-1].items() if k != "answers"}), flush=True)
    base = results[0]["tokens_per_s"]
    for r in results:
        print(
            f"{r['layout']:28s} {r['wall_s']:7.2f} s  {r['tokens_per_s']:6.1f} tokens/s  x{r['tokens_per_s'] / base:.2f}"
        )
    same = all(r["answers"] == results[0]["answers"] for r in results)
    print(f"same answers in every layout: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The embedded teacher's throughput by layout, side by side in one run.

Layouts: ``SxTxN`` is S llama.cpp servers (the xllamacpp wheel, ``okapi.llama_server``) of T threads with N parallel
slots each (the stage keeps N requests in flight per server), ``SxTxN:P`` the same with repeat penalty P (default
teacher.embedded.repeat_penalty), ``SxTxN@W`` with teacher weights W (q4_1 or q8_0, default
teacher.embedded.weights; e.g. ``2x1x1@q4_1,2x1x1@q8_0,2x1x1@q4_1,2x1x1@q8_0``); ``lcp:SxT`` is the earlier default, S
llama-cpp-python servers of T threads answering one request at a time (needs ``llama-cpp-python[server]``, which
compiles llama.cpp on install; left out when it is missing).

The same requests (Fig. 2's translation prompt on our seed tasks, into Vietnamese or ``--language``, with the JSON-schema structured
output the stages use, greedy) go through okapi.teacher.Teacher against each layout; each layout starts its servers
first (timed apart) and gets a fresh cache. Reported: start-up seconds, wall seconds, completion tokens/s over all
servers, the speed-up over the first layout, and which layouts gave the first layout's answers.

    python benchmarks/embedded_teacher.py [--requests 24] [--layouts lcp:2x1,1x2x4,1x2x8,2x1x4]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from okapi.config import from_dict  # noqa: E402
from okapi.io import read_jsonl  # noqa: E402
from okapi.llama_server import (  # noqa: E402
    _free_port,
    _stop,
    _wait_ready,
    embedded_gguf,
    llama_servers,
    smollm2_gguf_path,
)
from okapi.teacher import ChatRequest, Teacher, TeacherConfig  # noqa: E402
from okapi.translate import _schema, build_messages  # noqa: E402


def requests(n: int, language: str) -> list[ChatRequest]:
    seeds = read_jsonl(ROOT / "data/seeds/seed_tasks.jsonl")
    out = []
    for i in range(n):
        seed = seeds[i % len(seeds)]
        inst = seed.get("instances", [{}])[0] if "instances" in seed else seed
        record = {"instruction": seed["instruction"], "output": inst.get("output", "")}
        out.append(
            ChatRequest(
                key=f"t{i}", messages=build_messages(record, language), schema=_schema(list(record)), max_tokens=256
            )
        )
    return out


@contextmanager
def llama_cpp_python_servers(servers: int, threads: int, alias: str):
    """The earlier embedded teacher: llama-cpp-python's Python server, one request at a time per server."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    with ExitStack() as stack:
        started = []
        for _ in range(servers):
            port = _free_port()
            cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf_path())]
            cmd += ["--model_alias", alias, "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096"]
            cmd += ["--n_threads", str(threads), "--verbose", "False"]
            log = stack.enter_context(tempfile.TemporaryFile(mode="w+"))
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            stack.callback(_stop, proc)
            started.append((proc, f"http://127.0.0.1:{port}/v1", log))
        for proc, url, log in started:
            _wait_ready(proc, url, 120.0, log)
        yield [url for _, url, _ in started]


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def run_layout(layout: str, reqs: list[ChatRequest]) -> dict[str, object] | None:
    cfg = from_dict(TeacherConfig, {}, "teacher")
    t0 = time.perf_counter()
    if layout.startswith("lcp:"):
        if importlib.util.find_spec("llama_cpp") is None:
            print(f"{layout}: llama-cpp-python is not installed, left out", flush=True)
            return None
        servers, threads = (int(x) for x in layout[4:].split("x"))
        ctx, per_url = llama_cpp_python_servers(servers, threads, cfg.model), 1
        name = f"llama-cpp-python {servers} x {threads} thread(s)"
    else:
        layout_part, _, weights = layout.partition("@")
        weights = weights or cfg.embedded.weights
        shape, _, penalty = layout_part.partition(":")
        servers, threads, slots = (int(x) for x in shape.split("x"))
        repeat = float(penalty) if penalty else cfg.embedded.repeat_penalty
        ctx = llama_servers(
            embedded_gguf(weights), cfg.model, servers=servers, n_threads=threads, slots=slots, repeat_penalty=repeat
        )
        per_url = slots
        name = f"llama.cpp {servers} x {threads} x {slots}, penalty {repeat}, {weights}"
    with ctx as urls:
        startup = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            teacher = Teacher(cfg, urls, Path(tmp) / "cache.sqlite", per_url=per_url)
            t1 = time.perf_counter()
            outcomes = teacher.run(reqs, lambda text: text, desc=layout)
            wall = time.perf_counter() - t1
            account = teacher.account()
            teacher.close()
    tokens = account["completion_tokens"]
    return {
        "layout": name,
        "startup_s": round(startup, 2),
        "wall_s": round(wall, 2),
        "prompt_tokens": account["prompt_tokens"],
        "completion_tokens": tokens,
        # Answers cut off at max_tokens (a greedy loop): not valid JSON, so a stage would re-ask them.
        "cut_off": sum(1 for o in outcomes if o.text and not _is_json(o.text)),
        "tokens_per_s": round(tokens / wall, 1),
        "answers": [o.text for o in outcomes],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=24)
    ap.add_argument("--language", default="Vietnamese", help="target language of the translations")
    ap.add_argument(
        "--layouts",
        default="lcp:2x1,1x2x4,1x2x8,2x1x4",
        help="comma-separated; SxTxN (llama.cpp servers x threads x slots) or lcp:SxT; the first is the base",
    )
    args = ap.parse_args()
    reqs = requests(args.requests, args.language)
    results = []
    for layout in args.layouts.split(","):
        r = run_layout(layout, reqs)
        if r is not None:
            results.append(r)
            print(json.dumps({k: v for k, v in r.items() if k != "answers"}), flush=True)
    base = results[0]
    for r in results:
        same = sum(a == b for a, b in zip(r["answers"], base["answers"], strict=True))
        print(
            f"{r['layout']:50s} start {r['startup_s']:5.2f} s  {r['wall_s']:7.2f} s (x{base['wall_s'] / r['wall_s']:.2f})"
            f"  {r['prompt_tokens']} + {r['completion_tokens']} tokens  {r['tokens_per_s']:6.1f} completion tokens/s"
            f"  x{r['tokens_per_s'] / base['tokens_per_s']:.2f}  {r['cut_off']} cut off  "
            f"{same}/{len(reqs)} answers as the base"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

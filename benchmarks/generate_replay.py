"""Benchmark: the generate loop's cost with the ROUGE-L filter computed vs replayed from stored rounds.

Self-Instruct rounds (okapi.selfinstruct.generate) against a synthetic Alpaca-like pool (benchmarks/rouge_filter.py's
sentences) with an instant in-process teacher whose answers depend only on the prompt, as cached answers do. Three
runs on the same inputs: no store (what the stage did before decisions were stored), a first run that stores every
round in a fresh teacher cache file, and a rerun that replays them. The script asserts that all three return the same
rows and metrics, and prints the time of each without the time spent making answers (the filter and the loop:
the pool's index, the heuristic filters, the rows).

    .venv/bin/python benchmarks/generate_replay.py                         # 50K pool, 10K kept (a few minutes)
    .venv/bin/python benchmarks/generate_replay.py --pool-size 5000 --kept 1000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rouge_filter import SentenceMaker, make_data  # noqa: E402

from okapi.cache import ResponseCache  # noqa: E402
from okapi.selfinstruct import GenerateConfig, generate, load_seeds  # noqa: E402
from okapi.teacher import Outcome, ParseError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class InstantTeacher:
    """okapi.teacher.Teacher's ``run`` contract; each answer is a function of its prompt (like a cached one)."""

    def __init__(self, pool: list[str], tasks_per_answer: int) -> None:
        self.pool = pool
        self.tasks_per_answer = tasks_per_answer
        self.seconds = 0.0  # spent making answers: left out of the loop's time

    def answer(self, prompt: str) -> str:
        rng = random.Random(hashlib.sha256(prompt.encode()).hexdigest())
        maker = SentenceMaker(rng, vocab_size=600)  # a small vocabulary: rebuilt per answer, so keep it cheap
        tasks = []
        for _ in range(self.tasks_per_answer):
            r = rng.random()
            if r < 0.6:
                text = maker.sentence()
            elif r < 0.9:
                text = maker.mutate(rng.choice(self.pool), rng.randint(1, 4))  # often too close to the pool
            else:
                text = "Draw a picture of " + maker.sentence()
            tasks.append({"instruction": text, "input": "", "output": "An answer."})
        return json.dumps({"tasks": tasks})

    def run(self, requests, parse, *, desc: str = "teacher", max_attempts: int | None = None) -> list[Outcome]:
        out = []
        start = time.perf_counter()
        for req in requests:
            text = self.answer(req.messages[0]["content"])
            try:
                out.append(Outcome(req.key, parse(text), text, None, 1))
            except ParseError as err:
                out.append(Outcome(req.key, None, text, str(err), 1))
        self.seconds += time.perf_counter() - start
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool-size", type=int, default=50_000)
    parser.add_argument("--kept", type=int, default=10_000, help="generate.num_instructions")
    parser.add_argument("--batch", type=int, default=32, help="generate.request_batch_size (paper profile: 32)")
    parser.add_argument("--avg", action="store_true", help="generate.avg_similarity (paper profile: false)")
    args = parser.parse_args()

    pool_texts, _ = make_data(args.pool_size, 0, 0)
    pool = [{"instruction": t, "input": "", "output": "x"} for t in pool_texts]
    seeds = load_seeds(ROOT / "data/seeds/seed_tasks.jsonl")
    cfg = GenerateConfig(
        num_instructions=args.kept,
        num_tasks=20,
        num_prompt_instructions=3,
        request_batch_size=args.batch,
        max_rounds=10_000,
        avg_similarity=args.avg,
    )
    teacher = InstantTeacher(pool_texts, 17)
    print(f"pool {len(pool)}, target {args.kept} kept, {args.batch} requests per round, avg_similarity {args.avg}")

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("no store", "first run, storing", "rerun, replaying"):
            store = ResponseCache(Path(tmp) / "generate.sqlite") if name != "no store" else None
            teacher.seconds = 0.0
            start = time.perf_counter()
            rows, metrics = generate(teacher, seeds, pool, cfg, decisions=store)
            seconds = time.perf_counter() - start - teacher.seconds
            if store is not None:
                store.close()
            results[name] = (rows, metrics)
            candidates = metrics["kept"] + metrics["rejected_by_reason"]["rouge_similar"]
            print(
                f"{name:20s} {seconds:8.2f} s  {1000 * seconds / candidates:6.3f} ms per filtered candidate "
                f"({candidates} candidates, {metrics['rounds']} rounds, {metrics['kept']} kept)"
            )
        size = (Path(tmp) / "generate.sqlite").stat().st_size
    print(f"teacher cache file with the stored rounds (answers are not cached here): {size / 2**10:.0f} KB")
    first = results["no store"]
    assert all(r == first for r in results.values()), "rows or metrics differ between the runs"
    print("rows and metrics identical in all three runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())

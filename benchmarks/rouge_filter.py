"""Benchmark: Alpaca's ROUGE-L filter (rouge-score against the whole pool) vs okapi.rouge_filter, side by side.

Both run the same candidate stream against the same synthetic pool; every kept candidate joins the pool, as in
Self-Instruct. The script asserts that the two agree on every decision, every maximum score (bit for bit), every
top-10 list of scores and (in the second pass of ours) every average similarity, then prints the speed ratio.

    .venv/bin/python benchmarks/rouge_filter.py                      # 50K pool, 300 candidates (several minutes)
    .venv/bin/python benchmarks/rouge_filter.py --pool-size 2000     # quick run
    .venv/bin/python benchmarks/rouge_filter.py --baseline main --pool-size 150000 --candidates 400 --no-reference

``--baseline REV`` also runs okapi/rouge_filter.py as it was at git revision REV on the same stream, the two
interleaved candidate by candidate (so a noisy machine slows both alike), and asserts identical outputs.

The reference follows Alpaca's generate_instruction.py: tokens from the scorer's tokenizer, then
``rouge_scorer._score_lcs(new_tokens, pool_tokens)`` mapped over the whole pool with a multiprocessing Pool of
``--ref-procs`` workers (Alpaca uses all CPUs; 1 = a plain loop in this process).
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
from rouge_score import rouge_scorer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from okapi.rouge_filter import RougeFilter  # noqa: E402

FUNCTION_WORDS = (
    "the a of to and in for is that with on as be this an by or from it your are which following each what how "
    "given into list about one two three its their between using can"
).split()
VERBS = (
    "write explain describe classify summarize translate identify generate create rewrite compare find list suggest "
    "give edit convert calculate name design outline predict analyze extract determine provide answer"
).split()


def make_vocabulary(rng: random.Random, size: int) -> list[str]:
    syllables = ["ka", "lo", "mi", "ren", "tus", "bar", "el", "on", "qui", "sta", "der", "vel", "mo", "an", "ti", "gre"]
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(words)


class SentenceMaker:
    """Instruction-like sentences: a verb, Zipf-distributed content words and frequent function words."""

    def __init__(self, rng: random.Random, vocab_size: int = 6000) -> None:
        self.rng = rng
        self.vocab = make_vocabulary(rng, vocab_size)
        weights = 1.0 / np.arange(1, len(self.vocab) + 1) ** 1.05
        self.cum = np.cumsum(weights / weights.sum())
        fweights = 1.0 / np.arange(1, len(FUNCTION_WORDS) + 1) ** 0.8
        self.fcum = np.cumsum(fweights / fweights.sum())

    def _pick(self, cum: np.ndarray, words: list[str]) -> str:
        return words[min(int(np.searchsorted(cum, self.rng.random())), len(words) - 1)]

    def sentence(self) -> str:
        length = max(4, min(40, int(self.rng.lognormvariate(2.45, 0.45))))
        words = [self.rng.choice(VERBS).capitalize()]
        for _ in range(length - 1):
            if self.rng.random() < 0.4:
                words.append(self._pick(self.fcum, FUNCTION_WORDS))
            else:
                words.append(self._pick(self.cum, self.vocab))
        return " ".join(words) + self.rng.choice([".", "?", ":", "."])

    def mutate(self, text: str, edits: int) -> str:
        words = text.rstrip(".?:").split()
        for _ in range(edits):
            op = self.rng.random()
            pos = self.rng.randrange(len(words)) if words else 0
            if op < 0.4 and words:
                words[pos] = self._pick(self.cum, self.vocab)
            elif op < 0.7:
                words.insert(pos, self._pick(self.fcum, FUNCTION_WORDS))
            elif len(words) > 1:
                del words[pos]
        return " ".join(words) + "."


def make_data(pool_size: int, num_candidates: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    maker = SentenceMaker(rng)
    pool = [maker.sentence() for _ in range(pool_size)]
    adversarial = [
        "",
        "!!! ??? ...",
        "Объясните разницу между ними.",
        "the the the the the the",
        "a " * 70,
        "中文 指令",
    ]
    candidates: list[str] = []
    for i in range(num_candidates):
        r = rng.random()
        if i < len(adversarial):
            candidates.append(adversarial[i])
        elif r < 0.35:
            candidates.append(maker.sentence())
        elif r < 0.70:
            candidates.append(maker.mutate(rng.choice(pool), rng.randint(1, 6)))
        elif r < 0.80 and candidates:
            candidates.append(maker.mutate(rng.choice(candidates), rng.randint(1, 4)))
        elif r < 0.85:
            candidates.append(rng.choice(pool))
        else:
            words = rng.choice(pool).split()
            rng.shuffle(words)
            candidates.append(" ".join(words))
    return pool, candidates


def run_reference(pool: list[str], candidates: list[str], threshold: float, procs: int) -> tuple[list[tuple], float]:
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    all_tokens = [scorer._tokenizer.tokenize(text) for text in pool]
    results = []
    start = time.perf_counter()
    workers = multiprocessing.Pool(procs) if procs > 1 else None
    try:
        for text in candidates:
            tokens = scorer._tokenizer.tokenize(text)
            score_fn = partial(rouge_scorer._score_lcs, tokens)
            scores = workers.map(score_fn, all_tokens) if workers else [score_fn(t) for t in all_tokens]
            f = [s.fmeasure for s in scores]
            best = max(f)
            kept = not best > threshold
            results.append((kept, best, sorted(f)[-10:], float(np.mean(f))))
            if kept:
                all_tokens.append(tokens)
    finally:
        if workers:
            workers.close()
            workers.join()
    return results, time.perf_counter() - start


def run_ours(pool: list[str], candidates: list[str], threshold: float, with_avg: bool) -> tuple[list[tuple], float]:
    filt = RougeFilter(threshold)
    filt.add_many(pool)  # index building is done once per run; timed separately below
    results = []
    start = time.perf_counter()
    for text in candidates:
        kept, best, similar, avg = filt.consider(text, with_avg=with_avg)
        results.append((kept, best, sorted(s for _, s in similar), avg))
    return results, time.perf_counter() - start


def run_against(pool: list[str], candidates: list[str], threshold: float, with_avg: bool, rev: str) -> None:
    """This checkout's RougeFilter vs the one at git revision ``rev``, interleaved; outputs must be identical."""
    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(
        ["git", "show", f"{rev}:okapi/rouge_filter.py"], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rouge_filter_baseline.py"
        path.write_text(source, encoding="utf-8")
        spec = importlib.util.spec_from_file_location("rouge_filter_baseline", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    old, new = module.RougeFilter(threshold), RougeFilter(threshold)
    old.add_many(pool)
    new.add_many(pool)
    spent = {"old": 0.0, "new": 0.0}
    for i, text in enumerate(candidates):
        results = {}
        for name in ("old", "new") if i % 2 else ("new", "old"):
            filt = old if name == "old" else new
            start = time.perf_counter()
            results[name] = filt.consider(text, with_avg=with_avg)
            spent[name] += time.perf_counter() - start
        assert results["old"] == results["new"], f"candidate {i} differs: {results}"
    n = len(candidates)
    print(
        f"{rev} vs this checkout{' (+ average)' if with_avg else ''}: {1000 * spent['old'] / n:.2f} vs "
        f"{1000 * spent['new'] / n:.2f} ms/candidate ({spent['old'] / spent['new']:.2f}x), all {n} outputs identical"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool-size", type=int, default=50_000)
    parser.add_argument("--candidates", type=int, default=300)
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--ref-procs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline", metavar="REV", help="also time okapi/rouge_filter.py at this git revision")
    parser.add_argument(
        "--no-reference",
        action="store_true",
        help="stop before the reference comparison (rouge-score is slow at a large pool)",
    )
    args = parser.parse_args()

    pool, candidates = make_data(args.pool_size, args.candidates, args.seed)
    if args.baseline:
        for with_avg in (False, True):
            run_against(pool, candidates, args.threshold, with_avg, args.baseline)
    if args.no_reference:
        return 0
    t0 = time.perf_counter()
    RougeFilter(args.threshold).add_many(pool)
    build_s = time.perf_counter() - t0
    print(f"pool {len(pool)}, candidates {len(candidates)}, threshold {args.threshold}")
    print(f"index build (once per run): {build_s:.2f}s")

    ours, ours_s = run_ours(pool, candidates, args.threshold, with_avg=False)
    print(f"ours (decision, max, top-10):        {ours_s:8.2f}s  {1000 * ours_s / len(candidates):8.2f} ms/candidate")
    ours_avg, ours_avg_s = run_ours(pool, candidates, args.threshold, with_avg=True)
    print(
        f"ours (+ exact average similarity):   {ours_avg_s:8.2f}s  "
        f"{1000 * ours_avg_s / len(candidates):8.2f} ms/candidate"
    )
    ref, ref_s = run_reference(pool, candidates, args.threshold, args.ref_procs)
    print(
        f"reference (rouge-score, {args.ref_procs} proc):    {ref_s:8.2f}s  "
        f"{1000 * ref_s / len(candidates):8.2f} ms/candidate"
    )

    mismatches = 0
    for i, (r, o, oa) in enumerate(zip(ref, ours, ours_avg, strict=True)):
        ok = r[0] == o[0] == oa[0] and r[1] == o[1] == oa[1] and r[2] == o[2] == oa[2] and r[3] == oa[3]
        if not ok:
            mismatches += 1
            print(f"MISMATCH candidate {i}: reference {r} ours {o} ours+avg {oa}")
    kept = sum(r[0] for r in ref)
    print(f"decisions: {kept} kept, {len(ref) - kept} rejected; mismatches: {mismatches}")
    print(f"speed ratio (reference / ours): {ref_s / ours_s:.0f}x; with average: {ref_s / ours_avg_s:.0f}x")
    assert mismatches == 0, "decisions or scores differ from rouge-score"
    return 0


if __name__ == "__main__":
    sys.exit(main())

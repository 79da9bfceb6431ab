"""Evaluation cost of each protocol: characters the model reads per scored document, side by side.

Multiple choice scores one (context, continuation) request per option, so what a protocol costs is about
options x (context + continuation) tokens per document; the context grows with the shots. This script builds every
protocol's contexts the way the harness does (each shot: query, " ", gold continuation; blocks joined by a blank
line) from okapi.protocols' own record functions, on English records (default: the embedded samples in
data/eval_sources, shots drawn from the same file, the scored record left out, for the measurement only), and
prints the mean characters per document and the ratio to lm_eval_okapi's zero-shot cost. No model is loaded; with
``--tokenizer DIR`` it also counts tokens with that tokenizer.

Usage (from the repository root):
    .venv/bin/python benchmarks/eval_protocol_cost.py [--sources data/eval_sources] [--tokenizer models/base]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from okapi.io import read_jsonl
from okapi.protocols import BENCHMARKS, PROTOCOL_NAMES, doc_function, get_protocol


def document_cost(name: str, bench: str, records: list[dict], seed: int, count) -> float:
    """Mean of sum over options of count(context + " " + option), per scored record."""
    make = doc_function(name, bench)
    docs = [make(r) for r in records]
    shots = get_protocol(name, bench).shots
    rnd = random.Random(seed)
    total = 0.0
    for i, doc in enumerate(docs):
        pool = docs[:i] + docs[i + 1 :]
        k = min(shots, len(pool))
        chosen = pool[:k] if get_protocol(name, bench).sampler == "first_n" else rnd.sample(pool, k)
        blocks = [d["query"] + " " + d["choices"][d["gold"]] for d in chosen] + [doc["query"]]
        context = "\n\n".join(blocks)
        total += sum(count(context + " " + c) for c in doc["choices"])
    return total / len(docs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sources", type=Path, default=Path("data/eval_sources"))
    p.add_argument("--tokenizer", type=Path, default=None, help="a tokenizer folder (e.g. models/base)")
    p.add_argument("--seed", type=int, default=1234)
    args = p.parse_args()
    counters = {"chars": len}
    if args.tokenizer is not None:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(args.tokenizer)
        counters["tokens"] = lambda text: len(tok(text, add_special_tokens=False)["input_ids"])
    records = {b: read_jsonl(args.sources / f"{b}.jsonl") for b in BENCHMARKS}
    out: dict = {}
    for unit, count in counters.items():
        base = {b: document_cost("lm_eval_okapi", b, records[b], args.seed, count) for b in BENCHMARKS}
        for name in PROTOCOL_NAMES:
            for b in BENCHMARKS:
                cost = document_cost(name, b, records[b], args.seed, count)
                out.setdefault(unit, {}).setdefault(name, {})[b] = {
                    "shots": min(get_protocol(name, b).shots, len(records[b]) - 1),
                    "per_document": round(cost, 1),
                    "x_lm_eval_okapi": round(cost / base[b], 1),
                }
    print(json.dumps({"records": {b: len(r) for b, r in records.items()}, **out}, indent=2))


if __name__ == "__main__":
    main()

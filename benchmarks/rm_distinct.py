"""Reward-model training with each distinct sequence of a batch through the model once vs. every pair side, side by
side on the same pairs.

With ``rank.pairs: all`` a prompt's T responses make C(T, 2) pairs, and TRL's collator stacks both sides of every
pair: a batch repeats each response up to T - 1 times. okapi.reward._DistinctRows runs the model on the distinct
rows only. This trains the reward model of a language from the committed pipeline (its SFT model and pairs) both
ways, alternating, one thread each, and reports the wall time of each run, their ratio, and the largest difference
in the logged losses and held-out figures.

    .venv/bin/python benchmarks/rm_distinct.py [--lang vi] [--repeats 1] [--threads 1] [--per-device 8]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class _EveryRow:
    """The old path: every row of the batch through the model."""

    def __init__(self, model):  # type: ignore[no-untyped-def]
        self.model = model

    def __call__(self, **inputs):  # type: ignore[no-untyped-def]
        return self.model(**inputs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lang", default="vi")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--per-device", type=int, default=None, help="rm.per_device_train_batch_size override")
    args = parser.parse_args()

    import torch

    import okapi.reward as reward
    from okapi.io import read_rows
    from okapi.params import load_params
    from okapi.schemas import PAIRS

    torch.set_num_threads(args.threads)
    pairs = read_rows(ROOT / "data/rankings" / args.lang / "pairs.parquet", PAIRS)
    cfg = load_params(ROOT / "params.yaml", lang=args.lang, sections=("rm",)).section("rm")
    if args.per_device:
        cfg = dataclasses.replace(cfg, per_device_train_batch_size=args.per_device)
    distinct = reward._DistinctRows
    times: dict[str, list[float]] = {"every row": [], "distinct rows": []}
    metrics: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for name, cls in (("every row", _EveryRow), ("distinct rows", distinct)):
                reward._DistinctRows = cls
                t0 = time.perf_counter()
                metrics[name] = reward.train_reward_model(
                    ROOT / "models" / args.lang / "sft", pairs, Path(tmp) / f"{r}-{len(times[name])}", cfg
                )
                times[name].append(time.perf_counter() - t0)
                print(f"{name}: {times[name][-1]:.1f} s", flush=True)
    reward._DistinctRows = distinct
    a, b = (statistics.median(times[k]) for k in ("every row", "distinct rows"))
    keys = sorted(k for k, v in metrics["every row"].items() if isinstance(v, float))
    diff = {k: abs(metrics["every row"][k] - metrics["distinct rows"][k]) for k in keys}
    print(
        json.dumps(
            {
                "lang": args.lang,
                "pairs": len(pairs),
                "threads": args.threads,
                "per_device_train_batch_size": cfg.per_device_train_batch_size,
                "batch_size": cfg.batch_size,
                "every_row_s": times["every row"],
                "distinct_rows_s": times["distinct rows"],
                "speedup": round(a / b, 3),
                "largest_metric_difference": max(diff.items(), key=lambda kv: kv[1]),
                "every_row": {k: metrics["every row"][k] for k in keys},
                "distinct_rows": {k: metrics["distinct rows"][k] for k in keys},
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

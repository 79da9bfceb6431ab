"""SFT with each effective batch split into micro-batches by length (``sft.batching: rebalance``) vs. random
micro-batches, side by side on the same rows.

With per_device_train_batch_size below batch_size every micro-batch is padded to its longest row; random
micro-batches mix short and long rows. This trains a section (default ``sft_full``) of a language from the
committed pipeline's rows both ways, alternating, one thread each, and reports per run the wall time of
``trainer.train()``, the tokens of the first epoch's micro-batches (padded, and real), and the logged losses.

    .venv/bin/python benchmarks/sft_batching.py [--lang es] [--section sft_full] [--repeats 1] [--threads 1]
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

DATA = {"sft": "sft.parquet", "sft_full": "full.parquet"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lang", default="es")
    parser.add_argument("--section", default="sft_full", choices=sorted(DATA))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from okapi.io import read_rows
    from okapi.params import load_params
    from okapi.schemas import PROMPTS
    from okapi.sft import build_sft_trainer
    from okapi.training import loss_history

    torch.set_num_threads(args.threads)
    rows = read_rows(ROOT / "data/translated" / args.lang / DATA[args.section], PROMPTS)
    cfg = load_params(ROOT / "params.yaml", lang=args.lang, sections=(args.section,)).section(args.section)
    results: dict[str, dict] = {
        b: {"train_s": [], "padded_tokens": [], "real_tokens": []} for b in ("random", "rebalance")
    }
    for _ in range(args.repeats):
        for batching in results:
            with tempfile.TemporaryDirectory() as tmp:
                trainer = build_sft_trainer(
                    ROOT / "models/base", rows, Path(tmp) / "out", dataclasses.replace(cfg, batching=batching)
                )
                loader = trainer.get_train_dataloader()
                masks = [b["attention_mask"] for b in loader]
                results[batching]["padded_tokens"].append(sum(m.numel() for m in masks))
                results[batching]["real_tokens"].append(sum(int(m.sum()) for m in masks))
                start = time.perf_counter()
                trainer.train()
                results[batching]["train_s"].append(round(time.perf_counter() - start, 1))
                results[batching]["losses"] = [round(x, 4) for x in loss_history(trainer)]
    summary = {
        "lang": args.lang,
        "section": args.section,
        "rows": len(rows),
        "threads": args.threads,
        **results,
        "ratio_train_s": round(
            statistics.median(results["random"]["train_s"]) / statistics.median(results["rebalance"]["train_s"]), 2
        ),
    }
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

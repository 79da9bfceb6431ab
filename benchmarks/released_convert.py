"""Time and memory of `released@<lang>` at the release's real sizes, on synthetic files in the release's layout.

One language of Okapi's release holds about 52K Alpaca instructions, 64K RL-tuning prompts and 42K ranking pairs,
plus the translated evaluation sets (ARC test ~1.2K + train ~1.1K, MMLU test ~14K + dev 285, HellaSwag val ~10K).
This script writes files of those sizes (texts of Alpaca-like length, a share of non-string values to cast), then
runs :func:`okapi.released.convert_language` on them and reports wall time, rows per second and peak RSS.
Nothing is compared: there is no other converter to compare with; the figure says whether converting is a cost
worth caching (it is a DVC stage, so it reruns only when its inputs change).

Usage (from the repository root):
    .venv/bin/python benchmarks/released_convert.py                 # release sizes
    .venv/bin/python benchmarks/released_convert.py --scale 0.1     # a tenth of them
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from okapi.released import DATASETS, EVAL_DIR, EVAL_FILES, ReleasedConfig, convert_language  # noqa: E402

SIZES = {"alpaca": 52_002, "rl": 64_000, "ranking": 42_000}
EVAL_SIZES = {
    ("arc", "test"): 1_172,
    ("arc", "train"): 1_119,
    ("mmlu", "test"): 14_042,
    ("mmlu", "dev"): 285,
    ("hellaswag", "val"): 10_042,
}
WORDS = "một hai ba bốn năm sáu bảy tám chín mười người nhà nước thời gian công việc câu trả lời".split()


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def write_release(root: Path, lang: str, scale: float, seed: int = 0) -> int:
    rng = random.Random(seed)
    total = 0
    for kind, size in SIZES.items():
        n = max(1, int(size * scale))
        records = []
        for i in range(n):
            if kind == "ranking":
                rec = {
                    "instruction": _text(rng, 15),
                    "input": _text(rng, 8) if i % 3 == 0 else "",
                    "prefered_output": _text(rng, 60),
                    "rejected_output": _text(rng, 50),
                }
            else:
                output: object = i if i % 50 == 0 else _text(rng, 60)  # 2 % numbers, as in the release
                rec = {"instruction": _text(rng, 15), "input": _text(rng, 8) if i % 3 == 0 else "", "output": output}
            records.append(rec)
        path = root / DATASETS[kind] / f"{lang}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
        total += n
    for (bench, split), size in EVAL_SIZES.items():
        n = max(1, int(size * scale))
        if bench == "hellaswag":
            records = [
                {
                    "ind": i,
                    "activity_label": "x",
                    "ctx_a": _text(rng, 10),
                    "ctx_b": _text(rng, 3),
                    "ctx": _text(rng, 13),
                    "endings": [_text(rng, 12) for _ in range(4)],
                    "source_id": "s",
                    "split": "val",
                    "split_type": "indomain",
                    "label": str(i % 4),
                }
                for i in range(n)
            ]
        else:
            records = [
                {
                    "id": f"{bench}-{split}-{i}",
                    "answer": "ABCD"[i % 4],
                    "instruction": _text(rng, 20),
                    **{f"option_{c}": _text(rng, 5) for c in "abcd"},
                }
                for i in range(n)
            ]
        path = root / EVAL_DIR / EVAL_FILES[bench][0] / f"{lang}_{split}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
        total += n
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "released"
        rows = write_release(root, "vi", args.scale)
        size_mb = sum(p.stat().st_size for p in root.rglob("*.json")) / 1e6
        start = time.perf_counter()
        metrics = convert_language(root, "vi", Path(tmp) / "out", ReleasedConfig(use=True))
        seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "rows": rows,
        "input_mb": round(size_mb, 1),
        "seconds": round(seconds, 2),
        "rows_per_second": round(rows / seconds),
        "peak_rss_mb": round(peak_mb),
        "splits": metrics["splits"],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

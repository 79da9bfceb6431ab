"""Sampling with each distinct prompt computed once vs generate() computing every copy, side by side.

The sample stage asks for T = sample.num_responses responses per prompt, and PPO's held-out comparison samples each
held-out prompt ppo.heldout_samples times; generate() on its own prefills every copy of a prompt. okapi.sampling
.generate now computes each distinct prompt once and copies its keys and values (_shared_prefill). This times both
ways, alternating, with the same seed, on the committed pipeline's SFT model and prompts: the sample stage's calls
(rank prompts, sample.batch_size prompts a call) and PPO's held-out calls (ppo.eval_batch_size sequences a call),
and says whether the sampled tokens are the same.

    .venv/bin/python benchmarks/shared_prefill.py [--lang es] [--repeats 2] [--threads 1] [--root .]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lang", default="es")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--root", type=Path, default=ROOT, help="a checkout with the pipeline's outputs")
    args = parser.parse_args()

    import torch

    from okapi.io import read_rows
    from okapi.modeling import load_causal_lm
    from okapi.params import load_params
    from okapi.ppo.heldout import split_heldout_prompts
    from okapi.prompting import format_prompt
    from okapi.sampling import encode_prompts, generate
    from okapi.schemas import PROMPTS

    torch.set_num_threads(args.threads)
    params = load_params(args.root / "params.yaml", lang=args.lang, sections=("sample", "ppo"))
    sample, ppo = params.section("sample"), params.section("ppo")
    lm, tok = load_causal_lm(args.root / "models" / args.lang / "sft", for_training=False)
    device = torch.device("cpu")
    data = args.root / "data/translated" / args.lang

    def prompts_of(rows: list[dict]) -> list[str]:
        return [format_prompt(r["instruction"], r.get("input")) for r in rows]

    rank = prompts_of(read_rows(data / "rank.parquet", PROMPTS))
    _train, heldout_rows = split_heldout_prompts(
        read_rows(data / "ppo.parquet", PROMPTS), ppo.heldout_fraction, ppo.seed
    )
    heldout = [p for p in prompts_of(heldout_rows) for _ in range(ppo.heldout_samples)]
    # (name, prompt batches, samples per prompt, max new tokens, top_p), as the stages call generate()
    calls = [
        ("sample stage", [rank[i : i + sample.batch_size] for i in range(0, len(rank), sample.batch_size)],
         sample.num_responses, sample.max_new_tokens, sample.top_p),
        ("ppo held-out", [heldout[i : i + ppo.eval_batch_size] for i in range(0, len(heldout), ppo.eval_batch_size)],
         1, ppo.max_new_tokens, ppo.top_p),
    ]  # fmt: skip

    def run(batches: list[list[str]], n: int, new: int, top_p: float, share: bool) -> tuple[float, list]:
        out = []
        t0 = time.perf_counter()
        for b, batch in enumerate(batches):
            ids, mask = encode_prompts(tok, batch, device)
            torch.manual_seed(b)
            out.append(
                generate(lm, tok, ids, mask, max_new_tokens=new, temperature=1.0, top_p=top_p,
                         num_return_sequences=n, share_prompts=share)
            )  # fmt: skip
        return time.perf_counter() - t0, out

    report = {"lang": args.lang, "threads": args.threads}
    for name, batches, n, new, top_p in calls:
        times: dict[str, list[float]] = {"every copy": [], "shared": []}
        outs = {}
        for _ in range(args.repeats):
            for mode in times:
                seconds, outs[mode] = run(batches, n, new, top_p, mode == "shared")
                times[mode].append(round(seconds, 2))
                print(f"{name}, {mode}: {seconds:.2f} s", flush=True)
        a, b = (statistics.median(times[m]) for m in times)
        report[name] = {
            "calls": len(batches),
            "sequences": sum(len(x) for x in batches) * n,
            "every_copy_s": times["every copy"],
            "shared_s": times["shared"],
            "speedup": round(a / b, 3),
            "same_tokens": all(torch.equal(x, y) for x, y in zip(outs["every copy"], outs["shared"], strict=True)),
        }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

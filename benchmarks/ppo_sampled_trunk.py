"""PPO's sample + rollout with the frozen trunk captured while sampling vs. run again in the rollout, side by side.

Only the top ``ppo.top_layers`` blocks train, so the hidden states entering them are fixed by the sampled tokens:
generate() has already computed them (the prompt's prefill and each decoded token). okapi.ppo.rollout
.sample_with_trunk keeps them, and make_rollout then skips its own pass over the trunk. This times one PPO
step's sampling and rollout both ways on the committed pipeline's SFT model and PPO prompts (one thread, the same
seed for both, alternating), and reports the medians, their ratio and the largest difference in the rollout's
log-probs and values.

    .venv/bin/python benchmarks/ppo_sampled_trunk.py [--lang vi] [--repeats 3] [--threads 1]
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
    parser.add_argument("--lang", default="vi")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from okapi.io import read_rows
    from okapi.modeling import load_causal_lm
    from okapi.params import load_params
    from okapi.ppo import PolicyWithValue
    from okapi.ppo.rollout import make_rollout, prompt_texts, sample_responses, sample_with_trunk
    from okapi.schemas import PROMPTS

    torch.set_num_threads(args.threads)
    cfg = load_params(ROOT / "params.yaml", lang=args.lang, sections=("ppo",)).section("ppo")
    lm, tok = load_causal_lm(ROOT / "models" / args.lang / "sft", for_training=False)
    lm.config.use_cache = True
    policy = PolicyWithValue(lm, cfg.top_layers)
    rows = read_rows(ROOT / "data/translated" / args.lang / "ppo.parquet", PROMPTS)
    texts, _ = prompt_texts(rows, tok, cfg.max_prompt_length, "PPO prompt")
    texts = texts[: cfg.batch_size]
    device = torch.device("cpu")
    scores = torch.zeros(len(texts))

    def step(captured: bool) -> tuple[float, object]:
        torch.manual_seed(0)
        t0 = time.perf_counter()
        if captured:
            ids, pmask, resp, mask, _t, trunk = sample_with_trunk(policy, tok, texts, cfg, device)
        else:
            (ids, pmask, resp, mask, _t), trunk = sample_responses(lm, tok, texts, cfg, device), None
        rollout = make_rollout(policy, ids, pmask, resp, mask, scores, cfg, sampled_trunk=trunk)
        return time.perf_counter() - t0, rollout

    step(False)  # warm-up; also settles check_trunk_replay (on for Llama)
    times: dict[str, list[float]] = {"recomputed": [], "captured": []}
    out = {}
    for _ in range(args.repeats):
        for name in times:
            seconds, out[name] = step(name == "captured")
            times[name].append(seconds)
            print(f"{name}: {seconds:.2f} s", flush=True)
    a, b = out["recomputed"], out["captured"]
    diff = {
        k: float((getattr(a, k) - getattr(b, k)).abs().max()) for k in ("old_logp", "ref_logp", "old_values", "returns")
    }
    ra, rb = (statistics.median(times[k]) for k in times)
    print(
        json.dumps(
            {
                "lang": args.lang,
                "batch": len(texts),
                "prompt_tokens": int(a.attention_mask[:, : a.response_start].sum()),
                "response_tokens": int(a.mask.sum()),
                "threads": args.threads,
                "recomputed_s": times["recomputed"],
                "captured_s": times["captured"],
                "speedup": round(ra / rb, 3),
                "saved_s_per_step": round(ra - rb, 2),
                "same_samples": bool(torch.equal(a.responses, b.responses)),
                "largest_difference": diff,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

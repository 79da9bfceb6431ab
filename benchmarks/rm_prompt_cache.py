"""PPO's reward scoring with the prompts' tokens kept (ppo.rm_prompt_cache) vs every sequence scored whole.

PPO scores the responses to the same ppo.batch_size training prompts at every step, and each held-out prompt's
ppo.heldout_samples responses before and after training. okapi.reward.PromptCachedScorer keeps each prompt's
keys and values and runs only the response's tokens. This replays a PPO run's scoring on the committed pipeline's
reward model and PPO prompts (responses sampled once from the SFT policy per step, with PPO's sampling settings),
both ways, alternating, one thread, and reports the times and the largest score difference.

    .venv/bin/python benchmarks/rm_prompt_cache.py [--lang es] [--repeats 2] [--root .]
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
    from okapi.ppo.rollout import prompt_texts, sample_responses
    from okapi.reward import PromptCachedScorer, load_reward_model
    from okapi.schemas import PROMPTS

    torch.set_num_threads(args.threads)
    cfg = load_params(args.root / "params.yaml", lang=args.lang, sections=("ppo",)).section("ppo")
    lm, tok = load_causal_lm(args.root / "models" / args.lang / "sft", for_training=False)
    rm, rm_tok = load_reward_model(args.root / "models" / args.lang / "rm")
    train, heldout = split_heldout_prompts(
        read_rows(args.root / "data/translated" / args.lang / "ppo.parquet", PROMPTS), cfg.heldout_fraction, cfg.seed
    )
    train_texts = prompt_texts(train, tok, cfg.max_prompt_length, "PPO prompt")[0][: cfg.batch_size]
    held_texts = [p for p in prompt_texts(heldout, tok, cfg.max_prompt_length, "PPO prompt")[0]]
    held_texts = [p for p in held_texts for _ in range(cfg.heldout_samples)]
    device = torch.device("cpu")
    calls: list[tuple[list[str], list[str]]] = []  # (prompts, responses) in a PPO run's order
    for step, prompts in enumerate([held_texts] + [train_texts] * cfg.epochs + [held_texts]):
        torch.manual_seed(step)
        calls.append((prompts, sample_responses(lm, tok, prompts, cfg, device)[-1]))

    def replay(max_prompts: int) -> tuple[float, list[float]]:
        scorer = PromptCachedScorer(rm, rm_tok, batch_size=cfg.rm_batch_size, max_prompts=max_prompts)
        t0 = time.perf_counter()
        scores = [s for prompts, responses in calls for s in scorer(prompts, responses)]
        return time.perf_counter() - t0, scores

    replay(0)  # warm-up
    times: dict[int, list[float]] = {0: [], cfg.rm_prompt_cache or 16: []}
    scores = {}
    for _ in range(args.repeats):
        for keep in times:
            seconds, scores[keep] = replay(keep)
            times[keep].append(round(seconds, 2))
            print(f"rm_prompt_cache {keep}: {seconds:.2f} s", flush=True)
    whole, kept = (statistics.median(v) for v in times.values())
    a, b = scores.values()
    print(
        json.dumps(
            {
                "lang": args.lang,
                "calls": len(calls),
                "sequences": sum(len(p) for p, _ in calls),
                "times_s": {str(k): v for k, v in times.items()},
                "speedup": round(whole / kept, 3),
                "largest_score_difference": max(abs(x - y) for x, y in zip(a, b, strict=True)),
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

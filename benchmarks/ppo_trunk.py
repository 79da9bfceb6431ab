"""Time of one PPO step's forward and update passes with the frozen trunk replayed vs. recomputed, side by side.

Only the top ``top_layers`` blocks train, so the hidden states entering them are the same for the rollout's policy
pass, its reference pass and every update epoch (okapi.ppo.policy.PolicyWithValue.trunk). This runs make_rollout +
ppo_update on identical inputs (SmolLM2-135M's architecture, random init, a seeded batch of fixed prompt and
response ids: nothing is generated) with replay on and off, alternating, and reports the median of each and their
ratio. It also checks that both give the same old/ref log-probs and values.

    .venv/bin/python benchmarks/ppo_trunk.py [--repeats 3] [--batch 4] [--prompt 96] [--response 32]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.ppo_memory import PRESETS  # noqa: E402
from okapi.ppo import PolicyWithValue, PPOConfig  # noqa: E402
from okapi.ppo.rollout import make_optimizer, make_rollout, ppo_update  # noqa: E402


class _NoAccelerator:
    """What ppo_update needs of an Accelerator on one CPU process."""

    def autocast(self):
        return torch.autocast("cpu", enabled=False)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def clip_grad_norm_(self, params, max_norm: float) -> None:
        torch.nn.utils.clip_grad_norm_(params, max_norm)


def build(replay: bool) -> PolicyWithValue:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(**PRESETS["smollm2-135m"]))
    policy = PolicyWithValue(lm, top_layers=4)
    policy.trunk_replay = replay  # as check_trunk_replay would decide for this (Llama) architecture
    return policy


def one_step(policy: PolicyWithValue, cfg: PPOConfig, args: argparse.Namespace) -> tuple[float, object]:
    gen = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, 49152, (args.batch, args.prompt), generator=gen)
    pmask = torch.ones_like(prompt)
    resp = torch.randint(0, 49152, (args.batch, args.response), generator=gen)
    mask = torch.ones_like(resp)
    scores = torch.randn(args.batch, generator=gen)
    optimizer = make_optimizer(policy, cfg)
    t0 = time.perf_counter()
    rollout = make_rollout(policy, prompt, pmask, resp, mask, scores, cfg)
    ppo_update(policy, optimizer, rollout, cfg, _NoAccelerator())
    return time.perf_counter() - t0, rollout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4, help="ppo.batch_size of the embedded default")
    ap.add_argument("--prompt", type=int, default=96)
    ap.add_argument("--response", type=int, default=32, help="ppo.max_new_tokens of the embedded default")
    args = ap.parse_args()
    cfg = PPOConfig(batch_size=args.batch, mini_batch_size=args.batch, ppo_epochs=2)
    times: dict[bool, list[float]] = {True: [], False: []}
    first: dict[bool, object] = {}
    for _ in range(args.repeats):
        for replay in (False, True):
            policy = build(replay)  # fresh weights each time: every step starts from the same policy
            seconds, rollout = one_step(policy, cfg, args)
            times[replay].append(seconds)
            first.setdefault(replay, rollout)
    full, fast = statistics.median(times[False]), statistics.median(times[True])
    same = all(
        torch.allclose(getattr(first[True], k), getattr(first[False], k), atol=1e-5)
        for k in ("old_logp", "ref_logp", "old_values")
    )
    print(f"batch {args.batch} x ({args.prompt} + {args.response}) tokens, top 4 of 30 blocks, 2 PPO epochs")
    print(f"trunk recomputed: {full:.2f} s (runs {', '.join(f'{t:.2f}' for t in times[False])})")
    print(f"trunk replayed:   {fast:.2f} s (runs {', '.join(f'{t:.2f}' for t in times[True])})")
    print(f"speed-up x{full / fast:.2f}; same log-probs and values: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

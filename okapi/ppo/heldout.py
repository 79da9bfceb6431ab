"""The held-out prompts: which are held out, and the reward and KL of a policy's samples on them."""

from __future__ import annotations

from typing import Any

import torch

from okapi.ppo.config import PPOConfig, RewardFn
from okapi.ppo.policy import PolicyWithValue
from okapi.ppo.rollout import sample_responses, sequence_inputs
from okapi.splits import split_by_prompt


def split_heldout_prompts(
    rows: list[dict[str, Any]], fraction: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, heldout) rows split by prompt (instruction and input, not id): ``ceil(fraction x prompts)`` held
    out, at least one, and at least one left to train on; no prompt is on both sides (okapi.splits)."""
    return split_by_prompt(rows, fraction, seed, min_heldout=1)


@torch.no_grad()
def sequence_kl(
    policy: PolicyWithValue,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    responses: torch.Tensor,
    mask: torch.Tensor,
    cfg: PPOConfig,
) -> torch.Tensor:
    """KL(policy || reference) per sequence [B]: the exact KL of the next-token distributions, summed over the
    states a policy sample visits (responses must come from the policy). Unlike the sampled-token estimate
    ``log pi(y_t) - log pi_ref(y_t)`` it is never negative and stays steady on a handful of held-out samples."""
    ids, attn, pos = sequence_inputs(prompt_ids, prompt_mask, responses, mask)
    start = prompt_ids.shape[1]
    out = []
    for i in range(0, ids.shape[0], cfg.mini_batch_size):
        sl = slice(i, i + cfg.mini_batch_size)
        trunk = policy.trunk(ids[sl], attn[sl], pos[sl])
        logits, _ = policy(ids[sl], attn[sl], pos[sl], start, trunk=trunk)
        ref_logits, _ = policy(ids[sl], attn[sl], pos[sl], start, reference=True, trunk=trunk)
        logp = torch.log_softmax(logits.float() / cfg.temperature, dim=-1)
        ref_logp = torch.log_softmax(ref_logits.float() / cfg.temperature, dim=-1)
        per_state = (logp.exp() * (logp - ref_logp)).sum(-1)
        out.append((per_state * mask[sl].float()).sum(1))
    return torch.cat(out)


def evaluate_heldout(
    lm: Any,
    tokenizer: Any,
    prompts: list[str],
    reward_fn: RewardFn,
    cfg: PPOConfig,
    accelerator: Any,
    policy: PolicyWithValue | None = None,
) -> tuple[float, float]:
    """(mean reward, mean sequence KL to the reference) of responses sampled with a fixed seed for the held-out
    prompts (``cfg.heldout_samples`` per prompt, shared between processes); the KL is NaN without ``policy``."""
    device = accelerator.device
    repeated = [p for p in prompts for _ in range(cfg.heldout_samples)]
    mine = repeated[accelerator.process_index :: accelerator.num_processes]
    total, kl_total, count = 0.0, 0.0, 0
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        # Same seed before and after PPO: the two means differ by the policy, not by sampling luck.
        torch.manual_seed(cfg.seed + 7919 + accelerator.process_index)
        for i in range(0, len(mine), cfg.eval_batch_size):
            batch = mine[i : i + cfg.eval_batch_size]
            ids, pmask, resp, mask, texts = sample_responses(lm, tokenizer, batch, cfg, device)
            scores = reward_fn(batch, texts)
            total += float(sum(scores))
            count += len(scores)
            if policy is not None:
                with accelerator.autocast():
                    kl_total += float(sequence_kl(policy, ids, pmask, resp, mask, cfg).sum())
    sums = accelerator.reduce(torch.tensor([total, kl_total, float(count)], device=device), reduction="sum")
    if float(sums[2]) == 0:
        return float("nan"), float("nan")
    return float(sums[0] / sums[2]), float(sums[1] / sums[2]) if policy is not None else float("nan")


def mean_heldout_reward(
    lm: Any, tokenizer: Any, prompts: list[str], reward_fn: RewardFn, cfg: PPOConfig, accelerator: Any
) -> float:
    """Mean reward of responses sampled (with a fixed seed) for this process's share of the held-out prompts."""
    return evaluate_heldout(lm, tokenizer, prompts, reward_fn, cfg, accelerator)[0]

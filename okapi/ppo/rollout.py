"""One PPO iteration: sample responses, score them, build the rollout, update the top layers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from okapi.io import DataError
from okapi.ppo.config import PPOConfig, RewardFn
from okapi.ppo.objective import (
    entropy_of,
    gae,
    logprobs_of,
    masked_mean,
    policy_loss,
    token_rewards,
    value_loss,
    whiten,
)
from okapi.ppo.policy import PolicyWithValue
from okapi.prompting import format_prompt
from okapi.sampling import decode_responses, encode_prompts, eos_ids, generate, response_mask


@dataclass
class Rollout:
    """One PPO batch: sequences, masks and everything computed before the update."""

    input_ids: torch.Tensor  # [B, P + R] prompt (left-padded) + response
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    response_start: int  # P
    responses: torch.Tensor  # [B, R]
    mask: torch.Tensor  # [B, R] 1 on response tokens up to and including EOS
    old_logp: torch.Tensor
    ref_logp: torch.Tensor
    old_values: torch.Tensor
    scores: torch.Tensor  # [B]
    rewards: torch.Tensor
    kl: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    texts: list[str] = field(default_factory=list)
    trunk: torch.Tensor | None = None  # [B, P + R, H] hidden states entering the trained blocks (None: full forward)


def sequence_inputs(
    prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, responses: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenated ids, attention mask and position ids matching what generate() saw with left padding."""
    ids = torch.cat([prompt_ids, responses], dim=1)
    attn = torch.cat([prompt_mask, mask.to(prompt_mask.dtype)], dim=1)
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    return ids, attn, pos


@torch.no_grad()
def make_rollout(
    policy: PolicyWithValue,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    responses: torch.Tensor,
    mask: torch.Tensor,
    scores: torch.Tensor,
    cfg: PPOConfig,
    sampled_trunk: torch.Tensor | None = None,
) -> Rollout:
    """Old log-probs, reference log-probs, values, per-token rewards and (whitened) advantages for a batch.

    ``sampled_trunk``: the frozen trunk's output captured while these responses were sampled
    (:func:`sample_with_trunk`); used instead of running the trunk again when replay holds."""
    ids, attn, pos = sequence_inputs(prompt_ids, prompt_mask, responses, mask)
    start = prompt_ids.shape[1]
    maskf = mask.float()
    first = slice(0, cfg.mini_batch_size)
    captured = sampled_trunk is not None and sampled_trunk.shape[:2] == ids.shape
    policy.check_trunk_replay(
        ids[first], attn[first], pos[first], start, trunk=sampled_trunk[first] if captured else None
    )
    old_logp, ref_logp, old_values, trunks = [], [], [], []
    for i in range(0, ids.shape[0], cfg.mini_batch_size):
        sl = slice(i, i + cfg.mini_batch_size)
        # The frozen trunk once for the policy pass, the reference pass and every update epoch (policy.trunk);
        # from the sampling pass when it was captured there.
        trunk = sampled_trunk[sl] if captured and policy.trunk_replay else policy.trunk(ids[sl], attn[sl], pos[sl])
        trunks.append(trunk)
        logits, values = policy(ids[sl], attn[sl], pos[sl], start, trunk=trunk)
        old_logp.append(logprobs_of(logits / cfg.temperature, responses[sl]))
        old_values.append(values.float())
        ref_logits, _ = policy(ids[sl], attn[sl], pos[sl], start, reference=True, trunk=trunk)
        ref_logp.append(logprobs_of(ref_logits / cfg.temperature, responses[sl]))
    old_lp = torch.cat(old_logp) * maskf
    ref_lp = torch.cat(ref_logp) * maskf
    values = torch.cat(old_values) * maskf
    rewards, kl = token_rewards(scores.float(), old_lp, ref_lp, maskf, cfg.kl_coef)
    advantages, returns = gae(rewards, values, maskf, cfg.gamma, cfg.lam)
    if cfg.whiten_advantages:
        advantages = whiten(advantages, maskf)
    trunk_all = torch.cat(trunks) if trunks and trunks[0] is not None else None
    return Rollout(
        ids,
        attn,
        pos,
        start,
        responses,
        mask,
        old_lp,
        ref_lp,
        values,
        scores.float(),
        rewards,
        kl,
        advantages,
        returns,
        trunk=trunk_all,
    )


def ppo_update(
    policy: nn.Module, optimizer: torch.optim.Optimizer, rollout: Rollout, cfg: PPOConfig, accelerator: Any
) -> dict[str, float]:
    """``cfg.ppo_epochs`` passes of clipped PPO over the rollout in mini-batches; returns averaged statistics."""
    n = rollout.input_ids.shape[0]
    maskf = rollout.mask.float()
    params = [p for p in policy.parameters() if p.requires_grad]
    stats: dict[str, list[float]] = {
        k: [] for k in ("policy_loss", "value_loss", "clip_frac", "value_clip_frac", "entropy", "approx_kl")
    }
    for _ in range(cfg.ppo_epochs):
        order = torch.randperm(n, device=rollout.input_ids.device)
        for i in range(0, n, cfg.mini_batch_size):
            idx = order[i : i + cfg.mini_batch_size]
            m = maskf[idx]
            # The frozen trunk's replayed output when the rollout has it (PolicyWithValue.trunk).
            replay = {} if rollout.trunk is None else {"trunk": rollout.trunk[idx]}
            with accelerator.autocast():
                logits, values = policy(
                    rollout.input_ids[idx],
                    rollout.attention_mask[idx],
                    rollout.position_ids[idx],
                    rollout.response_start,
                    **replay,
                )
            logits = logits.float() / cfg.temperature
            logp = logprobs_of(logits, rollout.responses[idx])
            pg, pg_clip = policy_loss(logp, rollout.old_logp[idx], rollout.advantages[idx], m, cfg.cliprange)
            vf, vf_clip = value_loss(
                values.float(), rollout.old_values[idx], rollout.returns[idx], m, cfg.cliprange_value
            )
            loss = pg + cfg.vf_coef * vf
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            with torch.no_grad():
                stats["policy_loss"].append(pg.item())
                stats["value_loss"].append(vf.item())
                stats["clip_frac"].append(float(pg_clip))
                stats["value_clip_frac"].append(float(vf_clip))
                stats["entropy"].append(float(masked_mean(entropy_of(logits), m)))
                stats["approx_kl"].append(float(0.5 * masked_mean((logp - rollout.old_logp[idx]) ** 2, m)))
    optimizer.zero_grad(set_to_none=True)
    return {k: sum(v) / len(v) for k, v in stats.items()}


def make_optimizer(policy: PolicyWithValue, cfg: PPOConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        policy.parameters_to_train(),
        lr=cfg.learning_rate,
        betas=tuple(cfg.adam_betas),
        eps=cfg.adam_eps,
        weight_decay=cfg.weight_decay,
    )


def prompt_texts(rows: list[dict[str, Any]], tokenizer: Any, max_len: int, what: str) -> tuple[list[str], int]:
    texts, dropped = [], 0
    for i, row in enumerate(rows):
        if not isinstance(row.get("instruction"), str) or not row["instruction"].strip():
            raise DataError(f"{what} row {i} (id {row.get('id')!r}): field 'instruction' is missing or empty")
        text = format_prompt(row["instruction"], row.get("input"))
        if len(tokenizer(text=text)["input_ids"]) > max_len:
            dropped += 1
            continue
        texts.append(text)
    return texts, dropped


def rm_reward_fn(rm_dir: Path, device: torch.device, batch_size: int, prompt_cache: int = 0) -> RewardFn:
    """The frozen reward model as a RewardFn; ``prompt_cache`` > 0 keeps that many prompts computed
    (okapi.reward.PromptCachedScorer; ppo.rm_prompt_cache)."""
    from okapi.reward import PromptCachedScorer, load_reward_model

    rm, rm_tok = load_reward_model(rm_dir)
    rm.to(device)
    for p in rm.parameters():
        p.requires_grad_(False)
    return PromptCachedScorer(rm, rm_tok, batch_size=batch_size, max_prompts=prompt_cache)


def sample_responses(
    lm: Any, tokenizer: Any, prompts: list[str], cfg: PPOConfig, device: torch.device, share_prompts: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    ids, pmask = encode_prompts(tokenizer, prompts, device)
    resp = generate(
        lm,
        tokenizer,
        ids,
        pmask,
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        share_prompts=share_prompts,
    )
    mask = response_mask(resp, eos_ids(lm, tokenizer), tokenizer.pad_token_id)
    return ids, pmask, resp, mask, decode_responses(tokenizer, resp, mask)


def sample_with_trunk(
    policy: PolicyWithValue, tokenizer: Any, prompts: list[str], cfg: PPOConfig, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str], torch.Tensor | None]:
    """sample_responses() from the policy's LM, plus the frozen trunk's output on prompt + response as generate()
    computed it (PolicyWithValue.captured_trunk; None where it cannot be assembled): make_rollout then need not
    run the trunk again. Off when the replay was found not to hold for this architecture."""
    if policy.trunk_replay is False:
        return (*sample_responses(policy.lm, tokenizer, prompts, cfg, device), None)
    with policy.capturing_trunk() as chunks:  # every row's own prefill, as captured_trunk expects
        ids, pmask, resp, mask, texts = sample_responses(policy.lm, tokenizer, prompts, cfg, device, False)
    attn = sequence_inputs(ids, pmask, resp, mask)[1]
    return ids, pmask, resp, mask, texts, PolicyWithValue.captured_trunk(chunks, attn)


def score_responses(
    reward_fn: RewardFn,
    prompts: list[str],
    texts: list[str],
    resp: torch.Tensor,
    mask: torch.Tensor,
    eos: list[int],
    cfg: PPOConfig,
) -> torch.Tensor:
    scores = torch.tensor(reward_fn(prompts, texts), dtype=torch.float32, device=resp.device)
    if cfg.missing_eos_penalty:
        ended = (torch.isin(resp, torch.tensor(eos, device=resp.device)) & mask.bool()).any(1)
        scores = scores - cfg.missing_eos_penalty * (~ended).float()
    return scores

"""PPO on top of the SFT model with the learned reward (Okapi §3, "Reinforcement Learning").

Our own loop on torch + accelerate (TRL no longer ships a PPO trainer). Following the paper, the whole LLM is frozen
except its top ``top_layers`` transformer blocks; a scalar value head reads the last hidden state. Because the
bottom of the network never changes, the reference policy needs no second model: it is the same network with the
top blocks' weights swapped for a frozen copy taken at the start (``torch.func.functional_call``), so PPO holds one
model plus k blocks instead of the usual policy + reference + value models.

Objective per sequence: RM score at the last response token, minus ``kl_coef * (log pi - log pi_ref)`` on every
response token; advantages by GAE, whitened; clipped policy and value losses; several PPO epochs per batch.

Checkpoints (``checkpoint_dir``) hold only what PPO changes: the top blocks, the value head, the optimizer, the
history and every process's RNG state. The reference is re-derived from the SFT model, whose file hash is part of
the run's fingerprint, so a resumed run continues the very trajectory an uninterrupted one would have taken.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import pickle
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from okapi.config import ConfigError, check, to_dict
from okapi.io import DataError, atomic_dir, replace_dir, write_json
from okapi.modeling import check_launch, decoder_layers, load_causal_lm, trainable_top_layers
from okapi.prompting import format_prompt
from okapi.sampling import decode_responses, encode_prompts, eos_ids, generate, response_mask
from okapi.training import tmp_dir

log = logging.getLogger(__name__)

# accelerate's DistributedType values whose parameters are sharded across processes (PPO refuses them).
SHARDED = ("DEEPSPEED", "FSDP", "MEGATRON_LM", "XLA")

RewardFn = Callable[[list[str], list[str]], list[float]]
VALUE_HEAD_FILE = "value_head.safetensors"


@dataclass
class PPOConfig:
    """Defaults: the embedded CPU run. Paper §3: top 4 layers, 5 epochs, AdamW(0.9, 0.95, eps 1e-8), wd 0.1,
    lr 1e-6, KL coefficient 0.05, batch 32, clip 0.2."""

    top_layers: int = 4
    epochs: int = 1  # passes over the PPO prompts
    learning_rate: float = 1e-5  # paper 1e-6; larger so a few CPU steps move something
    adam_betas: tuple[float, float] = (0.9, 0.95)
    adam_eps: float = 1e-8
    weight_decay: float = 0.1
    kl_coef: float = 0.05
    batch_size: int = 8  # prompts per PPO iteration (all processes together)
    mini_batch_size: int = 4  # sequences per optimizer step, per process
    ppo_epochs: int = 4  # optimisation passes over each rollout batch
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    gamma: float = 1.0
    lam: float = 0.95
    whiten_advantages: bool = True
    max_grad_norm: float = 1.0
    max_new_tokens: int = 48
    temperature: float = 1.0
    top_p: float = 1.0
    max_prompt_length: int = 512  # longer prompts are dropped and counted
    missing_eos_penalty: float = 0.0  # subtracted from the score of responses cut at max_new_tokens (0: off)
    max_steps: int = -1  # -1: epochs x ceil(prompts / batch_size)
    # > 0: hold out this share of the PPO prompts (whole prompts, chosen by id with ``seed``) for the SFT-vs-PPO
    # reward comparison, instead of separate held-out prompts; those are the reward model's training prompts in
    # the pipeline, where its scores flatter whatever policy answers them.
    heldout_fraction: float = 0.0
    heldout_samples: int = 1  # responses sampled per held-out prompt (a handful of prompts gives a noisy mean)
    eval_batch_size: int = 8
    rm_batch_size: int = 8
    seed: int = 0
    # Save a resumable checkpoint every N PPO steps and after the last one (0: off); needs a checkpoint folder.
    checkpoint_every: int = 1

    def __post_init__(self) -> None:
        check(self.top_layers >= 1, "ppo.top_layers", self.top_layers, ">= 1")
        check(self.epochs >= 1, "ppo.epochs", self.epochs, ">= 1")
        check(0 < self.learning_rate < 1, "ppo.learning_rate", self.learning_rate, "0 < lr < 1")
        check(
            len(self.adam_betas) == 2 and all(0 <= b < 1 for b in self.adam_betas),
            "ppo.adam_betas",
            self.adam_betas,
            "two numbers in [0, 1)",
        )
        check(0 < self.adam_eps < 1, "ppo.adam_eps", self.adam_eps, "0 < eps < 1")
        check(0 <= self.weight_decay < 1, "ppo.weight_decay", self.weight_decay, "0 <= wd < 1")
        check(self.kl_coef >= 0, "ppo.kl_coef", self.kl_coef, ">= 0")
        check(self.batch_size >= 1, "ppo.batch_size", self.batch_size, ">= 1")
        check(
            1 <= self.mini_batch_size <= self.batch_size,
            "ppo.mini_batch_size",
            self.mini_batch_size,
            f"1..batch_size ({self.batch_size})",
        )
        check(self.ppo_epochs >= 1, "ppo.ppo_epochs", self.ppo_epochs, ">= 1")
        check(0 < self.cliprange < 1, "ppo.cliprange", self.cliprange, "0 < c < 1")
        check(self.cliprange_value > 0, "ppo.cliprange_value", self.cliprange_value, "> 0")
        check(self.vf_coef >= 0, "ppo.vf_coef", self.vf_coef, ">= 0")
        check(0 < self.gamma <= 1, "ppo.gamma", self.gamma, "0 < gamma <= 1")
        check(0 <= self.lam <= 1, "ppo.lam", self.lam, "0 <= lam <= 1")
        check(self.max_grad_norm > 0, "ppo.max_grad_norm", self.max_grad_norm, "> 0")
        check(self.max_new_tokens >= 1, "ppo.max_new_tokens", self.max_new_tokens, ">= 1")
        check(0 < self.temperature <= 5, "ppo.temperature", self.temperature, "0 < t <= 5")
        check(0 < self.top_p <= 1, "ppo.top_p", self.top_p, "0 < p <= 1")
        check(self.max_prompt_length >= 8, "ppo.max_prompt_length", self.max_prompt_length, ">= 8")
        check(self.missing_eos_penalty >= 0, "ppo.missing_eos_penalty", self.missing_eos_penalty, ">= 0")
        check(self.max_steps == -1 or self.max_steps >= 1, "ppo.max_steps", self.max_steps, "-1 or >= 1")
        check(0 <= self.heldout_fraction < 1, "ppo.heldout_fraction", self.heldout_fraction, "0 <= f < 1")
        check(self.heldout_samples >= 1, "ppo.heldout_samples", self.heldout_samples, ">= 1")
        check(self.eval_batch_size >= 1, "ppo.eval_batch_size", self.eval_batch_size, ">= 1")
        check(self.rm_batch_size >= 1, "ppo.rm_batch_size", self.rm_batch_size, ">= 1")
        check(self.checkpoint_every >= 0, "ppo.checkpoint_every", self.checkpoint_every, "0 (off) or >= 1 steps")


# --------------------------------------------------------------------------------------------------------------
# PPO math: pure functions on [batch, response_len] tensors; ``mask`` is 1 on real response tokens.


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Variance over masked entries, Bessel-corrected when there are at least two."""
    mask = mask.to(x.dtype)
    n = mask.sum()
    mean = masked_mean(x, mask)
    sq = ((x - mean) ** 2 * mask).sum()
    return sq / (n - 1) if n > 1 else sq / n.clamp(min=1.0)


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Normalise masked entries to zero mean / unit variance (masked entries become 0)."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask.to(x.dtype)


def kl_per_token(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Sampled-token estimate of KL(pi || pi_ref): log pi(y_t) - log pi_ref(y_t) (its mean over y ~ pi is the KL)."""
    return logp - ref_logp


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation; returns (advantages, returns = advantages + values), 0 where masked.

    The value after the last real token is 0 (the episode ends at EOS or at the length limit).
    """
    mask = mask.to(values.dtype)
    values = values * mask
    rewards = rewards * mask
    steps = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(steps)):
        next_value = values[:, t + 1] if t + 1 < steps else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last) * mask[:, t]
        advantages[:, t] = last
    return advantages, (advantages + values) * mask


def policy_loss(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, cliprange: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped surrogate loss (to minimise) and the fraction of tokens where clipping was active."""
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clip_frac = masked_mean((clipped > unclipped).to(logp.dtype), mask)
    return loss, clip_frac.detach()


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, cliprange_value: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss 0.5 * max((v - R)^2, (v_clipped - R)^2) and the fraction where the clip was active."""
    v_clipped = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    err = (values - returns) ** 2
    err_clipped = (v_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(err, err_clipped), mask)
    clip_frac = masked_mean((err_clipped > err).to(values.dtype), mask)
    return loss, clip_frac.detach()


def logprobs_of(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    return torch.gather(torch.log_softmax(logits.float(), dim=-1), 2, tokens.unsqueeze(-1)).squeeze(-1)


def entropy_of(logits: torch.Tensor) -> torch.Tensor:
    logits = logits.float()
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(-1)


def token_rewards(
    scores: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-token rewards, per-token KL): -kl_coef * KL on each response token plus the score on the last one."""
    kl = kl_per_token(logp, ref_logp) * mask
    rewards = -kl_coef * kl
    last = (mask.sum(1).long() - 1).clamp(min=0)
    rewards[torch.arange(rewards.shape[0], device=rewards.device), last] += scores.to(rewards.dtype)
    return rewards * mask, kl


# --------------------------------------------------------------------------------------------------------------
# Policy with value head and a reference that shares the frozen trunk.


class PolicyWithValue(nn.Module):
    """Causal LM + scalar value head; only the top ``top_layers`` blocks and the head train.

    ``reference=True`` runs the same network with the top blocks' initial weights: the frozen trunk is shared, so
    the reference costs k blocks of memory instead of a whole model.
    """

    def __init__(self, lm: nn.Module, top_layers: int) -> None:
        super().__init__()
        self.lm = lm
        self.trainable = trainable_top_layers(lm, top_layers)
        hidden = lm.config.get_text_config().hidden_size
        self.value_head = nn.Linear(hidden, 1)
        # Zero init: a random head on un-normalised hidden states (norms of tens) predicts values of +-10 that drown
        # rewards of order 1 in noise; starting at 0, the first advantages are the rewards-to-go themselves.
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        base = lm.base_model
        layers = decoder_layers(lm)
        prefix = next(name for name, mod in base.named_modules() if mod is layers)
        n = len(layers)
        self._ref_names = [
            f"{prefix}.{i}.{pname}" for i in range(n - top_layers, n) for pname, _ in layers[i].named_parameters()
        ]
        self.ref_params: dict[str, torch.Tensor] = {}
        self.snapshot_reference()

    def snapshot_reference(self) -> None:
        """Freeze a copy of the current top blocks as the reference policy (call after moving devices)."""
        params = dict(self.lm.base_model.named_parameters())
        self.ref_params = {name: params[name].detach().clone() for name in self._ref_names}

    def parameters_to_train(self) -> list[nn.Parameter]:
        return [*self.trainable, *self.value_head.parameters()]

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        response_start: int,
        reference: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, values) at the positions that predict the response tokens [B, R, V] and [B, R]."""
        base = self.lm.base_model
        kwargs = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "position_ids": position_ids,
            "use_cache": False,
        }
        if reference:
            out = torch.func.functional_call(base, self.ref_params, args=(), kwargs=kwargs, strict=False)
        else:
            out = base(**kwargs)
        # Slice before the LM head: logits are only needed where response tokens are predicted.
        hidden = out.last_hidden_state[:, response_start - 1 : -1]
        logits = self.lm.get_output_embeddings()(hidden)
        values = self.value_head(hidden).squeeze(-1)
        return logits, values


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
) -> Rollout:
    """Old log-probs, reference log-probs, values, per-token rewards and (whitened) advantages for a batch."""
    ids, attn, pos = sequence_inputs(prompt_ids, prompt_mask, responses, mask)
    start = prompt_ids.shape[1]
    maskf = mask.float()
    old_logp, ref_logp, old_values = [], [], []
    for i in range(0, ids.shape[0], cfg.mini_batch_size):
        sl = slice(i, i + cfg.mini_batch_size)
        logits, values = policy(ids[sl], attn[sl], pos[sl], start)
        old_logp.append(logprobs_of(logits / cfg.temperature, responses[sl]))
        old_values.append(values.float())
        ref_logits, _ = policy(ids[sl], attn[sl], pos[sl], start, reference=True)
        ref_logp.append(logprobs_of(ref_logits / cfg.temperature, responses[sl]))
    old_lp = torch.cat(old_logp) * maskf
    ref_lp = torch.cat(ref_logp) * maskf
    values = torch.cat(old_values) * maskf
    rewards, kl = token_rewards(scores.float(), old_lp, ref_lp, maskf, cfg.kl_coef)
    advantages, returns = gae(rewards, values, maskf, cfg.gamma, cfg.lam)
    if cfg.whiten_advantages:
        advantages = whiten(advantages, maskf)
    return Rollout(
        ids, attn, pos, start, responses, mask, old_lp, ref_lp, values, scores.float(), rewards, kl, advantages, returns
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
            with accelerator.autocast():
                logits, values = policy(
                    rollout.input_ids[idx],
                    rollout.attention_mask[idx],
                    rollout.position_ids[idx],
                    rollout.response_start,
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


# --------------------------------------------------------------------------------------------------------------
# The training loop.


def _prompt_texts(rows: list[dict[str, Any]], tokenizer: Any, max_len: int, what: str) -> tuple[list[str], int]:
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


def _rm_reward_fn(rm_dir: Path, device: torch.device, batch_size: int) -> RewardFn:
    from okapi.reward import load_reward_model, score_texts

    rm, rm_tok = load_reward_model(rm_dir)
    rm.to(device)
    for p in rm.parameters():
        p.requires_grad_(False)

    def reward(prompts: list[str], responses: list[str]) -> list[float]:
        return score_texts(rm, rm_tok, prompts, responses, batch_size=batch_size)

    return reward


def _sample(
    lm: Any, tokenizer: Any, prompts: list[str], cfg: PPOConfig, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    ids, pmask = encode_prompts(tokenizer, prompts, device)
    resp = generate(
        lm, tokenizer, ids, pmask, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p
    )
    mask = response_mask(resp, eos_ids(lm, tokenizer), tokenizer.pad_token_id)
    return ids, pmask, resp, mask, decode_responses(tokenizer, resp, mask)


def _scores(
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


def split_heldout_prompts(
    rows: list[dict[str, Any]], fraction: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, heldout) rows: ``ceil(fraction x n)`` prompts held out by id, at least one prompt left to train on.

    Chosen from the sorted ids, so the split does not depend on row order and reruns pick the same prompts.
    """
    if fraction <= 0 or len(rows) < 2:
        return list(rows), []
    ids = sorted({str(r.get("id")) for r in rows})
    n_held = max(1, min(math.ceil(fraction * len(ids)), len(ids) - 1))
    held = set(random.Random(seed).sample(ids, n_held))
    return [r for r in rows if str(r.get("id")) not in held], [r for r in rows if str(r.get("id")) in held]


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
        logits, _ = policy(ids[sl], attn[sl], pos[sl], start)
        ref_logits, _ = policy(ids[sl], attn[sl], pos[sl], start, reference=True)
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
            ids, pmask, resp, mask, texts = _sample(lm, tokenizer, batch, cfg, device)
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


def save_policy(policy: PolicyWithValue, tokenizer: Any, out_dir: Path) -> None:
    """Plain HF causal-LM folder (loadable by AutoModelForCausalLM) plus value_head.safetensors, atomically."""
    from safetensors.torch import save_file

    tmp = tmp_dir(out_dir)
    if tmp.exists():
        shutil.rmtree(tmp)
    policy.lm.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    head = {k: v.detach().cpu().contiguous() for k, v in policy.value_head.state_dict().items()}
    save_file(head, str(tmp / VALUE_HEAD_FILE))
    replace_dir(tmp, out_dir)


# --------------------------------------------------------------------------------------------------------------
# Resumable checkpoints: one folder, replaced atomically at each save, with only what PPO changes.

CHECKPOINT_FORMAT = 1
CKPT_STATE = "state.json"  # step, history, fingerprint; written last
CKPT_WEIGHTS = "trainable.safetensors"  # the top blocks and the value head, by parameter name
CKPT_OPTIMIZER = "optimizer.pt"
CKPT_RNG = "rng_states.pt"  # one entry per process
CKPT_SCALER = "grad_scaler.pt"  # fp16 mixed precision only
# How long the run is, how often it is saved and how the held-out prompts are scored: none of these changes what
# steps 1..k do, so changing one resumes (or extends) a run instead of restarting it.
NOT_IN_FINGERPRINT = frozenset({"checkpoint_every", "max_steps", "epochs", "eval_batch_size", "heldout_samples"})
_FINGERPRINT_PARTS = {
    "format": "checkpoint format",
    "sft_model": "SFT model (file hash)",
    "reward": "reward model",
    "prompts": "set of PPO prompts",
    "num_processes": "number of processes",
    "mixed_precision": "mixed precision",
}


class CheckpointError(DataError):
    """A checkpoint folder that cannot be resumed from; the message names the file and the problem."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: the PPO steps done, their history, and the states to continue from."""

    step: int
    history: list[dict[str, Any]]
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: dict[str, Any]
    scaler: dict[str, Any] | None


def hash_folder(folder: Path) -> str:
    """sha256 over every file's relative path, size and bytes, in sorted path order."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def run_fingerprint(
    cfg: PPOConfig, sft_dir: Path, reward: str, prompts: list[str], num_processes: int, mixed_precision: str
) -> dict[str, Any]:
    """Everything that decides PPO's trajectory: a checkpoint resumes only a run with the same fingerprint."""
    params = {k: v for k, v in to_dict(cfg).items() if k not in NOT_IN_FINGERPRINT}
    fingerprint = {
        "format": CHECKPOINT_FORMAT,
        "ppo": params,
        "sft_model": hash_folder(sft_dir),
        "reward": reward,
        "prompts": hashlib.sha256(json.dumps(prompts, ensure_ascii=False).encode()).hexdigest(),
        "num_processes": num_processes,
        "mixed_precision": str(mixed_precision),
    }
    return json.loads(json.dumps(fingerprint))  # tuples become lists, as they come back from state.json


def fingerprint_changes(old: Any, new: dict[str, Any]) -> list[str]:
    """What differs between a checkpoint's fingerprint and this run's, in words ([] when they match)."""
    if not isinstance(old, dict):
        return ["fingerprint (none recorded)"]
    changes = []
    for key, value in new.items():
        if key == "ppo":
            before = old.get("ppo") if isinstance(old.get("ppo"), dict) else {}
            changes += [f"ppo.{k} ({before.get(k)!r} -> {v!r})" for k, v in value.items() if before.get(k) != v]
        elif old.get(key) != value:
            changes.append(_FINGERPRINT_PARTS.get(key, key))
    return changes


def rng_state() -> dict[str, Any]:
    """This process's python, numpy, torch and CUDA generator states (torch.load(weights_only=True)-safe)."""
    name, key, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(key.astype(np.int64)), int(pos), int(has_gauss), float(gauss)),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, key, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    ckpt_dir: Path,
    policy: PolicyWithValue,
    optimizer: Any,
    accelerator: Any,
    step: int,
    history: list[dict[str, Any]],
    fingerprint: dict[str, Any] | None,
) -> None:
    """Every process hands in its RNG state; the main process writes the folder (temp folder, then rename)."""
    from accelerate.utils import gather_object
    from safetensors.torch import save_file

    rngs = gather_object([rng_state()])
    if accelerator.is_main_process:
        with atomic_dir(ckpt_dir) as tmp:
            weights = {n: p.detach().cpu().contiguous() for n, p in policy.named_parameters() if p.requires_grad}
            save_file(weights, str(tmp / CKPT_WEIGHTS))
            torch.save(optimizer.state_dict(), tmp / CKPT_OPTIMIZER)
            torch.save(list(rngs), tmp / CKPT_RNG)
            if accelerator.scaler is not None:
                torch.save(accelerator.scaler.state_dict(), tmp / CKPT_SCALER)
            state = {"format": CHECKPOINT_FORMAT, "step": step, "history": history, "fingerprint": fingerprint}
            write_json(state, tmp / CKPT_STATE)
        log.info("saved PPO checkpoint at step %d to %s", step, ckpt_dir)
    accelerator.wait_for_everyone()


def read_checkpoint_state(ckpt_dir: Path, fingerprint: dict[str, Any], total: int) -> tuple[dict[str, Any] | None, str]:
    """(state.json, "") when the checkpoint in ``ckpt_dir`` continues this run, else (None, the reason why not)."""
    state_file = ckpt_dir / CKPT_STATE
    if not ckpt_dir.is_dir() or not any(ckpt_dir.iterdir()):
        return None, f"no checkpoint in {ckpt_dir}"
    if not state_file.is_file():
        return None, f"ignoring checkpoint {ckpt_dir}: {CKPT_STATE} is missing (an incomplete checkpoint)"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return None, f"ignoring checkpoint {ckpt_dir}: {state_file} is not readable JSON ({err})"
    step = state.get("step") if isinstance(state, dict) else None
    history = state.get("history") if isinstance(state, dict) else None
    if not isinstance(step, int) or step < 0 or not isinstance(history, list) or len(history) != step:
        return None, f"ignoring checkpoint {ckpt_dir}: {state_file} lacks a step count matching its history"
    changes = fingerprint_changes(state.get("fingerprint"), fingerprint)
    if changes:
        return None, f"ignoring checkpoint {ckpt_dir}: it was made with a different {', '.join(changes)}"
    if step > total:
        return None, f"ignoring checkpoint {ckpt_dir}: it is at step {step}, past this run's last step {total}"
    return state, ""


def load_checkpoint(
    ckpt_dir: Path, state: dict[str, Any], policy: PolicyWithValue, optimizer: Any, process_index: int, n_proc: int
) -> Checkpoint:
    """Read a checkpoint's tensors and check them against this run's model and optimizer (CheckpointError if not)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    def need(name: str) -> Path:
        path = ckpt_dir / name
        if not path.is_file():
            raise CheckpointError(f"{path} is missing (an incomplete checkpoint)")
        return path

    weights_file, opt_file, rng_file = need(CKPT_WEIGHTS), need(CKPT_OPTIMIZER), need(CKPT_RNG)
    loading = weights_file
    try:
        weights = load_file(str(weights_file))
        loading = opt_file
        opt_state = torch.load(opt_file, map_location="cpu", weights_only=True)
        loading = rng_file
        rngs = torch.load(rng_file, map_location="cpu", weights_only=True)
        loading = ckpt_dir / CKPT_SCALER
        scaler = torch.load(loading, map_location="cpu", weights_only=True) if loading.is_file() else None
    except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError, SafetensorError) as err:
        raise CheckpointError(f"{loading} does not load ({type(err).__name__}: {err})") from err
    expected = {n: p for n, p in policy.named_parameters() if p.requires_grad}
    wrong = sorted(set(weights) ^ set(expected)) + sorted(
        n for n in set(weights) & set(expected) if weights[n].shape != expected[n].shape
    )
    if wrong:
        raise CheckpointError(
            f"{ckpt_dir / CKPT_WEIGHTS} does not match this model's {len(expected)} trainable tensors "
            f"(first mismatch: {wrong[0]})"
        )
    groups = opt_state.get("param_groups") if isinstance(opt_state, dict) else None
    ours = optimizer.state_dict()["param_groups"]
    if not isinstance(groups, list) or [len(g.get("params", ())) for g in groups] != [len(g["params"]) for g in ours]:
        raise CheckpointError(f"{ckpt_dir / CKPT_OPTIMIZER} does not hold this optimizer's parameter groups")
    if not isinstance(rngs, list) or len(rngs) != n_proc:
        raise CheckpointError(f"{ckpt_dir / CKPT_RNG} does not hold one RNG state for each of {n_proc} processes")
    rng = rngs[process_index]
    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not isinstance(rng, dict) or set(rng) != {"python", "numpy", "torch", "cuda"} or len(rng["cuda"]) != n_gpus:
        raise CheckpointError(f"{ckpt_dir / CKPT_RNG}: process {process_index}'s RNG state does not fit {n_gpus} GPUs")
    return Checkpoint(state["step"], state["history"], weights, opt_state, rng, scaler)


def resume_checkpoint(
    ckpt_dir: Path,
    fingerprint: dict[str, Any] | None,
    total: int,
    policy: PolicyWithValue,
    optimizer: Any,
    accelerator: Any,
) -> Checkpoint | None:
    """The checkpoint to continue from, or None (with a log line saying why) to start at step 0.

    The main process alone reads state.json and compares fingerprints (``fingerprint`` is None elsewhere); every
    process then loads the tensors, and all start fresh unless all of them could.
    """
    from accelerate.utils import broadcast_object_list

    decision: list[Any] = [None]
    if accelerator.is_main_process:
        if fingerprint is None:
            raise ValueError("resume_checkpoint: the main process needs this run's fingerprint")
        _remove_stale_saves(ckpt_dir)
        decision = [read_checkpoint_state(ckpt_dir, fingerprint, total)]
    state, why = broadcast_object_list(decision)[0]
    ckpt, problem = None, ""
    if state is not None:
        try:
            ckpt = load_checkpoint(
                ckpt_dir, state, policy, optimizer, accelerator.process_index, accelerator.num_processes
            )
        except CheckpointError as err:
            problem = f"ignoring checkpoint {ckpt_dir}: {err}"
            if not accelerator.is_main_process:  # the main process says it below
                log.warning("process %d: %s", accelerator.process_index, problem)
        failed = accelerator.reduce(torch.tensor(float(ckpt is None), device=accelerator.device), reduction="sum")
        if float(failed) > 0:
            why, ckpt = problem or f"ignoring checkpoint {ckpt_dir}: it does not load on another process", None
    if ckpt is None:
        if accelerator.is_main_process:
            level = logging.INFO if state is None and why.startswith("no checkpoint") else logging.WARNING
            log.log(level, "%s; starting PPO at step 0 (the folder is overwritten at the first save)", why)
        return None
    if accelerator.is_main_process:
        log.info("resuming from step %d of %d (PPO checkpoint %s)", ckpt.step, total, ckpt_dir)
    return ckpt


def _remove_stale_saves(ckpt_dir: Path) -> None:
    """Temporary siblings a killed save left behind (atomic_dir / replace_dir name them .<name>.*.tmp/.old)."""
    if ckpt_dir.parent.is_dir():
        for stale in [
            *ckpt_dir.parent.glob(f".{ckpt_dir.name}.*.tmp"),
            *ckpt_dir.parent.glob(f".{ckpt_dir.name}.*.old"),
        ]:
            shutil.rmtree(stale, ignore_errors=True)


def apply_checkpoint(ckpt: Checkpoint, policy: PolicyWithValue, optimizer: Any, accelerator: Any) -> None:
    """Load the trained blocks, the value head, the optimizer and the gradient scaler (RNG: see set_rng_state)."""
    params = dict(policy.named_parameters())
    with torch.no_grad():
        for name, tensor in ckpt.weights.items():
            params[name].copy_(tensor)
    optimizer.load_state_dict(ckpt.optimizer)
    if ckpt.scaler is not None and accelerator.scaler is not None:
        accelerator.scaler.load_state_dict(ckpt.scaler)


# --------------------------------------------------------------------------------------------------------------
# Training curves.


class LiveCurves:
    """Per-step PPO curves through DVCLive: ``plots/metrics/<name>.tsv`` and ``metrics.json`` under ``live_dir``.

    Files only: no dvc.yaml of its own (the pipeline declares the plots as the stage's outputs), no report, no DVC
    experiment, no repository look-up, and ``next_step()`` / ``end()`` are never called, so nothing signals VS Code
    or stages files in git.
    """

    def __init__(self, live_dir: Path) -> None:
        from dvclive import Live

        class FilesOnlyLive(Live):
            def _init_dvc(self) -> None:
                # dvclive 3.49 opens the DVC repo and reads git HEAD here (for experiments and Studio) and fails in a
                # git repository without commits; the curves need none of it.
                self._dvc_file = self._init_dvc_file()

        # resume=False empties the folder: a resumed run replays its checkpointed history into it first.
        self.live = FilesOnlyLive(dir=str(live_dir), resume=False, report=None, save_dvc_exp=False, dvcyaml=None)

    def log(self, row: dict[str, Any]) -> None:
        self.live.step = int(row["step"])
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)):
                self.live.log_metric(key, value)
        self.live.make_summary()


def process_share(batch: list[str], index: int, n_proc: int) -> list[str]:
    """Process ``index``'s prompts of a PPO batch: every ``n_proc``-th one from ``index``, wrapping around to the
    batch's first prompts so that every process gets ``ceil(len(batch) / n_proc)``.

    The shares must be equal: under DDP every backward is a collective, and a process with one mini-batch fewer
    (a batch that does not divide by the number of processes, e.g. an epoch's short last one) leaves the others
    waiting in their all-reduce forever. The few repeated prompts count twice in that step's update.
    """
    per_process = math.ceil(len(batch) / n_proc)
    return [batch[(index + j * n_proc) % len(batch)] for j in range(per_process)]


def _batch_for_step(texts: list[str], step: int, steps_per_epoch: int, cfg: PPOConfig) -> list[str]:
    """The prompts of 0-based PPO step ``step``: each epoch is a fresh shuffle seeded by (seed, epoch) alone, so
    any step's batch can be rebuilt when a run resumes mid-epoch."""
    epoch, k = divmod(step, steps_per_epoch)
    order = list(range(len(texts)))
    random.Random(cfg.seed + epoch).shuffle(order)
    return [texts[j] for j in order[k * cfg.batch_size : (k + 1) * cfg.batch_size]]


def _reward_identity(rm_dir: Path | None, reward_fn: RewardFn | None) -> str:
    if reward_fn is not None:
        name = getattr(reward_fn, "__qualname__", type(reward_fn).__qualname__)
        return f"function {getattr(reward_fn, '__module__', '?')}.{name}"
    return f"reward model {hash_folder(Path(rm_dir))}"


def train_ppo(
    sft_dir: Path,
    rm_dir: Path | None,
    prompts: list[dict[str, Any]],
    heldout: list[dict[str, Any]] | None,
    out_dir: Path,
    cfg: PPOConfig,
    *,
    reward_fn: RewardFn | None = None,
    checkpoint_dir: Path | None = None,
    live_dir: Path | None = None,
) -> dict[str, Any]:
    """PPO from the SFT model against the reward model in ``rm_dir`` (or ``reward_fn(prompts, responses)``).

    Held-out prompts are ``heldout``, or with ``cfg.heldout_fraction > 0`` a slice of ``prompts`` (then ``heldout``
    must be empty or None). Returns metrics; ``metrics["history"]`` holds one dict per PPO step (pop it before
    writing scalar metrics). ``history[i]["kl"]`` is the KL of the policy that sampled step i's batch (before that
    step's update, so 0 at step 1); ``metrics["kl"]`` is the final policy's KL on fresh held-out samples.

    With ``checkpoint_dir`` and ``cfg.checkpoint_every > 0`` a checkpoint is saved every that many steps and after
    the last one; a run whose fingerprint (:func:`run_fingerprint`) matches the checkpoint's continues from it and
    ends with the same weights and history as an uninterrupted run. With ``live_dir`` the history is also logged
    step by step with DVCLive.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    if rm_dir is None and reward_fn is None:
        raise ValueError("train_ppo needs rm_dir or reward_fn")
    accelerator = Accelerator()
    n_proc = accelerator.num_processes
    check_launch(n_proc)
    if accelerator.distributed_type in SHARDED:
        # Sampling, the reference snapshot, checkpoints and saving use the unsharded module; under ZeRO-3/FSDP
        # they would see parameter shards. Only the top layers train, so the frozen trunk is small enough to
        # replicate: data parallelism is the right engine for this stage.
        raise ConfigError(
            f"PPO does not run under {accelerator.distributed_type.value} (its engine shards or wraps the parameters); launch ppo@<lang> "
            "with data parallelism instead, e.g. ppo_launcher: accelerate launch --config_file "
            "configs/accelerate/8gpu_ddp.yaml (only the top ppo.top_layers layers train, so every GPU holds "
            "the frozen trunk)"
        )
    check(cfg.batch_size >= n_proc, "ppo.batch_size", cfg.batch_size, f">= the number of processes ({n_proc})")
    if cfg.heldout_fraction > 0:
        if heldout:
            raise ConfigError(
                f"parameter ppo.heldout_fraction = {cfg.heldout_fraction} takes the held-out prompts from the PPO "
                f"prompts, but {len(heldout)} separate held-out prompts were given too; pass one or the other"
            )
        prompts, heldout = split_heldout_prompts(prompts, cfg.heldout_fraction, cfg.seed)
    heldout = heldout or []
    set_seed(cfg.seed)
    lm, tokenizer = load_causal_lm(sft_dir, for_training=False)
    lm.config.use_cache = True
    texts, dropped = _prompt_texts(prompts, tokenizer, cfg.max_prompt_length, "PPO prompt")
    held_texts, held_dropped = _prompt_texts(heldout, tokenizer, cfg.max_prompt_length, "held-out prompt")
    if not texts:
        raise DataError(
            f"PPO: no prompt left ({len(prompts)} given, {dropped} longer than ppo.max_prompt_length = "
            f"{cfg.max_prompt_length} tokens)"
        )
    n_layers = len(decoder_layers(lm))
    if cfg.top_layers > n_layers:
        raise DataError(f"parameter ppo.top_layers = {cfg.top_layers} exceeds the model's {n_layers} layers")

    steps_per_epoch = math.ceil(len(texts) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps > 0:
        total = min(total, cfg.max_steps)
    checkpointing = checkpoint_dir is not None and cfg.checkpoint_every > 0
    fingerprint = None
    if checkpointing and accelerator.is_main_process:
        fingerprint = run_fingerprint(
            cfg, Path(sft_dir), _reward_identity(rm_dir, reward_fn), texts, n_proc, accelerator.mixed_precision
        )
    elif checkpoint_dir is not None and accelerator.is_main_process:
        # The folder is a pipeline output: it must exist even when checkpoints are off.
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
        log.info("ppo.checkpoint_every = 0: no PPO checkpoint is read or written in %s", checkpoint_dir)

    device = accelerator.device
    lm.to(device)
    policy = PolicyWithValue(lm, cfg.top_layers).to(device)
    optimizer = make_optimizer(policy, cfg)
    wrapped, optimizer = accelerator.prepare(policy, optimizer)
    if reward_fn is None:
        reward_fn = _rm_reward_fn(Path(rm_dir), device, cfg.rm_batch_size)
    eos = eos_ids(lm, tokenizer)

    # Scored before any checkpoint is loaded: this is the SFT policy's reward.
    sft_heldout = mean_heldout_reward(lm, tokenizer, held_texts, reward_fn, cfg, accelerator) if held_texts else None
    ckpt = None
    if checkpointing:
        ckpt = resume_checkpoint(Path(checkpoint_dir), fingerprint, total, policy, optimizer, accelerator)
        if ckpt is not None:
            apply_checkpoint(ckpt, policy, optimizer, accelerator)
    # Different sampling streams per process, reproducible per run.
    set_seed(cfg.seed + accelerator.process_index)
    history: list[dict[str, Any]] = []
    first = 0
    if ckpt is not None:
        set_rng_state(ckpt.rng)
        history, first = list(ckpt.history), ckpt.step
        del ckpt  # the loaded tensors are in the model and optimizer now
    live = LiveCurves(Path(live_dir)) if live_dir is not None and accelerator.is_main_process else None
    if live is not None:
        for row in history:
            live.log(row)

    progress = tqdm(
        range(first, total),
        desc="ppo",
        unit="step",
        initial=first,
        total=total,
        disable=not accelerator.is_main_process,
    )
    for step in progress:
        batch = _batch_for_step(texts, step, steps_per_epoch, cfg)
        mine = process_share(batch, accelerator.process_index, n_proc)
        ids, pmask, resp, mask, resp_texts = _sample(lm, tokenizer, mine, cfg, device)
        scores = _scores(reward_fn, mine, resp_texts, resp, mask, eos, cfg)
        # Same precision as the update's forward (bf16 under a mixed-precision config): old log-probs computed in
        # fp32 against bf16 new ones would make the first ratio differ from 1 and clip for no reason.
        with accelerator.autocast():
            rollout = make_rollout(policy, ids, pmask, resp, mask, scores, cfg)
        stats = ppo_update(wrapped, optimizer, rollout, cfg, accelerator)
        kl_seq = rollout.kl.sum(1)
        row = {
            "step": step + 1,
            "epoch": step // steps_per_epoch + 1,
            "reward": scores.mean(),
            "kl": kl_seq.mean(),
            "non_score_reward": (-cfg.kl_coef * kl_seq).mean(),
            "response_length": rollout.mask.float().sum(1).mean(),
        }
        reduced = {
            k: float(accelerator.reduce(v.detach().float(), reduction="mean")) if torch.is_tensor(v) else v
            for k, v in row.items()
        }
        reduced.update(
            {k: float(accelerator.reduce(torch.tensor(v, device=device), reduction="mean")) for k, v in stats.items()}
        )
        history.append(reduced)
        progress.set_postfix(reward=f"{reduced['reward']:.3f}", kl=f"{reduced['kl']:.3f}")
        log.info("ppo step %d: %s", step + 1, {k: round(v, 4) for k, v in reduced.items()})
        if live is not None:
            live.log(reduced)
        if checkpointing and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == total):
            save_checkpoint(
                Path(checkpoint_dir),
                policy,
                optimizer,
                accelerator,
                step + 1,
                history,
                fingerprint,
            )

    # The final policy's KL to the reference, on its own samples: the rollout KL in history predates each update.
    kl_prompts = held_texts or _batch_for_step(texts, total - 1, steps_per_epoch, cfg)
    ppo_heldout, final_kl = evaluate_heldout(lm, tokenizer, kl_prompts, reward_fn, cfg, accelerator, policy)
    if not held_texts:
        ppo_heldout = None
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_policy(accelerator.unwrap_model(wrapped), tokenizer, Path(out_dir))
    accelerator.wait_for_everyone()

    def avg(key: str) -> float:
        return sum(h[key] for h in history) / len(history) if history else float("nan")

    metrics: dict[str, Any] = {
        "mean_reward_sft_heldout": sft_heldout,
        "mean_reward_ppo_heldout": ppo_heldout,
        "heldout_prompts": len(held_texts),
        "heldout_samples": len(held_texts) * cfg.heldout_samples,
        "kl": final_kl,
        "kl_last_rollout": history[-1]["kl"] if history else float("nan"),
        "policy_loss": avg("policy_loss"),
        "value_loss": avg("value_loss"),
        "clip_frac": avg("clip_frac"),
        "entropy": avg("entropy"),
        "response_length": avg("response_length"),
        "mean_reward_train_first": history[0]["reward"] if history else float("nan"),
        "mean_reward_train_last": history[-1]["reward"] if history else float("nan"),
        "steps": len(history),
        "processes": n_proc,
        "prompts": len(texts),
        "dropped_too_long": dropped + held_dropped,
        "trainable_params": sum(p.numel() for p in policy.parameters_to_train()),
        "history": history,
    }
    log.info("PPO done: %s", {k: v for k, v in metrics.items() if k != "history"})
    return metrics

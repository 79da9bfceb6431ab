"""The PPO stage's parameters (``ppo`` in params.yaml) and the names the other PPO modules share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from okapi.config import check

# accelerate's DistributedType values whose parameters are sharded across processes (PPO refuses them).
SHARDED = ("DEEPSPEED", "FSDP", "MEGATRON_LM", "XLA")

RewardFn = Callable[[list[str], list[str]], list[float]]
VALUE_HEAD_FILE = "value_head.safetensors"


@dataclass
class PPOConfig:
    """The ``ppo`` section. Paper §3: top 4 layers, 5 epochs, AdamW (0.9, 0.95, eps 1e-8), weight decay 0.1,
    lr 1e-6, KL coefficient 0.05, batch 32, clip 0.2."""

    top_layers: int = 4
    """Transformer blocks trained from the top (the rest is frozen and shared with the reference; paper: 4)."""
    epochs: int = 8
    """Passes over the PPO prompts (paper: 5). 8 passes over the 4 training prompts at lr 6e-5 (20 at 3e-5 before)
    take the held-out reward of the PPO policy above the SFT policy's in both embedded languages (README,
    Limitations)."""
    learning_rate: float = 6e-5
    """AdamW learning rate (paper: 1e-6; larger so a few CPU steps move something)."""
    adam_betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas (paper: 0.9, 0.95)."""
    adam_eps: float = 1e-8
    """AdamW epsilon (paper: 1e-8)."""
    weight_decay: float = 0.1
    """AdamW weight decay (paper: 0.1)."""
    kl_coef: float = 0.05
    """Weight of the per-token KL penalty to the reference policy (paper: 0.05)."""
    batch_size: int = 4
    """Prompts per PPO iteration, all processes together (paper: 32)."""
    mini_batch_size: int = 4
    """Sequences per optimizer step, per process."""
    ppo_epochs: int = 2
    """Optimisation passes over each rollout batch."""
    cliprange: float = 0.2
    """Policy-ratio clip (paper: 0.2)."""
    cliprange_value: float = 0.2
    """Value-prediction clip around the rollout's values."""
    vf_coef: float = 0.1
    """Weight of the value loss."""
    gamma: float = 1.0
    """Discount of GAE."""
    lam: float = 0.95
    """Lambda of GAE."""
    whiten_advantages: bool = True
    """Normalise advantages per batch (mean 0, variance 1)."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    max_new_tokens: int = 32
    """Longest sampled response in tokens."""
    temperature: float = 1.0
    """Sampling temperature of the rollouts (and of the log-probabilities the ratio uses)."""
    top_p: float = 1.0
    """Nucleus sampling threshold of the rollouts."""
    max_prompt_length: int = 384
    """Longer prompts are dropped and counted."""
    missing_eos_penalty: float = 0.0
    """Subtracted from the score of responses cut off at max_new_tokens (0: off)."""
    max_steps: int = -1
    """PPO steps; -1: epochs x ceil(prompts / batch_size)."""
    heldout_fraction: float = 0.3
    """> 0: hold out this share of the PPO prompts (whole prompts, by id with seed) for the SFT-vs-PPO reward
    comparison; they are never trained on and never seen by the reward model (the RM's own training prompts
    would flatter whatever policy answers them). 0: held-out prompts are passed separately."""
    heldout_samples: int = 4
    """Responses sampled per held-out prompt (a handful of prompts gives a noisy mean)."""
    eval_batch_size: int = 8
    """Prompts per generate() call in the held-out evaluation."""
    rm_batch_size: int = 8
    """Sequences per reward-model forward pass."""
    rm_prompt_cache: int = 16
    """Prompts whose tokens the reward model keeps computed (keys and values), so a response to one of them runs
    only its own tokens (okapi.reward.PromptCachedScorer): the embedded default scores the same 4 prompts at every
    step. 0: every sequence is scored whole, in batches (where prompts seldom repeat, e.g. the paper profile)."""
    seed: int = 0
    """Seeds sampling, data order and the held-out split."""
    checkpoint_every: int = 5
    """Save a resumable checkpoint every N PPO steps and after the last (0: off); needs a checkpoint folder."""

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
        check(self.rm_prompt_cache >= 0, "ppo.rm_prompt_cache", self.rm_prompt_cache, ">= 0 (0: off)")
        check(self.checkpoint_every >= 0, "ppo.checkpoint_every", self.checkpoint_every, "0 (off) or >= 1 steps")

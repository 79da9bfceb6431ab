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

Modules, in the order a PPO run uses them: config (PPOConfig), objective (the PPO math), policy (policy with
value head and shared-trunk reference; saving), rollout (sampling, scoring, the rollout and the update), heldout
(which prompts are held out; reward and KL on them), checkpoint (resumable checkpoints), loop (train_ppo).
"""

import importlib
from typing import Any

# Public name -> submodule. Resolved on first use (PEP 562), so importing okapi.ppo.config to validate params does
# not pull in torch, transformers and accelerate the way the rest of the package does.
_EXPORTS: dict[str, str] = {
    "CKPT_OPTIMIZER": "checkpoint",
    "CKPT_RNG": "checkpoint",
    "CKPT_SCALER": "checkpoint",
    "CKPT_STATE": "checkpoint",
    "CKPT_WEIGHTS": "checkpoint",
    "Checkpoint": "checkpoint",
    "CheckpointError": "checkpoint",
    "LiveCurves": "loop",
    "NOT_IN_FINGERPRINT": "checkpoint",
    "PPOConfig": "config",
    "PolicyWithValue": "policy",
    "RewardFn": "config",
    "Rollout": "rollout",
    "SHARDED": "config",
    "VALUE_HEAD_FILE": "config",
    "entropy_of": "objective",
    "evaluate_heldout": "heldout",
    "gae": "objective",
    "kl_per_token": "objective",
    "logprobs_of": "objective",
    "make_optimizer": "rollout",
    "make_rollout": "rollout",
    "masked_mean": "objective",
    "masked_var": "objective",
    "mean_heldout_reward": "heldout",
    "policy_loss": "objective",
    "ppo_update": "rollout",
    "process_share": "loop",
    "run_fingerprint": "checkpoint",
    "save_policy": "policy",
    "sequence_inputs": "rollout",
    "sequence_kl": "heldout",
    "split_heldout_prompts": "heldout",
    "token_rewards": "objective",
    "train_ppo": "loop",
    "value_loss": "objective",
    "whiten": "objective",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'okapi.ppo' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"okapi.ppo.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})

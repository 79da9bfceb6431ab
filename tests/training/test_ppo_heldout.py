"""PPO's held-out prompts (a slice of the PPO split) and the KL it reports for the final policy."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from tiny import TINY_PPO, small_config

from okapi.config import ConfigError
from okapi.modeling import decoder_layers, load_causal_lm
from okapi.ppo import PolicyWithValue, PPOConfig, sequence_kl, split_heldout_prompts, train_ppo
from okapi.prompting import format_prompt
from okapi.sampling import encode_prompts, eos_ids, generate, response_mask

ROWS = [{"id": f"q{i:02d}", "instruction": f"Give three tips number {i}.", "input": ""} for i in range(10)]


def test_split_holds_out_whole_prompts_reproducibly() -> None:
    train, held = split_heldout_prompts(ROWS, 0.3, seed=0)
    assert len(held) == 3 and len(train) == 7
    assert {r["id"] for r in train}.isdisjoint(r["id"] for r in held)
    again_train, again_held = split_heldout_prompts(list(reversed(ROWS)), 0.3, seed=0)
    assert {r["id"] for r in again_held} == {r["id"] for r in held}  # row order does not matter
    assert {r["id"] for r in split_heldout_prompts(ROWS, 0.3, seed=1)[1]} != {r["id"] for r in held}


def test_split_keeps_a_prompt_to_train_on() -> None:
    assert split_heldout_prompts(ROWS, 0.0, 0) == (ROWS, [])
    assert split_heldout_prompts(ROWS[:1], 0.5, 0) == (ROWS[:1], [])
    train, held = split_heldout_prompts(ROWS[:2], 0.9, 0)
    assert len(train) == 1 and len(held) == 1


def test_heldout_fraction_and_separate_heldout_prompts_exclude_each_other(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ppo.heldout_fraction"):
        train_ppo(
            tmp_path, None, ROWS, ROWS[:2], tmp_path / "o", small_config(PPOConfig, heldout_fraction=0.2), reward_fn=len
        )
    with pytest.raises(ConfigError, match="ppo.heldout_fraction"):
        small_config(PPOConfig, heldout_fraction=1.0)
    with pytest.raises(ConfigError, match="ppo.heldout_samples"):
        small_config(PPOConfig, heldout_samples=0)


def test_sequence_kl_is_zero_at_the_reference_and_positive_after_a_change(tiny_model_dir: Path) -> None:
    lm, tok = load_causal_lm(tiny_model_dir, for_training=False)
    policy = PolicyWithValue(lm, top_layers=2)
    ids, pmask = encode_prompts(
        tok, [format_prompt("Say hi.", None), format_prompt("Tip 2.", "x")], torch.device("cpu")
    )
    torch.manual_seed(0)
    resp = generate(lm, tok, ids, pmask, max_new_tokens=5, temperature=1.0, top_p=1.0)
    mask = response_mask(resp, eos_ids(lm, tok), tok.pad_token_id)
    cfg = small_config(PPOConfig, mini_batch_size=1)
    assert torch.allclose(sequence_kl(policy, ids, pmask, resp, mask, cfg), torch.zeros(2), atol=1e-6)
    with torch.no_grad():
        decoder_layers(lm)[-1].mlp.down_proj.weight.add_(0.5)
    kl = sequence_kl(policy, ids, pmask, resp, mask, cfg)
    assert (kl > 0).all()  # the exact per-state KL, never the (possibly negative) sampled-token estimate


def test_ppo_with_a_heldout_slice_reports_the_final_policys_kl(tiny_model_dir: Path, tmp_path: Path) -> None:
    def reward(prompts: list[str], responses: list[str]) -> list[float]:
        return [float(len(r)) / 10 for r in responses]

    cfg = small_config(
        PPOConfig,
        **TINY_PPO,
        heldout_fraction=0.2,
        heldout_samples=3,
    )
    metrics, history = train_ppo(tiny_model_dir, None, ROWS, None, tmp_path / "ppo", cfg, reward_fn=reward)
    assert metrics["heldout_prompts"] == 2 and metrics["heldout_samples"] == 6 and metrics["prompts"] == 8
    assert metrics["steps"] == 2  # one epoch over 8 training prompts in batches of 4
    assert history[0]["kl"] == pytest.approx(0.0, abs=1e-5)  # the first batch is sampled before any update
    assert metrics["kl_last_rollout"] == history[-1]["kl"]
    assert math.isfinite(metrics["kl"]) and metrics["kl"] > 0  # the trained policy, not the first rollout
    assert math.isfinite(metrics["mean_reward_sft_heldout"]) and math.isfinite(metrics["mean_reward_ppo_heldout"])

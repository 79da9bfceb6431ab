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


def _batch(lm, tok):
    from okapi.ppo.rollout import sequence_inputs

    ids, pmask = encode_prompts(
        tok, [format_prompt("Say hi.", None), format_prompt("Give three tips.", "x")], torch.device("cpu")
    )
    torch.manual_seed(0)
    resp = generate(lm, tok, ids, pmask, max_new_tokens=5, temperature=1.0, top_p=1.0)
    mask = response_mask(resp, eos_ids(lm, tok), tok.pad_token_id)
    full_ids, attn, pos = sequence_inputs(ids, pmask, resp, mask)
    return full_ids, attn, pos, ids.shape[1]


def test_trunk_replay_gives_the_full_forwards_logits_values_and_gradients(tiny_model_dir: Path) -> None:
    """The frozen trunk computed once and replayed into the top blocks: the same policy and reference logits and
    values as the full forward, and the same gradients for the trained blocks."""
    lm, tok = load_causal_lm(tiny_model_dir, for_training=False)
    policy = PolicyWithValue(lm, top_layers=2)
    with torch.no_grad():
        decoder_layers(lm)[-1].mlp.down_proj.weight.add_(0.1)  # the policy moved away from its reference
        policy.value_head.weight.normal_()
    ids, attn, pos, start = _batch(lm, tok)
    assert policy.trunk(ids, attn, pos) is None  # off until checked
    assert policy.check_trunk_replay(ids, attn, pos, start)
    trunk = policy.trunk(ids, attn, pos)
    assert trunk is not None and trunk.shape == (*ids.shape, lm.config.hidden_size)
    for reference in (False, True):
        full_logits, full_values = policy(ids, attn, pos, start, reference=reference)
        fast_logits, fast_values = policy(ids, attn, pos, start, reference=reference, trunk=trunk)
        assert torch.allclose(fast_logits, full_logits, atol=1e-5)
        assert torch.allclose(fast_values, full_values, atol=1e-5)
    assert len(decoder_layers(lm)) == 6 and all(type(b).__name__ != "_Skip" for b in decoder_layers(lm))
    grads = []
    for kw in ({}, {"trunk": trunk}):
        policy.zero_grad(set_to_none=True)
        logits, values = policy(ids, attn, pos, start, **kw)
        (logits.float().logsumexp(-1).mean() + values.mean()).backward()
        grads.append([p.grad.clone() for p in policy.parameters_to_train()])
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(*grads, strict=True))


def test_trunk_replay_is_turned_off_where_the_embeddings_are_not_the_blocks_input(tmp_path: Path) -> None:
    """BLOOM (the paper's model) normalises inputs_embeds before its first block, so replaying the trunk would
    normalise twice: the check finds the difference and every pass runs the full forward."""
    from tiny import build_tokenizer
    from transformers import BloomConfig, BloomForCausalLM

    tok = build_tokenizer(tmp_path)
    torch.manual_seed(0)
    cfg = BloomConfig(
        vocab_size=len(tok),
        hidden_size=32,
        n_layer=4,
        n_head=2,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    BloomForCausalLM(cfg).save_pretrained(tmp_path)
    lm, tok = load_causal_lm(tmp_path, for_training=False)
    policy = PolicyWithValue(lm, top_layers=2)
    ids, attn, pos, start = _batch(lm, tok)
    assert not policy.check_trunk_replay(ids, attn, pos, start)
    assert policy.trunk(ids, attn, pos) is None


def test_the_trunk_captured_while_sampling_replaces_the_recomputed_one(tiny_model_dir: Path) -> None:
    """sample_with_trunk keeps what generate() computed in the frozen trunk: on every position a loss reads it
    equals the trunk run again over prompt + response, and make_rollout gives the same log-probs and values with
    it, including a left-padded prompt and a response that ended before the others."""
    from okapi.ppo.rollout import make_rollout, sample_with_trunk, sequence_inputs

    lm, tok = load_causal_lm(tiny_model_dir, for_training=False)
    policy = PolicyWithValue(lm, top_layers=2)
    eos = eos_ids(lm, tok)[0]
    with torch.no_grad():
        decoder_layers(lm)[-1].mlp.down_proj.weight.add_(0.1)
        policy.value_head.weight.normal_()
        lm.get_output_embeddings().weight[eos].mul_(40.0)  # EOS likely enough that some responses end early
    cfg = small_config(PPOConfig, max_new_tokens=8, temperature=1.0, top_p=1.0, mini_batch_size=2)
    prompts = [format_prompt("Say hi.", None), format_prompt("Give three tips for a long and healthy life.", "x")]
    prompts = prompts * 2
    for seed in range(40):
        torch.manual_seed(seed)
        ids, pmask, resp, mask, _texts, trunk = sample_with_trunk(policy, tok, prompts, cfg, torch.device("cpu"))
        lengths = mask.sum(1)
        if int(lengths.min()) < resp.shape[1] and int(lengths.max()) > 1:
            break
    else:
        pytest.fail("no batch with a response ending before the others in 40 seeds")
    assert bool((pmask == 0).any())  # the shorter prompt is left-padded
    full_ids, attn, pos = sequence_inputs(ids, pmask, resp, mask)
    assert trunk is not None and trunk.shape == (*full_ids.shape, lm.config.hidden_size)
    recomputed = policy._run_trunk(full_ids, attn, pos)
    start = ids.shape[1]
    # Positions whose output predicts a response token: the prompt's and the response's up to its end.
    reads = torch.cat([pmask.bool(), mask.bool()[:, :-1]], dim=1)
    reads = torch.cat([reads, torch.zeros_like(reads[:, :1])], dim=1)
    torch.testing.assert_close(trunk[reads], recomputed[reads], rtol=1e-4, atol=1e-5)
    assert float(trunk[~attn.bool()].abs().max()) == 0.0  # padding and what follows a response's end: zeros

    scores = torch.tensor([0.5, -0.5, 1.0, 0.0])
    fast = make_rollout(policy, ids, pmask, resp, mask, scores, cfg, sampled_trunk=trunk)
    assert policy.trunk_replay and fast.trunk is not None and torch.equal(fast.trunk, trunk)
    slow = make_rollout(policy, ids, pmask, resp, mask, scores, cfg)
    assert not torch.equal(slow.trunk, trunk)  # recomputed this time
    for name in ("old_logp", "ref_logp", "old_values", "advantages", "returns"):
        torch.testing.assert_close(getattr(fast, name), getattr(slow, name), rtol=1e-4, atol=1e-5, msg=name)
    assert start == fast.response_start

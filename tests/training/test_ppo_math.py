"""PPO math on small hand-checked tensors (no model)."""

from __future__ import annotations

import math

import pytest
import torch

from okapi.ppo import (
    gae,
    kl_per_token,
    masked_mean,
    policy_loss,
    token_rewards,
    value_loss,
    whiten,
)
from okapi.sampling import response_mask

EOS, PAD = 0, 9


def t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_gae_with_gamma_lam_one_gives_reward_to_go_returns() -> None:
    adv, ret = gae(t([[1.0, 2.0]]), t([[0.5, 1.0]]), t([[1, 1]]), gamma=1.0, lam=1.0)
    # t=1: delta = 2 - 1 = 1; t=0: delta = 1 + 1 - 0.5 = 1.5, A0 = 1.5 + 1 = 2.5
    assert adv.tolist() == [[2.5, 1.0]]
    assert ret.tolist() == [[3.0, 2.0]]  # reward-to-go


def test_gae_discounting() -> None:
    adv, ret = gae(t([[1.0, 2.0]]), t([[0.5, 1.0]]), t([[1, 1]]), gamma=0.5, lam=0.5)
    # t=1: A1 = 2 - 1 = 1; t=0: delta = 1 + 0.5 * 1 - 0.5 = 1, A0 = 1 + 0.25 * 1 = 1.25
    assert torch.allclose(adv, t([[1.25, 1.0]]))
    assert torch.allclose(ret, t([[1.75, 2.0]]))


def test_gae_ignores_rewards_and_values_after_the_mask() -> None:
    adv, ret = gae(t([[1.0, 5.0, 7.0]]), t([[0.5, 1.0, 9.0]]), t([[1, 1, 0]]), gamma=1.0, lam=1.0)
    # the episode ends at t=1: the masked value 9 is not bootstrapped and the masked reward 7 not collected
    assert adv.tolist() == [[5.5, 4.0, 0.0]]
    assert ret.tolist() == [[6.0, 5.0, 0.0]]


def test_gae_rows_are_independent() -> None:
    adv, _ = gae(t([[1.0, 0.0], [0.0, 3.0]]), t([[0.0, 0.0], [0.0, 0.0]]), t([[1, 0], [1, 1]]), 1.0, 1.0)
    assert adv.tolist() == [[1.0, 0.0], [3.0, 3.0]]


def test_whiten_uses_only_masked_entries() -> None:
    out = whiten(t([[1.0, 2.0, 3.0, 100.0]]), t([[1, 1, 1, 0]]))
    # mean 2, unbiased variance 1
    assert torch.allclose(out, t([[-1.0, 0.0, 1.0, 0.0]]), atol=1e-6)


def test_whiten_without_mean_shift_keeps_the_mean() -> None:
    out = whiten(t([[1.0, 2.0, 3.0]]), t([[1, 1, 1]]), shift_mean=False)
    assert torch.allclose(out, t([[1.0, 2.0, 3.0]]), atol=1e-6)


def test_masked_mean() -> None:
    assert float(masked_mean(t([[1.0, 3.0, 100.0]]), t([[1, 1, 0]]))) == 2.0
    assert masked_mean(t([[1.0, 3.0], [5.0, 7.0]]), t([[1, 0], [1, 1]]), dim=1).tolist() == [1.0, 6.0]


def test_kl_per_token_is_the_log_ratio() -> None:
    assert kl_per_token(t([[-1.0, -2.0]]), t([[-1.5, -2.0]])).tolist() == [[0.5, 0.0]]


def test_policy_loss_clips_and_masks() -> None:
    logp = torch.log(t([[1.5, 0.5, 1.1]])).requires_grad_(True)
    old = torch.zeros(1, 3)
    adv = t([[1.0, 1.0, -1.0]])
    loss, frac = policy_loss(logp, old, adv, t([[1, 1, 1]]), cliprange=0.2)
    # token 0: ratio 1.5 clipped to 1.2 -> -1.2; token 1: ratio 0.5 (below, A > 0: unclipped) -> -0.5; token 2: 1.1
    assert float(loss.detach()) == pytest.approx((-1.2 - 0.5 + 1.1) / 3)
    assert float(frac) == pytest.approx(1 / 3)
    loss.backward()
    # no gradient through the clipped token; d(-A * ratio)/dlogp = -A * ratio elsewhere
    assert logp.grad.tolist()[0] == pytest.approx([0.0, -0.5 / 3, 1.1 / 3])

    masked, masked_frac = policy_loss(logp.detach(), old, adv, t([[1, 1, 0]]), cliprange=0.2)
    assert float(masked) == pytest.approx((-1.2 - 0.5) / 2)
    assert float(masked_frac) == pytest.approx(0.5)


def test_policy_loss_is_minus_the_mean_advantage_at_ratio_one() -> None:
    logp = t([[-0.3, -2.0]])
    loss, frac = policy_loss(logp, logp.clone(), t([[2.0, -1.0]]), t([[1, 1]]), cliprange=0.2)
    assert float(loss) == pytest.approx(-0.5)
    assert float(frac) == 0.0


def test_value_loss_clips_around_the_old_values() -> None:
    loss, frac = value_loss(t([[2.0, 0.0]]), t([[1.0, 1.0]]), t([[3.0, 0.0]]), t([[1, 1]]), cliprange_value=0.5)
    # token 0: clipped value 1.5 -> (1.5 - 3)^2 = 2.25 > 1; token 1: clipped 0.5 -> 0.25 > 0
    assert float(loss) == pytest.approx(0.5 * (2.25 + 0.25) / 2)
    assert float(frac) == 1.0
    inside, inside_frac = value_loss(t([[1.2]]), t([[1.0]]), t([[3.0]]), t([[1]]), cliprange_value=0.5)
    assert float(inside) == pytest.approx(0.5 * 1.8**2)
    assert float(inside_frac) == 0.0


def test_value_loss_ignores_masked_tokens() -> None:
    loss, _ = value_loss(t([[1.0, 50.0]]), t([[1.0, 0.0]]), t([[2.0, 0.0]]), t([[1, 0]]), cliprange_value=0.2)
    assert float(loss) == pytest.approx(0.5)


def test_token_rewards_put_the_score_on_the_last_response_token() -> None:
    rewards, kl = token_rewards(
        t([2.0, -1.0]),
        t([[-1.0, -1.0, -1.0], [-1.0, -1.0, -1.0]]),
        t([[-1.5, -1.0, -0.5], [-1.0, -1.0, -1.0]]),
        t([[1, 1, 0], [1, 1, 1]]),
        kl_coef=0.1,
    )
    assert torch.allclose(kl, t([[0.5, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    assert torch.allclose(rewards, t([[-0.05, 2.0, 0.0], [0.0, 0.0, -1.0]]))


def test_response_mask_stops_after_the_first_eos_and_on_padding() -> None:
    ids = torch.tensor(
        [
            [5, 6, EOS, PAD, PAD],  # ends with EOS: EOS is part of the response
            [5, EOS, 7, EOS, 8],  # anything after the first EOS is out
            [7, 8, 3, 4, 2],  # cut at the length limit: everything counts
            [EOS, PAD, PAD, PAD, PAD],  # empty response: only the EOS
            [5, PAD, 6, PAD, PAD],  # a pad token is never a response token
        ]
    )
    assert response_mask(ids, [EOS], PAD).tolist() == [
        [1, 1, 1, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 1, 1],
        [1, 0, 0, 0, 0],
        [1, 0, 1, 0, 0],
    ]


def test_response_mask_accepts_several_eos_ids() -> None:
    assert response_mask(torch.tensor([[5, 4, 6]]), [EOS, 4], PAD).tolist() == [[1, 1, 0]]


def test_full_masked_pipeline_has_no_signal_past_eos() -> None:
    mask = response_mask(torch.tensor([[5, EOS, PAD]]), [EOS], PAD).float()
    rewards, _ = token_rewards(t([1.0]), t([[-1.0, -1.0, -3.0]]), t([[-1.0, -2.0, -9.0]]), mask, kl_coef=0.5)
    adv, ret = gae(rewards, t([[0.2, 0.4, 7.0]]), mask, gamma=1.0, lam=0.95)
    assert adv[0, 2] == 0 and ret[0, 2] == 0
    # last real token: r = 1 - 0.5 * 1 = 0.5, A1 = 0.5 - 0.4; A0 = (0 + 0.4 - 0.2) + 0.95 * A1
    assert adv[0].tolist()[:2] == pytest.approx([0.2 + 0.95 * 0.1, 0.1])
    assert math.isfinite(float(whiten(adv, mask).sum()))

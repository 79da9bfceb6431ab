"""Held-out splits by prompt (reward model accuracy, PPO held-out prompts) and the reward model's grouped order."""

from __future__ import annotations

from collections import Counter

from okapi.ppo import split_heldout_prompts
from okapi.ranking import make_pairs
from okapi.reward import split_heldout
from okapi.splits import PromptGroupSampler, prompt_groups, prompt_key, split_by_prompt


def _rankings(n: int) -> list[dict]:
    return [
        {
            "id": f"p{i}",
            "lang": "vi",
            "instruction": f"Câu hỏi {i}",
            "input": "",
            "responses": [f"r{i}-{k}" for k in range(4)],
            "ranks": [2, 1, 4, 3],
            "status": "ok",
        }
        for i in range(n)
    ]


def test_reward_split_never_puts_a_prompt_on_both_sides() -> None:
    pairs = make_pairs(_rankings(10), "all")
    # The same prompt reached again under another id (a duplicate instruction ranked twice) is still one prompt.
    pairs += [{**p, "id": "dup:" + p["id"], "instruction": "  Câu hỏi 3 "} for p in pairs[:6]]
    train, held = split_heldout(pairs, 0.3, seed=0)
    assert len(train) + len(held) == len(pairs)
    assert {prompt_key(p) for p in train}.isdisjoint({prompt_key(p) for p in held})
    assert len({prompt_key(p) for p in held}) == 3  # ceil(0.3 x 10 prompts), not 30 % of the 66 pairs
    assert all(Counter(prompt_key(p) for p in held)[prompt_key(p)] in (6, 12) for p in held)  # every pair of it
    # Several seeds: the old split by pair id put most prompts on both sides; by prompt, none ever is.
    for seed in range(20):
        train, held = split_heldout(pairs, 0.2, seed)
        assert {prompt_key(p) for p in train}.isdisjoint({prompt_key(p) for p in held})


def test_ppo_split_is_by_prompt_not_by_id() -> None:
    rows = [{"id": f"q{i}", "instruction": f"Tip {i % 5}", "input": "x" if i % 2 else ""} for i in range(20)]
    rows.append({"id": "other-id", "instruction": "Tip 0", "input": ""})  # same prompt as q0, another id
    for seed in range(20):
        train, held = split_heldout_prompts(rows, 0.3, seed)
        assert held and train
        assert {prompt_key(r) for r in train}.isdisjoint({prompt_key(r) for r in held})
        assert len(train) + len(held) == len(rows)


def test_split_is_independent_of_row_order_and_keeps_one_prompt_to_train_on() -> None:
    rows = [{"id": str(i), "instruction": f"I {i}", "input": ""} for i in range(8)]
    _, held = split_by_prompt(rows, 0.25, seed=3)
    _, held_rev = split_by_prompt(list(reversed(rows)), 0.25, seed=3)
    assert {r["id"] for r in held} == {r["id"] for r in held_rev}
    assert split_by_prompt(rows, 0.0, 0) == (rows, [])
    assert split_by_prompt(rows[:1], 0.9, 0, min_heldout=1) == (rows[:1], [])
    train, held = split_by_prompt(rows, 0.99, 0)
    assert len(train) == 1 and len(held) == 7
    assert len(split_by_prompt(rows, 0.01, 0, min_heldout=1)[1]) == 1


def test_grouped_order_keeps_a_prompts_pairs_together_once_per_epoch() -> None:
    pairs = make_pairs(_rankings(7), "all")
    groups = prompt_groups(pairs)
    assert len(set(groups)) == 7 and Counter(groups) == {g: 6 for g in range(7)}
    sampler = PromptGroupSampler(groups, seed=0)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert sorted(order) == list(range(len(pairs)))  # every pair exactly once per epoch
        seen = [groups[i] for i in order]
        # contiguous: a group's pairs form one run, never spread over the epoch
        runs = [g for k, g in enumerate(seen) if k == 0 or seen[k - 1] != g]
        assert len(runs) == 7 and len(set(runs)) == 7
        orders.append(runs)
    assert orders[0] != orders[1] or orders[1] != orders[2]  # a new group order each epoch
    sampler.set_epoch(1)
    assert [groups[i] for i in sampler][::6] == orders[1]  # the same epoch gives the same order (resume)


def test_one_pair_per_prompt_is_best_versus_worst() -> None:
    pairs = make_pairs(_rankings(3), "best_worst")
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [(f"r{i}-1", f"r{i}-2") for i in range(3)]
    assert len(set(prompt_groups(pairs))) == len(pairs)

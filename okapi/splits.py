"""Splits and training order by prompt: one home for "which rows share a prompt".

A prompt is an (instruction, input) pair. Rows that share one (the C(T, 2) preference pairs of one ranking, or the
same instruction reached twice under two ids) are one group: a held-out split never puts a group on both sides,
and the reward model's training order keeps a group's pairs next to each other, each seen once per epoch
(InstructGPT, Ouyang et al. 2022, §3.5, found that a prompt's comparisons shuffled independently over the dataset
make the reward model overfit within one pass, and trained on them together).

Input rows: any mapping with ``instruction`` and (optionally) ``input``: schemas.PAIRS and schemas.PROMPTS rows.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from typing import Any

from torch.utils.data import Sampler


def prompt_key(row: dict[str, Any]) -> tuple[str, str]:
    """The prompt a row belongs to; whitespace runs are folded so a re-spaced copy is the same prompt."""
    return " ".join(str(row.get("instruction") or "").split()), " ".join(str(row.get("input") or "").split())


def prompt_groups(rows: Sequence[dict[str, Any]]) -> list[int]:
    """Group number of each row (0, 1, ... in order of first appearance); rows with one prompt share a number."""
    numbers: dict[tuple[str, str], int] = {}
    return [numbers.setdefault(prompt_key(r), len(numbers)) for r in rows]


def split_by_prompt(
    rows: Sequence[dict[str, Any]], fraction: float, seed: int, *, min_heldout: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, heldout) rows with ``ceil(fraction x prompts)`` prompts held out, all their rows with them.

    At least ``min_heldout`` prompts are held out when ``fraction > 0``, and at least one prompt is left to train on.
    The held-out prompts are drawn from the sorted prompt keys, so the split depends neither on row order nor on
    ids (a prompt present under two ids is still on one side only). Row order is kept within each side.
    """
    keys = sorted({prompt_key(r) for r in rows})
    if fraction <= 0 or len(keys) < 2:
        return list(rows), []
    n_held = max(min_heldout, math.ceil(fraction * len(keys)))
    n_held = min(n_held, len(keys) - 1)
    held = set(random.Random(seed).sample(keys, n_held))
    train = [r for r in rows if prompt_key(r) not in held]
    heldout = [r for r in rows if prompt_key(r) in held]
    return train, heldout


class PromptGroupSampler(Sampler[int]):
    """Training order for preference pairs: groups (prompts) in a fresh random order each epoch, the pairs of a
    group consecutive, every pair exactly once per epoch.

    A group still straddles two batches when the batch size is not a multiple of its size; it is never spread over
    the epoch. With one pair per prompt (``rank.pairs: best_worst``) this is an ordinary per-epoch shuffle.
    The Trainer calls :meth:`set_epoch` before each epoch, so a resumed run sees the same order as an unbroken one.
    """

    def __init__(self, groups: Sequence[int], seed: int) -> None:
        self.seed = seed
        self.epoch = 0
        members: dict[int, list[int]] = {}
        for index, group in enumerate(groups):
            members.setdefault(group, []).append(index)
        self.members = list(members.values())
        self.size = len(groups)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        order = list(range(len(self.members)))
        random.Random(f"{self.seed}:{self.epoch}").shuffle(order)
        for g in order:
            yield from self.members[g]

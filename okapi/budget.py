"""Prices and the spending cap (``teacher.budget_usd``): one home for what a teacher answer costs.

The budget is per teacher stage run and cumulative over its cache: ``generate``, ``translate@<lang>`` and
``rank@<lang>`` each have their own cache, and the answers already in it count as spent (at today's
``teacher.prices``). So a stage stopped by its budget resumes, with a larger budget, exactly where it stopped, and
a stage whose cache already holds its budget's worth sends nothing. Per stage rather than over the whole pipeline
because DVC runs and caches each stage on its own; ``python -m okapi.estimate`` shows what each stage will cost,
so a pipeline total is the sum of what the stages are allowed.

Before a request is sent its worst case is reserved: an upper bound of its prompt tokens (the UTF-8 bytes of its
messages: a byte-level BPE token is at least one byte) plus ``max_tokens`` completion tokens. A request whose
worst case would take spent + in-flight reservations past the budget is not sent, so the budget is never crossed
even with ``max_concurrency`` requests in flight; the price of that guarantee is that a stage may stop a little
short of its budget.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from okapi.config import ConfigError

log = logging.getLogger(__name__)

# OpenAI's Batch API bills half the online price (platform.openai.com/docs/guides/batch, "50% cost discount").
BATCH_DISCOUNT = 0.5
# Chat-format overhead per message and per reply priming (OpenAI's cookbook counts 3 + 3; 4 + 3 is an upper bound).
MESSAGE_OVERHEAD_TOKENS = 4
REPLY_OVERHEAD_TOKENS = 3


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens as billed for one request (the Batch API's discount already applied)."""

    prompt: float
    completion: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.prompt + completion_tokens * self.completion) / 1e6


def price_for(prices: dict[str, dict[str, float]], model: str, mode: str) -> Price | None:
    """The price of ``model`` from ``teacher.prices`` (None when it is not listed), halved in batch mode."""
    entry = prices.get(model)
    if entry is None:
        return None
    factor = BATCH_DISCOUNT if mode == "batch" else 1.0
    return Price(float(entry.get("prompt", 0.0)) * factor, float(entry.get("completion", 0.0)) * factor)


def check_price(prices: dict[str, dict[str, float]], model: str, *, why: str) -> None:
    """A ConfigError unless ``teacher.prices`` has a complete, non-negative entry for ``model``."""
    entry = prices.get(model)
    example = f"teacher.prices: {{{model}: {{prompt: <USD per 1M prompt tokens>, completion: <USD per 1M>}}}}"
    if entry is None:
        listed = ", ".join(sorted(prices)) or "none"
        raise ConfigError(f"{why} needs the price of teacher.model {model!r} (priced: {listed}); add {example}")
    missing = [k for k in ("prompt", "completion") if k not in entry]
    if missing:
        raise ConfigError(f"teacher.prices.{model} lacks {missing[0]!r}; allowed: {example}")
    for k, v in entry.items():
        if k not in ("prompt", "completion") or v < 0:
            raise ConfigError(
                f"parameter teacher.prices.{model}.{k} = {v!r} is invalid; allowed: prompt and completion, "
                "each a number of USD per 1M tokens >= 0"
            )


def prompt_tokens_upper_bound(messages: list[dict[str, Any]]) -> int:
    """At least as many tokens as any byte-level BPE tokenizer makes of ``messages`` (one token >= one byte)."""
    total = REPLY_OVERHEAD_TOKENS
    for m in messages:
        total += MESSAGE_OVERHEAD_TOKENS + len(str(m.get("content") or "").encode("utf-8"))
        total += len(str(m.get("role") or "").encode("utf-8"))
    return total


class Budget:
    """The spending cap of one stage run: spent (cached answers) + reserved (in flight) never passes ``limit``.

    ``limit`` None: no cap (every admit succeeds, spending is still tallied for the message of a later stop).
    """

    def __init__(self, limit_usd: float | None, price: Price | None, spent_usd: float, where: str) -> None:
        if limit_usd is not None and price is None:
            raise ConfigError("teacher.budget_usd is set but no price is known for the model")  # checked before
        self.limit = limit_usd
        self.price = price
        self.spent = spent_usd
        self.spent_at_start = spent_usd
        self.reserved = 0.0
        self.where = where
        self.stopped: str | None = None  # the sentence explaining the stop, once one request was refused

    def worst_case(self, messages: list[dict[str, Any]], max_tokens: int) -> float:
        if self.price is None:
            return 0.0
        return self.price.cost(prompt_tokens_upper_bound(messages), max_tokens)

    def admit(self, worst_usd: float) -> bool:
        """Reserve ``worst_usd`` for a request about to be sent; False (and nothing reserved) when it could cross."""
        if self.limit is None:
            return True
        if self.stopped is not None:
            return False
        if self.spent + self.reserved + worst_usd > self.limit:
            self.stopped = self._sentence(worst_usd)
            log.warning("%s", self.stopped)
            return False
        self.reserved += worst_usd
        return True

    def release(self, worst_usd: float) -> None:
        """Give back a reservation (its request was answered, and its real cost booked by :meth:`spend`, or failed)."""
        self.reserved = max(0.0, self.reserved - worst_usd)

    def spend(self, prompt_tokens: int, completion_tokens: int) -> None:
        if self.price is not None:
            self.spent += self.price.cost(prompt_tokens, completion_tokens)

    def _sentence(self, worst_usd: float) -> str:
        assert self.limit is not None
        if self.spent_at_start >= self.limit and self.spent == self.spent_at_start:
            return (
                f"teacher.budget_usd = {self.limit:g} is already spent: the answers cached in {self.where} cost "
                f"${self.spent:.4f}; nothing was sent; raise teacher.budget_usd to buy more"
            )
        return (
            f"stopped before a request that could cross teacher.budget_usd: spent ${self.spent:.4f} of "
            f"${self.limit:g} (${self.spent - self.spent_at_start:.4f} in this run; the next request could cost up to "
            f"${worst_usd:.4f}); every answer bought is cached in {self.where}, so a rerun with a larger "
            "teacher.budget_usd continues without sending them again"
        )

"""Uncertainty for the report: standard errors of averages and a paired significance test between two models.

Standard error of an average over languages. A table's "Ave Group" / "Average" value is the unweighted mean of
K per-language accuracies, each measured on its own independent documents with lm-eval's standard error
``se_l`` (sample standard deviation / sqrt(n_l)). The variance of a mean of independent estimates is the sum of
their variances over K squared, so ``se = sqrt(sum(se_l ** 2)) / K`` — the same number a bootstrap over documents
(resampling within each language) converges to, without its randomness.

Paired test. Two models scored on the same documents give one pair of 0/1 outcomes per document. We use the
paired sign-flip (randomisation) test: under the null hypothesis that the two models are interchangeable, each
document's pair is as likely to be swapped as not, so each discordant document (one model right, the other wrong)
adds +1 or -1 to the difference with probability 1/2, and concordant documents add nothing. For one language this
is exactly the two-sided exact McNemar test (a binomial test on the discordant documents), chosen over a paired
bootstrap because it is exact at any sample size (the embedded run has 6 documents per cell, where a bootstrap's
interval is badly anti-conservative) and needs no random seed. For an average over languages the statistic is the
same unweighted mean of per-language differences the table prints, and its null distribution is the convolution
of the per-language binomials, computed exactly while it stays small and by a seeded Monte Carlo draw beyond that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

ALPHA = 0.05  # two-sided; "significant" means p < ALPHA
Z95 = 1.959963984540054  # the normal quantile of a two-sided 95 % interval
EXACT_SUPPORT_LIMIT = 50_000  # null-distribution points kept exactly before switching to Monte Carlo
MONTE_CARLO_DRAWS = 100_000
MONTE_CARLO_SEED = 0


def mean_stderr(stderrs: Sequence[float]) -> float:
    """Standard error of the unweighted mean of independent estimates with standard errors ``stderrs``."""
    if not stderrs:
        raise ValueError("mean_stderr needs at least one standard error")
    return math.sqrt(sum(se * se for se in stderrs)) / len(stderrs)


def proportion_stderr(successes: int, n: int) -> float:
    """lm-eval's standard error of a mean of 0/1 outcomes: sample standard deviation (n - 1) over sqrt(n)."""
    if n < 2:
        return math.nan
    p = successes / n
    return math.sqrt(p * (1 - p) / (n - 1))


@dataclass(frozen=True)
class Discordance:
    """One language's paired outcomes: documents where only A was right, only B was right, and all documents."""

    a_only: int
    b_only: int
    n: int

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[float, float]]) -> Discordance:
        for a, b in pairs:
            if a not in (0.0, 1.0) or b not in (0.0, 1.0):
                raise ValueError(f"paired outcomes must be 0 or 1, got ({a!r}, {b!r})")
        return cls(
            a_only=sum(1 for a, b in pairs if a > b),
            b_only=sum(1 for a, b in pairs if b > a),
            n=len(pairs),
        )


@dataclass(frozen=True)
class PairedResult:
    diff: float  # mean over languages of (accuracy A - accuracy B), as a fraction
    p_value: float
    n: int  # documents compared, all languages together
    method: str  # "exact" or "monte-carlo"

    @property
    def significant(self) -> bool:
        return self.p_value < ALPHA


def _binomial_half(d: int) -> list[float]:
    """P(X = k) for X ~ Binomial(d, 1/2), k = 0..d."""
    total = 2**d  # an int: int / int stays exact enough where 2.0 ** d would overflow (d > 1023)
    return [math.comb(d, k) / total for k in range(d + 1)]


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value: 2 * P(X <= min(b, c)) for X ~ Binomial(b + c, 1/2), at most 1."""
    d = a_only + b_only
    if d == 0:
        return 1.0
    probs = _binomial_half(d)
    return min(1.0, 2.0 * sum(probs[: min(a_only, b_only) + 1]))


def paired_test(languages: Sequence[Discordance]) -> PairedResult:
    """Sign-flip test of the unweighted mean over languages of (acc A - acc B); see the module docstring."""
    langs = [lang for lang in languages if lang.n > 0]
    if not langs:
        raise ValueError("paired_test needs at least one language with documents")
    k = len(langs)
    observed = sum(Fraction(lang.a_only - lang.b_only, lang.n) for lang in langs) / k
    total = sum(lang.n for lang in langs)
    if len({lang.n for lang in langs}) == 1:
        # Equal document counts: the statistic is proportional to the pooled sum of signs, whose null distribution
        # is one binomial over all discordant documents, so the test is McNemar's on the pooled counts.
        p = mcnemar_exact(sum(lang.a_only for lang in langs), sum(lang.b_only for lang in langs))
        return PairedResult(float(observed), p, total, "exact")
    dist = _exact_null(langs)
    if dist is not None:
        extreme = abs(observed)
        p = sum(prob for value, prob in dist.items() if abs(value) >= extreme)
        return PairedResult(float(observed), min(1.0, p), total, "exact")
    return PairedResult(float(observed), _monte_carlo_p(langs, float(observed)), total, "monte-carlo")


def _exact_null(langs: Sequence[Discordance]) -> dict[Fraction, float] | None:
    """Null distribution of sum_l (2 X_l - D_l) / n_l (times K, which does not change |T| >= |t|), or None if big."""
    k = len(langs)
    dist: dict[Fraction, float] = {Fraction(0): 1.0}
    for lang in langs:
        d = lang.a_only + lang.b_only
        if len(dist) * (d + 1) > EXACT_SUPPORT_LIMIT:
            return None
        step = [(Fraction(2 * x - d, lang.n * k), prob) for x, prob in enumerate(_binomial_half(d))]
        merged: dict[Fraction, float] = {}
        for value, prob in dist.items():
            for delta, q in step:
                key = value + delta
                merged[key] = merged.get(key, 0.0) + prob * q
        dist = merged
    return dist


def _monte_carlo_p(langs: Sequence[Discordance], observed: float) -> float:
    import numpy as np

    rng = np.random.default_rng(MONTE_CARLO_SEED)
    k = len(langs)
    total = np.zeros(MONTE_CARLO_DRAWS)
    for lang in langs:
        d = lang.a_only + lang.b_only
        total += (2 * rng.binomial(d, 0.5, size=MONTE_CARLO_DRAWS) - d) / lang.n
    # Ties count as extreme; float sums need the slack.
    hits = int(np.count_nonzero(np.abs(total / k) >= abs(observed) - 1e-12))
    # The +1 keeps a Monte Carlo p-value above 0 (the observed assignment is one of the possible ones).
    return (hits + 1) / (MONTE_CARLO_DRAWS + 1)

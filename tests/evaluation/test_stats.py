"""okapi.stats: standard errors and the paired test on tiny examples checked by hand."""

from __future__ import annotations

import itertools
import math

import pytest

import okapi.stats as stats
from okapi.stats import Discordance, mcnemar_exact, mean_stderr, paired_test, proportion_stderr


def test_stderr_of_a_proportion_is_lm_evals():
    # lm-eval's acc_stderr in the embedded run's metrics/eval/es.json: 3/6 -> 0.22360679774997896, 1/6 -> 1/6.
    assert proportion_stderr(3, 6) == pytest.approx(0.22360679774997896, abs=1e-15)
    assert proportion_stderr(1, 6) == pytest.approx(1 / 6)
    assert proportion_stderr(6, 6) == 0.0
    assert math.isnan(proportion_stderr(1, 1))


def test_stderr_of_a_mean_of_languages():
    # sqrt(0.3^2 + 0.4^2) / 2 = 0.5 / 2
    assert mean_stderr([0.3, 0.4]) == pytest.approx(0.25)
    assert mean_stderr([0.2]) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        mean_stderr([])


def test_exact_mcnemar_by_hand():
    assert mcnemar_exact(6, 0) == pytest.approx(2 / 64)  # all six discordant documents one way
    assert mcnemar_exact(5, 0) == pytest.approx(2 / 32)
    assert mcnemar_exact(3, 1) == pytest.approx(2 * (1 + 4) / 16)
    assert mcnemar_exact(1, 1) == 1.0 and mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(2000, 1800) == pytest.approx(0.00126, rel=0.05)  # no float overflow at d > 1023


def pairs(a: list[int], b: list[int]) -> Discordance:
    return Discordance.from_pairs(list(zip(map(float, a), map(float, b), strict=True)))


def test_tie_ish_six_documents_is_not_significant_and_a_clear_difference_is():
    # The embedded run's shape: 6 documents, RLHF 3/6 vs SFT 2/6 (50.0 vs 33.3): one discordant document.
    small = paired_test([pairs([1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0])])
    assert small.diff == pytest.approx(1 / 6) and small.p_value == 1.0 and not small.significant
    # Even 6/6 vs 3/6 is not: three discordant documents, p = 2 / 8.
    assert paired_test([pairs([1] * 6, [1, 1, 1, 0, 0, 0])]).p_value == pytest.approx(0.25)
    # 30/40 vs 10/40 with every difference in A's favour: p = 2 / 2^20.
    clear = paired_test([pairs([1] * 30 + [0] * 10, [1] * 10 + [0] * 30)])
    assert clear.p_value == pytest.approx(2 / 2**20) and clear.significant and clear.n == 40


def test_average_over_languages_with_equal_counts_pools_the_discordant_documents():
    # Two languages of 6 documents: (2 A-only, 1 B-only) and (1, 0): 4 discordant, net +2 -> P(|S| >= 2) = 10/16.
    result = paired_test([Discordance(2, 1, 6), Discordance(1, 0, 6)])
    assert result.diff == pytest.approx((1 / 6 + 1 / 6) / 2)
    assert result.p_value == pytest.approx(10 / 16) and result.method == "exact"
    assert paired_test([Discordance(6, 0, 6), Discordance(6, 0, 6)]).p_value == pytest.approx(2 / 2**12)


def brute_force_p(langs: list[Discordance]) -> float:
    """Enumerate every sign assignment of the discordant documents (the definition of the test)."""
    signs = [(lang, s) for lang in langs for s in [1] * lang.a_only + [-1] * lang.b_only]
    observed = sum(s / lang.n for lang, s in signs)
    hits = 0
    for flips in itertools.product((1, -1), repeat=len(signs)):
        value = sum(f * s / lang.n for (lang, s), f in zip(signs, flips, strict=True))
        hits += abs(value) >= abs(observed) - 1e-12
    return hits / 2 ** len(signs)


def test_unequal_counts_exact_and_monte_carlo_agree_with_enumeration(monkeypatch):
    langs = [Discordance(2, 1, 6), Discordance(1, 1, 5), Discordance(3, 0, 7)]
    expected = brute_force_p(langs)
    exact = paired_test(langs)
    assert exact.method == "exact" and exact.p_value == pytest.approx(expected)
    monkeypatch.setattr(stats, "EXACT_SUPPORT_LIMIT", 1)
    drawn = paired_test(langs)
    assert drawn.method == "monte-carlo" and drawn.p_value == pytest.approx(expected, abs=0.01)


def test_outcomes_must_be_zero_or_one():
    with pytest.raises(ValueError, match="0 or 1"):
        Discordance.from_pairs([(0.5, 1.0)])
    with pytest.raises(ValueError, match="at least one language"):
        paired_test([Discordance(0, 0, 0)])

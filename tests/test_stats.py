"""Tests of attnlab.stats against published values and independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize
from scipy import stats as sps

from attnlab.stats import (
    PairedCounts,
    bootstrap_ci,
    mcnemar_exact,
    paired_counts,
    paired_difference_interval,
    paired_difference_interval_from_counts,
    wilson_interval,
)


def _vectors(both: int, only_x: int, only_y: int, neither: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled boolean vectors (x, y) whose paired 2x2 table has the given cells."""
    x = np.array([True] * both + [True] * only_x + [False] * only_y + [False] * neither)
    y = np.array([True] * both + [False] * only_x + [True] * only_y + [False] * neither)
    order = np.random.default_rng(seed).permutation(x.size)
    return x[order], y[order]


# ----------------------------------------------------------------------------- Wilson


# Newcombe (1998a), "Two-sided confidence intervals for the single proportion:
# comparison of seven methods", Stat. Med. 17:857-872, Table II, method 3
# (score interval without continuity correction), 95 %, to 4 decimals.
NEWCOMBE_1998A_WILSON = [
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0000, 0.1611),
    (1, 29, 0.0061, 0.1718),
]


@pytest.mark.parametrize(("successes", "n", "low", "high"), NEWCOMBE_1998A_WILSON)
def test_wilson_matches_newcombe_1998_table(successes: int, n: int, low: float, high: float) -> None:
    got_low, got_high = wilson_interval(successes, n)
    assert got_low == pytest.approx(low, abs=5e-5)
    assert got_high == pytest.approx(high, abs=5e-5)


def _wilson_by_score_test_inversion(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """Independent Wilson interval: the p where the score statistic |p_hat - p| / sqrt(p(1-p)/n) = z."""
    z = sps.norm.ppf(1 - (1 - confidence) / 2)
    p_hat = successes / n

    def excess(p: float) -> float:
        return abs(p_hat - p) - z * math.sqrt(p * (1 - p) / n)

    # excess > 0 at the ends of (0, 1) and < 0 just beside p_hat: one root on each side
    low = 0.0 if successes == 0 else optimize.brentq(excess, 1e-15, p_hat - 1e-12, xtol=1e-14)
    high = 1.0 if successes == n else optimize.brentq(excess, p_hat + 1e-12, 1 - 1e-15, xtol=1e-14)
    return low, high


@pytest.mark.parametrize(
    ("successes", "n", "confidence"),
    [(0, 10, 0.95), (5, 10, 0.95), (10, 10, 0.95), (81, 100, 0.95), (3, 7, 0.9), (999, 1000, 0.99), (1, 2, 0.5)],
)
def test_wilson_equals_score_test_inversion(successes: int, n: int, confidence: float) -> None:
    expected = _wilson_by_score_test_inversion(successes, n, confidence)
    assert wilson_interval(successes, n, confidence) == pytest.approx(expected, abs=1e-9)


def test_wilson_known_values_statsmodels() -> None:
    # statsmodels.stats.proportion.proportion_confint(k, n, method="wilson") gives
    # 0/10 -> (0, 0.2775328), 5/10 -> (0.2365931, 0.7634069), 10/10 -> (0.7224672, 1)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775328), abs=1e-7)
    assert wilson_interval(5, 10) == pytest.approx((0.2365931, 0.7634069), abs=1e-7)
    assert wilson_interval(10, 10) == pytest.approx((0.7224672, 1.0), abs=1e-7)


def test_wilson_edges_are_exact_and_interval_narrows() -> None:
    assert wilson_interval(0, 50)[0] == 0.0
    assert wilson_interval(50, 50)[1] == 1.0
    low_small, high_small = wilson_interval(8, 10)
    low_big, high_big = wilson_interval(800, 1000)
    assert high_big - low_big < high_small - low_small
    assert low_big < 0.8 < high_big
    wider = wilson_interval(8, 10, confidence=0.99)
    assert wider[0] < low_small and wider[1] > high_small


@pytest.mark.parametrize(
    ("successes", "n", "confidence", "message"),
    [
        (1, 0, 0.95, "n > 0"),
        (11, 10, 0.95, "exceed"),
        (-1, 10, 0.95, ">= 0"),
        (1, 10, 1.0, "confidence"),
        (1.5, 10, 0.95, "integer"),
    ],
)
def test_wilson_rejects_bad_input(successes, n, confidence, message) -> None:
    with pytest.raises(ValueError, match=message):
        wilson_interval(successes, n, confidence)


# ----------------------------------------------------------------------------- McNemar


@pytest.mark.parametrize(("b", "c"), [(0, 1), (0, 5), (1, 6), (3, 3), (19, 6), (6, 19), (40, 25), (2, 11), (100, 70)])
def test_mcnemar_exact_equals_scipy_binomtest(b: int, c: int) -> None:
    expected = sps.binomtest(min(b, c), b + c, 0.5, alternative="two-sided").pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-12)


def test_mcnemar_exact_hand_values() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(4, 4) == 1.0
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)  # 2 * 0.5^5
    assert mcnemar_exact(1, 6) == pytest.approx(2 * (1 + 7) / 128)  # 2 * P(X <= 1), X ~ Bin(7, 1/2)
    assert mcnemar_exact(5, 0) == mcnemar_exact(0, 5)
    with pytest.raises(ValueError, match="b must be >= 0"):
        mcnemar_exact(-1, 3)


# ----------------------------------------------------------------------------- Newcombe paired interval


def test_paired_counts_cells() -> None:
    x, y = _vectors(both=4, only_x=3, only_y=2, neither=1)
    assert paired_counts(x, y) == PairedCounts(4, 3, 2, 1)
    assert paired_counts(x.astype(int), y.astype(int)).n == 10
    with pytest.raises(ValueError, match="same length"):
        paired_counts(x, y[:-1])
    with pytest.raises(ValueError, match="booleans"):
        paired_counts(np.array([0.5, 1.0]), np.array([True, False]))


def test_newcombe_cavo_example_fagerland() -> None:
    # Complete response before/after consolidation therapy (Cavo et al. 2012), table
    # [[59, 6], [16, 80]]; Fagerland, Lydersen & Laake, "Statistical Analysis of
    # Contingency Tables" (2017), ch. 8, Newcombe square-and-add interval for
    # p1+ - p+1: estimate -0.0621, 95 % CI -0.1186 to -0.0046 (also the expected
    # output in the R package contingencytables, tests/testthat/test-ch8.R).
    # p1+ is the row (first) classification = our y; p+1 the column one = our x.
    x, y = _vectors(both=59, only_x=16, only_y=6, neither=80)
    diff, low, high = paired_difference_interval(x, y)
    assert diff == pytest.approx(-0.0621, abs=5e-5)
    assert low == pytest.approx(-0.1186, abs=5e-5)
    assert high == pytest.approx(-0.0046, abs=5e-5)


def test_newcombe_1998_paired_example() -> None:
    # Newcombe (1998b), Stat. Med. 17:2635-2650, Table II, example with cells
    # 36 / 12 / 2 / 0 (n = 50): difference 0.2, method 10 interval 0.0569 to 0.3404.
    diff, low, high = paired_difference_interval_from_counts(both=36, only_x=2, only_y=12, neither=0)
    assert diff == pytest.approx(0.2)
    assert low == pytest.approx(0.0569, abs=5e-5)
    assert high == pytest.approx(0.3404, abs=5e-5)


@pytest.mark.parametrize(
    "cells", [(36, 2, 12, 0), (59, 16, 6, 80), (5, 0, 0, 5), (0, 3, 0, 0), (10, 0, 0, 0), (1, 4, 9, 2)]
)
def test_newcombe_interval_properties(cells: tuple[int, int, int, int]) -> None:
    diff, low, high = paired_difference_interval_from_counts(*cells)
    assert -1.0 <= low <= diff <= high <= 1.0
    assert low < high  # never degenerate, even with no discordant pairs
    # swapping the two systems mirrors the interval
    both, only_x, only_y, neither = cells
    mirrored = paired_difference_interval_from_counts(both, only_y, only_x, neither)
    assert mirrored == pytest.approx((-diff, -high, -low), abs=1e-12)


def test_newcombe_interval_narrows_with_n_and_widens_with_confidence() -> None:
    widths = []
    for scale in (1, 4, 16):
        _, low, high = paired_difference_interval_from_counts(20 * scale, 10 * scale, 5 * scale, 15 * scale)
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]
    _, low95, high95 = paired_difference_interval_from_counts(20, 10, 5, 15, confidence=0.95)
    _, low99, high99 = paired_difference_interval_from_counts(20, 10, 5, 15, confidence=0.99)
    assert low99 < low95 and high99 > high95


def test_newcombe_agrees_with_wald_at_large_n() -> None:
    both, only_x, only_y, neither = 4000, 1500, 1200, 3300  # n = 10,000
    n = both + only_x + only_y + neither
    diff, low, high = paired_difference_interval_from_counts(both, only_x, only_y, neither)
    # Wald interval for paired proportions (Newcombe's method 1)
    wald_se = math.sqrt((only_x + only_y) / n - ((only_y - only_x) / n) ** 2) / math.sqrt(n)
    z = sps.norm.ppf(0.975)
    assert diff == pytest.approx((only_y - only_x) / n)
    assert low == pytest.approx(diff - z * wald_se, abs=0.01)
    assert high == pytest.approx(diff + z * wald_se, abs=0.01)
    assert abs((high - low) - 2 * z * wald_se) < 0.002


# ----------------------------------------------------------------------------- bootstrap


def test_bootstrap_is_seeded_and_close_to_normal_theory() -> None:
    values = np.random.default_rng(123).random(400) < 0.5  # [400] bools
    first = bootstrap_ci(values, seed=7)
    assert bootstrap_ci(values, seed=7) == first
    assert bootstrap_ci(values, seed=8) != first
    mean = values.mean()
    half_normal = 1.959964 * math.sqrt(mean * (1 - mean) / values.size)
    assert first[0] < mean < first[1]
    assert first[0] == pytest.approx(mean - half_normal, abs=0.012)
    assert first[1] == pytest.approx(mean + half_normal, abs=0.012)


def test_bootstrap_other_statistic_and_errors() -> None:
    values = np.arange(101, dtype=float)
    low, high = bootstrap_ci(values, statistic=np.median, n_resamples=500, seed=1)
    assert low < 50.0 < high
    assert bootstrap_ci(np.full(20, 3.0)) == (3.0, 3.0)
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_ci(np.array([]))
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_ci(values, n_resamples=0)

"""Confidence intervals and paired tests for pass@1 comparisons.

Every number attnlab compares comes with an interval and, where two systems are
scored on the same items, a paired test. The functions here are pure (numpy /
scipy only) and work on counts or boolean per-item correctness vectors:

* :func:`wilson_interval` -- score interval for one proportion (Wilson 1927).
* :func:`mcnemar_exact` -- exact two-sided McNemar test on the discordant pairs
  (McNemar 1947; exact binomial form, e.g. Fagerland, Lydersen & Laake 2013).
* :func:`paired_difference_interval` -- interval for the difference of two paired
  proportions, Newcombe (1998) method 10.
* :func:`bootstrap_ci` -- seeded percentile bootstrap (Efron & Tibshirani 1993).

Paired 2x2 notation used throughout (x and y scored on the same n items)::

                    y correct   y wrong
        x correct   both        only_x
        x wrong     only_y      neither

so p_x = (both + only_x) / n, p_y = (both + only_y) / n and
p_y - p_x = (only_y - only_x) / n.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np
from scipy import stats as sps


class PairedCounts(NamedTuple):
    """Cells of the paired 2x2 table of two correctness vectors x and y."""

    both: int  # x correct and y correct
    only_x: int  # x correct, y wrong
    only_y: int  # x wrong, y correct
    neither: int  # both wrong

    @property
    def n(self) -> int:
        return self.both + self.only_x + self.only_y + self.neither


def _check_confidence(confidence: float) -> None:
    if not (isinstance(confidence, (int, float)) and 0.0 < float(confidence) < 1.0):
        raise ValueError(f"confidence must be a number strictly between 0 and 1, got {confidence!r}")


def _check_count(name: str, value: object) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer count, got {value!r} ({type(value).__name__})")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return int(value)


def _z_two_sided(confidence: float) -> float:
    """Standard normal quantile z_{1-alpha/2} for a two-sided ``confidence`` level."""
    return float(sps.norm.ppf(1.0 - (1.0 - confidence) / 2.0))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion.

    With p = successes / n and z = z_{1-alpha/2} (Wilson 1927; Newcombe 1998a, method 3)::

        centre    = (p + z^2 / (2n)) / (1 + z^2 / n)
        halfwidth = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / (4 n^2))
        (low, high) = centre -/+ halfwidth

    The interval always lies in [0, 1]; it is exactly 0 at the lower end when
    successes = 0 and exactly 1 at the upper end when successes = n.

    Args:
        successes: number of correct items, 0 <= successes <= n.
        n: number of items, > 0.
        confidence: two-sided confidence level, e.g. 0.95.

    Returns:
        (low, high).

    References:
        E. B. Wilson (1927), "Probable inference, the law of succession, and
        statistical inference", JASA 22:209-212.
        R. G. Newcombe (1998a), "Two-sided confidence intervals for the single
        proportion: comparison of seven methods", Stat. Med. 17:857-872.
    """
    successes = _check_count("successes", successes)
    n = _check_count("n", n)
    _check_confidence(confidence)
    if n == 0:
        raise ValueError("wilson_interval needs n > 0 items")
    if successes > n:
        raise ValueError(f"successes ({successes}) cannot exceed n ({n})")
    z = _z_two_sided(confidence)
    p = successes / n
    z2_over_n = z * z / n
    centre = (p + z2_over_n / 2.0) / (1.0 + z2_over_n)
    halfwidth = z / (1.0 + z2_over_n) * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    low = 0.0 if successes == 0 else max(0.0, centre - halfwidth)
    high = 1.0 if successes == n else min(1.0, centre + halfwidth)
    return low, high


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar test on the discordant pair counts b and c.

    Under H0 (equal marginal proportions) each of the b + c discordant items is
    equally likely to fall on either side, so min(b, c) ~ Binomial(b + c, 1/2)::

        p = min(1, 2 * BinomCDF(min(b, c); b + c, 1/2)),     p = 1 when b = c = 0.

    Concordant items (both right / both wrong) carry no information and do not
    enter the test.

    References:
        Q. McNemar (1947), Psychometrika 12:153-157.
        M. W. Fagerland, S. Lydersen, P. Laake (2013), "The McNemar test for
        binary matched-pairs data: mid-p and asymptotic are better than exact
        conditional", BMC Med. Res. Methodol. 13:91 (the exact conditional form).
    """
    b = _check_count("b", b)
    c = _check_count("c", c)
    if b + c == 0:
        return 1.0
    return float(min(1.0, 2.0 * sps.binom.cdf(min(b, c), b + c, 0.5)))


def _as_bool_vector(name: str, values: object) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D vector of booleans, got shape {array.shape}")
    if array.dtype == np.bool_:
        return array
    if array.dtype.kind in "iu" and np.isin(array, (0, 1)).all():
        return array.astype(bool)
    raise ValueError(f"{name} must contain only booleans (or 0/1), got dtype {array.dtype}")


def paired_counts(x: object, y: object) -> PairedCounts:
    """Cells of the paired 2x2 table for boolean vectors ``x`` and ``y`` of equal length."""
    x_bool = _as_bool_vector("x", x)  # [n]
    y_bool = _as_bool_vector("y", y)  # [n]
    if x_bool.shape != y_bool.shape:
        raise ValueError(f"x and y must be paired (same length), got {x_bool.shape[0]} and {y_bool.shape[0]}")
    return PairedCounts(
        both=int(np.sum(x_bool & y_bool)),
        only_x=int(np.sum(x_bool & ~y_bool)),
        only_y=int(np.sum(~x_bool & y_bool)),
        neither=int(np.sum(~x_bool & ~y_bool)),
    )


def paired_difference_interval_from_counts(
    both: int, only_x: int, only_y: int, neither: int, confidence: float = 0.95
) -> tuple[float, float, float]:
    """Newcombe (1998b) method 10 interval for p_y - p_x from the paired 2x2 cells.

    Hybrid score ("square-and-add") interval built from the Wilson intervals
    (l_x, u_x) of p_x and (l_y, u_y) of p_y, corrected for their correlation::

        theta = p_y - p_x = (only_y - only_x) / n
        low   = theta - sqrt((p_y - l_y)^2 - 2 phi (p_y - l_y)(u_x - p_x) + (u_x - p_x)^2)
        high  = theta + sqrt((u_y - p_y)^2 - 2 phi (u_y - p_y)(p_x - l_x) + (p_x - l_x)^2)

    phi is the correlation of the two margins with Newcombe's correction of the
    numerator, A = both * neither - only_x * only_y::

        phi = (A - n/2) / sqrt(r_x r_y s_x s_y)   if A > n/2
            = 0                                     if 0 <= A <= n/2
            = A / sqrt(r_x r_y s_x s_y)             if A < 0

    where r_x, s_x (r_y, s_y) are the numbers of correct / wrong items of x (y);
    phi = 0 when any margin is empty. This is the form given by Newcombe (1998b)
    and used by Fagerland, Lydersen & Laake (2014) ("Newcombe square-and-add").

    Returns:
        (theta, low, high).

    References:
        R. G. Newcombe (1998b), "Improved confidence intervals for the difference
        between binomial proportions based on paired data", Stat. Med.
        17:2635-2650, method 10.
        M. W. Fagerland, S. Lydersen, P. Laake (2014), "Recommended tests and
        confidence intervals for paired binomial proportions", Stat. Med.
        33:2850-2875.
    """
    both = _check_count("both", both)
    only_x = _check_count("only_x", only_x)
    only_y = _check_count("only_y", only_y)
    neither = _check_count("neither", neither)
    _check_confidence(confidence)
    n = both + only_x + only_y + neither
    if n == 0:
        raise ValueError("paired_difference_interval needs at least one paired item")

    correct_x, correct_y = both + only_x, both + only_y
    p_x, p_y = correct_x / n, correct_y / n
    theta = p_y - p_x
    l_x, u_x = wilson_interval(correct_x, n, confidence)
    l_y, u_y = wilson_interval(correct_y, n, confidence)

    margins_product = correct_x * (n - correct_x) * correct_y * (n - correct_y)
    if margins_product == 0:
        phi = 0.0
    else:
        numerator = both * neither - only_x * only_y
        if numerator > n / 2.0:
            phi = (numerator - n / 2.0) / math.sqrt(margins_product)
        elif numerator >= 0:
            phi = 0.0
        else:
            phi = numerator / math.sqrt(margins_product)

    d_low = (p_y - l_y) ** 2 - 2.0 * phi * (p_y - l_y) * (u_x - p_x) + (u_x - p_x) ** 2
    d_high = (u_y - p_y) ** 2 - 2.0 * phi * (u_y - p_y) * (p_x - l_x) + (p_x - l_x) ** 2
    low = theta - math.sqrt(max(d_low, 0.0))
    high = theta + math.sqrt(max(d_high, 0.0))
    return theta, max(-1.0, low), min(1.0, high)


def paired_difference_interval(x: object, y: object, confidence: float = 0.95) -> tuple[float, float, float]:
    """Difference p_y - p_x of two paired proportions with Newcombe's method-10 interval.

    Args:
        x: [n] booleans, correctness of system x on each item.
        y: [n] booleans, correctness of system y on the same items, same order.
        confidence: two-sided confidence level.

    Returns:
        (diff, low, high) with diff = mean(y) - mean(x).

    See :func:`paired_difference_interval_from_counts` for the formula.
    """
    counts = paired_counts(x, y)
    return paired_difference_interval_from_counts(*counts, confidence=confidence)


def bootstrap_ci(
    values: object,
    statistic: Callable[[np.ndarray], float] = np.mean,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over ``values``.

    Draws ``n_resamples`` resamples of size n with replacement (rows of a
    ``np.random.default_rng(seed)`` index matrix), evaluates ``statistic`` on
    each and returns the alpha/2 and 1 - alpha/2 empirical quantiles
    (Efron & Tibshirani 1993, ch. 13). Same inputs and seed => same interval.

    Args:
        values: [n] or [n, ...] array; resampling is over the first axis.
        statistic: function of one resampled array returning a scalar.
        n_resamples: number of bootstrap resamples (>= 1).
        confidence: two-sided confidence level.
        seed: seed of the numpy Generator.

    Returns:
        (low, high).
    """
    data = np.asarray(values)
    _check_confidence(confidence)
    if data.ndim == 0 or data.shape[0] == 0:
        raise ValueError("bootstrap_ci needs a non-empty array of values")
    if not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    rng = np.random.default_rng(seed)
    n = data.shape[0]
    indices = rng.integers(0, n, size=(n_resamples, n))  # [n_resamples, n]
    replicates = np.array([float(statistic(data[row])) for row in indices])  # [n_resamples]
    alpha = 1.0 - confidence
    low, high = np.quantile(replicates, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


# --- verdict tests: one pre-declared test per printed claim ------------------------------------------------------


def holm_adjust(p_values: object) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values, controlling the family-wise error rate.

    With the m p-values sorted ascending, p_(1) <= ... <= p_(m)::

        p~_(i) = min(1, max_{j <= i} (m - j + 1) · p_(j))

    and each adjusted value returned at its original position; a hypothesis is rejected at level α when its
    adjusted p is <= α. NaN entries are not part of the family and stay NaN. Matches
    ``statsmodels.stats.multitest.multipletests(method="holm")``.

    References:
        S. Holm (1979), "A simple sequentially rejective multiple test procedure", Scand. J. Stat. 6:65-70.
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"holm_adjust needs a 1-D vector of p-values, got shape {p.shape}")
    finite = ~np.isnan(p)
    if np.any((p[finite] < 0) | (p[finite] > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    out = np.full(p.shape, np.nan)
    values = p[finite]
    m = values.size
    if m == 0:
        return out
    order = np.argsort(values, kind="stable")
    scaled = (m - np.arange(m)) * values[order]  # (m - j + 1) p_(j), j = 1..m
    adjusted = np.minimum(1.0, np.maximum.accumulate(scaled))
    result = np.empty(m)
    result[order] = adjusted
    out[finite] = result
    return out


class MeanDifferenceTest(NamedTuple):
    """A paired mean difference with its bootstrap interval and its two-sided test p."""

    estimate: float
    low: float
    high: float
    p_value: float
    n_items: int


def bootstrap_p_value(replicates: np.ndarray) -> float:
    """Two-sided bootstrap p of H0: θ = 0 from the replicates θ*_b (the percentile interval's dual).

    p = min(1, 2 · min(#{θ* <= 0}, #{θ* >= 0}) / B): the smallest α whose (1 − α) percentile interval just
    reaches 0, so "p <= α" and "the (1 − α) interval excludes 0" give the same verdict (Efron & Tibshirani
    1993, Sec. 15.4; Davison & Hinkley 1997, Sec. 4.4).
    """
    replicates = np.asarray(replicates, dtype=float)
    b = replicates.size
    if b == 0:
        raise ValueError("bootstrap_p_value needs at least one replicate")
    below, above = np.count_nonzero(replicates <= 0), np.count_nonzero(replicates >= 0)
    return float(min(1.0, 2.0 * min(below, above) / b))


def _expanded_alpha(alpha: float, n: int) -> float:
    """Hesterberg's (2015, Sec. 3.1) expanded-percentile level: α' = 2·Φ(−√(n/(n−1))·t_{1−α/2, n−1}).

    The percentile interval of a mean is too narrow for small n (it behaves like ±z·s/√n with s computed with
    divisor n); taking the bootstrap quantiles at α'/2 and 1 − α'/2 widens it to ±t·s/√n with divisor n − 1,
    which restores the nominal level for roughly symmetric data."""
    if n < 2:
        return alpha
    return float(2.0 * sps.norm.cdf(-math.sqrt(n / (n - 1.0)) * sps.t.ppf(1.0 - alpha / 2.0, n - 1)))


def sign_flip_p_value(values: object, n_resamples: int = 10000, seed: int = 0) -> float:
    """Two-sided sign-flip (paired randomization) test of H0: the per-item differences are symmetric about 0.

    Under H0 (the two conditions are exchangeable within every item) each item's difference is as likely to
    carry either sign, so with T = |mean_i x_i| (Fisher 1935, Sec. 21; Good 2005, Sec. 3.6)::

        p = #{sign vectors ε : |mean_i ε_i x_i| >= T} / #{sign vectors}

    exactly, over all 2^n sign vectors when n <= 16, else over ``n_resamples`` seeded random vectors plus the
    observed one, p = (1 + #{|T*| >= T}) / (B + 1) (a valid p-value; Phipson & Smyth 2010). Valid at any n
    (with n items the smallest possible p is 2 / 2^n, so a handful of items can never reach a verdict), and
    exact for binary (pass@1) differences as for losses. Zero differences carry no sign and count as such.

    References:
        R. A. Fisher (1935), The Design of Experiments, Sec. 21. B. Phipson, G. K. Smyth (2010), "Permutation
        p-values should never be zero", Stat. Appl. Genet. Mol. Biol. 9:39.
    """
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"sign_flip_p_value needs a non-empty 1-D vector, got shape {x.shape}")
    n = x.size
    observed = abs(float(x.mean()))
    tolerance = 1e-12 * max(1.0, float(np.abs(x).max()))
    if n <= 16:
        codes = np.arange(2**n, dtype=np.int64)[:, None]
        signs = 1.0 - 2.0 * ((codes >> np.arange(n)) & 1)  # [2^n, n]
        flipped = np.abs(signs @ x) / n
        return float(np.mean(flipped >= observed - tolerance))
    rng = np.random.default_rng(seed)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(n_resamples, n))  # [B, n]
    flipped = np.abs(signs @ x) / n
    return float((1 + np.count_nonzero(flipped >= observed - tolerance)) / (n_resamples + 1))


def paired_mean_difference(
    differences: object, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> MeanDifferenceTest:
    """Mean paired difference over items and conditions: a sign-flip test and a paired bootstrap interval.

    ``differences`` is [n_items] or [n_items, n_conditions] (e.g. fractions of a pruning curve, budgets of a
    sparse-attention sweep): d[i, c] = this − reference on item i under condition c. The one test of a whole
    curve is on

        θ = mean_i x_i,   x_i = mean_c d[i, c]           (the mean vertical distance between the two curves)

    ``p_value`` is the two-sided sign-flip test of the per-item means x_i (:func:`sign_flip_p_value`: exact,
    valid at any number of items); the verdict is p ≤ 1 − confidence with the sign of θ. The interval resamples
    whole rows (items, with replacement), which keeps the pairing across conditions and between the two curves;
    it is the expanded percentile interval (Hesterberg 2015: quantiles at α'/2, 1 − α'/2 with α' from
    :func:`_expanded_alpha`), close to nominal at the 30–100 items of a validation run and too narrow with a
    handful of items — which is why the verdict comes from the sign-flip p. Conditions where an item was not
    measured are NaN and are left out of that item's mean; an item measured nowhere is dropped. With a single
    item the interval and p are NaN.

    References:
        T. C. Hesterberg (2015), "What teachers should know about the bootstrap", Am. Stat. 69:371-386.
    """
    _check_confidence(confidence)
    d = np.asarray(differences, dtype=float)
    if d.ndim == 1:
        d = d[:, None]
    if d.ndim != 2:
        raise ValueError(f"differences must be [n_items] or [n_items, n_conditions], got shape {d.shape}")
    measured = ~np.isnan(d)
    keep = measured.any(axis=1)
    d, measured = d[keep], measured[keep]
    n = d.shape[0]
    if n == 0:
        raise ValueError("paired_mean_difference needs at least one item with a measured difference")
    per_item = np.where(measured, d, 0.0).sum(axis=1) / measured.sum(axis=1)  # [n]
    estimate = float(per_item.mean())
    if n < 2:  # one item carries no information about the spread: no interval, no test
        return MeanDifferenceTest(estimate, math.nan, math.nan, math.nan, n)
    rng = np.random.default_rng(seed)
    replicates = per_item[rng.integers(0, n, size=(n_resamples, n))].mean(axis=1)  # [B]
    alpha = _expanded_alpha(1.0 - confidence, n)
    low, high = np.quantile(replicates, [alpha / 2.0, 1.0 - alpha / 2.0])
    return MeanDifferenceTest(estimate, float(low), float(high), sign_flip_p_value(per_item, seed=seed), n)


def prediction_p_value(value: float, controls: object) -> float:
    """One-sided p that ``value`` is one more draw from the distribution of ``controls`` (upper tail).

    With the n controls' mean x̄ and standard deviation s (ddof = 1), a new independent draw X from the same
    normal distribution satisfies (X − x̄) / (s·√(1 + 1/n)) ~ t_{n−1}, so::

        p = 1 − F_{t, n−1}((value − x̄) / (s·√(1 + 1/n)))

    "p < α" is the same as "value above the upper end of the one-sided (1 − α) prediction interval
    x̄ + t_{1−α, n−1}·s·√(1 + 1/n)" (Hahn & Meeker 1991, Sec. 4.4). The interval of the *mean* of the controls
    (without the 1) is far narrower and flags a null draw far more often than α.
    """
    controls = np.asarray(controls, dtype=float)
    n = controls.size
    if n < 2:
        raise ValueError("a prediction interval needs at least two control values")
    s = float(controls.std(ddof=1))
    centre = float(value) - float(controls.mean())
    if s == 0.0:
        return 0.0 if centre > 0 else 1.0
    return float(sps.t.sf(centre / (s * math.sqrt(1.0 + 1.0 / n)), n - 1))


def format_p_value(p: float, n_resamples: int = 2000) -> str:
    """``p = 0.0123`` (3 significant digits), or ``p < 1/B`` when a bootstrap p is 0 (no replicate crossed 0)."""
    if isinstance(p, float) and math.isnan(p):
        return "p = n/a"
    if p <= 0.0:
        return f"p < {1.0 / n_resamples:.1g}"
    return f"p = {p:.3g}"

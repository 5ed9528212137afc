"""Bootstrap intervals over training seeds and test items.

A comparison between architectures trained from scratch has two sources of variance: the training seed (which
model one gets) and the test item (which problems one happens to score). With ``S`` seeds of a model scored on the
same ``I`` items, the values form a matrix ``x[s, i]`` (e.g. 0/1 correctness, or a per-item attention fraction) and
the pooled estimate is the grand mean ``x̄ = (1/S) Σ_s (1/I) Σ_i x[s, i]``.

* :func:`hierarchical_bootstrap` -- one model, two levels nested: resample the seeds with replacement, then the
  items within each drawn seed (Davison & Hinkley 1997, *Bootstrap Methods and their Application*, Sec. 3.8: the
  two-stage bootstrap for a two-level design). The groups may hold different items.
* :func:`paired_seed_item_bootstrap` -- the difference ``x̄_a - x̄_b`` of two models scored on the *identical*
  items: each replicate draws one resample of the items, shared by both models and all their seeds (the pairing),
  and an independent resample of each model's seeds; the replicate is
  ``mean_{s in S*_a} mean_{i in I*} a[s, i] - mean_{s in S*_b} mean_{i in I*} b[s, i]``. Seeds and items are
  crossed factors here, so this is the pigeonhole (two-way) bootstrap of Owen (2007), *Ann. Appl. Stat.* 1(1),
  restricted to resampling both factors; it carries the between-seed variance of each model and the item variance
  of the paired difference.

Percentile intervals (Efron & Tibshirani 1993, Sec. 13.3): :func:`percentile_interval`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["hierarchical_bootstrap", "paired_seed_item_bootstrap", "percentile_interval"]


def _check_resamples(n_resamples: int) -> None:
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")


def hierarchical_bootstrap(groups: Sequence[np.ndarray], n_resamples: int, seed: int) -> tuple[float, np.ndarray]:
    """(mean of group means, bootstrap replicates ``[n_resamples]``) by resampling groups, then items within them.

    ``groups`` are the per-seed item values; each replicate draws ``G`` groups with replacement and, for each drawn
    group, ``n_g`` of its items with replacement, and averages the group means. With one group it is the ordinary
    item bootstrap of the mean.
    """
    _check_resamples(n_resamples)
    if not groups or any(len(g) == 0 for g in groups):
        raise ValueError("hierarchical_bootstrap needs at least one group, each non-empty")
    rng = np.random.default_rng(seed)
    n_groups = len(groups)
    estimate = float(np.mean([np.mean(g) for g in groups]))
    chosen = rng.integers(0, n_groups, size=(n_resamples, n_groups))  # [R, G] group drawn in slot k
    means = np.empty((n_groups, n_resamples, n_groups))  # [group, R, slot]: a fresh item resample per slot
    for g, values in enumerate(groups):
        values = np.asarray(values, dtype=float)
        idx = rng.integers(0, len(values), size=(n_resamples, n_groups, len(values)))
        means[g] = values[idx].mean(axis=-1)
    replicates = np.take_along_axis(means.transpose(1, 2, 0), chosen[..., None], axis=2)[..., 0].mean(axis=1)
    return estimate, replicates


def paired_seed_item_bootstrap(
    a: np.ndarray, b: np.ndarray, n_resamples: int, seed: int
) -> tuple[float, np.ndarray]:
    """(``x̄_a - x̄_b``, replicates ``[n_resamples]``) for two models on the identical items (module docstring).

    Args:
        a: ``[S_a, I]`` values of model a, one row per training seed, columns the items in a fixed order.
        b: ``[S_b, I]`` values of model b on the same items in the same order.
        n_resamples: bootstrap replicates.
        seed: generator seed.

    Raises:
        ValueError: if the matrices are not 2-D, are empty, or do not have the same items (columns).
    """
    _check_resamples(n_resamples)
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or 0 in a.shape or 0 in b.shape:
        raise ValueError(f"paired_seed_item_bootstrap needs [seeds, items] matrices on the same items, got {a.shape} and {b.shape}")
    rng = np.random.default_rng(seed)
    n_items = a.shape[1]
    estimate = float(a.mean() - b.mean())
    items = rng.integers(0, n_items, size=(n_resamples, n_items))  # [R, I] shared by both models
    seeds_a = rng.integers(0, a.shape[0], size=(n_resamples, a.shape[0]))  # [R, S_a]
    seeds_b = rng.integers(0, b.shape[0], size=(n_resamples, b.shape[0]))  # [R, S_b]
    # mean over drawn items of each seed's values: [R, S]; then the mean over the drawn seeds
    item_means_a = np.stack([a[:, row].mean(axis=1) for row in items])  # [R, S_a]
    item_means_b = np.stack([b[:, row].mean(axis=1) for row in items])  # [R, S_b]
    replicates = (np.take_along_axis(item_means_a, seeds_a, axis=1).mean(axis=1)
                  - np.take_along_axis(item_means_b, seeds_b, axis=1).mean(axis=1))
    return estimate, replicates


def percentile_interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    """The ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the replicates."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    alpha = 1.0 - confidence
    low, high = np.quantile(np.asarray(replicates, dtype=float), [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)

"""Seed x item bootstraps: the nested one reduces to the item bootstrap; the paired one cancels shared item effects."""

from __future__ import annotations

import numpy as np
import pytest

from attnlab.bootstrap import hierarchical_bootstrap, paired_seed_item_bootstrap, percentile_interval


def test_paired_bootstrap_cancels_item_difficulty_that_both_models_share() -> None:
    rng = np.random.default_rng(0)
    difficulty = rng.normal(0, 1.0, size=200)  # large item effect shared by both models
    a = difficulty + 0.1 + rng.normal(0, 0.05, size=(3, 200))
    b = difficulty + rng.normal(0, 0.05, size=(3, 200))
    diff, reps = paired_seed_item_bootstrap(a, b, 2000, 1)
    assert diff == pytest.approx(a.mean() - b.mean())
    low, high = percentile_interval(reps, 0.95)
    assert 0.05 < low < diff < high < 0.15  # paired: the item effect cancels, the shift is resolved
    # independent (unpaired) resamples of the same data cannot resolve it
    _, reps_a = hierarchical_bootstrap(list(a), 2000, 2)
    _, reps_b = hierarchical_bootstrap(list(b), 2000, 3)
    low_u, high_u = percentile_interval(reps_a - reps_b, 0.95)
    assert low_u < 0 < high_u
    assert np.array_equal(reps, paired_seed_item_bootstrap(a, b, 2000, 1)[1])


def test_paired_bootstrap_carries_the_seed_spread() -> None:
    items = np.linspace(0, 1, 50)
    a = np.stack([items + shift for shift in (-0.3, 0.0, 0.3)])  # seeds far apart
    b = np.stack([items, items, items])
    _, reps = paired_seed_item_bootstrap(a, b, 2000, 0)
    assert reps.min() < -0.15 and reps.max() > 0.15  # the between-seed variance of a enters the interval
    _, one_seed = paired_seed_item_bootstrap(a[1:2], b[:1], 500, 0)
    assert np.allclose(one_seed, 0.0)  # identical paired items: no item variance left
    with pytest.raises(ValueError, match="same items"):
        paired_seed_item_bootstrap(a, b[:, :10], 10, 0)

"""The SFT training set of one recipe: train-split problems, some made noisy.

Given a base dataset's **train** split (never its test items) and a recipe
``{samples, noise_mix, seed}``:

1. ``samples`` distinct problems are drawn without replacement with
   ``numpy.random.default_rng(derive_seed(seed, "sft-sample"))`` (all of them, in that
   generator's permutation order, when ``samples`` is None);
2. the ``noise_mix`` proportions ``w_v`` (normalised, ``sum w = 1``) become integer counts
   ``c_v`` by the largest-remainder (Hamilton) method: ``c_v = floor(n w_v)``, and the
   ``n - sum floor(n w_v)`` leftover items go to the largest remainders (ties: the order of
   ``noise_mix``), so ``sum c_v = n`` exactly;
3. the variants are assigned to the drawn problems by a seeded permutation
   (``derive_seed(seed, "sft-assign")``), and each group is passed through
   :func:`attnlab.data.noise.apply_noise` with the recipe's seed (clean rows stay as they are).

The result is a data table (:data:`attnlab.data.schema.DATA_COLUMNS`, validated) in draw
order; ``noise_type`` says which variant each row is. Same inputs ⇒ byte-identical file.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from attnlab.data.noise import apply_noise
from attnlab.data.schema import BASE_COLUMNS
from attnlab.data.text import derive_seed


def allot_counts(n: int, mix: Mapping[str, float]) -> dict[str, int]:
    """Split ``n`` items among the variants of ``mix`` in proportion (largest remainder; see module docstring).

    Raises:
        ValueError: an empty mix, a negative weight, or all weights zero.
    """
    if not mix:
        raise ValueError("noise_mix is empty; give at least one variant and its share")
    if any(w < 0 for w in mix.values()):
        raise ValueError(f"noise_mix has a negative share: {dict(mix)}")
    total = float(sum(mix.values()))
    if total <= 0:
        raise ValueError(f"noise_mix shares must not all be 0: {dict(mix)}")
    exact = {v: n * w / total for v, w in mix.items()}
    counts = {v: math.floor(x) for v, x in exact.items()}
    leftover = n - sum(counts.values())
    order = sorted(mix, key=lambda v: (-(exact[v] - counts[v]), list(mix).index(v)))
    for v in order[:leftover]:
        counts[v] += 1
    return counts


def build_sft_set(train: pd.DataFrame, spec: Mapping[str, Any]) -> pd.DataFrame:
    """The SFT training table of a recipe (see the module docstring).

    Args:
        train: a clean data table of a train split (``attnlab data base --split train``).
        spec: ``samples`` (int or None = all), ``noise_mix`` ({variant: share}), ``seed`` (int).

    Raises:
        ValueError: ``train`` is not a train split, or ``samples`` exceeds its size.
    """
    splits = sorted(set(train["split"])) if len(train) else []
    if splits != ["train"]:
        raise ValueError(f"SFT problems must come from a train split only; the input has split(s) {splits}")
    n_available = len(train)
    n = n_available if spec.get("samples") is None else int(spec["samples"])
    if n > n_available:
        raise ValueError(f"recipe asks for samples={n} problems but the train split has only {n_available}")
    seed = int(spec["seed"])
    drawn = np.random.default_rng(derive_seed(seed, "sft-sample")).permutation(n_available)[:n]  # [n]
    base = train.iloc[drawn].loc[:, list(BASE_COLUMNS)].reset_index(drop=True)
    counts = allot_counts(n, spec["noise_mix"])
    labels = np.array([v for v, c in counts.items() for _ in range(c)], dtype=object)  # [n]
    assigned = labels[np.random.default_rng(derive_seed(seed, "sft-assign")).permutation(n)]  # [n]
    parts = []
    for variant in counts:
        rows = np.flatnonzero(assigned == variant)
        if len(rows):
            noisy = apply_noise(base.iloc[rows].reset_index(drop=True), variant, seed)
            noisy.index = rows
            parts.append(noisy)
    return pd.concat(parts).sort_index().reset_index(drop=True)

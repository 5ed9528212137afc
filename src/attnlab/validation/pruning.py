"""Head pruning by importance: is the HeadIG score causal?

Given head scores s[l, u] (``results/attribution/{model}/{base}/{method}.parquet``; higher = more important), a
pruned fraction f and a strategy, the pruned set P is chosen and the heads in P are removed by the HeadIG gates
(α = 0, :func:`attnlab.attribution.gates.head_mask_alpha`; Michel et al. 2019, "Are Sixteen Heads Really Better
than One?", Sec. 3 — masking a head's contribution to the output projection). Strategies:

* ``most`` — the k heads with the highest score (ties: lower layer, then lower head first);
* ``least`` — the k *least relevant* heads: by default (``least_by = "magnitude"``) the k smallest |score|,
  i.e. the heads whose removal the attribution predicts changes the objective least in either direction;
  with ``least_by = "signed"`` the k lowest signed scores (with signed HeadIG these are the most *harmful*
  heads, so "most vs least" then mixes relevance with sign). Same tie order;
* ``random`` — k heads of a seeded random permutation (``numpy.random.default_rng(seed).permutation``);
  several seeds.

Scope ``global`` ranks all L·U heads together, k = round(f·L·U); scope ``per_layer`` ranks the heads of each layer
separately and prunes k_l = round(f·U) in every layer (round half up). Pruned sets are nested in f for every
strategy (a prefix of one ordering), so the curves are monotone in the set pruned.

For each condition the model is scored on the same items: pass@1 (the evaluate stage's greedy generation and
answer extraction, :func:`attnlab.evaluate.evaluate.evaluate_items`, with the gates active) on the first
``pass_items`` items, and the answer-token loss L (the HeadIG objective,
:func:`attnlab.attribution.objectives.item_losses`) on the first ``loss_items`` items. Conditions that prune the
same set (e.g. f = 0 for every strategy) are measured once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

__all__ = [
    "PRUNING_SCHEMA",
    "STRATEGIES",
    "PruningCondition",
    "format_heads",
    "n_pruned",
    "pruning_conditions",
    "pruning_order",
    "score_grid",
]

STRATEGIES: tuple[str, ...] = ("most", "least", "random")
SCOPES: tuple[str, ...] = ("global", "per_layer")
#: how ``least`` ranks heads: smallest |score| (default) or lowest signed score
LEAST_BY: tuple[str, ...] = ("magnitude", "signed")

#: per-item results: one row per condition (strategy × seed × fraction) × item
PRUNING_SCHEMA = pa.schema(
    [
        pa.field("model", pa.string(), nullable=False),
        pa.field("base", pa.string(), nullable=False),
        pa.field("scores", pa.string(), nullable=False),
        pa.field("scope", pa.string(), nullable=False),
        pa.field("strategy", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=True),  # random only
        pa.field("fraction", pa.float64(), nullable=False),
        pa.field("k", pa.int64(), nullable=False),  # heads pruned
        pa.field("n_heads", pa.int64(), nullable=False),  # L·U
        pa.field("pruned", pa.string(), nullable=False),  # "layer.head;..." in pruning order
        pa.field("least_by", pa.string(), nullable=False),  # how `least` ranks: magnitude | signed
        pa.field("id", pa.string(), nullable=False),
        pa.field("correct", pa.bool_(), nullable=True),  # strict pass@1; null if not a pass@1 item
        pa.field("loss", pa.float64(), nullable=True),  # answer-token loss; null if not a loss item
    ]
)


def score_grid(scores: pd.DataFrame, shape: tuple[int, int], *, source: str = "scores") -> np.ndarray:
    """The scores table (columns ``layer, head, score``) as a [layers, units] array.

    Raises:
        ValueError: for missing columns, duplicate or out-of-range (layer, head), a non-finite score, or a head of
            the model without a score (validation needs every head scored; attribute all layers).
    """
    missing = [c for c in ("layer", "head", "score") if c not in scores.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}")
    layers, units = shape
    grid = np.full(shape, np.nan)
    for layer, head, score in zip(scores["layer"], scores["head"], scores["score"]):
        layer, head = int(layer), int(head)
        if not (0 <= layer < layers and 0 <= head < units):
            raise ValueError(f"{source}: (layer={layer}, head={head}) is outside the model's {layers}×{units} heads")
        if not np.isnan(grid[layer, head]):
            raise ValueError(f"{source}: (layer={layer}, head={head}) appears twice")
        if not math.isfinite(float(score)):
            raise ValueError(f"{source}: (layer={layer}, head={head}) has score {score}")
        grid[layer, head] = float(score)
    absent = np.argwhere(np.isnan(grid))
    if len(absent):
        first = ", ".join(f"({l}, {h})" for l, h in absent[:4])
        raise ValueError(
            f"{source}: {len(absent)} of {layers * units} heads have no score (first: {first}); "
            "validation needs every head scored (attribute all layers)"
        )
    return grid


def n_pruned(n_units: int, fraction: float) -> int:
    """round(fraction · n_units), halves rounded up: the number of heads a fraction prunes."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"pruning fraction must lie in [0, 1], got {fraction}")
    return int(math.floor(fraction * n_units + 0.5 + 1e-9))


def _rank(values: np.ndarray, descending: bool) -> np.ndarray:
    """Indices ordering ``values`` (ties by index, ascending)."""
    key = -values if descending else values
    return np.lexsort((np.arange(len(values)), key))


def pruning_order(
    scores: np.ndarray,
    strategy: str,
    *,
    scope: str = "global",
    seed: int | None = None,
    least_by: str = "magnitude",
) -> list[list[tuple[int, int]]]:
    """The order heads are pruned in: one list for ``global``, one per layer for ``per_layer``.

    Args:
        scores: [layers, units] importance scores.
        strategy: ``most``, ``least`` or ``random`` (needs ``seed``).
        scope: ``global`` or ``per_layer``.
        least_by: ``magnitude`` (``least`` = smallest |score|) or ``signed`` (lowest score).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown pruning strategy {strategy!r}; choose from {STRATEGIES}")
    if least_by not in LEAST_BY:
        raise ValueError(f"unknown least_by {least_by!r}; choose from {LEAST_BY}")
    if scope not in SCOPES:
        raise ValueError(f"unknown pruning scope {scope!r}; choose from {SCOPES}")
    if strategy == "random" and seed is None:
        raise ValueError("random pruning needs a seed")
    layers, units = scores.shape
    groups = [np.arange(layers * units)] if scope == "global" else [l * units + np.arange(units) for l in range(layers)]
    rng = np.random.default_rng(seed) if strategy == "random" else None
    orders = []
    for flat in groups:
        if strategy == "random":
            ranked = flat[rng.permutation(len(flat))]
        elif strategy == "least" and least_by == "magnitude":
            ranked = flat[_rank(np.abs(scores.ravel()[flat]), descending=False)]
        else:
            ranked = flat[_rank(scores.ravel()[flat], descending=strategy == "most")]
        orders.append([(int(i // units), int(i % units)) for i in ranked])
    return orders


@dataclass(frozen=True)
class PruningCondition:
    """One point of a pruning curve."""

    strategy: str
    seed: int | None
    fraction: float
    pruned: tuple[tuple[int, int], ...]  # (layer, head) in pruning order

    @property
    def k(self) -> int:
        return len(self.pruned)


def pruning_conditions(
    scores: np.ndarray,
    fractions: Sequence[float],
    *,
    scope: str,
    random_seeds: Sequence[int],
    strategies: Sequence[str] = STRATEGIES,
    least_by: str = "magnitude",
) -> list[PruningCondition]:
    """Every (strategy, seed, fraction) condition with its pruned heads, in a fixed order."""
    layers, units = scores.shape
    conditions = []
    for strategy in strategies:
        for seed in (random_seeds if strategy == "random" else [None]):
            orders = pruning_order(scores, strategy, scope=scope, seed=seed, least_by=least_by)
            for fraction in fractions:
                if scope == "global":
                    pruned = orders[0][: n_pruned(layers * units, fraction)]
                else:
                    k_layer = n_pruned(units, fraction)
                    pruned = [head for order in orders for head in order[:k_layer]]
                conditions.append(PruningCondition(strategy, seed, float(fraction), tuple(pruned)))
    return conditions


def format_heads(heads: Sequence[tuple[int, int]]) -> str:
    """``[(0, 1), (2, 3)]`` -> ``"0.1;2.3"``."""
    return ";".join(f"{layer}.{head}" for layer, head in heads)


# --- running the conditions on a model (torch imported lazily) -----------------


def run_pruning(
    model: Any,
    tokenizer: Any,
    data: pd.DataFrame,
    scores: np.ndarray,
    *,
    fractions: Sequence[float],
    scope: str,
    random_seeds: Sequence[int],
    pass_items: int,
    loss_items: int,
    measure: "Callable[..., tuple[list[bool], list[float]]]",
    labels: dict[str, str],
    least_by: str = "magnitude",
) -> pd.DataFrame:
    """Measure every pruning condition; one row per condition × item (:data:`PRUNING_SCHEMA`).

    Args:
        model, tokenizer: the model (eval mode) and its tokenizer.
        data: the data-stage items (first ``max(pass_items, loss_items)`` rows are used).
        scores: [layers, units] head scores.
        measure: ``measure(alpha, pass_data, loss_data) -> (correct [n_pass], loss [n_loss])``, running the model
            with gates ``alpha`` ([L, U] tensor); see :func:`attnlab.validation.measure.Measurer`.
        labels: ``model``, ``base``, ``scores`` (attribution method) copied into every row.
        least_by: how ``least`` ranks heads (:data:`LEAST_BY`); recorded in every row.
    """
    from attnlab.attribution.gates import gate_layout, head_mask_alpha

    layout = gate_layout(model)
    if tuple(scores.shape) != layout.shape:
        raise ValueError(f"scores have shape {scores.shape}, the model's gate grid is {layout.shape}")
    conditions = pruning_conditions(scores, fractions, scope=scope, random_seeds=random_seeds, least_by=least_by)
    n_pass, n_loss = min(pass_items, len(data)), min(loss_items, len(data))
    items = data.iloc[: max(n_pass, n_loss)].reset_index(drop=True)
    ids = [str(i) for i in items["id"]]
    cache: dict[frozenset[tuple[int, int]], tuple[list[bool], list[float]]] = {}
    rows: list[dict[str, Any]] = []
    for condition in conditions:
        key = frozenset(condition.pruned)
        if key not in cache:
            alpha = head_mask_alpha(layout, condition.pruned, device=model.device)
            cache[key] = measure(alpha, items.iloc[:n_pass], items.iloc[:n_loss])
        correct, loss = cache[key]
        for position, item_id in enumerate(ids):
            rows.append(
                {
                    **labels,
                    "scope": scope,
                    "strategy": condition.strategy,
                    "seed": condition.seed,
                    "fraction": condition.fraction,
                    "k": condition.k,
                    "n_heads": int(scores.size),
                    "pruned": format_heads(condition.pruned),
                    "least_by": least_by,
                    "id": item_id,
                    "correct": bool(correct[position]) if position < n_pass else None,
                    "loss": float(loss[position]) if position < n_loss else None,
                }
            )
    frame = pd.DataFrame(rows, columns=PRUNING_SCHEMA.names)
    frame["seed"] = frame["seed"].astype("Int64")
    return frame

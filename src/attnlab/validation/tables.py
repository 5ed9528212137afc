"""Aggregate tables of the causal validation, with intervals and paired tests.

``pruning`` — one row per model × base × scope × strategy × seed × fraction:
    pass@1 with its Wilson 95 % interval (Wilson 1927), the mean answer loss with a seeded percentile bootstrap
    95 % interval over items, and — for ``least`` and ``random`` — the paired comparison with ``most`` at the
    same fraction on the same items: exact McNemar p on pass@1 (``vs_most_mcnemar_p``; b = items only the
    ``most`` condition gets right, c = items only this condition gets right), the pass@1 difference
    (this − most) with Newcombe's paired interval, the mean loss difference (this − most) and the two-sided
    Wilcoxon signed-rank p on the per-item loss differences (``vs_most_loss_p``).
    Pruning the most important heads hurts more than pruning others when this condition's pass@1 is higher
    (``vs_most_diff`` > 0) and its loss lower (``vs_most_loss_diff`` < 0).

``sparse_attention`` — one row per model × base × method × budget: the same measures; ``vs_dense_*`` compares
    with dense attention and ``vs_uniform_*`` (adaptive rows) with uniform sparsity at the same budget
    (this − reference, as above).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from attnlab.stats import bootstrap_ci, mcnemar_exact, paired_counts, paired_difference_interval, wilson_interval

__all__ = ["paired_measures", "pruning_table", "pruning_verdicts", "sparse_table", "sparse_verdicts"]

CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0


def _summary(correct: pd.Series, loss: pd.Series) -> dict[str, Any]:
    """pass@1 (Wilson) and mean loss (bootstrap) of one condition; NaN where there are no items."""
    correct = correct.dropna().astype(bool)
    loss = loss.dropna().astype(float)
    row: dict[str, Any] = {"n_items": len(correct), "correct": int(correct.sum())}
    if len(correct):
        low, high = wilson_interval(int(correct.sum()), len(correct), CONFIDENCE)
        row.update(pass_at_1=float(correct.mean()), ci_low=low, ci_high=high)
    else:
        row.update(pass_at_1=math.nan, ci_low=math.nan, ci_high=math.nan)
    row["n_loss_items"] = len(loss)
    if len(loss):
        low, high = bootstrap_ci(loss.to_numpy(), seed=BOOTSTRAP_SEED, confidence=CONFIDENCE)
        row.update(loss_mean=float(loss.mean()), loss_ci_low=low, loss_ci_high=high)
    else:
        row.update(loss_mean=math.nan, loss_ci_low=math.nan, loss_ci_high=math.nan)
    return row


def paired_measures(this: pd.DataFrame, reference: pd.DataFrame, prefix: str) -> dict[str, Any]:
    """Paired comparison of two conditions on the same items (rows indexed by ``id``; this − reference)."""
    out: dict[str, Any] = {}
    both = this["correct"].notna() & reference["correct"].reindex(this.index).notna()
    x = reference.loc[both[both].index, "correct"].astype(bool).to_numpy()
    y = this.loc[both[both].index, "correct"].astype(bool).to_numpy()
    if len(x):
        counts = paired_counts(x, y)
        diff, low, high = paired_difference_interval(x, y, CONFIDENCE)
        out.update(
            {
                f"{prefix}_only_ref": counts.only_x,
                f"{prefix}_only_this": counts.only_y,
                f"{prefix}_mcnemar_p": mcnemar_exact(counts.only_x, counts.only_y),
                f"{prefix}_diff": diff,
                f"{prefix}_diff_low": low,
                f"{prefix}_diff_high": high,
            }
        )
    else:
        out.update({f"{prefix}_{k}": math.nan for k in ("only_ref", "only_this", "mcnemar_p", "diff", "diff_low", "diff_high")})
    losses = pd.concat([this["loss"], reference["loss"].reindex(this.index)], axis=1, keys=["this", "ref"]).dropna()
    if len(losses):
        delta = (losses["this"] - losses["ref"]).to_numpy(dtype=float)
        out[f"{prefix}_loss_diff"] = float(delta.mean())
        out[f"{prefix}_loss_p"] = _wilcoxon_p(delta)
    else:
        out[f"{prefix}_loss_diff"] = out[f"{prefix}_loss_p"] = math.nan
    return out


def _wilcoxon_p(delta: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of paired differences (1.0 when every difference is 0)."""
    if not np.any(delta != 0):
        return 1.0
    return float(sps.wilcoxon(delta, zero_method="wilcox", alternative="two-sided").pvalue)


_PAIRED_KEYS = ("only_ref", "only_this", "mcnemar_p", "diff", "diff_low", "diff_high", "loss_diff", "loss_p")


def _check_unique(frame: pd.DataFrame, keys: list[str], what: str) -> None:
    duplicated = frame.duplicated([*keys, "id"])
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        raise ValueError(f"{what}: item {row['id']!r} appears twice for " + ", ".join(f"{k}={row[k]!r}" for k in keys))


def pruning_table(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The ``pruning`` table (see the module docstring) from per-item pruning frames."""
    items = pd.concat(list(frames), ignore_index=True)
    keys = ["model", "base", "scores", "scope", "strategy", "seed", "fraction"]
    _check_unique(items, keys, "pruning results")
    rows = []
    for (model, base, scores, scope), group in items.groupby(["model", "base", "scores", "scope"], sort=True):
        most = {f: g.set_index("id") for f, g in group[group["strategy"] == "most"].groupby("fraction")}
        for (strategy, seed, fraction), cond in group.groupby(["strategy", "seed", "fraction"], dropna=False, sort=False):
            row = {
                "model": model, "base": base, "scores": scores, "scope": scope, "strategy": strategy,
                "seed": None if pd.isna(seed) else int(seed), "fraction": float(fraction),
                "k": int(cond["k"].iloc[0]), "n_heads": int(cond["n_heads"].iloc[0]),
                **_summary(cond["correct"], cond["loss"]),
            }
            if strategy != "most" and fraction in most:
                row.update(paired_measures(cond.set_index("id"), most[fraction], "vs_most"))
            else:
                row.update({f"vs_most_{k}": math.nan for k in _PAIRED_KEYS})
            rows.append(row)
    table = pd.DataFrame(rows)
    order = {"most": 0, "least": 1, "random": 2}
    table["_order"] = table["strategy"].map(order)
    table = table.sort_values(["model", "base", "scores", "scope", "_order", "seed", "fraction"], na_position="first")
    table = table.drop(columns="_order").reset_index(drop=True)
    table["seed"] = table["seed"].astype("Int64")
    return table


def sparse_table(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The ``sparse_attention`` table (see the module docstring) from per-item sparse frames."""
    items = pd.concat(list(frames), ignore_index=True)
    keys = ["model", "base", "scores", "method", "budget"]
    _check_unique(items, keys, "sparse attention results")
    rows = []
    for (model, base, scores), group in items.groupby(["model", "base", "scores"], sort=True):
        dense = group[group["method"] == "dense"].set_index("id")
        uniform = {b: g.set_index("id") for b, g in group[group["method"] == "uniform"].groupby("budget")}
        for (method, budget), cond in group.groupby(["method", "budget"], sort=False):
            row = {
                "model": model, "base": base, "scores": scores, "method": method, "budget": float(budget),
                "realised_keep_fraction": float(cond["realised_keep_fraction"].iloc[0]),
                **_summary(cond["correct"], cond["loss"]),
            }
            indexed = cond.set_index("id")
            if method != "dense" and len(dense):
                row.update(paired_measures(indexed, dense, "vs_dense"))
            else:
                row.update({f"vs_dense_{k}": math.nan for k in _PAIRED_KEYS})
            if method == "adaptive" and budget in uniform:
                row.update(paired_measures(indexed, uniform[budget], "vs_uniform"))
            else:
                row.update({f"vs_uniform_{k}": math.nan for k in _PAIRED_KEYS})
            rows.append(row)
    table = pd.DataFrame(rows)
    order = {"dense": 0, "uniform": 1, "adaptive": 2}
    table["_order"] = table["method"].map(order)
    table = table.sort_values(["model", "base", "scores", "_order", "budget"], ascending=[True, True, True, True, False])
    return table.drop(columns="_order").reset_index(drop=True)


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def pruning_verdicts(table: pd.DataFrame, alpha: float = 0.05) -> list[str]:
    """One sentence per model × base × scope: does pruning the most important heads hurt more?

    Counts, over the fractions > 0 where pruned sets differ, how often pruning ``most`` gives a higher mean loss
    than ``least`` and than each random seed (and how many of those differences are significant, Wilcoxon
    p < ``alpha``), and likewise for a lower pass@1 (McNemar p < ``alpha``).
    """
    sentences = []
    for (model, base, scope), group in table.groupby(["model", "base", "scope"], sort=True):
        rows = group[(group["fraction"] > 0) & (group["strategy"] != "most")]
        parts = []
        for label, subset in (("least", rows[rows["strategy"] == "least"]), ("random", rows[rows["strategy"] == "random"])):
            if subset.empty:
                continue
            n = len(subset)
            loss_worse = int((subset["vs_most_loss_diff"] < 0).sum())
            loss_sig = int(((subset["vs_most_loss_diff"] < 0) & (subset["vs_most_loss_p"] < alpha)).sum())
            acc_worse = int((subset["vs_most_diff"] > 0).sum())
            acc_sig = int(((subset["vs_most_diff"] > 0) & (subset["vs_most_mcnemar_p"] < alpha)).sum())
            what = "least-important heads" if label == "least" else "random heads (all seeds)"
            parts.append(
                f"than pruning the {what} in {loss_worse}/{n} comparisons by answer loss "
                f"({loss_sig} with Wilcoxon p < {alpha}) and in {acc_worse}/{n} by pass@1 "
                f"({acc_sig} with McNemar p < {alpha})"
            )
        if not parts:
            continue
        verdict = "; ".join(parts)
        sentences.append(f"{model} / {base} ({scope}): pruning the most important heads hurts more {verdict}.")
    return sentences


def sparse_verdicts(table: pd.DataFrame, alpha: float = 0.05) -> list[str]:
    """One sentence per model × base: adaptive vs uniform sparse attention at equal budget."""
    sentences = []
    for (model, base), group in table.groupby(["model", "base"], sort=True):
        rows = group[group["method"] == "adaptive"]
        if rows.empty:
            continue
        n = len(rows)
        better = int((rows["vs_uniform_loss_diff"] < 0).sum())
        sig = int(((rows["vs_uniform_loss_diff"] < 0) & (rows["vs_uniform_loss_p"] < alpha)).sum())
        acc = int((rows["vs_uniform_diff"] > 0).sum())
        sentences.append(
            f"{model} / {base}: adaptive keep ratios give a lower answer loss than uniform ones at {better}/{n} "
            f"budgets ({sig} with Wilcoxon p < {alpha}) and a higher pass@1 at {acc}/{n}."
        )
    return sentences

"""Aggregate tables of the causal validation, with intervals and paired tests.

``pruning`` — one row per model × base × scope × strategy × seed × fraction:
    pass@1 with its Wilson 95 % interval (Wilson 1927), the mean answer loss with a seeded percentile bootstrap
    95 % interval over items, and — for ``least`` and ``random`` — the paired comparison with ``most`` at the
    same fraction on the same items: exact McNemar p on pass@1 (``vs_most_mcnemar_p``; b = items only the
    ``most`` condition gets right, c = items only this condition gets right), the pass@1 difference
    (this − most) with Newcombe's paired interval, the mean loss difference (this − most) and the two-sided
    Wilcoxon signed-rank p on the per-item loss differences (``vs_most_loss_p``).
    Pruning the most important heads hurts more than pruning others when this condition's pass@1 is higher
    (``vs_most_diff`` > 0) and its loss lower (``vs_most_loss_diff`` < 0). ``vs_most_loss_diff_low/high`` is the
    paired bootstrap interval of the mean loss difference over items. ``least_by`` says how ``least`` ranked
    heads (``magnitude`` = smallest |score|, ``signed`` = lowest score).
    ``differs_from_most``: this condition prunes a different set from ``most`` at the same fraction.
    ``vs_most_counted``: the comparison is a real one — the sets differ and no smaller fraction compared the same
    two sets (a fraction that prunes nothing, or the same heads as another fraction, is not counted twice).
    ``vs_most_*_p_holm``: the McNemar / Wilcoxon p Holm-adjusted over the counted comparisons of the
    model × base × scope (every strategy, seed and fraction), the family the per-condition counts are taken from.

``pruning_tests`` — the one pre-declared test of each verdict sentence (:func:`pruning_tests`): per model × base
    × scope × comparator (``least``, ``random``) × measure (``loss``, ``pass_at_1``), over the fractions where the
    pruned sets differ (one per distinct set, their ``k`` listed), the mean over fractions and items of the paired
    difference this − most (random: mean over seeds first), its two-sided sign-flip test over items (exact, valid
    at any number of items) and an expanded-percentile bootstrap interval over items (rows resampled, so the
    pairing across fractions is kept) (:func:`attnlab.stats.paired_mean_difference`).

``sparse_attention`` — one row per model × base × method × allocation × budget: the same measures; ``vs_dense_*``
    compares with dense attention and ``vs_uniform_*`` (adaptive rows) with uniform sparsity at the same budget
    (this − reference, as above; ``vs_uniform_*_p_holm`` Holm-adjusted over the adaptive rows of the
    model × base).

``sparse_tests`` — per model × base × allocation × measure: the mean over budgets and items of adaptive − uniform
    with the same paired bootstrap (:func:`sparse_tests`); the verdict sentence of each allocation states it.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from attnlab.stats import (
    bootstrap_ci,
    holm_adjust,
    mcnemar_exact,
    paired_counts,
    paired_difference_interval,
    paired_mean_difference,
    format_p_value,
    wilson_interval,
)

__all__ = [
    "CURVE_TEST",
    "paired_measures",
    "pruning_table",
    "pruning_tests",
    "pruning_verdicts",
    "sparse_table",
    "sparse_tests",
    "sparse_verdicts",
]

#: the name the verdict sentences give their test
CURVE_TEST = "mean paired difference over the curve: sign-flip test over items, paired bootstrap interval"
N_RESAMPLES = 2000

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
        low, high = bootstrap_ci(delta, seed=BOOTSTRAP_SEED, confidence=CONFIDENCE)
        out[f"{prefix}_loss_diff_low"], out[f"{prefix}_loss_diff_high"] = low, high
        out[f"{prefix}_loss_p"] = _wilcoxon_p(delta)
    else:
        for key in ("loss_diff", "loss_diff_low", "loss_diff_high", "loss_p"):
            out[f"{prefix}_{key}"] = math.nan
    return out


def _wilcoxon_p(delta: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of paired differences (1.0 when every difference is 0)."""
    if not np.any(delta != 0):
        return 1.0
    return float(sps.wilcoxon(delta, zero_method="wilcox", alternative="two-sided").pvalue)


_PAIRED_KEYS = (
    "only_ref", "only_this", "mcnemar_p", "diff", "diff_low", "diff_high", "loss_diff", "loss_diff_low",
    "loss_diff_high", "loss_p",
)


def _check_unique(frame: pd.DataFrame, keys: list[str], what: str) -> None:
    duplicated = frame.duplicated([*keys, "id"])
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        raise ValueError(f"{what}: item {row['id']!r} appears twice for " + ", ".join(f"{k}={row[k]!r}" for k in keys))


_PRUNING_GROUP = ["model", "base", "scores", "scope", "least_by"]


def _pruned_set(cond: pd.DataFrame) -> frozenset[str]:
    text = str(cond["pruned"].iloc[0])
    return frozenset(text.split(";")) if text else frozenset()


def _check_columns(items: pd.DataFrame, required: Sequence[str], what: str) -> None:
    missing = [c for c in required if c not in items.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing} (files written by an older attnlab? rerun the stage)")


def _pruning_items(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    items = pd.concat(list(frames), ignore_index=True)
    _check_columns(items, [*_PRUNING_GROUP, "strategy", "seed", "fraction", "k", "n_heads", "pruned", "id",
                           "correct", "loss"], "pruning results")
    _check_unique(items, [*_PRUNING_GROUP, "strategy", "seed", "fraction"], "pruning results")
    return items


def _seed_key(seed: Any) -> int | None:
    return None if pd.isna(seed) else int(seed)


def _counted_comparisons(group: pd.DataFrame) -> dict[tuple[str, int | None, float], tuple[bool, bool]]:
    """(strategy, seed, fraction) -> (differs_from_most, counted) for the non-``most`` conditions of one group.

    A comparison is counted when its pruned set differs from ``most``'s at that fraction and no smaller fraction
    already compared the same pair of sets (fractions that round to the same k prune the same heads)."""
    most = {f: _pruned_set(g) for f, g in group[group["strategy"] == "most"].groupby("fraction")}
    out: dict[tuple[str, Any, float], tuple[bool, bool]] = {}
    seen: set[tuple[str, Any, frozenset[str], frozenset[str]]] = set()
    others = group[group["strategy"] != "most"]
    for (strategy, seed, fraction), cond in sorted(
        others.groupby(["strategy", "seed", "fraction"], dropna=False, sort=False), key=lambda kv: kv[0][2]
    ):
        seed = _seed_key(seed)
        if fraction not in most:
            out[(strategy, seed, float(fraction))] = (False, False)
            continue
        this, ref = _pruned_set(cond), most[fraction]
        differs = this != ref
        key = (strategy, seed, this, ref)
        counted = differs and key not in seen
        seen.add(key)
        out[(strategy, seed, float(fraction))] = (differs, counted)
    return out


def pruning_table(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The ``pruning`` table (see the module docstring) from per-item pruning frames."""
    items = _pruning_items(frames)
    rows = []
    for (model, base, scores, scope, least_by), group in items.groupby(_PRUNING_GROUP, sort=True):
        most = {f: g.set_index("id") for f, g in group[group["strategy"] == "most"].groupby("fraction")}
        counted = _counted_comparisons(group)
        for (strategy, seed, fraction), cond in group.groupby(["strategy", "seed", "fraction"], dropna=False, sort=False):
            differs, real = counted.get((strategy, _seed_key(seed), float(fraction)), (False, False))
            row = {
                "model": model, "base": base, "scores": scores, "scope": scope, "least_by": least_by,
                "strategy": strategy, "seed": None if pd.isna(seed) else int(seed), "fraction": float(fraction),
                "k": int(cond["k"].iloc[0]), "n_heads": int(cond["n_heads"].iloc[0]),
                "differs_from_most": bool(differs) if strategy != "most" else False,
                "vs_most_counted": bool(real) if strategy != "most" else False,
                **_summary(cond["correct"], cond["loss"]),
            }
            if strategy != "most" and fraction in most:
                row.update(paired_measures(cond.set_index("id"), most[fraction], "vs_most"))
            else:
                row.update({f"vs_most_{k}": math.nan for k in _PAIRED_KEYS})
            rows.append(row)
    table = pd.DataFrame(rows)
    for column in ("vs_most_mcnemar_p", "vs_most_loss_p"):
        table[f"{column}_holm"] = math.nan
        for _, idx in table.groupby(_PRUNING_GROUP, sort=False).groups.items():
            family = table.loc[idx]
            family = family[family["vs_most_counted"]]
            if len(family):
                table.loc[family.index, f"{column}_holm"] = holm_adjust(family[column].to_numpy(dtype=float))
    order = {"most": 0, "least": 1, "random": 2}
    table["_order"] = table["strategy"].map(order)
    table = table.sort_values([*_PRUNING_GROUP, "_order", "seed", "fraction"], na_position="first")
    table = table.drop(columns="_order").reset_index(drop=True)
    table["seed"] = table["seed"].astype("Int64")
    return table


def _matrix(frame: pd.DataFrame, column: str, ids: pd.Index) -> np.ndarray:
    """The per-item values of one condition, [n_ids] (NaN where not measured)."""
    values = frame.set_index("id")[column].astype(float)
    return values.reindex(ids).to_numpy(dtype=float)


def _nan_mean(stack: np.ndarray) -> np.ndarray:
    """Mean over the first axis ignoring NaN; NaN where every entry is NaN. [S, n] -> [n]."""
    measured = ~np.isnan(stack)
    count = measured.sum(axis=0)
    total = np.where(measured, stack, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _test_row(labels: dict[str, Any], measure: str, deltas: list[np.ndarray], extra: dict[str, Any]) -> dict[str, Any]:
    row = {**labels, "measure": measure, **extra, "test": CURVE_TEST}
    if not deltas:
        row.update(n_items=0, estimate=math.nan, low=math.nan, high=math.nan, p_value=math.nan)
        return row
    d = np.stack(deltas, axis=1)  # [n_items, n_conditions]
    if not np.any(~np.isnan(d)):
        row.update(n_items=0, estimate=math.nan, low=math.nan, high=math.nan, p_value=math.nan)
        return row
    test = paired_mean_difference(d, n_resamples=N_RESAMPLES, confidence=CONFIDENCE, seed=BOOTSTRAP_SEED)
    row.update(n_items=test.n_items, estimate=test.estimate, low=test.low, high=test.high, p_value=test.p_value)
    return row


def pruning_tests(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The ``pruning_tests`` table (see the module docstring): one whole-curve test per comparator and measure.

    For comparator c (``least``, or ``random`` averaged over its seeds) and the fractions F where c prunes a
    different set from ``most`` (one fraction per distinct pair of sets), with y the per-item loss (or 0/1
    pass@1)::

        d[i, f] = y_c(i, f) − y_most(i, f),      θ = mean_{i} mean_{f ∈ F} d[i, f]

    θ < 0 for the loss (θ > 0 for pass@1) means pruning the most important heads hurts more. The test flips the
    signs of the per-item means mean_f d[i, f]; the interval resamples items (rows of d)."""
    items = _pruning_items(frames)
    rows = []
    for keys, group in items.groupby(_PRUNING_GROUP, sort=True):
        labels = dict(zip(_PRUNING_GROUP, keys))
        counted = _counted_comparisons(group)
        most = {f: g for f, g in group[group["strategy"] == "most"].groupby("fraction")}
        ids = pd.Index(sorted(set(group["id"].astype(str))))
        for comparator in ("least", "random"):
            subset = group[group["strategy"] == comparator]
            if subset.empty:
                continue
            fractions = sorted(
                f for f in set(subset["fraction"])
                if f in most and any(
                    counted.get((comparator, _seed_key(s), float(f)), (False, False))[1]
                    for s in subset.loc[subset["fraction"] == f, "seed"].unique()
                )
            )
            ks = [int(most[f]["k"].iloc[0]) for f in fractions]
            extra = {
                "comparator": comparator, "n_fractions": len(fractions),
                "fractions": ";".join(f"{f:g}" for f in fractions), "ks": ";".join(str(k) for k in ks),
                "n_seeds": int(subset["seed"].nunique()) if comparator == "random" else 1,
            }
            for measure, column in (("loss", "loss"), ("pass_at_1", "correct")):
                deltas = []
                for f in fractions:
                    at_f = subset[subset["fraction"] == f]
                    if comparator == "random":  # the random baseline: mean over its seeds, item by item
                        this = _nan_mean(np.stack([_matrix(g, column, ids) for _, g in at_f.groupby("seed")]))
                    else:
                        this = _matrix(at_f, column, ids)
                    deltas.append(this - _matrix(most[f], column, ids))
                rows.append(_test_row(labels, measure, deltas, extra))
    columns = [*_PRUNING_GROUP, "comparator", "measure", "n_fractions", "fractions", "ks", "n_seeds", "n_items",
               "estimate", "low", "high", "p_value", "test"]
    return pd.DataFrame(rows, columns=columns)


_SPARSE_GROUP = ["model", "base", "scores"]


def _sparse_items(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    items = pd.concat(list(frames), ignore_index=True)
    _check_columns(items, [*_SPARSE_GROUP, "method", "allocation", "budget", "realised_keep_fraction", "id",
                           "correct", "loss"], "sparse attention results")
    _check_unique(items, [*_SPARSE_GROUP, "method", "allocation", "budget"], "sparse attention results")
    return items


def sparse_table(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The ``sparse_attention`` table (see the module docstring) from per-item sparse frames."""
    items = _sparse_items(frames)
    rows = []
    for (model, base, scores), group in items.groupby(_SPARSE_GROUP, sort=True):
        dense = group[group["method"] == "dense"].set_index("id")
        uniform = {b: g.set_index("id") for b, g in group[group["method"] == "uniform"].groupby("budget")}
        for (method, allocation, budget), cond in group.groupby(["method", "allocation", "budget"], sort=False):
            row = {
                "model": model, "base": base, "scores": scores, "method": method, "allocation": allocation,
                "budget": float(budget), "realised_keep_fraction": float(cond["realised_keep_fraction"].iloc[0]),
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
    for column in ("vs_uniform_mcnemar_p", "vs_uniform_loss_p"):
        table[f"{column}_holm"] = math.nan
        for _, idx in table.groupby(_SPARSE_GROUP, sort=False).groups.items():
            family = table.loc[idx]
            family = family[family["method"] == "adaptive"]
            if len(family):
                table.loc[family.index, f"{column}_holm"] = holm_adjust(family[column].to_numpy(dtype=float))
    order = {"dense": 0, "uniform": 1, "adaptive": 2}
    table["_order"] = table["method"].map(order)
    table = table.sort_values([*_SPARSE_GROUP, "_order", "allocation", "budget"],
                              ascending=[True, True, True, True, True, False])
    return table.drop(columns="_order").reset_index(drop=True)


def sparse_tests(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The ``sparse_tests`` table: per allocation rule, d[i, b] = y_adaptive(i, b) − y_uniform(i, b) over every
    budget b, θ = mean_i mean_b d[i, b] with the paired bootstrap over items (θ < 0 for the loss, θ > 0 for
    pass@1: adaptive better)."""
    items = _sparse_items(frames)
    rows = []
    for keys, group in items.groupby(_SPARSE_GROUP, sort=True):
        labels = dict(zip(_SPARSE_GROUP, keys))
        ids = pd.Index(sorted(set(group["id"].astype(str))))
        uniform = {b: g for b, g in group[group["method"] == "uniform"].groupby("budget")}
        adaptive = group[group["method"] == "adaptive"]
        for allocation, rows_a in adaptive.groupby("allocation", sort=True):
            budgets = sorted((b for b in set(rows_a["budget"]) if b in uniform), reverse=True)
            extra = {"allocation": allocation, "n_budgets": len(budgets), "budgets": ";".join(f"{b:g}" for b in budgets)}
            for measure, column in (("loss", "loss"), ("pass_at_1", "correct")):
                deltas = [
                    _matrix(rows_a[rows_a["budget"] == b], column, ids) - _matrix(uniform[b], column, ids) for b in budgets
                ]
                rows.append(_test_row(labels, measure, deltas, extra))
    columns = [*_SPARSE_GROUP, "allocation", "measure", "n_budgets", "budgets", "n_items", "estimate", "low", "high",
               "p_value", "test"]
    return pd.DataFrame(rows, columns=columns)


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _interval(row: pd.Series) -> str:
    return f"{row['estimate']:+.3f} [{row['low']:+.3f}, {row['high']:+.3f}]"


def _direction(row: pd.Series, better_if_negative: bool) -> int:
    """+1 when the test says ``this`` is better than the reference, −1 worse, 0 not resolved (p > 1 − CONFIDENCE)."""
    if math.isnan(row["p_value"]) or row["p_value"] > 1.0 - CONFIDENCE or row["estimate"] == 0:
        return 0
    better = row["estimate"] < 0 if better_if_negative else row["estimate"] > 0
    return 1 if better else -1


LEAST_WORDS = {"magnitude": "least relevant heads (smallest |score|)", "signed": "lowest-scoring heads (signed score)"}


def pruning_verdicts(table: pd.DataFrame, tests: pd.DataFrame, alpha: float = 0.05) -> list[str]:
    """One sentence per model × base × scope × comparator: does pruning the most important heads hurt more?

    The verdict is the :func:`pruning_tests` loss test (the sign-flip p of mean(this − most) over the counted
    fractions and items ≤ 0.05, with the sign of the estimate); pass@1 is given with its own interval and p; the per-fraction counts are of the
    counted comparisons only, with Holm-adjusted Wilcoxon p (``vs_most_loss_p_holm``).
    """
    sentences = []
    for keys, group in tests.groupby(_PRUNING_GROUP, sort=True):
        labels = dict(zip(_PRUNING_GROUP, keys))
        rows = table[np.logical_and.reduce([table[k] == v for k, v in labels.items()])]
        for comparator, sub in group.groupby("comparator", sort=False):
            loss = sub[sub["measure"] == "loss"].iloc[0]
            acc = sub[sub["measure"] == "pass_at_1"].iloc[0]
            what = LEAST_WORDS[labels["least_by"]] if comparator == "least" else f"random heads ({loss['n_seeds']} seeds)"
            head = f"{labels['model']} / {labels['base']} ({labels['scope']}), most important vs {what}"
            if loss["n_fractions"] == 0:
                sentences.append(f"{head}: no fraction prunes different heads, so nothing is compared.")
                continue
            direction = _direction(loss, better_if_negative=True)
            verdict = {1: "pruning the most important heads hurts more", -1: "pruning the most important heads hurts less",
                       0: "not resolved (sign-flip p > 0.05)"}[direction]
            if not np.isfinite(loss["p_value"]):
                verdict = "not tested (fewer than two loss items)"
            counted = rows[(rows["strategy"] == comparator) & rows["vs_most_counted"]]
            n = len(counted)
            worse = int((counted["vs_most_loss_diff"] < 0).sum())
            sig = int(((counted["vs_most_loss_diff"] < 0) & (counted["vs_most_loss_p_holm"] < alpha)).sum())
            sentences.append(
                f"{head}: {verdict} — mean answer-loss difference ({comparator} − most) over the "
                f"{loss['n_fractions']} fractions whose pruned sets differ (k = {loss['ks'].replace(';', ', ')}) "
                f"{_interval(loss)}, {loss['n_items']} items, {format_p_value(loss['p_value'], N_RESAMPLES)} ({CURVE_TEST}); pass@1 "
                f"difference {_interval(acc)} ({acc['n_items']} items, same test, {format_p_value(acc['p_value'])}). Per comparison: higher loss "
                f"for most in {worse}/{n}, {sig} with Holm-adjusted Wilcoxon p < {alpha}."
            )
    return sentences


def sparse_verdicts(table: pd.DataFrame, tests: pd.DataFrame, alpha: float = 0.05) -> list[str]:
    """One sentence per model × base × allocation: adaptive vs uniform sparse attention at equal budget, from the
    :func:`sparse_tests` loss test; per-budget counts use the Holm-adjusted Wilcoxon p."""
    sentences = []
    for keys, group in tests.groupby([*_SPARSE_GROUP, "allocation"], sort=True):
        model, base, scores, allocation = keys
        loss = group[group["measure"] == "loss"].iloc[0]
        acc = group[group["measure"] == "pass_at_1"].iloc[0]
        head = f"{model} / {base}, adaptive ({allocation}) vs uniform"
        if loss["n_budgets"] == 0:
            sentences.append(f"{head}: no budget has both conditions, so nothing is compared.")
            continue
        direction = _direction(loss, better_if_negative=True)
        verdict = {1: "adaptive is better (lower answer loss)", -1: "adaptive is worse (higher answer loss)",
                   0: "not resolved (sign-flip p > 0.05)"}[direction]
        if not np.isfinite(loss["p_value"]):
            verdict = "not tested (fewer than two loss items)"
        rows = table[(table["model"] == model) & (table["base"] == base) & (table["scores"] == scores)
                     & (table["method"] == "adaptive") & (table["allocation"] == allocation)]
        better = int((rows["vs_uniform_loss_diff"] < 0).sum())
        sig = int(((rows["vs_uniform_loss_diff"] < 0) & (rows["vs_uniform_loss_p_holm"] < alpha)).sum())
        per_budget = ", ".join(
            f"{r.budget:g}: {r.vs_uniform_loss_diff:+.3f} [{r.vs_uniform_loss_diff_low:+.3f}, {r.vs_uniform_loss_diff_high:+.3f}]"
            for r in rows.sort_values("budget", ascending=False).itertuples()
        )
        sentences.append(
            f"{head}: {verdict} — mean answer-loss difference (adaptive − uniform) over {loss['n_budgets']} budgets "
            f"{_interval(loss)}, {loss['n_items']} items, {format_p_value(loss['p_value'], N_RESAMPLES)} ({CURVE_TEST}); pass@1 "
            f"difference {_interval(acc)}. Per budget (loss, bootstrap 95 %): {per_budget}; lower loss at "
            f"{better}/{len(rows)} budgets, {sig} with Holm-adjusted Wilcoxon p < {alpha}."
        )
    return sentences

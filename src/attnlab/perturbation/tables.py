"""Aggregate tables of the perturbation and Jacobian stages, and the Mamba-vs-Transformer summary.

``perturbation`` table: one row per model × relation × site × layer × method × mode with the selected
channels' changes and the random control over seeds (mean and Student-t interval of the mean, the
interval level from ``confidence``), plus rows with ``layer = -1`` = the mean over the analysed layers
(per seed first, so the control interval stays an interval over independent draws).

"Above random" is a test for a *new draw*: under H0 the selected channels' log-ratio x is one more draw
from the distribution of the n random-control log-ratios (mean x̄, standard deviation s), so

    above_random_p = P(t_{n−1} > (x − x̄) / (s·√(1 + 1/n)))         (Student-t prediction interval)
    above_random   = above_random_p < ABOVE_RANDOM_LEVEL = (1 − confidence) / 2

i.e. x lies above the one-sided upper prediction bound ``random_target_log_ratio_pred_high``
(:func:`attnlab.stats.prediction_p_value`). On null data this flags a row with probability
(1 − confidence) / 2 (2.5 % at 95 %); the t interval of the control *mean* would flag ~17 % with 5 seeds.

``summary``: per model × site × method × mode, the mean over
relations of the target log-ratio (layer-mean rows) with a percentile bootstrap interval over relations,
next to the same for the random control, and the one test of the verdict: the mean over relations of the
paired difference d_r = selected_r − mean random_r with its bootstrap interval over relations and its two-sided
sign-flip p (``diff_*``, :func:`attnlab.stats.paired_mean_difference`). The per-relation count
``relations_above_random`` uses Holm-adjusted ``above_random_p`` across the relations of the group
(:func:`attnlab.stats.holm_adjust`). Each row states ``n_channels`` (k), ``site_width`` (d) and
``fraction`` = k / d, and its ``comparison``: ``like_for_like`` for the residual stream, the one site every
architecture has, perturbed at the same fraction in every model; ``secondary`` for the architecture-specific
sites (MLP neurons of a Transformer, Δ channels of an SSM), whose widths — hence k — differ.

``comparison`` (the headline SSM-vs-Transformer test the captions state): per method × mode at the residual
site, for every SSM model A and Transformer model B perturbed at the same fraction, on the same relations
(same facts, same phrasings),

    θ = mean_r (d_r(A) − d_r(B)),   d_r(M) = selected_r(M) − mean random_r(M)

with a bootstrap interval over relations and a two-sided sign-flip p over relations
(:func:`attnlab.stats.paired_mean_difference`; exact, so with n relations the smallest p is 2 / 2ⁿ and
≥ 6 relations are needed for p ≤ 0.05). θ > 0: the selection disrupts A more, beyond its own random
control, than the selection disrupts B.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd
from scipy import stats as sps

from attnlab.models.architectures import model_types
from attnlab.stats import bootstrap_ci, format_p_value, holm_adjust, paired_mean_difference

SSM_TYPES = model_types(ssm=True)
#: the site every architecture has: the headline SSM-vs-Transformer comparison perturbs it in both
LIKE_FOR_LIKE_SITE = "residual"
LIKE_FOR_LIKE = "like_for_like"
KEYS = ["model", "model_type", "relation", "site", "layer", "mode"]


def above_random_level(confidence: float) -> float:
    """The one-sided level of the above-random test: (1 − confidence) / 2 (0.025 at 95 %)."""
    return (1.0 - confidence) / 2.0


def t_interval(values: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval of the mean of ``values`` (n ≥ 2)."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        raise ValueError("a t interval needs at least two values")
    mean = float(values.mean())
    half = float(sps.t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    return mean, mean - half, mean + half


def _with_layer_means(rows: pd.DataFrame) -> pd.DataFrame:
    metric_cols = ["target_log_ratio", "target_pct_change", "sentence_log_ratio", "target_abs_change"]
    group = ["model", "model_type", "relation", "site", "method", "seed", "mode"]
    widths = ["baseline_target_ppl", "perturbed_target_ppl", "n_channels", "site_width"]
    means = rows.groupby(group, sort=False)[metric_cols + widths].mean()
    means = means.reset_index()
    means["layer"] = -1
    return pd.concat([rows, means], ignore_index=True)


def perturbation_table(rows: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """The per-row comparison of selected channels against the random control (see module docstring)."""
    rows = _with_layer_means(rows)
    random = rows[rows["method"] == "random"]
    selected = rows[rows["method"] != "random"]
    metrics = ("target_log_ratio", "target_pct_change", "sentence_log_ratio")
    first = selected.groupby(KEYS + ["method"], sort=False).first().reset_index()
    record_cols = ["n_channels", "site_width", "baseline_target_ppl", "perturbed_target_ppl", "target_abs_change",
                   "target_pct_change", "target_log_ratio", "sentence_log_ratio"]
    table = first[KEYS + ["method"] + record_cols]
    grouped = random.groupby(KEYS, sort=False)[list(metrics)]
    stats = pd.concat({"mean": grouped.mean(), "std": grouped.std(ddof=1), "n": grouped.count()}, axis=1)
    stats.columns = [f"{what}:{metric}" for what, metric in stats.columns]
    table = table.merge(stats.reset_index(), on=KEYS, how="left", validate="many_to_one")
    missing = table[table[f"n:{metrics[0]}"].isna()]
    if len(missing):
        raise ValueError(f"no random control rows for {dict(zip(KEYS, missing.iloc[0][KEYS]))}")
    n = table[f"n:{metrics[0]}"].to_numpy(dtype=float)  # [rows]
    if np.any(n < 2):
        raise ValueError("a t interval needs at least two values (random control draws)")
    table.insert(len(KEYS) + 1 + len(record_cols), "random_seeds", n.astype(int))
    t_mean = sps.t.ppf(0.5 + confidence / 2, n - 1)
    for metric in metrics:
        mean, std = table.pop(f"mean:{metric}").to_numpy(float), table.pop(f"std:{metric}").to_numpy(float)
        table.pop(f"n:{metric}")
        half = t_mean * std / np.sqrt(n)
        table[f"random_{metric}_mean"] = mean
        table[f"random_{metric}_low"] = mean - half
        table[f"random_{metric}_high"] = mean + half
    level = above_random_level(confidence)
    mean = table["random_target_log_ratio_mean"].to_numpy(float)
    std = grouped.std(ddof=1)["target_log_ratio"].reindex(pd.MultiIndex.from_frame(table[KEYS])).to_numpy(float)
    scale = std * np.sqrt(1.0 + 1.0 / n)  # the spread of one new draw around the controls' mean
    table["random_target_log_ratio_pred_high"] = mean + sps.t.ppf(1.0 - level, n - 1) * scale
    excess = table["target_log_ratio"].to_numpy(float) - mean
    with np.errstate(divide="ignore", invalid="ignore"):
        p = sps.t.sf(excess / scale, n - 1)
    table["above_random_p"] = np.where(scale > 0, p, np.where(excess > 0, 0.0, 1.0))  # = prediction_p_value
    table["above_random_level"] = level
    table["above_random"] = table["above_random_p"] < level
    return table.sort_values(["model", "site", "method", "mode", "relation", "layer"], kind="stable").reset_index(drop=True)


def perturbation_summary(table: pd.DataFrame, confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Per model × site × method × mode: mean over relations of the layer-mean target log-ratio, bootstrap CI."""
    layer_mean = table[table["layer"] == -1]
    out = []
    for (model, kind, site, method, mode), grp in layer_mean.groupby(
        ["model", "model_type", "site", "method", "mode"], sort=False
    ):
        k, width = int(round(grp["n_channels"].iloc[0])), int(round(grp["site_width"].iloc[0]))
        record = {"model": model, "model_type": kind, "site": site, "method": method, "mode": mode,
                  "comparison": LIKE_FOR_LIKE if site == LIKE_FOR_LIKE_SITE else "secondary",
                  "n_channels": k, "site_width": width, "fraction": k / width, "n_relations": len(grp)}  # fmt: skip
        for name, column in (("selected", "target_log_ratio"), ("random", "random_target_log_ratio_mean")):
            values = grp[column].to_numpy()
            low, high = bootstrap_ci(values, confidence=confidence, seed=seed) if len(values) > 1 else (values[0], values[0])
            record[f"{name}_log_ratio"] = float(values.mean())
            record[f"{name}_low"], record[f"{name}_high"] = low, high
        record["selected_pct_change"] = float(grp["target_pct_change"].mean())
        test = paired_mean_difference(
            (grp["target_log_ratio"] - grp["random_target_log_ratio_mean"]).to_numpy(dtype=float),
            confidence=confidence, seed=seed,
        )
        record.update(diff=test.estimate, diff_low=test.low, diff_high=test.high, diff_p=test.p_value)
        level = float(grp["above_random_level"].iloc[0])
        holm = holm_adjust(grp["above_random_p"].to_numpy(dtype=float))
        record["relations_above_random"] = int(np.sum(holm < level))
        record["above_random_level"] = level
        out.append(record)
    return pd.DataFrame(out)


def perturbation_comparison(table: pd.DataFrame, confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """The headline SSM-vs-Transformer test at the residual stream (module docstring, ``comparison``).

    One row per method × mode × (SSM model, Transformer model) perturbed at the same fraction of the residual
    stream; models whose fractions differ are not compared (there is no row for them).

    Raises:
        ValueError: the two models were measured on different relations.
    """
    rows = table[(table["layer"] == -1) & (table["site"] == LIKE_FOR_LIKE_SITE)].copy()
    rows["excess"] = rows["target_log_ratio"] - rows["random_target_log_ratio_mean"]
    rows["fraction"] = rows["n_channels"] / rows["site_width"]
    models = rows[["model", "model_type", "fraction", "n_channels"]].drop_duplicates("model")
    ssm = models[models["model_type"].isin(SSM_TYPES)]
    transformers = models[~models["model_type"].isin(SSM_TYPES)]
    out = []
    for (method, mode), grp in rows.groupby(["method", "mode"], sort=False):
        for a in ssm.itertuples():
            for b in transformers.itertuples():
                if not math.isclose(a.fraction, b.fraction, rel_tol=0.02):
                    continue
                left = grp[grp["model"] == a.model].set_index("relation")["excess"]
                right = grp[grp["model"] == b.model].set_index("relation")["excess"]
                if left.empty or right.empty:
                    continue
                if set(left.index) != set(right.index):
                    raise ValueError(
                        f"{a.model} and {b.model} were measured on different relations "
                        f"({sorted(set(left.index) ^ set(right.index))}); the comparison is paired over relations"
                    )
                d = (left - right.reindex(left.index)).to_numpy(dtype=float)
                test = paired_mean_difference(d, confidence=confidence, seed=seed)
                out.append({
                    "site": LIKE_FOR_LIKE_SITE, "method": method, "mode": mode, "ssm_model": a.model,
                    "transformer_model": b.model, "ssm_fraction": a.fraction, "transformer_fraction": b.fraction,
                    "ssm_channels": int(a.n_channels), "transformer_channels": int(b.n_channels),
                    "n_relations": len(d), "ssm_excess": float(left.mean()), "transformer_excess": float(right.mean()),
                    "difference": test.estimate, "difference_low": test.low, "difference_high": test.high,
                    "p_value": test.p_value,
                })  # fmt: skip
    return pd.DataFrame(out, columns=COMPARISON_COLUMNS)


COMPARISON_COLUMNS = [
    "site", "method", "mode", "ssm_model", "transformer_model", "ssm_fraction", "transformer_fraction",
    "ssm_channels", "transformer_channels", "n_relations", "ssm_excess", "transformer_excess",
    "difference", "difference_low", "difference_high", "p_value",
]  # fmt: skip


def comparison_verdict(row: Mapping[str, Any], confidence: float = 0.95) -> str:
    """The sentence of one :func:`perturbation_comparison` row; the verdict is p ≤ 1 − confidence with θ's sign."""
    if not np.isfinite(row["p_value"]):
        verdict = "is not tested (fewer than two relations)"
    elif row["p_value"] <= 1.0 - confidence:
        more = "more" if row["difference"] > 0 else "less"
        verdict = f"disrupts {row['ssm_model']} {more} than {row['transformer_model']}"
    else:
        verdict = f"does not distinguish {row['ssm_model']} from {row['transformer_model']}"
    return (
        f"Like for like (residual stream, {row['ssm_channels']} and {row['transformer_channels']} channels = "
        f"{row['ssm_fraction']:.1%} and {row['transformer_fraction']:.1%} of the width), {row['method']} "
        f"selection, {row['mode']}: selected − random log-ratio {row['ssm_excess']:+.3f} ({row['ssm_model']}) vs "
        f"{row['transformer_excess']:+.3f} ({row['transformer_model']}); the selection {verdict} (test: mean over "
        f"{row['n_relations']} relations of the difference {_fmt(row['difference'], row['difference_low'], row['difference_high'])} "
        f"(bootstrap interval), sign-flip test over relations {format_p_value(row['p_value'])})."
    )


def _fmt(value: float, low: float, high: float) -> str:
    return f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"


def comparison_sentences(
    summary: pd.DataFrame,
    jacobian: pd.DataFrame | None = None,
    confidence: float = 0.95,
    comparison: pd.DataFrame | None = None,
) -> list[str]:
    """Plain-text statements of the SSM-vs-Transformer comparison, every number with its interval.

    First the headline rows of ``comparison`` (:func:`perturbation_comparison`, residual stream, same fraction),
    then the per-model rows, like-for-like (residual) before secondary (MLP neurons, Δ channels; each states
    its k and fraction).

    The verdict of a row ("raises the perplexity more than random channels" / "is not distinguished") comes from
    one test: the sign-flip test over relations of the mean paired difference selected − random (p ≤
    1 − ``confidence``, with the sign of the difference); with two relations the smallest possible p is 0.5, so
    no verdict is reached. The per-relation count is Holm-adjusted.
    """
    lines = [] if comparison is None else [comparison_verdict(row, confidence) for _, row in comparison.iterrows()]
    order = summary.assign(_secondary=summary["comparison"] != LIKE_FOR_LIKE).sort_values("_secondary", kind="stable")
    for _, r in order.iterrows():
        family = "SSM" if r["model_type"] in SSM_TYPES else "Transformer"
        if not np.isfinite(r["diff_p"]):
            verdict = "is not tested (fewer than two relations)"
        elif r["diff_p"] <= 1.0 - confidence and r["diff"] > 0:
            verdict = "raises the target perplexity more than random channels"
        elif r["diff_p"] <= 1.0 - confidence and r["diff"] < 0:
            verdict = "raises the target perplexity less than random channels"
        else:
            verdict = "is not distinguished from random channels"
        lines.append(
            f"{r['comparison'].replace('_', ' ')}: {r['model']} ({family}), {r['site']} channels "
            f"(k = {r['n_channels']} of {r['site_width']}, {r['fraction']:.1%}) by {r['method']}, {r['mode']}: mean target log-ratio "
            f"{_fmt(r['selected_log_ratio'], r['selected_low'], r['selected_high'])} vs random "
            f"{_fmt(r['random_log_ratio'], r['random_low'], r['random_high'])}; the selection {verdict} "
            f"(test: mean over {r['n_relations']} relations of selected − random "
            f"{_fmt(r['diff'], r['diff_low'], r['diff_high'])} (bootstrap interval), sign-flip test over relations "
            f"{format_p_value(r['diff_p'])}); "
            f"{r['relations_above_random']}/{r['n_relations']} relations above the random controls' one-sided "
            f"{1 - r['above_random_level']:.1%} prediction bound (Student-t, Holm-adjusted over relations)."
        )
    if jacobian is not None and not jacobian.empty:
        for model, grp in jacobian.groupby("model", sort=False):
            g = grp.sort_values("layer")
            lines.append(
                f"{model} Jacobian: relative sensitivity E‖Jv‖·‖h‖/‖f‖ per layer (free of the activation scale; "
                "compares architectures) "
                + ", ".join(f"{v:.3g} [{lo:.3g}, {hi:.3g}]" for v, lo, hi in zip(
                    g.relative_sensitivity_mean, g.relative_sensitivity_low, g.relative_sensitivity_high))
                + "; absolute sensitivity E‖Jv‖, unit ‖v‖ (compares layers of one model) "
                + ", ".join(f"{v:.3g} [{lo:.3g}, {hi:.3g}]" for v, lo, hi in zip(g.sensitivity_mean, g.sensitivity_low, g.sensitivity_high))
                + "; spectral norm (power-iteration lower bound, mean over texts) "
                + ", ".join(f"{v:.3g}" for v in g.spectral_norm_mean)
                + "; effective rank "
                + ", ".join(f"{v:.1f}" for v in g.effective_rank)
                + "."
            )
    return lines


def markdown_table(frame: pd.DataFrame, float_format: str = "{:.4g}") -> str:
    """A GitHub Markdown table of ``frame`` (no extra dependency)."""
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in frame.iterrows():
        cells = [float_format.format(v) if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

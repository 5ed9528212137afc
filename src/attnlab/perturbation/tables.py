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

``summary`` (the comparison the captions state): per model × site × method × mode, the mean over
relations of the target log-ratio (layer-mean rows) with a percentile bootstrap interval over relations,
next to the same for the random control, and the one test of the verdict: the mean over relations of the
paired difference d_r = selected_r − mean random_r with its bootstrap interval over relations and its two-sided
sign-flip p (``diff_*``, :func:`attnlab.stats.paired_mean_difference`). The per-relation count
``relations_above_random`` uses Holm-adjusted ``above_random_p`` across the relations of the group
(:func:`attnlab.stats.holm_adjust`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as sps

from attnlab.models.architectures import model_types
from attnlab.stats import bootstrap_ci, format_p_value, holm_adjust, paired_mean_difference

SSM_TYPES = model_types(ssm=True)
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
    means = rows.groupby(group, sort=False)[metric_cols + ["baseline_target_ppl", "perturbed_target_ppl", "n_channels"]].mean()
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
    record_cols = ["n_channels", "baseline_target_ppl", "perturbed_target_ppl", "target_abs_change",
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
        record = {"model": model, "model_type": kind, "site": site, "method": method, "mode": mode, "n_relations": len(grp)}
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


def _fmt(value: float, low: float, high: float) -> str:
    return f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"


def comparison_sentences(
    summary: pd.DataFrame, jacobian: pd.DataFrame | None = None, confidence: float = 0.95
) -> list[str]:
    """Plain-text statements of the SSM-vs-Transformer comparison, every number with its interval.

    The verdict of a row ("raises the perplexity more than random channels" / "is not distinguished") comes from
    one test: the sign-flip test over relations of the mean paired difference selected − random (p ≤
    1 − ``confidence``, with the sign of the difference); with two relations the smallest possible p is 0.5, so
    no verdict is reached. The per-relation count is Holm-adjusted.
    """
    lines = []
    for _, r in summary.iterrows():
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
            f"{r['model']} ({family}), {r['site']} channels by {r['method']}, {r['mode']}: mean target log-ratio "
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
                f"{model} Jacobian: sensitivity E‖Jv‖ per layer "
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

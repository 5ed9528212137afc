"""Aggregate tables of the perturbation and Jacobian stages, and the Mamba-vs-Transformer summary.

``perturbation`` table: one row per model × relation × site × layer × method × mode with the selected
channels' changes and the random control over seeds (mean and Student-t interval of the mean, the
interval level from ``confidence``), plus rows with ``layer = -1`` = the mean over the analysed layers
(per seed first, so the control interval stays an interval over independent draws).

``summary`` (the comparison the captions state): per model × site × method × mode, the mean over
relations of the target log-ratio (layer-mean rows) with a percentile bootstrap interval over relations,
next to the same for the random control.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as sps

from attnlab.models.architectures import model_types
from attnlab.stats import bootstrap_ci

SSM_TYPES = model_types(ssm=True)
KEYS = ["model", "model_type", "relation", "site", "layer", "mode"]


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
    out = []
    controls = {key: grp for key, grp in random.groupby(KEYS, sort=False)}
    for key, grp in selected.groupby(KEYS + ["method"], sort=False):
        ctrl_key = tuple(key[:-1])
        ctrl = controls.get(ctrl_key)
        if ctrl is None:
            raise ValueError(f"no random control rows for {dict(zip(KEYS, ctrl_key))}")
        row = grp.iloc[0]
        record = {k: row[k] for k in KEYS + ["method"]}
        record.update(
            {
                "n_channels": row["n_channels"],
                "baseline_target_ppl": row["baseline_target_ppl"],
                "perturbed_target_ppl": row["perturbed_target_ppl"],
                "target_abs_change": row["target_abs_change"],
                "target_pct_change": row["target_pct_change"],
                "target_log_ratio": row["target_log_ratio"],
                "sentence_log_ratio": row["sentence_log_ratio"],
                "random_seeds": len(ctrl),
            }
        )
        for metric in ("target_log_ratio", "target_pct_change", "sentence_log_ratio"):
            mean, low, high = t_interval(ctrl[metric].to_numpy(), confidence)
            record[f"random_{metric}_mean"] = mean
            record[f"random_{metric}_low"] = low
            record[f"random_{metric}_high"] = high
        record["above_random"] = bool(record["target_log_ratio"] > record["random_target_log_ratio_high"])
        out.append(record)
    table = pd.DataFrame(out)
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
        record["relations_above_random"] = int(grp["above_random"].sum())
        out.append(record)
    return pd.DataFrame(out)


def _fmt(value: float, low: float, high: float) -> str:
    return f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"


def comparison_sentences(summary: pd.DataFrame, jacobian: pd.DataFrame | None = None) -> list[str]:
    """Plain-text statements of the SSM-vs-Transformer comparison, every number with its interval."""
    lines = []
    for _, r in summary.iterrows():
        family = "SSM" if r["model_type"] in SSM_TYPES else "Transformer"
        lines.append(
            f"{r['model']} ({family}), {r['site']} channels by {r['method']}, {r['mode']}: mean target log-ratio "
            f"{_fmt(r['selected_log_ratio'], r['selected_low'], r['selected_high'])} vs random "
            f"{_fmt(r['random_log_ratio'], r['random_low'], r['random_high'])} "
            f"({r['relations_above_random']}/{r['n_relations']} relations above the random interval)."
        )
    if jacobian is not None and not jacobian.empty:
        for model, grp in jacobian.groupby("model", sort=False):
            g = grp.sort_values("layer")
            lines.append(
                f"{model} Jacobian: sensitivity E‖Jv‖ per layer "
                + ", ".join(f"{v:.3g} [{lo:.3g}, {hi:.3g}]" for v, lo, hi in zip(g.sensitivity_mean, g.sensitivity_low, g.sensitivity_high))
                + "; spectral norm (mean over texts) "
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

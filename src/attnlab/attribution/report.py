"""Reporting for the attribution stage: rank correlations between methods, layer × head heatmaps.

Correlations: for each (model, base) and each pair of methods, Spearman's ρ between the per-head scores
(Spearman 1904; ``scipy.stats.spearmanr``, ties get average ranks), with its two-sided p-value (t-distribution
approximation, unreliable for fewer than ~10 heads) and the number of heads compared.
"""

from __future__ import annotations

import itertools
import os
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import matplotlib.style

from attnlab.io import atomic_path

__all__ = ["correlation_table", "plot_heatmap", "METHOD_LABELS"]

METHOD_ORDER = ("dp", "stp", "michel")
METHOD_LABELS = {
    "dp": "HeadIG, diagonal path",
    "stp": "HeadIG, stochastic threshold path",
    "michel": "Michel et al. 2019, mean |∂L/∂α|",
}
SCORE_COLUMNS = ("model", "base", "method", "layer", "head", "score")


def _check(frame: pd.DataFrame, where: str) -> None:
    missing = [c for c in SCORE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}")


def correlation_table(scores: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Spearman correlations between methods, per (model, base): one row per method pair.

    Columns: ``model, base, method_a, method_b, spearman_rho, p_value, n_heads``. Pairs are in the order
    dp–stp, dp–michel, stp–michel (only methods present). A constant score vector gives ρ = NaN.
    """
    from scipy.stats import spearmanr

    frames = []
    for index, frame in enumerate(scores):
        _check(frame, f"scores table {index}")
        frames.append(frame)
    if not frames:
        raise ValueError("no score tables given")
    table = pd.concat(frames, ignore_index=True)
    if table.duplicated(["model", "base", "method", "layer", "head"]).any():
        raise ValueError("score tables overlap: a (model, base, method, layer, head) occurs twice")
    rows = []
    for (model, base), group in table.groupby(["model", "base"], sort=False):
        methods = [m for m in METHOD_ORDER if m in set(group["method"])]
        wide = group.pivot(index=["layer", "head"], columns="method", values="score")  # [heads, methods]
        for a, b in itertools.combinations(methods, 2):
            pair = wide[[a, b]].dropna()
            constant = pair[a].nunique() < 2 or pair[b].nunique() < 2
            rho, p_value = (np.nan, np.nan) if constant or len(pair) < 3 else spearmanr(pair[a], pair[b])
            rows.append(
                {
                    "model": model,
                    "base": base,
                    "method_a": a,
                    "method_b": b,
                    "spearman_rho": float(rho),
                    "p_value": float(p_value),
                    "n_heads": int(len(pair)),
                }
            )
    return pd.DataFrame(rows, columns=["model", "base", "method_a", "method_b", "spearman_rho", "p_value", "n_heads"])


def correlation_markdown(table: pd.DataFrame) -> str:
    """A Markdown table of :func:`correlation_table` for humans."""
    lines = [
        "| model | base | methods | Spearman ρ | p | heads |",
        "|---|---|---|---:|---:|---:|",
    ]
    for row in table.itertuples(index=False):
        lines.append(
            f"| {row.model} | {row.base} | {row.method_a} vs {row.method_b} | {row.spearman_rho:.3f} | "
            f"{row.p_value:.3g} | {row.n_heads} |"
        )
    return "\n".join(lines) + "\n"


def plot_heatmap(scores: pd.DataFrame, path: str | os.PathLike[str], *, title: str | None = None) -> None:
    """A layer × head heatmap of one score table (rows = layers, columns = heads), written atomically as PNG.

    Signed scores use a diverging colour map centred on 0; non-negative scores (abs/relu/michel) a sequential one.
    Each cell is annotated with its score. Same table ⇒ byte-identical PNG.
    """
    _check(scores, str(path))
    if scores.empty:
        raise ValueError(f"{path}: empty score table")
    grid = scores.pivot(index="layer", columns="head", values="score").sort_index().sort_index(axis=1)  # [L, U]
    values = grid.to_numpy(dtype=float)
    with matplotlib.style.context("default"):
        figure = Figure(figsize=(1.2 + 0.7 * values.shape[1], 1.0 + 0.5 * values.shape[0]), dpi=150)
        FigureCanvasAgg(figure)
        axes = figure.add_subplot(1, 1, 1)
        if np.nanmin(values) < 0:
            bound = float(np.nanmax(np.abs(values))) or 1.0
            image = axes.imshow(values, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
        else:
            image = axes.imshow(values, cmap="viridis", vmin=0.0, aspect="auto")
        for (i, j), value in np.ndenumerate(values):
            level = image.norm(value)  # 0..1 position on the colour map
            dark = level < 0.6 if np.nanmin(values) >= 0 else False  # viridis is dark at the low end
            axes.text(j, i, f"{value:.2g}", ha="center", va="center", fontsize=6, color="white" if dark else "black")
        axes.set_xticks(range(values.shape[1]), [str(h) for h in grid.columns])
        axes.set_yticks(range(values.shape[0]), [str(layer) for layer in grid.index])
        axes.set_xlabel("head (diffllama: differential head)")
        axes.set_ylabel("layer")
        method = str(scores["method"].iloc[0])
        axes.set_title(title or f"{scores['model'].iloc[0]} · {scores['base'].iloc[0]} · {METHOD_LABELS.get(method, method)}", fontsize=8)
        figure.colorbar(image, ax=axes, fraction=0.05)
        figure.tight_layout()
        with atomic_path(path, suffix=".png") as tmp:
            figure.savefig(tmp, format="png", metadata={"Software": None})

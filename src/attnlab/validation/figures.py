"""Figures of the causal validation: pruning curves and sparse-attention budget curves, one figure per model × base.

Both are two panels — pass@1 (Wilson 95 % interval error bars) and mean answer loss (bootstrap 95 % interval
error bars) — against the pruned fraction / the keep budget. Drawn like :mod:`attnlab.report.figures` (bare Agg
figure, default style, no "Software" PNG tag), so the same table gives the same bytes.
"""

from __future__ import annotations

import os

import matplotlib.style
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from attnlab.report.figures import _save

__all__ = ["plot_pruning", "plot_sparse"]

STRATEGY_STYLE = {
    "most": ("#D55E00", "o", "prune most important"),
    "least": ("#0072B2", "s", "prune least relevant"),
    "random": ("#777777", "^", "prune random"),
}
METHOD_STYLE = {
    "uniform": ("#0072B2", "s", "uniform keep ratio"),
    "adaptive": ("#D55E00", "o", "adaptive (∝ importance)"),
}
#: one colour and marker per adaptive allocation rule
ALLOCATION_STYLE = {
    "linear_signed": ("#D55E00", "o"),
    "magnitude": ("#009E73", "D"),
    "rank": ("#CC79A7", "v"),
    "softmax": ("#E69F00", "P"),
}


def _line(axes: Axes, x: np.ndarray, y: np.ndarray, low: np.ndarray, high: np.ndarray, *, colour: str,
          marker: str, label: str | None, alpha: float = 1.0, offset: float = 0.0) -> None:
    errors = np.clip(np.stack([y - low, high - y]), 0.0, None)  # [2, n]
    axes.errorbar(x + offset, y, yerr=errors, color=colour, marker=marker, markersize=4, linewidth=1.2,
                  capsize=2, label=label, alpha=alpha)


def _two_panels() -> tuple[Figure, list[Axes]]:
    figure = Figure(figsize=(9.0, 4.0), layout="constrained")
    return figure, list(figure.subplots(1, 2, squeeze=True))


def plot_pruning(table: pd.DataFrame, model: str, base: str, out_png: str | os.PathLike[str]) -> None:
    """pass@1 and answer loss vs pruned fraction for ``most``, ``least`` and each ``random`` seed."""
    rows = table[(table["model"] == model) & (table["base"] == base)]
    if rows.empty:
        raise ValueError(f"pruning table has no rows for model={model!r}, base={base!r}")
    with matplotlib.style.context("default"):
        figure, (acc, loss) = _two_panels()
        span = float(rows["fraction"].max() or 1.0)
        for strategy, (colour, marker, label) in STRATEGY_STYLE.items():
            subset = rows[rows["strategy"] == strategy]
            seeds = sorted(subset["seed"].dropna().unique()) or [None]
            for index, seed in enumerate(seeds):
                line = subset if seed is None else subset[subset["seed"] == seed]
                line = line.sort_values("fraction")
                x = line["fraction"].to_numpy(float)
                offset = {"most": -0.008, "least": 0.0, "random": 0.008}[strategy] * span
                name = label if index == 0 else None
                fade = 1.0 if seed is None else 0.6
                _line(acc, x, *(line[c].to_numpy(float) for c in ("pass_at_1", "ci_low", "ci_high")),
                      colour=colour, marker=marker, label=name, alpha=fade, offset=offset)
                _line(loss, x, *(line[c].to_numpy(float) for c in ("loss_mean", "loss_ci_low", "loss_ci_high")),
                      colour=colour, marker=marker, label=name, alpha=fade, offset=offset)
        n_items = int(rows["n_items"].max())
        n_loss = int(rows["n_loss_items"].max())
        acc.set_ylim(-0.02, 1.02)
        acc.set_ylabel("pass@1 (strict)")
        acc.set_title(f"pass@1, n = {n_items} items (Wilson 95 %)")
        loss.set_ylabel("answer-token loss (mean)")
        loss.set_title(f"answer loss, n = {n_loss} items (bootstrap 95 %)")
        scope = ", ".join(sorted(set(rows["scope"])))
        for panel in (acc, loss):
            panel.set_xlabel(f"fraction of heads pruned ({scope})")
            panel.grid(linewidth=0.5, alpha=0.5)
        acc.legend(fontsize=8)
        scores = ", ".join(sorted(set(rows["scores"])))
        figure.suptitle(f"{model} / {base}: pruning heads by {scores} importance")
        _save(figure, out_png)


def plot_sparse(table: pd.DataFrame, model: str, base: str, out_png: str | os.PathLike[str]) -> None:
    """pass@1 and answer loss vs keep budget for uniform and adaptive sparsity, dense as a horizontal band."""
    rows = table[(table["model"] == model) & (table["base"] == base)]
    if rows.empty:
        raise ValueError(f"sparse attention table has no rows for model={model!r}, base={base!r}")
    with matplotlib.style.context("default"):
        figure, (acc, loss) = _two_panels()
        dense = rows[rows["method"] == "dense"]
        for panel, (value, low, high) in (
            (acc, ("pass_at_1", "ci_low", "ci_high")),
            (loss, ("loss_mean", "loss_ci_low", "loss_ci_high")),
        ):
            if len(dense):
                panel.axhline(float(dense[value].iloc[0]), color="black", linewidth=1.0, label="dense")
                panel.axhspan(float(dense[low].iloc[0]), float(dense[high].iloc[0]), color="black", alpha=0.08)
            lines = [("uniform", "", *METHOD_STYLE["uniform"])]
            adaptive = rows[rows["method"] == "adaptive"]
            for index, allocation in enumerate(sorted(set(adaptive.get("allocation", pd.Series(dtype=str))))):
                colour, marker = ALLOCATION_STYLE.get(allocation, METHOD_STYLE["adaptive"][:2])
                lines.append(("adaptive", allocation, colour, marker, f"adaptive ({allocation})"))
            for index, (method, allocation, colour, marker, label) in enumerate(lines):
                line = rows[rows["method"] == method]
                if allocation:
                    line = line[line["allocation"] == allocation]
                line = line.sort_values("budget")
                if line.empty:
                    continue
                offset = 0.004 * (index - (len(lines) - 1) / 2)
                _line(panel, line["budget"].to_numpy(float), *(line[c].to_numpy(float) for c in (value, low, high)),
                      colour=colour, marker=marker, label=label, offset=offset)
            panel.set_xlabel("keep budget (mean fraction of keys kept per query)")
            panel.grid(linewidth=0.5, alpha=0.5)
        acc.set_ylim(-0.02, 1.02)
        acc.set_ylabel("pass@1 (strict)")
        acc.set_title(f"pass@1, n = {int(rows['n_items'].max())} items (Wilson 95 %)")
        loss.set_ylabel("answer-token loss (mean)")
        loss.set_title(f"answer loss, n = {int(rows['n_loss_items'].max())} items (bootstrap 95 %)")
        acc.legend(fontsize=8)
        scores = ", ".join(sorted(set(rows["scores"])))
        figure.suptitle(f"{model} / {base}: top-k sparse attention, keep ratios from {scores} importance")
        _save(figure, out_png)

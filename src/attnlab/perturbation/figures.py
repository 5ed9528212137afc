"""Figures of the perturbation stage (byte-stable PNGs, as in :mod:`attnlab.report.figures`).

* ``relations.png`` — per relation, the percent change (top) and the log-ratio (bottom) of the target
  perplexity for each model × site (first method and mode of the study, mean over layers), with the
  random control's interval as a black bar;
* ``layers.png`` — per layer, the target log-ratio of the selected channels (line) and the random control
  interval (band), one panel per site, a line per model;
* ``jacobian.png`` — per layer: relative sensitivity E‖Jv‖·‖h‖/‖f‖ and absolute E‖Jv‖ (t intervals over texts), spectral norm (mean and max),
  effective rank / hidden size, hidden-state variance, a line per model.
"""

from __future__ import annotations

import os

import matplotlib
import matplotlib.style
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from attnlab.io import atomic_path
from attnlab.report.figures import DPI, MODEL_COLOURS


def _save(figure: Figure, path: str | os.PathLike[str]) -> None:
    FigureCanvasAgg(figure)
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})


def _first(table: pd.DataFrame, column: str) -> str:
    return str(table[column].iloc[0])


def plot_relations(table: pd.DataFrame, out_png: str | os.PathLike[str], footnote: str = "") -> None:
    rows = table[table["layer"] == -1]
    method, mode = _first(rows, "method"), _first(rows, "mode")
    rows = rows[(rows["method"] == method) & (rows["mode"] == mode)]
    series = list(rows.groupby(["model", "site"], sort=False).groups)
    relations = list(dict.fromkeys(rows["relation"]))
    x = np.arange(len(relations))
    width = 0.8 / max(1, len(series))
    with matplotlib.style.context("default"):
        figure = Figure(figsize=(max(7.0, 0.7 * len(relations) + 2), 7.0), layout="constrained")
        axes = figure.subplots(2, 1, sharex=True)
        for i, (model, site) in enumerate(series):
            sub = rows[(rows["model"] == model) & (rows["site"] == site)].set_index("relation").reindex(relations)
            offset = x - 0.4 + width * (i + 0.5)
            colour = MODEL_COLOURS[i % len(MODEL_COLOURS)]
            for ax, metric in zip(axes, ("target_pct_change", "target_log_ratio")):
                ax.bar(offset, sub[metric], width, color=colour, label=f"{model} · {site}")
                low, high = sub[f"random_{metric}_low"], sub[f"random_{metric}_high"]
                ax.errorbar(offset, (low + high) / 2, yerr=(high - low) / 2, fmt="none", ecolor="black", capsize=2, lw=1)
        axes[0].set_ylabel("target perplexity change (%)")
        axes[1].set_ylabel("log-ratio ln(perturbed / baseline)")
        for ax in axes:
            ax.axhline(0, color="grey", lw=0.8)
        axes[1].set_xticks(x, relations, rotation=45, ha="right")
        axes[0].legend(fontsize=7, ncols=2)
        axes[0].set_title(f"selected by {method}, mode {mode}, mean over layers; black: random control interval")
        if footnote:
            figure.text(0.01, 0.0, footnote, fontsize=6, va="bottom", wrap=True)
        _save(figure, out_png)


def plot_layers(table: pd.DataFrame, out_png: str | os.PathLike[str]) -> None:
    rows = table[table["layer"] >= 0]
    method, mode = _first(rows, "method"), _first(rows, "mode")
    rows = rows[(rows["method"] == method) & (rows["mode"] == mode)]
    sites = list(dict.fromkeys(rows["site"]))
    models = list(dict.fromkeys(rows["model"]))
    with matplotlib.style.context("default"):
        figure = Figure(figsize=(4.2 * len(sites), 3.6), layout="constrained")
        axes = np.atleast_1d(figure.subplots(1, len(sites), squeeze=False)[0])
        for ax, site in zip(axes, sites):
            for i, model in enumerate(models):
                sub = rows[(rows["site"] == site) & (rows["model"] == model)]
                if sub.empty:
                    continue
                g = sub.groupby("layer").mean(numeric_only=True)
                colour = MODEL_COLOURS[i % len(MODEL_COLOURS)]
                ax.plot(g.index, g["target_log_ratio"], marker="o", color=colour, label=model)
                ax.fill_between(
                    g.index, g["random_target_log_ratio_low"], g["random_target_log_ratio_high"], color=colour, alpha=0.2
                )
            ax.axhline(0, color="grey", lw=0.8)
            ax.set_title(f"{site} ({method}, {mode})")
            ax.set_xlabel("layer")
            ax.set_ylabel("target log-ratio (mean over relations)")
            ax.legend(fontsize=7)
        _save(figure, out_png)


def plot_jacobian(jacobian: pd.DataFrame, out_png: str | os.PathLike[str]) -> None:
    panels = [
        ("relative_sensitivity_mean", "relative E‖Jv‖·‖h‖/‖f‖ (compares models)",
         ("relative_sensitivity_low", "relative_sensitivity_high")),
        ("sensitivity_mean", "absolute E‖Jv‖ / ‖v‖", ("sensitivity_low", "sensitivity_high")),
        ("spectral_norm_mean", "spectral norm σmax(J) (mean; dashed max)", ("spectral_norm_low", "spectral_norm_high")),
        ("effective_rank_fraction", "effective rank / hidden size", None),
        ("hidden_variance", "last-token hidden variance", None),
    ]
    with matplotlib.style.context("default"):
        figure = Figure(figsize=(20.0, 3.6), layout="constrained")
        axes = figure.subplots(1, len(panels))
        for i, (model, grp) in enumerate(jacobian.groupby("model", sort=False)):
            g = grp.sort_values("layer")
            colour = MODEL_COLOURS[i % len(MODEL_COLOURS)]
            for ax, (column, label, band) in zip(axes, panels):
                ax.plot(g["layer"], g[column], marker="o", color=colour, label=model)
                if band:
                    ax.fill_between(g["layer"], g[band[0]], g[band[1]], color=colour, alpha=0.2)
                if column == "spectral_norm_mean":
                    ax.plot(g["layer"], g["spectral_norm_max"], ls="--", color=colour)
                ax.set_title(label, fontsize=9)
                ax.set_xlabel("layer")
        for ax in axes[:3]:
            ax.set_yscale("log")
        axes[0].legend(fontsize=7)
        _save(figure, out_png)

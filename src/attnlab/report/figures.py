"""Figures from the aggregate tables of :mod:`attnlab.report.tables`.

* :func:`plot_accuracy` -- grouped bars of pass@1 per variant (clean first), one
  bar per model, Wilson interval error bars, one panel per base dataset.
* :func:`plot_robustness` -- grouped bars of the pass@1 drop (noisy - clean) per
  noisy variant and model, Newcombe paired interval error bars, zero line.

Figures are drawn on a bare :class:`matplotlib.figure.Figure` with the Agg
canvas (no pyplot state, no GUI backend) inside matplotlib's default style, so
user rc files do not change them, and saved without the "Software" PNG tag:
the same table gives a byte-identical PNG.
"""

from __future__ import annotations

import os
from typing import Sequence

import matplotlib
import matplotlib.style
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from attnlab.io import atomic_path
from attnlab.report.tables import variant_sort_key

# Okabe & Ito (2008) colour-blind-safe palette, black dropped.
MODEL_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#999999")
PANEL_WIDTH_IN, PANEL_HEIGHT_IN, DPI = 4.2, 3.6, 150
SFT_MARK = "+sft-"  # attnlab.study.models.SFT_SEPARATOR (not imported: keeps this module free of the config code)


def _model_colours(models: Sequence[str]) -> dict[str, str]:
    return {model: MODEL_COLOURS[index % len(MODEL_COLOURS)] for index, model in enumerate(models)}


def _select_metric(table: pd.DataFrame, metric: str, what: str, required: Sequence[str]) -> pd.DataFrame:
    missing = [column for column in ("model", "base", "variant", "metric", *required) if column not in table.columns]
    if missing:
        raise ValueError(f"{what} table is missing column(s) {missing}")
    rows = table[table["metric"] == metric]
    if rows.empty:
        available = sorted(set(table["metric"].astype(str)))
        raise ValueError(f"{what} table has no rows for metric {metric!r} (available: {available})")
    duplicated = rows.duplicated(["model", "base", "variant"])
    if duplicated.any():
        first = rows[duplicated].iloc[0]
        raise ValueError(
            f"{what} table has more than one row for model={first['model']!r}, base={first['base']!r}, "
            f"variant={first['variant']!r}, metric={metric!r}"
        )
    return rows


def _grouped_bars(
    axes: Axes,
    rows: pd.DataFrame,
    value: str,
    low: str,
    high: str,
    models: Sequence[str],
    colours: dict[str, str],
) -> list[str]:
    """Draw bars (x = variant, one bar per model) with asymmetric error bars; return the variant order."""
    variants = sorted(set(rows["variant"]), key=variant_sort_key)
    positions = np.arange(len(variants), dtype=float)  # [n_variants]
    width = 0.8 / max(len(models), 1)
    for index, model in enumerate(models):
        model_rows = rows[rows["model"] == model].set_index("variant")
        present = [variant for variant in variants if variant in model_rows.index]
        if not present:
            continue
        x = positions[[variants.index(v) for v in present]] + (index - (len(models) - 1) / 2.0) * width
        values = model_rows.loc[present, value].to_numpy(dtype=float)  # [n_present]
        errors = np.stack(  # [2, n_present]: distances below and above the value
            [
                values - model_rows.loc[present, low].to_numpy(dtype=float),
                model_rows.loc[present, high].to_numpy(dtype=float) - values,
            ]
        )
        axes.bar(
            x,
            values,
            width=width,
            color=colours[model],
            label=model,
            hatch=_hatch(model),
            yerr=np.clip(errors, 0.0, None),
            capsize=3,
            error_kw={"elinewidth": 1.0, "ecolor": "#333333"},
        )
    axes.set_xticks(positions, variants)
    axes.grid(axis="y", linewidth=0.5, alpha=0.5)
    axes.set_axisbelow(True)
    return variants


def _hatch(model: str) -> str | None:
    """Fine-tuned variants (``model+sft-recipe``) are hatched, so zero-shot and SFT bars read apart."""
    return "//" if SFT_MARK in model else None


def _legend(figure: Figure, models: Sequence[str], colours: dict[str, str]) -> None:
    """One legend for all panels, below them (every model, even if absent from a panel)."""
    handles = [Patch(facecolor=colours[model], label=model, hatch=_hatch(model)) for model in models]
    figure.legend(handles=handles, loc="outside lower center", ncols=min(len(models), 3), title="model")


def _save(figure: Figure, out_png: str | os.PathLike[str]) -> None:
    FigureCanvasAgg(figure)
    with atomic_path(out_png, suffix=".png") as tmp:
        figure.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})


def _placeholder(out_png: str | os.PathLike[str], title: str, message: str) -> None:
    with matplotlib.style.context("default"):
        figure = Figure(figsize=(5.0, 2.0), layout="constrained")
        axes = figure.subplots()
        axes.set_axis_off()
        axes.text(0.5, 0.5, message, ha="center", va="center")
        figure.suptitle(title)
        _save(figure, out_png)


def _panels(n_panels: int) -> tuple[Figure, list[Axes]]:
    figure = Figure(figsize=(max(PANEL_WIDTH_IN * n_panels, 5.0), PANEL_HEIGHT_IN + 1.2), layout="constrained")
    axes = figure.subplots(1, n_panels, sharey=True, squeeze=False)[0]
    return figure, list(axes)


def plot_accuracy(accuracy: pd.DataFrame, out_png: str | os.PathLike[str], metric: str = "strict") -> None:
    """Grouped bar chart of pass@1 with Wilson interval error bars.

    One panel per base dataset; x = variant (clean first, then the noisy
    variants); one bar per model (same colour in every panel); y in [0, 1].

    Args:
        accuracy: the ``accuracy`` table (columns model, base, variant, metric,
            pass_at_1, ci_low, ci_high, n).
        out_png: destination PNG (written atomically).
        metric: which answer-matching metric to plot (``strict`` / ``flexible``).
    """
    rows = _select_metric(accuracy, metric, "accuracy", ("pass_at_1", "ci_low", "ci_high"))
    models = sorted(set(rows["model"]))
    bases = sorted(set(rows["base"]))
    colours = _model_colours(models)
    with matplotlib.style.context("default"):
        figure, axes = _panels(len(bases))
        for panel, base in zip(axes, bases):
            base_rows = rows[rows["base"] == base]
            _grouped_bars(panel, base_rows, "pass_at_1", "ci_low", "ci_high", models, colours)
            n_items = sorted(set(base_rows["n"].astype(int))) if "n" in base_rows else []
            n_label = f" (n = {n_items[0]})" if len(n_items) == 1 else ""
            panel.set_title(f"{base}{n_label}")
            panel.set_xlabel("variant")
            panel.set_ylim(0.0, 1.0)
        axes[0].set_ylabel(f"pass@1 ({metric})")
        figure.suptitle(f"pass@1 by variant ({metric} match)\nerror bars: Wilson score interval")
        _legend(figure, models, colours)
        _save(figure, out_png)


def _plot_paired_differences(
    rows: pd.DataFrame, value: str, out_png: str | os.PathLike[str], *, xlabel: str, ylabel: str, title: str
) -> None:
    """Grouped bars of a paired pass@1 difference ``value`` with its ``{value}_ci_low/high`` interval:
    one panel per base dataset, one bar per model, a line at zero, a shared y range that includes 0."""
    models = sorted(set(rows["model"]))
    bases = sorted(set(rows["base"]))
    colours = _model_colours(models)
    low, high = f"{value}_ci_low", f"{value}_ci_high"
    lowest = float(min(rows[low].min(), 0.0))
    highest = float(max(rows[high].max(), 0.0))
    margin = 0.05 * max(highest - lowest, 0.1)
    with matplotlib.style.context("default"):
        figure, axes = _panels(len(bases))
        for panel, base in zip(axes, bases):
            _grouped_bars(panel, rows[rows["base"] == base], value, low, high, models, colours)
            panel.axhline(0.0, color="black", linewidth=0.8)
            panel.set_title(base)
            panel.set_xlabel(xlabel)
            panel.set_ylim(lowest - margin, highest + margin)
        axes[0].set_ylabel(ylabel)
        figure.suptitle(title)
        _legend(figure, models, colours)
        _save(figure, out_png)


def plot_robustness(robustness: pd.DataFrame, out_png: str | os.PathLike[str], metric: str = "strict") -> None:
    """Grouped bar chart of the pass@1 drop (noisy - clean) with Newcombe paired intervals.

    One panel per base dataset; x = noisy variant; one bar per model; a
    horizontal line at zero (no change).

    Args:
        robustness: the ``robustness`` table (columns model, base, variant,
            metric, drop, drop_ci_low, drop_ci_high).
        out_png: destination PNG (written atomically).
        metric: which answer-matching metric to plot.

    An empty table (no noisy variant in the study) gives a figure that says so.
    """
    if robustness.empty:  # a study with only clean evaluations: say so in the figure
        _placeholder(out_png, "Change of pass@1 under noise", "no noisy variants were evaluated")
        return
    rows = _select_metric(robustness, metric, "robustness", ("drop", "drop_ci_low", "drop_ci_high"))
    _plot_paired_differences(
        rows, "drop", out_png,
        xlabel="noise variant",
        ylabel=f"pass@1 noisy − clean ({metric})",
        title=f"Change of pass@1 under noise ({metric} match)\nerror bars: Newcombe paired interval",
    )


def plot_sft_gain(sft: pd.DataFrame, out_png: str | os.PathLike[str], metric: str = "strict") -> None:
    """Grouped bars of the SFT gain (pass@1 of the fine-tuned model − its zero-shot base) with Newcombe intervals.

    One panel per base dataset; x = variant (clean first); one bar per fine-tuned model; a line at zero.
    An empty table (no SFT model) gives a figure that says so.

    Args:
        sft: the ``sft`` table of :func:`attnlab.report.tables.sft_gain_table`.
        out_png: destination PNG (written atomically).
        metric: which answer-matching metric to plot.
    """
    if sft.empty:
        _placeholder(out_png, "pass@1 gain from fine-tuning", "no fine-tuned models were evaluated")
        return
    rows = _select_metric(sft, metric, "sft", ("gain", "gain_ci_low", "gain_ci_high"))
    _plot_paired_differences(
        rows, "gain", out_png,
        xlabel="variant",
        ylabel=f"pass@1 SFT − zero-shot ({metric})",
        title=f"Gain from supervised fine-tuning ({metric} match)\nerror bars: Newcombe paired interval",
    )

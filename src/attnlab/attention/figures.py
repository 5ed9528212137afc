"""Figures of the attention stage: NI-ratio heatmaps (layer × head) and token-level attention maps.

Drawn on bare :class:`matplotlib.figure.Figure` objects with the Agg canvas inside matplotlib's default style and
saved without the "Software" tag, so the same tables give byte-identical PNGs (as :mod:`attnlab.report.figures`).
For DiffLlama the effective ``differential`` map is shown (its ratios can be negative: diverging colour scale).
"""

from __future__ import annotations

import os
from typing import Sequence

import matplotlib
import matplotlib.style
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from attnlab.attention import MAP_DIFFERENTIAL, MAP_STANDARD, QUERY_SCOPES, TOKEN_CLASSES
from attnlab.io import atomic_path

__all__ = ["plot_ni_heatmap", "plot_token_maps", "primary_map_kind"]

DPI = 150
CLASS_COLOURS = {"kmi": "#009E73", "ni": "#D55E00", "oc": "#555555", "sink": "#0072B2", "gen": "#CC79A7"}


def _variant_key(variant: str) -> tuple[int, str]:
    return (0, "") if variant == "clean" else (1, variant)


def primary_map_kind(kinds: Sequence[str]) -> str:
    """``differential`` when present (DiffLlama), else ``standard``."""
    return MAP_DIFFERENTIAL if MAP_DIFFERENTIAL in set(kinds) else MAP_STANDARD


def _save(figure: Figure, out_png: str | os.PathLike[str]) -> None:
    FigureCanvasAgg(figure)
    with atomic_path(out_png, suffix=".png") as tmp:
        figure.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})


def plot_ni_heatmap(allocation: pd.DataFrame, out_png: str | os.PathLike[str], measure: str = "ni") -> None:
    """One panel per variant: mean over items of the per-head ratio m_ni / Σ m, layer (rows) × head (columns).

    Uses the first query scope present in :data:`attnlab.attention.QUERY_SCOPES` order (``answer_token``, then
    ``last_prompt_token``, then ``generated``) and the primary map kind.
    """
    if allocation.empty:
        raise ValueError("no allocation rows to plot")
    present = set(allocation["query_scope"])
    scope = next(s for s in QUERY_SCOPES if s in present)
    kind = primary_map_kind(allocation["map_kind"].unique())
    rows = allocation[(allocation["query_scope"] == scope) & (allocation["map_kind"] == kind)].copy()
    total = rows[list(TOKEN_CLASSES)].sum(axis=1)
    from attnlab.attention.aggregate import NET_MASS_FLOOR

    rows["ratio"] = rows[measure] / total.where(total.abs() >= NET_MASS_FLOOR)  # unstable rows (λ ≈ 1) left blank
    variants = sorted(rows["variant"].unique(), key=_variant_key)
    n_layers, n_heads = int(rows["layer"].max()) + 1, int(rows["head"].max()) + 1
    grids = {}
    for variant in variants:
        mean = rows[rows["variant"] == variant].groupby(["layer", "head"])["ratio"].mean()
        grid = np.full((n_layers, n_heads), np.nan)  # [layers, heads]
        for (layer, head), value in mean.items():
            grid[int(layer), int(head)] = value
        grids[variant] = grid
    values = np.concatenate([g.ravel() for g in grids.values()])
    finite = values[np.isfinite(values)]
    low = float(finite.min()) if finite.size else 0.0
    high = float(finite.max()) if finite.size else 1.0
    if low < 0:
        bound = max(abs(low), abs(high), 1e-6)
        cmap, vmin, vmax = "RdBu_r", -bound, bound
    else:
        cmap, vmin, vmax = "viridis", 0.0, max(high, 1e-6)
    model = str(rows["model"].iloc[0])
    with matplotlib.style.context("default"):
        figure = Figure(figsize=(2.4 * len(variants) + 1.2, 0.45 * n_layers + 1.6), layout="constrained")
        axes = figure.subplots(1, len(variants), squeeze=False)[0]
        image = None
        for ax, variant in zip(axes, variants):
            image = ax.imshow(grids[variant], cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", origin="lower")
            ax.set_title(variant)
            ax.set_xlabel("head" if kind == MAP_STANDARD else "head pair")
            ax.set_xticks(range(n_heads))
            ax.set_yticks(range(n_layers))
        axes[0].set_ylabel("layer")
        figure.colorbar(image, ax=list(axes), label=f"{measure.upper()} ratio ({kind})")
        figure.suptitle(f"{model}: {measure.upper()} share of attention, query = {scope.replace('_', ' ')}")
        _save(figure, out_png)


def plot_token_maps(tokens: pd.DataFrame, out_png: str | os.PathLike[str], max_tokens: int = 160) -> None:
    """Grid: rows = variants, columns = items; each panel layer × prompt token, mean over heads of the primary map.

    Tick labels are the tokens, coloured by class (KMI green, NI orange-red, OC grey, SINK blue).
    """
    if tokens.empty:
        raise ValueError("no token-level rows to plot")
    kind = primary_map_kind(tokens["map_kind"].unique())
    rows = tokens[tokens["map_kind"] == kind]
    variants = sorted(rows["variant"].unique(), key=_variant_key)
    items = sorted(rows["item"].unique())
    widest = int(rows["position"].max()) + 1
    model = str(rows["model"].iloc[0])
    with matplotlib.style.context("default"):
        figure = Figure(
            figsize=(max(6.0, 0.09 * min(widest, max_tokens) * len(items)), 1.9 * len(variants) + 0.8),
            layout="constrained",
        )
        axes = figure.subplots(len(variants), len(items), squeeze=False)
        for r, variant in enumerate(variants):
            for c, item in enumerate(items):
                ax = axes[r][c]
                part = rows[(rows["variant"] == variant) & (rows["item"] == item)]
                if part.empty:
                    ax.set_axis_off()
                    continue
                grid = part.pivot_table(index="layer", columns="position", values="weight", aggfunc="mean")
                grid = grid.iloc[:, -max_tokens:]  # [layers, tokens]
                labels = part.drop_duplicates("position").set_index("position").loc[grid.columns]
                data = grid.to_numpy()
                bound = float(np.nanmax(np.abs(data))) or 1.0
                cmap, vmin = ("RdBu_r", -bound) if np.nanmin(data) < 0 else ("magma", 0.0)
                ax.imshow(data, cmap=cmap, vmin=vmin, vmax=bound, aspect="auto", origin="lower")
                ax.set_xticks(range(len(grid.columns)))
                ax.set_xticklabels([t.replace("\n", "\\n") for t in labels["token"]], rotation=90, fontsize=4)
                for tick, cls in zip(ax.get_xticklabels(), labels["token_class"]):
                    tick.set_color(CLASS_COLOURS.get(cls, "black"))
                ax.set_yticks(range(grid.shape[0]))
                ax.set_ylabel("layer", fontsize=7)
                ax.set_title(f"{variant} · {item}", fontsize=8)
        figure.suptitle(
            f"{model}: attention of the last prompt token ({kind}, mean over heads); "
            "tokens: KMI green, NI red, OC grey, SINK blue",
            fontsize=9,
        )
        _save(figure, out_png)

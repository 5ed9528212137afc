"""Aggregate the per-item allocation rows into KMI / NI / OC / SINK ratio tables with bootstrap intervals.

Per item and (layer, head) row, the ratio of class c is the class mass over the row's total mass,

    r_c = m_c / Σ_c' m_c'            (= m_c for softmax maps; m_c / (1 - λ_full) for DiffLlama's differential map)

i.e. the fraction of the query's (net) attention mass. For the differential map Σ_c m_c = 1 − λ_full, so the
ratio divides by 1 − λ_full and amplifies every error by 1/|1 − λ_full|: a (layer, head) row with net mass
|Σ m| < NET_MASS_FLOOR (0.05, i.e. λ_full within 0.05 of 1, amplification > 20) is *unstable*: its ratios are left
out (NaN) rather than printed, and ``unstable_rows`` counts the rows left out of each table row (softmax rows sum
to 1 and are never unstable; the unnormalised ``total_mass`` and ``negative_mass`` keep them). An item's value is the
mean of r_c over heads (``layer`` rows) or over layers and heads (``layer = -1`` rows). The table reports the mean
over items with a 95 % percentile bootstrap interval over items (:func:`attnlab.stats.bootstrap_ci`, Efron &
Tibshirani 1993), per model × base × variant × map kind × query scope. ``negative_mass`` (Σ_j min(a_j, 0), the
differential map's negative part) and ``total_mass`` are averaged the same way, unnormalised.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from attnlab.attention import MAP_KINDS, QUERY_SCOPES, TOKEN_CLASSES
from attnlab.io import read_parquet, write_parquet, write_text
from attnlab.stats import bootstrap_ci

__all__ = ["ALL_LAYERS", "bootstrap_mean_ci", "MEASURES", "RATIO_SCHEMA", "attention_ratios", "ratios_markdown", "write_ratio_tables"]

ALL_LAYERS = -1
#: |net mass| below which a differential row's ratios are unstable and left out (see the module docstring)
NET_MASS_FLOOR = 0.05
MEASURES: tuple[str, ...] = (*TOKEN_CLASSES, "negative_mass", "total_mass")
_KEYS = ["model", "base", "variant", "map_kind", "query_scope"]

RATIO_SCHEMA = pa.schema(
    [
        pa.field("model", pa.string(), nullable=False),
        pa.field("base", pa.string(), nullable=False),
        pa.field("variant", pa.string(), nullable=False),
        pa.field("map_kind", pa.string(), nullable=False),
        pa.field("query_scope", pa.string(), nullable=False),
        pa.field("layer", pa.int64(), nullable=False),
        pa.field("measure", pa.string(), nullable=False),
        pa.field("n_items", pa.int64(), nullable=False),
        pa.field("mean", pa.float64(), nullable=True),
        pa.field("ci_low", pa.float64(), nullable=True),
        pa.field("ci_high", pa.float64(), nullable=True),
        pa.field("unstable_rows", pa.int64(), nullable=False),  # (item, layer, head) rows with |net mass| < floor
    ]
)


def _variant_key(variant: str) -> tuple[int, str]:
    return (0, "") if variant == "clean" else (1, variant)


def _with_ratios(rows: pd.DataFrame) -> pd.DataFrame:
    total = rows[list(TOKEN_CLASSES)].sum(axis=1).to_numpy()
    unstable = np.abs(total) < NET_MASS_FLOOR
    safe = np.where(unstable, np.nan, total)
    out = rows[[*_KEYS, "item", "layer", "head"]].copy()
    out["unstable"] = unstable.astype(np.int64)
    for c in TOKEN_CLASSES:
        out[c] = rows[c].to_numpy() / safe
    out["negative_mass"] = rows["negative_mass"].to_numpy()
    out["total_mass"] = total
    return out


def bootstrap_mean_ci(values: np.ndarray, n_resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """:func:`attnlab.stats.bootstrap_ci` of the mean, vectorised: the same resample indices, the same interval.

    ``bootstrap_ci`` evaluates a Python statistic once per resample; for the mean the resamples can be averaged in
    one array operation (hundreds of groups per table). Tested equal to ``bootstrap_ci(values, np.mean, ...)``.
    """
    data = np.asarray(values, dtype=float)
    if data.ndim != 1 or data.size == 0:
        return bootstrap_ci(data, np.mean, n_resamples=n_resamples, seed=seed)  # raises the same errors
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, data.size, size=(n_resamples, data.size))  # [n_resamples, n]
    replicates = data[indices].mean(axis=1)  # [n_resamples]
    low, high = np.quantile(replicates, [0.025, 0.975])
    return float(low), float(high)


def _interval(values: np.ndarray, n_resamples: int, seed: int) -> tuple[float, float, float]:
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")
    low, high = bootstrap_mean_ci(values, n_resamples=n_resamples, seed=seed)
    return float(values.mean()), low, high


def attention_ratios(allocation: pd.DataFrame, *, n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """The ratio table (:data:`RATIO_SCHEMA`): per group, ``layer = -1`` (all layers) and each layer.

    Args:
        allocation: rows of one or more allocation tables (:data:`attnlab.attention.allocation.ALLOCATION_SCHEMA`).
        n_resamples, seed: bootstrap settings (same inputs and seed => same table).
    """
    ratios = _with_ratios(allocation)
    out: list[dict[str, Any]] = []
    for key, group in ratios.groupby(_KEYS, sort=False):
        labels = dict(zip(_KEYS, key))
        levels = [(ALL_LAYERS, group)] + [(int(layer), g) for layer, g in group.groupby("layer", sort=True)]
        for layer, part in levels:
            per_item = part.groupby("item", sort=True)[list(MEASURES)].mean()  # [items, measures] (NaN-skipping)
            n_unstable = int(part["unstable"].sum())
            for measure in MEASURES:
                values = per_item[measure].to_numpy(dtype=float)
                mean, low, high = _interval(values, n_resamples, seed)
                out.append(
                    {**labels, "layer": layer, "measure": measure, "n_items": int(np.sum(~np.isnan(values))),
                     "mean": mean, "ci_low": low, "ci_high": high,
                     "unstable_rows": n_unstable if measure in TOKEN_CLASSES else 0}
                )
    table = pd.DataFrame(out, columns=RATIO_SCHEMA.names)
    if table.empty:
        return table
    order = {
        "variant": lambda s: s.map(lambda v: "%d%s" % _variant_key(v)),
        "map_kind": lambda s: s.map({k: i for i, k in enumerate(MAP_KINDS)}),
        "query_scope": lambda s: s.map({k: i for i, k in enumerate(QUERY_SCOPES)}),
        "measure": lambda s: s.map({k: i for i, k in enumerate(MEASURES)}),
    }
    table = table.sort_values(
        ["model", "base", "variant", "map_kind", "query_scope", "layer", "measure"],
        key=lambda column: order[column.name](column) if column.name in order else column,
        kind="stable",
    )
    return table.reset_index(drop=True)


def ratios_markdown(table: pd.DataFrame) -> str:
    """All-layer rows as a Markdown table: one line per model × base × variant × map kind × scope, cells ``mean [lo, hi]``."""
    shown = [m for m in ("kmi", "ni", "oc", "sink", "gen", "negative_mass") if m in set(table["measure"])]
    overall = table[table["layer"] == ALL_LAYERS]
    header = ["model", "base", "variant", "map_kind", "query_scope", "n_items", *shown]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join([":---"] * 5 + ["---:"] * (len(shown) + 1)) + " |"]
    for key, group in overall.groupby(_KEYS, sort=False):
        by_measure = group.set_index("measure")
        cells = []
        for m in shown:
            r = by_measure.loc[m]
            cells.append("" if pd.isna(r["mean"]) else f"{r['mean']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]")
        lines.append("| " + " | ".join([*map(str, key), str(int(by_measure["n_items"].max())), *cells]) + " |")
    return "\n".join(lines) + "\n"


def write_ratio_tables(
    inputs: Sequence[str | os.PathLike[str]],
    out_parquet: str | os.PathLike[str],
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    metadata: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Read allocation tables, write the ratio table as Parquet plus ``.csv`` and ``.md`` copies beside it."""
    frames = [read_parquet(path) for path in inputs]
    if not frames:
        raise ValueError("attention ratios need at least one allocation table")
    table = attention_ratios(pd.concat(frames, ignore_index=True), n_resamples=n_resamples, seed=seed)
    base = os.fspath(out_parquet)
    stem = base[: -len(".parquet")] if base.endswith(".parquet") else base
    write_parquet(table, out_parquet, metadata={"stage": "attention", "n_resamples": n_resamples, "seed": seed,
                                                "inputs": [str(p) for p in inputs], **(metadata or {})},
                  schema=RATIO_SCHEMA)
    write_text(stem + ".csv", table.to_csv(index=False, lineterminator="\n"))
    caption = (
        "Fraction of the answer-producing query's attention mass on key math information (kmi), inserted noise "
        "(ni), other prompt content (oc), the first token (sink) and generated tokens (gen): mean over items of "
        "the per-head ratio m_c / sum(m), averaged over all layers and heads, with 95 % bootstrap intervals. "
        "negative_mass: mean sum of the negative entries (differential maps only). Differential rows whose net "
        f"mass 1 − λ_full is below {NET_MASS_FLOOR} in absolute value are left out of the ratios (the division "
        "would amplify errors more than 20-fold); `unstable_rows` in the Parquet/CSV counts them."
    )
    write_text(stem + ".md", f"# attention_ratios\n\n{caption}\n\n" + ratios_markdown(table))
    return table

"""pass@1 and the robustness drop pooled over training seeds, and architecture comparisons on the pooled results.

Input: the per-sample evaluation frames of every member of each *seed group* (a model and its training-seed
replicates, e.g. ``llama`` = llama, llama-seed1, llama-seed2; an SFT variant's group holds the SFT variant of each
seed), :func:`attnlab.study.selections.seed_groups`. Every member is scored on the same test items.

Tables (one row per group or group pair x dataset x variant x metric):

``seeds_accuracy``
    each seed's pass@1 (``per_seed``, in seed order; ``seed_min``/``seed_max``/``seed_sd`` the spread) and the
    pooled pass@1 = mean over seeds of each seed's pass@1 on the items, with a **two-level bootstrap** interval:
    resample the seeds with replacement, then the items within each drawn seed
    (:func:`attnlab.bootstrap.hierarchical_bootstrap`; Davison & Hinkley 1997, Sec. 3.8). The interval carries the
    between-seed and the between-item variance.
``seeds_robustness``
    per noisy variant the per-item drop ``d = correct(noisy) - correct(clean)`` of every seed on the items scored
    in both, pooled the same way (mean over seeds of the mean drop; two-level bootstrap of d).
``seeds_comparison``
    for every pair of groups (a, b) on the same dataset and variant: ``diff = pooled(b) - pooled(a)`` of pass@1 and
    of the drop, **paired on the items** (:func:`attnlab.bootstrap.paired_seed_item_bootstrap`: one item resample
    shared by both groups and all their seeds, each group's seeds resampled independently).

Intervals are percentile intervals of ``n_resamples`` replicates at level ``confidence``; same inputs and seed
give the same tables.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from attnlab import bootstrap
from attnlab.io import write_parquet, write_text
from attnlab.report.tables import CLEAN_VARIANT, METRIC_COLUMNS, _index_frames, markdown_table, variant_sort_key

__all__ = ["SEED_TABLE_SCHEMAS", "pooled_accuracy_lines", "seed_markdown", "seed_tables", "write_seed_tables"]

_S, _I, _F = pa.string(), pa.int64(), pa.float64()
_SPREAD = [("n_seeds", _I), ("seeds", _S), ("per_seed", _S), ("seed_min", _F), ("seed_max", _F), ("seed_sd", _F)]

SEED_TABLE_SCHEMAS: dict[str, pa.Schema] = {
    "seeds_accuracy": pa.schema(
        [("model", _S), ("base", _S), ("variant", _S), ("metric", _S), *_SPREAD, ("n_items", _I),
         ("pass_at_1", _F), ("ci_low", _F), ("ci_high", _F)]
    ),
    "seeds_robustness": pa.schema(
        [("model", _S), ("base", _S), ("variant", _S), ("metric", _S), *_SPREAD, ("n_items", _I),
         ("pass_at_1_clean", _F), ("pass_at_1_noisy", _F), ("drop", _F), ("drop_ci_low", _F), ("drop_ci_high", _F)]
    ),
    "seeds_comparison": pa.schema(
        [("base", _S), ("variant", _S), ("metric", _S), ("model_a", _S), ("model_b", _S), ("n_seeds_a", _I),
         ("n_seeds_b", _I), ("n_items", _I), ("measure", _S), ("value_a", _F), ("value_b", _F), ("diff", _F),
         ("diff_ci_low", _F), ("diff_ci_high", _F)]
    ),
}

SEED_TABLE_CAPTIONS: dict[str, str] = {
    "seeds_accuracy": (
        "pass@1 pooled over training seeds: per_seed = each seed's pass@1 (seed order as in `seeds`); pass_at_1 = "
        "mean over seeds; interval = two-level percentile bootstrap (seeds, then items within seed)."
    ),
    "seeds_robustness": (
        "Robustness drop (noisy - clean, per item) pooled over training seeds; two-level percentile bootstrap "
        "(seeds, then items within seed)."
    ),
    "seeds_comparison": (
        "Pooled model b - pooled model a (pass@1, or the drop for noisy variants), paired on the items: one item "
        "resample shared by both models, each model's seeds resampled independently."
    ),
}


def _spread(values: Sequence[float], seeds: Sequence[int]) -> dict[str, Any]:
    array = np.asarray(values, dtype=float)
    return {
        "n_seeds": len(array),
        "seeds": ", ".join(str(s) for s in seeds),
        "per_seed": ", ".join(f"{v:.3f}" for v in array),
        "seed_min": float(array.min()),
        "seed_max": float(array.max()),
        "seed_sd": float(array.std(ddof=1)) if len(array) > 1 else 0.0,
    }


def _matrix(scores: Mapping[tuple[str, str, str], pd.DataFrame], members: Sequence[str], base: str, variant: str,
            metric: str, ids: Sequence[str]) -> np.ndarray:
    """``[seeds, items]`` correctness (0/1) of the members on ``ids``."""
    return np.stack([scores[(m, base, variant)][metric].reindex(ids).to_numpy(dtype=float) for m in members])


def seed_tables(
    eval_frames: Sequence[pd.DataFrame],
    groups: Mapping[str, Sequence[tuple[str, int]]],
    *,
    sources: Sequence[str] | None = None,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, pd.DataFrame]:
    """The three pooled tables (module docstring) for ``groups`` = ``{group: [(member model, training seed), ...]}``.

    Raises:
        ValueError: if a group has fewer than two members, a member has no evaluation for a (dataset, variant)
            another member has, or the members of a group share no item.
    """
    scores = _index_frames(eval_frames, sources)
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in SEED_TABLE_SCHEMAS}
    cells = sorted({(b, v) for (_, b, v) in scores}, key=lambda bv: (bv[0], variant_sort_key(bv[1])))
    # per group and cell: (members, common item ids)
    members_of: dict[str, list[str]] = {}
    for group, members in groups.items():
        if len(members) < 2:
            raise ValueError(f"seed group {group!r} has {len(members)} member(s); pooling needs at least two seeds")
        members_of[group] = [m for m, _ in members]
    seeds_of = {group: [s for _, s in members] for group, members in groups.items()}
    common: dict[tuple[str, str, str], list[str]] = {}
    for group, members in members_of.items():
        for base, variant in cells:
            present = [(m, base, variant) in scores for m in members]
            if not any(present):
                continue
            if not all(present):
                missing = [m for m, p in zip(members, present) if not p]
                raise ValueError(f"seed group {group!r}: no evaluation of {missing} on {base}/{variant}")
            ids = sorted(set.intersection(*(set(scores[(m, base, variant)].index) for m in members)))
            if not ids:
                raise ValueError(f"seed group {group!r}: its seeds share no item on {base}/{variant}")
            common[(group, base, variant)] = ids
    for (group, base, variant), ids in common.items():
        members = members_of[group]
        for offset, metric in enumerate(METRIC_COLUMNS):
            matrix = _matrix(scores, members, base, variant, metric, ids)
            estimate, reps = bootstrap.hierarchical_bootstrap(list(matrix), n_resamples, seed + offset)
            low, high = bootstrap.percentile_interval(reps, confidence)
            rows["seeds_accuracy"].append(
                {"model": group, "base": base, "variant": variant, "metric": metric,
                 **_spread(matrix.mean(axis=1), seeds_of[group]), "n_items": len(ids),
                 "pass_at_1": estimate, "ci_low": low, "ci_high": high}
            )
            if variant == CLEAN_VARIANT or (group, base, CLEAN_VARIANT) not in common:
                continue
            paired = sorted(set(ids) & set(common[(group, base, CLEAN_VARIANT)]))
            clean = _matrix(scores, members, base, CLEAN_VARIANT, metric, paired)
            noisy = _matrix(scores, members, base, variant, metric, paired)
            estimate, reps = bootstrap.hierarchical_bootstrap(list(noisy - clean), n_resamples, seed + offset)
            low, high = bootstrap.percentile_interval(reps, confidence)
            rows["seeds_robustness"].append(
                {"model": group, "base": base, "variant": variant, "metric": metric,
                 **_spread((noisy - clean).mean(axis=1), seeds_of[group]), "n_items": len(paired),
                 "pass_at_1_clean": float(clean.mean()), "pass_at_1_noisy": float(noisy.mean()),
                 "drop": estimate, "drop_ci_low": low, "drop_ci_high": high}
            )
    for a, b in itertools.combinations(list(groups), 2):
        for base, variant in cells:
            if (a, base, variant) not in common or (b, base, variant) not in common:
                continue
            ids = sorted(set(common[(a, base, variant)]) & set(common[(b, base, variant)]))
            with_clean = variant != CLEAN_VARIANT and (a, base, CLEAN_VARIANT) in common and (b, base, CLEAN_VARIANT) in common
            if with_clean:
                ids = sorted(set(ids) & set(common[(a, base, CLEAN_VARIANT)]) & set(common[(b, base, CLEAN_VARIANT)]))
            if not ids:
                continue
            for offset, metric in enumerate(METRIC_COLUMNS):
                values = {g: _matrix(scores, members_of[g], base, variant, metric, ids) for g in (a, b)}
                measures = [("pass_at_1", values[a], values[b])]
                if with_clean:
                    clean = {g: _matrix(scores, members_of[g], base, CLEAN_VARIANT, metric, ids) for g in (a, b)}
                    measures.append(("drop", values[a] - clean[a], values[b] - clean[b]))
                for measure, matrix_a, matrix_b in measures:
                    diff, reps = bootstrap.paired_seed_item_bootstrap(matrix_b, matrix_a, n_resamples, seed + offset)
                    low, high = bootstrap.percentile_interval(reps, confidence)
                    rows["seeds_comparison"].append(
                        {"base": base, "variant": variant, "metric": metric, "model_a": a, "model_b": b,
                         "n_seeds_a": matrix_a.shape[0], "n_seeds_b": matrix_b.shape[0], "n_items": len(ids),
                         "measure": measure, "value_a": float(matrix_a.mean()), "value_b": float(matrix_b.mean()),
                         "diff": diff, "diff_ci_low": low, "diff_ci_high": high}
                    )
    return {
        name: pd.DataFrame(rows[name], columns=schema.names).astype({f.name: "float64" for f in schema if f.type == _F})
        for name, schema in SEED_TABLE_SCHEMAS.items()
    }


def pooled_accuracy_lines(accuracy: pd.DataFrame, metric: str = "strict") -> list[str]:
    """The headline block of a ``seeds_accuracy`` table, one Markdown table per dataset: rows = pooled models,
    columns = variants, cells ``pooled [CI] (seeds min–max)``."""
    accuracy = accuracy[accuracy["metric"] == metric]
    lines: list[str] = []
    for base, rows in accuracy.groupby("base", sort=True):
        variants = sorted(set(rows["variant"]), key=variant_sort_key)
        lines += [f"**{base}**", "", "| model | seeds | " + " | ".join(variants) + " |",
                  "|---|---|" + "---|" * len(variants)]
        for model, group in rows.groupby("model", sort=False):
            by_variant = group.set_index("variant")
            cells = [
                f"{r.pass_at_1:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}] (seeds {r.seed_min:.3f}–{r.seed_max:.3f})"
                for r in (by_variant.loc[v] for v in variants)
            ]
            lines.append(f"| {model} | {int(group['n_seeds'].iloc[0])} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def seed_markdown(tables: Mapping[str, pd.DataFrame], metric: str = "strict", confidence: float = 0.95) -> str:
    """The headline table: rows = pooled models, columns = variants, cells ``pooled [CI] (seeds min–max)``; then
    the pooled drops and the paired comparisons."""
    lines = [
        f"# pass@1 pooled over training seeds ({metric} match)",
        "",
        f"Mean over seeds of each seed's pass@1, {confidence:.0%} two-level bootstrap interval (resample seeds, then "
        "items within each seed); in brackets after it the range of the per-seed pass@1.",
        "",
        *pooled_accuracy_lines(tables["seeds_accuracy"], metric),
    ]
    for name in ("seeds_robustness", "seeds_comparison"):
        frame = tables[name]
        frame = frame[frame["metric"] == metric]
        lines += [f"## {name}", "", SEED_TABLE_CAPTIONS[name], "", markdown_table(frame), ""]
    return "\n".join(lines)


def write_seed_tables(
    tables: Mapping[str, pd.DataFrame], out_dir: str | os.PathLike[str], metadata: Mapping[str, Any] | None = None
) -> list[Path]:
    """Each table as ``{name}.parquet`` (fixed schema, ``metadata``) and ``.csv``; the headline ``seeds.md``."""
    out = Path(out_dir)
    written = []
    for name, frame in tables.items():
        write_parquet(frame, out / f"{name}.parquet", metadata=dict(metadata or {}), schema=SEED_TABLE_SCHEMAS[name])
        write_text(out / f"{name}.csv", frame.to_csv(index=False, lineterminator="\n"))
        written += [out / f"{name}.parquet", out / f"{name}.csv"]
    write_text(out / "seeds.md", seed_markdown(tables, confidence=float((metadata or {}).get("confidence", 0.95))))
    return written + [out / "seeds.md"]

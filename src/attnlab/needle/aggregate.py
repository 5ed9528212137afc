"""The depth table (the Differential Transformer paper's Table 3 layout), the figure and the verdict.

Per item score. For the configured query scope (default ``answer``: the position that predicts the answer's
first digit) and the *effective* map of every head (``standard``; DiffLlama: ``differential`` = A_i - λ·A_{i+H/2}),
the fraction of the query's attention mass on class c is ``f_c = m_c / Σ_c' m_c'`` (softmax rows: Σ = 1;
differential rows: Σ = 1 - λ_full, the net mass, as in the attention stage). Then, per item,

    answer          = mean over layers l and heads h of f_answer_value(l, h)
    answer_sentence = mean over layers l and heads h of (f_answer_value + f_answer_text)(l, h)
    noise           = mean over layers l and heads h of Σ_{c in noise classes} f_c(l, h)

``answer`` is the attention on the answer number's own tokens (what the model must copy); ``answer_sentence``
counts the whole target needle sentence (the paper's "answer span" read broadly), reported as a second metric.

The paper does not say how it pools heads and layers; we take the plain mean over all layers and heads (every head
counts once), which is what a per-head average of its reported scores implies. ``noise`` classes default to
``haystack`` + ``distractors`` (the paper's "noise context": every context token that is not the answer);
``haystack`` alone is reported too.

Intervals. A base model (e.g. ``llama``) has ``S >= 1`` training seeds (the model and its replicates). The cell
estimate is the mean over seeds of the mean over items; its interval is a two-level percentile bootstrap
(resample seeds with replacement, then items within each drawn seed; Davison & Hinkley 1997, Sec. 3.8). With one seed
it is the ordinary item bootstrap. Differences between two base models are paired on the identical probe items
(same item ids; the items are identical for models sharing a tokenizer):
:func:`attnlab.bootstrap.paired_seed_item_bootstrap` resamples the items once for both models and each model's
seeds independently.

Realised depth. Every item records ``depth_actual`` (the target's start over the positions it could start at,
:func:`attnlab.needle.items.realize`); the Markdown reports its mean and range per depth x N next to the nominal
depth (:func:`realised_depth_table`).

Verdict. The paper's claim is two directions pooled over depths: DIFF puts *more* attention on the answer span and
*less* on the noise context. Each is one pre-declared test — the pooled (``depth = all``) difference with its
bootstrap interval excluding 0 in the claimed direction (equivalently its bootstrap p, the interval's dual,
below 1 − confidence) — and "the published direction reproduces" requires both (an intersection-union test, so
no correction is needed for the conjunction). The per-depth cells are shown with Holm-adjusted bootstrap p-values
over the depth × metric cells of a pair (``p_holm``), and only those count as resolved per-depth cells.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from attnlab import bootstrap
from attnlab.io import atomic_path, write_parquet, write_text
from attnlab.stats import bootstrap_p_value, holm_adjust

__all__ = [
    "PAPER",
    "comparison_table",
    "depth_markdown",
    "depth_table",
    "hierarchical_bootstrap",
    "item_scores",
    "plot_depth",
    "realised_depth_table",
    "verdict_lines",
]

#: the paper's Table 3 ranges over depths (3B models, 4K context): attention to the answer span and to noise context
PAPER = {
    "answer": {"diff": (0.27, 0.40), "transformer": (0.03, 0.09)},
    "noise": {"diff": (0.01, 0.02), "transformer": (0.49, 0.54)},
}
METRICS = ("answer", "answer_sentence", "noise", "haystack", "accuracy")
#: metrics the model comparison reports
COMPARED = ("answer", "answer_sentence", "noise", "accuracy")
EFFECTIVE_MAPS = ("standard", "differential")
ALL = "all"


def item_scores(probe: pd.DataFrame, query_scope: str, noise_classes: Sequence[str]) -> pd.DataFrame:
    """One row per item: ``answer``, ``answer_sentence``, ``noise``, ``haystack`` (mean fractions over layers x
    heads), ``accuracy`` and the realised ``depth_actual``.

    Rows of ``probe`` (:data:`attnlab.needle.probe.PROBE_SCHEMA`) of the effective map kind and the query scope
    are used; a head whose net mass ``total`` is 0 would make fractions undefined and raises.
    """
    rows = probe[(probe["query_scope"] == query_scope) & probe["map_kind"].isin(EFFECTIVE_MAPS)]
    if rows.empty:
        raise ValueError(f"no probe rows with query_scope={query_scope!r} and an effective map kind {EFFECTIVE_MAPS}")
    total = rows["total"].to_numpy()
    if np.any(np.abs(total) < 1e-12):
        raise ValueError("a head's net attention mass is 0; fractions are undefined")
    fractions = pd.DataFrame(
        {
            "answer": rows["answer_value"] / total,
            "answer_sentence": (rows["answer_value"] + rows["answer_text"]) / total,
            "noise": rows[list(noise_classes)].sum(axis=1) / total,
            "haystack": rows["haystack"] / total,
        }
    )
    keys = ["model", "id", "context_length", "depth", "n_needles"]
    fractions[keys] = rows[keys].to_numpy()
    scores = fractions.groupby(keys, sort=True)[["answer", "answer_sentence", "noise", "haystack"]].mean().reset_index()
    per_item = rows.drop_duplicates("id").set_index("id")
    scores["accuracy"] = scores["id"].map(per_item["correct"].astype(float)).to_numpy()
    scores["depth_actual"] = scores["id"].map(per_item["depth_actual"].astype(float)).to_numpy()
    return scores


def hierarchical_bootstrap(
    groups: Sequence[np.ndarray], n_resamples: int, confidence: float, seed: int
) -> tuple[float, np.ndarray]:
    """(mean of group means, replicates): :func:`attnlab.bootstrap.hierarchical_bootstrap` (seeds, then items)."""
    del confidence  # the interval is taken from the replicates by the caller
    return bootstrap.hierarchical_bootstrap(groups, n_resamples, seed)


def _interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    return bootstrap.percentile_interval(replicates, confidence)


def _cells(scores: pd.DataFrame) -> list[tuple[Any, Any, pd.DataFrame]]:
    """(depth, n_needles, rows) for every depth x N, each depth pooled over N, and everything pooled ("all")."""
    cells = []
    for (depth, n), rows in scores.groupby(["depth", "n_needles"], sort=True):
        cells.append((float(depth), str(int(n)), rows))
    for depth, rows in scores.groupby("depth", sort=True):
        cells.append((float(depth), ALL, rows))
    cells.append((ALL, ALL, scores))
    return cells


def _seed_groups(rows: pd.DataFrame, metric: str) -> list[np.ndarray]:
    return [g[metric].to_numpy(dtype=float) for _, g in rows.groupby("model", sort=True)]


def depth_table(
    scores: pd.DataFrame, bases: Mapping[str, str], *, n_resamples: int, confidence: float, seed: int
) -> pd.DataFrame:
    """Long table: base model x depth x n_needles x metric -> mean, ci_low, ci_high, n_items, n_seeds.

    ``bases`` maps each probed model name to its base model (a replicate ``llama-seed2`` -> ``llama``); depth and
    n_needles are strings so that ``"all"`` (pooled) rows fit the same columns.
    """
    scores = scores.assign(base=scores["model"].map(dict(bases)))
    rows = []
    for base in dict.fromkeys(bases.values()):
        for depth, n, cell in _cells(scores[scores["base"] == base]):
            for metric in METRICS:
                groups = _seed_groups(cell, metric)
                estimate, reps = hierarchical_bootstrap(groups, n_resamples, confidence, seed)
                low, high = _interval(reps, confidence)
                rows.append(
                    {
                        "model": base,
                        "depth": depth if depth == ALL else f"{depth:g}",
                        "n_needles": n,
                        "metric": metric,
                        "mean": estimate,
                        "ci_low": low,
                        "ci_high": high,
                        "n_items": int(len(cell) // max(1, len(groups))),
                        "n_seeds": len(groups),
                    }
                )
    return pd.DataFrame(rows)


def _seed_item_matrix(rows: pd.DataFrame, metric: str, items: Sequence[str]) -> np.ndarray:
    """``[seeds, items]`` values of one base model, columns in the order of ``items``."""
    wide = rows.pivot(index="model", columns="id", values=metric)
    return wide.reindex(columns=list(items)).to_numpy(dtype=float)


def comparison_table(
    scores: pd.DataFrame,
    bases: Mapping[str, str],
    differential: set[str] | frozenset[str],
    *,
    n_resamples: int,
    confidence: float,
    seed: int,
) -> pd.DataFrame:
    """Differential vs standard attention, paired on the identical probe items.

    For every (differential base, standard base) pair (``differential``: the base models with differential
    attention), per depth (pooled over N) and overall, ``diff = mean(diff model) - mean(other)`` for
    :data:`COMPARED` with a :func:`attnlab.bootstrap.paired_seed_item_bootstrap` interval (items resampled once
    for both models, each model's seeds independently).

    Raises:
        ValueError: if the two models were not probed on the same item ids (a paired comparison needs them).
    """
    scores = scores.assign(base=scores["model"].map(dict(bases)))
    diff_bases = [b for b in dict.fromkeys(bases.values()) if b in differential]
    other_bases = [b for b in dict.fromkeys(bases.values()) if b not in differential]
    rows = []
    for a in diff_bases:
        for b in other_bases:
            cells_a = {(d, n): c for d, n, c in _cells(scores[scores["base"] == a]) if n == ALL}
            cells_b = {(d, n): c for d, n, c in _cells(scores[scores["base"] == b]) if n == ALL}
            for key in cells_a:
                if key not in cells_b:
                    continue
                ids_a = {m: set(g["id"]) for m, g in cells_a[key].groupby("model")}
                ids_b = {m: set(g["id"]) for m, g in cells_b[key].groupby("model")}
                items = sorted(set.union(*ids_a.values()))
                if any(ids != set(items) for ids in [*ids_a.values(), *ids_b.values()]):
                    raise ValueError(
                        f"needle comparison {a} vs {b}: the seeds were not probed on the same items "
                        "(a paired comparison needs identical item ids; rerun the probes with one needle config)"
                    )
                for metric in COMPARED:
                    matrix_a = _seed_item_matrix(cells_a[key], metric, items)
                    matrix_b = _seed_item_matrix(cells_b[key], metric, items)
                    diff, reps = bootstrap.paired_seed_item_bootstrap(matrix_a, matrix_b, n_resamples, seed)
                    low, high = _interval(reps, confidence)
                    p_value = bootstrap_p_value(reps)
                    depth = key[0]
                    rows.append(
                        {
                            "model_a": a,
                            "model_b": b,
                            "depth": depth if depth == ALL else f"{depth:g}",
                            "metric": metric,
                            "mean_a": float(matrix_a.mean()),
                            "mean_b": float(matrix_b.mean()),
                            "diff": diff,
                            "ci_low": low,
                            "ci_high": high,
                            "p_value": p_value,
                            "n_items": len(items),
                            "n_seeds_a": int(matrix_a.shape[0]),
                            "n_seeds_b": int(matrix_b.shape[0]),
                        }
                    )
    columns = ["model_a", "model_b", "depth", "metric", "mean_a", "mean_b", "diff", "ci_low", "ci_high", "p_value",
               "n_items", "n_seeds_a", "n_seeds_b"]
    table = pd.DataFrame(rows, columns=columns)
    table["p_holm"] = np.nan
    per_depth = (table["depth"] != ALL) & table["metric"].isin(["answer", "noise"])
    for _, index in table[per_depth].groupby(["model_a", "model_b"], sort=False).groups.items():
        table.loc[index, "p_holm"] = holm_adjust(table.loc[index, "p_value"].to_numpy(dtype=float))
    return table


def realised_depth_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Per nominal depth x N: the realised depth's mean, min, max and the largest |realised - nominal| over items.

    Items are the same for every model sharing a tokenizer; each (item id, realised depth) counts once.
    """
    unique = scores.drop_duplicates(["id", "depth_actual"])
    table = (
        unique.assign(error=(unique["depth_actual"] - unique["depth"].astype(float) / 100.0).abs())
        .groupby(["depth", "n_needles"], sort=True)
        .agg(realised_mean=("depth_actual", "mean"), realised_min=("depth_actual", "min"),
             realised_max=("depth_actual", "max"), max_abs_error=("error", "max"), n_items=("id", "nunique"))
        .reset_index()
    )
    return table


def realised_depth_markdown(table: pd.DataFrame) -> str:
    """Rows = nominal depth, columns = N: realised mean [min, max] of the target's depth."""
    ns = sorted(set(table["n_needles"]))
    lines = [
        "**Realised depth of the target needle** (mean [min, max] over items; nominal depth as a fraction)",
        "",
        "| nominal | " + " | ".join(f"N = {int(n)}" for n in ns) + " | largest error |",
        "|---|" + "---|" * len(ns) + "---|",
    ]
    for depth, rows in table.groupby("depth", sort=True):
        by_n = rows.set_index("n_needles")
        cells = [
            f"{by_n.loc[n, 'realised_mean']:.3f} [{by_n.loc[n, 'realised_min']:.3f}, {by_n.loc[n, 'realised_max']:.3f}]"
            for n in ns
        ]
        lines.append(f"| {float(depth) / 100:.2f} | " + " | ".join(cells) + f" | {rows['max_abs_error'].max():.3f} |")
    lines.append("")
    return "\n".join(lines)


def _depth_order(values: Sequence[str]) -> list[str]:
    numeric = sorted({v for v in values if v != ALL}, key=float)
    return numeric + ([ALL] if ALL in values else [])


def _fmt(row: pd.Series) -> str:
    return f"{row['mean']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"


def depth_markdown(table: pd.DataFrame, confidence: float) -> str:
    """Table-3 layout: rows = models, columns = depth, one block for attention to the answer (↑) and one to noise (↓),
    pooled over the numbers of needles; then retrieval accuracy by depth and by number of needles."""
    lines: list[str] = []
    pooled = table[table["n_needles"] == ALL]
    depths = _depth_order(list(pooled["depth"]))
    header = "| model | " + " | ".join(f"{d} %" if d != ALL else "all depths" for d in depths) + " |"
    rule = "|---|" + "---|" * len(depths)
    titles = {
        "answer": "Attention to the answer number ↑",
        "answer_sentence": "Attention to the whole target needle sentence ↑",
        "noise": "Attention to noise context ↓",
        "haystack": "Attention to the haystack filler only ↓",
        "accuracy": "Retrieval accuracy (exact number) ↑",
    }
    for metric in METRICS:
        lines += [f"**{titles[metric]}** (mean [{confidence:.0%} CI])", "", header, rule]
        for model, rows in pooled[pooled["metric"] == metric].groupby("model", sort=False):
            by_depth = rows.set_index("depth")
            lines.append(f"| {model} | " + " | ".join(_fmt(by_depth.loc[d]) for d in depths) + " |")
        lines.append("")
    per_n = table[(table["n_needles"] != ALL) & (table["metric"] == "accuracy")]
    if not per_n.empty:
        ns = sorted(set(per_n["n_needles"]), key=int)
        lines += ["**Retrieval accuracy by number of needles** (pooled over depths)", ""]
        lines += ["| model | " + " | ".join(f"N = {n}" for n in ns) + " |", "|---|" + "---|" * len(ns)]
        for model, rows in per_n.groupby("model", sort=False):
            means = rows.groupby("n_needles")["mean"].mean()
            lines.append(f"| {model} | " + " | ".join(f"{means[n]:.3f}" for n in ns) + " |")
        lines.append("")
    return "\n".join(lines)


def verdict_lines(comparison: pd.DataFrame, confidence: float) -> list[str]:
    """Whether the paper's direction reproduces, from the intervals, for every model pair (pooled over depths)."""
    if comparison.empty:
        return ["No differential-vs-standard model pair was probed, so the paper's direction is not tested."]
    lines = [
        "Paper (Ye et al. 2025, Table 3; 3B models): attention to the answer span DIFF "
        f"{PAPER['answer']['diff'][0]:.2f}–{PAPER['answer']['diff'][1]:.2f} vs Transformer "
        f"{PAPER['answer']['transformer'][0]:.2f}–{PAPER['answer']['transformer'][1]:.2f}; to noise context DIFF "
        f"{PAPER['noise']['diff'][0]:.2f}–{PAPER['noise']['diff'][1]:.2f} vs Transformer "
        f"{PAPER['noise']['transformer'][0]:.2f}–{PAPER['noise']['transformer'][1]:.2f}.",
        "",
    ]
    for (a, b), rows in comparison.groupby(["model_a", "model_b"], sort=False):
        pooled = rows[rows["depth"] == ALL].set_index("metric")
        verdicts = {}
        for metric, wanted in (("answer", 1), ("answer_sentence", 1), ("noise", -1)):
            r = pooled.loc[metric]
            if (r["ci_low"] > 0 and wanted > 0) or (r["ci_high"] < 0 and wanted < 0):
                verdicts[metric] = "reproduces"
            elif (r["ci_high"] < 0 and wanted > 0) or (r["ci_low"] > 0 and wanted < 0):
                verdicts[metric] = "is reversed"
            else:
                verdicts[metric] = "is not resolved (the interval includes 0)"
            lines.append(
                f"- {a} vs {b}, attention to {metric}: {r['mean_a']:.3f} vs {r['mean_b']:.3f}, difference "
                f"{r['diff']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] ({confidence:.0%} CI): the paper's direction "
                f"({'more' if wanted > 0 else 'less'} for DIFF) {verdicts[metric]} (test: difference pooled over depths, "
                f"two-level bootstrap over training seeds and items, bootstrap p = {r['p_value']:.3g})."
            )
        per_depth = rows[(rows["depth"] != ALL) & (rows["metric"].isin(["answer", "noise"]))]
        alpha = 1.0 - confidence
        agree = sum(
            bool(r.p_holm < alpha and (r.diff > 0 if r.metric == "answer" else r.diff < 0)) for r in per_depth.itertuples()
        )
        lines.append(
            f"- {a} vs {b}: {agree} of {len(per_depth)} depth x metric cells resolve in the paper's direction "
            f"(bootstrap p Holm-adjusted over the {len(per_depth)} cells < {alpha:.2g}). "
            f"Retrieval accuracy difference {pooled.loc['accuracy', 'diff']:+.3f} "
            f"[{pooled.loc['accuracy', 'ci_low']:+.3f}, {pooled.loc['accuracy', 'ci_high']:+.3f}]."
        )
        both = verdicts["answer"] == verdicts["noise"] == "reproduces"  # the headline pair; answer_sentence is secondary
        lines.append(
            f"- Overall ({a} vs {b}): "
            + ("the published direction reproduces at this scale." if both else "the published direction does not fully reproduce at this scale.")
            + " Magnitudes are not comparable with the paper's: these models are tiny and the contexts a few hundred tokens."
        )
    return lines


def plot_depth(table: pd.DataFrame, path: str | os.PathLike[str], title: str = "") -> None:
    """Two panels (attention to answer, to noise) against depth, one line per model with interval bars."""
    import matplotlib
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from attnlab.report.figures import MODEL_COLOURS

    pooled = table[(table["n_needles"] == ALL) & (table["depth"] != ALL)]
    with matplotlib.style.context("default"):
        figure = Figure(figsize=(9.0, 3.6), dpi=150)
        FigureCanvasAgg(figure)
        panels = figure.subplots(1, 3)
        for axes, metric, label in zip(
            panels,
            ("answer", "noise", "accuracy"),
            ("attention to answer number ↑", "attention to noise context ↓", "retrieval accuracy ↑"),
        ):
            for index, (model, rows) in enumerate(pooled[pooled["metric"] == metric].groupby("model", sort=False)):
                rows = rows.assign(x=rows["depth"].astype(float)).sort_values("x")
                colour = MODEL_COLOURS[index % len(MODEL_COLOURS)]
                axes.errorbar(
                    rows["x"] + (index - 0.5) * 1.5,
                    rows["mean"],
                    yerr=[rows["mean"] - rows["ci_low"], rows["ci_high"] - rows["mean"]],
                    marker="o",
                    capsize=3,
                    color=colour,
                    label=model,
                )
            axes.set_xlabel("needle depth (%)")
            axes.set_ylabel(label)
            axes.set_xticks(sorted(set(pooled["depth"].astype(float))))
            if metric == "accuracy":
                axes.set_ylim(-0.03, 1.03)
            else:
                axes.set_ylim(bottom=min(0.0, axes.get_ylim()[0]))
                axes.axhline(0.0, color="grey", linewidth=0.8)
            axes.grid(alpha=0.3)
        panels[0].legend(fontsize=8)
        if title:
            figure.suptitle(title, fontsize=10)
        figure.tight_layout()
        with atomic_path(path, suffix=".png") as tmp:
            figure.savefig(tmp, format="png", dpi=150, metadata={"Software": None})


def write_outputs(
    probes: Sequence[pd.DataFrame],
    models: Mapping[str, Mapping[str, Any]],
    *,
    query_scope: str,
    noise_classes: Sequence[str],
    n_resamples: int,
    confidence: float,
    seed: int,
    table_path: str | os.PathLike[str],
    comparison_path: str | os.PathLike[str],
    markdown_path: str | os.PathLike[str],
    metadata: Mapping[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scores -> depth table (Parquet + Markdown with the verdict) and the comparison table.

    ``models`` maps each probed model to ``{"base": ..., "architecture": ..., "seed": ...}``.
    """
    scores = pd.concat([item_scores(p, query_scope, noise_classes) for p in probes], ignore_index=True)
    missing = sorted(set(scores["model"]) - set(models))
    if missing:
        raise ValueError(f"probe files hold models {missing} that the model map does not describe")
    bases = {m: spec["base"] for m, spec in models.items() if m in set(scores["model"])}
    # differential attention is recognised from the probe rows (hub models have no configured architecture)
    differential = {
        bases[m] for p in probes for m in set(p.loc[p["map_kind"] == "differential", "model"]) if m in bases
    }
    table = depth_table(scores, bases, n_resamples=n_resamples, confidence=confidence, seed=seed)
    comparison = comparison_table(
        scores, bases, differential, n_resamples=n_resamples, confidence=confidence, seed=seed
    )
    meta = dict(metadata)
    write_parquet(table, table_path, metadata=meta)
    write_parquet(comparison, comparison_path, metadata=meta)
    seeds = {base: sorted(spec["seed"] for spec in models.values() if spec["base"] == base) for base in set(bases.values())}
    text = [
        "# Needle in a haystack: attention to the answer vs noise by depth",
        "",
        f"Query: `{query_scope}`; effective maps (DiffLlama: differential A_i − λ·A_(i+H/2)); fraction of each head's "
        f"net attention mass, mean over layers and heads, then over items and training seeds. Noise context = "
        f"{' + '.join(noise_classes)}. Seeds per model: "
        + ", ".join(f"{b}: {s}" for b, s in sorted(seeds.items()))
        + ". Model differences are paired on the identical probe items (items resampled once for both models, "
        "each model's seeds independently).",
        "",
        realised_depth_markdown(realised_depth_table(scores)),
        depth_markdown(table, confidence),
        "## Does the paper's direction reproduce?",
        "",
        *verdict_lines(comparison, confidence),
        "",
    ]
    write_text(markdown_path, "\n".join(text))
    return table, comparison

"""Is differential attention more robust to noise? The difference-of-drops table and its test.

The robustness claim of the Differential Transformer study is comparative: DiffLlama *loses less* pass@1 than
Llama when noise is added. Per noise type v, with drop_m(i) = correct_m(i, v) − correct_m(i, clean) on item i
(−1, 0 or +1; the ``robustness`` table's drop is its mean)::

    diff(v) = mean_i drop_D(i) − mean_i drop_L(i)          D = the differential-attention model, L = Llama

so diff > 0 means DiffLlama loses less (its drop is smaller). Items are paired: the two models are scored on the
same clean and noisy items, so every item keeps its four outcomes together.

Training seeds as clusters. A model m may have S_m ≥ 1 training seeds (the model and its ``pretrain.replicates``
evaluated on the same items); the estimate is then the mean over seeds of the mean over items, and the interval
is a two-level bootstrap (Davison & Hinkley 1997, Sec. 3.8): each replicate draws one item resample shared by both
models and all seeds (the pairing), and, independently per model, S_m seeds with replacement. With one seed per
model this is the paired item bootstrap. Interval: expanded percentile at the item level (Hesterberg 2015; see
:func:`attnlab.stats.paired_mean_difference`). Test: with one seed per model, the exact two-sided sign-flip test
of the per-item differences drop_D(i) − drop_L(i) (:func:`attnlab.stats.sign_flip_p_value`; calibrated at any
number of items); with replicates, the two-level bootstrap's p (the dual of its interval; with only a few seeds
the seed level is resampled from few values, so that p is approximate). The p-values of the noise types of one model pair, dataset and
metric are Holm-adjusted (:func:`attnlab.stats.holm_adjust`), and the verdict sentence of each row says
"loses less" / "loses more" only when the adjusted p is below ``alpha``.

Pairs: every evaluated model with architecture ``diffllama`` against every one with architecture ``llama`` and
the same fine-tuning recipe (zero-shot against zero-shot, ``+sft-r`` against ``+sft-r``), or the configured
``robustness_difference.pairs`` [differential, standard] of model names (hub checkpoints carry no configured
architecture, so they are compared only when listed), each again with its replicates and SFT variants.
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from attnlab.io import write_parquet, write_text
from attnlab.report.settings import comparison_arms, has_pairs, robustness_models  # noqa: F401  (re-exported)
from attnlab.stats import _expanded_alpha, bootstrap_p_value, format_p_value, holm_adjust, sign_flip_p_value

__all__ = ["DROP_TEST", "drop_difference", "drop_difference_table", "drop_difference_sentences", "write_drop_difference"]

CLEAN = "clean"
METRICS = {"strict": "correct_strict", "flexible": "correct_flexible"}
DROP_TEST = "sign-flip test over items (two-level bootstrap when training seeds are clusters), Holm over noise types"
COLUMNS = [
    "base", "variant", "metric", "model_a", "model_b", "recipe", "n_items", "seeds_a", "seeds_b", "drop_a", "drop_b",
    "diff", "diff_ci_low", "diff_ci_high", "p_value", "p_holm", "test",
]


def drop_difference(
    drops_a: np.ndarray, drops_b: np.ndarray, *, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float, float]:
    """(diff, low, high, p) for per-seed, per-item drops ``drops_a`` [S_a, n] and ``drops_b`` [S_b, n].

    diff = mean_s mean_i drops_a − mean_s mean_i drops_b; the bootstrap resamples the n items once per replicate
    for both (paired) and the seeds of each model independently (clusters); see the module docstring.
    """
    a, b = np.atleast_2d(np.asarray(drops_a, dtype=float)), np.atleast_2d(np.asarray(drops_b, dtype=float))
    if a.shape[1] != b.shape[1] or a.shape[1] == 0:
        raise ValueError(f"drops must be paired on the same n > 0 items, got shapes {a.shape} and {b.shape}")
    n = a.shape[1]
    estimate = float(a.mean() - b.mean())
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(n_resamples, n))  # [B, n] items, shared by both models
    means_a, means_b = a[:, picks].mean(axis=2).T, b[:, picks].mean(axis=2).T  # [B, S_a], [B, S_b] per-seed means
    seeds_a = rng.integers(0, a.shape[0], size=(n_resamples, a.shape[0]))
    seeds_b = rng.integers(0, b.shape[0], size=(n_resamples, b.shape[0]))
    rows = np.arange(n_resamples)[:, None]
    replicates = means_a[rows, seeds_a].mean(axis=1) - means_b[rows, seeds_b].mean(axis=1)  # [B]
    alpha = _expanded_alpha(1.0 - confidence, n)
    low, high = np.quantile(replicates, [alpha / 2.0, 1.0 - alpha / 2.0])
    if a.shape[0] == 1 and b.shape[0] == 1:  # one seed each: the exact sign-flip test of the per-item differences
        return estimate, float(low), float(high), sign_flip_p_value(a[0] - b[0], seed=seed)
    percentile_p = bootstrap_p_value(replicates)  # seeds as clusters: the two-level bootstrap's own p
    if percentile_p <= 0.0 or n < 2:
        p = percentile_p
    else:  # the dual of the expanded interval: t_{1−α/2, n−1} = −Φ⁻¹(p/2) / √(n/(n−1))
        t_value = -sps.norm.ppf(percentile_p / 2.0) / math.sqrt(n / (n - 1.0))
        p = float(min(1.0, 2.0 * sps.t.sf(t_value, n - 1)))
    return estimate, float(low), float(high), p


def _correct(frames: dict[tuple[str, str, str], pd.Series], model: str, base: str, variant: str, where: str):
    series = frames.get((model, base, variant))
    if series is None:
        raise ValueError(f"{where}: model {model!r} has no evaluation of base={base!r}, variant={variant!r}")
    return series


def drop_difference_table(
    eval_frames: Sequence[pd.DataFrame],
    models: Mapping[str, Mapping[str, Any]],
    *,
    pairs: Sequence[Sequence[str]] | None = None,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per DiffLlama–Llama pair × dataset × noise type × metric (columns :data:`COLUMNS`).

    Args:
        eval_frames: per-sample evaluation frames (``model, base, variant, id, correct_strict, correct_flexible``).
        models: ``{model: {"base_model", "architecture", "seed", "recipe"}}`` for every evaluated model
            (``recipe`` None for zero-shot models; a training-seed replicate has its base model's base_model).
        pairs: [differential, standard] base model names, or None to pair by architecture.
    """
    frames: dict[tuple[str, str, str], pd.DataFrame] = {}
    for frame in eval_frames:
        for (model, base, variant), group in frame.groupby(["model", "base", "variant"], sort=False):
            frames[(str(model), str(base), str(variant))] = group.set_index(group["id"].astype(str))
    evaluated = {m: s for m, s in models.items() if any(k[0] == m for k in frames)}
    rows = []
    for arm_a, arm_b in comparison_arms(evaluated, pairs):
        recipe = evaluated[arm_a["models"][0]].get("recipe")
        bases = sorted({b for (m, b, _) in frames if m in arm_a["models"]})
        for base in bases:
            variants = sorted({v for (m, b, v) in frames if m in arm_a["models"] and b == base and v != CLEAN})
            for variant in variants:
                for metric, column in METRICS.items():
                    where = f"{arm_a['label']} vs {arm_b['label']}, base={base!r}, variant={variant!r}"
                    per_model = {}
                    for model in arm_a["models"] + arm_b["models"]:
                        clean = _correct(frames, model, base, CLEAN, where)[column]
                        noisy = _correct(frames, model, base, variant, where)[column]
                        per_model[model] = (clean, noisy)
                    ids = sorted(set.intersection(*(set(c.index) & set(n.index) for c, n in per_model.values())))
                    if not ids:
                        raise ValueError(f"{where}: the models share no item ids")

                    def drops(names: list[str]) -> np.ndarray:
                        return np.stack([
                            per_model[m][1].loc[ids].to_numpy(dtype=float) - per_model[m][0].loc[ids].to_numpy(dtype=float)
                            for m in names
                        ])  # [S, n]

                    da, db = drops(arm_a["models"]), drops(arm_b["models"])
                    diff, low, high, p = drop_difference(da, db, n_resamples=n_resamples, confidence=confidence, seed=seed)
                    rows.append({
                        "base": base, "variant": variant, "metric": metric, "model_a": arm_a["label"],
                        "model_b": arm_b["label"], "recipe": recipe or "", "n_items": len(ids),
                        "seeds_a": len(arm_a["models"]), "seeds_b": len(arm_b["models"]),
                        "drop_a": float(da.mean()), "drop_b": float(db.mean()), "diff": diff, "diff_ci_low": low,
                        "diff_ci_high": high, "p_value": p, "test": DROP_TEST,
                    })  # fmt: skip
    table = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "p_holm"])
    table["p_holm"] = np.nan
    for _, index in table.groupby(["base", "metric", "model_a", "model_b"], sort=False).groups.items():
        table.loc[index, "p_holm"] = holm_adjust(table.loc[index, "p_value"].to_numpy(dtype=float))
    return table[COLUMNS].reset_index(drop=True)


def drop_difference_sentences(table: pd.DataFrame, alpha: float = 0.05, metric: str = "strict") -> list[str]:
    """One sentence per row of ``metric``: does the differential model lose less under this noise type?"""
    if table.empty:
        return ["No DiffLlama–Llama pair was evaluated, so the robustness comparison is not tested."]
    lines = []
    for r in table[table["metric"] == metric].itertuples():
        if r.p_holm < alpha:
            verdict = "loses less" if r.diff > 0 else "loses more"
        else:
            verdict = "is not distinguished from"
        versus = f"{r.model_a} {verdict} {r.model_b}" if verdict.startswith("is") else f"{r.model_a} {verdict} than {r.model_b}"
        seeds = f"{r.seeds_a} vs {r.seeds_b} training seeds" if max(r.seeds_a, r.seeds_b) > 1 else "one training seed each"
        lines.append(
            f"{r.base} / {r.variant} ({metric}): {versus} — drop {r.drop_a:+.3f} vs {r.drop_b:+.3f}, difference "
            f"{r.diff:+.3f} [{r.diff_ci_low:+.3f}, {r.diff_ci_high:+.3f}] on {r.n_items} paired items, {seeds}; "
            f"Holm-adjusted {format_p_value(r.p_holm)} ({DROP_TEST})."
        )
    return lines


CAPTION = (
    "Is differential attention more robust? diff = drop(model_a) − drop(model_b) with drop = pass@1(noisy) − "
    "pass@1(clean) on the same items (the `robustness` table's drop); diff > 0: model_a (DiffLlama) loses less. "
    "95 % interval: paired bootstrap over items (expanded percentile), training seeds resampled as clusters when a "
    "model has replicates; p: exact sign-flip test of the per-item differences (one seed per model) or the two-level "
    "bootstrap p (replicates), Holm-adjusted over the noise types of a pair, dataset and metric (`p_holm`). A "
    "sentence says 'loses less' or 'loses more' only when p_holm < 0.05."
)


def write_drop_difference(
    table: pd.DataFrame, parquet_path: str | os.PathLike[str], markdown_path: str | os.PathLike[str],
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """The table as Parquet and as Markdown with the verdict sentences (both written atomically)."""
    from attnlab.report.tables import markdown_table

    write_parquet(table, parquet_path, metadata=dict(metadata or {}))
    sentences = "".join(f"- {s}\n" for s in drop_difference_sentences(table))
    write_text(
        markdown_path,
        f"# robustness_difference\n\n{CAPTION}\n\n{sentences}\n" + markdown_table(table.drop(columns=["test"])),
    )



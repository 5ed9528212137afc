"""Aggregate pass@1 tables from per-sample evaluation files.

Input: per-sample evaluation frames (one per model x base dataset x variant,
``results/eval/{model}/{base}/{variant}.parquet``) with at least the columns
``model, base, variant, id, correct_strict, correct_flexible``.

Output (:func:`accuracy_tables`), three tables with a deterministic row order:

``accuracy``
    one row per model x base x variant x metric: n, correct, pass@1 and its
    Wilson score interval.
``robustness``
    one row per model x base x noisy variant x metric: pass@1 on the clean and
    the noisy version of the same items, the drop (noisy - clean) with
    Newcombe's paired interval, the paired 2x2 cells and the exact McNemar p.
``mcnemar``
    one row per base x variant x metric x unordered model pair (model_a <
    model_b): the paired 2x2 cells, exact McNemar p, and pass@1(b) - pass@1(a)
    with Newcombe's paired interval.

Items are paired by ``id``. When the two sides of a comparison do not hold the
same ids, the comparison uses the intersection and records its size ``n``
next to the sizes of both sides.

Rows are sorted by model, base, variant (``clean`` first, then the noisy
variants alphabetically) and metric (``strict`` before ``flexible``).
"""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from attnlab.io import write_parquet, write_text
from attnlab.stats import mcnemar_exact, paired_counts, paired_difference_interval_from_counts, wilson_interval

CLEAN_VARIANT = "clean"
METRIC_COLUMNS: dict[str, str] = {"strict": "correct_strict", "flexible": "correct_flexible"}
KEY_COLUMNS = ("model", "base", "variant")
REQUIRED_COLUMNS = (*KEY_COLUMNS, "id", *METRIC_COLUMNS.values())
TABLE_NAMES = ("accuracy", "robustness", "mcnemar")

_STRING, _INT, _FLOAT = pa.string(), pa.int64(), pa.float64()

TABLE_SCHEMAS: dict[str, pa.Schema] = {
    "accuracy": pa.schema(
        [
            ("model", _STRING),
            ("base", _STRING),
            ("variant", _STRING),
            ("metric", _STRING),
            ("n", _INT),
            ("correct", _INT),
            ("pass_at_1", _FLOAT),
            ("ci_low", _FLOAT),
            ("ci_high", _FLOAT),
        ]
    ),
    "robustness": pa.schema(
        [
            ("model", _STRING),
            ("base", _STRING),
            ("variant", _STRING),  # the noisy variant
            ("metric", _STRING),
            ("n", _INT),  # paired items (ids in both clean and noisy)
            ("n_clean", _INT),
            ("n_noisy", _INT),
            ("pass_at_1_clean", _FLOAT),  # on the n paired items
            ("pass_at_1_noisy", _FLOAT),  # on the n paired items
            ("drop", _FLOAT),  # pass_at_1_noisy - pass_at_1_clean
            ("drop_ci_low", _FLOAT),
            ("drop_ci_high", _FLOAT),
            ("both_correct", _INT),
            ("only_clean", _INT),  # McNemar b: correct on clean, wrong on noisy
            ("only_noisy", _INT),  # McNemar c: wrong on clean, correct on noisy
            ("neither_correct", _INT),
            ("mcnemar_p", _FLOAT),
        ]
    ),
    "mcnemar": pa.schema(
        [
            ("base", _STRING),
            ("variant", _STRING),
            ("metric", _STRING),
            ("model_a", _STRING),
            ("model_b", _STRING),
            ("n", _INT),  # paired items (ids scored for both models)
            ("n_a", _INT),
            ("n_b", _INT),
            ("both_correct", _INT),
            ("only_a", _INT),
            ("only_b", _INT),
            ("neither_correct", _INT),
            ("pass_at_1_a", _FLOAT),  # on the n paired items
            ("pass_at_1_b", _FLOAT),  # on the n paired items
            ("diff", _FLOAT),  # pass_at_1_b - pass_at_1_a
            ("diff_ci_low", _FLOAT),
            ("diff_ci_high", _FLOAT),
            ("mcnemar_p", _FLOAT),
        ]
    ),
}

TABLE_CAPTIONS: dict[str, str] = {
    "accuracy": "pass@1 per model, dataset, variant and answer-matching metric, with Wilson score intervals.",
    "robustness": (
        "Change of pass@1 from the clean to the noisy version of the same items (drop = noisy - clean), "
        "Newcombe (1998) paired interval, exact McNemar test (only_clean = b, only_noisy = c)."
    ),
    "mcnemar": (
        "Paired comparison of two models on the same items: 2x2 cells, exact McNemar p, "
        "diff = pass@1(model_b) - pass@1(model_a) with Newcombe (1998) paired interval."
    ),
}

# (model, base, variant) -> [n_items] correctness per metric, indexed by item id
Key = tuple[str, str, str]
Scores = pd.DataFrame


def variant_sort_key(variant: str) -> tuple[int, str]:
    """Order variants ``clean`` first, then the noisy variants alphabetically."""
    return (0, "") if variant == CLEAN_VARIANT else (1, variant)


def metric_sort_key(metric: str) -> tuple[int, str]:
    """Order metrics as in :data:`METRIC_COLUMNS` (strict, flexible), unknown ones after."""
    names = list(METRIC_COLUMNS)
    return (names.index(metric), "") if metric in names else (len(names), metric)


def _as_bool_column(series: pd.Series, where: str) -> pd.Series:
    if series.isna().any():
        first = series.index[series.isna()][0]
        raise ValueError(f"{where}: column {series.name!r} has a missing value (item id {first!r})")
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.astype(bool)
    values = set(series.tolist())
    if values <= {True, False}:  # object column holding Python / numpy booleans
        return series.astype(bool)
    raise ValueError(f"{where}: column {series.name!r} must be boolean, got dtype {series.dtype}")


def _index_frames(eval_frames: Sequence[pd.DataFrame], sources: Sequence[str] | None) -> dict[Key, Scores]:
    """Split the frames into one score table per (model, base, variant), indexed by id.

    Raises:
        ValueError: missing columns, empty frames, missing/non-boolean
            correctness, duplicate ids, or a (model, base, variant) given twice.
    """
    if sources is not None and len(sources) != len(eval_frames):
        raise ValueError(f"got {len(sources)} source names for {len(eval_frames)} frames")
    if len(eval_frames) == 0:
        raise ValueError("accuracy_tables needs at least one evaluation frame")
    scores: dict[Key, Scores] = {}
    origin: dict[Key, str] = {}
    for index, frame in enumerate(eval_frames):
        source = sources[index] if sources is not None else f"frame {index}"
        missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
        if missing:
            raise ValueError(f"{source}: missing column(s) {missing}; required: {list(REQUIRED_COLUMNS)}")
        if len(frame) == 0:
            raise ValueError(f"{source}: evaluation table has no rows")
        for column in (*KEY_COLUMNS, "id"):
            if frame[column].isna().any():
                raise ValueError(f"{source}: column {column!r} has missing values")
        for key_values, group in frame.groupby(list(KEY_COLUMNS), sort=True):
            key: Key = tuple(str(value) for value in key_values)  # type: ignore[assignment]
            where = f"{source} (model={key[0]!r}, base={key[1]!r}, variant={key[2]!r})"
            if key in scores:
                raise ValueError(
                    f"model={key[0]!r}, base={key[1]!r}, variant={key[2]!r} appears twice: "
                    f"in {origin[key]} and {source}"
                )
            ids = group["id"].astype(str)
            duplicated = ids[ids.duplicated()]
            if len(duplicated):
                raise ValueError(f"{where}: item id {duplicated.iloc[0]!r} appears more than once")
            table = pd.DataFrame(
                {
                    metric: _as_bool_column(group[column], where).to_numpy()
                    for metric, column in METRIC_COLUMNS.items()
                },
                index=pd.Index(ids.to_numpy(), name="id"),
            ).sort_index()
            scores[key] = table
            origin[key] = source
    return scores


def _frame(rows: list[dict[str, Any]], name: str) -> pd.DataFrame:
    """Rows -> DataFrame with the columns and dtypes of :data:`TABLE_SCHEMAS` ``[name]``."""
    schema = TABLE_SCHEMAS[name]
    columns: dict[str, pd.Series] = {}
    for field in schema:
        values = [row[field.name] for row in rows]
        if field.type == _STRING:
            dtype = "str"
        elif field.type == _INT:
            dtype = "int64"
        else:
            dtype = "float64"
        columns[field.name] = pd.Series(values, dtype=dtype)
    return pd.DataFrame(columns)


def _paired(left: Scores, right: Scores, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Correctness of both sides on the ids they share, in sorted id order: ([n], [n])."""
    shared = left.index.intersection(right.index).sort_values()
    return left.loc[shared, metric].to_numpy(), right.loc[shared, metric].to_numpy()


def _accuracy_rows(scores: dict[Key, Scores], confidence: float) -> list[dict[str, Any]]:
    rows = []
    for (model, base, variant), table in scores.items():
        for metric in METRIC_COLUMNS:
            correct = table[metric].to_numpy()  # [n]
            n, n_correct = int(correct.size), int(correct.sum())
            low, high = wilson_interval(n_correct, n, confidence)
            rows.append(
                dict(
                    model=model,
                    base=base,
                    variant=variant,
                    metric=metric,
                    n=n,
                    correct=n_correct,
                    pass_at_1=n_correct / n,
                    ci_low=low,
                    ci_high=high,
                )
            )
    return rows


def _paired_comparison(
    x: np.ndarray, y: np.ndarray, confidence: float, x_name: str, y_name: str
) -> dict[str, Any]:
    """Paired statistics of two correctness vectors on the same items (y − x).

    Returns the cell counts (``both_correct``, ``only_{x_name}``, ``only_{y_name}``,
    ``neither_correct``), ``n``, the Newcombe (1998) interval of the difference and
    the exact McNemar p-value on the discordant pairs.
    """
    cells = paired_counts(x, y)
    diff, low, high = paired_difference_interval_from_counts(*cells, confidence=confidence)
    return {
        "n": cells.n,
        "both_correct": cells.both,
        f"only_{x_name}": cells.only_x,
        f"only_{y_name}": cells.only_y,
        "neither_correct": cells.neither,
        "diff": diff,
        "diff_ci_low": low,
        "diff_ci_high": high,
        "mcnemar_p": mcnemar_exact(cells.only_x, cells.only_y),
    }


def _robustness_rows(scores: dict[Key, Scores], confidence: float) -> list[dict[str, Any]]:
    rows = []
    for (model, base, variant), noisy in scores.items():
        if variant == CLEAN_VARIANT:
            continue
        clean = scores.get((model, base, CLEAN_VARIANT))
        if clean is None:
            raise ValueError(
                f"model={model!r}, base={base!r}: noisy variant {variant!r} has no {CLEAN_VARIANT!r} "
                "evaluation to compare against"
            )
        for metric in METRIC_COLUMNS:
            clean_correct, noisy_correct = _paired(clean, noisy, metric)  # [n], [n]
            if clean_correct.size == 0:
                raise ValueError(
                    f"model={model!r}, base={base!r}: variants {CLEAN_VARIANT!r} and {variant!r} share no item ids"
                )
            stats = _paired_comparison(clean_correct, noisy_correct, confidence, "clean", "noisy")
            rows.append(
                dict(
                    model=model,
                    base=base,
                    variant=variant,
                    metric=metric,
                    n_clean=len(clean),
                    n_noisy=len(noisy),
                    pass_at_1_clean=float(clean_correct.mean()),
                    pass_at_1_noisy=float(noisy_correct.mean()),
                    drop=stats.pop("diff"),
                    drop_ci_low=stats.pop("diff_ci_low"),
                    drop_ci_high=stats.pop("diff_ci_high"),
                    **stats,
                )
            )
    return rows


def _mcnemar_rows(scores: dict[Key, Scores], confidence: float) -> list[dict[str, Any]]:
    rows = []
    base_variants = sorted({(base, variant) for (_, base, variant) in scores})
    for base, variant in base_variants:
        models = sorted(model for (model, b, v) in scores if (b, v) == (base, variant))
        for model_a, model_b in itertools.combinations(models, 2):
            table_a, table_b = scores[(model_a, base, variant)], scores[(model_b, base, variant)]
            for metric in METRIC_COLUMNS:
                correct_a, correct_b = _paired(table_a, table_b, metric)  # [n], [n]
                if correct_a.size == 0:
                    raise ValueError(
                        f"base={base!r}, variant={variant!r}: models {model_a!r} and {model_b!r} share no item ids"
                    )
                rows.append(
                    dict(
                        base=base,
                        variant=variant,
                        metric=metric,
                        model_a=model_a,
                        model_b=model_b,
                        n_a=len(table_a),
                        n_b=len(table_b),
                        pass_at_1_a=float(correct_a.mean()),
                        pass_at_1_b=float(correct_b.mean()),
                        **_paired_comparison(correct_a, correct_b, confidence, "a", "b"),
                    )
                )
    return rows


def _sorted(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Sort rows by ``by`` with variants clean-first and metrics strict-first."""

    def key(column: pd.Series) -> pd.Series:
        # sort keys as plain strings ("0", "1inf", ...) so pandas can factorize them
        if column.name == "variant":
            return column.map(lambda v: "%d%s" % variant_sort_key(v))
        if column.name == "metric":
            return column.map(lambda m: "%03d%s" % metric_sort_key(m))
        return column

    return frame.sort_values(by, key=key, kind="stable").reset_index(drop=True)


def accuracy_tables(
    eval_frames: Sequence[pd.DataFrame],
    sources: Sequence[str] | None = None,
    confidence: float = 0.95,
) -> dict[str, pd.DataFrame]:
    """Accuracy, robustness and pairwise-model tables from per-sample evaluation frames.

    Args:
        eval_frames: per-sample evaluation tables (see the module docstring).
            A frame may hold several (model, base, variant) groups, but each
            group must come from exactly one frame.
        sources: optional names of the frames (e.g. file paths) used in error
            messages.
        confidence: two-sided level of every interval.

    Returns:
        ``{"accuracy": ..., "robustness": ..., "mcnemar": ...}``, columns as in
        :data:`TABLE_SCHEMAS`.

    Raises:
        ValueError: a (model, base, variant) appears twice, a required column is
            missing, correctness is missing or not boolean, an id repeats within
            one group, a noisy variant has no clean counterpart, or the two sides
            of a comparison share no ids.
    """
    scores = _index_frames(eval_frames, sources)
    accuracy = _frame(_accuracy_rows(scores, confidence), "accuracy")
    robustness = _frame(_robustness_rows(scores, confidence), "robustness")
    mcnemar = _frame(_mcnemar_rows(scores, confidence), "mcnemar")
    return {
        "accuracy": _sorted(accuracy, ["model", "base", "variant", "metric"]),
        "robustness": _sorted(robustness, ["model", "base", "variant", "metric"]),
        "mcnemar": _sorted(mcnemar, ["base", "variant", "metric", "model_a", "model_b"]),
    }


def _format_cell(value: Any, column: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{value:.3g}" if column.endswith("_p") else f"{value:.4f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (numbers right-aligned; p-values to 3 s.f., other floats to 4 d.p.)."""
    header = "| " + " | ".join(str(column) for column in frame.columns) + " |"
    aligns = [
        "---:" if pd.api.types.is_numeric_dtype(frame[column].dtype) else ":---" for column in frame.columns
    ]
    separator = "| " + " | ".join(aligns) + " |"
    lines = [header, separator]
    for row in frame.itertuples(index=False, name=None):
        cells = [_format_cell(value, column) for value, column in zip(row, frame.columns)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_tables(
    tables: dict[str, pd.DataFrame],
    out_dir: str | os.PathLike[str],
    metadata: dict[str, Any] | None = None,
) -> list[Path]:
    """Write each table as ``{name}.parquet`` (with ``metadata``), ``{name}.csv`` and ``{name}.md``.

    Parquet files use the fixed schemas of :data:`TABLE_SCHEMAS`, so an empty
    table (e.g. ``mcnemar`` with a single model) still has typed columns.

    Returns:
        The paths written, in order.
    """
    out = Path(out_dir)
    written: list[Path] = []
    for name in sorted(tables, key=lambda n: (TABLE_NAMES.index(n) if n in TABLE_NAMES else len(TABLE_NAMES), n)):
        frame = tables[name]
        parquet_path, csv_path, md_path = (out / f"{name}.{ext}" for ext in ("parquet", "csv", "md"))
        write_parquet(frame, parquet_path, metadata=metadata, schema=TABLE_SCHEMAS.get(name))
        write_text(csv_path, frame.to_csv(index=False, lineterminator="\n"))
        caption = TABLE_CAPTIONS.get(name, "")
        write_text(md_path, f"# {name}\n\n" + (f"{caption}\n\n" if caption else "") + markdown_table(frame))
        written.extend([parquet_path, csv_path, md_path])
    return written


# --- zero-shot vs SFT ------------------------------------------------

SFT_TABLE_SCHEMA = pa.schema(
    [
        ("model", _STRING),  # the fine-tuned variant, e.g. "llama+sft-noisy"
        ("base_model", _STRING),  # its zero-shot base, e.g. "llama"
        ("recipe", _STRING),
        ("base", _STRING),  # the dataset
        ("variant", _STRING),
        ("metric", _STRING),
        ("n", _INT),  # paired items (ids scored for both)
        ("n_base", _INT),
        ("n_sft", _INT),
        ("pass_at_1_base", _FLOAT),  # on the n paired items
        ("pass_at_1_sft", _FLOAT),  # on the n paired items
        ("gain", _FLOAT),  # pass_at_1_sft - pass_at_1_base
        ("gain_ci_low", _FLOAT),
        ("gain_ci_high", _FLOAT),
        ("both_correct", _INT),
        ("only_base", _INT),  # McNemar b: base correct, SFT wrong
        ("only_sft", _INT),  # McNemar c: base wrong, SFT correct
        ("neither_correct", _INT),
        ("mcnemar_p", _FLOAT),
    ]
)
TABLE_SCHEMAS["sft"] = SFT_TABLE_SCHEMA
TABLE_CAPTIONS["sft"] = (
    "Zero-shot base vs its SFT variant on the same items: gain = pass@1(SFT) - pass@1(base) with Newcombe (1998) "
    "paired interval, discordant cells only_base (b) / only_sft (c), exact McNemar p."
)


def sft_gain_table(
    eval_frames: Sequence[pd.DataFrame], sources: Sequence[str] | None = None, confidence: float = 0.95
) -> pd.DataFrame:
    """One row per SFT model × dataset × variant × metric: the gain over its zero-shot base.

    An SFT model is any model named ``{base}+sft-{recipe}`` (:func:`attnlab.study.models.parse_sft_name`).
    With x = the base's and y = the SFT model's correctness on the ids both scored::

        gain = p_y - p_x = (only_sft - only_base) / n,   Newcombe (1998b) method-10 interval,
        p    = exact McNemar on (only_base, only_sft)   (McNemar 1947).

    Raises:
        ValueError: as :func:`accuracy_tables`, or an SFT model whose base was not evaluated on the
            same dataset variant, or the two share no item ids.
    """
    from attnlab.study.models import parse_sft_name

    scores = _index_frames(eval_frames, sources)
    rows = []
    for (model, base, variant), sft in scores.items():
        parsed = parse_sft_name(model)
        if parsed is None:
            continue
        base_model, recipe = parsed
        zero_shot = scores.get((base_model, base, variant))
        if zero_shot is None:
            raise ValueError(
                f"SFT model {model!r} on base={base!r}, variant={variant!r}: its base model {base_model!r} "
                "has no evaluation to compare against"
            )
        for metric in METRIC_COLUMNS:
            base_correct, sft_correct = _paired(zero_shot, sft, metric)  # [n], [n]
            if base_correct.size == 0:
                raise ValueError(f"base={base!r}, variant={variant!r}: {base_model!r} and {model!r} share no item ids")
            stats = _paired_comparison(base_correct, sft_correct, confidence, "base", "sft")
            rows.append(
                dict(
                    model=model, base_model=base_model, recipe=recipe, base=base, variant=variant, metric=metric,
                    n_base=len(zero_shot), n_sft=len(sft),
                    pass_at_1_base=float(base_correct.mean()), pass_at_1_sft=float(sft_correct.mean()),
                    gain=stats.pop("diff"), gain_ci_low=stats.pop("diff_ci_low"), gain_ci_high=stats.pop("diff_ci_high"),
                    **stats,
                )
            )  # fmt: skip
    columns = {}
    for field in SFT_TABLE_SCHEMA:
        dtype = "str" if field.type == _STRING else "int64" if field.type == _INT else "float64"
        columns[field.name] = pd.Series([row[field.name] for row in rows], dtype=dtype)
    return _sorted(pd.DataFrame(columns), ["model", "base", "variant", "metric"])

"""``attnlab validation``: causal validation of head scores, stage by stage.

    attnlab validation pruning --model LOCATION --data PARQUET [--train PARQUET] --scores PARQUET --spec JSON
                               --model-name NAME --base NAME [--device auto] [--dtype auto] [--threads N] --out PARQUET
    attnlab validation sparse  (same arguments)                                                         --out PARQUET
    attnlab validation tables  --pruning PARQUET [...] --sparse PARQUET [...] --out-dir DIR
    attnlab validation figures --tables-dir DIR --out-dir DIR

The ``--spec`` JSON of ``pruning``: ``eval`` (the evaluate stage's spec, see
:func:`attnlab.evaluate.evaluate.normalize_eval_spec`), ``objective`` (the ``attribution.objective`` section),
``objective_seed``, ``pass_items``, ``loss_items``, ``fractions``, ``scope`` (global | per_layer),
``random_seeds``, ``least_by`` (magnitude | signed). Of ``sparse``: the same first five keys, then ``budgets``,
``min_ratio``, ``scope``, ``allocations`` (adaptive allocation rules), ``temperature`` (of ``softmax``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from attnlab.cli.convention import json_object_arg
from attnlab.cli.models import add_model_arguments, model_provenance

__all__ = ["register"]

_COMMON_KEYS = ("eval", "objective", "objective_seed", "pass_items", "loss_items")
SPEC_KEYS = {
    "pruning": (*_COMMON_KEYS, "fractions", "scope", "random_seeds", "least_by"),
    "sparse": (*_COMMON_KEYS, "budgets", "min_ratio", "scope", "allocations", "temperature"),
}


def parse_spec(spec: dict[str, Any], kind: str) -> dict[str, Any]:
    """The spec of ``kind`` (``pruning`` | ``sparse``) from ``--spec`` (a JSON object), every key present and no other."""
    expected = set(SPEC_KEYS[kind])
    missing, unknown = sorted(expected - set(spec)), sorted(set(spec) - expected)
    if missing or unknown:
        raise ValueError(f"{kind} spec: missing key(s) {missing}, unknown key(s) {unknown}")
    for key in ("pass_items", "loss_items"):
        if not isinstance(spec[key], int) or spec[key] < 0:
            raise ValueError(f"{kind} spec key {key!r} must be an integer >= 0, got {spec[key]!r}")
    return spec


def held_out_items(data, scores_path: str):
    """``(data without the items the head scores were computed on, those item ids)``.

    Heads are selected by HeadIG scores and validated on other items: the attribution stage records the ids
    of the items it attributed in its output's metadata (``items``), and every such item is left out here,
    so a pruning or sparse-attention curve never measures the items the ranking was fitted to.

    Raises:
        ValueError: the scores file has no record of its items, or no item is left.
    """
    from attnlab.io import read_metadata

    selection = read_metadata(scores_path).get("items")
    if selection is None:
        raise ValueError(
            f"--scores {scores_path}: no record of the items its scores were computed on (metadata key 'items'); "
            "rerun the attribution stage"
        )
    selection = [str(i) for i in selection]
    held_out = data[~data["id"].astype(str).isin(set(selection))].reset_index(drop=True)
    if held_out.empty:
        raise ValueError(f"every item of the data was used to compute the head scores {scores_path}; none is left to validate on")
    return held_out, selection


def _load(args: argparse.Namespace, kind: str):
    """Parse the spec, load the model, data, exemplars, scores; build the Measurer."""
    import torch

    from attnlab.attribution.gates import gate_layout
    from attnlab.attribution.objectives import ObjectiveSpec
    from attnlab.evaluate.evaluate import normalize_eval_spec
    from attnlab.evaluate.fewshot import select_exemplars
    from attnlab.io import read_parquet
    from attnlab.models.loader import load_model
    from attnlab.validation.measure import Measurer
    from attnlab.validation.pruning import score_grid

    spec = parse_spec(args.spec, kind)
    eval_spec = normalize_eval_spec(dict(spec["eval"]))
    for flag, path in (("--data", args.data), ("--scores", args.scores), ("--train", args.train)):
        if path is not None and not Path(path).is_file():
            raise ValueError(f"{flag} {path}: no such file")
    k = eval_spec["num_fewshot"]
    if k > 0 and args.train is None:
        raise ValueError(f"--train PARQUET is required when num_fewshot > 0 (spec has {k})")
    exemplars = select_exemplars(read_parquet(args.train), k, eval_spec["fewshot_seed"], source=args.train) if k else []
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(int(spec["objective_seed"]))
    model, tokenizer = load_model(
        args.model, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code,
        revision=args.revision, subfolder=args.subfolder,
    )
    scores_table = read_parquet(args.scores)
    grid = score_grid(scores_table, gate_layout(model).shape, source=args.scores)
    methods = sorted(set(scores_table["method"])) if "method" in scores_table.columns else [Path(args.scores).stem]
    if len(methods) != 1:
        raise ValueError(f"{args.scores}: expected one attribution method, found {methods}")
    labels = {"model": args.model_name, "base": args.base, "scores": str(methods[0])}
    measurer = Measurer(
        model, tokenizer, eval_spec=eval_spec, exemplars=exemplars,
        objective=ObjectiveSpec.from_config(spec["objective"], int(spec["objective_seed"])), labels=labels,
    )
    data, selection_items = held_out_items(read_parquet(args.data), args.scores)
    measured = {"pass_items": [str(i) for i in data["id"].head(spec["pass_items"])],
                "loss_items": [str(i) for i in data["id"].head(spec["loss_items"])]}  # fmt: skip
    metadata = {
        "stage": f"validation_{kind}", "spec": spec, "eval_spec": eval_spec, **labels,
        "data": str(args.data), "scores_file": str(args.scores), **model_provenance(args),
        "selection_items": selection_items, "measured_items": measured,
    }
    return spec, grid, data, measurer, labels, metadata


def _handle_pruning(args: argparse.Namespace) -> int:
    from attnlab.io import write_parquet
    from attnlab.validation.pruning import PRUNING_SCHEMA, run_pruning

    spec, grid, data, measurer, labels, metadata = _load(args, "pruning")
    table = run_pruning(
        measurer.model, measurer.tokenizer, data, grid,
        fractions=spec["fractions"], scope=spec["scope"], random_seeds=spec["random_seeds"],
        pass_items=spec["pass_items"], loss_items=spec["loss_items"], measure=measurer.gated, labels=labels,
        least_by=spec["least_by"],
    )
    write_parquet(table, args.out, metadata={**metadata, "scores_grid": grid.round(8).tolist()}, schema=PRUNING_SCHEMA)
    return 0


def _handle_sparse(args: argparse.Namespace) -> int:
    from attnlab.io import write_parquet
    from attnlab.validation.sparse_attention import run_sparse, sparse_schema

    spec, grid, data, measurer, labels, metadata = _load(args, "sparse")
    table, ratios = run_sparse(
        data, grid, budgets=spec["budgets"], min_ratio=spec["min_ratio"], scope=spec["scope"],
        allocations=spec["allocations"], temperature=spec["temperature"],
        pass_items=spec["pass_items"], loss_items=spec["loss_items"], measure=measurer.sparse, labels=labels,
    )
    write_parquet(table, args.out, metadata={**metadata, "keep_ratios": ratios}, schema=sparse_schema())
    return 0


def _handle_tables(args: argparse.Namespace) -> int:
    from attnlab.io import read_parquet, write_parquet, write_text
    from attnlab.report.tables import markdown_table
    from attnlab.validation.tables import (
        pruning_table, pruning_tests, pruning_verdicts, sparse_table, sparse_tests, sparse_verdicts,
    )

    out = Path(args.out_dir)
    for name, tests_name, paths, build, build_tests, verdicts, caption in (
        ("pruning", "pruning_tests", args.pruning, pruning_table, pruning_tests, pruning_verdicts, PRUNING_CAPTION),
        ("sparse_attention", "sparse_tests", args.sparse, sparse_table, sparse_tests, sparse_verdicts, SPARSE_CAPTION),
    ):
        if not paths:
            continue
        frames = [read_parquet(p) for p in paths]
        table, tests = build(frames), build_tests(frames)
        meta = {"stage": f"validation_{name}", "inputs": list(paths)}
        write_parquet(table, out / f"{name}.parquet", metadata=meta)
        write_parquet(tests, out / f"{tests_name}.parquet", metadata={**meta, "stage": f"validation_{tests_name}"})
        write_text(out / f"{name}.csv", table.to_csv(index=False, lineterminator="\n"))
        sentences = "".join(f"- {s}\n" for s in verdicts(table, tests))
        human = table[[c for c in MARKDOWN_COLUMNS[name] if c in table.columns]].astype(object)
        human = human.where(human.notna(), None)
        tests_human = tests.drop(columns=["test"]).astype(object)
        tests_human = tests_human.where(tests_human.notna(), None)
        write_text(
            out / f"{name}.md",
            f"# {name}\n\n{caption}\n\n{sentences}\n## The verdicts' tests\n\n{TESTS_CAPTION}\n\n"
            + markdown_table(tests_human) + "\n## Per condition\n\n" + markdown_table(human),
        )
    return 0


def _handle_figures(args: argparse.Namespace) -> int:
    from attnlab.io import read_parquet
    from attnlab.validation.figures import plot_pruning, plot_sparse

    tables = Path(args.tables_dir)
    out = Path(args.out_dir)
    for name, plot, suffix in (("pruning", plot_pruning, "pruning"), ("sparse_attention", plot_sparse, "sparse")):
        path = tables / f"{name}.parquet"
        if not path.is_file():
            continue
        table = read_parquet(path)
        for model, base in sorted(set(zip(table["model"], table["base"]))):
            plot(table, model, base, out / f"{model}_{base}_{suffix}.png")
    return 0


#: the columns of the human-readable Markdown copies (the Parquet/CSV files have all of them)
MARKDOWN_COLUMNS = {
    "pruning": ["model", "base", "scope", "least_by", "strategy", "seed", "fraction", "k", "vs_most_counted",
                "n_items", "pass_at_1", "ci_low", "ci_high", "loss_mean", "loss_ci_low", "loss_ci_high",
                "vs_most_diff", "vs_most_mcnemar_p_holm", "vs_most_loss_diff", "vs_most_loss_diff_low",
                "vs_most_loss_diff_high", "vs_most_loss_p_holm"],
    "sparse_attention": ["model", "base", "method", "allocation", "budget", "realised_keep_fraction", "n_items",
                         "pass_at_1", "ci_low", "ci_high", "loss_mean", "loss_ci_low", "loss_ci_high",
                         "vs_dense_loss_diff", "vs_dense_loss_p", "vs_uniform_diff", "vs_uniform_mcnemar_p_holm",
                         "vs_uniform_loss_diff", "vs_uniform_loss_diff_low", "vs_uniform_loss_diff_high",
                         "vs_uniform_loss_p_holm"],
}

PRUNING_CAPTION = (
    "Heads pruned (gate α = 0) in order of importance: `most` = highest score first, `least` = the least relevant "
    "first (`least_by`: `magnitude` = smallest |score|, `signed` = lowest signed score), `random` = seeded "
    "permutations. pass@1 with Wilson 95 % interval; mean answer-token loss with a bootstrap 95 % interval. "
    "`vs_most_*`: this condition − `most` at the same fraction on the same items (McNemar exact p for pass@1, "
    "Newcombe paired interval for the difference, bootstrap interval and Wilcoxon signed-rank p for the loss; "
    "`_holm`: Holm-adjusted over the counted comparisons). `vs_most_counted`: the pruned sets differ and the "
    "pair was not already compared at a smaller fraction; only counted comparisons enter the verdicts."
)
SPARSE_CAPTION = (
    "Top-k sparse attention (each query keeps the sink and its highest-scoring keys). `uniform`: every head keeps "
    "the budget fraction; `adaptive`: keep ratios ∝ a weight of the head score (`allocation`: `linear_signed` = "
    "max(s, 0), `magnitude` = |s|, `rank`, `softmax` of the standardised scores), mean = budget, clipped to "
    "[min_ratio, 1]. `realised_keep_fraction`: kept / attendable (query, key) pairs. `vs_dense_*` / "
    "`vs_uniform_*`: paired differences (this − reference) with McNemar / Wilcoxon p (`_holm`: Holm-adjusted over "
    "the adaptive rows) and a bootstrap interval of the loss difference."
)
TESTS_CAPTION = (
    "One pre-declared test per verdict: `estimate` = mean over the listed conditions (fractions or budgets) and "
    "items of the paired difference (comparator − most, or adaptive − uniform; random: mean over seeds first), "
    "`p_value` its two-sided sign-flip test over items (the per-item means' signs flipped; exact, valid at any "
    "number of items; the verdict is p ≤ 0.05 with the sign of the estimate), `low`/`high` a 95 % "
    "expanded-percentile bootstrap interval (Hesterberg 2015) with items resampled (the pairing across "
    "conditions is kept)."
)


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--data", required=True, help="data-stage Parquet of the items (the first ones the head scores were not computed on are used)")
    parser.add_argument("--train", default=None, help="train-split Parquet for few-shot exemplars (num_fewshot > 0)")
    parser.add_argument("--scores", required=True, help="attribution scores Parquet (layer, head, score)")
    parser.add_argument("--spec", required=True, type=json_object_arg, help="the stage spec as JSON or a JSON file (see the module docstring)")
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--base", required=True)
    parser.add_argument("--out", required=True, help="output Parquet (one row per condition × item)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``attnlab validation {pruning,sparse,tables,figures}``."""
    parser = subparsers.add_parser(
        "validation", help="causal validation of head scores: pruning and sparse attention",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="validation_command", required=True)
    pruning = sub.add_parser("pruning", help="prune most / least / random heads; pass@1 and answer loss")
    _model_arguments(pruning)
    pruning.set_defaults(func=_handle_pruning)
    sparse = sub.add_parser("sparse", help="dense vs uniform vs adaptive top-k sparse attention")
    _model_arguments(sparse)
    sparse.set_defaults(func=_handle_sparse)
    tables = sub.add_parser("tables", help="aggregate tables with intervals and paired tests (+ .md, .csv)")
    tables.add_argument("--pruning", nargs="*", default=[], help="per-model pruning.parquet files")
    tables.add_argument("--sparse", nargs="*", default=[], help="per-model sparse.parquet files")
    tables.add_argument("--out-dir", required=True)
    tables.set_defaults(func=_handle_tables)
    figures = sub.add_parser("figures", help="one pruning and one sparse figure per model × base")
    figures.add_argument("--tables-dir", required=True)
    figures.add_argument("--out-dir", required=True)
    figures.set_defaults(func=_handle_figures)

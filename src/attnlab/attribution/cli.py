"""``attnlab attribution``: HeadIG head scores, method correlations and heatmaps, stage by stage.

    attnlab attribution score --model LOCATION --data PARQUET [PARQUET ...] --variants NAME [NAME ...]
                              --spec JSON --model-name NAME --base NAME [--device auto] [--threads N]
                              [--trust-remote-code] [--revision REV] --out-dir DIR
    attnlab attribution correlations --inputs PARQUET [PARQUET ...] --out PARQUET [--markdown MD]
    attnlab attribution heatmap --scores PARQUET --out PNG
    attnlab attribution report --inputs PARQUET [PARQUET ...] --out PARQUET [--markdown MD] --figures-dir DIR

``--spec`` is the JSON of :func:`attnlab.attribution.settings.attribution_job_spec` (methods, items, layers, objective, dtype,
seed, batch_rows and the methods' path settings); ``score`` writes ``DIR/{method}.parquet`` and
``DIR/{method}_items.parquet`` for each method, e.g.
``{"methods": ["dp", "stp", "michel"], "items": 16, "ig_steps": 32, "path_samples": 2, "quadrature": "trapezoid", "baseline": 0.0,
"postprocess": "signed", "layers": {"first": 0, "last": null}, "objective": {"target": "solution",
"normalization": "mean_masked"}, "seed": 1234, "batch_rows": 64, "dtype": "float32"}``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from attnlab.cli.convention import json_object_arg
from attnlab.cli.models import add_model_arguments, model_provenance

__all__ = ["register", "score_file"]

LOG = logging.getLogger("attnlab.attribution")


def parse_job_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The job spec of ``--spec`` (a JSON object); it must list ``methods`` (dp, stp, michel)."""
    if not spec.get("methods"):
        raise ValueError("--spec must be a JSON object with a non-empty 'methods' list (dp, stp, michel)")
    return spec


def method_spec_dict(spec: dict[str, Any], method: str) -> dict[str, Any]:
    """The job spec restricted to what decides ``method``'s scores (recorded in that file's metadata)."""
    from attnlab.attribution.settings import ATTRIBUTION_METHOD_KEYS

    common = ("items", "layers", "objective", "dtype", "seed", "batch_rows")
    keys = [*common, *ATTRIBUTION_METHOD_KEYS[method]]
    return {"method": method, **{k: spec[k] for k in keys if k in spec}}


def score_file(
    model: Any,
    tokenizer: Any,
    *,
    data_paths: Sequence[str | os.PathLike[str]],
    variants: Sequence[str],
    spec: dict[str, Any],
    model_name: str,
    base: str,
    out_dir: str | os.PathLike[str],
    extra_metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Attribute the first ``spec["items"]`` items of each data file with every method in ``spec["methods"]``.

    Writes ``{out_dir}/{method}.parquet`` (scores) and ``{out_dir}/{method}_items.parquet`` (per item) for each
    method; returns ``{method: score DataFrame}``.

    Raises:
        ValueError: bad spec, data, or a model the gates do not support.
    """
    from attnlab.attribution.gates import gate_layout
    from attnlab.attribution.headig import METHODS, HeadIGSpec, attribute_items, item_table, score_table
    from attnlab.attribution.objectives import ObjectiveSpec, encode_items
    from attnlab.io import read_parquet, write_parquet

    if len(data_paths) != len(variants):
        raise ValueError(f"{len(data_paths)} data files but {len(variants)} variant names")
    unknown = [m for m in spec["methods"] if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown attribution method(s) {unknown}; choose from {list(METHODS)}")
    seed = int(spec.get("seed", 0))
    method_specs = {m: HeadIGSpec.from_config(spec, m, seed) for m in spec["methods"]}
    objective = ObjectiveSpec.from_config(spec.get("objective", {}), seed)
    layout = gate_layout(model)
    for method_spec in method_specs.values():
        method_spec.layer_range(layout.num_layers)  # fail before any work
    items = []
    n_items = int(spec.get("items", 32))
    for path, variant in zip(data_paths, variants):
        data = read_parquet(path).head(n_items)
        if data.empty:
            raise ValueError(f"{path}: no items")
        items += encode_items(model, tokenizer, data, objective, variant=variant, source=str(path))
    out = {}
    for method, method_spec in method_specs.items():

        def progress(index: int, result: Any) -> None:
            delta = result.completeness_delta if method != "michel" else float("nan")
            LOG.info(
                "%s item %d/%d %s: J(1)=%.4f J(α₀)=%.4f Σattr−ΔJ=%.2e (%.2f s)",
                method, index + 1, len(items), result.item_id, result.j_full, result.j_baseline, delta, result.seconds,
            )

        results = attribute_items(model, items, method_spec, objective, progress=progress)
        seconds = sum(r.seconds for r in results)
        LOG.info("%s on %d items: %.2f s (%.3f s per item)", method, len(results), seconds, seconds / len(results))
        scores = score_table(results, method_spec, layout, model=model_name, base=base)
        metadata = {
            "stage": "attribution",
            "model": model_name,
            "base": base,
            "variants": list(variants),
            "data": [str(p) for p in data_paths],
            "spec": method_spec_dict(spec, method),
            "gate_unit": layout.unit_name,
            "units_per_layer": layout.units_per_layer,
            "num_layers": layout.num_layers,
            "model_type": layout.model_type,
            "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
            "items": list(dict.fromkeys(item.item_id for item in items)),  # the validation stage measures others
            **(extra_metadata or {}),
        }
        write_parquet(scores, Path(out_dir) / f"{method}.parquet", metadata=metadata)
        write_parquet(item_table(results, method_spec, layout), Path(out_dir) / f"{method}_items.parquet", metadata=metadata)
        if method != "michel":
            LOG.info(
                "%s completeness: mean |delta| %.3g, relative %.3g",
                method, scores["completeness_delta_mean"].iloc[0], scores["relative_delta_mean"].iloc[0],
            )
        out[method] = scores
    return out


def _handle_score(args: argparse.Namespace) -> int:
    import torch

    from attnlab.attribution.gates import UnsupportedModelError
    from attnlab.models.loader import ModelNotAvailableError, load_model

    try:
        spec = parse_job_spec(args.spec)
        for path in args.data:
            if not Path(path).is_file():
                raise ValueError(f"--data {path}: no such file")
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
    except ValueError as error:
        print(f"attnlab attribution score: error: {error}", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        model, tokenizer = load_model(
            args.model, device=args.device, dtype=spec.get("dtype", "float32"),
            trust_remote_code=args.trust_remote_code, revision=args.revision, subfolder=args.subfolder,
            for_generation=False,
        )
    except (FileNotFoundError, ModelNotAvailableError, ValueError) as error:
        print(f"attnlab attribution score: error: --model {args.model}: {error}", file=sys.stderr)
        return 1
    try:
        score_file(
            model, tokenizer, data_paths=args.data, variants=args.variants, spec=spec, model_name=args.model_name,
            base=args.base, out_dir=args.out_dir,
            extra_metadata=model_provenance(args),
        )
    except (UnsupportedModelError, ValueError) as error:
        print(f"attnlab attribution score: error: {error}", file=sys.stderr)
        return 2
    return 0


def _handle_correlations(args: argparse.Namespace) -> int:
    from attnlab.attribution.report import correlation_markdown, correlation_table
    from attnlab.io import read_metadata, read_parquet, write_parquet, write_text

    try:
        tables = [read_parquet(path) for path in args.inputs]
        table = correlation_table(tables)
    except (OSError, ValueError) as error:
        print(f"attnlab attribution correlations: error: {error}", file=sys.stderr)
        return 2
    metadata = {"stage": "attribution", "inputs": list(args.inputs), "specs": {p: read_metadata(p).get("spec") for p in args.inputs}}
    write_parquet(table, args.out, metadata=metadata)
    if args.markdown:
        write_text(args.markdown, correlation_markdown(table))
    return 0


def _handle_heatmap(args: argparse.Namespace) -> int:
    from attnlab.attribution.report import plot_heatmap
    from attnlab.io import read_parquet

    try:
        plot_heatmap(read_parquet(args.scores), args.out)
    except (OSError, ValueError) as error:
        print(f"attnlab attribution heatmap: error: {error}", file=sys.stderr)
        return 2
    return 0


def _handle_report(args: argparse.Namespace) -> int:
    """Correlations table (+ Markdown) and one heatmap per scores file, in one process."""
    from attnlab.attribution.report import plot_heatmap
    from attnlab.io import read_parquet

    status = _handle_correlations(args)
    if status:
        return status
    for path in args.inputs:
        scores = read_parquet(path)
        model, base, method = (str(scores[c].iloc[0]) for c in ("model", "base", "method"))
        try:
            plot_heatmap(scores, Path(args.figures_dir) / f"{model}_{base}_{method}.png")
        except ValueError as error:
            print(f"attnlab attribution report: error: {path}: {error}", file=sys.stderr)
            return 2
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``attribution score|correlations|heatmap`` to the top-level parser."""
    parser = subparsers.add_parser(
        "attribution", help="HeadIG head attribution", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="attribution_command", required=True)
    score = sub.add_parser("score", help="per-head scores of one model with every method of the spec")
    add_model_arguments(score, dtype=False)
    score.add_argument("--data", required=True, nargs="+", help="data-stage Parquet file(s) of test items")
    score.add_argument("--variants", required=True, nargs="+", help="the variant name of each --data file")
    score.add_argument("--spec", required=True, type=json_object_arg, help="job spec JSON (or a JSON file)")
    score.add_argument("--model-name", required=True)
    score.add_argument("--base", required=True)
    score.add_argument("--out-dir", required=True, help="writes {method}.parquet and {method}_items.parquet here")
    score.set_defaults(func=_handle_score)
    corr = sub.add_parser("correlations", help="Spearman correlations between methods' scores")
    corr.add_argument("--inputs", required=True, nargs="+")
    corr.add_argument("--out", required=True)
    corr.add_argument("--markdown", default=None)
    corr.set_defaults(func=_handle_correlations)
    heat = sub.add_parser("heatmap", help="layer × head heatmap of one scores file")
    heat.add_argument("--scores", required=True)
    heat.add_argument("--out", required=True)
    heat.set_defaults(func=_handle_heatmap)
    rep = sub.add_parser("report", help="correlations table and every heatmap (figures-dir/{model}_{base}_{method}.png)")
    rep.add_argument("--inputs", required=True, nargs="+")
    rep.add_argument("--out", required=True, help="correlations Parquet")
    rep.add_argument("--markdown", default=None)
    rep.add_argument("--figures-dir", required=True)
    rep.set_defaults(func=_handle_report)

"""``attnlab attention``: attention allocation (KMI / NI / OC / SINK) stage by stage.

    attnlab attention measure --model LOCATION --data PARQUET... --variant NAME... --spec JSON --model-name NAME
                              --base NAME [--device auto] [--dtype auto] [--revision REV] [--trust-remote-code]
                              [--threads INT] [--mask-tokens N] --out PARQUET... --tokens-out PARQUET...
    attnlab attention tables  --inputs PARQUET... --out PARQUET [--seed 0] [--n-resamples 2000]
    attnlab attention figures --inputs PARQUET... --tokens PARQUET... --models NAME... --out-dir DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from attnlab.cli.convention import json_object_arg
from attnlab.cli.models import add_model_arguments, model_provenance

__all__ = ["register"]


def _measure(args: argparse.Namespace) -> int:
    """Load the model once, measure every (data, variant) pair, write one allocation + one token table per pair."""
    import torch

    from attnlab.attention.allocation import ALLOCATION_SCHEMA, TOKEN_MAP_SCHEMA, AllocationSpec, allocation_tables
    from attnlab.attention.capture import UnsupportedArchitectureError
    from attnlab.data.schema import read_dataset
    from attnlab.io import write_parquet
    from attnlab.models.loader import ModelNotAvailableError, load_model

    try:
        spec = AllocationSpec.from_dict(args.spec)
        lengths = {len(args.data), len(args.variant), len(args.out), len(args.tokens_out)}
        if len(lengths) != 1:
            raise ValueError("--data, --variant, --out and --tokens-out need the same number of values")
        for path in args.data:
            if not Path(path).is_file():
                raise ValueError(f"--data {path}: no such file")
        tables = [read_dataset(path) for path in args.data]
    except (ValueError, json.JSONDecodeError) as error:
        print(f"attnlab attention measure: error: {error}", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        model, tokenizer = load_model(
            args.model, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code,
            revision=args.revision, subfolder=args.subfolder,
        )
    except (FileNotFoundError, ModelNotAvailableError, ValueError) as error:
        print(f"attnlab attention measure: error: --model {args.model}: {error}", file=sys.stderr)
        return 1
    for data_path, data, variant, out, tokens_out in zip(args.data, tables, args.variant, args.out, args.tokens_out):
        try:
            allocation, tokens = allocation_tables(
                model, tokenizer, data, spec, model_name=args.model_name, base=args.base, variant=variant,
                mask_tokens=args.mask_tokens,
            )
        except UnsupportedArchitectureError as error:
            print(f"attnlab attention measure: error: --model {args.model}: {error}", file=sys.stderr)
            return 2
        except ValueError as error:
            print(f"attnlab attention measure: error: {data_path}: {error}", file=sys.stderr)
            return 2
        metadata = {
            "stage": "attention",
            "spec": {**spec.__dict__},
            "model": args.model_name,
            **model_provenance(args),
            "base": args.base,
            "variant": variant,
            "data": str(data_path),
            "mask_tokens": args.mask_tokens,
            "dtype": str(model.dtype).removeprefix("torch."),
            "prompt": "zero-shot (attnlab.prompts.build_prompt without exemplars)",
        }
        write_parquet(allocation, out, metadata=metadata, schema=ALLOCATION_SCHEMA)
        write_parquet(tokens, tokens_out, metadata=metadata, schema=TOKEN_MAP_SCHEMA)
        print(f"{variant}: wrote {len(allocation)} allocation rows ({allocation['item'].nunique()} items) to {out}")
    return 0


def _tables(args: argparse.Namespace) -> int:
    from attnlab.attention.aggregate import write_ratio_tables

    table = write_ratio_tables(args.inputs, args.out, n_resamples=args.n_resamples, seed=args.seed)
    print(f"wrote {len(table)} rows to {args.out}")
    return 0


def _figures(args: argparse.Namespace) -> int:
    """One NI heatmap and one token-map figure per model (``--out-dir/{model}_ni_heatmap.png``, ``_token_maps.png``)."""
    import pandas as pd

    from attnlab.attention.figures import plot_ni_heatmap, plot_token_maps
    from attnlab.io import read_parquet

    def combined(paths: list[str]) -> pd.DataFrame:
        frame = pd.concat([read_parquet(p) for p in paths], ignore_index=True)
        if frame["base"].nunique() > 1:  # one panel per base × variant
            frame["variant"] = frame["base"] + "/" + frame["variant"]
        return frame

    allocation, tokens = combined(args.inputs), combined(args.tokens)
    out_dir = Path(args.out_dir)
    for model in args.models:
        rows = allocation[allocation["model"] == model]
        if rows.empty:
            print(f"attnlab attention figures: error: no allocation rows for model {model!r}", file=sys.stderr)
            return 2
        plot_ni_heatmap(rows, out_dir / f"{model}_ni_heatmap.png")
        plot_token_maps(tokens[tokens["model"] == model], out_dir / f"{model}_token_maps.png")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``attention measure|tables|figures`` to the top-level ``attnlab`` parser."""
    parser = subparsers.add_parser(
        "attention", help="attention allocation on KMI / NI / OC / SINK tokens", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="attention_command", required=True)

    measure = sub.add_parser("measure", help="class masses per item × layer × head of one model on one data table")
    add_model_arguments(measure)
    measure.add_argument("--data", nargs="+", required=True, help="data-stage Parquet tables (key_spans, noise_spans)")
    measure.add_argument("--spec", required=True, type=json_object_arg, help="the attention config section as JSON (or a JSON file)")
    measure.add_argument("--model-name", required=True)
    measure.add_argument("--base", required=True)
    measure.add_argument("--variant", nargs="+", required=True, help="one label per --data table")
    measure.add_argument("--mask-tokens", type=int, default=0,
                         help="masked-diffusion LMs: <mask> tokens after the prompt (the answer length)")
    measure.add_argument("--out", nargs="+", required=True, help="allocation Parquet, one per --data table")
    measure.add_argument("--tokens-out", nargs="+", required=True, help="token-level Parquet, one per --data table")
    measure.set_defaults(func=_measure)

    tables = sub.add_parser("tables", help="ratio table with bootstrap intervals (+ .csv, .md)")
    tables.add_argument("--inputs", nargs="+", required=True)
    tables.add_argument("--out", required=True)
    tables.add_argument("--seed", type=int, default=0)
    tables.add_argument("--n-resamples", type=int, default=2000)
    tables.set_defaults(func=_tables)

    figures = sub.add_parser("figures", help="NI heatmap and token-level maps, one pair per model")
    figures.add_argument("--inputs", nargs="+", required=True, help="allocation Parquet files")
    figures.add_argument("--tokens", nargs="+", required=True, help="token-level Parquet files")
    figures.add_argument("--models", nargs="+", required=True, help="models to draw")
    figures.add_argument("--out-dir", required=True, help="writes {model}_ni_heatmap.png and {model}_token_maps.png")
    figures.set_defaults(func=_figures)

"""``attnlab evaluate``: greedy pass@1 of one model on one dataset, written as a Parquet table.

    attnlab evaluate --model LOCATION --data PARQUET [--train PARQUET] --spec JSON
                     --model-name NAME --base NAME --variant NAME
                     [--device auto] [--dtype auto] [--trust-remote-code] [--revision REV]
                     [--threads INT] [--progress] --out PARQUET
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from attnlab.cli.convention import json_object_arg
from attnlab.cli.models import add_model_arguments, model_provenance
from attnlab.evaluate.evaluate import EVAL_SCHEMA, evaluate_items, normalize_eval_spec
from attnlab.evaluate.fewshot import exemplar_positions, select_exemplars
from attnlab.io import read_parquet, write_parquet

__all__ = ["evaluate_file", "parse_spec", "register"]


def parse_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The eval spec of ``--spec`` (a JSON object, :func:`attnlab.cli.convention.json_object_arg`), checked and
    normalised (:func:`attnlab.evaluate.evaluate.normalize_eval_spec`)."""
    return normalize_eval_spec(spec)


def evaluate_file(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    data_path: str | os.PathLike[str],
    train_path: str | os.PathLike[str] | None,
    spec: dict[str, Any],
    model_name: str,
    base: str,
    variant: str,
    out: str | os.PathLike[str],
    extra_metadata: dict[str, Any] | None = None,
    progress: bool = False,
) -> None:
    """Evaluate ``model`` on the items in ``data_path`` and write the result table to ``out``.

    Few-shot exemplars come from ``train_path`` (required when ``spec["num_fewshot"] > 0``). The Parquet
    metadata records the normalised spec, the labels, the input paths as given and the exemplar ids.

    Raises:
        ValueError: for a bad spec, a missing ``train_path`` with ``num_fewshot > 0``, or bad data.
    """
    spec = normalize_eval_spec(spec)
    k = spec["num_fewshot"]
    exemplar_ids: list[str] = []
    if k > 0:
        if train_path is None:
            raise ValueError(f"eval spec num_fewshot={k} needs --train PARQUET to draw few-shot exemplars from")
        train = read_parquet(train_path)
        exemplars = select_exemplars(train, k, spec["fewshot_seed"], source=str(train_path))
        if "id" in train.columns:
            positions = exemplar_positions(len(train), k, spec["fewshot_seed"])
            exemplar_ids = [str(train["id"].iloc[p]) for p in positions]
    else:
        exemplars = []
    data = read_parquet(data_path)
    try:
        table = evaluate_items(
            model, tokenizer, data, spec, exemplars, model_name=model_name, base=base, variant=variant,
            progress=progress,
        )
    except ValueError as error:
        raise ValueError(f"{data_path}: {error}") from error
    metadata = {
        "stage": "evaluate",
        "eval_spec": spec,
        "model": model_name,
        "base": base,
        "variant": variant,
        "data": str(data_path),
        "train": None if train_path is None else str(train_path),
        "exemplar_ids": exemplar_ids,
        "dtype": str(model.dtype).removeprefix("torch."),
        **(extra_metadata or {}),
    }
    write_parquet(table, out, metadata=metadata, schema=EVAL_SCHEMA)


def _handle_evaluate(args: argparse.Namespace) -> int:
    """Load the model, evaluate, write ``--out``.

    Returns 0 on success, 2 for bad arguments / spec / data (one line on stderr), 1 when the model cannot be loaded.
    """
    from attnlab.models.loader import ModelNotAvailableError, load_model  # imported only when run

    try:
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        spec = parse_spec(args.spec)
        if spec["num_fewshot"] > 0 and args.train is None:
            raise ValueError(f"--train PARQUET is required when num_fewshot > 0 (spec has {spec['num_fewshot']})")
        for flag, path in (("--data", args.data), ("--train", args.train)):
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{flag} {path}: no such file")
    except ValueError as error:
        print(f"attnlab evaluate: error: {error}", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        model, tokenizer = load_model(
            args.model,
            device=args.device,
            dtype=args.dtype,
            trust_remote_code=args.trust_remote_code,
            revision=args.revision, subfolder=args.subfolder,
        )
    except (FileNotFoundError, ModelNotAvailableError, ValueError) as error:
        print(f"attnlab evaluate: error: --model {args.model}: {error}", file=sys.stderr)
        return 1
    try:
        evaluate_file(
            model,
            tokenizer,
            data_path=args.data,
            train_path=args.train,
            spec=spec,
            model_name=args.model_name,
            base=args.base,
            variant=args.variant,
            out=args.out,
            extra_metadata=model_provenance(args),
            progress=args.progress,
        )
    except ValueError as error:
        print(f"attnlab evaluate: error: {error}", file=sys.stderr)
        return 2
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand to the top-level ``attnlab`` parser."""
    parser = subparsers.add_parser(
        "evaluate",
        help="greedy pass@1 of a model on a dataset (Parquet in, Parquet out)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_arguments(parser)
    parser.add_argument("--data", required=True, help="data-stage Parquet table of test items")
    parser.add_argument("--train", default=None, help="train-split Parquet for few-shot exemplars (num_fewshot > 0)")
    parser.add_argument("--spec", required=True, type=json_object_arg, help="eval spec as JSON (or a JSON file)")
    parser.add_argument("--model-name", required=True, help="label written to the 'model' column")
    parser.add_argument("--base", required=True, help="base dataset label written to the 'base' column")
    parser.add_argument("--variant", required=True, help="noise variant label written to the 'variant' column")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    parser.add_argument("--out", required=True, help="output Parquet path")
    parser.set_defaults(func=_handle_evaluate)

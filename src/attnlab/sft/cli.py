"""``attnlab sft`` subcommands.

``attnlab sft data --train TRAIN.parquet --spec JSON --out SFT.parquet``
    The SFT training set of a recipe (:func:`attnlab.sft.data.build_sft_set`); the spec is
    ``{"samples", "noise_mix", "seed", ...}``. Metadata: the spec, the train file's data spec.

``attnlab sft train --model LOCATION --data SFT.parquet --spec JSON --out DIR --curve C.parquet --curve-plot C.png``
    Fine-tune a model on it (:func:`attnlab.sft.train.finetune`); resumes from
    ``.{DIR}.ckpt/`` if a previous run of the same job was killed.
"""

from __future__ import annotations

import argparse
import sys

from attnlab.cli.convention import json_object_arg
from attnlab.cli.models import add_model_arguments


def run_data(args: argparse.Namespace) -> int:
    from attnlab.data.schema import read_dataset, write_dataset
    from attnlab.io import read_metadata
    from attnlab.sft.data import build_sft_set

    table = build_sft_set(read_dataset(args.train), args.spec)
    source = read_metadata(args.train)
    metadata = {"stage": "sft", "recipe": args.spec, "source_spec": source.get("spec"), "source_seed": source.get("seed")}
    write_dataset(table, args.out, metadata)
    counts = table["noise_type"].value_counts().to_dict()
    print(f"wrote {len(table)} SFT problems {counts} to {args.out}", file=sys.stderr)
    return 0


def run_train(args: argparse.Namespace) -> int:
    from attnlab.data.schema import read_dataset
    from attnlab.sft.train import finetune

    curve, _, _ = finetune(
        args.model,
        read_dataset(args.data),
        args.spec,
        args.out,
        device=args.device,
        threads=args.threads,
        trust_remote_code=args.trust_remote_code,
        revision=args.revision, subfolder=args.subfolder,
        curve_path=args.curve,
        curve_plot_path=args.curve_plot,
        progress=not args.no_progress,
        stop_after_steps=args.stop_after_steps,
        name=args.name,
    )
    val = curve[curve.split == "validation"].loss
    steps = int(curve.step.max())
    print(f"sft: {steps} steps, validation answer loss {val.iloc[0]:.3f} -> {val.iloc[-1]:.3f} -> {args.out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``sft data`` and ``sft train`` to the top-level ``attnlab`` parser."""
    sft = subparsers.add_parser("sft", help="supervised fine-tuning: training sets and fine-tuned models")
    commands = sft.add_subparsers(dest="sft_command", metavar="{data,train}", required=True)

    data = commands.add_parser("data", help="build a recipe's SFT training set from a train split")
    data.add_argument("--train", required=True, help="clean train-split data table (attnlab data base --split train)")
    data.add_argument("--spec", required=True, type=json_object_arg, help='JSON {"samples": N|null, "noise_mix": {...}, "seed": S}')
    data.add_argument("--out", required=True, help="output .parquet")
    data.set_defaults(func=run_data)

    train = commands.add_parser("train", help="fine-tune a model on an SFT training set")
    add_model_arguments(train, dtype=False)
    train.add_argument("--data", required=True, help="SFT training set (attnlab sft data)")
    train.add_argument("--spec", required=True, type=json_object_arg, help="JSON resolved recipe (attnlab.study.models.sft_recipe)")
    train.add_argument("--out", required=True, help="output model folder (save_pretrained)")
    train.add_argument("--curve", default=None, help="loss-curve Parquet")
    train.add_argument("--curve-plot", default=None, help="loss-curve PNG")
    train.add_argument("--name", default=None, help="label for the progress bar and plot")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.add_argument("--stop-after-steps", type=int, default=None, help=argparse.SUPPRESS)
    train.set_defaults(func=run_train)

"""``attnlab data`` subcommands.

``attnlab data base --spec JSON --split {train,test} --seed INT [--n INT] --out PATH``
    Load a base dataset and write it as a clean data table (DATA_SCHEMA, noise_type
    "clean"). Parquet metadata: ``{"stage": "data", "spec", "split", "seed", "n",
    "noise_type": "clean"}``.

``attnlab data noise --input clean.parquet --noise-type NAME --seed INT --out PATH``
    Insert noise into a clean data table. Metadata: the input's ``spec``, ``split``,
    ``seed`` (the base dataset's seed) and ``n``, plus ``noise_type`` and ``noise_seed``.

Same arguments give byte-identical files.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from attnlab.cli.convention import json_object_arg
from attnlab.data.noise import apply_noise
from attnlab.data.registry import available_noise_types, load_base_dataset
from attnlab.data.schema import read_dataset, write_dataset
from attnlab.io import read_metadata


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 (items to keep), got {value}")
    return value


def _reports_data_errors(run):
    """A data subcommand whose malformed input (:class:`DataFormatError`, ``FILE: line N: what``) ends the
    command with that one line on stderr and exit status 2 instead of a traceback."""
    import functools

    from attnlab.data.errors import DataFormatError

    @functools.wraps(run)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except DataFormatError as err:
            print(f"attnlab: error: {err}", file=sys.stderr)
            return 2

    return wrapper


@_reports_data_errors
def run_base(args: argparse.Namespace) -> int:
    frame = load_base_dataset(args.spec, args.split, args.seed, args.n)
    table = apply_noise(frame, "clean", args.seed)
    metadata = {"stage": "data", "spec": args.spec, "split": args.split, "seed": args.seed, "n": args.n, "noise_type": "clean"}
    write_dataset(table, args.out, metadata)
    print(f"wrote {len(table)} {args.split} items to {args.out}", file=sys.stderr)
    return 0


@_reports_data_errors
def run_noise(args: argparse.Namespace) -> int:
    if args.noise_type not in available_noise_types():
        print(f"error: unknown noise type {args.noise_type!r}; known: {', '.join(available_noise_types())}", file=sys.stderr)
        return 2
    table = read_dataset(args.input)
    source = read_metadata(args.input)
    noisy = apply_noise(table, args.noise_type, args.seed)
    metadata = {
        "stage": "data",
        "spec": source.get("spec"),
        "split": source.get("split"),
        "seed": source.get("seed"),
        "n": source.get("n"),
        "noise_type": args.noise_type,
        "noise_seed": args.seed,
    }
    write_dataset(noisy, args.out, metadata)
    print(f"wrote {len(noisy)} {args.noise_type} items to {args.out}", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data base`` and ``data noise`` to the top-level ``attnlab`` parser."""
    data = subparsers.add_parser("data", help="build base datasets and noisy variants")
    commands = data.add_subparsers(dest="data_command", metavar="{base,noise}", required=True)

    base = commands.add_parser("base", help="load a base dataset and write it as a clean data table")
    base.add_argument("--spec", type=json_object_arg, required=True, help='dataset spec as JSON, e.g. \'{"loader": "synthetic", ...}\'')
    base.add_argument("--split", choices=("train", "test"), required=True)
    base.add_argument("--seed", type=int, required=True)
    base.add_argument("--n", type=_positive_int, default=None, help="keep only the first N items")
    base.add_argument("--out", required=True, help="output .parquet path")
    base.set_defaults(func=run_base)

    noise = commands.add_parser("noise", help="insert noise into a clean data table")
    noise.add_argument("--input", required=True, help="clean data table (.parquet) from `attnlab data base`")
    noise.add_argument("--noise-type", required=True, help="inf, rcs, sd, clean or a registered type")
    noise.add_argument("--seed", type=int, required=True)
    noise.add_argument("--out", required=True, help="output .parquet path")
    noise.set_defaults(func=run_noise)


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point (``python -m attnlab.data.cli data base …``)."""
    parser = argparse.ArgumentParser(prog="attnlab")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())

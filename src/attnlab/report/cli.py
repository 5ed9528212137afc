"""``attnlab report`` subcommands.

::

    attnlab report tables  --inputs EVAL.parquet [EVAL.parquet ...] --out-dir DIR [--confidence 0.95]
    attnlab report figures --tables-dir DIR --out-dir DIR [--metric strict|flexible]

``tables`` writes ``accuracy``, ``robustness`` and ``mcnemar`` as ``.parquet``
(with the inputs and confidence level in the file metadata), ``.csv`` and
``.md``; ``figures`` reads ``accuracy.parquet`` and ``robustness.parquet`` from
the tables folder and writes ``accuracy.png`` and ``robustness.png``.

    attnlab report sft --inputs EVAL.parquet [...] --out-dir DIR [--figure sft.png]

``sft`` writes ``sft.parquet/.csv/.md``: each fine-tuned model (``m+sft-r``) against
its zero-shot base ``m`` on the same items (gain, Newcombe interval, exact McNemar).

    attnlab report robustness-difference --inputs EVAL.parquet [...] --models JSON --parquet P --markdown M

``robustness-difference`` writes the DiffLlama − Llama difference of noise drops per noise type with its paired
interval and Holm-adjusted test (:mod:`attnlab.report.robustness`); ``--models`` is
``{model: {"base_model", "architecture", "seed", "recipe"}}`` for the evaluated models, ``--pairs``
``[[differential, standard], ...]`` or ``null`` (pair by architecture).

    attnlab report seeds --inputs EVAL.parquet [...] --groups JSON --out-dir DIR [--seed N] [--n-resamples R]

``seeds`` writes ``seeds_accuracy``, ``seeds_robustness`` and ``seeds_comparison`` (``.parquet``, ``.csv``) and
``seeds.md``: pass@1 and the drop pooled over training seeds (:mod:`attnlab.report.seeds`).

    attnlab report summary --results DIR --out FILE.md [--device auto|cpu|cuda]

``summary`` writes one page from a finished study's results folder: the run (date, commit, machine, CPU and wall
time from the benchmark files), the pooled headline, the accuracy table, one verdict sentence per row of each test
table and links to every output (:mod:`attnlab.report.summary`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from attnlab.cli.convention import EXIT_BAD_INPUT, error_message
from attnlab.io import read_parquet
from attnlab.report.figures import plot_accuracy, plot_robustness, plot_sft_gain
from attnlab.report.tables import METRIC_COLUMNS, accuracy_tables, sft_gain_table, write_tables


def _fail(command: str, error: Exception) -> int:
    """Bad input (a missing or malformed evaluation file): the convention's message and exit code 2."""
    print(error_message(f"attnlab report {command}", error), file=sys.stderr)
    return EXIT_BAD_INPUT


def _read_evaluations(sources: list[str]) -> list["pandas.DataFrame"]:
    """The per-sample evaluation tables, in order; a missing file is a ``FileNotFoundError`` naming it."""
    frames = []
    for source in sources:
        if not Path(source).is_file():
            raise FileNotFoundError(f"{source}: evaluation file not found")
        frames.append(read_parquet(source))
    return frames


def run_tables(args: argparse.Namespace) -> int:
    """Handler of ``attnlab report tables``."""
    sources = [os.fspath(path) for path in args.inputs]
    try:
        frames = _read_evaluations(sources)
        tables = accuracy_tables(frames, sources=sources, confidence=args.confidence)
        write_tables(tables, args.out_dir, metadata={"inputs": sources, "confidence": args.confidence})
    except (ValueError, FileNotFoundError) as error:
        return _fail("tables", error)
    return 0


def run_figures(args: argparse.Namespace) -> int:
    """Handler of ``attnlab report figures``."""
    tables_dir, out_dir = Path(args.tables_dir), Path(args.out_dir)
    try:
        for name in ("accuracy", "robustness"):
            table_path = tables_dir / f"{name}.parquet"
            if not table_path.is_file():
                raise FileNotFoundError(f"{table_path}: table not found (run `attnlab report tables`)")
        plot_accuracy(read_parquet(tables_dir / "accuracy.parquet"), out_dir / "accuracy.png", metric=args.metric)
        plot_robustness(read_parquet(tables_dir / "robustness.parquet"), out_dir / "robustness.png", metric=args.metric)
    except (ValueError, FileNotFoundError) as error:
        return _fail("figures", error)
    return 0


def run_sft(args: argparse.Namespace) -> int:
    """Handler of ``attnlab report sft``: the zero-shot vs SFT table (``sft.*``) and its figure."""
    sources = [os.fspath(path) for path in args.inputs]
    try:
        frames = _read_evaluations(sources)
        table = sft_gain_table(frames, sources=sources, confidence=args.confidence)
        write_tables({"sft": table}, args.out_dir, metadata={"inputs": sources, "confidence": args.confidence})
        if args.figure:
            plot_sft_gain(table, args.figure, metric=args.metric)
    except (ValueError, FileNotFoundError) as error:
        return _fail("sft", error)
    return 0


def run_robustness_difference(args: argparse.Namespace) -> int:
    """Handler of ``attnlab report robustness-difference``."""
    from attnlab.report.robustness import drop_difference_table, write_drop_difference

    sources = [os.fspath(path) for path in args.inputs]
    try:
        frames = _read_evaluations(sources)
        table = drop_difference_table(frames, args.models, pairs=args.pairs, confidence=args.confidence, seed=args.seed)
        write_drop_difference(table, args.parquet, args.markdown,
                              metadata={"inputs": sources, "models": args.models, "confidence": args.confidence})
    except (ValueError, FileNotFoundError, KeyError) as error:
        return _fail("robustness-difference", error)
    return 0


def _pairs(text: str) -> list[list[str]] | None:
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"--pairs is not valid JSON ({err.msg}): {text!r}") from None
    if value is None:
        return None
    if not (isinstance(value, list) and all(isinstance(p, list) and len(p) == 2 and all(isinstance(n, str) for n in p)
                                            for p in value)):
        raise argparse.ArgumentTypeError(f"--pairs must be null or a list of [name, name] pairs, got {text!r}")
    return value


def run_seeds(args: argparse.Namespace) -> int:
    """Handler of ``attnlab report seeds``: tables pooled over training seeds."""
    from attnlab.report.seeds import seed_tables, write_seed_tables

    sources = [os.fspath(path) for path in args.inputs]
    try:
        frames = _read_evaluations(sources)
        groups = {name: [(str(m), int(s)) for m, s in members] for name, members in args.groups.items()}
        tables = seed_tables(frames, groups, sources=sources, n_resamples=args.n_resamples,
                             confidence=args.confidence, seed=args.seed)
        write_seed_tables(tables, args.out_dir, metadata={"inputs": sources, "groups": args.groups,
                                                          "confidence": args.confidence, "seed": args.seed,
                                                          "n_resamples": args.n_resamples})
    except (ValueError, FileNotFoundError) as error:
        return _fail("seeds", error)
    return 0


def run_summary(args: argparse.Namespace) -> int:
    """Handler of ``attnlab report summary``: ``results/summary.md`` from the study's tables."""
    from attnlab.report.summary import write_summary

    write_summary(args.results, args.out, device=args.device)
    return 0


def _confidence(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"confidence must be strictly between 0 and 1, got {text}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``report tables`` and ``report figures`` to the top-level ``attnlab`` parser."""
    report = subparsers.add_parser("report", help="aggregate tables and figures from evaluation results")
    commands = report.add_subparsers(
        dest="report_command", required=True, metavar="{tables,figures,sft,robustness-difference,seeds,summary}"
    )

    tables = commands.add_parser(
        "tables", help="accuracy / robustness / mcnemar tables (.parquet, .csv, .md) from per-sample eval files"
    )
    tables.add_argument("--inputs", nargs="+", required=True, metavar="PARQUET", help="per-sample evaluation files")
    tables.add_argument("--out-dir", required=True, help="folder for accuracy.*, robustness.*, mcnemar.*")
    tables.add_argument(
        "--confidence", type=_confidence, default=0.95, help="two-sided level of every interval (default 0.95)"
    )
    tables.set_defaults(func=run_tables)

    figures = commands.add_parser("figures", help="accuracy.png and robustness.png from the tables")
    figures.add_argument("--tables-dir", required=True, help="folder holding accuracy.parquet and robustness.parquet")
    figures.add_argument("--out-dir", required=True, help="folder for accuracy.png and robustness.png")
    figures.add_argument(
        "--metric", choices=list(METRIC_COLUMNS), default="strict", help="answer-matching metric to plot"
    )
    figures.set_defaults(func=run_figures)

    sft = commands.add_parser("sft", help="zero-shot vs SFT gain table (sft.parquet/.csv/.md) and figure")
    sft.add_argument("--inputs", nargs="+", required=True, metavar="PARQUET", help="per-sample evaluation files")
    sft.add_argument("--out-dir", required=True, help="folder for sft.parquet, sft.csv, sft.md")
    sft.add_argument("--figure", default=None, help="PNG of the gains (optional)")
    sft.add_argument("--confidence", type=_confidence, default=0.95, help="two-sided level of every interval")
    sft.add_argument("--metric", choices=list(METRIC_COLUMNS), default="strict", help="metric plotted in the figure")
    sft.set_defaults(func=run_sft)

    from attnlab.cli.convention import json_object_arg

    diff = commands.add_parser(
        "robustness-difference", help="DiffLlama − Llama difference of noise drops, paired interval and Holm test"
    )
    diff.add_argument("--inputs", nargs="+", required=True, metavar="PARQUET", help="per-sample evaluation files")
    diff.add_argument("--models", required=True, type=json_object_arg,
                      help='JSON {model: {"base_model", "architecture", "seed", "recipe"}}')
    diff.add_argument("--pairs", type=_pairs, default=None,
                      help='JSON [[differential, standard], ...] of base model names, or null = pair by architecture')
    diff.add_argument("--parquet", required=True, help="output table (Parquet)")
    diff.add_argument("--markdown", required=True, help="output table with the verdict sentences (Markdown)")
    diff.add_argument("--confidence", type=_confidence, default=0.95, help="two-sided level of every interval")
    diff.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    diff.set_defaults(func=run_robustness_difference)

    seeds = commands.add_parser("seeds", help="pass@1 and robustness pooled over training seeds (seeds_*.parquet, seeds.md)")
    seeds.add_argument("--inputs", nargs="+", required=True, metavar="PARQUET", help="per-sample evaluation files")
    seeds.add_argument("--groups", required=True, type=json_object_arg, help='JSON {"llama": [["llama", 1234], ["llama-seed1", 1]], ...}')
    seeds.add_argument("--out-dir", required=True, help="folder for seeds_*.parquet/.csv and seeds.md")
    seeds.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    seeds.add_argument("--n-resamples", type=int, default=2000, help="bootstrap resamples")
    seeds.add_argument("--confidence", type=_confidence, default=0.95, help="two-sided level of every interval")
    seeds.set_defaults(func=run_seeds)

    summary = commands.add_parser("summary", help="one page of the study (summary.md) from its tables")
    summary.add_argument("--results", required=True, help="the study's results folder")
    summary.add_argument("--out", required=True, help="output Markdown file (written atomically)")
    summary.add_argument("--device", default="auto", help="the study's device setting, resolved on this machine")
    summary.set_defaults(func=run_summary)

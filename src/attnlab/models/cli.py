"""``attnlab models ...``: tokenizer training, scratch pretraining, parameter counts."""

from __future__ import annotations

import argparse
from pathlib import Path

from attnlab.cli.convention import json_object_arg


def _read_corpus(path: str):
    from attnlab.io import read_parquet

    if not Path(path).is_file():
        raise FileNotFoundError(f"corpus file {path} does not exist")
    return read_parquet(path)


def _cmd_tokenizer(args: argparse.Namespace) -> int:
    from attnlab.models.pretrain import corpus_documents
    from attnlab.models.tokenizer import save_tokenizer, train_tokenizer

    documents = corpus_documents(_read_corpus(args.corpus))
    tokenizer = train_tokenizer(documents, args.vocab_size)
    save_tokenizer(tokenizer, args.out)
    print(f"tokenizer: {len(tokenizer)} tokens from {len(documents)} documents -> {args.out}")
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from attnlab.models.loader import resolve_device
    from attnlab.models.pretrain import extra_corpus_documents, pretrain, read_training_info

    extra_documents = [doc for path in args.extra_corpus for doc in extra_corpus_documents(_read_corpus(path), path)]
    curve = pretrain(
        args.spec,
        args.train_spec,
        args.tokenizer,
        _read_corpus(args.corpus),
        args.seed,
        args.out,
        args.threads,
        curve_path=args.curve,
        curve_plot_path=args.curve_plot,
        progress=not args.no_progress,
        extra_documents=extra_documents,
        device=resolve_device(args.device),
        init_from=args.init_from,
    )
    info = read_training_info(args.out)
    val = curve[curve.split == "validation"].loss
    print(
        f"{info['architecture']}: {info['num_parameters']:,} parameters, {info['train']['steps']} steps in "
        f"{info['wall_seconds']:.1f} s, validation loss {val.iloc[0]:.3f} -> {val.iloc[-1]:.3f} -> {args.out}"
    )
    return 0


def _cmd_params(args: argparse.Namespace) -> int:
    from attnlab.models.pretrain import validate_architecture_spec
    from attnlab.models.registry import build_scratch_config, count_parameters
    from attnlab.models.tokenizer import load_tokenizer

    architecture, size = validate_architecture_spec(args.spec)
    config = build_scratch_config(architecture, size, load_tokenizer(args.tokenizer), args.spec.get("head_norm"))
    print(count_parameters(config))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``models`` with subcommands ``tokenizer``, ``pretrain`` and ``params``."""
    models = subparsers.add_parser("models", help="scratch tokenizer, pretraining, parameter counts")
    sub = models.add_subparsers(dest="models_command", required=True)

    tok = sub.add_parser("tokenizer", help="train the shared byte-level BPE tokenizer on a corpus")
    tok.add_argument("--corpus", required=True, help="Parquet with question/answer columns")
    tok.add_argument("--vocab-size", required=True, type=int, help="total vocabulary size (>= 261)")
    tok.add_argument("--out", required=True, help="output tokenizer folder")
    tok.set_defaults(func=_cmd_tokenizer)

    pre = sub.add_parser("pretrain", help="pretrain a scratch model on the corpus")
    pre.add_argument("--spec", required=True, type=json_object_arg, help='JSON scratch model entry {"architecture": NAME, "hidden_size": ..., ...}')
    pre.add_argument("--train-spec", required=True, type=json_object_arg, help="JSON train settings")
    pre.add_argument("--tokenizer", required=True, help="tokenizer folder")
    pre.add_argument("--corpus", required=True, help="Parquet with question/answer columns")
    pre.add_argument("--extra-corpus", nargs="*", default=[], help="Parquet files with a 'text' column mixed into the corpus")
    pre.add_argument("--seed", required=True, type=int)
    pre.add_argument("--device", default="cpu", help="auto (CUDA when visible), cpu, cuda, cuda:N (default cpu)")
    pre.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    pre.add_argument("--out", required=True, help="output model folder (save_pretrained)")
    pre.add_argument("--curve", required=True, help="loss-curve Parquet")
    pre.add_argument("--curve-plot", required=True, help="loss-curve PNG")
    pre.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    pre.add_argument("--init-from", default=None, help="mdlm only: a trained scratch llama folder to start from")
    pre.set_defaults(func=_cmd_pretrain)

    par = sub.add_parser("params", help="print the parameter count of a scratch spec")
    par.add_argument("--spec", required=True, type=json_object_arg, help='JSON scratch model entry {"architecture": NAME, "hidden_size": ..., ...}')
    par.add_argument("--tokenizer", required=True, help="tokenizer folder")
    par.set_defaults(func=_cmd_params)

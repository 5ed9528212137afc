"""The ``attnlab`` command line: one subcommand per workflow stage.

Every Snakemake rule is one of these calls, so a person can run the study
stage by stage::

    attnlab config check config.yaml
    attnlab data base --spec '{"loader": "synthetic", "train_size": 2000, "test_size": 100}' \\
        --split test --seed 1 --out results/data/synthetic/clean.parquet
    attnlab data noise --input results/data/synthetic/clean.parquet --noise-type inf --seed 1 \\
        --out results/data/synthetic/inf.parquet
    attnlab models tokenizer ...   attnlab models pretrain ...
    attnlab evaluate ...           attnlab report tables ...   attnlab report figures ...

Exit codes and error messages follow one convention (:mod:`attnlab.cli.convention`): 0 success, 1 runtime
failure, 2 bad input, with ``attnlab <command> <subcommand>: error: <what>``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Sequence

from attnlab import __version__
from attnlab.cli.convention import EXIT_BAD_INPUT, run_command
from attnlab.stages import STAGES


def _config_check(args: argparse.Namespace) -> int:
    from attnlab.config import validate_config
    from attnlab.study.items import item_notes
    from attnlab.study.schema import ConfigError, load_yaml
    from attnlab.study.selections import n_test_items, selected_datasets, selected_models, selected_variants

    try:
        raw = load_yaml(args.configfile)
    except ConfigError as err:  # the message is already "FILE: line N: what"
        print(f"attnlab: error: {err}", file=sys.stderr)
        return 2
    try:
        config = validate_config(raw, base_dir=args.base_dir)
    except ConfigError as err:
        print(f"{args.configfile}: {err}", file=sys.stderr)
        return 2
    summary = {
        "study": config["study"],
        "models": selected_models(config),
        "datasets": selected_datasets(config),
        "variants": selected_variants(config),
        "test_items_per_dataset": n_test_items(config) or "all",
        "notes": item_notes(config),
    }
    print(json.dumps(summary, indent=2))
    return 0


def _register_config(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("config", help="validate a study config")
    sub = parser.add_subparsers(dest="config_command", required=True)
    check = sub.add_parser("check", help="validate a config file against the schema and print its selections")
    check.add_argument("configfile", help="a study config YAML (e.g. config.yaml)")
    check.add_argument("--base-dir", default=".", help="folder relative dataset paths are resolved against")
    check.set_defaults(func=_config_check)


#: subcommand -> module whose ``register(subparsers)`` adds it: the data and evaluation commands, every stage of
#: the registry (:data:`attnlab.stages.STAGES`, module ``attnlab.<stage>.cli``), then the tools. Imported only
#: when needed, so that e.g. ``attnlab data`` does not pay for importing torch.
STAGE_MODULES = {
    "data": "attnlab.data.cli",
    "evaluate": "attnlab.evaluate.cli",
    **{name: f"attnlab.{name}.cli" for name, _ in STAGES},
    "prefetch": "attnlab.tools.prefetch",
    "doctor": "attnlab.tools.doctor",
    "generate": "attnlab.tools.generate",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; with ``command`` only that stage's subcommands are registered."""
    import importlib

    parser = argparse.ArgumentParser(prog="attnlab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"attnlab {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--plugin", action="append", default=[], metavar="MODULE",
        help="import MODULE first (it may register datasets / noise types); repeatable; also $ATTNLAB_PLUGINS",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    _register_config(subparsers)
    for name, module in STAGE_MODULES.items():
        if command is None or command == name:
            importlib.import_module(module).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for i, a in enumerate(argv) if not a.startswith("-") and argv[i - 1 : i] != ["--plugin"]), None)
    parser = build_parser(command if command in STAGE_MODULES else None)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from attnlab.tools.plugins import PluginError, import_plugins, plugins_from_env

    try:
        import_plugins(plugins_from_env())
        import_plugins(args.plugin, where="--plugin")
    except PluginError as err:
        print(f"attnlab: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return run_command(args.func, args)


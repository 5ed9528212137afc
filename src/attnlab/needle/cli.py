"""``attnlab needle ...``: the needle-in-a-haystack stage, step by step.

::

    attnlab needle corpus --spec JSON --seed N --out results/corpus/needle.parquet
    attnlab needle probe  --model results/models/llama --model-name llama --spec JSON --seed N --out results/needle/llama.parquet
    attnlab needle table  --inputs results/needle/*.parquet --models JSON --spec JSON --table T.parquet \\
                          --comparison C.parquet --markdown T.md
    attnlab needle figure --table results/tables/needle_depth.parquet --out results/figures/needle_depth.png
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

from attnlab.cli.convention import json_object_arg
from attnlab.cli.models import add_model_arguments, model_provenance

logger = logging.getLogger(__name__)


def haystack_sentences(haystack: dict[str, Any]):
    """(resources, filler sentences) for a ``needle.haystack`` spec (``source: resources`` or ``hub``)."""
    from attnlab.needle.resources import load_hub_haystack, load_needle_resources

    resources = load_needle_resources()
    source = haystack.get("source", "resources")
    if source == "resources":
        return resources, resources.filler
    if source == "hub":
        return resources, load_hub_haystack(
            haystack.get("hub_id", "wikitext"), haystack.get("hub_config"), haystack.get("split", "test")
        )
    raise ValueError(f"needle.haystack.source must be 'resources' or 'hub', got {source!r}")


def _cmd_corpus(args: argparse.Namespace) -> int:
    from attnlab.io import write_parquet
    from attnlab.needle.items import corpus_documents

    spec = args.spec
    resources, filler = haystack_sentences(spec.get("haystack", {"source": "resources"}))
    frame = corpus_documents(
        resources,
        filler,
        size=spec["size"],
        n_needles=spec["n_needles"],
        min_chars=spec["min_chars"],
        max_chars=spec["max_chars"],
        number_digits=spec["number_digits"],
        seed=args.seed,
        chars_per_needle=spec["chars_per_needle"],
    )
    write_parquet(frame, args.out, metadata={"stage": "needle_corpus", "spec": spec, "seed": args.seed})
    lengths = frame["text"].str.len()
    print(f"needle corpus: {len(frame)} episodes, {lengths.min()}-{lengths.max()} characters -> {args.out}")
    return 0


def _cmd_probe(args: argparse.Namespace) -> int:
    import torch

    from attnlab.io import write_parquet
    from attnlab.models.loader import load_model
    from attnlab.needle.items import probe_items
    from attnlab.needle.probe import PROBE_SCHEMA, probe_model

    if args.threads:
        torch.set_num_threads(args.threads)
    spec = args.spec
    start = time.perf_counter()
    model, tokenizer = load_model(
        args.model, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code,
        revision=args.revision, subfolder=args.subfolder,
    )
    resources, filler = haystack_sentences(spec["haystack"])
    items = probe_items(
        resources,
        filler,
        tokenizer,
        context_lengths=spec["context_lengths"],
        depths=spec["depths"],
        n_needles=spec["n_needles"],
        items_per_cell=spec["items_per_cell"],
        number_digits=spec["number_digits"],
        seed=args.seed,
        context_per_needle=spec["context_per_needle"],
        depth_tolerance=spec["depth_tolerance"],
    )
    rows = probe_model(
        model,
        tokenizer,
        items,
        model_name=args.model_name,
        batch_size=spec["batch_size"],
        max_new_tokens=spec["max_new_tokens"],
        progress=not args.no_progress,
    )
    metadata = {"stage": "needle_probe", "model": args.model_name, **model_provenance(args), "spec": spec, "seed": args.seed}
    write_parquet(rows, args.out, metadata=metadata, schema=PROBE_SCHEMA)
    if args.items_out:
        from attnlab.needle.items import ITEM_SCHEMA

        write_parquet(items, args.items_out, metadata=metadata, schema=ITEM_SCHEMA)
    accuracy = rows.drop_duplicates("id")["correct"].mean()
    print(
        f"needle {args.model_name}: {len(items)} items, accuracy {accuracy:.3f}, {len(rows)} rows in "
        f"{time.perf_counter() - start:.1f} s -> {args.out}"
    )
    return 0


def _cmd_table(args: argparse.Namespace) -> int:
    from attnlab.io import read_parquet
    from attnlab.needle.aggregate import write_outputs

    probes = [read_parquet(path) for path in args.inputs]
    spec = args.spec
    table, _ = write_outputs(
        probes,
        args.models,
        query_scope=spec["query_scope"],
        noise_classes=spec["noise_classes"],
        n_resamples=spec["n_resamples"],
        confidence=spec["confidence"],
        seed=args.seed,
        table_path=args.table,
        comparison_path=args.comparison,
        markdown_path=args.markdown,
        metadata={"stage": "needle_table", "spec": spec, "models": args.models, "seed": args.seed},
    )
    print(f"needle table: {len(table)} rows -> {args.table}, {args.markdown}")
    return 0


def _cmd_figure(args: argparse.Namespace) -> int:
    from attnlab.io import read_parquet
    from attnlab.needle.aggregate import plot_depth

    plot_depth(read_parquet(args.table), args.out, title=args.title)
    print(f"needle figure -> {args.out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``needle`` with subcommands ``corpus``, ``probe``, ``table`` and ``figure``."""
    needle = subparsers.add_parser("needle", help="needle-in-a-haystack: corpus, probing, depth table, figure")
    sub = needle.add_subparsers(dest="needle_command", required=True)

    corpus = sub.add_parser("corpus", help="needle episodes for pretraining (Parquet, one 'text' column)")
    corpus.add_argument("--spec", required=True, type=json_object_arg, help="JSON: size, n_needles, min_chars, max_chars, number_digits, haystack")
    corpus.add_argument("--seed", required=True, type=int)
    corpus.add_argument("--out", required=True)
    corpus.set_defaults(func=_cmd_corpus)

    probe = sub.add_parser("probe", help="accuracy and attention masses of one model on the probe items")
    add_model_arguments(probe)
    probe.add_argument("--model-name", required=True)
    probe.add_argument("--spec", required=True, type=json_object_arg, help="JSON: the probe keys of the needle section")
    probe.add_argument("--seed", required=True, type=int)
    probe.add_argument("--items-out", default=None, help="also write the probe items (prompts, spans) here")
    probe.add_argument("--no-progress", action="store_true")
    probe.add_argument("--out", required=True)
    probe.set_defaults(func=_cmd_probe)

    table = sub.add_parser("table", help="depth table (Table-3 layout), model comparison and verdict")
    table.add_argument("--inputs", required=True, nargs="+", help="per-model probe Parquet files")
    table.add_argument("--models", required=True, type=json_object_arg, help='JSON {model: {"base", "seed", "architecture"}}')
    table.add_argument("--spec", required=True, type=json_object_arg, help="JSON: query_scope, noise_classes, n_resamples, confidence")
    table.add_argument("--seed", required=True, type=int, help="bootstrap seed")
    table.add_argument("--table", required=True)
    table.add_argument("--comparison", required=True)
    table.add_argument("--markdown", required=True)
    table.set_defaults(func=_cmd_table)

    figure = sub.add_parser("figure", help="attention to answer / noise and accuracy by depth")
    figure.add_argument("--table", required=True)
    figure.add_argument("--out", required=True)
    figure.add_argument("--title", default="")
    figure.set_defaults(func=_cmd_figure)

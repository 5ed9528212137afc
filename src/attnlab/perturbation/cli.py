"""``attnlab perturbation ...``: facts corpus, neuron perturbation, Jacobians, tables, figures."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from attnlab.cli.convention import json_object_arg
from attnlab.cli.models import add_model_arguments, model_provenance

log = logging.getLogger(__name__)

#: keys of the perturbation config section that select probes (shared by run and jacobian)
PROBE_KEYS = ("relation_names", "max_facts", "templates", "selection_templates")


def _cmd_corpus(args: argparse.Namespace) -> int:
    from attnlab.io import write_parquet
    from attnlab.perturbation.relations import facts_corpus, load_relations, relations_path

    relations = load_relations(args.relations)
    corpus = facts_corpus(relations, args.repeats, args.seed)
    meta = {"relations": args.relations, "relations_file": relations_path(args.relations).name,
            "repeats": args.repeats, "seed": args.seed}  # fmt: skip
    write_parquet(corpus, args.out, metadata=meta)
    print(f"facts corpus: {len(corpus)} statements from {len(relations)} relations -> {args.out}")
    return 0


def _load(args: argparse.Namespace):
    import torch

    from attnlab.models.loader import load_model
    from attnlab.perturbation.sites import prepare_for_analysis

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_model(
        args.model,
        device=args.device,
        dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
        revision=args.revision, subfolder=args.subfolder,
        for_generation=False,
    )
    for param in model.parameters():
        param.requires_grad_(False)  # gradients are taken w.r.t. activations only
    return prepare_for_analysis(model), tokenizer


def _probes(args: argparse.Namespace, spec: dict[str, Any]):
    """``(measurement, selection)`` probes of the spec's probe keys (:func:`~attnlab.perturbation.relations.split_probes`)."""
    from attnlab.perturbation.relations import load_relations, split_probes

    if "selection_templates" not in spec:
        raise ValueError("the perturbation spec needs 'selection_templates': the phrasings the channels are selected on")
    relations = load_relations(args.relations)
    return split_probes(
        relations, spec.get("relation_names"), spec.get("max_facts"), spec.get("templates"), spec["selection_templates"]
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from attnlab.io import write_parquet
    from attnlab.perturbation.perturb import ROW_SCHEMA, run_perturbation

    spec = dict(args.spec)
    probe_spec = {k: spec.pop(k) for k in PROBE_KEYS if k in spec}
    probes, selection_probes = _probes(args, probe_spec)
    model, tokenizer = _load(args)
    start = time.perf_counter()
    rows = run_perturbation(model, tokenizer, probes, selection_probes, spec, args.seed, args.model_name)
    meta = {"model": args.model_name, **model_provenance(args), "relations": args.relations,
            "spec": {**spec, **probe_spec}, "seed": args.seed,
            "measured_on": _probe_record(probes), "selected_on": _probe_record(selection_probes)}  # fmt: skip
    write_parquet(rows, args.out, metadata=meta, schema=ROW_SCHEMA)
    print(f"{args.model_name}: {len(rows)} perturbation rows on {len(probes)} probes in {time.perf_counter() - start:.1f} s -> {args.out}")
    return 0


def _probe_record(probes) -> dict[str, Any]:
    """Which probes a set holds, for the output's metadata: templates, facts per relation, sentence count."""
    return {
        "templates": sorted(int(t) for t in probes["template_index"].unique()),
        "facts": {str(r): sorted(int(f) for f in g["fact_index"].unique()) for r, g in probes.groupby("relation", sort=False)},
        "sentences": int(len(probes)),
    }


def _cmd_jacobian(args: argparse.Namespace) -> int:
    from attnlab.io import write_parquet
    from attnlab.perturbation.jacobian import run_jacobian, sample_texts

    spec = dict(args.spec)
    probe_spec = {k: spec.pop(k) for k in PROBE_KEYS if k in spec}
    confidence = spec.pop("confidence", 0.95)
    if args.layer:
        spec["layers"] = args.layer
    probes, _ = _probes(args, probe_spec)  # the measurement phrasings
    texts = sample_texts(list(probes["sentence"]), spec.get("num_texts", 32), args.seed)
    model, tokenizer = _load(args)
    start = time.perf_counter()
    rows = run_jacobian(model, tokenizer, texts, spec, args.seed, args.model_name, confidence=confidence)
    meta = {"model": args.model_name, **model_provenance(args), "relations": args.relations,
            "spec": {**spec, **probe_spec, "confidence": confidence}, "seed": args.seed}  # fmt: skip
    write_parquet(rows, args.out, metadata=meta)
    print(f"{args.model_name}: jacobian of {len(rows)} layers on {len(texts)} texts in {time.perf_counter() - start:.1f} s -> {args.out}")
    return 0


def _cmd_tables(args: argparse.Namespace) -> int:
    import pandas as pd

    from attnlab.io import read_parquet, write_parquet, write_text
    from attnlab.perturbation.tables import (
        comparison_sentences, markdown_table, perturbation_comparison, perturbation_summary, perturbation_table,
    )

    out = Path(args.out_dir)
    meta = {"confidence": args.confidence, "seed": args.seed}
    rows = pd.concat([read_parquet(p) for p in args.perturbation], ignore_index=True)
    table = perturbation_table(rows, args.confidence)
    summary = perturbation_summary(table, args.confidence, args.seed)
    comparison = perturbation_comparison(table, args.confidence, args.seed)
    jacobian = pd.concat([read_parquet(p) for p in args.jacobian], ignore_index=True) if args.jacobian else None
    write_parquet(table, out / "perturbation.parquet", metadata=meta)
    write_parquet(summary, out / "perturbation_summary.parquet", metadata=meta)
    write_parquet(comparison, out / "perturbation_comparison.parquet", metadata=meta)
    sentences = comparison_sentences(summary, jacobian, args.confidence, comparison)
    level = f"{args.confidence:.0%}"
    md = [
        "# Perturbation sensitivity",
        "",
        f"Target log-ratio ln(perturbed/baseline perplexity), mean over relations of the layer-mean, with {level} "
        "bootstrap intervals over relations; random control = same number of random channels, mean over seeds.",
        "",
        *[f"- {s}" for s in sentences],
        "",
        "## SSM vs Transformer, like for like (residual stream, same fraction of channels)",
        "",
        "`difference` = mean over relations of (selected − random)(SSM) − (selected − random)(Transformer), "
        "bootstrap interval over relations, `p_value` two-sided sign-flip test over relations.",
        "",
        markdown_table(comparison) if len(comparison) else "(no SSM and Transformer pair at the same fraction)",
        "",
        "## Summary",
        "",
        "`comparison`: like_for_like = the residual stream, the same fraction in every model; secondary = the "
        "architecture-specific sites (MLP neurons, Δ channels), k = `n_channels` of `site_width`.",
        "",
        markdown_table(summary),
        "",
    ]
    write_text(out / "perturbation.md", "\n".join(md))
    if jacobian is not None:
        write_parquet(jacobian, out / "jacobian.parquet", metadata=meta)
        cols = ["model", "model_type", "layer", "relative_sensitivity_mean", "relative_sensitivity_low",
                "relative_sensitivity_high", "sensitivity_mean", "sensitivity_low", "sensitivity_high",
                "hidden_norm_mean", "spectral_norm_mean", "spectral_norm_max", "effective_rank", "hidden_variance",
                "output_variance"]  # fmt: skip
        write_text(out / "jacobian.md", "# Layer-wise Jacobian analysis\n\n" + JACOBIAN_CAPTION + "\n\n"
                   + markdown_table(jacobian[cols]) + "\n")
    print(f"perturbation tables: {len(table)} rows, summary {len(summary)} rows -> {out}")
    return 0


JACOBIAN_CAPTION = (
    "`relative_sensitivity_*` = E‖Jv‖ · ‖h‖ / ‖f‖ (v a random unit direction over the text's real tokens, h the "
    "hidden states after the layer, f the last-token logits; mean and t interval over texts): the gain of a "
    "perturbation scaled to each text's own hidden-state norm, free of an architecture's activation scale — the "
    "column that compares architectures. `sensitivity_*` = E‖Jv‖ with unit ‖v‖ (absolute; compares the layers "
    "of one model). `hidden_norm_mean` = mean ‖h‖ over texts."
)


def _cmd_figures(args: argparse.Namespace) -> int:
    from attnlab.io import read_parquet
    from attnlab.perturbation.figures import plot_jacobian, plot_layers, plot_relations
    from attnlab.perturbation.tables import comparison_sentences

    tables = Path(args.tables_dir)
    out = Path(args.out_dir)
    table = read_parquet(tables / "perturbation.parquet")
    summary = read_parquet(tables / "perturbation_summary.parquet")
    first = summary[(summary["method"] == table["method"].iloc[0]) & (summary["mode"] == table["mode"].iloc[0])]
    plot_relations(table, out / "relations.png", footnote="\n".join(comparison_sentences(first)))
    plot_layers(table, out / "layers.png")
    plot_jacobian(read_parquet(tables / "jacobian.parquet"), out / "jacobian.png")
    print(f"perturbation figures -> {out}")
    return 0


def _model_args(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--relations", required=True, help="knowledge base: fictional, real, or a .yaml path")
    parser.add_argument("--spec", required=True, type=json_object_arg, help="JSON: the perturbation config keys")
    parser.add_argument("--seed", required=True, type=int)
    parser.add_argument("--out", required=True, help="output Parquet")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``perturbation`` with subcommands corpus, run, jacobian, tables, figures."""
    stage = subparsers.add_parser("perturbation", help="neuron perturbation on factual relations, layer Jacobians")
    sub = stage.add_subparsers(dest="perturbation_command", required=True)

    corpus = sub.add_parser("corpus", help="the facts pretraining corpus (one statement per row, column text)")
    corpus.add_argument("--relations", default="fictional")
    corpus.add_argument("--repeats", type=int, required=True)
    corpus.add_argument("--seed", type=int, required=True)
    corpus.add_argument("--out", required=True)
    corpus.set_defaults(func=_cmd_corpus)

    run = sub.add_parser("run", help="perturb selected and random channels; perplexity changes per relation")
    _model_args(run)
    run.set_defaults(func=_cmd_run)

    jac = sub.add_parser("jacobian", help="layer-wise Jacobian sensitivity, spectral norm, effective rank")
    _model_args(jac)
    jac.add_argument("--layer", type=int, action="append", help="only this layer (repeatable; default: all)")
    jac.set_defaults(func=_cmd_jacobian)

    tables = sub.add_parser("tables", help="aggregate tables and the SSM-vs-Transformer summary")
    tables.add_argument("--perturbation", nargs="+", required=True)
    tables.add_argument("--jacobian", nargs="*", default=[])
    tables.add_argument("--confidence", type=float, default=0.95)
    tables.add_argument("--seed", type=int, default=0)
    tables.add_argument("--out-dir", required=True)
    tables.set_defaults(func=_cmd_tables)

    figures = sub.add_parser("figures", help="relations, layers and jacobian figures")
    figures.add_argument("--tables-dir", required=True)
    figures.add_argument("--out-dir", required=True)
    figures.set_defaults(func=_cmd_figures)

"""One pretraining run of a study's scratch model with a chosen learning rate (and steps), scored for selection.

The run is the study's own (same tokenizer, corpus, extra corpora, data order, schedule and seed: the config's
``pretrain`` section with the model's ``models.<name>.pretrain`` values, then the command line's overrides). It is
scored on what a selection may look at: the final held-out validation loss of pretraining, and strict pass@1 on
held-out *training* problems — the math documents of pretraining's own validation split, which the model never
trained on and which are not test items. The test items are never read.

Prints one JSON line (and appends it to ``--log``): model, overrides, validation loss per checkpoint, pass@1 on
the held-out training problems, CPU seconds of training.

    python benchmarks/sweep_pretrain.py --model llama --learning-rate 0.003 --out /tmp/sweep/llama-3e-3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch

from attnlab.config import validate_config
from attnlab.evaluate.evaluate import evaluate_items
from attnlab.models.loader import load_model
from attnlab.models.pretrain import corpus_documents, extra_corpus_documents, pretrain, split_validation
from attnlab.models.settings import scratch_architecture_spec, scratch_train_spec
from attnlab.study.schema import load_yaml


def heldout_training_problems(train: pd.DataFrame, n_sequences: int, fraction: float, seed: int, n: int) -> pd.DataFrame:
    """The first ``n`` math problems of pretraining's validation split (rows ``< len(train)`` of the sequences)."""
    _, val_rows = split_validation(n_sequences, fraction, seed)
    math_rows = [int(r) for r in val_rows if r < len(train)][:n]
    return train.iloc[math_rows].reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--model", required=True, help="a scratch model of the config")
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None, help="default: the study seed")
    parser.add_argument("--results", default="results", help="where the data, corpora and tokenizer are")
    parser.add_argument("--items", type=int, default=200, help="held-out training problems scored")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True, help="model folder (and curve files beside it)")
    parser.add_argument("--log", default=None, help="JSON-lines file the result is appended to")
    args = parser.parse_args()

    study = validate_config(load_yaml(args.config))
    spec = scratch_train_spec(study, args.model)
    if args.learning_rate is not None:
        spec["learning_rate"] = args.learning_rate
    if args.steps is not None:
        spec["steps"] = args.steps
        spec["eval_every"] = min(spec["eval_every"], args.steps)
    seed = study["seed"] if args.seed is None else args.seed
    results = Path(args.results)
    train = pd.read_parquet(results / "data" / spec["corpus"] / "train.parquet")
    extra = [
        doc
        for name in spec["extra_corpora"]
        for doc in extra_corpus_documents(pd.read_parquet(results / "corpus" / f"{name}.parquet"), name)
    ]
    entry = scratch_architecture_spec(study, args.model)
    out = Path(args.out)
    cpu0 = time.process_time()
    curve = pretrain(
        entry, spec, results / "tokenizer", train, seed, out, args.threads,
        curve_path=out.with_suffix(".loss.parquet"), curve_plot_path=out.with_suffix(".loss.png"),
        progress=False, extra_documents=extra,
    )
    cpu_train = time.process_time() - cpu0

    n_sequences = len(corpus_documents(train)) + len(extra)
    items = heldout_training_problems(train, n_sequences, spec["validation_fraction"], seed, args.items)
    model, tokenizer = load_model(str(out), dtype="float32")
    eval_spec = {**study["evaluation"], "fewshot_seed": 0}
    with torch.no_grad():
        rows = evaluate_items(model, tokenizer, items, eval_spec, [], model_name=args.model, base="train-heldout",
                              variant="clean")
    val = curve[curve.split == "validation"]
    record = {
        "model": args.model,
        "architecture": entry["architecture"],
        "head_norm": entry.get("head_norm"),
        "learning_rate": spec["learning_rate"],
        "steps": spec["steps"],
        "batch_size": spec["batch_size"],
        "max_length": spec["max_length"],
        "precision": spec["precision"],
        "seed": seed,
        "validation_loss": {int(s): round(float(v), 4) for s, v in zip(val.step, val.loss)},
        "final_validation_loss": round(float(val.loss.iloc[-1]), 4),
        "heldout_train_items": len(items),
        "heldout_train_pass_at_1": round(float(rows["correct_strict"].mean()), 4),
        "train_cpu_seconds": round(cpu_train, 1),
    }
    line = json.dumps(record)
    print(line)
    if args.log:
        with open(args.log, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")


if __name__ == "__main__":
    main()

"""HeadIG cost: seconds per item against ig_steps × one forward+backward (target ≤ 1.3×).

    python benchmarks/bench_headig.py [--models results/models/llama results/models/diffllama]
                                      [--data results/data/synthetic/clean.parquet] [--items 4] [--steps 8 16 32]

The reference is one forward + backward (gradient w.r.t. the gates) of a single item, one row, through the same
code path (``objective_rows`` with one gate row). HeadIG runs all ig_steps rows of a path as one batch, so on a
CPU it usually costs *less* than ig_steps sequential passes. Times are the minimum over ``--repeats`` runs (the
least disturbed by other processes). Without trained models, tiny random ones are used.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from attnlab.attribution.gates import HeadGates
from attnlab.attribution.headig import HeadIGSpec, attribute_item
from attnlab.attribution.objectives import ObjectiveSpec, encode_items, objective_rows
from attnlab.io import read_parquet


def _min_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _models(paths: list[str]):
    from attnlab.models.loader import load_model

    found = [p for p in paths if Path(p).is_dir()]
    if found:
        for path in found:
            model, tokenizer = load_model(path, device="cpu", dtype="float32", for_generation=False)
            yield Path(path).name, model, tokenizer
        return
    from attnlab.evaluate.tiny import build_tiny_model, build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    for arch in ("llama", "diffllama"):
        yield f"tiny-{arch}", build_tiny_model(arch, tokenizer), tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["results/models/llama", "results/models/diffllama"])
    parser.add_argument("--data", default="results/data/synthetic/clean.parquet")
    parser.add_argument("--items", type=int, default=4)
    parser.add_argument("--steps", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if Path(args.data).is_file():
        data = read_parquet(args.data).head(args.items)
    else:
        from attnlab.evaluate.tiny import tiny_corpus

        texts = tiny_corpus(args.items)
        data = {"id": [str(i) for i in range(args.items)],
                "question": [t.split("\nAnswer: ")[0].removeprefix("Question: ") for t in texts],
                "answer": [t.split("\nAnswer: ")[1] for t in texts]}
        import pandas as pd

        data = pd.DataFrame(data)
    objective = ObjectiveSpec()
    print("| model | method | ig_steps | rows | s per item | one fwd+bwd s | ratio to ig_steps × fwd+bwd |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, model, tokenizer in _models(args.models):
        items = encode_items(model, tokenizer, data, objective)
        with HeadGates(model) as gates:
            one = torch.ones((1, *gates.layout.shape))
            single = sum(
                _min_time(lambda item=item: objective_rows(model, gates, item, one, objective), args.repeats) for item in items
            ) / len(items)
            for steps in args.steps:
                for method, samples in (("dp", 1), ("stp", 2)):
                    spec = HeadIGSpec(method=method, ig_steps=steps, quadrature="trapezoid", path_samples=samples)
                    per_item = sum(
                        _min_time(lambda item=item: attribute_item(model, gates, item, spec, objective), args.repeats)
                        for item in items
                    ) / len(items)
                    rows = steps * samples
                    print(f"| {name} | {method} | {steps} | {rows} | {per_item:.3f} | {single:.4f} | {per_item / (rows * single):.2f} |")


if __name__ == "__main__":
    main()

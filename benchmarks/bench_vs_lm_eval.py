"""Benchmark: attnlab's evaluation vs EleutherAI's lm-evaluation-harness on the same model and items.

Both get the same HF model folder, the same test items (written here as a GSM8K-format jsonl and a local lm-eval
task), the same prompt (``Question: {q}\\nAnswer:``, zero-shot, with BOS), greedy decoding, the same
``max_new_tokens`` and stop sequences, batch size and threads. The script reports, from one run: wall time,
items/s and generated tokens/s of both, their ratio, and the item-by-item agreement of strict-match
predictions (lm-eval's gsm8k ``strict-match`` filter, regex ``#### (\\-?[0-9\\.\\,]+)``, vs
:func:`attnlab.evaluate.extraction.extract_strict`), listing any disagreement.

lm-eval is a benchmark-only dependency: run this in a separate environment that has both packages, e.g.

    python -m venv /tmp/bench-venv && . /tmp/bench-venv/bin/activate
    pip install torch==2.13.0 -e . "lm-eval[hf]"
    python benchmarks/bench_vs_lm_eval.py --model results/models/llama --data results/data/synthetic/clean.parquet

Run by hand, not in tests. Results are written down in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

STOPS = ["Question:", "\n\n"]
STRICT_REGEX = r"#### (\-?[0-9\.\,]+)"
#: what lm-eval's gsm8k exact_match ignores when it compares an answer (``regexes_to_ignore``)
IGNORED = [r",", r"\$", r"(?s).*#### ", r"\.$"]


def normalized(prediction: str) -> str:
    """A strict-match prediction as lm-eval's gsm8k ``exact_match`` compares it."""
    import re

    for pattern in IGNORED:
        prediction = re.sub(pattern, "", prediction)
    return prediction.strip()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a save_pretrained folder (e.g. results/models/llama)")
    parser.add_argument("--data", type=Path, required=True, help="a data-stage Parquet (e.g. results/data/synthetic/clean.parquet)")
    parser.add_argument("--n", type=int, default=200, help="number of items (first n rows)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--order", choices=["attnlab-first", "lm-eval-first"], default="attnlab-first")
    return parser.parse_args(argv)


def task_files(folder: Path, items: list[dict], max_new_tokens: int) -> str:
    """A GSM8K-format jsonl and a local lm-eval task (modelled on lm-eval's own gsm8k task) reading it."""
    data_path = folder / "test.jsonl"
    with open(data_path, "w", encoding="utf-8") as fh:
        for item in items:
            fh.write(json.dumps(item) + "\n")
    name = "attnlab_bench_gsm8k"
    task = f"""task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data_path}
test_split: test
output_type: generate_until
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{answer}}}}"
target_delimiter: " "
num_fewshot: 0
generation_kwargs:
  until: {json.dumps(STOPS)}
  do_sample: false
  max_gen_toks: {max_new_tokens}
filter_list:
  - name: strict-match
    filter:
      - function: regex
        regex_pattern: "{STRICT_REGEX.replace(chr(92), chr(92) * 2)}"
      - function: take_first
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""
    (folder / f"{name}.yaml").write_text(task)
    return name


def run_attnlab(args: argparse.Namespace, table) -> tuple[float, list[str], int]:
    from attnlab.evaluate.evaluate import evaluate_items
    from attnlab.models.loader import load_model

    start = time.perf_counter()
    model, tokenizer = load_model(args.model, device="cpu", dtype="float32", for_generation=True)
    generation_start = time.perf_counter()
    spec = {"num_fewshot": 0, "fewshot_seed": 0, "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
            "stop_sequences": STOPS}
    rows = evaluate_items(model, tokenizer, table, spec, [], model_name="bench", base="bench", variant="clean")
    end = time.perf_counter()
    predictions = [p if isinstance(p, str) else "[invalid]" for p in rows["prediction"]]
    return end - start, end - generation_start, predictions, int(rows["n_generated_tokens"].sum())


def run_lm_eval(args: argparse.Namespace, folder: Path, task: str) -> tuple[float, list[str], int]:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoTokenizer

    # time lm-eval's generation phase on its own too (it is the part comparable to ours)
    generation_seconds = []
    original = HFLM.generate_until

    def timed_generate_until(self, *a, **k):
        begin = time.perf_counter()
        try:
            return original(self, *a, **k)
        finally:
            generation_seconds.append(time.perf_counter() - begin)

    HFLM.generate_until = timed_generate_until
    start = time.perf_counter()
    results = lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={args.model},dtype=float32,add_bos_token=True",
        tasks=[task],
        task_manager=TaskManager(include_path=str(folder)),
        batch_size=args.batch_size,
        device="cpu",
        log_samples=True,
    )
    seconds = time.perf_counter() - start
    HFLM.generate_until = original
    samples = sorted(results["samples"][task], key=lambda s: s["doc_id"])
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    predictions = [s["filtered_resps"][0] if isinstance(s["filtered_resps"], list) else s["filtered_resps"] for s in samples]
    n_tokens = sum(len(tokenizer(s["resps"][0][0], add_special_tokens=False)["input_ids"]) for s in samples)
    return seconds, sum(generation_seconds), predictions, n_tokens


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from attnlab.io import read_parquet

    table = read_parquet(args.data).iloc[: args.n].reset_index(drop=True)
    items = [{"question": q, "answer": a} for q, a in zip(table["question"], table["answer"])]
    print(f"model {args.model}; {len(table)} items from {args.data}; batch {args.batch_size}; max_new_tokens "
          f"{args.max_new_tokens}; stops {STOPS!r}; threads {args.threads}; torch {torch.__version__}; "
          f"{platform.processor() or platform.machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        task = task_files(folder, items, args.max_new_tokens)
        runs = {}
        order = ["attnlab", "lm-eval"] if args.order == "attnlab-first" else ["lm-eval", "attnlab"]
        for name in order:
            runs[name] = run_attnlab(args, table) if name == "attnlab" else run_lm_eval(args, folder, task)
    load_average = os.getloadavg()[0]
    (ours_s, ours_gen, ours_pred, ours_tok), (ref_s, ref_gen, ref_pred, ref_tok) = runs["attnlab"], runs["lm-eval"]
    n = len(table)
    for name, total, gen, tok in (("lm-eval", ref_s, ref_gen, ref_tok), ("attnlab", ours_s, ours_gen, ours_tok)):
        print(f"{name:8}: whole run {total:7.2f} s ({n / total:7.2f} items/s); generation {gen:7.2f} s "
              f"({n / gen:7.2f} items/s, {tok / gen:8.1f} generated tokens/s, {tok} tokens)")
    print(f"ratio attnlab / lm-eval: whole run {ref_s / ours_s:.2f}x, generation {ref_gen / ours_gen:.2f}x   "
          f"(1-min load average at the end {load_average:.2f})")
    same = [normalized(a) == normalized(b) for a, b in zip(ours_pred, ref_pred)]
    print(f"strict-match predictions identical (as lm-eval's exact_match compares them): {sum(same)}/{n}; "
          f"character-identical before that normalisation: {sum(a == b for a, b in zip(ours_pred, ref_pred))}/{n}")
    for i, ok in enumerate(same):
        if not ok:
            print(f"  item {i}: attnlab {ours_pred[i]!r} vs lm-eval {ref_pred[i]!r}")
    return 0 if all(same) else 1


if __name__ == "__main__":
    sys.exit(main())

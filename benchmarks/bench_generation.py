"""Benchmark: attnlab's batched greedy evaluation vs a per-sample ``model.generate`` loop.

The per-sample loop is the plain Hugging Face way to evaluate: one prompt at a time, no padding, HF's own stop-string
criterion (``stop_strings=...``), decode, cut at the first stop sequence. Both paths get the same model, prompts,
``max_new_tokens`` and stop sequences; the script checks that they produce identical texts, then prints items/s
and generated tokens/s for both and the speed-up.

    python benchmarks/bench_generation.py                       # tiny random Llama (~1M params), built here
    python benchmarks/bench_generation.py --model results/models/llama --n 200 --batch-size 32

Run by hand, not in tests. See benchmarks/README.md for measured numbers.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

from attnlab.evaluate.generation import _first_stop, generate_greedy, pad_token_id
from attnlab.evaluate.tiny import build_tiny_model, build_tiny_tokenizer, tiny_corpus
from attnlab.prompts import build_prompt


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="a save_pretrained folder (default: tiny random Llama)")
    parser.add_argument("--n", type=int, default=200, help="number of prompts")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=None, help="a data-stage Parquet to take questions from")
    parser.add_argument("--num-fewshot", type=int, default=0, help="solved examples before each question")
    parser.add_argument("--stop", action="append", default=None, help="stop sequence (repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def load(args: argparse.Namespace):
    """(model, tokenizer, description) from --model, or a tiny random Llama of about 1M parameters."""
    if args.model is not None:
        from attnlab.models.loader import load_model

        model, tokenizer = load_model(args.model, device="cpu", dtype="float32")
        return model, tokenizer, str(args.model)
    tokenizer = build_tiny_tokenizer(vocab_size=300, seed=args.seed)
    model = build_tiny_model(
        "llama", tokenizer, hidden_size=128, num_layers=4, num_heads=4, intermediate_size=352,
        initializer_range=0.02, seed=args.seed,
    )
    return model, tokenizer, "tiny random llama"


def make_prompts(n: int, num_fewshot: int, seed: int, data: Path | None = None) -> list[str]:
    """``n`` GSM8K-style questions (varied lengths), optionally preceded by ``num_fewshot`` solved examples.

    With ``data`` the questions (and exemplars, from its first rows) come from that data-stage table instead.
    """
    if data is not None:
        from attnlab.io import read_parquet

        table = read_parquet(data)
        if len(table) < n + num_fewshot:
            raise SystemExit(f"{data}: {len(table)} rows, need {n + num_fewshot}")
        shots = list(zip(table["question"][:num_fewshot], table["answer"][:num_fewshot]))
        return [build_prompt(q, shots) for q in table["question"][num_fewshot : num_fewshot + n]]
    corpus = tiny_corpus(n=n + num_fewshot, seed=seed + 1)
    shots = [tuple(text.removeprefix("Question: ").split("\nAnswer: ", 1)) for text in corpus[:num_fewshot]]
    prompts = []
    for i, text in enumerate(corpus[num_fewshot:]):
        question = text.removeprefix("Question: ").split("\nAnswer: ", 1)[0]
        question += " Then" + " and then" * (i % 7) + " count again."  # spread the prompt lengths
        prompts.append(build_prompt(question, shots))
    return prompts


def per_sample_loop(model, tokenizer, prompts: list[str], max_new_tokens: int, stops: list[str]) -> tuple[list[str], int]:
    """The plain per-prompt evaluation: ``generate`` on one prompt at a time; returns (texts, generated token count)."""
    texts, n_tokens = [], 0
    eos = tokenizer.eos_token_id
    with torch.inference_mode():
        for prompt in prompts:
            encoded = tokenizer(prompt, return_tensors="pt")
            out = model.generate(
                **encoded, max_new_tokens=max_new_tokens, do_sample=False, stop_strings=stops or None,
                tokenizer=tokenizer, pad_token_id=pad_token_id(tokenizer),
            )
            new = out[0, encoded["input_ids"].shape[1] :].tolist()
            n_tokens += len(new)
            if eos in new:
                new = new[: new.index(eos)]
            text = tokenizer.decode(new, skip_special_tokens=True)
            hit = _first_stop(text, stops)
            texts.append(text if hit is None else text[: hit[0]])
    return texts, n_tokens


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    stops = args.stop if args.stop is not None else ["Question:", "\n\n"]
    model, tokenizer, description = load(args)
    n_params = sum(p.numel() for p in model.parameters())
    prompts = make_prompts(args.n, args.num_fewshot, args.seed, args.data)
    lengths = [len(tokenizer(p)["input_ids"]) for p in prompts]
    print(f"model: {description} ({type(model).__name__}, {n_params / 1e6:.2f}M params)")
    print(f"prompts: {len(prompts)}, tokens {min(lengths)}-{max(lengths)}; max_new_tokens {args.max_new_tokens}; "
          f"stops {stops!r}; threads {args.threads}; torch {torch.__version__}; {platform.processor() or platform.machine()}")

    # warm-up (first-call allocations, stop-string tables) outside the timed regions
    generate_greedy(model, tokenizer, prompts[:2], batch_size=2, max_new_tokens=4, stop_sequences=stops)
    per_sample_loop(model, tokenizer, prompts[:1], 4, stops)

    start, start_cpu = time.perf_counter(), time.process_time()
    batched = generate_greedy(
        model, tokenizer, prompts, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, stop_sequences=stops
    )
    batched_s, batched_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    batched_tokens = sum(g.n_generated_tokens for g in batched)

    start, start_cpu = time.perf_counter(), time.process_time()
    looped, looped_tokens = per_sample_loop(model, tokenizer, prompts, args.max_new_tokens, stops)
    looped_s, looped_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    load_average = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    mismatches = [i for i, (g, t) in enumerate(zip(batched, looped)) if g.text != t]
    stopped = sum(g.stopped_by != "max_new_tokens" for g in batched)
    print(f"per-sample loop : {looped_s:8.2f} s  {len(prompts) / looped_s:8.2f} items/s  "
          f"{looped_tokens / looped_s:9.1f} tokens/s  (CPU {looped_cpu:.2f} s)")
    print(f"batched (bs={args.batch_size:>3}): {batched_s:8.2f} s  {len(prompts) / batched_s:8.2f} items/s  "
          f"{batched_tokens / batched_s:9.1f} tokens/s  (CPU {batched_cpu:.2f} s)")
    print(f"speed-up        : {looped_s / batched_s:.1f}x wall, {looped_cpu / batched_cpu:.1f}x CPU time  "
          f"(rows stopped early: {stopped}/{len(prompts)}; generated tokens batched {batched_tokens}, "
          f"loop {looped_tokens}; 1-min load average at the end {load_average:.2f})")
    if mismatches:
        print(f"MISMATCH: {len(mismatches)} generations differ, first at prompt {mismatches[0]}:\n"
              f"  batched: {batched[mismatches[0]].text!r}\n  loop:    {looped[mismatches[0]]!r}")
        return 1
    print("generations identical: yes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

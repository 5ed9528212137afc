"""Peak memory of per-layer attention capture vs ``output_attentions=True``.

A 16-layer tiny random model (default DiffLlama, hidden 64, 4 heads) on one sequence of 1024 tokens. Each method
runs in a fresh subprocess; its peak is the process's peak resident set size (``ru_maxrss``) during the measured
forward pass minus its resident set size just before it (model built and warmed up on a short sequence):

* ``output_attentions``: eager attention, ``model(..., output_attentions=True)``: all layers' [H, T, T] maps are
  returned together (the usual way with Hugging Face models), then reduced to class masses;
* ``capture_all_queries``: :func:`attnlab.attention.capture.capture_attention` with every query row (full
  [H, T, T] maps, one layer at a time, reduced to class masses at once);
* ``capture_last_token``: the same with only the last position's rows (what the stage measures).

    python benchmarks/bench_attention_memory.py [--arch diffllama] [--layers 16] [--seq 1024] [--hidden 64]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

METHODS = ("output_attentions", "capture_all_queries", "capture_last_token")


def _rss_kb() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() // 1024


def _child(args: argparse.Namespace) -> None:
    import torch

    from attnlab.attention.capture import capture_attention
    from attnlab.attention.masses import class_masses
    from attnlab.evaluate.tiny import build_tiny_model, build_tiny_tokenizer

    torch.set_num_threads(1)
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(args.arch, tokenizer, hidden_size=args.hidden, num_layers=args.layers, num_heads=4,
                             intermediate_size=2 * args.hidden, max_position_embeddings=args.seq)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, tokenizer.vocab_size, (1, args.seq), generator=generator)
    classes = torch.randint(0, 4, (args.seq,), generator=generator)

    def run(input_ids: torch.Tensor) -> int:
        with torch.no_grad():
            if args.method == "output_attentions":
                model.set_attn_implementation("eager")
                out = model(input_ids=input_ids, output_attentions=True)
                masses = [class_masses(a, classes[: input_ids.shape[1]], 4) for a in out.attentions]
                return len(masses)
            positions = None if args.method == "capture_all_queries" else [-1]
            reduce = lambda a: {k: class_masses(v, classes[: input_ids.shape[1]], 4) for k, v in a.maps.items()}  # noqa: E731
            with capture_attention(model, reduce, positions) as per_layer:
                model(input_ids=input_ids)
            return len(per_layer)

    run(ids[:, :64])  # warm-up: allocator, kernels
    before = _rss_kb()
    start = time.perf_counter()
    layers = run(ids)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    print(json.dumps({"method": args.method, "layers": layers, "peak_mb": (peak - before) / 1024, "seconds": seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="diffllama", choices=["llama", "diffllama", "gpt2"])
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.method:
        _child(args)
        return
    results = {}
    for method in METHODS:
        cmd = [sys.executable, __file__, "--arch", args.arch, "--layers", str(args.layers), "--seq", str(args.seq),
               "--hidden", str(args.hidden), "--method", method]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        results[method] = json.loads(out)
    base = results["output_attentions"]["peak_mb"]
    print(f"{args.arch}, {args.layers} layers, hidden {args.hidden}, 4 heads, sequence {args.seq} (one thread)")
    print("| method | peak MB above baseline | ratio to output_attentions | forward s |")
    print("|---|---:|---:|---:|")
    for method, r in results.items():
        print(f"| {method} | {r['peak_mb']:.1f} | {r['peak_mb'] / base:.3f} | {r['seconds']:.2f} |")


if __name__ == "__main__":
    main()

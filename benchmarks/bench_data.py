"""Benchmark: data-stage throughput — synthetic generation and noise injection.

Times what the data jobs do at sizes larger than a study's defaults: generating a synthetic base
dataset (``train_size`` train items, built with its ``test_size`` test split reserved) and inserting
each noise type into ``test_size`` clean synthetic items. Prints one line per measurement
(items, seconds, items/s).

    python benchmarks/bench_data.py                               # 20,000 train / 1,000 test items
    python benchmarks/bench_data.py --train-size 5000 --test-size 500 --repeats 3

Run by hand, not in tests. See benchmarks/README.md for measured numbers.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from attnlab.data import apply_noise, load_base_dataset

NOISE_TYPES = ("inf", "rcs", "sd")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-size", type=int, default=20000)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=1, help="timings per measurement (the minimum is reported)")
    parser.add_argument("--seed", type=int, default=5)
    return parser.parse_args(argv)


def best_of(repeats: int, fn) -> tuple[float, object]:
    """The minimum wall time of ``repeats`` calls of ``fn`` and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spec = {"loader": "synthetic", "train_size": args.train_size, "test_size": args.test_size}
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    seconds, train = best_of(args.repeats, lambda: load_base_dataset(spec, "train", seed=args.seed))
    print(f"synthetic train: {len(train)} items in {seconds:.2f} s ({len(train) / seconds:.0f} items/s)")
    seconds, test = best_of(args.repeats, lambda: load_base_dataset(spec, "test", seed=args.seed))
    print(f"synthetic test: {len(test)} items in {seconds:.2f} s ({len(test) / seconds:.0f} items/s)")
    for noise_type in NOISE_TYPES:
        seconds, noisy = best_of(args.repeats, lambda: apply_noise(test, noise_type, seed=1))
        print(f"noise {noise_type}: {len(noisy)} items in {seconds:.2f} s ({len(noisy) / seconds:.0f} items/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

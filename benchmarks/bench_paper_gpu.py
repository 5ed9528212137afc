"""configs/paper.yaml's evaluate and attention stages on full-size random stand-ins of the 375M checkpoints.

    python benchmarks/bench_paper_gpu.py --out /tmp/paper-gpu                 # on a GPU machine: bf16 (dtype auto)
    python benchmarks/bench_paper_gpu.py --out /tmp/paper-tiny --size tiny    # the same steps with tiny models (CPU)

Builds the reyllama stand-ins of tests/hfcache_helpers.py (their published layout: sub-folder checkpoint-64434,
GQA, llama3 RoPE, tied embeddings, Llama-3-style tokenizer) with random weights at a 375M-parameter size
(hidden 1024, 24 layers, 16 heads / 4 KV heads, MLP 2816, 128,256 embedding rows: 0.40B parameters) in an offline
Hugging Face cache under --out, prepares GSM8K (--gsm8k DIR, JSON lines) in the datasets cache, and runs each job
of the two stages alone (`snakemake TARGET`, paper.yaml plus a small override file: the two 375M entries, clean and
inf variants, --items test problems), sampling `nvidia-smi` for the GPU memory in use. Prints one row per job:
wall seconds, peak host RSS (Snakemake's benchmark file) and peak GPU memory. Random weights generate until
max_new_tokens, so the times are an upper bound for the real checkpoints.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

FULL = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "num_key_value_heads": 4,
        "intermediate_size": 2816}  # fmt: skip
MODELS = ("diffllama-375m", "llama-375m")


def _gpu_sampler(stop: threading.Event, peak: list[float]) -> None:
    while not stop.is_set():
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=10).stdout  # fmt: skip
            peak[0] = max(peak[0], max(float(x) for x in out.split()))
        except (OSError, ValueError, subprocess.TimeoutExpired):
            return
        stop.wait(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--size", choices=["full", "tiny"], default="full")
    parser.add_argument("--gsm8k", type=Path, default=REPO.parent / "shared" / "datasets" / "gsm8k")
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--cores", type=int, default=4)
    args = parser.parse_args()

    from hfcache_helpers import place_dataset_in_cache, place_standins

    home = args.out / "hf-home"
    if not (home / "hub").is_dir():
        size = (FULL, 128256) if args.size == "full" else (None, None)
        place_standins(home / "hub", repos=("reyllama/DiffLlama-375M", "reyllama/Llama_375M"),
                       reyllama_size=size[0], reyllama_rows=size[1])  # fmt: skip
        place_dataset_in_cache(home / "datasets", "openai/gsm8k", "main",
                               {s: args.gsm8k / f"{s}.jsonl" for s in ("train", "test")})  # fmt: skip
    work = args.out / "study"
    (work / "results" / "prefetch" / "datasets").mkdir(parents=True, exist_ok=True)
    (work / "results" / "prefetch" / "datasets" / "gsm8k.json").write_text(json.dumps({"kind": "dataset"}))
    overrides = {"max_samples": args.items, "select_models": list(MODELS), "select_variants": ["clean", "inf"]}
    (work / "overrides.yaml").write_text(json.dumps(overrides))
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_ENDPOINT": "http://127.0.0.1:9"}  # fmt: skip
    targets = [f"results/eval/{m}/gsm8k/{v}.parquet" for m in MODELS for v in ("clean", "inf")]
    targets += [f"results/attention/{m}/gsm8k/clean.parquet" for m in MODELS]
    print("| job | wall s | peak host RSS MB | peak GPU memory MiB |\n|---|---|---|---|")
    for target in targets:
        stop, peak = threading.Event(), [0.0]
        sampler = threading.Thread(target=_gpu_sampler, args=(stop, peak), daemon=True)
        sampler.start()
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(work),
             "--configfile", str(REPO / "configs" / "paper.yaml"), str(work / "overrides.yaml"),
             "--cores", str(args.cores), target],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        wall = time.perf_counter() - start
        stop.set()
        sampler.join()
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
            return 1
        stage = "eval" if target.startswith("results/eval") else "attention"
        parts = Path(target).with_suffix("").parts
        bench = work / "results" / "benchmarks" / ("evaluate/" + "/".join(parts[2:]) if stage == "eval"
                                                   else "attention_measure/" + "/".join(parts[2:4]))  # fmt: skip
        rss = bench.with_suffix(".tsv").read_text().splitlines()[-1].split("\t")[2]
        print(f"| {target} | {wall:.1f} (incl. prefetch/data on first use) | {rss} | {peak[0]:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""CPU time of one pretraining step: 16 blocks of 256 tokens vs 8 blocks of 512 (the same tokens per step).

    python benchmarks/bench_block_length.py [--steps 6] [--threads 1]

Builds the default study's scratch Llama shape (hidden 128, 4 layers, 4 heads, MLP 352, vocabulary 512) with a
random initialisation, and times forward + backward + AdamW step on random token ids with ``time.process_time``
(CPU seconds of this process). Each shape is measured twice, interleaved, so a change of machine load hits both;
the first step of each run is a warm-up and is left out, and the minimum over the rest is reported.
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def step_seconds(model: LlamaForCausalLM, batch: int, length: int, steps: int) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, model.config.vocab_size, (batch, length), generator=torch.Generator().manual_seed(0))
    times = []
    for _ in range(steps):
        start = time.process_time()
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.process_time() - start)
    return min(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=512, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                         intermediate_size=352, max_position_embeddings=512)  # fmt: skip
    model = LlamaForCausalLM(config)
    results: dict[tuple[int, int], list[float]] = {}
    for batch, length in ((16, 256), (8, 512), (16, 256), (8, 512)):
        results.setdefault((batch, length), []).append(step_seconds(model, batch, length, args.steps))
    base = min(results[16, 256])
    for (batch, length), seconds in results.items():
        print(f"{batch} x {length} tokens: {min(seconds):.3f} CPU-s per step (runs: {', '.join(f'{s:.3f}' for s in seconds)}), "
              f"{min(seconds) / base:.2f}x of 16 x 256")


if __name__ == "__main__":
    main()

"""Tiny random models and a tiny tokenizer, built locally, for tests and the generation benchmark.

Nothing here touches the network: the tokenizer is the project's byte-level BPE trained on a
few hundred generated GSM8K-style lines, and the models are randomly initialised from explicit configs under
``torch.manual_seed``. They are real ``transformers`` models (``LlamaForCausalLM``, ``DiffLlamaForCausalLM``,
``GPT2LMHeadModel``) so the evaluation code runs exactly as it does on trained checkpoints.
"""

from __future__ import annotations

import random

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerFast

from attnlab.models.architectures import architecture_names
from attnlab.models.registry import build_scratch_config
from attnlab.models.tokenizer import train_tokenizer
from attnlab.prompts import format_example

__all__ = ["TINY_ARCHITECTURES", "build_tiny_model", "build_tiny_tokenizer", "tiny_corpus"]

TINY_ARCHITECTURES = architecture_names(attention=True, causal=True)

_NAMES = ("Ava", "Ben", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jun", "Kofi", "Lena")
_ITEMS = ("apples", "pens", "books", "cookies", "stickers", "marbles", "tickets", "cards")


def tiny_corpus(n: int = 300, seed: int = 0) -> list[str]:
    """``n`` solved GSM8K-style examples in the shared prompt format (``Question: ...\\nAnswer: ... #### N``)."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
        a, b = rng.randint(2, 12), rng.randint(2, 99)
        question = f"{name} has {a} boxes of {b} {item}. How many {item} does {name} have?"
        answer = f"{name} has {a}*{b}=<<{a}*{b}={a * b}>>{a * b} {item}.\n#### {a * b}"
        texts.append(format_example(question, answer))
    return texts


def build_tiny_tokenizer(vocab_size: int = 300, *, with_pad: bool = True, seed: int = 0) -> PreTrainedTokenizerFast:
    """The project's byte-level BPE tokenizer (:func:`attnlab.models.tokenizer.train_tokenizer`) on a tiny corpus.

    ``tokenizer(text)`` prepends ``<s>``. With ``with_pad=False`` the tokenizer has no pad token, like the hub
    GPT-2 tokenizer (the ``<pad>`` string stays in the vocabulary but is not registered as the pad token).
    """
    tokenizer = train_tokenizer(tiny_corpus(seed=seed), vocab_size=vocab_size)
    if not with_pad:
        tokenizer.pad_token = None
    return tokenizer


def build_tiny_model(
    architecture: str,
    tokenizer: PreTrainedTokenizerFast,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int = 128,
    max_position_embeddings: int = 512,
    initializer_range: float = 0.2,
    seed: int = 0,
) -> PreTrainedModel:
    """A randomly initialised causal LM of ``architecture`` (``llama``, ``diffllama`` or ``gpt2``), in eval mode.

    The config comes from :func:`attnlab.models.registry.build_scratch_config`, as for the study's scratch
    models. ``initializer_range`` is larger than the usual 0.02 so the random logits are well separated: greedy
    decoding then does not hinge on float rounding differences between batch shapes, and batched == unbatched
    comparisons test the padding logic rather than luck.

    Raises:
        ValueError: for an unknown architecture.
    """
    if architecture not in TINY_ARCHITECTURES:
        raise ValueError(f"unknown tiny architecture {architecture!r}; choose from {TINY_ARCHITECTURES}")
    size = {
        "hidden_size": hidden_size,
        "num_layers": num_layers,
        "num_heads": num_heads,
        "intermediate_size": intermediate_size,
        "max_position_embeddings": max_position_embeddings,
    }
    config = build_scratch_config(architecture, size, tokenizer)
    config.initializer_range = initializer_range
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).eval()

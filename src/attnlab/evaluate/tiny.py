"""Tiny random models and a tiny tokenizer, built locally, for tests and the generation benchmark.

Nothing here touches the network: the tokenizer is a byte-level BPE trained with the ``tokenizers`` library on a
few hundred generated GSM8K-style lines, and the models are randomly initialised from explicit configs under
``torch.manual_seed``. They are real ``transformers`` models (``LlamaForCausalLM``, ``DiffLlamaForCausalLM``,
``GPT2LMHeadModel``) so the evaluation code runs exactly as it does on trained checkpoints.
"""

from __future__ import annotations

import random

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    DiffLlamaConfig,
    DiffLlamaForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from attnlab.prompts import format_example

__all__ = ["TINY_ARCHITECTURES", "build_tiny_model", "build_tiny_tokenizer", "tiny_corpus"]

TINY_ARCHITECTURES = ("llama", "diffllama", "gpt2")

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
    """A byte-level BPE tokenizer (digits split individually) with ``<s>``, ``</s>``, ``<unk>`` and ``<pad>``.

    ``tokenizer(text)`` prepends ``<s>``. With ``with_pad=False`` the tokenizer has no pad token, like the hub
    GPT-2 tokenizer (the ``<pad>`` string stays in the vocabulary but is not registered as the pad token).
    """
    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(tiny_corpus(seed=seed), trainer=trainer)
    bos_id = backend.token_to_id("<s>")
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)]
    )
    special_kwargs = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    if with_pad:
        special_kwargs["pad_token"] = "<pad>"
    return PreTrainedTokenizerFast(tokenizer_object=backend, **special_kwargs)


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

    ``initializer_range`` is larger than the usual 0.02 so the random logits are well separated: greedy decoding
    then does not hinge on float rounding differences between batch shapes, and batched == unbatched comparisons
    test the padding logic rather than luck.

    Raises:
        ValueError: for an unknown architecture.
    """
    special = {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if architecture in ("llama", "diffllama"):
        config_class = LlamaConfig if architecture == "llama" else DiffLlamaConfig
        config = config_class(
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            num_key_value_heads=num_heads,
            intermediate_size=intermediate_size,
            max_position_embeddings=max_position_embeddings,
            initializer_range=initializer_range,
            tie_word_embeddings=True,
            **special,
        )
        model_class = LlamaForCausalLM if architecture == "llama" else DiffLlamaForCausalLM
    elif architecture == "gpt2":
        config = GPT2Config(
            n_embd=hidden_size,
            n_layer=num_layers,
            n_head=num_heads,
            n_inner=intermediate_size,
            n_positions=max_position_embeddings,
            initializer_range=initializer_range,
            tie_word_embeddings=True,
            **special,
        )
        model_class = GPT2LMHeadModel
    else:
        raise ValueError(f"unknown tiny architecture {architecture!r}; choose from {TINY_ARCHITECTURES}")
    torch.manual_seed(seed)
    model = model_class(config)
    return model.eval()

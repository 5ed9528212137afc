"""Scratch configs: one size spec for every architecture, matched budgets, clear errors."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import AutoModelForCausalLM

from attnlab.models.registry import (
    SCRATCH_ARCHITECTURES,
    build_scratch_config,
    check_parameter_budget,
    count_parameters,
)
from attnlab.models.tokenizer import train_tokenizer

from conftest import TINY_SIZE as SIZE
CLASS_NAMES = {
    "llama": "LlamaForCausalLM",
    "diffllama": "DiffLlamaForCausalLM",
    "gpt2": "GPT2LMHeadModel",
    "mamba": "MambaForCausalLM",
    "mamba2": "Mamba2ForCausalLM",
    "mdlm": "MDLMForMaskedDiffusion",
}


@pytest.fixture(scope="module")
def tokenizer():
    rng = random.Random(0)
    texts = [f"Question: {rng.randint(1, 99)} plus {rng.randint(1, 99)}?\nAnswer: #### {rng.randint(1, 200)}" for _ in range(200)]
    return train_tokenizer(texts, vocab_size=300)


@pytest.mark.parametrize("architecture", SCRATCH_ARCHITECTURES)
def test_config_builds_tied_model_with_tokenizer_ids(architecture, tokenizer):
    config = build_scratch_config(architecture, SIZE, tokenizer)
    assert config.vocab_size == len(tokenizer)
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id) == (
        tokenizer.pad_token_id,
        tokenizer.bos_token_id,
        tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    assert type(model).__name__ == CLASS_NAMES[architecture]
    assert config.tie_word_embeddings
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    # count_parameters (meta device) equals the real model's distinct parameter count.
    assert count_parameters(config) == sum(p.numel() for p in model.parameters())
    logits = model(torch.tensor([[1, 10, 11, 12]])).logits
    assert logits.shape == (1, 4, len(tokenizer))


def test_llama_and_diffllama_differ_only_by_lambdas(tokenizer):
    llama = count_parameters(build_scratch_config("llama", SIZE, tokenizer))
    diff = count_parameters(build_scratch_config("diffllama", SIZE, tokenizer))
    head_dim = SIZE["hidden_size"] // SIZE["num_heads"]
    # Four λ vectors (q1, k1, q2, k2) of length head_dim per layer.
    assert diff - llama == 4 * head_dim * SIZE["num_layers"]
    check_parameter_budget({"llama": llama, "diffllama": diff})


def test_size_fields_are_used(tokenizer):
    small = count_parameters(build_scratch_config("llama", SIZE, tokenizer))
    wider = count_parameters(build_scratch_config("llama", {**SIZE, "intermediate_size": 128}, tokenizer))
    deeper = count_parameters(build_scratch_config("llama", {**SIZE, "num_layers": 3}, tokenizer))
    assert wider - small == SIZE["num_layers"] * 3 * SIZE["hidden_size"] * 64  # gate, up, down
    assert deeper > small
    gqa = build_scratch_config("llama", {**SIZE, "num_kv_heads": 2}, tokenizer)
    assert gqa.num_key_value_heads == 2
    m2 = build_scratch_config("mamba2", SIZE, tokenizer)
    assert m2.num_heads * m2.head_dim == SIZE["expand"] * SIZE["hidden_size"]


def test_unknown_architecture_is_named(tokenizer):
    with pytest.raises(ValueError, match="'transformer-xl'"):
        build_scratch_config("transformer-xl", SIZE, tokenizer)


@pytest.mark.parametrize(
    ("architecture", "size", "message"),
    [
        ("llama", {k: v for k, v in SIZE.items() if k != "num_heads"}, "missing required key 'num_heads'"),
        ("mamba2", {k: v for k, v in SIZE.items() if k != "head_dim"}, "missing required key 'head_dim'"),
        ("diffllama", {**SIZE, "num_heads": 2, "num_kv_heads": 1}, "even num_heads and num_kv_heads"),
        ("diffllama", {**SIZE, "hidden_size": 36, "num_heads": 3}, "even num_heads"),
        ("llama", {**SIZE, "hidden_size": 30}, "not divisible by num_heads"),
        ("llama", {**SIZE, "hiden_size": 32}, "unknown size spec keys \\['hiden_size'\\]"),
        ("gpt2", {**SIZE, "num_layers": 0}, "'num_layers' must be a positive integer"),
        ("mamba2", {**SIZE, "head_dim": 24}, "not divisible by head_dim=24"),
    ],
)
def test_bad_sizes(architecture, size, message, tokenizer):
    with pytest.raises(ValueError, match=message):
        build_scratch_config(architecture, size, tokenizer)


def test_ignored_keys_do_not_matter(tokenizer):
    # SSM keys mean nothing to an attention model, and vice versa.
    a = count_parameters(build_scratch_config("llama", SIZE, tokenizer))
    b = count_parameters(build_scratch_config("llama", {**SIZE, "state_size": 64}, tokenizer))
    assert a == b
    c = count_parameters(build_scratch_config("mamba", SIZE, tokenizer))
    d = count_parameters(build_scratch_config("mamba", {**SIZE, "num_heads": 8}, tokenizer))
    assert c == d


def test_parameter_budget_check():
    check_parameter_budget({"a": 1000, "b": 1049})
    with pytest.raises(ValueError, match="'big'.*1,100.*'small'.*1,000"):
        check_parameter_budget({"small": 1000, "mid": 1040, "big": 1100})
    check_parameter_budget({"small": 1000, "big": 1100}, tolerance=0.1)
    with pytest.raises(ValueError, match="no models"):
        check_parameter_budget({})


def test_mamba2_chunk_size_changes_speed_not_the_function(tokenizer):
    torch.manual_seed(0)
    whole = AutoModelForCausalLM.from_config(build_scratch_config("mamba2", SIZE, tokenizer)).eval()
    chunked_config = build_scratch_config("mamba2", {**SIZE, "chunk_size": 8}, tokenizer)
    assert chunked_config.chunk_size == 8 and whole.config.chunk_size == 256
    chunked = AutoModelForCausalLM.from_config(chunked_config).eval()
    chunked.load_state_dict(whole.state_dict())
    ids = torch.randint(5, len(tokenizer), (2, 40))  # five chunks of 8
    with torch.no_grad():
        torch.testing.assert_close(chunked(ids).logits, whole(ids).logits, rtol=1e-4, atol=1e-4)
    assert count_parameters(chunked_config) == count_parameters(whole.config)

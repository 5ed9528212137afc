"""The shared intervention mechanics restore the model on every exit and refuse a forward pass that bypassed them."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import AutoModelForCausalLM

from attnlab.attention.capture import CAPTURE_IMPLEMENTATION
from attnlab.interventions import (
    CallCounter,
    InterventionNotReachedError,
    attention_implementation,
    forward_hooks,
    require_reached,
)
from attnlab.models.registry import build_scratch_config
from attnlab.models.tokenizer import train_tokenizer

from conftest import TINY_SIZE


@pytest.fixture(scope="module")
def model():
    rng = random.Random(0)
    tokenizer = train_tokenizer([f"Question: {rng.randint(1, 99)} plus {rng.randint(1, 99)}?" for _ in range(100)], 300)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(build_scratch_config("llama", TINY_SIZE, tokenizer)).eval()


def test_attention_implementation_is_restored_when_the_block_raises(model):
    before = model.config._attn_implementation
    with pytest.raises(KeyError):
        with attention_implementation(model, CAPTURE_IMPLEMENTATION):
            assert model.config._attn_implementation == CAPTURE_IMPLEMENTATION
            raise KeyError("inside")
    assert model.config._attn_implementation == before


def test_forward_hooks_are_removed_even_after_a_failing_registration(model):
    layer = model.model.layers[0]
    seen = CallCounter()

    def hook(module, args, output):
        seen.calls += 1

    def failing():
        raise ValueError("cannot register")

    with pytest.raises(ValueError, match="cannot register"):
        with forward_hooks([lambda: layer.register_forward_hook(hook), failing]):
            pass  # pragma: no cover
    assert not layer._forward_hooks
    with torch.no_grad(), forward_hooks([lambda: layer.register_forward_hook(hook)]):
        model(torch.tensor([[1, 5, 6]]))
    assert seen.calls == 1 and not layer._forward_hooks
    require_reached(seen, "the layer-0 hook")


def test_an_intervention_that_never_ran_is_an_error():
    with pytest.raises(InterventionNotReachedError, match="the gate hook never ran"):
        require_reached(CallCounter(), "the gate hook")
    with pytest.raises(LookupError, match="never ran"):
        require_reached(CallCounter(), "x", LookupError)

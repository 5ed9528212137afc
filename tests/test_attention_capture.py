"""Per-layer attention capture: rows equal HF's eager attention weights, DiffLlama's differential map × V equals the
module's output before its norm, the forward pass is unchanged, unsupported models fail clearly."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from attnlab.attention import MAP_DIFFERENTIAL, MAP_RAW_A, MAP_RAW_B, MAP_STANDARD
from attnlab.attention.capture import UnsupportedArchitectureError, capture_attention
from attnlab.attention.masses import measure_class_masses
from attnlab.evaluate.tiny import build_tiny_model, build_tiny_tokenizer
from attnlab.models.registry import build_scratch_config

from conftest import TINY_SIZE

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPT = "Question: Ava has 3 boxes of 12 pens. Ben has 7 cards. How many pens does Ava have?\nAnswer:"


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def ids(tokenizer):
    return tokenizer(PROMPT, return_tensors="pt").input_ids  # [1, T]


def _model(architecture, tokenizer, **size):
    return build_tiny_model(architecture, tokenizer, hidden_size=32, num_layers=3, num_heads=4,
                            intermediate_size=64, **size)


def _eager_attentions(model, ids):
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    with torch.no_grad():
        out = model(input_ids=ids, output_attentions=True)
    model.set_attn_implementation(previous)
    return out.attentions  # per layer [1, H, T, T]


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_standard_rows_equal_hf_eager_weights(architecture, tokenizer, ids):
    model = _model(architecture, tokenizer)
    reference = _eager_attentions(model, ids)
    positions = [0, 5, ids.shape[1] - 1]
    with torch.no_grad(), capture_attention(model, lambda a: (a.layer, a.maps), positions) as captured:
        model(input_ids=ids)
    assert [layer for layer, _ in captured] == list(range(model.config.num_hidden_layers))
    for layer, maps in captured:
        assert set(maps) == {MAP_STANDARD}
        torch.testing.assert_close(maps[MAP_STANDARD], reference[layer][:, :, positions], atol=1e-5, rtol=1e-5)


def test_diffllama_maps_and_lambda(tokenizer, ids):
    model = _model("diffllama", tokenizer)
    reference = _eager_attentions(model, ids)  # HF returns the raw softmax maps of all H heads
    with torch.no_grad(), capture_attention(model, lambda a: a, [-1]) as captured:
        model(input_ids=ids)
    half = model.config.num_attention_heads // 2
    for attention in captured:
        module = model.model.layers[attention.layer].self_attn
        lam = (torch.exp((module.lambda_q1 * module.lambda_k1).sum()) - torch.exp((module.lambda_q2 * module.lambda_k2).sum())
               + module.lambda_init).item()
        assert attention.differential and attention.lambda_full == pytest.approx(lam, rel=1e-6)
        raw = reference[attention.layer][:, :, -1:]  # [1, H, 1, T]
        torch.testing.assert_close(attention.maps[MAP_RAW_A], raw[:, :half], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(attention.maps[MAP_RAW_B], raw[:, half:], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(attention.maps[MAP_DIFFERENTIAL], raw[:, :half] - lam * raw[:, half:], atol=1e-5, rtol=1e-5)
        # rows of the differential map sum to 1 - λ, and they do have negative entries at random init
        torch.testing.assert_close(attention.maps[MAP_DIFFERENTIAL].sum(-1), torch.full((1, half, 1), 1 - lam), atol=1e-5, rtol=0)


def test_differential_map_times_values_is_module_output_before_norm(tokenizer, ids):
    """D_i @ [V1 | V2] == the attention module's output before its per-head RMSNorm, every layer, every query."""
    model = _model("diffllama", tokenizer)
    before_norm = {}
    hooks = [
        layer.self_attn.groupnorm.register_forward_hook(
            lambda module, args, out, i=i: before_norm.__setitem__(i, args[0].detach().clone())
        )
        for i, layer in enumerate(model.model.layers)
    ]
    try:
        with torch.no_grad(), capture_attention(model, lambda a: a, None) as captured:  # every query row
            model(input_ids=ids)
    finally:
        for hook in hooks:
            hook.remove()
    assert len(captured) == model.config.num_hidden_layers
    for attention in captured:
        d = attention.maps[MAP_DIFFERENTIAL]  # [1, H/2, T, T]
        assert d.shape[-1] == d.shape[-2] == ids.shape[1]
        mixed = torch.einsum("bhqt,bhtv->bqhv", d, attention.values[MAP_DIFFERENTIAL])  # [1, T, H/2, 2d]
        torch.testing.assert_close(mixed, before_norm[attention.layer], atol=1e-5, rtol=1e-4)
        assert (d < 0).any()  # the negative part exists and is not clamped


def test_forward_unchanged_and_implementation_restored(tokenizer, ids):
    model = _model("diffllama", tokenizer)
    with torch.no_grad():
        expected = model(input_ids=ids).logits
        with capture_attention(model, lambda a: None, [-1, -2]):
            got = model(input_ids=ids).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert model.config._attn_implementation == "sdpa"


def test_measure_class_masses_shapes_and_sums(tokenizer, ids):
    model = _model("diffllama", tokenizer)
    classes = [3] + [0, 1, 2] * ((ids.shape[1] - 1) // 3) + [2] * ((ids.shape[1] - 1) % 3)
    result = measure_class_masses(model, ids, classes, [-1, -3], n_classes=4)
    assert set(result.masses) == {MAP_DIFFERENTIAL, MAP_RAW_A, MAP_RAW_B}
    assert result.masses[MAP_RAW_A].shape == (3, 2, 2, 4)
    assert result.masses[MAP_RAW_B].sum(-1) == pytest.approx(1.0)
    for layer, lam in enumerate(result.lambda_full):
        assert result.masses[MAP_DIFFERENTIAL][layer].sum(-1) == pytest.approx(1 - lam, abs=1e-5)
    assert (result.negative[MAP_DIFFERENTIAL] < 0).all() and (result.negative[MAP_RAW_A] == 0).all()


def test_mamba_is_rejected(tokenizer, ids):
    config = build_scratch_config("mamba", TINY_SIZE, tokenizer)
    model = AutoModelForCausalLM.from_config(config).eval()
    with pytest.raises(UnsupportedArchitectureError, match="mamba"):
        with capture_attention(model, lambda a: None):
            pass

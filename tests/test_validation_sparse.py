"""Adaptive sparse attention: the registered attention function, key selection, ratio allocation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from attnlab.evaluate.tiny import build_tiny_model, build_tiny_tokenizer
from attnlab.models.registry import build_scratch_config
from attnlab.validation.sparse_attention import (
    SPARSE_ATTENTION,
    allocate_keep_ratios,
    allocation_weights,
    attention_modules,
    expand_unit_ratios,
    sparse_attention,
    sparse_attention_forward,
    sparse_conditions,
    sparse_keep_mask,
    units_per_layer,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = ["Question: Ava has 3 boxes of 4 pens. How many pens?", "Question: Ben has 2"]


@pytest.fixture(scope="module")
def tokenizer():
    tok = build_tiny_tokenizer()
    tok.padding_side = "left"
    return tok


def _model(architecture: str, tokenizer):
    if architecture == "mdlm":
        size = {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "intermediate_size": 64, "max_position_embeddings": 128}
        config = build_scratch_config("mdlm", size, tokenizer)
        config.initializer_range = 0.2
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(config).eval()
    return build_tiny_model(architecture, tokenizer, hidden_size=32, num_heads=4, intermediate_size=64)


def _shape(model) -> tuple[int, int]:
    return len(attention_modules(model)), units_per_layer(model)


@pytest.mark.parametrize("architecture", ["llama", "diffllama", "gpt2", "mdlm"])
def test_ratio_one_reproduces_dense_logits(architecture, tokenizer):
    model = _model(architecture, tokenizer)
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    real = batch["attention_mask"].bool()  # left-padded rows: compare the real positions
    with torch.no_grad():
        dense = model(**batch).logits
        model.set_attn_implementation("eager")
        eager = model(**batch).logits
        model.set_attn_implementation("sdpa")
        with sparse_attention(model, np.ones(_shape(model))) as counts:
            assert model.config._attn_implementation == SPARSE_ATTENTION
            sparse = model(**batch).logits
    assert model.config._attn_implementation == "sdpa"  # restored
    assert counts[0] == counts[1] > 0  # the function ran and kept every attendable pair
    torch.testing.assert_close(sparse[real], eager[real], rtol=0, atol=1e-6)
    torch.testing.assert_close(sparse[real], dense[real], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("architecture", ["llama", "diffllama", "mdlm"])
def test_small_ratio_changes_logits_and_keeps_the_budget(architecture, tokenizer):
    model = _model(architecture, tokenizer)
    batch = tokenizer(PROMPTS[:1], return_tensors="pt")
    with torch.no_grad():
        dense = model(**batch).logits
        with sparse_attention(model, np.full(_shape(model), 0.2)) as counts:
            sparse = model(**batch).logits
    assert not torch.allclose(sparse, dense, atol=1e-3)
    n = batch["input_ids"].shape[1]
    causal = architecture != "mdlm"
    allowed_per_query = [q + 1 if causal else n for q in range(n)]
    kept_per_query = [min(max(math.ceil(0.2 * a - 1e-6), 1), a) for a in allowed_per_query]
    calls = 2 if architecture == "diffllama" else 1  # DiffLlama calls the function once per half of V
    heads = calls * model.config.num_attention_heads * len(attention_modules(model))
    assert counts == [heads * sum(kept_per_query), heads * sum(allowed_per_query)]


def _causal_mask(q_len: int, kv_len: int, pad: int = 0) -> torch.Tensor:
    """Additive float mask [1, 1, q, k] as transformers' eager mask builder makes it (causal, left padding)."""
    rows = torch.arange(q_len).view(-1, 1) + (kv_len - q_len)
    cols = torch.arange(kv_len).view(1, -1)
    allowed = (cols <= rows) & (cols >= pad)
    return torch.zeros(q_len, kv_len).masked_fill(~allowed, torch.finfo(torch.float32).min)[None, None]


class _Module(torch.nn.Module):
    is_causal = True


@pytest.mark.parametrize("ratio", [0.1, 0.34, 0.5])
def test_keeps_exactly_k_top_keys_and_the_sink(ratio):
    torch.manual_seed(1)
    b, h, n, d, pad = 2, 3, 12, 8, 2
    query, key, value = (torch.randn(b, h, n, d) for _ in range(3))
    module = _Module()
    module._attnlab_keep_ratio = torch.full((h,), ratio, dtype=torch.float64)
    mask = _causal_mask(n, n, pad)
    _, weights = sparse_attention_forward(module, query, key, value, mask, scaling=d**-0.5)  # [b, h, q, k]
    scores = (query @ key.transpose(2, 3)) * d**-0.5
    for q in range(pad, n):
        allowed = q - pad + 1
        k = min(max(math.ceil(ratio * allowed - 1e-6), 1), allowed)
        kept = weights[:, :, q] > 0  # [b, h, n]
        assert torch.all(kept.sum(-1) == k), (q, k)
        assert torch.all(kept[..., pad]), "the sink (first non-padded key) is always kept"
        assert not kept[..., q + 1 :].any() and not kept[..., :pad].any(), "causal and padding masks respected"
        others = scores[:, :, q, pad + 1 : q + 1]  # candidate keys besides the sink
        if k > 1:
            top = others.topk(k - 1, dim=-1).indices + pad + 1
            assert torch.all(kept.gather(-1, top))
        torch.testing.assert_close(weights[:, :, q].sum(-1), torch.ones(b, h))


def test_keep_mask_per_head_ratio_and_no_mask_causal_module():
    torch.manual_seed(2)
    scores = torch.randn(1, 2, 10, 10)
    allowed = torch.ones(10, 10).tril().bool()[None, None]
    keep = sparse_keep_mask(scores, allowed, torch.tensor([1.0, 0.3]))
    assert torch.equal(keep[0, 0], allowed[0, 0])  # ratio 1: every allowed key
    n_allowed = torch.arange(1, 11)
    assert torch.equal(keep[0, 1].sum(-1), torch.clamp(torch.ceil(0.3 * n_allowed - 1e-6), min=1).long())
    # a causal module called without a mask gets the causal mask anyway
    module = _Module()
    module._attnlab_keep_ratio = torch.tensor([1.0])
    q = torch.randn(1, 1, 5, 4)
    _, weights = sparse_attention_forward(module, q, q, q, None)
    assert torch.all(weights[0, 0].triu(1) == 0)


def test_diffllama_unit_ratio_covers_both_heads_of_a_pair(tokenizer):
    model = _model("diffllama", tokenizer)
    layers, units = _shape(model)
    assert units == model.config.num_attention_heads // 2
    ratios = np.arange(1, layers * units + 1, dtype=float).reshape(layers, units) / (layers * units)
    heads = expand_unit_ratios(model, ratios)
    assert heads.shape == (layers, 2 * units)
    np.testing.assert_array_equal(heads[:, :units], ratios)
    np.testing.assert_array_equal(heads[:, units:], ratios)
    with pytest.raises(ValueError, match="shape"):
        expand_unit_ratios(model, np.ones((layers, 2 * units)))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        expand_unit_ratios(model, np.zeros((layers, units)))


def test_allocation_mean_equals_budget_and_is_proportional():
    importance = np.array([[3.0, 1.0, 0.5, -2.0], [0.1, 2.0, 5.0, 0.2]])
    for budget in (0.05, 0.1, 0.3, 0.5):
        ratios = allocate_keep_ratios(importance, budget, 0.05)
        assert ratios.mean() == pytest.approx(budget, abs=1e-9)
        assert ratios.min() >= 0.05 - 1e-12 and ratios.max() <= 1.0 + 1e-12
        assert ratios[0, 3] == pytest.approx(0.05)  # negative importance counts as 0: the floor
    assert allocate_keep_ratios(importance, 0.9, 0.05).mean() == pytest.approx(0.9)
    ratios = allocate_keep_ratios(importance, 0.3, 0.05)
    free = (ratios > 0.05 + 1e-9) & (ratios < 1 - 1e-6)
    proportional = ratios[free] / np.clip(importance, 0, None)[free]
    np.testing.assert_allclose(proportional, proportional[0])  # unclipped heads ∝ importance
    per_layer = allocate_keep_ratios(importance, 0.3, 0.05, scope="per_layer")
    np.testing.assert_allclose(per_layer.mean(axis=1), [0.3, 0.3])


def test_allocation_edge_cases():
    np.testing.assert_allclose(allocate_keep_ratios(np.zeros((2, 2)), 0.4, 0.1), 0.4)  # no signal: uniform
    # one positive head cannot absorb the budget: it keeps all, the zero heads share the rest
    ratios = allocate_keep_ratios(np.array([[1.0, 0.0, 0.0, 0.0]]), 0.5, 0.1)
    np.testing.assert_allclose(ratios, [[1.0, 1 / 3, 1 / 3, 1 / 3]])
    with pytest.raises(ValueError, match="budget"):
        allocate_keep_ratios(np.ones((1, 2)), 0.05, 0.1)
    with pytest.raises(ValueError, match="non-finite"):
        allocate_keep_ratios(np.array([[np.nan, 1.0]]), 0.5, 0.1)
    with pytest.raises(ValueError, match="scope"):
        allocate_keep_ratios(np.ones((1, 2)), 0.5, 0.1, scope="heads")


def test_conditions_dense_then_uniform_and_adaptive_at_equal_budget():
    scores = np.array([[1.0, 2.0], [3.0, 4.0]])
    conditions = sparse_conditions(scores, [0.5, 0.2], min_ratio=0.05, scope="global", allocations=["linear_signed", "rank"])
    assert [(m, a, b) for m, a, b, _ in conditions] == [
        ("dense", "", 1.0), ("uniform", "", 0.5), ("adaptive", "linear_signed", 0.5), ("adaptive", "rank", 0.5),
        ("uniform", "", 0.2), ("adaptive", "linear_signed", 0.2), ("adaptive", "rank", 0.2),
    ]
    assert conditions[0][3] is None
    for _, _, budget, ratios in conditions[1:]:
        assert ratios.mean() == pytest.approx(budget)


def test_allocation_rules_do_not_starve_heads_by_sign():
    """Signed scores with 5 of 16 heads ≤ 0: linear_signed gives those heads only the floor; the other rules
    rank them by their weight, every rule keeps the budget, and softmax tends to uniform as T grows."""
    rng = np.random.default_rng(3)
    scores = np.concatenate([-np.abs(rng.normal(size=5)) * 0.5, np.abs(rng.normal(size=11))]).reshape(2, 8)
    floor, budget = 0.05, 0.5
    negative = scores <= 0
    linear = allocate_keep_ratios(allocation_weights(scores, "linear_signed"), budget, floor)
    np.testing.assert_allclose(linear[negative], floor)
    for allocation in ("magnitude", "rank", "softmax"):
        weights = allocation_weights(scores, allocation)
        assert (weights >= 0).all()
        ratios = allocate_keep_ratios(weights, budget, floor)
        assert ratios.mean() == pytest.approx(budget, abs=1e-9)
        if allocation != "magnitude":
            assert (ratios[negative] > floor + 1e-6).any() and (weights > 0).all()
    np.testing.assert_allclose(allocation_weights(scores, "magnitude"), np.abs(scores))
    rank = allocation_weights(scores, "rank")
    assert sorted(rank.ravel()) == list(range(1, 17)) and rank.ravel()[np.argmax(scores)] == 16
    hot = allocation_weights(scores, "softmax", temperature=1e3)
    np.testing.assert_allclose(hot / hot.max(), 1.0, atol=1e-2)  # T → ∞: equal weights
    with pytest.raises(ValueError, match="allocation"):
        allocation_weights(scores, "sqrt")

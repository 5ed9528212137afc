"""Per-head gates: layout per architecture, exact identity at α = 1, α = 0 equals removing the head."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from attnlab.attribution.gates import HeadGates, UnsupportedModelError, gate_layout, head_mask_alpha, ones_alpha
from attnlab.evaluate.tiny import build_tiny_model, build_tiny_tokenizer
from attnlab.models.registry import build_scratch_config
from conftest import TINY_SIZE

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def _model(architecture: str, tokenizer):
    if architecture == "mdlm":
        size = {k: TINY_SIZE[k] for k in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_position_embeddings")}
        config = build_scratch_config("mdlm", size, tokenizer)
        config.initializer_range = 0.2
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(config).eval()
    return build_tiny_model(architecture, tokenizer, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64)


@pytest.fixture(scope="module")
def models(tokenizer):
    return {arch: _model(arch, tokenizer) for arch in ("llama", "diffllama", "gpt2", "mdlm")}


@pytest.fixture(scope="module")
def input_ids(tokenizer):
    return tokenizer(["Question: Ava has 3 boxes of 5 pens.\nAnswer: 15", "Question: Ben has 2 cards.\nAnswer: 2 2"],
                     padding=True, return_tensors="pt").input_ids


@pytest.mark.parametrize(
    "architecture, units, unit_dim, model_type",
    [("llama", 4, 8, "llama"), ("diffllama", 2, 16, "diffllama"), ("gpt2", 4, 8, "gpt2"), ("mdlm", 4, 8, "attnlab_mdlm")],
)
def test_layout_per_architecture(models, architecture, units, unit_dim, model_type):
    layout = gate_layout(models[architecture])
    assert (layout.model_type, layout.num_layers, layout.units_per_layer, layout.unit_dim) == (model_type, 2, units, unit_dim)
    assert layout.shape == (2, units)
    assert all(name.endswith("c_proj" if architecture == "gpt2" else "o_proj") for name in layout.module_names)


@pytest.mark.parametrize("architecture", ["llama", "diffllama", "gpt2", "mdlm"])
def test_gates_all_one_reproduce_logits_exactly(models, input_ids, architecture):
    model = models[architecture]
    with torch.no_grad():
        reference = model(input_ids).logits
        with HeadGates(model) as gates:
            gates.set(ones_alpha(gates.layout))
            shared = model(input_ids).logits
            gates.set(ones_alpha(gates.layout, batch=input_ids.shape[0]))
            per_row = model(input_ids).logits
        after = model(input_ids).logits  # hooks removed on exit
    assert torch.equal(shared, reference) and torch.equal(per_row, reference) and torch.equal(after, reference)


def _zero_projection_columns(model, layer: int, start: int, stop: int):
    """The independent ablation: zero the projection weights that read the unit's input features."""
    layout = gate_layout(model)
    proj = layout.projections[layer]
    ablated = {}
    with torch.no_grad():
        if layout.model_type == "gpt2":  # Conv1D weight [in, out]
            ablated["w"] = proj.weight[start:stop].clone()
            proj.weight[start:stop] = 0
        else:  # Linear weight [out, in]
            ablated["w"] = proj.weight[:, start:stop].clone()
            proj.weight[:, start:stop] = 0
    return proj, ablated


@pytest.mark.parametrize("architecture", ["llama", "diffllama", "gpt2", "mdlm"])
def test_zero_gate_equals_removing_the_unit(models, input_ids, architecture):
    model = models[architecture]
    layout = gate_layout(model)
    layer, unit = 1, layout.units_per_layer - 1
    with torch.no_grad(), HeadGates(model) as gates:
        gates.set(head_mask_alpha(layout, [(layer, unit)]))
        gated = model(input_ids).logits
    start, stop = unit * layout.unit_dim, (unit + 1) * layout.unit_dim
    proj, saved = _zero_projection_columns(model, layer, start, stop)
    try:
        with torch.no_grad():
            ablated = model(input_ids).logits
    finally:
        with torch.no_grad():
            if layout.model_type == "gpt2":
                proj.weight[start:stop] = saved["w"]
            else:
                proj.weight[:, start:stop] = saved["w"]
    with torch.no_grad():
        baseline = model(input_ids).logits
    torch.testing.assert_close(gated, ablated, rtol=1e-5, atol=1e-5)
    assert (gated - baseline).abs().max() > 1e-4  # the unit mattered, so the check is not vacuous


def test_diffllama_unit_is_a_differential_head_after_the_norm(models, input_ids):
    """Gate u = 0 equals zeroing the u-th [2·head_dim] slice of the per-head RMS norm's output."""
    model = models["diffllama"]
    layout = gate_layout(model)
    unit = 0
    attention = model.model.layers[0].self_attn

    def zero_unit(module, args, output):  # output [B, T, H/2, 2·head_dim]
        output = output.clone()
        output[:, :, unit, :] = 0
        return output

    handle = attention.groupnorm.register_forward_hook(zero_unit)
    try:
        with torch.no_grad():
            ablated = model(input_ids).logits
    finally:
        handle.remove()
    with torch.no_grad(), HeadGates(model) as gates:
        gates.set(head_mask_alpha(layout, [(0, unit)]))
        gated = model(input_ids).logits
    torch.testing.assert_close(gated, ablated, rtol=1e-5, atol=1e-5)


def test_per_row_gates_match_separate_runs(models, input_ids):
    model = models["llama"]
    layout = gate_layout(model)
    rows = torch.rand((2, *layout.shape), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), HeadGates(model) as gates:
        gates.set(rows)
        batched = model(input_ids).logits
        singles = []
        for r in range(2):
            gates.set(rows[r])
            singles.append(model(input_ids[r : r + 1]).logits[0])
    torch.testing.assert_close(batched, torch.stack(singles), rtol=1e-5, atol=1e-5)


def test_gradients_reach_every_gate(models, input_ids):
    model = models["gpt2"]
    layout = gate_layout(model)
    alpha = torch.ones((input_ids.shape[0], *layout.shape), requires_grad=True)
    with HeadGates(model) as gates:
        gates.set(alpha)
        model(input_ids).logits.logsumexp(-1).sum().backward()
    assert alpha.grad is not None and (alpha.grad != 0).all()


def test_errors(models, tokenizer):
    layout = gate_layout(models["llama"])
    with pytest.raises(IndexError, match="outside"):
        head_mask_alpha(layout, [(2, 0)])
    gates = HeadGates(models["llama"])
    with pytest.raises(ValueError, match="alpha must have shape"):
        gates.set(torch.ones(3, 3))
    size = {k: TINY_SIZE[k] for k in ("hidden_size", "num_layers", "state_size", "expand", "conv_kernel") if k in TINY_SIZE}
    mamba = AutoModelForCausalLM.from_config(build_scratch_config("mamba", size, tokenizer))
    with pytest.raises(UnsupportedModelError, match="mamba"):
        gate_layout(mamba)

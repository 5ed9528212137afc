"""The objective J = −L: which tokens are scored, the loss value, mask draws for masked diffusion."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from attnlab.attribution.gates import gate_layout, head_mask_alpha
from attnlab.attribution.objectives import ObjectiveSpec, encode_items, item_losses, mask_draws
from attnlab.evaluate.tiny import build_tiny_model, build_tiny_tokenizer
from attnlab.models.registry import build_scratch_config
from conftest import TINY_SIZE

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DATA = pd.DataFrame(
    {
        "id": ["q1", "q2"],
        "question": ["Ava has 3 boxes of 5 pens. How many pens does Ava have?", "Ben has 4 cards and buys 7 more. How many now?"],
        "answer": ["Ava has 3*5=<<3*5=15>>15 pens.\n#### 15", "Ben has 4+7=<<4+7=11>>11 cards.\n#### 11"],
    }
)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def llama(tokenizer):
    return build_tiny_model("llama", tokenizer, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64)


@pytest.fixture(scope="module")
def mdlm(tokenizer):
    size = {k: TINY_SIZE[k] for k in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_position_embeddings")}
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(build_scratch_config("mdlm", size, tokenizer)).eval()


def test_solution_target_scores_the_worked_solution_and_eos(llama, tokenizer):
    items = encode_items(llama, tokenizer, DATA, ObjectiveSpec(target="solution"))
    scored = items[0].input_ids[items[0].target_mask]
    assert scored[-1].item() == tokenizer.eos_token_id
    assert tokenizer.decode(scored[:-1]).strip() == DATA["answer"][0]
    prompt_len = len(tokenizer("Question: " + DATA["question"][0] + "\nAnswer:")["input_ids"])
    assert not items[0].target_mask[:prompt_len].any() and items[0].target_mask[prompt_len:].all()


def test_final_answer_target_scores_only_the_number(llama, tokenizer):
    items = encode_items(llama, tokenizer, DATA, ObjectiveSpec(target="final_answer"))
    scored = items[1].input_ids[items[1].target_mask]
    assert tokenizer.decode(scored[:-1]).strip() == "11" and scored[-1].item() == tokenizer.eos_token_id


def test_ar_loss_matches_transformers_label_loss(llama, tokenizer):
    spec = ObjectiveSpec(normalization="mean_masked")
    items = encode_items(llama, tokenizer, DATA, spec)
    losses = item_losses(llama, items, spec)
    for item, loss in zip(items, losses):
        labels = item.input_ids.masked_fill(~item.target_mask, -100)[None]
        with torch.no_grad():
            expected = llama(item.input_ids[None], labels=labels).loss.item()  # mean CE over scored tokens
        assert loss == pytest.approx(expected, rel=1e-5)
    summed = item_losses(llama, items, ObjectiveSpec(normalization="sum"))
    n_scored = [int(item.target_mask[1:].sum()) for item in items]
    assert summed == pytest.approx(losses * n_scored, rel=1e-5)


def test_loss_with_a_head_mask_equals_the_ablated_model(llama, tokenizer):
    spec = ObjectiveSpec()
    items = encode_items(llama, tokenizer, DATA, spec)
    layout = gate_layout(llama)
    masked = item_losses(llama, items, spec, alpha=head_mask_alpha(layout, [(0, 1)]))
    proj = layout.projections[0]
    saved = proj.weight[:, 8:16].clone()
    with torch.no_grad():
        proj.weight[:, 8:16] = 0
    try:
        ablated = item_losses(llama, items, spec)
    finally:
        with torch.no_grad():
            proj.weight[:, 8:16] = saved
    assert masked == pytest.approx(ablated, rel=1e-5)
    assert abs(masked - item_losses(llama, items, spec)).max() > 1e-6


def test_mask_draws_are_seeded_answer_only_and_never_empty():
    target = torch.tensor([False, False, True, True, True, False])
    draws = mask_draws(target, (0.01, 0.5, 1.0), 2, seed=3)
    assert draws.shape == (6, 6)
    assert not draws[:, ~target].any()
    assert draws.any(dim=1).all()  # p = 0.01 draws are forced to mask one token
    assert draws[4:].sum().item() == 6  # p = 1 masks every answer token
    assert torch.equal(draws, mask_draws(target, (0.01, 0.5, 1.0), 2, seed=3))


def test_mdlm_loss_is_masked_reconstruction(mdlm, tokenizer):
    spec = ObjectiveSpec(mask_probs=(0.3, 0.9), mask_samples_per_prob=2, seed=5)
    items = encode_items(mdlm, tokenizer, DATA, spec)
    item = items[0]
    assert item.masked_ids.shape == (4, len(item.input_ids))
    assert (item.masked_ids[item.draw_mask] == mdlm.config.mask_token_id).all()
    assert torch.equal(item.masked_ids[~item.draw_mask], item.input_ids.expand(4, -1)[~item.draw_mask])
    with torch.no_grad():
        logits = mdlm(input_ids=item.masked_ids).logits  # [K, T, V], no shift
    per_draw = [
        F.cross_entropy(logits[k][item.draw_mask[k]], item.input_ids[item.draw_mask[k]]).item() for k in range(4)
    ]
    assert item_losses(mdlm, items[:1], spec)[0] == pytest.approx(sum(per_draw) / 4, rel=1e-5)
    again = encode_items(mdlm, tokenizer, DATA, spec)
    assert torch.equal(again[0].draw_mask, item.draw_mask)  # seeded by (seed, item id)


def test_bad_inputs(llama, tokenizer):
    with pytest.raises(ValueError, match="missing column"):
        encode_items(llama, tokenizer, DATA.drop(columns="answer"), ObjectiveSpec())
    with pytest.raises(ValueError, match="####"):
        encode_items(llama, tokenizer, DATA.assign(answer="no marker"), ObjectiveSpec(target="final_answer"))
    with pytest.raises(ValueError, match="normalization"):
        ObjectiveSpec(normalization="mean")
    long = DATA.assign(answer="1 " * 400 + "\n#### 1")
    with pytest.raises(ValueError, match="q1: .* exceed"):
        encode_items(llama, tokenizer, long, ObjectiveSpec())

"""The masked diffusion LM: bidirectional, registered, same budget as Llama, LLaDA loss, pretraining hook."""

from __future__ import annotations

import random

import pandas as pd
import pytest
import torch
from torch.nn import functional as F
from transformers import AutoModelForCausalLM, LlamaForCausalLM

from attnlab.evaluate.tiny import build_tiny_tokenizer
from attnlab.models.loader import load_model
from attnlab.models.mdlm import (
    MASK_EPSILON,
    MDLMConfig,
    MDLMForMaskedDiffusion,
    MaskedDiffusionObjective,
    forward_mask,
    is_masked_diffusion_model,
    masked_diffusion_loss,
)
from attnlab.models.pretrain import corpus_documents, pretrain, read_training_info
from attnlab.models.registry import build_scratch_config, count_parameters
from attnlab.models.tokenizer import save_tokenizer, train_tokenizer

SIZE = {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "intermediate_size": 64, "max_position_embeddings": 128}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(build_scratch_config("mdlm", SIZE, tokenizer)).eval()


def test_registry_builds_the_bidirectional_class_with_the_mask_id(model, tokenizer):
    assert type(model) is MDLMForMaskedDiffusion and isinstance(model.config, MDLMConfig)
    assert model.config.model_type == "attnlab_mdlm" and is_masked_diffusion_model(model)
    assert model.config.mask_token_id == tokenizer.mask_token_id == tokenizer.convert_tokens_to_ids("<mask>")
    assert model.config.is_causal is False
    assert all(layer.self_attn.is_causal is False for layer in model.model.layers)
    assert not is_masked_diffusion_model(LlamaForCausalLM(build_scratch_config("llama", SIZE, tokenizer)))


def test_parameter_budget_equals_llama(tokenizer):
    llama = count_parameters(build_scratch_config("llama", SIZE, tokenizer))
    assert count_parameters(build_scratch_config("mdlm", SIZE, tokenizer)) == llama


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_a_later_token_changes_earlier_logits(model, tokenizer, implementation):
    """Non-causal: position 0's logits depend on the last token (for Llama they do not)."""
    model.config._attn_implementation = implementation
    try:
        ids = torch.tensor([tokenizer("Question: Ava has 3 pens. How many?")["input_ids"]])  # (1, n)
        changed = ids.clone()
        changed[0, -1] = tokenizer.mask_token_id
        with torch.no_grad():
            a, b = model(input_ids=ids).logits, model(input_ids=changed).logits
        assert (a[0, 0] - b[0, 0]).abs().max() > 1e-4
        assert (a[0, : ids.shape[1] // 2] - b[0, : ids.shape[1] // 2]).abs().amax(-1).min() > 1e-6
        torch.manual_seed(0)
        llama = LlamaForCausalLM(build_scratch_config("llama", SIZE, tokenizer)).eval()
        llama.config._attn_implementation = implementation
        with torch.no_grad():
            assert torch.equal(llama(input_ids=ids).logits[0, :-1], llama(input_ids=changed).logits[0, :-1])
    finally:
        model.config._attn_implementation = "sdpa"


def test_left_padding_with_mask_and_positions_matches_unpadded(model, tokenizer):
    ids = torch.tensor([tokenizer("Question: Ben has 4 apples.")["input_ids"]])  # (1, n)
    padded = torch.cat([torch.full((1, 3), tokenizer.pad_token_id), ids], dim=1)
    mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.ones_like(ids)], dim=1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        alone = model(input_ids=ids).logits
        batched = model(input_ids=padded, attention_mask=mask, position_ids=positions).logits[:, 3:]
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)


def test_save_and_load_through_the_one_loader(model, tokenizer, tmp_path):
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    loaded, loaded_tokenizer = load_model(tmp_path / "m", device="cpu")
    assert type(loaded) is MDLMForMaskedDiffusion and loaded.config.mask_token_id == tokenizer.mask_token_id
    ids = torch.tensor([tokenizer("Question: 2 plus 3?\nAnswer: <mask><mask>")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, loaded(input_ids=ids).logits)


def test_forward_rejects_labels(model):
    with pytest.raises(ValueError, match="does not take labels"):
        model(input_ids=torch.tensor([[1, 5, 6]]), labels=torch.tensor([[1, 5, 6]]))


def test_forward_mask_masks_only_eligible_tokens_with_probability_t():
    labels = torch.arange(10, 10 + 4 * 500).reshape(4, 500)
    labels[:, :100] = -100  # a "prompt" that must never be masked
    masked, p_mask = forward_mask(labels, torch.Generator().manual_seed(0))
    assert masked.shape == labels.shape and p_mask.shape == (4,)
    assert not masked[:, :100].any()
    assert ((p_mask >= MASK_EPSILON) & (p_mask <= 1)).all()
    observed = masked[:, 100:].float().mean(dim=1)
    assert torch.allclose(observed, p_mask, atol=0.08)  # 400 Bernoulli(p) draws per row
    again, _ = forward_mask(labels, torch.Generator().manual_seed(0))
    assert torch.equal(masked, again)


def test_loss_is_ce_on_masked_tokens_weighted_by_one_over_p():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[1, 2, 3, 4, 5], [-100, -100, 3, 4, 6]])
    masked = torch.tensor([[True, False, True, False, False], [False, False, False, True, True]])
    p_mask = torch.tensor([0.4, 0.8])
    weighted, n_eligible = masked_diffusion_loss(logits, labels, masked, p_mask)
    ce = F.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none")  # (2, 5)
    expected = torch.stack([(ce[0, 0] + ce[0, 2]) / 0.4, (ce[1, 3] + ce[1, 4]) / 0.8])
    torch.testing.assert_close(weighted, expected)
    assert n_eligible.tolist() == [5, 3]
    # logits at unmasked positions do not matter
    other = logits.clone()
    other[~masked] = torch.randn(int((~masked).sum()), 7)
    torch.testing.assert_close(masked_diffusion_loss(other, labels, masked, p_mask)[0], weighted)


def test_objective_scores_the_masked_input_and_is_seeded(model, tokenizer):
    rows = tokenizer(["Question: Ava has 3 pens.\nAnswer: 3", "Question: Ben has 9 cats.\nAnswer: 9"])["input_ids"]
    width = min(map(len, rows))
    ids = torch.tensor([row[:width] for row in rows])  # (2, width)
    first = MaskedDiffusionObjective(tokenizer.mask_token_id, tokenizer.pad_token_id, seed=3)
    second = MaskedDiffusionObjective(tokenizer.mask_token_id, tokenizer.pad_token_id, seed=3)
    with torch.no_grad():
        loss = first.train_loss(model, ids, ids)
        assert torch.isfinite(loss) and loss > 0
        assert torch.equal(loss, second.train_loss(model, ids, ids))
        first.reset_validation()
        a = first.validation_loss_sum(model, ids, ids)
        first.reset_validation()
        assert first.validation_loss_sum(model, ids, ids) == a
        # the loss the objective reports is the LLaDA loss of the same noise draw, computed by hand
        generator = torch.Generator().manual_seed(3)
        masked, p_mask = forward_mask(ids, generator)
        logits = model(input_ids=ids.masked_fill(masked, tokenizer.mask_token_id)).logits
        weighted, n = masked_diffusion_loss(logits, ids, masked, p_mask)
        torch.testing.assert_close(loss, (weighted / n).mean())


def test_pretrain_uses_the_masked_diffusion_objective(tmp_path):
    rng = random.Random(0)
    rows = []
    for _ in range(80):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        rows.append({"question": f"Sam has {a} cats and gets {b} more. How many cats?", "answer": f"{a}+{b}={a + b}\n#### {a + b}"})
    corpus = pd.DataFrame(rows)
    save_tokenizer(train_tokenizer(corpus_documents(corpus), vocab_size=300), tmp_path / "tok")
    spec = {"source": "scratch", "architecture": "mdlm", **SIZE}
    train = {"corpus": "toy", "batch_size": 8, "learning_rate": 0.01, "steps": 30, "warmup_steps": 2,
             "weight_decay": 0.01, "max_length": 64, "grad_clip": 1.0, "eval_every": 30, "validation_fraction": 0.1}
    curves = [
        pretrain(spec, train, tmp_path / "tok", corpus, seed=1, out_dir=tmp_path / name, threads=1, progress=False)
        for name in ("a", "b")
    ]
    pd.testing.assert_frame_equal(curves[0], curves[1])  # seeded masks: same run, same curve
    val = curves[0][curves[0].split == "validation"].loss.tolist()
    assert val[-1] < 0.7 * val[0]
    assert read_training_info(tmp_path / "a")["model_class"] == "MDLMForMaskedDiffusion"
    loaded, _ = load_model(tmp_path / "a", device="cpu")
    assert type(loaded) is MDLMForMaskedDiffusion

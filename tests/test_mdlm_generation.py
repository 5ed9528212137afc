"""Iterative unmasking (LLaDA Alg. 5): fills every mask, deterministic, batch-invariant, dispatched by evaluate."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM

from attnlab.evaluate.diffusion import generate_diffusion, normalize_diffusion_spec, transfer_schedule
from attnlab.evaluate.evaluate import EVAL_COLUMNS, evaluate_items, normalize_eval_spec
from attnlab.evaluate.tiny import build_tiny_tokenizer
from attnlab.models.registry import build_scratch_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "intermediate_size": 64, "max_position_embeddings": 128}
PROMPTS = [
    "Question: Ava has 3 boxes of 4 pens. How many pens does Ava have?\nAnswer:",
    "Question: Ben has 2 cards.\nAnswer:",
    "Question: Chen has 5 apples and buys 7 more apples. How many apples?\nAnswer:",
]
SETTINGS = {"steps": 8, "block_length": 4, "answer_length": 16}


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(build_scratch_config("mdlm", SIZE, tokenizer)).eval()


def test_transfer_schedule_spreads_masks_evenly():
    schedule = transfer_schedule(torch.tensor([10, 3, 0]), 4)
    assert schedule.tolist() == [[3, 3, 2, 2], [1, 1, 1, 0], [0, 0, 0, 0]]


def test_spec_checks_blocks_and_steps():
    assert normalize_diffusion_spec({}, max_new_tokens=64)["answer_length"] == 64
    with pytest.raises(ValueError, match="must divide"):
        normalize_diffusion_spec({"answer_length": 30, "block_length": 8, "steps": 8})
    with pytest.raises(ValueError, match="multiple of the number of blocks"):
        normalize_diffusion_spec({"answer_length": 32, "block_length": 8, "steps": 6})
    with pytest.raises(ValueError, match="unknown diffusion key"):
        normalize_diffusion_spec({"answer_length": 32, "temperature": 1.0})
    with pytest.raises(ValueError, match="remasking"):
        normalize_diffusion_spec({"answer_length": 32, "remasking": "entropy"})


@pytest.mark.parametrize("remasking", ["low_confidence", "random"])
def test_fills_every_mask_deterministically_and_batch_invariant(model, tokenizer, remasking):
    kwargs = {**SETTINGS, "remasking": remasking, "stop_sequences": []}
    batched = generate_diffusion(model, tokenizer, PROMPTS, batch_size=3, **kwargs)
    assert batched == generate_diffusion(model, tokenizer, PROMPTS, batch_size=3, **kwargs)
    eos = tokenizer.eos_token_id
    for generation, prompt in zip(batched, PROMPTS):
        assert tokenizer.mask_token_id not in generation.token_ids
        assert generation.n_prompt_tokens == len(tokenizer(prompt)["input_ids"])
        if generation.stopped_by == "max_new_tokens":
            assert generation.n_generated_tokens == len(generation.token_ids) == SETTINGS["answer_length"]
        else:
            assert generation.stopped_by == "eos" and generation.token_ids[-1] == eos
    if remasking == "low_confidence":  # rows compute alone what they compute in a left-padded batch
        alone = [generate_diffusion(model, tokenizer, [p], batch_size=1, **kwargs)[0] for p in PROMPTS]
        assert alone == batched


class _ScriptedMDLM(torch.nn.Module):
    """Logits that prefer token ``10 + position`` everywhere, more confidently further right; the real model's
    interface (config, device, forward(...).logits). Records which positions are still masked at each call."""

    def __init__(self, vocab: int, mask_id: int) -> None:
        super().__init__()
        self.config = type("C", (), {"mask_token_id": mask_id, "model_type": "attnlab_mdlm", "eos_token_id": None})()
        self.generation_config = type("G", (), {"eos_token_id": None})()
        self.vocab, self.mask_id, self.masked_history = vocab, mask_id, []
        self.weight = torch.nn.Parameter(torch.zeros(1))

    @property
    def device(self):
        return torch.device("cpu")

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        self.masked_history.append((input_ids == self.mask_id)[0].tolist())
        batch, length = input_ids.shape
        logits = torch.zeros(batch, length, self.vocab)
        for i in range(length):
            logits[:, i, 10 + i % 20] = 1.0 + 0.1 * i  # confidence grows with position
        return type("O", (), {"logits": logits})()


def test_low_confidence_unmasks_the_most_confident_first_block_by_block(tokenizer):
    scripted = _ScriptedMDLM(len(tokenizer), tokenizer.mask_token_id)
    prompt = "Question: Ben has 2 cards.\nAnswer:"
    n_prompt = len(tokenizer(prompt)["input_ids"])
    out = generate_diffusion(scripted, tokenizer, [prompt], batch_size=1, steps=8, block_length=4, answer_length=8,
                             stop_sequences=[])[0]
    assert list(out.token_ids) == [10 + (n_prompt + i) % 20 for i in range(8)]
    # one token a step; within a block the rightmost (most confident) masked position goes first; the second block
    # stays fully masked until the first is done
    history = [masked[n_prompt:] for masked in scripted.masked_history]
    assert history[0] == [True] * 8
    assert history[1] == [True, True, True, False] + [True] * 4
    assert history[4] == [False] * 4 + [True] * 4
    assert history[5] == [False] * 4 + [True, True, True, False]


def test_evaluate_dispatches_mdlm_to_diffusion(model, tokenizer):
    data = pd.DataFrame({"id": ["a", "b"], "question": ["Ava has 3 pens.", "Ben has 2 cards."], "answer_number": [3.0, 2.0]})
    spec = {"num_fewshot": 0, "fewshot_seed": 0, "batch_size": 2, "max_new_tokens": 16,
            "diffusion": {"steps": 8, "block_length": 4}}
    assert normalize_eval_spec(spec)["diffusion"]["answer_length"] == 16
    table = evaluate_items(model, tokenizer, data, spec, [], model_name="mdlm", base="toy", variant="clean")
    assert list(table.columns) == list(EVAL_COLUMNS) and len(table) == 2
    expected = generate_diffusion(model, tokenizer, [table.prompt[0]], batch_size=1, steps=8, block_length=4,
                                  answer_length=16, stop_sequences=["Question:", "\n\n"])[0]
    assert table.generation[0] == expected.text
    assert (table.n_generated_tokens <= 16).all()
    with pytest.raises(ValueError, match="diffusion"):
        normalize_eval_spec({**spec, "diffusion": {"steps": 7, "block_length": 4}})

"""Adapting the causal Llama into the masked diffusion LM: the annealed attention mask, the loss normalisations, the
next-token term, the whole-document mix, the config keys, and decoding one token a step with random remasking."""

from __future__ import annotations

import copy
import math
import random
import re

import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaForCausalLM

from attnlab.evaluate.diffusion import generate_diffusion
from attnlab.evaluate.tiny import build_tiny_tokenizer
from attnlab.models.loader import load_model
from attnlab.models.mdlm import (
    MDLMForMaskedDiffusion,
    MaskedDiffusionObjective,
    anneal_ratio,
    annealed_attention_mask,
    attention_bias,
    diffusion_batch_loss,
    forward_mask,
    mdlm_config_from_causal,
    next_token_loss,
)
from attnlab.models.pretrain import (
    corpus_documents,
    init_from_causal,
    pretrain,
    read_training_info,
    validate_train_spec,
    whole_document_steps,
)
from attnlab.models.registry import build_scratch_config
from attnlab.models.tokenizer import save_tokenizer, train_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "intermediate_size": 64, "max_position_embeddings": 128}


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def llama(tokenizer):
    torch.manual_seed(0)
    return LlamaForCausalLM(build_scratch_config("llama", SIZE, tokenizer)).eval()


@pytest.fixture(scope="module")
def adapted(llama, tokenizer):
    """The mdlm with the llama's weights (shift operation), as :func:`init_from_causal` builds it."""
    model = MDLMForMaskedDiffusion(mdlm_config_from_causal(llama.config, tokenizer.mask_token_id))
    model.load_state_dict(llama.state_dict(), strict=True)
    return model.eval()


def _batch(tokenizer):
    """Two right-padded rows, labels -100 on the prompt and the padding."""
    texts = [("Question: Ava has 3 pens. How many?\nAnswer:", " 3 pens.\n#### 3"), ("Question: Ben has 9?\nAnswer:", " 9")]
    rows, labels = [], []
    for prompt, answer in texts:
        n_prompt = len(tokenizer(prompt)["input_ids"])
        ids = tokenizer(prompt + answer)["input_ids"] + [tokenizer.eos_token_id]
        rows.append(ids)
        labels.append([-100] * n_prompt + ids[n_prompt:])
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    label_ids = torch.tensor([r + [-100] * (width - len(r)) for r in labels])
    return input_ids, label_ids


# ---- attention-mask annealing ----------------------------------------------------------------------------------


def test_anneal_ratio_opens_linearly_and_stays_open():
    assert anneal_ratio(0, 10) == 0.0
    assert anneal_ratio(1, 10) == pytest.approx(0.1)
    assert anneal_ratio(5, 10) == pytest.approx(0.5)
    assert anneal_ratio(10, 10) == anneal_ratio(25, 10) == 1.0
    assert anneal_ratio(0, 0) == anneal_ratio(7, 0) == 1.0  # off: bidirectional from the start
    with pytest.raises(ValueError):
        anneal_ratio(-1, 10)


def test_annealed_mask_is_causal_at_step_zero_and_full_from_anneal_steps():
    length, anneal_steps = 64, 10
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(annealed_attention_mask(length, anneal_ratio(0, anneal_steps), generator), causal)
    for step in (anneal_steps, anneal_steps + 1, 5 * anneal_steps):
        full = annealed_attention_mask(length, anneal_ratio(step, anneal_steps), generator)
        assert full.all()
    # one step before the end most, but not all, of the upper triangle is open
    almost = annealed_attention_mask(length, anneal_ratio(anneal_steps - 1, anneal_steps), generator)
    assert not almost.all() and almost[causal].all()


@pytest.mark.parametrize("step", [2, 5, 8])
def test_annealed_mask_opens_about_the_scheduled_fraction_deterministically(step):
    length, anneal_steps = 200, 10
    upper = torch.ones(length, length, dtype=torch.bool).triu(diagonal=1)  # 19,900 entries
    mask = annealed_attention_mask(length, anneal_ratio(step, anneal_steps), torch.Generator().manual_seed(7))
    assert mask[~upper].all()  # the causal part never closes
    assert mask[upper].float().mean().item() == pytest.approx(step / anneal_steps, abs=0.015)
    again = annealed_attention_mask(length, anneal_ratio(step, anneal_steps), torch.Generator().manual_seed(7))
    other = annealed_attention_mask(length, anneal_ratio(step, anneal_steps), torch.Generator().manual_seed(8))
    assert torch.equal(mask, again) and not torch.equal(mask, other)


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_adapted_model_under_the_step_zero_mask_is_the_llama(llama, adapted, tokenizer, implementation):
    """At step 0 the annealed mask is causal, so the shifted mdlm computes exactly the llama's next-token logits; once
    annealing is over the objective hands the model its own bidirectional (padding-only) mask."""
    input_ids, _ = _batch(tokenizer)
    key_is_real = (input_ids != tokenizer.pad_token_id).long()
    objective = MaskedDiffusionObjective(tokenizer.mask_token_id, tokenizer.pad_token_id, seed=0, anneal_steps=4)
    adapted.config._attn_implementation = llama.config._attn_implementation = implementation
    try:
        step_zero = objective.attention_mask_at(0, input_ids, key_is_real, torch.float32)
        assert step_zero.shape == (2, 1, input_ids.shape[1], input_ids.shape[1])
        with torch.no_grad():
            mdlm_logits = adapted(input_ids=input_ids, attention_mask=step_zero).logits
            llama_logits = llama(input_ids=input_ids).logits
            real = key_is_real.bool()
            # mdlm logits[:, i] = head(h_{i-1}) = the llama's prediction of token i
            torch.testing.assert_close(mdlm_logits[:, 1:][real[:, 1:]], llama_logits[:, :-1][real[:, 1:]], atol=1e-5, rtol=1e-5)
            bidirectional = adapted(input_ids=input_ids, attention_mask=key_is_real).logits
            assert (bidirectional[0, 1:5] - mdlm_logits[0, 1:5]).abs().max() > 1e-4  # later tokens now matter
        for step in (4, 9):
            assert objective.attention_mask_at(step, input_ids, key_is_real, torch.float32) is key_is_real
        middle = objective.attention_mask_at(2, input_ids, key_is_real, torch.float32)
        assert middle.shape == step_zero.shape and (middle == 0).sum() > (step_zero == 0).sum()
    finally:
        adapted.config._attn_implementation = llama.config._attn_implementation = "sdpa"


def test_attention_bias_blocks_disallowed_pairs_and_padded_keys():
    allowed = torch.tensor([[True, False, False], [True, True, False], [True, True, True]])
    bias = attention_bias(allowed, torch.tensor([[1, 1, 0]]), 1, torch.float32)  # (1, 1, 3, 3)
    blocked = bias[0, 0] == torch.finfo(torch.float32).min
    assert blocked.tolist() == [[False, True, True], [False, False, True], [False, False, True]]
    assert (bias[0, 0][~blocked] == 0).all()


# ---- loss normalisations ----------------------------------------------------------------------------------------


def _ce(row: list[float], target: int) -> float:
    return math.log(sum(math.exp(v) for v in row)) - row[target]


def test_weighted_losses_match_a_hand_computation_on_three_tokens():
    """Two sequences of three tokens over a vocabulary of three; every number below is written out by hand."""
    rows = [[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0]], [[1.0, 1.0, 1.0], [0.5, 0.0, 2.0], [0.0, 4.0, 0.0]]]
    logits = torch.tensor(rows, requires_grad=True)  # (2, 3, 3)
    labels = torch.tensor([[0, 1, 2], [-100, 2, 1]])  # the second sequence's first token is prompt (never scored)
    masked = torch.tensor([[True, False, True], [False, True, False]])
    p = torch.tensor([0.5, 0.25])
    ce_a0, ce_a2, ce_b1 = _ce(rows[0][0], 0), _ce(rows[0][2], 2), _ce(rows[1][1], 2)
    assert ce_a0 == pytest.approx(math.log(math.exp(2) + 2) - 2)
    expected = {
        # per sequence: Σ masked CE / p over its eligible tokens (3 and 2), averaged over the 2 sequences
        "llada": ((ce_a0 + ce_a2) / 0.5 / 3 + ce_b1 / 0.25 / 2) / 2,
        # the batch's Σ masked CE / p over its 3 masked tokens
        "diffullama": ((ce_a0 + ce_a2) / 0.5 + ce_b1 / 0.25) / 3,
        # the masked tokens' mean CE
        "unweighted": (ce_a0 + ce_a2 + ce_b1) / 3,
    }
    values = {}
    for weighting, value in expected.items():
        loss = diffusion_batch_loss(logits, labels, masked, p, weighting)
        assert loss.item() == pytest.approx(value, rel=1e-6), weighting
        values[weighting] = loss.item()
    assert len({round(v, 6) for v in values.values()}) == 3  # three different numbers on this example
    # unmasked positions do not enter any of them
    other = logits.detach().clone()
    other[~masked] = 10.0
    for weighting, value in expected.items():
        assert diffusion_batch_loss(other, labels, masked, p, weighting).item() == pytest.approx(value, rel=1e-6)
    # no masked token: zero, still differentiable
    empty = diffusion_batch_loss(logits, labels, torch.zeros_like(masked), p, "diffullama")
    empty.backward()
    assert empty.item() == 0.0 and logits.grad is not None
    with pytest.raises(ValueError, match="loss_weighting"):
        diffusion_batch_loss(logits, labels, masked, p, "mean")


def test_objective_applies_the_chosen_weighting_to_its_own_draw(adapted, tokenizer):
    input_ids, labels = _batch(tokenizer)
    objective = MaskedDiffusionObjective(tokenizer.mask_token_id, tokenizer.pad_token_id, seed=5, loss_weighting="diffullama")
    with torch.no_grad():
        loss = objective.train_loss(adapted, input_ids, labels, step=3)
        masked, p_mask = forward_mask(labels, torch.Generator().manual_seed(5))
        key_is_real = (input_ids != tokenizer.pad_token_id).long()
        logits = adapted(input_ids=input_ids.masked_fill(masked, tokenizer.mask_token_id), attention_mask=key_is_real).logits
    torch.testing.assert_close(loss, diffusion_batch_loss(logits, labels, masked, p_mask, "diffullama"))
    assert not torch.allclose(loss, diffusion_batch_loss(logits, labels, masked, p_mask, "llada"))


# ---- next-token term ---------------------------------------------------------------------------------------------


def test_next_token_term_is_the_llamas_causal_cross_entropy(llama, adapted, tokenizer):
    input_ids, labels = _batch(tokenizer)
    key_is_real = (input_ids != tokenizer.pad_token_id).long()
    with torch.no_grad():
        ar = next_token_loss(adapted, input_ids, labels, key_is_real)
        reference = llama(input_ids=input_ids, labels=labels).loss  # HF's shifted next-token loss
    torch.testing.assert_close(ar, reference, atol=1e-5, rtol=1e-5)
    # the objective adds exactly w times it to the diffusion loss of the same (seeded) draw
    plain = MaskedDiffusionObjective(tokenizer.mask_token_id, tokenizer.pad_token_id, seed=2)
    with_ar = MaskedDiffusionObjective(tokenizer.mask_token_id, tokenizer.pad_token_id, seed=2, ar_loss_weight=0.5)
    with torch.no_grad():
        difference = with_ar.train_loss(adapted, input_ids, labels, step=1) - plain.train_loss(adapted, input_ids, labels, step=1)
    torch.testing.assert_close(difference, 0.5 * reference, atol=1e-5, rtol=1e-5)


def test_objective_rejects_bad_options(tokenizer):
    for kwargs, key in (({"anneal_steps": -1}, "anneal_steps"), ({"loss_weighting": "sum"}, "loss_weighting"),
                        ({"ar_loss_weight": -0.1}, "ar_loss_weight")):
        with pytest.raises(ValueError, match=key):
            MaskedDiffusionObjective(tokenizer.mask_token_id, tokenizer.pad_token_id, seed=0, **kwargs)


# ---- the adapted model's weights, and pretrain with the options ----------------------------------------------------


def test_adapted_model_loads_with_no_missing_keys(llama, tokenizer, tmp_path):
    llama.save_pretrained(tmp_path / "llama")
    tokenizer.save_pretrained(tmp_path / "llama")
    mdlm = init_from_causal(tmp_path / "llama", build_scratch_config("mdlm", SIZE, tokenizer), tokenizer)
    mdlm.save_pretrained(tmp_path / "mdlm")
    tokenizer.save_pretrained(tmp_path / "mdlm")
    _, info = AutoModelForCausalLM.from_pretrained(tmp_path / "mdlm", output_loading_info=True)
    assert info["missing_keys"] in ([], set()) and info["unexpected_keys"] in ([], set())
    loaded, _ = load_model(tmp_path / "mdlm", device="cpu")
    assert type(loaded) is MDLMForMaskedDiffusion and loaded.config.shift_logits
    reference = llama.state_dict()
    state = loaded.state_dict()
    assert set(state) == set(reference)
    assert all(torch.equal(state[k], reference[k]) for k in reference)  # every tensor is the llama's, none re-drawn


def _corpus(n: int = 60) -> pd.DataFrame:
    rng = random.Random(0)
    rows = []
    for _ in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        rows.append({"question": f"Sam has {a} cats and gets {b} more. How many cats?", "answer": f"{a}+{b}={a + b}\n#### {a + b}"})
    return pd.DataFrame(rows)


TRAIN = {"corpus": "toy", "batch_size": 4, "learning_rate": 1e-3, "steps": 4, "warmup_steps": 1, "weight_decay": 0.0,
         "max_length": 64, "grad_clip": 1.0, "eval_every": 4, "validation_fraction": 0.1}


def test_pretrain_adapts_with_every_option_reproducibly(tmp_path):
    corpus = _corpus()
    save_tokenizer(train_tokenizer(corpus_documents(corpus), vocab_size=300), tmp_path / "tok")
    llama_spec = {"source": "scratch", "architecture": "llama", **SIZE}
    pretrain(llama_spec, TRAIN, tmp_path / "tok", corpus, seed=1, out_dir=tmp_path / "llama", threads=1, progress=False)
    mdlm_spec = {**llama_spec, "architecture": "mdlm"}
    adapt = {**TRAIN, "loss_on": "answer", "answer_window": 16}
    recipe = {**adapt, "anneal_steps": 3, "loss_weighting": "diffullama", "ar_loss_weight": 0.5, "mix_documents": 0.5}

    def run(name, spec):
        return pretrain(mdlm_spec, spec, tmp_path / "tok", corpus, seed=1, out_dir=tmp_path / name, threads=1,
                        progress=False, init_from=tmp_path / "llama")

    first, second, plain = run("a", recipe), run("b", recipe), run("c", adapt)
    pd.testing.assert_frame_equal(first, second)  # seeded: annealed masks, document steps and noise
    train = lambda curve: curve[curve.split == "train"].loss.tolist()  # noqa: E731
    validation = lambda curve: curve[curve.split == "validation"].loss.tolist()  # noqa: E731
    assert validation(first)[0] == validation(plain)[0]  # validation is the same bidirectional bound at step 0
    assert train(first)[0] != train(plain)[0]
    info = read_training_info(tmp_path / "a")
    assert {k: info["train"][k] for k in ("anneal_steps", "loss_weighting", "ar_loss_weight", "mix_documents")} == {
        "anneal_steps": 3, "loss_weighting": "diffullama", "ar_loss_weight": 0.5, "mix_documents": 0.5}
    loaded, _ = load_model(tmp_path / "a", device="cpu")
    assert type(loaded) is MDLMForMaskedDiffusion
    with pytest.raises(ValueError, match="for architecture mdlm only"):
        pretrain(llama_spec, {**TRAIN, "ar_loss_weight": 1.0}, tmp_path / "tok", corpus, seed=1,
                 out_dir=tmp_path / "x", threads=1, progress=False)


def test_whole_document_steps_are_a_seeded_fraction():
    steps = whole_document_steps(2000, 0.25, seed=3)
    assert steps.dtype == bool and steps.mean() == pytest.approx(0.25, abs=0.03)
    assert (steps == whole_document_steps(2000, 0.25, seed=3)).all()
    assert not whole_document_steps(50, 0.0, seed=3).any() and whole_document_steps(50, 1.0, seed=3).all()


@pytest.mark.parametrize(
    "change, key",
    [
        ({"anneal_steps": 5}, "'anneal_steps' (5) exceeds 'steps'"),
        ({"anneal_steps": -1}, "'anneal_steps'"),
        ({"loss_weighting": "mean"}, "'loss_weighting'"),
        ({"ar_loss_weight": -1}, "'ar_loss_weight'"),
        ({"mix_documents": 1.5}, "'mix_documents'"),
        ({"mix_documents": 0.5, "answer_window": None}, "'mix_documents'"),
    ],
)
def test_train_spec_rejects_bad_adaptation_values(change, key):
    with pytest.raises(ValueError, match=re.escape(key)):
        validate_train_spec({**TRAIN, "loss_on": "answer", "answer_window": 16, **change})


# ---- config keys --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        ({"loss_weighting": "mean"}, "models.mdlm.init.loss_weighting"),
        ({"ar_loss_weight": -0.5}, "models.mdlm.init.ar_loss_weight"),
        ({"anneal_steps": -3}, "models.mdlm.init.anneal_steps"),
        ({"anneal_steps": 2.5}, "models.mdlm.init.anneal_steps"),
        ({"mix_documents": 1.5}, "models.mdlm.init.mix_documents"),
        ({"anneal_steps": 5}, "'models.mdlm.init.anneal_steps': 5 exceeds init.steps 4"),
        ({"mix_documents": 0.5, "loss_on": "all"}, "'models.mdlm.init.mix_documents'"),
    ],
)
def test_config_rejects_bad_adaptation_values_naming_the_key(change, message):
    from attnlab.config import validate_config
    from attnlab.study.schema import ConfigError, load_yaml
    from workflow_helpers import REPO

    config = load_yaml(REPO / "configs" / "ci.yaml")
    assert config["models"]["mdlm"]["init"]["steps"] == 4
    config = copy.deepcopy(config)
    config["models"]["mdlm"]["init"].update(change)
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_config(config)


def test_config_defaults_keep_the_plain_recipe_and_reach_the_train_spec():
    from attnlab.config import validate_config
    from attnlab.models.settings import diffusion_adaptation_spec
    from attnlab.study.schema import load_yaml
    from workflow_helpers import REPO

    config = load_yaml(REPO / "configs" / "ci.yaml")
    study = validate_config(copy.deepcopy(config))
    spec = diffusion_adaptation_spec(study, "mdlm")
    assert (spec["anneal_steps"], spec["loss_weighting"], spec["ar_loss_weight"], spec["mix_documents"]) == (0, "llada", 0, 0)
    config["models"]["mdlm"]["init"].update(anneal_steps=2, loss_weighting="unweighted", ar_loss_weight=0.25, mix_documents=0.5)
    spec = diffusion_adaptation_spec(validate_config(config), "mdlm")
    assert (spec["anneal_steps"], spec["loss_weighting"], spec["ar_loss_weight"], spec["mix_documents"]) == (2, "unweighted", 0.25, 0.5)
    validate_train_spec(spec)


# ---- decoding one token a step with random remasking ------------------------------------------------------------


class _CountingMDLM(torch.nn.Module):
    """Logits preferring token ``10 + position``, more confident further right; records the masked answer positions."""

    def __init__(self, vocab: int, mask_id: int) -> None:
        super().__init__()
        self.config = type("C", (), {"mask_token_id": mask_id, "model_type": "attnlab_mdlm", "eos_token_id": None})()
        self.generation_config = type("G", (), {"eos_token_id": None})()
        self.vocab, self.mask_id, self.history = vocab, mask_id, []
        self.weight = torch.nn.Parameter(torch.zeros(1))

    @property
    def device(self):
        return torch.device("cpu")

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        self.history.append((input_ids == self.mask_id)[0].tolist())
        batch, length = input_ids.shape
        logits = torch.zeros(batch, length, self.vocab)
        for i in range(length):
            logits[:, i, 10 + i % 20] = 1.0 + 0.1 * i
        return type("O", (), {"logits": logits})()


def _unmasking_order(tokenizer, remasking: str, seed: int = 0) -> list[int]:
    model = _CountingMDLM(len(tokenizer), tokenizer.mask_token_id)
    prompt = "Question: Ben has 2 cards.\nAnswer:"
    n_prompt = len(tokenizer(prompt)["input_ids"])
    out = generate_diffusion(model, tokenizer, [prompt], batch_size=1, steps=16, block_length=8, answer_length=16,
                             stop_sequences=[], remasking=remasking, seed=seed)[0]
    assert len(out.token_ids) == 16 and tokenizer.mask_token_id not in out.token_ids
    masks = [sum(m[n_prompt:]) for m in model.history]
    assert masks == list(range(16, 0, -1))  # steps == answer_length: exactly one token fixed per step
    order = []
    for before, after in zip(model.history, model.history[1:] + [[False] * len(model.history[0])]):
        order.extend(i - n_prompt for i, (b, a) in enumerate(zip(before, after)) if b and not a)
    return order


def test_one_token_a_step_with_low_confidence_and_random_remasking(tokenizer):
    confident = _unmasking_order(tokenizer, "low_confidence")
    assert confident == list(range(7, -1, -1)) + list(range(15, 7, -1))  # most confident (rightmost) first, per block
    shuffled = _unmasking_order(tokenizer, "random", seed=0)
    assert sorted(shuffled[:8]) == list(range(8)) and sorted(shuffled[8:]) == list(range(8, 16))  # block by block
    assert shuffled != confident  # the order ignores the confidences
    assert shuffled == _unmasking_order(tokenizer, "random", seed=0)  # seeded
    assert shuffled != _unmasking_order(tokenizer, "random", seed=1)

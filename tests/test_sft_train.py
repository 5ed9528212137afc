"""SFT training: label mask, learned EOS, class-preserving save/load, resume, LoRA."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest
import torch

from attnlab.evaluate.generation import generate_greedy
from attnlab.evaluate.tiny import build_tiny_model, build_tiny_tokenizer
from attnlab.models.loader import load_model
from attnlab.models.pretrain import collate
from attnlab.prompts import format_question
from attnlab.sft.train import (
    TrainingInterrupted,
    checkpoint_dir_for,
    finetune,
    load_checkpoint,
    sft_example,
    validate_sft_spec,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NAMES = ("Ava", "Ben", "Chen", "Dara", "Eli", "Hana", "Ivan", "Jun")
ITEMS = ("apples", "pens", "books", "cards")


def problems(n: int, seed: int) -> pd.DataFrame:
    """Tiny solved problems in the GSM8K answer format (the tiny tokenizer's corpus style)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        name, item, a, b = rng.choice(NAMES), rng.choice(ITEMS), rng.randint(2, 9), rng.randint(2, 9)
        rows.append(
            {
                "id": f"p{seed}-{i}",
                "question": f"{name} has {a} boxes of {b} {item}. How many {item} does {name} have?",
                "answer": f"{name} has {a}*{b}=<<{a}*{b}={a * b}>>{a * b} {item}.\n#### {a * b}",
            }
        )
    return pd.DataFrame(rows)


def spec(**overrides) -> dict:
    base = dict(
        epochs=1, learning_rate=3e-3, scheduler="constant", warmup_ratio=0.0, weight_decay=0.0, grad_clip=1.0,
        batch_size=8, gradient_accumulation=1, max_length=96, validation_fraction=0.1, eval_every=4,
        checkpoint_every=100, seed=0, method="full",
    )  # fmt: skip
    return {**base, **overrides}


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def save_tiny(architecture: str, tokenizer, folder: Path, **size) -> Path:
    model = build_tiny_model(architecture, tokenizer, **{"hidden_size": 32, "intermediate_size": 64, **size})
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_label_mask_on_a_real_example(tokenizer) -> None:
    question = "Ava has 3 boxes of 4 pens. How many pens does Ava have?"
    answer = "Ava has 3*4=<<3*4=12>>12 pens.\n#### 12"
    ids, labels, truncated = sft_example(tokenizer, question, answer, 256)
    prompt = tokenizer(format_question(question))["input_ids"]
    assert not truncated and len(ids) == len(labels)
    assert ids[: len(prompt)] == prompt and ids[0] == tokenizer.bos_token_id
    assert labels[: len(prompt)] == [-100] * len(prompt)  # the prompt is not scored
    assert labels[len(prompt) :] == ids[len(prompt) :]  # every answer token is
    assert ids[-1] == labels[-1] == tokenizer.eos_token_id  # eos appended and learned
    assert tokenizer.decode(ids[len(prompt) : -1]) == " " + answer
    assert tokenizer.pad_token_id != tokenizer.eos_token_id

    short_ids, short_labels, _ = sft_example(tokenizer, "Ben has 2 pens. How many?", "#### 2", 256)
    x, y = collate([ids, short_ids], tokenizer.pad_token_id, [labels, short_labels])
    assert x.shape == y.shape == (2, len(ids))
    assert y[1, len(short_ids) :].eq(-100).all() and x[1, len(short_ids) :].eq(tokenizer.pad_token_id).all()
    assert y[1, len(short_ids) - 1] == tokenizer.eos_token_id
    # padding is masked by length, not by id: with pad == eos the real eos is still a target
    x, y = collate([ids, short_ids], tokenizer.eos_token_id, [labels, short_labels])
    assert y[1, len(short_ids) - 1] == tokenizer.eos_token_id and y[1, len(short_ids) :].eq(-100).all()
    with pytest.raises(ValueError, match="max_length"):
        sft_example(tokenizer, question, answer, 5)


def test_finetuned_scratch_model_stops_at_eos(tokenizer, tmp_path: Path) -> None:
    base = save_tiny("llama", tokenizer, tmp_path / "base", hidden_size=64, intermediate_size=128)
    curve, model, tok = finetune(
        base, problems(240, 1), spec(epochs=3, batch_size=16, eval_every=15), tmp_path / "sft", progress=False
    )
    val = curve[curve.split == "validation"].loss.to_numpy()
    assert val[-1] < 0.5 * val[0]
    prompts = [format_question(q) for q in problems(6, 99)["question"]]
    untrained, tok = load_model(base, device="cpu")
    before = generate_greedy(untrained, tok, prompts, batch_size=6, max_new_tokens=64, stop_sequences=[])
    assert [g.stopped_by for g in before] != ["eos"] * 6  # the base model does not stop by itself
    model, tok = load_model(tmp_path / "sft", device="cpu")
    after = generate_greedy(model, tok, prompts, batch_size=6, max_new_tokens=64, stop_sequences=[])
    assert [g.stopped_by for g in after] == ["eos"] * 6, [g.text for g in after]
    assert all(g.n_generated_tokens < 64 for g in after)
    assert sum("\n#### " in g.text for g in after) >= 4, [g.text for g in after]  # it stops after the answer line


def test_diffllama_keeps_class_and_logits_after_save(tokenizer, tmp_path: Path) -> None:
    base = save_tiny("diffllama", tokenizer, tmp_path / "base")
    curve, trained, _ = finetune(base, problems(24, 2), spec(), tmp_path / "sft", device="cpu", progress=False)
    loaded, _ = load_model(tmp_path / "sft", device="cpu")
    assert type(loaded).__name__ == type(trained).__name__ == "DiffLlamaForCausalLM"
    lambdas = {n: p for n, p in loaded.named_parameters() if "lambda" in n}
    assert lambdas and any("lambda_q1" in n for n in lambdas)
    original, _ = load_model(base, device="cpu")
    before = dict(original.named_parameters())
    assert any(not torch.equal(p, before[n]) for n, p in lambdas.items())  # λ were trained and saved
    x = torch.tensor([tokenizer(format_question("Ava has 3 pens. How many?"))["input_ids"]])
    with torch.no_grad():
        assert torch.equal(trained.eval()(input_ids=x).logits, loaded(input_ids=x).logits)
    info = json.loads((tmp_path / "sft" / "training_info.json").read_text())
    assert info["model_class"] == "DiffLlamaForCausalLM" and info["optimizer_steps"] == 3
    assert list(curve.columns) == ["step", "split", "loss", "lr", "tokens_seen"]


def test_killed_run_resumes_to_the_same_weights(tokenizer, tmp_path: Path) -> None:
    base = save_tiny("llama", tokenizer, tmp_path / "base")
    data = problems(60, 3)
    run = spec(checkpoint_every=3, eval_every=4, scheduler="cosine", warmup_ratio=0.2, gradient_accumulation=2, batch_size=4)
    full, reference, _ = finetune(base, data, run, tmp_path / "full", device="cpu", progress=False)
    assert full.step.max() == 7  # ceil(54 / 4) = 14 micro-batches, 2 per step

    out = tmp_path / "killed"
    with pytest.raises(TrainingInterrupted):
        finetune(base, data, run, out, device="cpu", progress=False, stop_after_steps=5)
    assert not out.exists() and (checkpoint_dir_for(out) / "state.pt").is_file()  # checkpoint of step 3
    resumed, model, _ = finetune(base, data, run, out, device="cpu", progress=False)
    assert json.loads((out / "training_info.json").read_text())["resumed_from_step"] == 3
    assert not checkpoint_dir_for(out).exists()
    pd.testing.assert_frame_equal(resumed, full, check_exact=False, rtol=1e-6)
    reference_state = reference.state_dict()
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, reference_state[name], rtol=1e-6, atol=1e-7)


def test_stale_checkpoint_of_another_recipe_is_not_resumed(tokenizer, tmp_path: Path) -> None:
    base = save_tiny("llama", tokenizer, tmp_path / "base")
    data, out = problems(30, 4), tmp_path / "sft"
    with pytest.raises(TrainingInterrupted):
        finetune(base, data, spec(checkpoint_every=1), out, device="cpu", progress=False, stop_after_steps=2)
    finetune(base, data, spec(checkpoint_every=1, learning_rate=1e-3), out, device="cpu", progress=False)
    assert json.loads((out / "training_info.json").read_text())["resumed_from_step"] == 0


class _PlantedPickle:
    """An object whose unpickling would create a file: what ``torch.load(weights_only=False)`` runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_holding_a_foreign_pickle_is_refused_not_run(tokenizer, tmp_path: Path) -> None:
    base = save_tiny("llama", tokenizer, tmp_path / "base")
    data, out = problems(30, 4), tmp_path / "sft"
    with pytest.raises(TrainingInterrupted):
        finetune(base, data, spec(checkpoint_every=1), out, device="cpu", progress=False, stop_after_steps=2)
    ckpt = checkpoint_dir_for(out) / "state.pt"
    state = load_checkpoint(ckpt)  # the module's own checkpoint reads back with weights_only=True
    assert state["step"] == 2 and isinstance(state["model"], dict)

    marker = tmp_path / "pwned"
    torch.save({**state, "rows": _PlantedPickle(marker)}, ckpt)
    with pytest.raises(ValueError, match=r"state\.pt: not a resume checkpoint this version can read safely"):
        finetune(base, data, spec(checkpoint_every=1), out, device="cpu", progress=False)
    assert not marker.exists() and not out.exists()


@pytest.mark.parametrize("merge", [True, False])
def test_lora_saves_a_folder_the_loader_reads(tokenizer, tmp_path: Path, merge: bool) -> None:
    base = save_tiny("llama", tokenizer, tmp_path / "base")
    lora = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"], "merge": merge}
    _, trained, _ = finetune(base, problems(24, 5), spec(method="lora", lora=lora), tmp_path / "sft", device="cpu", progress=False)
    assert (tmp_path / "sft" / ("config.json" if merge else "adapter_config.json")).is_file()
    loaded, tok = load_model(tmp_path / "sft", device="cpu")
    original, _ = load_model(base, device="cpu")
    assert type(loaded).__name__ == "LlamaForCausalLM" and tok.eos_token_id == tokenizer.eos_token_id
    x = torch.tensor([tokenizer(format_question("Ben has 2 pens. How many?"))["input_ids"]])
    with torch.no_grad():
        logits = loaded(input_ids=x).logits
        assert not torch.allclose(logits, original(input_ids=x).logits)
        assert torch.allclose(logits, trained.eval()(input_ids=x).logits, atol=1e-5)


def test_validate_sft_spec_names_bad_keys() -> None:
    with pytest.raises(ValueError, match="missing keys"):
        validate_sft_spec({"epochs": 1})
    with pytest.raises(ValueError, match="unknown keys"):
        validate_sft_spec({**spec(), "epoch": 2})
    with pytest.raises(ValueError, match="batch_size"):
        validate_sft_spec(spec(batch_size=0))
    assert validate_sft_spec(spec(method="lora"))["lora"]["r"] == 8

"""The one loader: save/load round trips for every scratch architecture, class from config, errors."""

from __future__ import annotations

import random
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from attnlab.models.loader import (
    ModelNotAvailableError,
    load_model,
    prepare_for_generation,
    resolve_device,
    resolve_dtype,
)
from attnlab.models.registry import SCRATCH_ARCHITECTURES, build_scratch_config
from attnlab.models.tokenizer import train_tokenizer

from conftest import TINY_SIZE as SIZE


@pytest.fixture(scope="module")
def tokenizer():
    rng = random.Random(1)
    texts = [
        f"Question: Ana has {rng.randint(1, 99)} pens and gets {rng.randint(1, 99)} more. How many?\nAnswer: #### {rng.randint(1, 200)}"
        for _ in range(200)
    ]
    return train_tokenizer(texts, vocab_size=300)


def save_tiny(architecture: str, tokenizer, folder, seed: int = 0):
    """Build a tiny random model, save it with the tokenizer, return the in-memory model."""
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(build_scratch_config(architecture, SIZE, tokenizer))
    if architecture == "diffllama":
        # Move λ away from its init so that a loader that re-initialises them is caught.
        with torch.no_grad():
            for layer in model.model.layers:
                for name in ("lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2"):
                    getattr(layer.self_attn, name).add_(0.5)
    model.eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


@pytest.mark.parametrize("architecture", SCRATCH_ARCHITECTURES)
def test_round_trip_same_class_and_logits(architecture, tokenizer, tmp_path):
    original = save_tiny(architecture, tokenizer, tmp_path / architecture)
    loaded, tok = load_model(tmp_path / architecture, device="cpu")
    assert type(loaded) is type(original)
    assert not loaded.training
    assert next(loaded.parameters()).dtype == torch.float32
    ids = tok(["Question: Ana has 12 pens.\nAnswer:"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, original(ids).logits)
    state = loaded.state_dict()
    for name, value in original.state_dict().items():
        assert torch.equal(state[name], value), name


def test_diffllama_keeps_lambdas(tokenizer, tmp_path):
    original = save_tiny("diffllama", tokenizer, tmp_path / "m")
    loaded, _ = load_model(tmp_path / "m", device="cpu")
    for before, after in zip(original.model.layers, loaded.model.layers):
        for name in ("lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2"):
            assert torch.equal(getattr(before.self_attn, name), getattr(after.self_attn, name))
            # 0.5 was added to an N(0, 0.1) init, so a re-initialised λ would not match.
            assert getattr(after.self_attn, name).mean() > 0.25


def test_class_comes_from_config_not_folder_name(tokenizer, tmp_path):
    save_tiny("diffllama", tokenizer, tmp_path / "src")
    shutil.copytree(tmp_path / "src", tmp_path / "llama-model")
    loaded, _ = load_model(str(tmp_path / "llama-model"), device="cpu")
    assert type(loaded).__name__ == "DiffLlamaForCausalLM"


def test_generation_tokenizer_left_pads(tokenizer, tmp_path):
    save_tiny("llama", tokenizer, tmp_path / "m")
    model, tok = load_model(tmp_path / "m", device="cpu")
    assert tok.padding_side == "left" and tok.pad_token_id == tokenizer.pad_token_id
    batch = tok(["Question: short?\nAnswer:", "Question: a much longer question here?\nAnswer:"], padding=True)
    assert batch["input_ids"][0][0] == tok.pad_token_id and batch["attention_mask"][0][0] == 0
    assert batch["input_ids"][1][0] == tok.bos_token_id
    assert model.generation_config.pad_token_id == tok.pad_token_id
    _, train_tok = load_model(tmp_path / "m", device="cpu", for_generation=False)
    assert train_tok.padding_side == "right"


def test_generation_tokenizer_without_pad_uses_eos(tokenizer):
    no_pad = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer, eos_token="</s>")
    assert no_pad.pad_token is None
    gen = prepare_for_generation(no_pad)
    assert gen.pad_token == "</s>" and gen.padding_side == "left"
    assert no_pad.pad_token is None  # the original is left untouched


def test_missing_folder_and_bad_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nope", device="cpu")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model("results/models/not-trained-yet", device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model(tmp_path / "empty", device="cpu")


def test_hub_id_offline_and_not_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.chdir(tmp_path)  # so the id is surely not a local path
    with pytest.raises(ModelNotAvailableError, match="'attnlab-test/not-a-real-model'.*download it first"):
        load_model("attnlab-test/not-a-real-model", device="cpu")


def test_device_and_dtype_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        resolve_dtype("float8", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")

"""SFT config: variant names, architectures, presets and the semantic checks of _sft_errors."""

from __future__ import annotations

import copy

import pytest

from attnlab.config import validate_config
from attnlab.study.models import model_architecture, parse_sft_name, sft_model_spec, sft_recipe
from attnlab.study.schema import ConfigError, load_yaml
from attnlab.study.selections import model_variants, selected_models
from attnlab.paths import REPO_ROOT

RECIPE = {"dataset": "synthetic", "noise_mix": {"clean": 0.5, "inf": 0.5}}


@pytest.fixture(scope="module")
def raw() -> dict:
    config = load_yaml(REPO_ROOT / "configs" / "ci.yaml")
    config["sft"] = {"models": ["llama", "diffllama"], "recipes": {"noisy": RECIPE, "clean": {"dataset": "synthetic"}}}
    config["datasets"]["synthetic"]["train_size"] = 2000  # the standard preset's 2,000 problems (samples: null)
    return config


def test_variants_follow_their_models(raw: dict) -> None:
    config = validate_config(raw, base_dir=REPO_ROOT)
    names = model_variants(config, ["llama", "diffllama"])
    assert names == ["llama", "diffllama", "llama+sft-noisy", "llama+sft-clean", "diffllama+sft-noisy", "diffllama+sft-clean"]
    assert model_variants(config, ["diffllama"]) == ["diffllama", "diffllama+sft-noisy", "diffllama+sft-clean"]
    assert set(model_variants(config, selected_models(config))) >= set(names)
    assert parse_sft_name("diffllama+sft-noisy") == ("diffllama", "noisy") and parse_sft_name("llama") is None
    assert model_architecture(config, "diffllama+sft-noisy") == "diffllama"
    spec = sft_model_spec(config, "llama+sft-clean")
    assert spec["source"] == "sft" and spec["base"] == "llama" and spec["base_source"] == "scratch"
    assert spec["sft"]["noise_mix"] == {"clean": 1.0} and spec["sft"]["seed"] == config["seed"]
    skipped = validate_config({**raw, "sft": None}, base_dir=REPO_ROOT)
    assert model_variants(skipped, ["llama"]) == ["llama"]


def test_presets_set_the_sample_count(raw: dict) -> None:
    for preset, samples in (("quick", 200), ("standard", 2000), ("full", None)):
        config = validate_config({**raw, "preset": preset}, base_dir=REPO_ROOT)
        assert sft_recipe(config, "noisy")["samples"] == samples
    explicit = copy.deepcopy(raw)
    explicit["sft"]["recipes"]["noisy"]["samples"] = 17
    assert sft_recipe(validate_config(explicit, base_dir=REPO_ROOT), "noisy")["samples"] == 17


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["sft"].update(models=["gpt9"]), "sft.models.0"),
        (lambda c: c["sft"].update(recipes={}), "sft.recipes"),
        (lambda c: c["sft"]["recipes"]["noisy"].update(dataset="gsm8k"), "sft.recipes.noisy.dataset"),
        (lambda c: c["sft"]["recipes"]["noisy"].update(noise_mix={"loud": 1}), "sft.recipes.noisy.noise_mix.loud"),
        (lambda c: c["sft"]["recipes"]["noisy"].update(noise_mix={"clean": 0}), "must not all be 0"),
        (lambda c: c["sft"]["recipes"]["noisy"].update(lr=0.1), "sft.recipes.noisy.lr"),
        (lambda c: c["sft"]["recipes"]["noisy"].update(split="test"), "sft.recipes.noisy.split"),
        (lambda c: c["sft"]["recipes"]["noisy"].update(lora={"r": 4}), "set method: lora"),
    ],
)
def test_bad_sft_sections_are_rejected_with_the_key(raw: dict, edit, message: str) -> None:
    config = copy.deepcopy(raw)
    edit(config)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        validate_config(config, base_dir=REPO_ROOT)


def test_masked_diffusion_models_are_rejected(raw: dict) -> None:
    config = copy.deepcopy(raw)
    config["models"]["mdlm-x"] = {"source": "scratch", "architecture": "mdlm", "hidden_size": 32, "num_layers": 2, "num_heads": 2}
    config["sft"]["models"] = ["mdlm-x"]
    try:
        validate_config(config, base_dir=REPO_ROOT)
    except ConfigError as err:
        assert "sft.models.0" in str(err) or "mdlm" in str(err)
    else:  # pragma: no cover - must not validate
        pytest.fail("an mdlm model was accepted for SFT")

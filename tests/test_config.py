"""The study config: schema rejections name the key; defaults and selections."""

from __future__ import annotations

import re
import copy
from pathlib import Path

import pytest

from attnlab.config import validate_config
from attnlab.study.schema import ConfigError, load_yaml
from attnlab.study.selections import n_test_items, selected_models, selected_variants

REPO = Path(__file__).resolve().parents[1]
from conftest import GSM8K_DIR

GSM8K_TEST = GSM8K_DIR / "test.jsonl"


@pytest.fixture(scope="module")
def default_config() -> dict:
    return load_yaml(REPO / "config.yaml")


def _rejected(config: dict) -> str:
    with pytest.raises(ConfigError) as info:
        validate_config(config, base_dir=REPO)
    return str(info.value)


@pytest.mark.parametrize("path", ["config.yaml", "configs/ci.yaml", "configs/paper.yaml"])
def test_shipped_configs_validate(path: str) -> None:
    config = validate_config(load_yaml(REPO / path), base_dir=REPO)
    assert config["models"]
    assert config["evaluation"]["stop_sequences"]  # default filled in


def test_defaults_are_filled(default_config: dict) -> None:
    config = validate_config(default_config, base_dir=REPO)
    assert config["pretrain"]["scheduler"] == "cosine"
    assert config["models"]["llama"]["max_position_embeddings"] == 512
    assert config["models"]["llama"]["dtype"] == "auto"
    assert "default" not in default_config["models"]["llama"]  # the input is not mutated


def test_unknown_architecture_names_the_key(default_config: dict) -> None:
    config = copy.deepcopy(default_config)
    config["models"]["llama"]["architecture"] = "lama"
    message = _rejected(config)
    assert "models.llama.architecture" in message
    assert "lama" in message


def test_misspelt_key_is_rejected(default_config: dict) -> None:
    config = copy.deepcopy(default_config)
    config["models"]["diffllama"]["hiden_size"] = 64
    message = _rejected(config)
    assert "models.diffllama.hiden_size" in message

    config = copy.deepcopy(default_config)
    config["evaluaton"] = {"batch_size": 4}
    assert "'evaluaton'" in _rejected(config)


@pytest.mark.parametrize("value", [0, -5])
def test_non_positive_sample_counts_are_rejected(default_config: dict, value: int) -> None:
    config = copy.deepcopy(default_config)
    config["max_samples"] = value
    assert "max_samples" in _rejected(config)
    config = copy.deepcopy(default_config)
    config["datasets"]["synthetic"]["test_size"] = value
    assert "datasets.synthetic.test_size" in _rejected(config)


def test_unknown_noise_type_is_rejected(default_config: dict) -> None:
    config = copy.deepcopy(default_config)
    config["noise"]["types"] = ["inf", "typo"]
    message = _rejected(config)
    assert "noise.types.1" in message and "typo" in message


def test_missing_dataset_path_is_rejected(default_config: dict) -> None:
    config = copy.deepcopy(default_config)
    config["datasets"]["gsm8k"] = {"loader": "gsm8k", "test_path": "no/such/file.jsonl"}
    message = _rejected(config)
    assert "datasets.gsm8k.test_path" in message and "no/such/file.jsonl" in message


def test_real_gsm8k_path_is_accepted(default_config: dict) -> None:
    config = copy.deepcopy(default_config)
    config["datasets"]["gsm8k"] = {"loader": "gsm8k", "test_path": str(GSM8K_TEST)}
    assert validate_config(config, base_dir=REPO)["datasets"]["gsm8k"]["hub_config"] == "main"


def test_selection_must_name_configured_entries(default_config: dict) -> None:
    config = copy.deepcopy(default_config)
    config["select_models"] = "llama,gpt5"
    message = _rejected(config)
    assert "select_models" in message and "gpt5" in message


def test_a_stage_runs_when_its_section_is_present(default_config: dict) -> None:
    """Leaving the sft section out, or setting it to null (what ``--config sft=`` gives), removes the variants."""
    from attnlab.attention.settings import measured_models
    from attnlab.study.selections import model_variants

    config = validate_config(default_config, base_dir=REPO)
    names = selected_models(config)
    assert "llama+sft-noisy" in model_variants(config, names) and measured_models(config)
    without = validate_config({k: v for k, v in default_config.items() if k != "sft"}, base_dir=REPO)
    assert model_variants(without, names) == names
    nulled = validate_config({**default_config, "sft": None, "attention": None}, base_dir=REPO)
    assert "sft" not in nulled and "attention" not in nulled
    assert model_variants(nulled, names) == names and measured_models(nulled) == []


def test_a_skip_flag_is_rejected_with_the_switch_that_replaces_it(default_config: dict) -> None:
    message = _rejected({**default_config, "skip_sft": True})
    assert "config key 'skip_sft': a stage runs when its section is present" in message
    assert "--config sft=" in message


def test_diffllama_needs_even_heads(default_config: dict) -> None:
    config = copy.deepcopy(default_config)
    config["models"]["diffllama"].update(num_heads=1)
    assert "models.diffllama.num_heads" in _rejected(config)


def test_presets_and_selections(default_config: dict) -> None:
    assert n_test_items(validate_config(default_config, base_dir=REPO)) == default_config["max_samples"]
    config = validate_config({**default_config, "max_samples": None}, base_dir=REPO)
    assert n_test_items(config) == 200
    for preset, expected in (("quick", 20), ("full", None)):
        assert n_test_items({**config, "preset": preset}) == expected
    assert n_test_items({**config, "preset": "quick", "max_samples": 7}) == 7
    assert selected_models({**config, "select_models": "diffllama"}) == ["diffllama"]
    assert selected_models(config) == ["llama", "diffllama", "mdlm", "gpt2", "mamba2"]
    assert selected_variants(config) == ["clean", "inf", "rcs", "sd"]
    assert selected_variants({**config, "select_variants": ["sd", "clean"]}) == ["clean", "sd"]


def test_replicates_name_models_and_reject_clashes(tmp_path):
    from attnlab.study.models import model_architecture, replicate_models

    config = load_yaml(REPO / "configs" / "ci.yaml")
    config["pretrain"]["replicates"] = {"models": ["llama", "diffllama"], "seeds": [11, 12]}
    study = validate_config(config, base_dir=REPO)
    assert replicate_models(study) == {
        "llama-seed11": ("llama", 11), "llama-seed12": ("llama", 12),
        "diffllama-seed11": ("diffllama", 11), "diffllama-seed12": ("diffllama", 12),
    }
    assert model_architecture(study, "diffllama-seed12") == "diffllama"
    bad = copy.deepcopy(config)
    bad["pretrain"]["replicates"] = {"models": ["nope"], "seeds": [config["seed"]]}
    with pytest.raises(ConfigError) as err:
        validate_config(bad, base_dir=REPO)
    assert "'pretrain.replicates.models': 'nope'" in str(err.value)
    assert "'pretrain.replicates.seeds'" in str(err.value)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["models"]["mdlm"]["init"].update({"from": "gpt2"}), "'models.mdlm.init.from': 'gpt2' is not a scratch llama"),
        (lambda c: c["models"]["mdlm"].update(hidden_size=64), "'models.mdlm': hidden_size differ from models.llama"),
        (lambda c: c["models"]["gpt2"].update(init={"from": "llama"}), "'models.gpt2.init': only for scratch mdlm"),
        (lambda c: c["models"]["mdlm"]["diffusion"].update(answer_length=448, block_length=8, steps=56),
         "'models.mdlm.diffusion.answer_length': 448 answer positions leave no room"),
    ],
)
def test_diffusion_init_errors_name_the_key(edit, message: str) -> None:
    from attnlab.config import validate_config
    from attnlab.models.settings import diffusion_adaptation_spec
    from attnlab.study.schema import ConfigError, load_yaml
    from workflow_helpers import REPO

    config = load_yaml(REPO / "configs" / "ci.yaml")
    study = validate_config(config)
    adapt = diffusion_adaptation_spec(study, "mdlm")
    assert adapt["answer_window"] == study["models"]["mdlm"]["diffusion"]["answer_length"]
    assert adapt["packing"] is False and adapt["extra_corpora"] == [] and adapt["steps"] == study["models"]["mdlm"]["init"]["steps"]
    edit(config)
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_config(config)


def test_replicates_are_evaluated_fine_tuned_and_grouped_by_seed() -> None:
    from attnlab.attention.settings import attention_models
    from attnlab.attribution.settings import attribution_models
    from attnlab.config import validate_config
    from attnlab.study.schema import load_yaml
    from attnlab.study.selections import seed_groups, study_models
    from workflow_helpers import REPO

    config = validate_config(load_yaml(REPO / "config.yaml"))
    models = study_models(config)
    for name in ("llama-seed1", "diffllama-seed2", "llama-seed1+sft-noisy", "diffllama-seed2+sft-noisy"):
        assert name in models
    groups = seed_groups(config, models)
    assert groups["llama"] == [("llama", 1234), ("llama-seed1", 1), ("llama-seed2", 2)]
    assert groups["diffllama+sft-noisy"] == [("diffllama+sft-noisy", 1234), ("diffllama-seed1+sft-noisy", 1),
                                             ("diffllama-seed2+sft-noisy", 2)]
    assert set(groups) == {"llama", "diffllama", "llama+sft-noisy", "diffllama+sft-noisy"}
    assert "llama-seed1" in attention_models(config) and "llama-seed1+sft-noisy" in attention_models(config)
    assert not any("seed" in m for m in attribution_models(config))  # attribution stays on one seed
    config["pretrain"]["replicates"]["evaluate"] = False
    assert not any("seed" in m for m in study_models(config)) and seed_groups(config, study_models(config)) == {}

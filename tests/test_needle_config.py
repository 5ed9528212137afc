"""The needle section of the config: defaults, probed models (with replicates), semantic errors."""

from __future__ import annotations

import copy

import pytest

from attnlab.config import validate_config
from attnlab.needle.settings import needle_models, needle_probe_spec
from attnlab.study.schema import ConfigError, load_yaml
from workflow_helpers import REPO


@pytest.fixture(scope="module")
def ci_config() -> dict:
    return load_yaml(REPO / "configs" / "ci.yaml")


def test_defaults_and_models_with_replicates(ci_config: dict) -> None:
    config = copy.deepcopy(ci_config)
    config["needle"] = {}
    config["pretrain"]["replicates"] = {"models": ["llama", "mdlm"], "seeds": [11, 12]}
    study = validate_config(config)
    assert study["needle"]["depths"] == [0, 25, 50, 75, 100] and study["needle"]["n_needles"] == [1, 2, 4, 6]
    models = needle_models(study)
    # mdlm has no causal attention: not a default needle model, nor are its replicates
    assert list(models) == ["llama", "diffllama", "gpt2", "llama-seed11", "llama-seed12"]
    assert models["llama-seed12"] == {"base": "llama", "seed": 12, "architecture": "llama"}
    assert models["llama"]["seed"] == study["seed"]
    assert set(needle_probe_spec(study)) >= {"context_lengths", "depths", "n_needles", "items_per_cell", "haystack"}


def test_without_a_section_the_stage_is_off(ci_config: dict) -> None:
    config = copy.deepcopy(ci_config)
    config.pop("needle")
    config["pretrain"].pop("extra_corpora")
    assert needle_models(validate_config(config)) == {}


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["needle"].update(models=["nope"]), "'needle.models': 'nope' is not a configured model"),
        (lambda c: c["needle"].update(models=["mdlm"]), "needs causal attention"),
        (lambda c: c["needle"].update(context_lengths=[510]), "exceed models.llama.max_position_embeddings"),
        (lambda c: c["needle"].update(context_per_needle=300), "'needle.context_per_needle': the longest cell (460 tokens"),
        (lambda c: c["needle"].update(depth_tolerance=0), "needle.depth_tolerance"),
        (lambda c: c["needle"].update(context_lengths=[450], context_per_needle=0), "'needle.context_lengths': the longest cell (450"),
        (lambda c: c["needle"].update(corpus={"min_chars": 500, "max_chars": 300}), "needle.corpus.min_chars"),
        (lambda c: c["needle"].update(depths=[120]), "needle.depths.0"),
        (lambda c: c["needle"].update(query_scope="every_token"), "needle.query_scope"),
        (lambda c: c.pop("needle"), "'pretrain.extra_corpora': lists needle"),
    ],
)
def test_errors_name_the_key(ci_config: dict, edit, message: str) -> None:
    config = copy.deepcopy(ci_config)
    edit(config)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        validate_config(config)

"""The attribution config section: defaults, semantic errors, which keys decide which job."""

from __future__ import annotations

import copy

import pytest

from attnlab.attribution.settings import attribution_job_spec, attribution_models
from attnlab.config import validate_config
from attnlab.study.schema import ConfigError, load_yaml
from conftest import REPO


@pytest.fixture(scope="module")
def ci_config() -> dict:
    config = load_yaml(REPO / "configs" / "ci.yaml")
    config.pop("validation", None)  # downstream of attribution; its own checks refer to attribution.methods
    return config


def test_defaults_and_model_selection(ci_config: dict) -> None:
    study = validate_config(ci_config, base_dir=REPO)
    section = study["attribution"]
    assert section["methods"] == ["dp", "stp", "michel"] and section["quadrature"] == "trapezoid"
    assert section["baseline"] == 0.0 and section["variants"] == ["clean"]
    assert {"llama", "diffllama", "mdlm"} <= set(attribution_models(study))
    chosen = validate_config({**copy.deepcopy(ci_config), "attribution": {"models": ["diffllama"]}}, base_dir=REPO)
    assert attribution_models(chosen) == ["diffllama"]
    off = copy.deepcopy(ci_config)
    off.pop("attribution")
    assert attribution_models(validate_config(off, base_dir=REPO)) == []


def test_job_spec_holds_only_what_decides_the_files(ci_config: dict) -> None:
    study = validate_config(ci_config, base_dir=REPO)
    llama, mdlm = attribution_job_spec(study, "llama"), attribution_job_spec(study, "mdlm")
    assert "mask_probs" not in llama["objective"] and mdlm["objective"]["mask_probs"] == [0.3, 0.7]
    assert llama["seed"] == study["seed"]
    only_michel = validate_config({**copy.deepcopy(ci_config), "attribution": {"methods": ["michel"]}}, base_dir=REPO)
    assert "ig_steps" not in attribution_job_spec(only_michel, "llama")


@pytest.mark.parametrize(
    "section, message",
    [
        ({"models": ["nope"]}, "'attribution.models': 'nope' is not a configured model"),
        ({"variants": ["clean", "xyz"]}, "'attribution.variants': 'xyz'"),
        ({"quadrature": "trapezoid", "ig_steps": 1}, "'attribution.ig_steps'"),
        ({"layers": {"first": 1, "last": 0}}, "'attribution.layers.last'"),
        ({"layers": {"first": 0, "last": 5}}, "'attribution.layers': layers 0..5 do not fit model"),
        ({"baseline": 1.0}, "attribution.baseline"),
        ({"methods": ["ig"]}, "attribution.methods"),
        ({"ig_step": 3}, "attribution.ig_step"),
    ],
)
def test_bad_sections_name_the_key(ci_config: dict, section: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        validate_config({**copy.deepcopy(ci_config), "attribution": section}, base_dir=REPO)

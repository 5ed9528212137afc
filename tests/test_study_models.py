"""One model reference: every model name of a study resolves to its entry, seed, recipe, location and flags."""

from __future__ import annotations

import shlex

import pytest

from attnlab.config import validate_config
from attnlab.paths import REPO_ROOT
from attnlab.study.models import model_reference
from attnlab.study.schema import load_yaml


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict:
    workdir = tmp_path_factory.mktemp("study")
    (workdir / "my models" / "lm").mkdir(parents=True)  # a local folder id must exist where the jobs run
    config = load_yaml(REPO_ROOT / "config.yaml")
    config["models"]["hub-lm"] = {"source": "hub", "id": "org/some-lm", "revision": "v1.0",
                                  "subfolder": "checkpoints/step-100", "trust_remote_code": True, "dtype": "bfloat16"}
    config["models"]["local-lm"] = {"source": "hub", "id": "./my models/lm"}
    return validate_config(config, base_dir=workdir)


def test_a_configured_model_a_replicate_and_the_sft_variant_of_a_replicate(study: dict) -> None:
    base = model_reference(study, "llama")
    assert (base.configured, base.seed, base.recipe, base.parent, base.source) == ("llama", study["seed"], None, None, "scratch")
    replicate = model_reference(study, "llama-seed1")
    assert (replicate.configured, replicate.seed, replicate.source) == ("llama", 1, "scratch")
    assert replicate.entry == study["models"]["llama"]
    variant = model_reference(study, "llama-seed1+sft-noisy")
    assert (variant.configured, variant.seed, variant.recipe, variant.parent) == ("llama", 1, "noisy", "llama-seed1")
    assert variant.source == "sft" and variant.entry["base"] == "llama-seed1"
    for reference in (base, replicate, variant):
        assert reference.trained_here
        assert reference.location("out") == f"out/models/{reference.name}"
        assert reference.loader_flags() == ["--dtype auto"]
        assert reference.loader_flags(dtype=False, extra=["--train t.parquet"]) == ["--train t.parquet"]


def test_a_hub_entry_gets_its_id_and_every_loader_flag_as_one_shell_word(study: dict) -> None:
    hub = model_reference(study, "hub-lm")
    assert not hub.trained_here and hub.location("results") == "org/some-lm"
    flags = hub.loader_flags(extra=["--mask-tokens 8"])
    assert flags == ["--dtype bfloat16", "--mask-tokens 8", "--revision v1.0", "--subfolder checkpoints/step-100",
                     "--trust-remote-code"]
    assert hub.hub_flags() == flags[2:4]
    local = model_reference(study, "local-lm")
    assert local.location() == "./my models/lm"
    words = shlex.split(" ".join(["--model", shlex.quote(local.location()), *local.loader_flags()]))
    assert words == ["--model", "./my models/lm", "--dtype", "auto", "--revision", "main"]


def test_an_unknown_name_is_a_key_error(study: dict) -> None:
    with pytest.raises(KeyError, match="unknown model 'llama-seed99'"):
        model_reference(study, "llama-seed99")

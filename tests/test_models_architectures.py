"""The architecture table agrees with the schema, with the models it builds, and with their modules."""

from __future__ import annotations

import random

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM

from attnlab.attention.capture import is_differential
from attnlab.models import architectures
from attnlab.models.architectures import ARCHITECTURES, architecture_names, by_model_type, model_types
from attnlab.models.registry import build_scratch_config
from attnlab.models.tokenizer import train_tokenizer
from attnlab.paths import SCHEMA_PATH

from conftest import TINY_SIZE as SIZE


@pytest.fixture(scope="module")
def tokenizer():
    rng = random.Random(0)
    texts = [f"Question: {rng.randint(1, 99)} plus {rng.randint(1, 99)}?\nAnswer: #### {rng.randint(1, 200)}" for _ in range(200)]
    return train_tokenizer(texts, vocab_size=300)


@pytest.fixture(scope="module")
def models(tokenizer):
    torch.manual_seed(0)
    return {name: AutoModelForCausalLM.from_config(build_scratch_config(name, SIZE, tokenizer)) for name in ARCHITECTURES}


def _architecture_enums(node) -> list[list[str]]:
    """Every ``architecture: {enum: [...]}`` declared anywhere in a schema."""
    if isinstance(node, list):
        return [enum for value in node for enum in _architecture_enums(value)]
    if not isinstance(node, dict):
        return []
    own = [node["architecture"]["enum"]] if isinstance(node.get("architecture"), dict) and "enum" in node["architecture"] else []
    return own + [enum for value in node.values() for enum in _architecture_enums(value)]


def test_schema_enum_is_the_table():
    schema = yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))
    enums = _architecture_enums(schema)
    assert enums, "the schema declares no architecture enum"
    assert all(list(enum) == list(ARCHITECTURES) for enum in enums)


def test_capability_queries():
    assert architecture_names(attention=True) == ("llama", "diffllama", "gpt2", "mdlm")
    assert architecture_names(attention=True, causal=True) == ("llama", "diffllama", "gpt2")
    assert architecture_names(causal=False) == ("mdlm",)
    assert architecture_names(differential=True) == ("diffllama",)
    assert model_types(ssm=True) == ("mamba", "mamba2")
    assert by_model_type("attnlab_mdlm").name == "mdlm"
    assert by_model_type("llada") is None
    with pytest.raises(ValueError, match="unknown capabilities"):
        architecture_names(recurrent=True)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_table_matches_the_built_model(name, models):
    arch, model = ARCHITECTURES[name], models[name]
    assert model.config.model_type == arch.model_type
    layers = architectures.blocks(model)
    assert len(layers) == SIZE["num_layers"]
    if not arch.attention:
        with pytest.raises(ValueError, match="has no attention"):
            architectures.attention_module(model, 0)
        return
    for layer in range(len(layers)):
        attention = architectures.attention_module(model, layer)
        assert is_differential(attention) is arch.differential  # the modules agree with the table's capability
        projection = architectures.output_projection(model, layer)
        units = architectures.head_units(model.config)
        assert units == (SIZE["num_heads"] // 2 if arch.differential else SIZE["num_heads"])
        in_features = projection.in_features if isinstance(projection, torch.nn.Linear) else projection.weight.shape[0]
        assert in_features % units == 0
        mlp = architectures.mlp_projection(model, layer)
        assert (mlp.in_features if isinstance(mlp, torch.nn.Linear) else mlp.weight.shape[0]) == SIZE["intermediate_size"]


def test_unknown_model_is_named():
    class Fake(torch.nn.Module):
        config = type("C", (), {"model_type": "llada"})()

    with pytest.raises(ValueError, match="unknown model type 'llada'"):
        architectures.blocks(Fake())

"""DiffLlama's per-head norm option: the default is transformers' module exactly; the other forms round-trip."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM
from transformers import DiffLlamaForCausalLM as PublishedDiffLlamaForCausalLM

from attnlab.models.diffllama import head_norm_spec
from attnlab.models.loader import load_model
from attnlab.models.registry import build_scratch_config, count_parameters
from attnlab.models.tokenizer import train_tokenizer

from conftest import TINY_SIZE as SIZE


@pytest.fixture(scope="module")
def tokenizer():
    rng = random.Random(0)
    texts = [f"Question: {rng.randint(1, 99)} plus {rng.randint(1, 99)}?\nAnswer: #### {rng.randint(1, 200)}" for _ in range(200)]
    return train_tokenizer(texts, vocab_size=300)


def _model(tokenizer, head_norm):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(build_scratch_config("diffllama", SIZE, tokenizer, head_norm)).eval()


def test_default_reproduces_transformers_module_exactly(tokenizer):
    config = build_scratch_config("diffllama", SIZE, tokenizer)
    assert not hasattr(config, "head_norm")  # the published form leaves no key in config.json
    torch.manual_seed(0)
    published = PublishedDiffLlamaForCausalLM(config).eval()
    ours = _model(tokenizer, None)
    assert type(ours) is not PublishedDiffLlamaForCausalLM and type(ours).__name__ == "DiffLlamaForCausalLM"
    assert list(ours.state_dict()) == list(published.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), published.state_dict().values()))
    norm = ours.model.layers[0].self_attn.groupnorm
    assert isinstance(norm, nn.RMSNorm) and norm.weight is None
    ids = torch.tensor([[1, 10, 11, 12, 13, 14]])
    assert torch.equal(ours(ids).logits, published(ids).logits)
    # "rms" with no scale is the same published form
    assert head_norm_spec({"kind": "rms", "init_scale": None}) is None


def test_learnable_scale_starts_at_init_scale_and_shrinks_the_attention_output(tokenizer):
    published, scaled = _model(tokenizer, None), _model(tokenizer, {"kind": "rms", "init_scale": 0.05})
    weight = scaled.model.layers[1].self_attn.groupnorm.weight
    assert weight.requires_grad and torch.allclose(weight, torch.full_like(weight, 0.05))
    extra = len(published.model.layers) * 2 * (SIZE["hidden_size"] // SIZE["num_heads"])
    assert count_parameters(scaled.config) == count_parameters(published.config) + extra
    ids = torch.randint(3, len(tokenizer), (2, 12))

    def o_proj_input_rms(model):
        seen = []
        hook = model.model.layers[0].self_attn.o_proj.register_forward_hook(lambda m, i, o: seen.append(i[0]))
        with torch.no_grad():
            model(ids)
        hook.remove()
        return seen[0].pow(2).mean().sqrt().item()

    # every head's output is scaled by 0.05 before o_proj (the same weights otherwise)
    assert o_proj_input_rms(scaled) == pytest.approx(0.05 * o_proj_input_rms(published), rel=1e-4)


@pytest.mark.parametrize("head_norm", [{"kind": "rms", "init_scale": 0.05}, {"kind": "none"}])
def test_forms_round_trip_through_save_pretrained_and_the_loader(tokenizer, tmp_path, head_norm):
    model = _model(tokenizer, head_norm)
    with torch.no_grad():  # a trained scale differs from its initial value
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded, _ = load_model(str(tmp_path), device="cpu", dtype="float32")
    assert loaded.config.head_norm == head_norm_spec(head_norm)
    assert set(loaded.state_dict()) == set(model.state_dict())
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    ids = torch.tensor([[1, 10, 11, 12, 13]])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    kind = type(loaded.model.layers[0].self_attn.groupnorm)
    assert kind is (nn.Identity if head_norm["kind"] == "none" else nn.RMSNorm)


@pytest.mark.parametrize(
    "value, message",
    [
        ({"kind": "layer"}, "head_norm.kind"),
        ({"kind": "rms", "init_scale": 0}, "init_scale"),
        ({"kind": "none", "init_scale": 0.1}, "kind: none"),
        ({"scale": 0.1}, "unknown keys"),
    ],
)
def test_bad_head_norm_is_named(value, message):
    with pytest.raises(ValueError, match=message):
        head_norm_spec(value)


def test_head_norm_is_a_diffllama_option(tokenizer):
    with pytest.raises(ValueError, match="diffllama option"):
        build_scratch_config("llama", SIZE, tokenizer, {"kind": "none"})


def test_config_check_names_the_head_norm_key():
    import copy
    from pathlib import Path

    from attnlab.config import validate_config
    from attnlab.study.schema import ConfigError, load_yaml

    config = load_yaml(Path(__file__).resolve().parents[1] / "config.yaml")
    bad = copy.deepcopy(config)
    bad["models"]["diffllama"]["head_norm"] = {"kind": "none", "init_scale": 0.1}
    bad["models"]["llama"]["head_norm"] = {"kind": "none"}
    with pytest.raises(ConfigError) as info:
        validate_config(bad)
    assert "config key 'models.diffllama.head_norm': head_norm.init_scale needs kind: rms" in str(info.value)
    assert "config key 'models.llama.head_norm': only for architecture diffllama" in str(info.value)

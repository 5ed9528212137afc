"""Jacobian products against finite differences and an explicit Jacobian; effective rank on known spectra."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from attnlab.evaluate.tiny import build_tiny_tokenizer
from attnlab.models.registry import build_scratch_config
from attnlab.perturbation.jacobian import DEFAULT_JACOBIAN_SPEC, LayerJacobian, effective_rank, encode_texts, run_jacobian, spectral_norm
from attnlab.perturbation.sites import site_hook

TEXTS = ["The capital of Rifelistan is Drouzex.", "Ava has 3 pens.", "Ben plays for Kolvar United."]
SIZES = {
    "gpt2": {"hidden_size": 16, "num_layers": 2, "num_heads": 2, "intermediate_size": 32, "max_position_embeddings": 64},
    "mamba": {"hidden_size": 16, "num_layers": 2, "state_size": 4, "expand": 2},
    "mamba2": {"hidden_size": 16, "num_layers": 2, "state_size": 4, "expand": 2, "head_dim": 8},
}


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def tiny(arch, tokenizer):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(build_scratch_config(arch, SIZES[arch], tokenizer)).double().eval()


def last_logits(model, ids, mask, layer, delta):
    def add(h):
        return h + delta

    with torch.no_grad(), site_hook(model, "residual", layer, add):
        logits = model(input_ids=ids, attention_mask=mask).logits
    return logits[torch.arange(ids.shape[0]), mask.sum(1) - 1]


@pytest.mark.parametrize("arch", ["gpt2", "mamba", "mamba2"])
def test_jvp_matches_finite_differences_and_vjp(arch, tokenizer, one_torch_thread):
    model = tiny(arch, tokenizer)
    ids, mask = encode_texts(tokenizer, TEXTS)
    jac = LayerJacobian(model, ids, mask, layer=0)
    gen = torch.Generator().manual_seed(0)
    v = jac.random_directions(gen)
    jv = jac.jvp(v)
    # central differences; Mamba computes its scan in float32 even in a float64 model, hence eps = 1e-3
    eps = 1e-3
    fd = (last_logits(model, ids, mask, 0, eps * v) - last_logits(model, ids, mask, 0, -eps * v)) / (2 * eps)
    tolerance = 1e-5 if arch == "gpt2" else 2e-3  # float64 throughout vs float32 scan
    assert float((jv - fd).norm() / jv.norm()) < tolerance
    assert float(jv.norm()) > 1e-3
    u = torch.randn(jv.shape, generator=gen, dtype=torch.float64)
    assert float((u * jv).sum()) == pytest.approx(float((jac.vjp(u) * v).sum()), rel=1e-6)


def test_power_iteration_finds_the_largest_singular_value(tokenizer, one_torch_thread):
    model = tiny("gpt2", tokenizer)
    ids, mask = encode_texts(tokenizer, TEXTS[:1])
    jac = LayerJacobian(model, ids, mask, layer=1)
    vocab = jac.logits.shape[1]
    rows = [jac.vjp(torch.eye(vocab, dtype=torch.float64)[i : i + 1]).flatten() for i in range(vocab)]
    exact = torch.linalg.matrix_norm(torch.stack(rows), ord=2)
    estimate = spectral_norm(jac, 50, torch.Generator().manual_seed(1))
    assert float(estimate[0]) == pytest.approx(float(exact), rel=1e-4)
    # every iteration count gives a lower bound; the default is within 1 % of the exact norm
    for iterations in (1, 3, 10, DEFAULT_JACOBIAN_SPEC["power_iterations"]):
        assert float(spectral_norm(jac, iterations, torch.Generator().manual_seed(1))[0]) <= float(exact) * (1 + 1e-9)
    for text in TEXTS:
        ids, mask = encode_texts(tokenizer, [text])
        for layer in (0, 1):
            jac = LayerJacobian(model, ids, mask, layer=layer)
            rows = [jac.vjp(torch.eye(vocab, dtype=torch.float64)[i : i + 1]).flatten() for i in range(vocab)]
            exact = float(torch.linalg.matrix_norm(torch.stack(rows), ord=2))
            default = spectral_norm(jac, DEFAULT_JACOBIAN_SPEC["power_iterations"], torch.Generator().manual_seed(layer))
            assert exact * 0.99 <= float(default[0]) <= exact * (1 + 1e-9)


def test_effective_rank_of_known_spectra():
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(64, 64, dtype=torch.float64))
    equal = q[:, :8] @ torch.eye(8, dtype=torch.float64) @ torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64))[0]
    equal = equal - equal.mean(0)  # already centred columns give the same singular values
    assert effective_rank(torch.cat([equal, -equal])) == pytest.approx(8.0, rel=0.05)
    one = torch.randn(100, 1, dtype=torch.float64) @ torch.randn(1, 16, dtype=torch.float64)
    assert effective_rank(one) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="at least as many tokens"):
        effective_rank(torch.randn(4, 16))


def test_run_jacobian_rows_and_token_check(tokenizer, one_torch_thread):
    model = tiny("mamba2", tokenizer).float()
    rows = run_jacobian(model, tokenizer, TEXTS, {"num_vectors": 2, "power_iterations": 3}, seed=0, model_name="m")
    assert list(rows.layer) == [0, 1]
    assert (rows.spectral_norm_max >= rows.spectral_norm_mean).all()
    assert (rows.spectral_norm_mean >= rows.sensitivity_mean * 0.999).all()  # σmax ≥ E‖Jv‖ for unit v
    assert all(math.isfinite(x) for x in rows.output_variance)
    with pytest.raises(ValueError, match="num_texts"):
        run_jacobian(model, tokenizer, ["Hi."], {}, seed=0, model_name="m")

"""HeadIG: paths, quadrature, completeness, the Captum cross-check, the Michel baseline, score tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from captum.attr import IntegratedGradients

from attnlab.attribution.gates import HeadGates, gate_layout
from attnlab.attribution.headig import (
    HeadIGSpec,
    attribute_items,
    diagonal_path,
    integrate,
    path_taus,
    postprocess,
    score_table,
    stochastic_threshold_path,
)
from attnlab.attribution.objectives import ObjectiveSpec, encode_items, row_losses
from attnlab.evaluate.tiny import build_tiny_model, build_tiny_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DATA = pd.DataFrame(
    {
        "id": ["q1", "q2", "q3"],
        "question": [
            "Ava has 3 boxes of 5 pens. How many pens does Ava have?",
            "Ben has 4 boxes of 7 cards. How many cards does Ben have?",
            "Chen has 2 boxes of 9 books. How many books does Chen have?",
        ],
        "answer": [
            "Ava has 3*5=<<3*5=15>>15 pens.\n#### 15",
            "Ben has 4*7=<<4*7=28>>28 cards.\n#### 28",
            "Chen has 2*9=<<2*9=18>>18 books.\n#### 18",
        ],
    }
)


@pytest.fixture(scope="module")
def setup():
    tokenizer = build_tiny_tokenizer()
    # initializer 0.05: a smoother J(α) than the 0.2 default of tiny models (whose J(1) − J(0) is tiny next to the
    # curvature of the path), closer to a trained model
    model = build_tiny_model(
        "diffllama", tokenizer, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, initializer_range=0.05
    )
    objective = ObjectiveSpec()
    return model, encode_items(model, tokenizer, DATA, objective), objective


def test_path_grids_and_endpoints():
    assert path_taus(4, "riemann_right").tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert path_taus(5, "trapezoid").tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    active = torch.tensor([[True, True], [False, True]])
    taus = path_taus(4, "riemann_right")
    diag = diagonal_path(taus, 0.2, active)
    assert diag[0, 0, 0] == pytest.approx(0.2) and diag[-1].eq(1).all() and diag[:, 1, 0].eq(1).all()
    u = torch.tensor([[0.0, 0.5], [0.9, 0.75]], dtype=torch.float64)
    stp = stochastic_threshold_path(taus, 0.0, active, u)
    assert stp[0, 0, 0] == 0 and stp[-1].eq(1).all()
    assert stp[:, 0, 0].tolist() == pytest.approx(taus.tolist())  # u = 0 is the diagonal
    assert stp[:, 0, 1].tolist() == pytest.approx([0, 0, 0, 0.5, 1.0])  # (τ − 0.5)/(1 − 0.5), clipped
    assert stp[:, 1, 0].eq(1).all()  # inactive unit stays on


def test_quadrature_on_a_known_integrand():
    """J(α) = Σ_i c_i α_i²: ∂J/∂α_i = 2 c_i α_i; exact IG on the diagonal from 0 is c_i."""
    c = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    active = torch.ones((1, 2), dtype=torch.bool)
    for quadrature, steps, tolerance in (("trapezoid", 3, 1e-12), ("riemann_right", 1000, 2e-3)):
        gates = diagonal_path(path_taus(steps, quadrature), 0.0, active)
        attributions = integrate(gates, 2 * c * gates, quadrature)
        assert attributions.numpy() == pytest.approx(c.numpy(), abs=tolerance * 2)  # trapezoid exact for linear g


def test_postprocess():
    x = np.array([-1.0, 2.0])
    assert postprocess(x, "signed").tolist() == [-1.0, 2.0]
    assert postprocess(x, "abs").tolist() == [1.0, 2.0]
    assert postprocess(x, "relu").tolist() == [0.0, 2.0]


@pytest.mark.parametrize("quadrature, captum_method", [("riemann_right", "riemann_right"), ("trapezoid", "riemann_trapezoid")])
def test_diagonal_path_agrees_with_captum(setup, quadrature, captum_method):
    model, items, objective = setup
    steps = 8
    spec = HeadIGSpec(method="dp", ig_steps=steps, quadrature=quadrature, baseline=0.0)
    ours = attribute_items(model, items[:1], spec, objective)[0].attributions
    item = items[0]
    with HeadGates(model) as gates:

        def forward(alpha: torch.Tensor) -> torch.Tensor:  # [R, L, U] → J [R]
            gates.set(alpha)
            return -row_losses(model, item, alpha.shape[0], objective.normalization, torch.device("cpu"))

        layout = gates.layout
        reference = IntegratedGradients(forward).attribute(
            torch.ones((1, *layout.shape)), baselines=torch.zeros((1, *layout.shape)), n_steps=steps, method=captum_method
        )[0]
    if quadrature == "trapezoid":
        # Captum's riemann_trapezoid evaluates τ = linspace(0, 1, n) with step sizes 1/n (halved at both ends): its
        # weights sum to (n − 1)/n. Ours is the composite trapezoid with h = 1/(n − 1) (weights sum to 1, so
        # completeness holds); the two differ exactly by that factor.
        reference = reference * steps / (steps - 1)
    np.testing.assert_allclose(ours, reference.double().numpy(), rtol=1e-4, atol=1e-6)
    assert np.abs(ours).max() > 1e-4


def test_completeness_improves_with_steps_and_holds_for_both_paths(setup):
    model, items, objective = setup
    cpu = torch.device("cpu")
    with torch.no_grad():
        unmodified = [-float(row_losses(model, item, 1, "mean_masked", cpu)[0]) for item in items]
    relative = {}
    for method in ("dp", "stp"):
        for steps in (4, 32):
            spec = HeadIGSpec(method=method, ig_steps=steps, quadrature="trapezoid", path_samples=2)
            results = attribute_items(model, items, spec, objective)
            assert [r.j_full for r in results] == pytest.approx(unmodified, rel=1e-5)  # J(1) = the model's −L
            gaps = np.array([abs(r.j_full - r.j_baseline) for r in results])
            relative[method, steps] = np.mean([abs(r.completeness_delta) for r in results]) / gaps.mean()
    assert relative["dp", 32] < 0.05 and relative["dp", 32] < relative["dp", 4]
    assert relative["stp", 32] < 0.2 and relative["stp", 32] < relative["stp", 4]


def test_michel_baseline_is_the_loss_gradient_at_one(setup):
    model, items, objective = setup
    spec = HeadIGSpec(method="michel")
    results = attribute_items(model, items, spec, objective)
    layout = gate_layout(model)
    alpha = torch.ones((1, *layout.shape), requires_grad=True)
    with HeadGates(model) as gates:
        gates.set(alpha)
        loss = row_losses(model, items[0], 1, "mean_masked", torch.device("cpu"))[0]
        (grad,) = torch.autograd.grad(loss, alpha)
    np.testing.assert_allclose(results[0].attributions, grad[0].double().numpy(), rtol=1e-5, atol=1e-8)
    table = score_table(results, spec, layout, model="m", base="b")
    expected = np.mean([np.abs(r.attributions) for r in results], axis=0).ravel()
    np.testing.assert_allclose(table["score"].to_numpy(), expected)
    assert table["completeness_delta_mean"].isna().all()


def test_score_table_layer_range_and_batching(setup):
    model, items, objective = setup
    spec = HeadIGSpec(method="stp", ig_steps=4, path_samples=2, first_layer=1, last_layer=1, postprocess="abs", seed=3)
    results = attribute_items(model, items, spec, objective)
    assert np.all(results[0].attributions[0] == 0)  # layer 0 is not on the path
    table = score_table(results, spec, gate_layout(model), model="diffllama", base="tiny")
    assert list(table.columns) == [
        "model", "base", "method", "layer", "head", "score", "score_std", "n_items",
        "completeness_delta_mean", "relative_delta_mean",
    ]
    assert table["layer"].tolist() == [1, 1] and table["head"].tolist() == [0, 1]
    assert (table["score"] >= 0).all() and (table["n_items"] == 3).all()
    per_item = np.abs(np.stack([r.attributions[1] for r in results]))
    np.testing.assert_allclose(table["score_std"], per_item.std(axis=0, ddof=1))
    small_batches = attribute_items(model, items, HeadIGSpec(**{**spec.__dict__, "batch_rows": 3}), objective)
    np.testing.assert_allclose(small_batches[0].attributions, results[0].attributions, rtol=1e-4, atol=1e-7)
    other_seed = attribute_items(model, items[:1], HeadIGSpec(**{**spec.__dict__, "seed": 4}), objective)
    assert not np.allclose(other_seed[0].attributions, results[0].attributions)


def test_spec_errors():
    with pytest.raises(ValueError, match="baseline"):
        HeadIGSpec(baseline=1.0)
    with pytest.raises(ValueError, match="too few"):
        HeadIGSpec(quadrature="trapezoid", ig_steps=1)
    with pytest.raises(ValueError, match="do not fit"):
        HeadIGSpec(last_layer=5).layer_range(2)

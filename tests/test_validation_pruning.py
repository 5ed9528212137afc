"""Head pruning by importance: head selection, conditions, running with gates, tables and paired tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps

from attnlab.validation.pruning import (
    format_heads,
    n_pruned,
    pruning_conditions,
    pruning_order,
    run_pruning,
    score_grid,
)
from attnlab.validation.tables import (
    pruning_table,
    pruning_tests,
    pruning_verdicts,
    sparse_table,
    sparse_tests,
    sparse_verdicts,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SCORES = np.array([[0.5, 3.0, -1.0], [2.0, 0.5, 1.0]])  # [layers=2, units=3]; a tie at 0.5


def _scores_table(grid: np.ndarray) -> pd.DataFrame:
    layers, units = grid.shape
    return pd.DataFrame(
        {"layer": np.repeat(np.arange(layers), units), "head": np.tile(np.arange(units), layers), "score": grid.ravel()}
    )


def test_score_grid_roundtrip_and_errors():
    np.testing.assert_array_equal(score_grid(_scores_table(SCORES), (2, 3)), SCORES)
    table = _scores_table(SCORES)
    with pytest.raises(ValueError, match=r"1 of 6 heads have no score \(first: \(1, 2\)\)"):
        score_grid(table.iloc[:-1], (2, 3), source="dp.parquet")
    with pytest.raises(ValueError, match="appears twice"):
        score_grid(pd.concat([table, table.iloc[:1]]), (2, 3))
    with pytest.raises(ValueError, match="outside"):
        score_grid(table, (2, 2))
    with pytest.raises(ValueError, match="missing column"):
        score_grid(table.drop(columns="score"), (2, 3))


@pytest.mark.parametrize(("n", "fraction", "k"), [(16, 0.05, 1), (8, 0.05, 0), (16, 0.1, 2), (6, 0.25, 2), (4, 0.5, 2), (4, 0.0, 0), (4, 1.0, 4)])
def test_n_pruned_rounds_half_up(n, fraction, k):
    assert n_pruned(n, fraction) == k


def test_orders_most_least_with_ties_by_position():
    [most] = pruning_order(SCORES, "most")
    assert most == [(0, 1), (1, 0), (1, 2), (0, 0), (1, 1), (0, 2)]  # (0,0) before (1,1): tie at 0.5
    [least] = pruning_order(SCORES, "least")  # smallest |score| first: the least relevant heads, either sign
    assert least == [(0, 0), (1, 1), (0, 2), (1, 2), (1, 0), (0, 1)]
    [lowest] = pruning_order(SCORES, "least", least_by="signed")  # lowest signed score first
    assert lowest == [(0, 2), (0, 0), (1, 1), (1, 2), (1, 0), (0, 1)]
    with pytest.raises(ValueError, match="least_by"):
        pruning_order(SCORES, "least", least_by="absolute")
    per_layer = pruning_order(SCORES, "most", scope="per_layer")
    assert per_layer == [[(0, 1), (0, 0), (0, 2)], [(1, 0), (1, 2), (1, 1)]]


def test_random_orders_are_seeded_permutations():
    a = pruning_order(SCORES, "random", seed=1)
    assert a == pruning_order(SCORES, "random", seed=1)
    assert sorted(a[0]) == sorted((l, h) for l in range(2) for h in range(3))
    assert a != pruning_order(SCORES, "random", seed=2)
    with pytest.raises(ValueError, match="seed"):
        pruning_order(SCORES, "random")


def test_conditions_are_nested_prefixes_per_strategy():
    conditions = pruning_conditions(SCORES, [0.0, 0.34, 0.5, 1.0], scope="global", random_seeds=[1, 2, 3])
    assert len(conditions) == 4 * (2 + 3)
    most = [c for c in conditions if c.strategy == "most"]
    assert [c.k for c in most] == [0, 2, 3, 6]
    assert most[1].pruned == ((0, 1), (1, 0))
    for strategy_seed in {(c.strategy, c.seed) for c in conditions}:
        chain = [c.pruned for c in conditions if (c.strategy, c.seed) == strategy_seed]
        assert all(chain[i] == chain[i + 1][: len(chain[i])] for i in range(len(chain) - 1))
    per_layer = pruning_conditions(SCORES, [0.34], scope="per_layer", random_seeds=[1, 2, 3])
    least = next(c for c in per_layer if c.strategy == "least")
    assert least.pruned == ((0, 0), (1, 1))  # one head in every layer: the smallest |score| of each
    assert format_heads(least.pruned) == "0.0;1.1"


class _FakeModel:
    """Just enough of a model for gate_layout: a llama-like layer list with o_proj."""

    def __new__(cls, layers: int, units: int):
        from attnlab.evaluate.tiny import build_tiny_model, build_tiny_tokenizer

        return build_tiny_model("llama", build_tiny_tokenizer(), hidden_size=8 * units, num_layers=layers,
                                num_heads=units, intermediate_size=16)


def test_run_pruning_applies_the_masks_and_measures_each_set_once():
    model = _FakeModel(2, 3)
    data = pd.DataFrame({"id": [f"q{i}" for i in range(5)]})
    seen: list[torch.Tensor] = []

    def measure(alpha, pass_data, loss_data):
        seen.append(alpha.clone())
        pruned = int((alpha == 0).sum())
        return [pruned == 0] * len(pass_data), [float(pruned)] * len(loss_data)

    frame = run_pruning(
        model, None, data, SCORES, fractions=[0.0, 0.5], scope="global", random_seeds=[1, 2, 3],
        pass_items=2, loss_items=4, measure=measure, labels={"model": "m", "base": "b", "scores": "dp"},
    )
    conditions = pruning_conditions(SCORES, [0.0, 0.5], scope="global", random_seeds=[1, 2, 3])
    distinct = {frozenset(c.pruned) for c in conditions}
    assert len(distinct) < len(conditions) and len(seen) == len(distinct)  # each distinct set measured once
    assert (seen[0] == 1).all()
    most = frame[(frame["strategy"] == "most") & (frame["fraction"] == 0.5)]
    assert set(most["pruned"]) == {"0.1;1.0;1.2"}
    assert list(most["id"]) == ["q0", "q1", "q2", "q3"]  # the first max(pass_items, loss_items) items
    assert list(most["loss"]) == [3.0] * 4
    assert list(most["correct"].iloc[:2]) == [False, False] and most["correct"].iloc[2:].isna().all()
    assert len(frame) == 5 * 2 * 4  # (most, least, 3 seeds) × fractions × items
    assert frame["seed"].isna().sum() == 2 * 2 * 4


def _items(model, strategy, seed, fraction, correct, loss, pruned=None):
    k = int(fraction * 10)
    if pruned is None:  # most prunes heads 0.., least heads 9.., random the same as most (seed 1)
        heads = range(k) if strategy != "least" else range(9, 9 - k, -1)
        pruned = ";".join(f"0.{h}" for h in heads)
    return pd.DataFrame({
        "model": model, "base": "syn", "scores": "dp", "scope": "global", "least_by": "magnitude",
        "strategy": strategy, "seed": pd.array([seed] * len(correct), dtype="Int64"), "fraction": fraction,
        "k": k, "n_heads": 10, "pruned": pruned, "id": [f"i{j}" for j in range(len(correct))],
        "correct": pd.array(correct, dtype="boolean"), "loss": loss,
    })


def test_pruning_table_paired_tests_match_scipy():
    n = 12
    most_correct = [False] * 10 + [True] * 2
    least_correct = [True] * 9 + [False] * 3  # 9 only-least, 2 only-most
    rng = np.random.default_rng(0)
    most_loss = 3.0 + rng.normal(size=n)
    least_loss = most_loss - 0.5 + 0.1 * rng.normal(size=n)
    frames = [
        _items("m", "most", None, 0.0, [True] * n, np.full(n, 2.0)),
        _items("m", "least", None, 0.0, [True] * n, np.full(n, 2.0)),
        _items("m", "most", None, 0.2, most_correct, most_loss),
        _items("m", "least", None, 0.2, least_correct, least_loss),
        _items("m", "random", 1, 0.2, most_correct, most_loss),
    ]
    table = pruning_table(frames)
    assert list(table["strategy"]) == ["most", "most", "least", "least", "random"]
    least = table[(table["strategy"] == "least") & (table["fraction"] == 0.2)].iloc[0]
    assert least["pass_at_1"] == pytest.approx(9 / 12)
    assert least["vs_most_only_ref"] == 2 and least["vs_most_only_this"] == 9
    assert least["vs_most_mcnemar_p"] == pytest.approx(sps.binomtest(2, 11, 0.5).pvalue)
    assert least["vs_most_diff"] == pytest.approx(7 / 12)
    assert least["vs_most_diff_low"] < 7 / 12 < least["vs_most_diff_high"]
    assert least["vs_most_loss_diff"] == pytest.approx(float(np.mean(least_loss - most_loss)))
    assert least["vs_most_loss_p"] == pytest.approx(sps.wilcoxon(least_loss - most_loss).pvalue)
    assert least["ci_low"] < 0.75 < least["ci_high"]
    assert least["loss_ci_low"] < least["loss_mean"] < least["loss_ci_high"]
    assert least["vs_most_loss_diff_low"] < least["vs_most_loss_diff"] < least["vs_most_loss_diff_high"] < 0
    same = table[(table["strategy"] == "random")].iloc[0]
    assert same["vs_most_loss_p"] == 1.0 and same["vs_most_mcnemar_p"] == 1.0  # identical outcomes
    # fraction 0 prunes nothing and random seed 1 prunes the same heads as most: neither is a real comparison
    assert list(table["vs_most_counted"]) == [False, False, False, True, False]
    assert least["vs_most_loss_p_holm"] == pytest.approx(least["vs_most_loss_p"])  # a family of one
    tests = pruning_tests(frames)
    loss_test = tests[(tests["comparator"] == "least") & (tests["measure"] == "loss")].iloc[0]
    assert loss_test["n_fractions"] == 1 and loss_test["ks"] == "2"
    assert loss_test["estimate"] == pytest.approx(float(np.mean(least_loss - most_loss)))
    assert loss_test["high"] < 0 and loss_test["p_value"] < 0.05
    sentences = pruning_verdicts(table, tests)
    [least_sentence] = [s for s in sentences if "least relevant heads (smallest |score|)" in s]
    assert "pruning the most important heads hurts more" in least_sentence and "(k = 2)" in least_sentence
    assert "higher loss for most in 1/1, 1 with Holm-adjusted Wilcoxon p < 0.05" in least_sentence
    assert "mean paired difference over the curve: sign-flip test over items, paired bootstrap interval" in least_sentence
    [random_sentence] = [s for s in sentences if "random heads" in s]
    assert "no fraction prunes different heads" in random_sentence
    with pytest.raises(ValueError, match="appears twice"):
        pruning_table([frames[2], frames[2]])


def test_sparse_table_compares_with_dense_and_uniform():
    def rows(method, budget, loss):
        return pd.DataFrame({
            "model": "m", "base": "syn", "scores": "dp", "method": method,
            "allocation": "rank" if method == "adaptive" else "", "budget": budget,
            "realised_keep_fraction": budget, "id": ["a", "b", "c", "d", "e", "f"],
            "correct": pd.array([True, True, False, False, True, False], dtype="boolean"), "loss": loss,
        })

    dense = np.array([1.0, 1.1, 1.2, 1.3, 1.4, 1.5])
    table = sparse_table([
        rows("dense", 1.0, dense), rows("uniform", 0.2, dense + 1.0), rows("adaptive", 0.2, dense + 0.5),
    ])
    assert list(table["method"]) == ["dense", "uniform", "adaptive"]
    adaptive = table.iloc[2]
    assert adaptive["vs_uniform_loss_diff"] == pytest.approx(-0.5)
    assert adaptive["vs_dense_loss_diff"] == pytest.approx(0.5)
    assert np.isnan(table.iloc[1]["vs_uniform_loss_diff"])
    assert adaptive["vs_uniform_loss_diff_low"] == pytest.approx(-0.5)  # every item differs by exactly -0.5
    assert adaptive["vs_uniform_loss_diff_high"] == pytest.approx(-0.5)
    tests = sparse_tests([
        rows("dense", 1.0, dense), rows("uniform", 0.2, dense + 1.0), rows("adaptive", 0.2, dense + 0.5),
    ])
    [sentence] = sparse_verdicts(table, tests)
    assert "adaptive (rank) vs uniform: adaptive is better (lower answer loss)" in sentence
    assert "lower loss at 1/1 budgets" in sentence

"""Calibration of the printed verdicts on synthetic data whose answer is known.

Null data (no real effect) must trigger a verdict at about the nominal rate; an oracle (head scores equal to
the true effect of removing a head) must win every comparison the verdict counts. Everything goes through the
same table and verdict code the study runs (fixed seeds, vectorised simulation, a few thousand rows).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from attnlab.perturbation.tables import (
    comparison_verdict,
    perturbation_comparison,
    perturbation_summary,
    perturbation_table,
)
from attnlab.stats import holm_adjust, paired_mean_difference
from attnlab.validation.pruning import format_heads, pruning_conditions
from attnlab.validation.tables import pruning_table, pruning_tests, pruning_verdicts, sparse_table, sparse_tests

# --- perturbation: "above random" is a test for one new draw ---------------------------------------------------


def _perturbation_rows(selected: np.ndarray, controls: np.ndarray) -> pd.DataFrame:
    """One relation per row of ``controls`` [R, S]: S random draws and one selected (``selected`` [R]) log-ratio."""
    relations, seeds = controls.shape
    values = np.concatenate([selected[:, None], controls], axis=1).ravel()  # [R · (1 + S)]
    method = np.tile(["attribution"] + ["random"] * seeds, relations)
    seed = np.tile(np.arange(-1, seeds), relations)
    return pd.DataFrame(
        {
            "model": "m", "model_type": "gpt2", "relation": np.repeat([f"r{i:04d}" for i in range(relations)], 1 + seeds),
            "site": "mlp", "layer": 0, "method": method, "seed": seed, "mode": "zero",
            "target_log_ratio": values, "target_pct_change": 100 * np.expm1(values), "sentence_log_ratio": values,
            "target_abs_change": values, "baseline_target_ppl": 10.0, "perturbed_target_ppl": 10.0 * np.exp(values),
            "n_channels": 4, "site_width": 80,
        }
    )


def test_above_random_false_positive_rate_on_null_data_is_nominal():
    """The selected log-ratio is one more draw from the control distribution (5 random seeds, as configured):
    the prediction-interval rule flags ~2.5 %; the interval of the controls' mean would flag ~17 %."""
    rng = np.random.default_rng(20261201)
    relations, seeds = 1500, 5
    controls = rng.normal(0.02, 0.05, size=(relations, seeds))
    selected = rng.normal(0.02, 0.05, size=relations)
    table = perturbation_table(_perturbation_rows(selected, controls))
    rows = table[table["layer"] == 0]
    assert len(rows) == relations
    assert np.allclose(rows["above_random_level"], 0.025)
    rate = rows["above_random"].mean()
    assert 0.01 <= rate <= 0.05
    mean_interval_rate = (rows["target_log_ratio"] > rows["random_target_log_ratio_high"]).mean()
    assert mean_interval_rate > 0.10  # the old rule (upper end of the t interval of the mean) is miscalibrated


def test_above_random_detects_a_real_effect_and_the_summary_test_agrees():
    rng = np.random.default_rng(7)
    relations, seeds = 12, 5
    controls = rng.normal(0.0, 0.02, size=(relations, seeds))
    selected = rng.normal(0.2, 0.02, size=relations)  # ten control standard deviations above
    table = perturbation_table(_perturbation_rows(selected, controls))
    summary = perturbation_summary(table)
    row = summary.iloc[0]
    assert row["relations_above_random"] == relations  # Holm over 12 relations still rejects every one
    assert row["diff_low"] > 0 and row["diff_p"] < 0.05
    null = perturbation_summary(perturbation_table(_perturbation_rows(controls[:, 0], controls[:, 1:] + 0.0)))
    assert null.iloc[0]["relations_above_random"] <= 1


def _two_model_studies(rng: np.random.Generator, studies: int, relations: int, ssm_shift: float) -> pd.DataFrame:
    """Perturbation rows of a Transformer and an SSM at the residual site, one simulated study per ``mode``:
    per relation 5 random draws and one selection each; the SSM's selection sits ``ssm_shift`` higher."""
    frames = []
    for model, kind, shift in (("t", "gpt2", 0.0), ("s", "mamba2", ssm_shift)):
        draws = rng.normal(0.0, 0.05, size=(studies, relations, 6))
        draws[..., 0] += 0.1 + shift  # the selection: above random in both models
        rows = []
        for study in range(studies):
            frame = _perturbation_rows(draws[study, :, 0], draws[study, :, 1:])
            frame["mode"] = f"study{study:04d}"
            rows.append(frame)
        frame = pd.concat(rows, ignore_index=True)
        frame["model"], frame["model_type"], frame["site"] = model, kind, "residual"
        frame["site_width"] = 128
        frame["n_channels"] = 7
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def test_like_for_like_comparison_is_calibrated_on_null_data_and_finds_a_built_in_difference():
    """The headline SSM-vs-Transformer test (sign-flip over 12 relations of the difference of excesses):
    ~5 % of 400 null studies reject; a built-in difference of 4 control SDs is found in every study."""
    rng = np.random.default_rng(20261201)
    null = perturbation_comparison(perturbation_table(_two_model_studies(rng, 400, 12, 0.0)))
    assert len(null) == 400 and set(null["ssm_model"]) == {"s"} and set(null["transformer_model"]) == {"t"}
    assert np.allclose(null["ssm_fraction"], 7 / 128) and (null["n_relations"] == 12).all()
    rate = (null["p_value"] <= 0.05).mean()
    assert 0.02 <= rate <= 0.09
    real = perturbation_comparison(perturbation_table(_two_model_studies(rng, 50, 12, 0.2)))
    assert (real["p_value"] <= 0.05).all() and (real["difference_low"] > 0).all()
    assert all("disrupts s more than t" in comparison_verdict(row) for _, row in real.iterrows())
    assert "does not distinguish" in comparison_verdict(null.loc[null["p_value"].idxmax()])


def test_like_for_like_comparison_pairs_only_equal_fractions_and_the_same_relations():
    rng = np.random.default_rng(3)
    rows = _two_model_studies(rng, 1, 8, 0.0)
    other = rows.assign(n_channels=np.where(rows["model"] == "s", 20, 7))  # 20/128 vs 7/128: not like for like
    assert perturbation_comparison(perturbation_table(other)).empty
    missing = rows[~((rows["model"] == "s") & (rows["relation"] == "r0000"))]
    with pytest.raises(ValueError, match="different relations"):
        perturbation_comparison(perturbation_table(missing))


# --- pruning: only real comparisons, an oracle ranking wins all of them ---------------------------------------


def _pruning_frames(
    effect: np.ndarray, scores: np.ndarray, n_items: int, rng: np.random.Generator, noise: float = 0.0,
    model: str = "m", fractions=(0.0, 0.05, 0.1, 0.2, 0.3, 0.5), least_by: str = "magnitude",
) -> pd.DataFrame:
    """Per-item pruning rows of a synthetic model whose answer loss rises by ``effect[h]`` when head h is pruned:
    loss(i, P) = base_i + (1 + u_i) · Σ_{h ∈ P} effect_h + noise · z(i, P)  (u_i ~ U(0, 1): items differ in how
    much they need the heads), pass@1 = loss below the item's threshold. Conditions from the real
    :func:`pruning_conditions` (so k, rounding and duplicate sets are the stage's own)."""
    layers, units = scores.shape
    conditions = pruning_conditions(scores, list(fractions), scope="global", random_seeds=[1, 2, 3], least_by=least_by)
    base = rng.normal(2.0, 0.3, size=n_items)
    need = 1.0 + rng.uniform(size=n_items)
    threshold = base + 0.5 * np.abs(effect).sum() * rng.uniform(size=n_items)
    measured: dict[frozenset, np.ndarray] = {}
    frames = []
    for c in conditions:
        key = frozenset(c.pruned)
        if key not in measured:  # the stage measures a set once
            total = sum(effect[l, h] for l, h in c.pruned)
            measured[key] = base + need * total + noise * rng.normal(size=n_items)
        loss = measured[key]
        frames.append(
            pd.DataFrame(
                {
                    "model": model, "base": "syn", "scores": "dp", "scope": "global", "strategy": c.strategy,
                    "seed": pd.array([c.seed] * n_items, dtype="Int64"), "fraction": c.fraction, "k": c.k,
                    "n_heads": layers * units, "pruned": format_heads(c.pruned), "least_by": least_by,
                    "id": [f"i{j}" for j in range(n_items)], "correct": pd.array(loss < threshold, dtype="boolean"),
                    "loss": loss,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize(("layers", "units", "distinct_k"), [(2, 4, 3), (2, 8, 5)])
def test_oracle_ranking_wins_every_counted_comparison(layers, units, distinct_k):
    """8 heads (the default DiffLlama: k = 0, 0, 1, 2, 2, 4 over the default fractions) count 3 comparisons per
    curve, 16 heads (Llama) 5: an oracle gets n/n for least and for random, and the curve test says 'hurts more'."""
    rng = np.random.default_rng(layers * 100 + units)
    effect = rng.normal(0.0, 1.0, size=(layers, units))  # mixed signs: some heads help when removed
    frames = _pruning_frames(effect, effect.copy(), 20, rng)
    table, tests = pruning_table([frames]), pruning_tests([frames])
    least = table[(table["strategy"] == "least") & table["vs_most_counted"]]
    assert len(least) == distinct_k
    assert (least["vs_most_loss_diff"] < 0).all()
    random = table[(table["strategy"] == "random") & table["vs_most_counted"]]
    assert (random["vs_most_loss_diff"] < 0).all() and len(random) <= 3 * distinct_k
    not_counted = table[(table["strategy"] != "most") & ~table["vs_most_counted"]]
    assert (not_counted["k"] == 0).any()  # fraction 0 (and 0.05 for 8 heads) is left out
    for sentence in pruning_verdicts(table, tests):
        assert ": pruning the most important heads hurts more" in sentence
        n = distinct_k if "least relevant" in sentence else len(random)
        assert f"higher loss for most in {n}/{n}," in sentence


def test_signed_least_is_a_named_option_and_recorded():
    rng = np.random.default_rng(5)
    effect = rng.normal(size=(2, 4))
    frames = _pruning_frames(effect, effect.copy(), 10, rng, least_by="signed")
    table, tests = pruning_table([frames]), pruning_tests([frames])
    assert set(table["least_by"]) == {"signed"}
    assert any("lowest-scoring heads (signed score)" in s for s in pruning_verdicts(table, tests))


def _null_rate(differences: np.ndarray) -> tuple[float, float]:
    """Shares of simulated studies [sims, items, conditions] whose whole-curve test rejects (sign-flip p ≤ 0.05)
    and whose bootstrap interval excludes 0."""
    tests = [paired_mean_difference(d, seed=0) for d in differences]
    by_p = np.array([t.p_value <= 0.05 for t in tests])
    by_interval = np.array([t.low > 0 or t.high < 0 for t in tests])
    return float(by_p.mean()), float(by_interval.mean())


def test_curve_test_false_positive_rate_on_null_data():
    """No effect: per item and condition, this − reference is noise around 0 with an item effect shared by the
    conditions (as on a pruning curve or a budget sweep). The whole-curve test rejects at about 5 %."""
    rng = np.random.default_rng(11)
    sims, items, conditions = 1000, 30, 3  # 30 items: the smallest validation run (pass_items = 32)
    shared = rng.normal(size=(sims, items, 1))
    differences = 0.7 * shared + 0.5 * rng.normal(size=(sims, items, conditions))
    test_rate, interval_rate = _null_rate(differences)
    assert 0.03 <= test_rate <= 0.07 and 0.03 <= interval_rate <= 0.08


def test_curve_test_cannot_reach_a_verdict_on_a_handful_of_items():
    """With 4 items every sign-flip p is ≥ 2/16: a consistent sign on 4 items is not evidence (a bootstrap
    interval would exclude 0 there); at 8 null items the test still rejects at most at the nominal rate."""
    rng = np.random.default_rng(5)
    tiny = [paired_mean_difference(0.1 + 0.01 * rng.normal(size=(4, 1)), seed=0) for _ in range(50)]
    assert all(t.p_value >= 2 / 16 for t in tiny) and all(t.low > 0 for t in tiny)
    test_rate, _ = _null_rate(rng.normal(size=(1000, 8, 2)))
    assert test_rate <= 0.06


def test_pruning_and_sparse_tables_run_the_calibrated_test():
    """The table code's estimate, interval and p are :func:`paired_mean_difference` of the per-item differences
    over the counted fractions (pruning) or all budgets (sparse), so the calibration above is theirs."""
    rng = np.random.default_rng(4)
    scores = rng.normal(size=(2, 4))
    frames = _pruning_frames(np.zeros((2, 4)), scores, 25, rng, noise=0.5)
    tests = pruning_tests([frames]).set_index(["comparator", "measure"])
    most = frames[frames["strategy"] == "most"].pivot(index="id", columns="fraction", values="loss")
    least = frames[frames["strategy"] == "least"].pivot(index="id", columns="fraction", values="loss")
    counted = [0.1, 0.2, 0.5]  # 8 heads: k = 0, 0, 1, 2, 2, 4 -> the distinct non-empty sets
    assert tests.loc[("least", "loss"), "fractions"] == "0.1;0.2;0.5"
    expected = paired_mean_difference((least[counted] - most[counted]).to_numpy(), seed=0)
    row = tests.loc[("least", "loss")]
    assert (row["estimate"], row["low"], row["high"], row["p_value"]) == pytest.approx(tuple(expected)[:4])
    sparse = _sparse_frames({"rank": 0.0}, 20, rng, noise=0.5)
    row = sparse_tests([sparse]).set_index("measure").loc["loss"]
    pivot = sparse.pivot_table(index="id", columns=["method", "budget"], values="loss")
    budgets = [0.5, 0.3, 0.2, 0.1]
    d = np.stack([pivot[("adaptive", b)] - pivot[("uniform", b)] for b in budgets], axis=1)
    assert row["budgets"] == "0.5;0.3;0.2;0.1"
    assert (row["estimate"], row["low"], row["high"]) == pytest.approx(tuple(paired_mean_difference(d, seed=0))[:3])


# --- sparse attention: the adaptive-vs-uniform test --------------------------------------------------------------


def _sparse_frames(effect_by_allocation: dict[str, float], n_items: int, rng, noise: float, model: str = "m"):
    budgets = (0.5, 0.3, 0.2, 0.1)
    base = rng.normal(2.0, 0.3, size=n_items)
    rows = [("dense", "", 1.0, base)]
    for b in budgets:
        rows.append(("uniform", "", b, base + (1 - b) + noise * rng.normal(size=n_items)))
        for allocation, effect in effect_by_allocation.items():
            rows.append(("adaptive", allocation, b, base + (1 - b) + effect + noise * rng.normal(size=n_items)))
    return pd.concat(
        [
            pd.DataFrame({"model": model, "base": "syn", "scores": "dp", "method": m, "allocation": a, "budget": b,
                          "realised_keep_fraction": b, "id": [f"i{j}" for j in range(n_items)],
                          "correct": pd.array(loss < 2.5, dtype="boolean"), "loss": loss})
            for m, a, b, loss in rows
        ],
        ignore_index=True,
    )


def test_sparse_test_detects_a_better_allocation():
    rng = np.random.default_rng(3)
    known = [_sparse_frames({"linear_signed": 0.3, "rank": -0.3, "softmax": 0.0}, 60, rng, noise=0.5)]
    tests, table = sparse_tests(known), sparse_table(known)
    by = tests[tests["measure"] == "loss"].set_index("allocation")
    assert by.loc["rank", "high"] < 0 < by.loc["linear_signed", "low"]
    assert by.loc["softmax", "low"] < 0 < by.loc["softmax", "high"]  # no effect built in: not resolved
    adaptive = table[table["method"] == "adaptive"]
    assert adaptive["vs_uniform_loss_p_holm"].notna().sum() == 3 * 4  # one family: every allocation × budget


# --- the statistics behind the verdicts ---------------------------------------------------------------------------


def test_holm_matches_the_step_down_definition():
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan, 0.5])
    adjusted = holm_adjust(p)
    # sorted: 0.005, 0.01, 0.03, 0.04, 0.5 (m = 5) -> 0.025, 0.04, 0.09, 0.09 (monotone), 0.5
    np.testing.assert_allclose(adjusted, [0.04, 0.09, 0.09, 0.025, np.nan, 0.5])
    assert np.isnan(holm_adjust(np.array([np.nan]))).all()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm_adjust(np.array([1.5]))


def test_paired_mean_difference_keeps_item_pairing_across_conditions():
    """A large item effect shared by all conditions cancels in the paired differences: the interval is as narrow
    as the within-item noise, and its centre is the mean over conditions then items."""
    rng = np.random.default_rng(0)
    d = np.stack([np.full(50, 0.1), np.full(50, 0.3)], axis=1) + 0.01 * rng.normal(size=(50, 2))
    d[0, 1] = np.nan  # an unmeasured condition is left out of that item's mean
    test = paired_mean_difference(d)
    per_item = np.nanmean(d, axis=1)
    assert test.estimate == pytest.approx(per_item.mean())
    assert test.low < test.estimate < test.high and test.high - test.low < 0.02
    assert test.p_value < 0.01 and test.n_items == 50


def test_above_random_p_is_the_prediction_p_of_each_row():
    from attnlab.stats import prediction_p_value

    rng = np.random.default_rng(1)
    controls, selected = rng.normal(size=(6, 5)), rng.normal(1.0, 1.0, size=6)
    table = perturbation_table(_perturbation_rows(selected, controls))
    rows = table[table["layer"] == 0].set_index("relation").sort_index()
    expected = [prediction_p_value(x, c) for x, c in zip(selected, controls)]
    np.testing.assert_allclose(rows["above_random_p"], expected, rtol=1e-12)
    np.testing.assert_array_equal(rows["above_random"], rows["target_log_ratio"] > rows["random_target_log_ratio_pred_high"])


def test_sign_flip_p_is_scipys_exact_permutation_test():
    from scipy import stats as sps

    from attnlab.stats import sign_flip_p_value

    assert sign_flip_p_value(np.array([1.0, 1.0, 1.0])) == pytest.approx(2 / 8)
    x = np.random.default_rng(2).normal(0.3, 1.0, size=10)
    expected = sps.permutation_test((x,), np.mean, permutation_type="samples", alternative="two-sided",
                                    n_resamples=np.inf).pvalue
    assert sign_flip_p_value(x) == pytest.approx(expected)
    many = np.random.default_rng(3).normal(0.5, 1.0, size=40)  # Monte Carlo beyond 16 items
    assert 0 < sign_flip_p_value(many) < 0.05

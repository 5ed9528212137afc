"""The validation stage in the real CI study run: outputs, and which jobs a config change reruns."""

from __future__ import annotations

import copy

import pytest

from attnlab.io import read_metadata, read_parquet
from workflow_helpers import planned_jobs, snakemake, write_config


def test_outputs_of_the_ci_study(ci_study):
    workdir, _, config = ci_study
    results = workdir / "results"
    models = config["validation"]["models"]
    for model in models:
        pruning = read_parquet(results / "validation" / model / "synthetic" / "pruning.parquet")
        assert set(pruning["strategy"]) == {"most", "least", "random"}
        assert sorted(pruning["seed"].dropna().unique()) == [1, 2, 3]
        assert pruning["loss"].notna().all()
        sparse = read_parquet(results / "validation" / model / "synthetic" / "sparse.parquet")
        assert set(sparse["method"]) == {"dense", "uniform", "adaptive"}
        meta = read_metadata(results / "validation" / model / "synthetic" / "sparse.parquet")
        assert meta["scores_file"].endswith(f"attribution/{model}/synthetic/dp.parquet")
        # heads selected on some items, validated on others: the attribution items are left out
        attributed = read_metadata(results / "attribution" / model / "synthetic" / "dp.parquet")["items"]
        assert len(attributed) == config["attribution"]["items"]
        assert meta["selection_items"] == attributed
        for kind, frame in (("pruning", pruning), ("sparse", sparse)):
            measured = set(frame["id"].astype(str))
            assert measured and not measured & set(attributed), kind
        assert set(meta["measured_items"]["loss_items"]) == set(sparse["id"].astype(str))
        for kind in ("pruning", "sparse"):
            assert (results / "figures" / "validation" / f"{model}_synthetic_{kind}.png").stat().st_size > 10_000
    table = read_parquet(results / "tables" / "pruning.parquet")
    assert set(table["model"]) == set(models)
    assert {"vs_most_mcnemar_p", "vs_most_loss_p", "ci_low", "ci_high"} <= set(table.columns)
    markdown = (results / "tables" / "pruning.md").read_text()
    assert "most important vs least relevant heads (smallest |score|)" in markdown
    assert "mean paired difference over the curve: sign-flip test over items, paired bootstrap interval" in markdown
    tests = read_parquet(results / "tables" / "pruning_tests.parquet")
    assert set(tests["comparator"]) == {"least", "random"} and set(tests["measure"]) == {"loss", "pass_at_1"}
    assert ((tests["low"] <= tests["estimate"]) & (tests["estimate"] <= tests["high"])).all()
    sparse_table = read_parquet(results / "tables" / "sparse_attention.parquet")
    assert set(sparse_table["method"]) == {"dense", "uniform", "adaptive"}
    assert set(sparse_table.loc[sparse_table["method"] == "adaptive", "allocation"]) == {
        "linear_signed", "magnitude", "rank", "softmax"
    }
    sparse_tests = read_parquet(results / "tables" / "sparse_tests.parquet")
    assert len(sparse_tests) == 4 * 2 * len(models)  # allocations × measures × models


def _rules_after(ci_study, tmp_path, change) -> set[str]:
    """Rules a dry run plans after ``change`` that it does not plan for the unchanged config."""
    workdir, configfile, config = ci_study
    changed = copy.deepcopy(config)
    change(changed)
    changed_file = write_config(tmp_path / "changed.yaml", changed)
    before = {rule for rule, _ in planned_jobs(snakemake(workdir, configfile, "-n"))}
    after = {rule for rule, _ in planned_jobs(snakemake(workdir, changed_file, "-n"))}
    return after - before


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("pruning", "fractions", [0.0, 1.0], {"validation_pruning", "validation_tables", "validation_figures", "summary"}),
        ("sparse", "budgets", [0.3], {"validation_sparse", "validation_tables", "validation_figures", "summary"}),
    ],
)
def test_a_validation_setting_reruns_only_its_experiment(ci_study, tmp_path, section, key, value, expected):
    def change(config):
        config["validation"].setdefault(section, {})[key] = value

    assert _rules_after(ci_study, tmp_path, change) == expected


def test_headig_settings_rerun_attribution_and_validation(ci_study, tmp_path):
    def change(config):
        config["attribution"]["ig_steps"] = config["attribution"].get("ig_steps", 16) + 1

    rules = _rules_after(ci_study, tmp_path, change)
    assert {"validation_pruning", "validation_sparse", "validation_tables", "validation_figures"} <= rules
    assert any(rule.startswith("attribution") for rule in rules)
    assert not rules & {"pretrain", "evaluate", "tokenizer"}

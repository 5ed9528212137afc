"""The perturbation stage in the CI study: outputs, tables, and what a config change reruns."""

from __future__ import annotations

import copy

from attnlab.io import read_metadata, read_parquet
from workflow_helpers import planned_jobs, snakemake, write_config


def test_perturbation_outputs_of_the_ci_study(ci_study):
    workdir, _, config = ci_study
    models = config["perturbation"]["models"]
    corpus = read_parquet(workdir / "results/corpus/facts.parquet")
    assert list(corpus.columns) == ["text"] and len(corpus) > 500
    for model in models:
        rows = read_parquet(workdir / f"results/perturbation/{model}.parquet")
        assert set(rows.relation) == set(config["perturbation"]["relation_names"])
        assert rows.seed.max() == 4  # five random-control seeds
        meta = read_metadata(workdir / f"results/perturbation/{model}.parquet")
        assert meta["model"] == model
        # channels selected on other phrasings of the same facts than the ones measured
        assert meta["measured_on"]["templates"] == config["perturbation"]["templates"]
        assert meta["selected_on"]["templates"] == config["perturbation"]["selection_templates"]
        assert meta["measured_on"]["facts"] == meta["selected_on"]["facts"]
        jac = read_parquet(workdir / f"results/jacobian/{model}.parquet")
        assert list(jac.layer) == [0, 1]
    sites = read_parquet(workdir / "results/perturbation/mamba2.parquet").site
    assert set(sites) == {"residual", "delta"}
    assert set(read_parquet(workdir / "results/perturbation/gpt2.parquet").site) == {"residual", "mlp"}
    table = read_parquet(workdir / "results/tables/perturbation.parquet")
    assert {"random_target_log_ratio_low", "random_target_log_ratio_high", "above_random"} <= set(table.columns)
    markdown = (workdir / "results/tables/perturbation.md").read_text()
    assert "mamba2 (SSM)" in markdown
    # the headline: residual stream, the same fraction in both models, one paired test per method and mode
    comparison = read_parquet(workdir / "results/tables/perturbation_comparison.parquet")
    assert set(comparison.site) == {"residual"} and (comparison.ssm_model == "mamba2").all()
    assert (comparison.transformer_model == "gpt2").all() and len(comparison) == 2 * len(config["perturbation"]["modes"])
    assert (comparison.ssm_fraction == comparison.transformer_fraction).all()
    assert markdown.index("Like for like (residual stream") < markdown.index("secondary: ")
    summary = read_parquet(workdir / "results/tables/perturbation_summary.parquet")
    assert set(summary.loc[summary.site == "residual", "comparison"]) == {"like_for_like"}
    assert set(summary.loc[summary.site != "residual", "comparison"]) == {"secondary"}
    assert (summary.fraction == summary.n_channels / summary.site_width).all()
    jacobian = read_parquet(workdir / "results/tables/jacobian.parquet")
    assert (jacobian.relative_sensitivity_mean > 0).all()
    assert (jacobian.relative_sensitivity_low <= jacobian.relative_sensitivity_high).all()
    for name in ("relations", "layers", "jacobian"):
        assert (workdir / f"results/figures/perturbation/{name}.png").stat().st_size > 10_000


def test_changing_modes_reruns_only_perturbation_jobs(ci_study, tmp_path):
    workdir, _, config = ci_study
    changed = copy.deepcopy(config)
    changed["perturbation"]["modes"] = ["zero"]
    configfile = write_config(tmp_path / "changed.yaml", changed)
    jobs = planned_jobs(snakemake(workdir, configfile, "-n"))
    rules = {rule for rule, _ in jobs}
    assert ("perturbation", "model=gpt2") in jobs and ("perturbation", "model=mamba2") in jobs
    assert {"perturbation_tables", "perturbation_figures"} <= rules
    assert not rules & {"jacobian", "pretrain", "corpus_facts", "evaluate"}

"""The whole Snakemake DAG on the tiny CI study, for real, in a temporary folder.

One full run (module-scoped fixture), then checks on its outputs, on what a
re-run would do after config edits (dry runs), and on config rejection.
"""

from __future__ import annotations

import copy

import subprocess
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from attnlab.config import validate_config
from attnlab.study.schema import load_yaml
from attnlab.study.selections import model_variants

from workflow_helpers import REPO, SNAKEMAKE, planned_jobs, snakemake, write_config

pytestmark = pytest.mark.workflow


def test_outputs_exist_with_schemas(ci_study: tuple[Path, Path, dict]) -> None:
    workdir, _, config = ci_study
    results = workdir / "results"
    variants = ["clean", *config["noise"]["types"]]
    for variant in variants:
        data = pd.read_parquet(results / "data" / "synthetic" / f"{variant}.parquet")
        assert len(data) == config["max_samples"]
        assert (data["noise_type"] == variant).all()
    for model in config["models"]:
        assert (results / "models" / model / "config.json").is_file()
        assert (results / "training" / model / "loss.png").stat().st_size > 0
        for variant in variants:
            rows = pd.read_parquet(results / "eval" / model / "synthetic" / f"{variant}.parquet")
            assert list(rows.columns) == [
                "model", "base", "variant", "id", "prompt", "generation", "prediction",
                "prediction_flexible", "gold", "correct_strict", "correct_flexible",
                "n_generated_tokens", "n_prompt_tokens",
            ]
            assert len(rows) == config["max_samples"]
            assert (rows["model"] == model).all() and (rows["variant"] == variant).all()
            assert (rows["n_generated_tokens"] <= config["evaluation"]["max_new_tokens"]).all()
            # one-shot prompts: an exemplar, then the question
            assert rows["prompt"].str.count("Question:").eq(2).all()
    for name in ("accuracy.png", "robustness.png"):
        assert (results / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_accuracy_table_matches_per_item_results(ci_study: tuple[Path, Path, dict]) -> None:
    workdir, _, config = ci_study
    results = workdir / "results"
    table = pd.read_parquet(results / "tables" / "accuracy.parquet")
    strict = table[table["metric"] == "strict"]
    # every configured model and its SFT variants (model+sft-recipe) are evaluated
    models = model_variants(validate_config(config, base_dir=workdir), list(config["models"]))
    assert len(strict) == len(models) * (1 + len(config["noise"]["types"]))
    for row in strict.itertuples():
        items = pd.read_parquet(results / "eval" / row.model / row.base / f"{row.variant}.parquet")
        assert row.n == len(items)
        assert row.correct == int(items["correct_strict"].sum())
        assert row.ci_low <= row.pass_at_1 <= row.ci_high
    assert pq.read_schema(results / "tables" / "accuracy.parquet").metadata is not None
    assert (results / "tables" / "accuracy.csv").is_file() and (results / "tables" / "accuracy.md").is_file()


def test_complete_study_has_nothing_to_do(ci_study: tuple[Path, Path, dict]) -> None:
    workdir, configfile, _ = ci_study
    proc = snakemake(workdir, configfile, "-n")
    assert planned_jobs(proc) == set(), proc.stdout


def test_robustness_difference_matches_the_per_item_drops(ci_study: tuple[Path, Path, dict]) -> None:
    """The DiffLlama − Llama difference of drops, per noise type, from the study's own per-item evaluations."""
    workdir, _, config = ci_study
    results = workdir / "results"
    table = pd.read_parquet(results / "tables" / "robustness_difference.parquet")
    strict = table[(table["metric"] == "strict") & (table["model_a"] == "diffllama")]
    assert list(strict["variant"]) == sorted(config["noise"]["types"]) and (strict["model_b"] == "llama").all()
    robustness = pd.read_parquet(results / "tables" / "robustness.parquet").set_index(["model", "variant", "metric"])
    for row in strict.itertuples():
        drop_a = robustness.loc[("diffllama", row.variant, "strict"), "drop"]
        drop_b = robustness.loc[("llama", row.variant, "strict"), "drop"]
        assert row.diff == pytest.approx(drop_a - drop_b)  # same items on both sides
        assert row.diff_ci_low <= row.diff <= row.diff_ci_high and row.p_holm >= row.p_value
    markdown = (results / "tables" / "robustness_difference.md").read_text()
    assert "Holm-adjusted" in markdown and "diffllama" in markdown


#: rules that aggregate over models (no wildcards): they rerun whenever any model's results change
AGGREGATES = {
    "tables", "figures", "sft_tables", "attention_tables", "attention_figures", "attribution_report",
    "needle_table", "needle_figure", "validation_tables", "validation_figures", "perturbation_tables",
    "perturbation_figures", "robustness_difference", "summary",
}


def assert_only_model_jobs(jobs: set[tuple[str, str]], model: str, variants: list[str]) -> None:
    """Every planned job is one of ``model``'s (by its wildcards) or an aggregate; its pretraining and
    evaluations are among them."""
    per_model = {(rule, wc) for rule, wc in jobs if wc}
    strays = {(rule, wc) for rule, wc in per_model if f"model={model}," not in f"{wc}," and f"model={model}" != wc}
    assert not strays, f"jobs of other models or of the data stage would rerun: {sorted(strays)}"
    assert {rule for rule, wc in jobs if not wc} <= AGGREGATES
    assert ("pretrain", f"scratch_model={model}") in jobs
    assert {("evaluate", f"model={model}, base=synthetic, variant={v}") for v in variants} <= jobs


def test_editing_one_model_reruns_only_that_model(ci_study: tuple[Path, Path, dict]) -> None:
    workdir, _, config = ci_study
    edited = copy.deepcopy(config)
    edited["models"]["diffllama"]["intermediate_size"] += 16
    proc = snakemake(workdir, write_config(workdir / "edited.yaml", edited), "-n")
    jobs = planned_jobs(proc)
    assert_only_model_jobs(jobs, "diffllama", ["clean", *config["noise"]["types"]])
    # the analysis stages follow the model: attention, attribution, needle, validation
    assert {rule for rule, _ in jobs} >= {"attention_measure", "attribution", "needle_probe", "validation_pruning"}


def test_adding_a_model_runs_only_its_jobs_and_aggregates(ci_study: tuple[Path, Path, dict]) -> None:
    workdir, _, config = ci_study
    extended = copy.deepcopy(config)
    extended["models"]["llama-wide"] = {**config["models"]["llama"], "hidden_size": 48, "num_heads": 2}
    proc = snakemake(workdir, write_config(workdir / "extended.yaml", extended), "-n")
    assert_only_model_jobs(planned_jobs(proc), "llama-wide", ["clean", *config["noise"]["types"]])


def test_replicates_train_with_their_own_seed_and_rerun_nothing_else(ci_study: tuple[Path, Path, dict]) -> None:
    workdir, _, config = ci_study
    extended = copy.deepcopy(config)
    extended["pretrain"]["replicates"] = {"models": ["llama"], "seeds": [99], "evaluate": False}
    configfile = write_config(workdir / "replicates.yaml", extended)
    proc = snakemake(workdir, configfile, "-n", "-p", "results/models/llama-seed99")
    assert planned_jobs(proc) == {("pretrain", "scratch_model=llama-seed99")}
    assert "--seed 99 " in proc.stdout
    # evaluate: false = the needle stage alone takes the replicate in
    assert planned_jobs(snakemake(workdir, configfile, "-n")) == {
        ("pretrain", "scratch_model=llama-seed99"), ("needle_probe", "model=llama-seed99"),
        ("needle_table", ""), ("needle_figure", ""), ("summary", ""),
    }


def test_evaluated_replicates_are_a_study_dimension(ci_study: tuple[Path, Path, dict]) -> None:
    """With replicates evaluated (the default), a new training seed of llama is evaluated on every variant,
    fine-tuned (one SFT per seed), measured by the attention and needle stages and pooled in the seed tables;
    attribution and validation stay on the base seed, and no other model's job reruns."""
    workdir, _, config = ci_study
    extended = copy.deepcopy(config)
    extended["pretrain"]["replicates"] = {"models": ["llama"], "seeds": [99]}
    proc = snakemake(workdir, write_config(workdir / "replicates_evaluated.yaml", extended), "-n", "-p")
    jobs = planned_jobs(proc)
    variants = ["clean", *config["noise"]["types"]]
    replicate, tuned = "llama-seed99", "llama-seed99+sft-noisy"
    expected_models = {
        ("pretrain", f"scratch_model={replicate}"), ("sft", f"sft_base={replicate}, recipe=noisy"),
        ("needle_probe", f"model={replicate}"),
        ("attention_measure", f"model={replicate}, base=synthetic"), ("attention_measure", f"model={tuned}, base=synthetic"),
        *{("evaluate", f"model={m}, base=synthetic, variant={v}") for m in (replicate, tuned) for v in variants},
    }
    assert expected_models <= jobs
    assert {"seed_tables", "tables", "sft_tables", "needle_table", "attention_tables"} <= {rule for rule, _ in jobs}
    per_model = {(rule, wc) for rule, wc in jobs if wc}
    assert per_model == expected_models  # nothing else per model: no attribution/validation of the replicate
    assert '"llama":[["llama",7],["llama-seed99",99]]' in proc.stdout  # the seed group of the pooled tables
    assert '"llama+sft-noisy":[["llama+sft-noisy",7],["llama-seed99+sft-noisy",99]]' in proc.stdout


def test_summary_quotes_the_accuracy_table(ci_study: tuple[Path, Path, dict]) -> None:
    """results/summary.md is written last; every pass@1 it quotes for a model equals the accuracy table's."""
    workdir, _, config = ci_study
    results = workdir / "results"
    page = (results / "summary.md").read_text(encoding="utf-8")
    assert page.index("## Run") < page.index("## Accuracy of every model") < page.index("## Verdicts")
    assert "CPU time:" in page and "(benchmark files)" in page
    accuracy = pd.read_parquet(results / "tables" / "accuracy.parquet")
    strict = accuracy[accuracy["metric"] == "strict"]
    section = page[page.index("## Accuracy of every model"):page.index("## Verdicts")]
    header = next(line for line in section.splitlines() if line.startswith("| model |"))
    variants = [cell.strip() for cell in header.strip("|").split("|")][1:]
    for model in ("llama", "diffllama"):
        line = next(line for line in section.splitlines() if line.startswith(f"| {model} |"))
        cells = [cell.strip() for cell in line.strip("|").split("|")][1:]
        rows = strict[strict["model"] == model].set_index("variant")
        assert sorted(variants) == sorted(rows.index)
        for variant, cell in zip(variants, cells):
            r = rows.loc[variant]
            assert cell == f"{r.pass_at_1:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]", (model, variant)
    # the difference-of-drops rows are stated with their row; the CI study has no pooled seeds
    assert "row of `tables/robustness_difference.parquet`: model_a = diffllama, model_b = llama" in page
    assert "- `tables/seeds_accuracy.parquet`: not part of this run." in page


def test_invalid_config_fails_before_any_job(tmp_path: Path) -> None:
    config = load_yaml(REPO / "configs" / "ci.yaml")
    config["models"]["llama"]["architecture"] = "transformerxl"
    proc = snakemake(tmp_path, write_config(tmp_path / "bad.yaml", config), check=False)
    assert proc.returncode != 0
    assert "models.llama.architecture" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_lint_is_clean() -> None:
    proc = subprocess.run(
        [*SNAKEMAKE, "--lint", "--snakefile", str(REPO / "Snakefile"), "--directory", str(REPO)],
        capture_output=True, text=True, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr


def test_paper_config_dry_runs(tmp_path: Path) -> None:
    """configs/paper.yaml (hub checkpoints, hub GSM8K) plans its jobs here without network."""
    proc = snakemake(tmp_path, REPO / "configs" / "paper.yaml", "-n")
    jobs = planned_jobs(proc)
    assert ("evaluate", "model=diffllama-375m, base=gsm8k, variant=sd") in jobs
    assert not any(rule == "pretrain" for rule, _ in jobs)


def test_report_is_written(ci_study: tuple[Path, Path, dict]) -> None:
    workdir, configfile, _ = ci_study
    snakemake(workdir, configfile, "--report", "results/report.html")
    html = (workdir / "results" / "report.html").read_text(errors="replace")
    assert "accuracy.png" in html and "Wilson" in html  # a figure and its caption

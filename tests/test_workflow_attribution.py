"""The attribution stage inside the real CI study run: score files, heatmaps, correlations; minimal reruns."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from attnlab.attribution.settings import attribution_models
from attnlab.config import validate_config
from attnlab.io import read_metadata
from workflow_helpers import REPO, planned_jobs, snakemake, write_config

pytestmark = pytest.mark.workflow

SCORE_COLUMNS = [
    "model", "base", "method", "layer", "head", "score", "score_std", "n_items",
    "completeness_delta_mean", "relative_delta_mean",
]


def test_score_files_heatmaps_and_correlations(ci_study: tuple[Path, Path, dict]) -> None:
    workdir, _, config = ci_study
    results = workdir / "results"
    study = validate_config(config, base_dir=REPO)
    models = attribution_models(study)
    assert {"llama", "diffllama", "mdlm"} <= set(models)  # default = every gated scratch model (+ SFT variants)
    section = study["attribution"]
    for model in models:
        spec = study["models"].get(model, {})
        for method in ("dp", "stp", "michel"):
            path = results / "attribution" / model / "synthetic" / f"{method}.parquet"
            scores = pd.read_parquet(path)
            assert list(scores.columns) == SCORE_COLUMNS
            units = spec.get("num_heads", 2) // (2 if spec.get("architecture") == "diffllama" else 1)
            assert len(scores) == spec.get("num_layers", 2) * units
            assert (scores["n_items"] == section["items"]).all() and (scores["method"] == method).all()
            assert np.isfinite(scores["score"]).all()
            if method == "michel":
                assert (scores["score"] >= 0).all() and scores["completeness_delta_mean"].isna().all()
            else:
                assert np.isfinite(scores["completeness_delta_mean"]).all()
            meta = read_metadata(path)
            assert meta["spec"]["method"] == method and meta["variants"] == ["clean"]
            items = pd.read_parquet(results / "attribution" / model / "synthetic" / f"{method}_items.parquet")
            assert items["item_id"].nunique() == section["items"]
            assert (results / "figures" / "attribution" / f"{model}_synthetic_{method}.png").stat().st_size > 0
    correlations = pd.read_parquet(results / "tables" / "attribution_correlations.parquet")
    assert set(correlations["model"]) == set(models)
    assert set(zip(correlations["method_a"], correlations["method_b"])) == {("dp", "stp"), ("dp", "michel"), ("stp", "michel")}


#: rules upstream of attribution: a change of attribution settings must never rerun them
UPSTREAM_RULES = {"data_train", "data_clean", "data_noise", "tokenizer", "pretrain", "sft_data", "sft", "evaluate"}


def _dry_run(workdir: Path, config: dict, name: str) -> set[tuple[str, str]]:
    return planned_jobs(snakemake(workdir, write_config(workdir / name, config), "-n"))


def _attribution_jobs(jobs: set[tuple[str, str]]) -> set[tuple[str, str]]:
    assert not {rule for rule, _ in jobs} & UPSTREAM_RULES, jobs
    # downstream stages (e.g. validation, which reads the score files) may rerun too; only ours are checked here
    return {(rule, wildcards) for rule, wildcards in jobs if rule.startswith("attribution")}


def test_attribution_settings_rerun_only_attribution(ci_study: tuple[Path, Path, dict]) -> None:
    workdir, _, config = ci_study
    study = validate_config(config, base_dir=REPO)
    edited = copy.deepcopy(config)
    edited["attribution"]["path_samples"] = 3
    jobs = _attribution_jobs(_dry_run(workdir, edited, "attribution_paths.yaml"))
    expected = {("attribution", f"model={m}, base=synthetic") for m in attribution_models(study)}
    assert jobs == expected | {("attribution_report", "")}


def test_mask_probs_rerun_only_the_masked_diffusion_model(ci_study: tuple[Path, Path, dict]) -> None:
    workdir, _, config = ci_study
    edited = copy.deepcopy(config)
    edited["attribution"]["objective"]["mask_probs"] = [0.5]
    jobs = _attribution_jobs(_dry_run(workdir, edited, "attribution_masks.yaml"))
    assert jobs == {("attribution", "model=mdlm, base=synthetic"), ("attribution_report", "")}

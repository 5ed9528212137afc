"""The masked diffusion LM in the CI study: trained by the pretrain rule, evaluated by iterative unmasking."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from attnlab.evaluate.evaluate import EVAL_COLUMNS
from attnlab.io import read_metadata, read_parquet
from attnlab.models.pretrain import read_training_info

from workflow_helpers import planned_jobs, snakemake, write_config


def test_mdlm_is_trained_and_evaluated_with_its_diffusion_settings(ci_study: tuple[Path, Path, dict]) -> None:
    workdir, _, config = ci_study
    info = read_training_info(workdir / "results/models/mdlm")
    assert info["model_class"] == "MDLMForMaskedDiffusion" and info["architecture"] == "mdlm"
    llama = read_training_info(workdir / "results/models/llama")
    assert info["num_parameters"] == llama["num_parameters"]  # matched budget: same size fields, same count
    # adapted from the trained llama (models.mdlm.init): its steps, the shift operation, the answer window
    assert info["init_from"] == "results/models/llama" and info["train"]["steps"] == config["models"]["mdlm"]["init"]["steps"]
    assert info["train"]["answer_window"] == config["models"]["mdlm"]["diffusion"]["answer_length"]
    assert json.loads((workdir / "results/models/mdlm/config.json").read_text())["shift_logits"] is True
    curve = read_parquet(workdir / "results/training/mdlm/loss.parquet")
    assert curve.loss.notna().all() and (curve.split == "validation").sum() >= 2
    for variant in ["clean", *config["noise"]["types"]]:
        path = workdir / f"results/eval/mdlm/synthetic/{variant}.parquet"
        table = read_parquet(path)
        assert list(table.columns) == list(EVAL_COLUMNS)
        assert len(table) == config["max_samples"] and (table.model == "mdlm").all()
        assert (table.n_generated_tokens <= config["models"]["mdlm"]["diffusion"]["answer_length"]).all()
        diffusion = read_metadata(path)["eval_spec"]["diffusion"]
        assert {k: diffusion[k] for k in ("answer_length", "block_length", "steps")} == config["models"]["mdlm"]["diffusion"]
        assert diffusion["remasking"] == "low_confidence"
    assert read_metadata(workdir / "results/eval/llama/synthetic/clean.parquet")["eval_spec"]["diffusion"] is None


def test_changing_generation_settings_reevaluates_only_mdlm(ci_study: tuple[Path, Path, dict]) -> None:
    workdir, _, config = ci_study
    edited = yaml.safe_load(yaml.safe_dump(config))
    edited["models"]["mdlm"]["diffusion"]["steps"] = 24  # retraining is not needed, nor other models' evaluations
    jobs = planned_jobs(snakemake(workdir, write_config(workdir / "mdlm-steps.yaml", edited), "-n"))
    variants = ["clean", *config["noise"]["types"]]
    assert {job for job in jobs if job[0] in ("pretrain", "evaluate")} == {
        ("evaluate", f"model=mdlm, base=synthetic, variant={v}") for v in variants
    }
    assert ("tables", "") in jobs

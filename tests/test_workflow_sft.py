"""The SFT stage inside the real CI study run: variants are evaluated like any model; reruns are minimal."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from workflow_helpers import planned_jobs, snakemake, write_config

pytestmark = pytest.mark.workflow

SFT = "llama+sft-noisy"
UPSTREAM_RULES = {"data_train", "data_clean", "data_noise", "tokenizer", "pretrain"}


def test_sft_variant_is_trained_and_evaluated_like_any_model(ci_study: tuple[Path, Path, dict]) -> None:
    workdir, _, config = ci_study
    results = workdir / "results"
    recipe = config["sft"]["recipes"]["noisy"]
    train = pd.read_parquet(results / "sft" / "noisy" / "train.parquet")
    assert len(train) == recipe["samples"] and (train["split"] == "train").all()
    assert train["noise_type"].value_counts().to_dict() == {"clean": 20, "inf": 20}
    test_ids = set(pd.read_parquet(results / "data" / "synthetic" / "clean.parquet")["id"])
    assert not test_ids & set(train["id"])  # never the test items
    assert (results / "models" / SFT / "config.json").is_file()
    assert not (results / "models" / f".{SFT}.ckpt").exists()
    curve = pd.read_parquet(results / "training" / SFT / "loss.parquet")
    assert set(curve["split"]) == {"train", "validation"} and curve["step"].max() >= 1
    assert (results / "training" / SFT / "loss.png").stat().st_size > 0

    variants = ["clean", *config["noise"]["types"]]
    accuracy = pd.read_parquet(results / "tables" / "accuracy.parquet")
    assert set(accuracy.loc[accuracy.model == SFT, "variant"]) == set(variants)
    for variant in variants:
        rows = pd.read_parquet(results / "eval" / SFT / "synthetic" / f"{variant}.parquet")
        assert (rows["model"] == SFT).all() and len(rows) == config["max_samples"]

    gain = pd.read_parquet(results / "tables" / "sft.parquet")
    assert set(gain["variant"]) == set(variants) and set(gain["model"]) == {SFT}
    strict = gain[gain.metric == "strict"].set_index("variant")
    for variant in variants:
        base = accuracy[(accuracy.model == "llama") & (accuracy.variant == variant) & (accuracy.metric == "strict")]
        assert strict.loc[variant, "pass_at_1_base"] == pytest.approx(base["pass_at_1"].iloc[0])
        assert strict.loc[variant, "gain_ci_low"] <= strict.loc[variant, "gain"] <= strict.loc[variant, "gain_ci_high"]
    assert (results / "figures" / "sft.png").read_bytes()[:4] == b"\x89PNG"


def _jobs_after(ci_study: tuple[Path, Path, dict], edit) -> set[tuple[str, str]]:
    workdir, _, config = ci_study
    edited = yaml.safe_load(yaml.safe_dump(config))
    edit(edited)
    return planned_jobs(snakemake(workdir, write_config(workdir / "sft-edited.yaml", edited), "-n"))


def _check_only_sft_downstream(jobs: set[tuple[str, str]], config: dict) -> None:
    variants = ["clean", *config["noise"]["types"]]
    expected = {("sft", "sft_base=llama, recipe=noisy"), ("sft_tables", ""), ("tables", ""), ("figures", "")}
    expected |= {("evaluate", f"model={SFT}, base=synthetic, variant={v}") for v in variants}
    assert expected <= jobs, sorted(expected - jobs)
    for rule, wildcards in jobs - expected:  # other stages may analyse the SFT model too: only it, or aggregates
        assert rule not in UPSTREAM_RULES and rule != "evaluate", (rule, wildcards)
        values = dict(part.split("=", 1) for part in wildcards.split(", ") if "=" in part)
        assert {v for k, v in values.items() if "model" in k} <= {SFT}, (rule, wildcards)


def test_changing_the_recipe_reruns_only_sft_and_its_downstream(ci_study: tuple[Path, Path, dict]) -> None:
    jobs = _jobs_after(ci_study, lambda c: c["sft"]["recipes"]["noisy"].update(learning_rate=0.001))
    assert ("sft_data", "recipe=noisy") not in jobs  # the training set does not depend on the learning rate
    _check_only_sft_downstream(jobs, ci_study[2])


def test_changing_the_noise_mix_rebuilds_the_training_set(ci_study: tuple[Path, Path, dict]) -> None:
    jobs = _jobs_after(ci_study, lambda c: c["sft"]["recipes"]["noisy"].update(noise_mix={"clean": 0.5, "sd": 0.5}))
    assert ("sft_data", "recipe=noisy") in jobs
    _check_only_sft_downstream(jobs - {("sft_data", "recipe=noisy")}, ci_study[2])


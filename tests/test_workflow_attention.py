"""The attention stage inside the real CI Snakemake run: outputs, and what a config change reruns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from attnlab.attention import TOKEN_CLASSES
from attnlab.attention.settings import attention_models
from attnlab.config import validate_config

from workflow_helpers import REPO, planned_jobs, snakemake, write_config

pytestmark = pytest.mark.workflow


def test_attention_outputs(ci_study: tuple[Path, Path, dict]) -> None:
    workdir, _, config = ci_study
    results = workdir / "results"
    study = validate_config(config, base_dir=workdir)
    models = attention_models(study)
    assert {"llama", "diffllama"} <= set(models)
    variants = ["clean", *config["noise"]["types"]]
    for model in models:
        for variant in variants:
            rows = pd.read_parquet(results / "attention" / model / "synthetic" / f"{variant}.parquet")
            assert rows["item"].nunique() == min(config["attention"]["items"], config["max_samples"])
            assert np.allclose(rows[list(TOKEN_CLASSES)].sum(axis=1), rows["total_mass"])
            if variant == "clean":
                assert (rows["ni"] == 0).all()
            else:
                assert (rows["n_ni"] > 0).all()
        for kind in ("ni_heatmap", "token_maps"):
            assert (results / "figures" / "attention" / f"{model}_{kind}.png").read_bytes()[:4] == b"\x89PNG"
    diff = pd.read_parquet(results / "attention" / "diffllama" / "synthetic" / "inf.parquet")
    assert set(diff["map_kind"]) == {"differential", "raw_a", "raw_b"}
    assert set(diff["query_scope"]) == {"answer_token", "last_prompt_token", "generated"}
    table = pd.read_parquet(results / "tables" / "attention_ratios.parquet")
    assert set(table["model"]) == set(models)
    assert {"answer_token", "last_prompt_token"} <= set(table.loc[table["model"] == "llama", "query_scope"])
    assert (diff.loc[diff["query_scope"] == "answer_token", "n_queries"] == 1).all()
    assert (results / "tables" / "attention_ratios.md").is_file()


def test_changing_attention_items_reruns_only_attention(ci_study: tuple[Path, Path, dict]) -> None:
    workdir, _, config = ci_study
    edited = yaml.safe_load(yaml.safe_dump(config))
    edited["attention"]["items"] = 3
    jobs = planned_jobs(snakemake(workdir, write_config(workdir / "attention_items.yaml", edited), "-n"))
    models = attention_models(validate_config(config, base_dir=workdir))
    expected = {("attention_measure", f"model={m}, base=synthetic") for m in models}
    expected |= {("attention_tables", ""), ("attention_figures", ""), ("summary", "")}
    assert jobs == expected


def test_mamba_in_attention_models_is_rejected(ci_study: tuple[Path, Path, dict]) -> None:
    workdir, _, config = ci_study
    edited = yaml.safe_load(yaml.safe_dump(config))
    edited["models"]["ssm"] = {"source": "scratch", "architecture": "mamba", "hidden_size": 32, "num_layers": 2,
                               "state_size": 8}
    edited["attention"]["models"] = ["llama", "ssm"]
    proc = snakemake(workdir, write_config(workdir / "attention_mamba.yaml", edited), "-n", check=False)
    assert proc.returncode != 0
    assert "'attention.models': 'ssm' is a mamba model" in proc.stdout + proc.stderr
    assert REPO.is_dir()

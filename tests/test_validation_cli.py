"""``attnlab validation`` end to end on saved tiny models (llama and the masked diffusion LM), and the job specs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM

from attnlab.cli import main
from attnlab.config import validate_config
from attnlab.study.schema import load_yaml
from attnlab.study.selections import model_variants
from attnlab.evaluate.evaluate import normalize_eval_spec
from attnlab.evaluate.tiny import build_tiny_model, build_tiny_tokenizer
from attnlab.io import read_metadata, read_parquet, write_parquet
from attnlab.models.registry import build_scratch_config
from attnlab.paths import REPO_ROOT
from attnlab.validation.settings import validation_errors, validation_job_spec, validation_models

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [f"syn-{i}" for i in range(n)],
            "question": [f"Ava has {i + 2} boxes of 3 pens. How many pens does Ava have?" for i in range(n)],
            "answer": [f"Ava has {i + 2}*3={3 * (i + 2)} pens.\n#### {3 * (i + 2)}" for i in range(n)],
            "answer_number": [3.0 * (i + 2) for i in range(n)],
        }
    )


def _save_model(architecture: str, folder):
    tokenizer = build_tiny_tokenizer()
    if architecture == "mdlm":
        size = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, "max_position_embeddings": 256}
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(build_scratch_config("mdlm", size, tokenizer))
    else:
        model = build_tiny_model(architecture, tokenizer, hidden_size=32, num_heads=2, intermediate_size=64)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model.config.num_hidden_layers, model.config.num_attention_heads // (2 if architecture == "diffllama" else 1)


def _spec(kind: str, diffusion: dict | None = None) -> str:
    spec = {
        "eval": {"num_fewshot": 0, "fewshot_seed": 1, "batch_size": 4, "max_new_tokens": 8,
                 **({"diffusion": diffusion} if diffusion else {})},
        "objective": {"target": "solution", "normalization": "mean_masked", "mask_probs": [0.5], "mask_samples_per_prob": 1},
        "objective_seed": 3, "pass_items": 2, "loss_items": 3,
    }
    if kind == "pruning":
        spec.update(fractions=[0.0, 0.5], scope="global", random_seeds=[1, 2, 3], least_by="magnitude")
    else:
        spec.update(budgets=[0.5], min_ratio=0.1, scope="global", allocations=["linear_signed", "rank"], temperature=1.0)
    return json.dumps(spec)


@pytest.mark.parametrize("architecture", ["llama", "mdlm"])
def test_pruning_sparse_tables_figures(architecture, tmp_path):
    folder = tmp_path / "model"
    layers, units = _save_model(architecture, folder)
    write_parquet(_data(4), tmp_path / "clean.parquet")
    grid = np.arange(layers * units, dtype=float).reshape(layers, units)
    scores = pd.DataFrame({"model": "m", "base": "syn", "method": "dp", "layer": np.repeat(np.arange(layers), units),
                           "head": np.tile(np.arange(units), layers), "score": grid.ravel()})
    write_parquet(scores, tmp_path / "dp.parquet", metadata={"items": ["syn-1"]})
    diffusion = {"steps": 4, "block_length": 4, "answer_length": 8} if architecture == "mdlm" else None
    common = ["--model", str(folder), "--data", str(tmp_path / "clean.parquet"), "--scores", str(tmp_path / "dp.parquet"),
              "--model-name", architecture, "--base", "syn", "--device", "cpu", "--threads", "1"]
    for kind in ("pruning", "sparse"):
        out = tmp_path / f"{kind}.parquet"
        assert main(["validation", kind, *common, "--spec", _spec(kind, diffusion), "--out", str(out)]) == 0
    pruning, sparse = read_parquet(tmp_path / "pruning.parquet"), read_parquet(tmp_path / "sparse.parquet")
    assert len(pruning) == 5 * 2 * 3 and len(sparse) == 4 * 3  # conditions × items (max of pass 2, loss 3)
    # the item the scores were computed on is left out: the first three others are measured
    assert set(pruning["id"]) == set(sparse["id"]) == {"syn-0", "syn-2", "syn-3"}
    assert read_metadata(tmp_path / "pruning.parquet")["measured_items"] == {
        "pass_items": ["syn-0", "syn-2"], "loss_items": ["syn-0", "syn-2", "syn-3"]}
    assert set(pruning["least_by"]) == {"magnitude"}
    assert set(sparse.loc[sparse["method"] == "adaptive", "allocation"]) == {"linear_signed", "rank"}
    assert pruning["loss"].notna().all() and pruning["correct"].notna().sum() == 5 * 2 * 2
    # the heads pruned first by `most` are the highest-scoring ones; at fraction 0 every strategy is the same model
    top = pruning[(pruning["strategy"] == "most") & (pruning["fraction"] == 0.5)]["pruned"].iloc[0]
    assert top.split(";")[0] == f"{layers - 1}.{units - 1}"
    base_loss = pruning[pruning["fraction"] == 0.0].groupby("id")["loss"].nunique()
    assert (base_loss == 1).all()
    assert (pruning[pruning["fraction"] == 0.5].groupby("strategy")["loss"].mean() != base_loss.index.size).all()
    dense = sparse[sparse["method"] == "dense"]
    assert (dense["realised_keep_fraction"] == 1.0).all()
    assert (sparse[sparse["method"] != "dense"]["realised_keep_fraction"] < 1.0).all()
    meta = read_metadata(tmp_path / "sparse.parquet")
    assert set(meta["keep_ratios"]) == {"uniform@0.5", "adaptive-linear_signed@0.5", "adaptive-rank@0.5"}
    assert np.mean(meta["keep_ratios"]["adaptive-rank@0.5"]) == pytest.approx(0.5, abs=1e-5)
    assert main(["validation", "tables", "--pruning", str(tmp_path / "pruning.parquet"),
                 "--sparse", str(tmp_path / "sparse.parquet"), "--out-dir", str(tmp_path / "tables")]) == 0
    table = read_parquet(tmp_path / "tables" / "pruning.parquet")
    assert len(table) == 5 * 2 and {"vs_most_mcnemar_p", "vs_most_loss_p", "ci_low", "loss_ci_high"} <= set(table.columns)
    # counted = the conditions at fraction 0.5 whose pruned set differs from most's; fraction 0 prunes nothing
    sets = pruning[pruning["fraction"] == 0.5].groupby(["strategy", "seed"], dropna=False)["pruned"].first()
    differing = sum(set(v.split(";")) != set(top.split(";")) for (strategy, _), v in sets.items() if strategy != "most")
    assert table["vs_most_counted"].sum() == differing > 0
    assert not table.loc[table["fraction"] == 0.0, "vs_most_counted"].any()
    markdown = (tmp_path / "tables" / "pruning.md").read_text()
    assert "most important vs least relevant heads (smallest |score|)" in markdown
    assert "mean paired difference over the curve: sign-flip test over items, paired bootstrap interval" in markdown
    tests = read_parquet(tmp_path / "tables" / "pruning_tests.parquet")
    assert set(tests["comparator"]) == {"least", "random"} and (tests["n_fractions"] == 1).all()
    sparse_md = (tmp_path / "tables" / "sparse_attention.md").read_text()
    assert sparse_md.count("| adaptive |") == 2 and "adaptive (rank) vs uniform" in sparse_md
    assert len(read_parquet(tmp_path / "tables" / "sparse_tests.parquet")) == 2 * 2  # allocations × measures
    assert main(["validation", "figures", "--tables-dir", str(tmp_path / "tables"), "--out-dir", str(tmp_path / "fig")]) == 0
    for suffix in ("pruning", "sparse"):
        assert (tmp_path / "fig" / f"{architecture}_syn_{suffix}.png").stat().st_size > 10_000


def test_bad_inputs_are_named(tmp_path, capsys):
    folder = tmp_path / "model"
    _save_model("llama", folder)
    write_parquet(_data(2), tmp_path / "clean.parquet")
    write_parquet(pd.DataFrame({"layer": [0], "head": [0], "score": [1.0]}), tmp_path / "dp.parquet", metadata={"items": []})
    common = ["--model", str(folder), "--data", str(tmp_path / "clean.parquet"), "--scores", str(tmp_path / "dp.parquet"),
              "--model-name", "m", "--base", "syn", "--device", "cpu", "--out", str(tmp_path / "o.parquet")]
    assert main(["validation", "pruning", *common, "--spec", _spec("pruning")]) == 2
    assert "heads have no score" in capsys.readouterr().err
    assert main(["validation", "sparse", *common, "--spec", _spec("pruning")]) == 2
    assert "unknown key(s) ['fractions', 'least_by', 'random_seeds']" in capsys.readouterr().err
    layers, units = AutoModelForCausalLM.from_pretrained(folder).config.num_hidden_layers, 2
    full = pd.DataFrame({"layer": np.repeat(np.arange(layers), units), "head": np.tile(np.arange(units), layers),
                         "score": np.arange(layers * units, dtype=float)})
    write_parquet(full, tmp_path / "dp.parquet")
    assert main(["validation", "pruning", *common, "--spec", _spec("pruning")]) == 2
    assert "no record of the items its scores were computed on" in capsys.readouterr().err
    write_parquet(full, tmp_path / "dp.parquet", metadata={"items": ["syn-0", "syn-1"]})
    assert main(["validation", "pruning", *common, "--spec", _spec("pruning")]) == 2
    assert "none is left to validate on" in capsys.readouterr().err


def _study(**validation) -> dict:
    config = load_yaml(REPO_ROOT / "configs" / "ci.yaml")
    config.setdefault("attribution", {"models": ["llama", "diffllama"], "methods": ["dp"]})
    config["validation"] = validation
    return validate_config(config)


def test_job_specs_split_pruning_and_sparse_settings():
    base = _study(models=["llama"])
    assert validation_models(base) == model_variants(base, ["llama"])
    assert "llama+sft-noisy" in validation_models(base)  # SFT variants come along
    pruning, sparse = validation_job_spec(base, "llama", "pruning"), validation_job_spec(base, "llama", "sparse")
    assert validation_job_spec(base, "llama+sft-noisy", "pruning")["eval"] == pruning["eval"]  # derived names work
    assert "diffusion" not in pruning["eval"] and "mask_probs" not in pruning["objective"]
    mdlm = validation_job_spec(base, "mdlm", "pruning")  # ci: answer_length 24, block 8, steps 12 -> 96 tokens
    assert {k: mdlm["eval"]["diffusion"][k] for k in ("answer_length", "block_length", "steps")} == {
        "answer_length": 96, "block_length": 8, "steps": 48}
    normalize_eval_spec(mdlm["eval"])  # the evaluate stage accepts it
    assert mdlm["objective"]["mask_probs"] == base["attribution"]["objective"]["mask_probs"]
    assert pruning["eval"]["max_new_tokens"] == base["validation"]["max_new_tokens"]
    changed = _study(models=["llama"], pruning={"fractions": [0.0, 0.5]})
    assert validation_job_spec(changed, "llama", "pruning") != pruning
    assert validation_job_spec(changed, "llama", "sparse") == sparse
    changed = _study(models=["llama"], sparse={"budgets": [0.4]})
    assert validation_job_spec(changed, "llama", "pruning") == pruning
    assert validation_job_spec(changed, "llama", "sparse") != sparse


def test_semantic_errors_name_the_key():
    config = _study(models=["llama"])
    config["attribution"]["methods"] = ["dp", "stp"]
    config["validation"]["scores"] = "michel"
    config["validation"]["sparse"]["budgets"] = [0.5, 0.01]
    config["validation"]["models"] = ["gpt9"]
    errors = "\n".join(validation_errors(config))
    assert "'validation.scores': 'michel' is not in attribution.methods" in errors
    assert "'validation.sparse.budgets.1': 0.01 is below min_ratio" in errors
    assert "'validation.models': 'gpt9' is not a configured model" in errors
    no_attribution = {k: v for k, v in config.items() if k != "attribution"}
    assert "needs the 'attribution' section" in validation_errors(no_attribution)[0]

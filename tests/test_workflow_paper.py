"""configs/paper.yaml end to end, offline, on stand-ins of its published checkpoints.

The stand-ins (tests/hfcache_helpers.py) reproduce each hub repository's layout and tokenizer conventions —
the reyllama pair in their Trainer sub-folder with a Llama-3-style tokenizer one entry longer than the embedding,
Mamba-1 with a GPT-NeoX tokenizer without pad, GPT-2 without pad — and sit in an offline Hugging Face cache, with
GSM8K prepared in the ``datasets`` cache. The paper config, shrunk by an override file to a handful of items, then
runs every stage it names through the same loader as the real ids: prefetch (snapshot_download falls back to the
cache when the hub cannot be reached), evaluate, attention, needle, attribution, validation, perturbation and the
Jacobian analysis. The masked diffusion entries (LLaDA, Dream: remote code) are left out by ``select_models``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from workflow_helpers import REPO, snakemake, write_config

pytestmark = pytest.mark.workflow

#: the paper config's stages shrunk to a few items; only sizes change, plus the model selection
OVERRIDES = {
    "max_samples": 3,
    "select_models": ["diffllama-375m", "llama-375m", "gpt2", "mamba-130m"],
    "select_variants": ["clean", "inf"],
    "evaluation": {"batch_size": 4, "max_new_tokens": 6},
    "attention": {"items": 2},
    "needle": {"context_lengths": [96], "depths": [0, 100], "n_needles": [1], "items_per_cell": 1,
               "batch_size": 2, "bootstrap": {"n_resamples": 50}},
    "attribution": {"items": 2, "ig_steps": 3, "path_samples": 2, "batch_rows": 8},
    "validation": {"pass_items": 2, "loss_items": 2, "max_new_tokens": 6, "batch_size": 2,
                   "pruning": {"fractions": [0.0, 0.5]}, "sparse": {"budgets": [0.5]}},
    "perturbation": {"relation_names": ["capital"], "max_facts": 3, "templates": [0, 2], "selection_templates": [1],
                     "jacobian": {"num_texts": 6, "num_vectors": 2, "power_iterations": 2}},
}


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory, one_torch_thread):
    import os

    from attnlab.study.schema import load_yaml
    from conftest import GSM8K_DIR
    from hfcache_helpers import place_dataset_in_cache, place_standins

    root = tmp_path_factory.mktemp("paper")
    home = root / "hf-home"
    place_standins(home / "hub")
    splits = {}
    for split in ("train", "test"):
        lines = (GSM8K_DIR / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()[:20]
        splits[split] = root / f"{split}.jsonl"
        splits[split].write_text("\n".join(lines) + "\n", encoding="utf-8")
    place_dataset_in_cache(home / "datasets", "openai/gsm8k", "main", splits)
    workdir = root / "study"
    workdir.mkdir()
    overrides = write_config(workdir / "overrides.yaml", OVERRIDES)
    env = {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_ENDPOINT": "http://127.0.0.1:9"}  # fmt: skip  (prefetch's download cannot reach a hub)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        # the dataset's marker: prefetch's datasets.load_dataset retries an unreachable hub for ~30 s; the model
        # markers come from the workflow's own prefetch rule
        marker = workdir / "results" / "prefetch" / "datasets" / "gsm8k.json"
        marker.parent.mkdir(parents=True)
        marker.write_text(json.dumps({"kind": "dataset", "name": "gsm8k", "hub_id": "openai/gsm8k"}))
        proc = snakemake(workdir, REPO / "configs" / "paper.yaml", "--configfile", str(REPO / "configs" / "paper.yaml"),
                         str(overrides))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return workdir, proc, load_yaml(REPO / "configs" / "paper.yaml")


def test_paper_config_runs_every_stage_on_the_standins(paper_run):
    import pandas as pd

    workdir, proc, paper = paper_run
    results = workdir / "results"
    models = OVERRIDES["select_models"]
    for model in models:  # prefetch resolved every entry (the reyllama pair in its sub-folder) from the cache
        marker = json.loads((results / "prefetch" / "models" / f"{model}.json").read_text())
        assert marker["subfolder"] == paper["models"][model].get("subfolder")
        for variant in OVERRIDES["select_variants"]:
            evaluated = pd.read_parquet(results / "eval" / model / "gsm8k" / f"{variant}.parquet")
            assert len(evaluated) == OVERRIDES["max_samples"] and evaluated["generation"].notna().all()
    for model in paper["attention"]["models"]:
        allocation = pd.read_parquet(results / "attention" / model / "gsm8k" / "clean.parquet")
        assert set(allocation["item"]) and allocation["total_mass"].notna().all()
    for model in paper["needle"]["models"]:
        assert len(pd.read_parquet(results / "needle" / f"{model}.parquet")) > 0
    for model in paper["attribution"]["models"]:
        scores = pd.read_parquet(results / "attribution" / model / "gsm8k" / "dp.parquet")
        heads = 2 if model.startswith("diffllama") else 4  # DiffLlama: one unit per head pair (i, i + H/2)
        assert len(scores) == 2 * heads and scores["score"].notna().all()
    for model in paper["validation"]["models"]:
        for kind in ("pruning", "sparse"):
            assert len(pd.read_parquet(results / "validation" / model / "gsm8k" / f"{kind}.parquet")) > 0
    for model in paper["perturbation"]["models"]:
        assert len(pd.read_parquet(results / "perturbation" / f"{model}.parquet")) > 0
        jacobian = pd.read_parquet(results / "jacobian" / f"{model}.parquet")
        assert list(jacobian["layer"]) == [0, 1] and (jacobian["num_tokens"] >= jacobian["hidden_size"]).all()
    for table in ("accuracy", "attention_ratios", "needle_depth", "attribution_correlations", "pruning",
                  "sparse_attention", "perturbation", "jacobian"):  # fmt: skip
        assert (results / "tables" / f"{table}.parquet").is_file(), table


def test_every_model_stage_of_the_paper_config_asks_for_a_gpu(paper_run):
    """The resources the paper config's own rule_resources give the stand-in run's model jobs."""
    workdir, proc, paper = paper_run
    log = proc.stdout + proc.stderr
    model_rules = {"evaluate", "attention_measure", "needle_probe", "attribution", "validation_pruning",
                   "validation_sparse", "perturbation", "jacobian"}  # fmt: skip
    seen = set()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", log):
        head = re.match(r"(?:local)?rule (\w+):", block)
        if head and head.group(1) in model_rules:
            resources = re.search(r"^\s*resources: (.*)$", block, re.M).group(1)
            assert re.search(r"\bgpu=1\b", resources), (head.group(1), resources)
            seen.add(head.group(1))
    assert seen == model_rules

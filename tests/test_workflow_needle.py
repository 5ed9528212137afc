"""The needle stage in the real CI Snakemake run: corpus, probes, depth table, figure; what config edits rerun."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from attnlab.io import read_metadata
from attnlab.needle.probe import PROBE_SCHEMA, QUERY_SCOPES

from workflow_helpers import planned_jobs, snakemake, write_config

pytestmark = pytest.mark.workflow


def test_needle_outputs(ci_study: tuple[Path, Path, dict]) -> None:
    workdir, _, config = ci_study
    results = workdir / "results"
    section = config["needle"]
    corpus = pd.read_parquet(results / "corpus" / "needle.parquet")
    assert list(corpus.columns) == ["text"] and len(corpus) == section["corpus"]["size"]
    longest = section["corpus"]["max_chars"] + (max(section["corpus"]["n_needles"]) - 1) * section["corpus"]["chars_per_needle"]
    assert (corpus["text"].str.len() <= longest).all()
    n_items = len(section["context_lengths"]) * len(section["depths"]) * len(section["n_needles"]) * section["items_per_cell"]
    for model, kinds, heads in (("llama", 1, 2), ("diffllama", 3, 1)):
        probe = pd.read_parquet(results / "needle" / f"{model}.parquet")
        assert list(probe.columns) == PROBE_SCHEMA.names
        layers = config["models"][model]["num_layers"]
        assert len(probe) == n_items * len(QUERY_SCOPES) * kinds * layers * heads
        assert probe["id"].nunique() == n_items and (probe["model"] == model).all()
        budget = probe["context_length"] + (probe["n_needles"] - 1) * section["context_per_needle"]
        assert (probe["n_prompt_tokens"] <= budget).all()
        # every item holds its nominal depth within the configured tolerance
        assert ((probe["depth_actual"] - probe["depth"] / 100).abs() <= section["depth_tolerance"]).all()
        assert read_metadata(results / "needle" / f"{model}.parquet")["spec"]["depths"] == section["depths"]
        items = pd.read_parquet(results / "needle" / "items" / f"{model}.parquet")
        assert len(items) == n_items
    # both scratch models share the tokenizer, so they saw the same items
    a, b = (pd.read_parquet(results / "needle" / "items" / f"{m}.parquet") for m in ("llama", "diffllama"))
    assert a["prompt"].equals(b["prompt"])
    table = pd.read_parquet(results / "tables" / "needle_depth.parquet")
    assert set(table["model"]) == {"llama", "diffllama"}  # mdlm has no causal attention: not probed
    pooled = table[(table["depth"] == "all") & (table["n_needles"] == "all")]
    assert set(pooled["metric"]) == {"answer", "answer_sentence", "noise", "haystack", "accuracy"}
    markdown = (results / "tables" / "needle_depth.md").read_text()
    assert "Attention to the answer number" in markdown and "diffllama vs llama" in markdown
    assert "Realised depth of the target needle" in markdown
    assert (results / "figures" / "needle_depth.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_needle_config_changes_rerun_only_what_they_affect(ci_study: tuple[Path, Path, dict], tmp_path: Path) -> None:
    workdir, _, config = ci_study

    def plan(changed: dict) -> set[tuple[str, str]]:
        configfile = write_config(tmp_path / "changed.yaml", changed)
        return planned_jobs(snakemake(workdir, configfile, "-n"))

    bootstrap = {**config, "needle": {**config["needle"], "bootstrap": {"n_resamples": 100}}}
    assert {rule for rule, _ in plan(bootstrap)} == {"needle_table", "needle_figure", "summary"}

    depths = {**config, "needle": {**config["needle"], "depths": [0, 100]}}
    rules = {rule for rule, _ in plan(depths)}
    assert rules == {"needle_probe", "needle_table", "needle_figure", "summary"}  # no retraining, no new corpus

    replicate = {**config, "pretrain": {**config["pretrain"], "replicates": {"models": ["diffllama"], "seeds": [8]}}}
    jobs = plan(replicate)
    assert ("needle_probe", "model=diffllama-seed8") in jobs and ("pretrain", "scratch_model=diffllama-seed8") in jobs
    assert not any(rule == "needle_probe" and "seed8" not in wc for rule, wc in jobs)
    # the replicate is evaluated like its base (pretrain.replicates.evaluate), no other model is
    assert not any(rule == "evaluate" and "seed8" not in wc for rule, wc in jobs)

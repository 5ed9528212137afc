"""Extension points: the documented toy plugin (docs/examples/toy_plugin.py) registers a dataset and a noise
type through the public API, and both go through the data and evaluation stages — by CLI, and in a real
Snakemake run whose model is a hub id served offline from a prefetched cache."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from attnlab.cli import main
from attnlab.data import read_dataset, unregister_dataset, unregister_noise
from attnlab.io import read_parquet
from hfcache_helpers import TINY_REPO, place_in_cache, tiny_model_folder
from workflow_helpers import REPO, planned_jobs, snakemake, write_config

PLUGIN = REPO / "docs" / "examples" / "toy_plugin.py"
EVAL_SPEC = json.dumps({"num_fewshot": 0, "fewshot_seed": 1, "batch_size": 4, "max_new_tokens": 6})


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    shutil.copy(PLUGIN, tmp_path / "toy_plugin.py")
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    unregister_dataset("toy_arith")
    unregister_noise("toy_weather")
    sys.modules.pop("toy_plugin", None)


@pytest.fixture(scope="module")
def tiny(one_torch_thread):
    return tiny_model_folder("llama")


def test_toy_plugin_through_the_data_and_evaluation_commands(plugin_dir, capsys, tiny):
    spec = json.dumps({"loader": "toy_arith", "size": 5})
    assert main(["--plugin=toy_plugin", "data", "base", "--spec", spec, "--split", "test", "--seed", "1", "--out", "clean.parquet"]) == 0
    assert main(["--plugin=toy_plugin", "data", "noise", "--input", "clean.parquet", "--noise-type", "toy_weather",
                 "--seed", "1", "--out", "noisy.parquet"]) == 0
    noisy = read_dataset("noisy.parquet")
    assert len(noisy) == 5 and set(noisy["noise_type"]) == {"toy_weather"}
    for row in noisy.itertuples():
        (span,) = row.noise_spans
        assert row.question[span["start"] : span["end"]].strip().startswith("It rained for")
        assert [row.question[s["start"] : s["end"]] for s in row.key_spans] == \
            [row.original_question[s["start"] : s["end"]] for s in read_dataset("clean.parquet").set_index("id").loc[row.id, "key_spans"]]
    assert main(["evaluate", "--model", str(tiny), "--data", "noisy.parquet", "--spec", EVAL_SPEC, "--model-name", "tiny",
                 "--base", "toy", "--variant", "toy_weather", "--device", "cpu", "--out", "eval.parquet"]) == 0
    evaluated = read_parquet("eval.parquet")
    assert len(evaluated) == 5 and set(evaluated["variant"]) == {"toy_weather"}

    assert main(["--plugin=no_such_plugin", "data", "base", "--spec", spec, "--split", "test", "--seed", "1", "--out", "x.parquet"]) == 2
    assert "cannot import plugin module 'no_such_plugin'" in capsys.readouterr().err


def test_toy_plugin_and_a_prefetched_hub_model_in_a_real_workflow(plugin_dir, tiny):
    workdir = plugin_dir
    place_in_cache(tiny, workdir / "hf" / "hub", TINY_REPO, "main")
    config = {
        "study": "extension", "seed": 3, "max_samples": 3, "device": "cpu",
        "plugins": ["toy_plugin"],
        "datasets": {"toy": {"loader": "toy_arith", "size": 3}},
        "noise": {"types": ["toy_weather"]},
        "models": {"cached": {"source": "hub", "id": TINY_REPO, "revision": "main"}},
        "evaluation": {"num_fewshot": 0, "batch_size": 4, "max_new_tokens": 6},
        "prefetch": {"offline": True, "hf_cache_dir": "hf"},
    }
    configfile = write_config(workdir / "study.yaml", config)
    targets = ["results/eval/cached/toy/toy_weather.parquet"]  # needs data_clean, data_noise, evaluate

    # the evaluation of a hub model waits for its prefetch marker
    jobs = planned_jobs(snakemake(workdir, configfile, "-n", *targets))
    assert ("prefetch_model", "model=cached") in jobs
    assert {rule for rule, _ in jobs} == {"prefetch_model", "data_clean", "data_noise", "evaluate"}

    # as if `snakemake prefetch` had run on the login node: the jobs then run offline from the cache
    marker = workdir / "results" / "prefetch" / "models" / "cached.json"
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"repo_id": TINY_REPO, "revision": "main"}))
    snakemake(workdir, configfile, *targets)
    table = read_parquet(workdir / targets[0])
    assert len(table) == 3 and set(table["variant"]) == {"toy_weather"} and set(table["model"]) == {"cached"}
    noisy = read_dataset(workdir / "results" / "data" / "toy" / "toy_weather.parquet")
    assert all("It rained for" in q for q in noisy["question"])
    log = (workdir / "results" / "logs" / "evaluate" / "cached" / "toy" / "toy_weather.log").read_text()
    assert "huggingface.co" not in log and "Retrying" not in log  # never tried the network

"""attnlab doctor: versions, devices, config validity, offline availability of every model and dataset."""

from __future__ import annotations

import json

import yaml

from attnlab.cli import main
from hfcache_helpers import place_in_cache


def _config(tmp_path, models, datasets=None, **extra):
    config = {
        "study": "doctor-test",
        "seed": 1,
        "datasets": datasets or {"synthetic": {"loader": "synthetic", "train_size": 20, "test_size": 10}},
        "tokenizer": {"corpus": "synthetic", "vocab_size": 320},
        "pretrain": {"corpus": "synthetic", "steps": 2, "batch_size": 2, "learning_rate": 0.001},
        "models": models,
        "prefetch": {"offline": True, "hf_cache_dir": "hf"},
        **extra,
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _fake_model_files(folder):
    folder.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (folder / name).write_text("{}")
    return folder


def _doctor(capsys, path, tmp_path):
    code = main(["doctor", "--config", str(path), "--base-dir", str(tmp_path), "--json"])
    checks = {(c["section"], c["item"]): c for c in json.loads(capsys.readouterr().out)}
    return code, checks


SCRATCH = {"source": "scratch", "architecture": "llama", "hidden_size": 32, "num_layers": 2, "num_heads": 2}


def test_good_config_with_a_cached_hub_model_passes(tmp_path, capsys):
    place_in_cache(_fake_model_files(tmp_path / "src"), tmp_path / "hf" / "hub", "org/cached", "main")
    path = _config(tmp_path, {"llama": SCRATCH, "cached": {"source": "hub", "id": "org/cached"}})
    code, checks = _doctor(capsys, path, tmp_path)
    assert code == 0, [c for c in checks.values() if c["status"] == "FAIL"]
    assert checks[("config", str(path))]["status"] == "ok"
    assert checks[("models", "cached")]["status"] == "ok" and "cached, commit" in checks[("models", "cached")]["detail"]
    assert "not trained yet" in checks[("models", "llama")]["detail"]
    for package in ("python", "torch", "transformers", "snakemake", "snakemake-executor-plugin-slurm"):
        assert ("versions", package) in checks
    assert checks[("devices", "cpu")]["status"] == "ok"


def test_hub_model_missing_from_the_cache_fails_naming_it(tmp_path, capsys):
    path = _config(tmp_path, {"llama": SCRATCH, "absent": {"source": "hub", "id": "org/absent", "revision": "v3"}})
    code, checks = _doctor(capsys, path, tmp_path)
    assert code == 1
    detail = checks[("models", "absent")]
    assert detail["status"] == "FAIL"
    assert "org/absent@v3: not in the cache" in detail["detail"]
    assert f"attnlab prefetch --config {path}" in detail["detail"]
    # the plain-text report names it in the summary line too
    assert main(["doctor", "--config", str(path), "--base-dir", str(tmp_path)]) == 1
    assert "models absent" in capsys.readouterr().out.splitlines()[-1]


def test_hub_dataset_missing_and_invalid_config_fail(tmp_path, capsys):
    gsm = {"gsm": {"loader": "gsm8k", "hub_id": "openai/gsm8k", "hub_config": "main"}}
    path = _config(tmp_path, {"llama": SCRATCH}, datasets={**gsm, "synthetic": {"loader": "synthetic", "train_size": 20, "test_size": 10}})
    code, checks = _doctor(capsys, path, tmp_path)
    assert code == 1 and checks[("datasets", "gsm")]["status"] == "FAIL"
    # with prefetch.offline false the jobs may download it: a warning, not a failure
    path = _config(tmp_path, {"llama": SCRATCH}, datasets={**gsm, "synthetic": {"loader": "synthetic", "train_size": 20, "test_size": 10}})
    data = yaml.safe_load(path.read_text())
    data["prefetch"]["offline"] = False
    path.write_text(yaml.safe_dump(data))
    code, checks = _doctor(capsys, path, tmp_path)
    assert code == 0 and checks[("datasets", "gsm")]["status"] == "warn"
    path = _config(tmp_path, {"llama": {**SCRATCH, "architecture": "lama"}})
    code, checks = _doctor(capsys, path, tmp_path)
    assert code == 1 and "models.llama.architecture" in checks[("config", str(path))]["detail"]

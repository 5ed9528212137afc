"""Prefetch: which ids/revisions are downloaded, the markers, offline resolution from the cache, the clear error."""

from __future__ import annotations

import json

import pytest
import torch

from attnlab.cli import main
from attnlab.tools.hfcache import cached_dataset, cached_model_snapshot, hub_models
from attnlab.tools.prefetch import PrefetchError, prefetch_config, prefetch_model
from hfcache_helpers import TINY_REPO, fake_commit, place_in_cache, tiny_model_folder

CONFIG = {
    "models": {
        "small": {"source": "hub", "id": "org-a/small", "revision": "main"},
        "pinned": {"source": "hub", "id": "org-b/pinned", "revision": "v1.0"},
        "local": {"source": "hub", "id": "/nonexistent/but/a/path", "revision": "main"},
        "mine": {"source": "scratch", "architecture": "llama", "hidden_size": 32, "num_layers": 2},
    },
    "datasets": {
        "gsm": {"loader": "gsm8k", "hub_id": "openai/gsm8k", "hub_config": "main"},
        "synthetic": {"loader": "synthetic", "train_size": 10, "test_size": 10},
    },
}


@pytest.fixture(scope="module")
def tiny_folder(one_torch_thread):
    return tiny_model_folder("llama")


def _fake_download(calls, source_folder):
    """A snapshot_download stand-in: records the call and lays the files out as the hub cache would."""

    def download(*, repo_id, revision, cache_dir, ignore_patterns):
        calls.append((repo_id, revision))
        assert "*.msgpack" in ignore_patterns  # other frameworks' weights are never fetched
        from pathlib import Path

        return str(place_in_cache(source_folder, Path(cache_dir), repo_id, revision))

    return download


def _fake_load(calls):
    def load(hub_id, hub_config, *, revision, cache_dir):
        from pathlib import Path

        calls.append((hub_id, hub_config, revision))
        folder = Path(cache_dir) / hub_id.replace("/", "___") / hub_config / "0.0.0" / "abc"
        folder.mkdir(parents=True)
        (folder / "dataset_info.json").write_text("{}")
        return {"train": [0] * 7, "test": [0] * 3}

    return load


def test_prefetch_config_downloads_every_hub_entry_at_its_revision(tmp_path, tiny_folder):
    downloads, loads = [], []
    records = prefetch_config(
        CONFIG, cache_root=tmp_path / "hf", marker_dir=tmp_path / "markers",
        download=_fake_download(downloads, tiny_folder), load=_fake_load(loads),
    )
    # hub ids only, each at its configured revision; the local folder and the scratch model are not fetched
    assert downloads == [("org-a/small", "main"), ("org-b/pinned", "v1.0")]
    assert loads == [("openai/gsm8k", "main", None)]
    assert [r["name"] for r in records] == ["small", "pinned", "gsm"]
    marker = json.loads((tmp_path / "markers" / "models" / "pinned.json").read_text())
    assert marker["commit"] == fake_commit("org-b/pinned", "v1.0")
    assert marker["revision"] == "v1.0" and "config.json" in marker["files"]
    dataset_marker = json.loads((tmp_path / "markers" / "datasets" / "gsm.json").read_text())
    assert dataset_marker["splits"] == {"train": 7, "test": 3}
    # what doctor / the jobs will look up is there now
    assert cached_model_snapshot("org-b/pinned", "v1.0", tmp_path / "hf" / "hub") is not None
    assert cached_model_snapshot("org-b/pinned", "main", tmp_path / "hf" / "hub") is None  # other revision: not cached
    assert cached_dataset("openai/gsm8k", "main", tmp_path / "hf" / "datasets") is not None


def test_incomplete_download_fails_naming_the_model(tmp_path):
    def download(**kwargs):  # "succeeds" but leaves nothing in the cache
        return str(tmp_path)

    model = hub_models(CONFIG)[0]
    with pytest.raises(PrefetchError, match="model 'small'.*org-a/small.*no complete snapshot"):
        prefetch_model(model, cache_root=tmp_path / "hf", download=download)

    def failing(**kwargs):
        raise OSError("connection refused")

    with pytest.raises(PrefetchError, match="model 'small': downloading hub id 'org-a/small' at revision 'main' failed.*refused"):
        prefetch_model(model, cache_root=tmp_path / "hf", download=failing)


def test_hub_id_resolves_offline_from_the_cache(tmp_path, monkeypatch, tiny_folder):
    import huggingface_hub.constants

    from attnlab.models.loader import ModelNotAvailableError, load_model

    hub = tmp_path / "hub"
    place_in_cache(tiny_folder, hub, TINY_REPO, "main")
    # what a job started with HF_HUB_CACHE / HF_HUB_OFFLINE=1 sees (huggingface_hub reads both once, at import)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)

    model, tokenizer = load_model(TINY_REPO, device="cpu", revision="main")
    reference, _ = load_model(tiny_folder, device="cpu")
    ids = tokenizer("Question: 3 plus 4?", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reference(ids).logits)

    with pytest.raises(ModelNotAvailableError) as err:
        load_model("attnlab-test/not-prefetched", device="cpu", revision="v2")
    message = str(err.value)
    assert "'attnlab-test/not-prefetched' (revision v2) is not in the Hugging Face cache" in message
    assert "attnlab prefetch --model attnlab-test/not-prefetched --revision v2" in message
    assert f"HF_HUB_CACHE={hub}" in message


def test_prefetch_cli_refuses_when_offline_and_needs_a_target(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["prefetch", "--model", "org/name"]) == 2
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert main(["prefetch"]) == 2
    assert "give --config FILE, --model ID or --dataset ID" in capsys.readouterr().err

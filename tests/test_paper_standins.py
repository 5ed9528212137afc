"""The published checkpoints of configs/paper.yaml, as stand-ins in their own layouts: loading from a hub
sub-folder (loader, doctor, prefetch), the tokenizer/embedding guard, the answer's end token, and the config-time
checks that read a model's cached config (Jacobian tokens vs hidden_size, stp vs dp)."""

from __future__ import annotations

import copy
import fnmatch
import json
import shutil
from pathlib import Path

import pytest
import torch

from attnlab.cli import main
from attnlab.config import validate_config
from attnlab.study.schema import ConfigError, load_yaml
from attnlab.paths import REPO_ROOT
from hfcache_helpers import REYLLAMA_SUBFOLDER, place_in_cache, place_standins

REY = "reyllama/Llama_375M"
DIFF = "reyllama/DiffLlama-375M"


@pytest.fixture(scope="module")
def standins(tmp_path_factory, one_torch_thread):
    """Every stand-in in one hub cache (built once for the module)."""
    hub = tmp_path_factory.mktemp("standins") / "hub"
    return hub, place_standins(hub)


@pytest.fixture
def offline_cache(standins, monkeypatch):
    """What a workflow job sees: HF_HUB_CACHE at the stand-ins, HF_HUB_OFFLINE=1 (huggingface_hub reads both at import)."""
    import huggingface_hub.constants

    hub, snapshots = standins
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub, snapshots


def _paper(**changes) -> dict:
    config = load_yaml(REPO_ROOT / "configs" / "paper.yaml")
    for path, value in changes.items():
        node = config
        *parents, leaf = path.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return config


# --- layouts ----------------------------------------------------------------------------------------------------


def test_reyllama_standin_reproduces_the_published_layout(standins):
    _, snapshots = standins
    top = snapshots[REY]
    assert not (top / "config.json").exists()  # the repository's top level holds no model
    config = json.loads((top / REYLLAMA_SUBFOLDER / "config.json").read_text())
    assert config["model_type"] == "llama" and config["tie_word_embeddings"] is True
    assert config["num_key_value_heads"] < config["num_attention_heads"]
    assert config["rope_scaling"]["rope_type"] == "llama3" and "rope_theta" in config and "rope_parameters" not in config
    tokenizer_config = json.loads((top / REYLLAMA_SUBFOLDER / "tokenizer_config.json").read_text())
    assert tokenizer_config["eos_token"] == "<|eot_id|>" and tokenizer_config["pad_token"] not in ("<|eot_id|>", None)
    assert json.loads((snapshots[DIFF] / REYLLAMA_SUBFOLDER / "config.json").read_text())["model_type"] == "diffllama"


def test_subfolder_checkpoints_load_offline_through_the_one_loader(offline_cache):
    from attnlab.models.loader import ModelNotAvailableError, load_model

    for repo, cls in ((REY, "LlamaForCausalLM"), (DIFF, "DiffLlamaForCausalLM")):
        model, tokenizer = load_model(repo, device="cpu", revision="main", subfolder=REYLLAMA_SUBFOLDER)
        assert type(model).__name__ == cls
        assert model.config.rope_parameters["rope_type"] == "llama3"  # read from the checkpoint's rope_scaling
        assert model.config.num_key_value_heads == 2 and model.config.num_attention_heads == 4
        ids = tokenizer("Question: 2 + 3?")["input_ids"]
        assert ids[0] == tokenizer.convert_tokens_to_ids("<|begin_of_text|>")
    with pytest.raises(ModelNotAvailableError, match="--subfolder checkpoint-64434"):
        load_model(REY, device="cpu", revision="v9", subfolder=REYLLAMA_SUBFOLDER)
    with pytest.raises(ModelNotAvailableError, match="no config.json at its top level.*set subfolder: checkpoint-64434"):
        load_model(REY, device="cpu", revision="main")  # the id alone: the message names the sub-folder


def test_an_id_with_the_subfolder_appended_says_how_to_write_it():
    from attnlab.models.loader import load_model

    with pytest.raises(FileNotFoundError, match="give id: reyllama/Llama_375M and subfolder: checkpoint-64434"):
        load_model(f"{REY}/{REYLLAMA_SUBFOLDER}", device="cpu")


def test_schema_rejects_a_subfolder_that_leaves_the_repository():
    for bad in ("../elsewhere", "/abs", "checkpoint/"):
        with pytest.raises(ConfigError, match="models.llama-375m.subfolder"):
            validate_config(_paper(**{"models.llama-375m.subfolder": bad}))


# --- doctor and prefetch ------------------------------------------------------------------------------------------


def test_doctor_finds_the_subfolder_checkpoint_in_the_cache(tmp_path, capsys, standins):
    hub, _ = standins
    root = tmp_path / "hf"
    shutil.copytree(hub, root / "hub", symlinks=True)
    config = _paper(**{"prefetch.hf_cache_dir": str(root)})
    config["models"] = {k: config["models"][k] for k in ("llama-375m", "gpt2")}
    for key in ("attention", "needle", "attribution", "validation", "perturbation", "sft", "robustness_difference"):
        config.pop(key, None)
    path = tmp_path / "paper.yaml"
    path.write_text(json.dumps(config))
    main(["doctor", "--config", str(path), "--base-dir", str(tmp_path), "--json"])
    checks = {(c["section"], c["item"]): c for c in json.loads(capsys.readouterr().out)}
    assert checks[("models", "llama-375m")]["status"] == "ok", checks[("models", "llama-375m")]
    assert "sub-folder checkpoint-64434: cached" in checks[("models", "llama-375m")]["detail"]
    del config["models"]["llama-375m"]["subfolder"]  # the same entry without it: not loadable from the cache
    path.write_text(json.dumps(config))
    main(["doctor", "--config", str(path), "--base-dir", str(tmp_path), "--json"])
    checks = {(c["section"], c["item"]): c for c in json.loads(capsys.readouterr().out)}
    assert checks[("models", "llama-375m")]["status"] == "FAIL"


def test_prefetch_downloads_only_the_subfolder_without_the_trainer_state(tmp_path, standins):
    from attnlab.tools.hfcache import HubModel, hub_models
    from attnlab.tools.prefetch import prefetch_model

    _, snapshots = standins
    published = snapshots[REY]
    calls = []

    def download(*, repo_id, revision, cache_dir, ignore_patterns, allow_patterns=None):
        """snapshot_download's file selection (fnmatch on repo paths) over the published files."""
        calls.append(allow_patterns)
        kept = tmp_path / "selected"
        for path in published.rglob("*"):
            rel = path.relative_to(published).as_posix()
            if path.is_file() and (allow_patterns is None or any(fnmatch.fnmatch(rel, p) for p in allow_patterns)) \
                    and not any(fnmatch.fnmatch(rel, p) for p in ignore_patterns):
                (kept / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, kept / rel)
        return str(place_in_cache(kept, Path(cache_dir), repo_id, revision))

    (model,) = hub_models(_paper(), ["llama-375m"])
    assert model == HubModel("llama-375m", REY, "main", REYLLAMA_SUBFOLDER)
    record = prefetch_model(model, cache_root=tmp_path / "hf", download=download)
    assert calls == [[f"{REYLLAMA_SUBFOLDER}/*"]]
    assert record["subfolder"] == REYLLAMA_SUBFOLDER
    assert all(f.startswith(f"{REYLLAMA_SUBFOLDER}/") for f in record["files"])
    assert f"{REYLLAMA_SUBFOLDER}/model.safetensors" in record["files"]
    assert f"{REYLLAMA_SUBFOLDER}/optimizer.pt" not in record["files"]


# --- tokenizer vs embedding, and the answer's end token ---------------------------------------------------------------


def test_pad_token_past_the_embedding_is_replaced_and_padded_batches_run(offline_cache):
    from attnlab.models.loader import load_model

    model, tokenizer = load_model(REY, device="cpu", subfolder=REYLLAMA_SUBFOLDER)
    rows = model.get_input_embeddings().num_embeddings
    assert len(tokenizer) == rows + 1  # as published: one added token more than the embedding has rows
    assert tokenizer.pad_token_id < rows and tokenizer.pad_token == tokenizer.eos_token
    batch = tokenizer(["Question: 1?", "Question: a much longer question about apples?"], return_tensors="pt",
                      padding=True)  # fmt: skip
    with torch.no_grad():
        assert model(**batch).logits.shape[:2] == batch["input_ids"].shape


def test_regular_tokens_past_the_embedding_are_an_error(offline_cache):
    from attnlab.models.loader import VocabularyMismatchError, fit_tokenizer_to_embeddings, load_model

    model, tokenizer = load_model("gpt2", device="cpu")
    model.resize_token_embeddings(len(tokenizer) - 10)
    with pytest.raises(VocabularyMismatchError, match=f"{len(tokenizer)} tokens but the model's input embedding has"):
        fit_tokenizer_to_embeddings(model, tokenizer)


def test_mamba_and_gpt2_standins_have_no_pad_and_still_pad_for_generation(offline_cache):
    from attnlab.models.loader import load_model

    for repo in ("state-spaces/mamba-130m-hf", "gpt2"):
        model, tokenizer = load_model(repo, device="cpu", for_generation=False)
        assert tokenizer.pad_token is None
        _, generation = load_model(repo, device="cpu")
        assert generation.pad_token == generation.eos_token == "<|endoftext|>"
    model, _ = load_model("state-spaces/mamba-130m-hf", device="cpu")
    assert model.get_input_embeddings().num_embeddings > len(_)  # rows padded past the tokenizer: fine


def test_answer_loss_ends_with_the_models_end_of_text_not_the_tokenizers_eos(offline_cache):
    import pandas as pd

    from attnlab.attribution.objectives import ObjectiveSpec, answer_end_token_id, encode_items
    from attnlab.models.loader import load_model

    model, tokenizer = load_model(REY, device="cpu", subfolder=REYLLAMA_SUBFOLDER, for_generation=False)
    end_of_text, eot = tokenizer.convert_tokens_to_ids(["<|end_of_text|>", "<|eot_id|>"])
    assert tokenizer.eos_token_id == eot and model.generation_config.eos_token_id == end_of_text
    assert answer_end_token_id(model, tokenizer) == end_of_text
    data = pd.DataFrame({"id": ["a"], "question": ["What is 2 + 3?"], "answer": ["2 + 3 = 5\n#### 5"]})
    (item,) = encode_items(model, tokenizer, data, ObjectiveSpec.from_config({}, 0))
    assert int(item.input_ids[-1]) == end_of_text and bool(item.target_mask[-1])
    model.generation_config.eos_token_id = [end_of_text, eot]  # a list that names the tokenizer's eos: that one
    assert answer_end_token_id(model, tokenizer) == eot


# --- config-time checks -------------------------------------------------------------------------------------------


def _gpt2_768_in_cache(hub_root: Path, standins) -> None:
    """The gpt2 entry as cached on a real machine: the 768-wide config.json (the published n_embd) and a tokenizer."""
    _, snapshots = standins
    folder = hub_root / "staging"
    shutil.copytree(snapshots["gpt2"], folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(n_embd=768, n_layer=12, n_head=12)
    (folder / "config.json").write_text(json.dumps(config))
    place_in_cache(folder, hub_root / "hub", "gpt2", "main")


def test_jacobian_texts_too_few_for_a_768_wide_model_fail_at_config_time(tmp_path, standins):
    _gpt2_768_in_cache(tmp_path, standins)
    cache = {"prefetch.hf_cache_dir": str(tmp_path), "perturbation.models": ["gpt2"]}
    with pytest.raises(ConfigError) as err:
        validate_config(_paper(**cache, **{"perturbation.jacobian": {"num_texts": 32}}))
    assert "config key 'perturbation.jacobian.num_texts': model 'gpt2' has hidden_size 768" in str(err.value)
    validate_config(_paper(**cache))  # the paper config's own value reaches 768 tokens
    with pytest.raises(ConfigError, match="have only 2 sentences"):
        validate_config(_paper(**cache, **{"perturbation.max_facts": 1, "perturbation.templates": [0],
                                           "perturbation.relation_names": ["capital", "currency"]}))  # fmt: skip


def test_jacobian_check_bounds_scratch_models_by_bytes():
    config = load_yaml(REPO_ROOT / "configs" / "ci.yaml")
    model = config["perturbation"]["models"][0]
    config["models"][model]["hidden_size"] = 4096
    config["models"][model]["num_heads"] = 4
    with pytest.raises(ConfigError, match=f"model '{model}' has hidden_size 4096.*at most"):
        validate_config(config)


def test_stochastic_threshold_path_without_interior_points_is_rejected():
    for quadrature, steps in (("trapezoid", 2), ("riemann_right", 1)):
        config = _paper(**{"attribution.ig_steps": steps, "attribution.quadrature": quadrature,
                           "attribution.methods": ["dp", "stp"]})  # fmt: skip
        with pytest.raises(ConfigError, match="config key 'attribution.ig_steps'.*stochastic-threshold path equals"):
            validate_config(config)
        config["attribution"]["methods"] = ["dp"]
        validate_config(config)
    validate_config(_paper(**{"attribution.ig_steps": 3, "attribution.methods": ["dp", "stp"]}))


def test_needle_contexts_beyond_a_cached_hub_models_positions_fail_at_config_time(tmp_path, standins):
    hub, _ = standins
    shutil.copytree(hub, tmp_path / "hub", symlinks=True)
    cache = {"prefetch.hf_cache_dir": str(tmp_path)}
    validate_config(_paper(**cache))  # 1,024-token contexts fit the stand-ins' 131,072 positions
    snapshot = next((tmp_path / "hub" / "models--reyllama--Llama_375M" / "snapshots").iterdir())
    config_file = snapshot / REYLLAMA_SUBFOLDER / "config.json"
    fields = json.loads(config_file.read_text())
    fields["max_position_embeddings"] = 512
    config_file.unlink()  # a copy of the cache entry, not the shared stand-in
    config_file.write_text(json.dumps(fields))
    with pytest.raises(ConfigError, match=r"needle.context_lengths': 1024 tokens .* exceed the 512 positions of 'llama-375m'"):
        validate_config(_paper(**cache))

"""Configs the schema alone would pass but a job could not run (or a shell would interpret): rejected, key named."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from attnlab.cli import main
from attnlab.config import validate_config
from attnlab.study.schema import ConfigError, load_yaml
from attnlab.study.selections import selected_models
from attnlab.hubnames import config_name_problem, repo_id_problem, revision_problem
from attnlab.yamlload import YAMLFileError, load_yaml_text

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ci_config() -> dict:
    return load_yaml(REPO / "configs" / "ci.yaml")


def rejected(config: dict) -> str:
    with pytest.raises(ConfigError) as info:
        validate_config(config, base_dir=REPO)
    return str(info.value)


def edited(config: dict, edit) -> dict:
    config = copy.deepcopy(config)
    edit(config)
    return config


# --- hub names: the hub's grammar, checked at config time -----------------------------------


@pytest.mark.parametrize("value", ["gpt2", "openai-community/gpt2", "meta-llama/Llama-3.2-1B", "Dream-org/Dream-v0-Base-7B"])
def test_real_repo_ids_pass(value: str) -> None:
    assert repo_id_problem(value) is None


@pytest.mark.parametrize(
    "value", ["gpt2$(touch X)", "gpt2`id`", "gpt2; rm -rf ~", "openai community/gpt2", "a--b", "x" * 97, "-gpt2", "gpt2.git"]
)
def test_repo_ids_off_the_grammar_are_named(value: str) -> None:
    assert repo_id_problem(value) is not None


@pytest.mark.parametrize("value", ["main", "v1.0", "refs/pr/12", "0123456789abcdef0123456789abcdef01234567", "release_2-b"])
def test_real_revisions_pass(value: str) -> None:
    assert revision_problem(value) is None


@pytest.mark.parametrize("value", ["main; touch X", "$(id)", "a b", "a..b", ".hidden", "x.lock", "main/", "refs//pr", "-x"])
def test_revisions_off_the_grammar_are_named(value: str) -> None:
    assert revision_problem(value) is not None


def test_dataset_config_names() -> None:
    assert config_name_problem("main") is None and config_name_problem("20231101.en") is None
    assert config_name_problem("main x") and config_name_problem("$(id)")


def test_a_metacharacter_laden_hub_id_and_revision_are_rejected_naming_the_key(ci_config: dict) -> None:
    config = edited(ci_config, lambda c: c["models"].update(
        evil={"source": "hub", "id": "gpt2$(touch PWNED)", "revision": "main; touch PWNED2"}
    ))  # fmt: skip
    message = rejected(config)
    assert "config key 'models.evil.id': 'gpt2$(touch PWNED)' is not a Hugging Face repo id" in message
    assert "config key 'models.evil.revision': 'main; touch PWNED2' is not a branch, tag or commit" in message
    dataset = edited(ci_config, lambda c: c["datasets"].update(
        g={"loader": "gsm8k", "hub_id": "openai/gsm8k`id`", "hub_config": "main x", "revision": "a b"}
    ))  # fmt: skip
    message = rejected(dataset)
    for key in ("hub_id", "hub_config", "revision"):
        assert f"config key 'datasets.g.{key}'" in message


def test_a_local_folder_id_is_a_path_not_a_repo_id(ci_config: dict, tmp_path: Path) -> None:
    folder = tmp_path / "my model $(x)"
    folder.mkdir()
    config = edited(ci_config, lambda c: c["models"].update(local={"source": "hub", "id": str(folder)}))
    assert validate_config(config, base_dir=REPO)["models"]["local"]["id"] == str(folder)


# --- cross-field checks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda c: c["pretrain"].update(max_length=1024),
         "'pretrain.max_length': 1024 tokens exceed models.gpt2.max_position_embeddings (512)"),
        (lambda c: c["sft"]["recipes"]["noisy"].update(max_length=600),
         "'sft.recipes.noisy.max_length': 600 tokens exceed models.llama.max_position_embeddings (512)"),
        (lambda c: c["models"]["llama"].update(num_heads=4, num_kv_heads=3),
         "'models.llama.num_kv_heads': 3 does not divide num_heads 4"),
        (lambda c: c["models"]["diffllama"].update(num_heads=4, num_kv_heads=1),
         "'models.diffllama.num_kv_heads': must be even for diffllama"),
        (lambda c: c["models"]["mamba2"].update(head_dim=24),
         "'models.mamba2.head_dim': 24 does not divide the inner width expand × hidden_size = 2 × 32 = 64"),
        (lambda c: c["models"]["mamba2"].pop("state_size"), "'models.mamba2.state_size': required for architecture mamba2"),
        (lambda c: c.update(seed=2**70), "'seed': 1180591620717411303424 is outside the seed range 0 … 4294967295"),
        (lambda c: c["pretrain"].update(replicates={"models": ["llama"], "seeds": [3, 2**33]}),
         "'pretrain.replicates.seeds.1': 8589934592 is outside the seed range"),
        (lambda c: c["models"]["mdlm"]["diffusion"].update(seed=2**40), "'models.mdlm.diffusion.seed': 1099511627776 is outside"),
        (lambda c: c["models"].update({"m" * 65: c["models"]["llama"]}), "'models': 'mmmm"),
        (lambda c: c["models"]["llama"].update(hidden_size=10**9), "'models.llama.hidden_size': 1000000000 is greater than"),
        (lambda c: c["perturbation"].update(templates=[0, 1]),
         "'perturbation.templates' / 'perturbation.selection_templates': template(s) [1] are both measurement"),
        (lambda c: c["perturbation"].update(selection_templates=[7]),
         "'perturbation.templates' / 'perturbation.selection_templates': relation 'capital' has 3 templates; no template 7"),
        (lambda c: c["perturbation"].update(templates=None, selection_templates=[0, 1, 2]),
         "no measurement phrasing is left"),
    ],
)  # fmt: skip
def test_configs_that_would_crash_a_job_are_rejected_naming_the_key(ci_config: dict, edit, expected: str) -> None:
    assert expected in rejected(edited(ci_config, edit))


def test_a_plugin_noise_type_named_like_a_workflow_file_is_rejected(ci_config: dict) -> None:
    from attnlab.data import register_noise, unregister_noise

    for name in ("train", "inf.tokens"):
        register_noise(name)(lambda item, rng: "Noise.")
    try:
        message = rejected(edited(ci_config, lambda c: c["noise"].update(types=["inf", "train", "inf.tokens"])))
    finally:
        unregister_noise("train")
        unregister_noise("inf.tokens")
    assert "'noise.types.1': a noise type cannot be named 'train': results/data/<dataset>/train.parquet" in message
    assert "'noise.types.2': a noise type cannot be named 'inf.tokens'" in message


# --- messages that say what is wrong ----------------------------------------------------------


def test_messages_say_what_the_key_takes(ci_config: dict) -> None:
    assert "config key 'max_samples': 0: must be an integer ≥ 1, or null" in rejected(edited(ci_config, lambda c: c.update(max_samples=0)))
    gsm8k = "/work/shared/datasets/gsm8k/test.jsonl"
    both = edited(ci_config, lambda c: c["datasets"].update(g={"loader": "gsm8k", "test_path": gsm8k, "hub_id": "openai/gsm8k"}))
    assert "config key 'datasets.g': give one of test_path, hub_id, not both" in rejected(both)
    neither = edited(ci_config, lambda c: c["datasets"].update(g={"loader": "gsm8k"}))
    assert "config key 'datasets.g': give one of test_path, hub_id" in rejected(neither)


@pytest.mark.parametrize("value", [None, "", ",", " , ", []])
def test_a_selection_naming_nothing_selects_everything(ci_config: dict, value) -> None:
    study = validate_config({**ci_config, "select_models": value}, base_dir=REPO)
    assert selected_models(study) == list(ci_config["models"])


# --- config files: duplicate keys, YAML errors, bytes ------------------------------------------


def test_duplicate_keys_are_named_with_their_lines() -> None:
    text = "models:\n  llama: {source: scratch}\n  gpt2: {source: hub, id: gpt2}\n  llama:\n    source: hub\n"
    with pytest.raises(YAMLFileError, match=r"^study\.yaml: line 4: duplicate key 'models\.llama' \(first on line 2\)$"):
        load_yaml_text(text, "study.yaml")
    nested = "datasets:\n  - {a: 1, a: 2}\n"
    with pytest.raises(YAMLFileError, match=r"line 2: duplicate key 'datasets\.0\.a'"):
        load_yaml_text(nested, "x.yaml")
    merged = "base: &b {steps: 1, lr: 2}\npretrain:\n  <<: *b\n  steps: 5\n"
    assert load_yaml_text(merged)["pretrain"] == {"steps": 5, "lr": 2}  # overriding a merged key is not a duplicate


def test_config_check_reports_bad_files_in_one_line(tmp_path: Path, capsys) -> None:
    text = (REPO / "configs" / "ci.yaml").read_text(encoding="utf-8")
    cases = {
        "dup.yaml": (text.replace("  diffllama:\n", "  llama:\n    source: scratch\n  diffllama:\n", 1).encode(),
                     "line 39: duplicate key 'models.llama' (first on line 32)"),
        "syntax.yaml": (text.replace("max_samples: 6", "max_samples: [6").encode(), "line 6: invalid YAML"),
        "latin1.yaml": (text.replace("study: ci", "study: caf\u00e9").encode("latin-1"), "line 3: not UTF-8 (byte 0xe9)"),
    }  # fmt: skip
    for name, (content, what) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        assert main(["config", "check", str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"attnlab: error: {path}: {what}"), err

"""attnlab generate: greedy answers of a real tiny model, noisy prompts, attention shares, name resolution."""

from __future__ import annotations

import io
import json

import pytest
import yaml

from attnlab.cli import main
from attnlab.tools.generate import resolve_model
from hfcache_helpers import tiny_model_folder

QUESTION = "Ava has 3 boxes of 12 pens. She gives 5 pens to Ben. How many pens does Ava have now?"


@pytest.fixture(scope="module")
def tiny(one_torch_thread):
    return tiny_model_folder("llama")


def _run_json(capsys, *args):
    code = main(["generate", *args, "--json", "--device", "cpu", "--max-new-tokens", "6"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_generate_answers_clean_and_noisy_with_attention_shares(tmp_path, monkeypatch, capsys, tiny):
    from attnlab.evaluate.extraction import extract_flexible
    from attnlab.evaluate.generation import generate_greedy
    from attnlab.models.loader import load_model
    from attnlab.prompts import build_prompt

    monkeypatch.chdir(tmp_path)  # no ./config.yaml: the folder is loaded as given
    (group,) = _run_json(capsys, "--model", str(tiny), "--noise", "inf", "--seed", "3", "--attention", QUESTION)
    clean, noisy = group
    assert (clean["noise_type"], noisy["noise_type"]) == ("clean", "inf")
    assert clean["question"] == QUESTION and clean["noise_spans"] == []
    (span,) = noisy["noise_spans"]
    assert noisy["question"][: span["start"]] + noisy["question"][span["end"] :] == QUESTION
    # the key quantities of a typed question are its numbers, and they still cover the same text after insertion
    assert [noisy["question"][s["start"] : s["end"]] for s in noisy["key_spans"]] == ["3", "12", "5"]

    # the continuation is what evaluation's greedy decoding gives for the same prompt
    model, tokenizer = load_model(tiny, device="cpu")
    expected = generate_greedy(model, tokenizer, [build_prompt(noisy["question"])], batch_size=1, max_new_tokens=6,
                               stop_sequences=["Question:", "\n\n"])
    assert noisy["generation"] == expected[0].text
    assert noisy["prediction_flexible"] == extract_flexible(expected[0].text)

    for result in (clean, noisy):
        assert [row["layer"] for row in result["attention"]] == [0, 1]
        for row in result["attention"]:
            assert row["kmi"] + row["ni"] + row["oc"] + row["sink"] == pytest.approx(1.0, abs=1e-5)
            assert row["kmi"] > 0
    assert all(row["ni"] == 0 for row in clean["attention"])  # no noise tokens in the clean prompt
    assert all(row["ni"] > 0 for row in noisy["attention"])  # softmax attention reaches every noise token


def test_generate_reads_stdin_and_prints_a_readable_report(tmp_path, monkeypatch, capsys, tiny):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO(QUESTION + "\n\nHow many legs do 4 cats have?\n"))
    assert main(["generate", "--model", str(tiny), "--device", "cpu", "--max-new-tokens", "4"]) == 0
    out = capsys.readouterr().out
    assert "=== question 1 (clean) ===" in out and "=== question 2 (clean) ===" in out
    assert "--- answer:" in out
    assert main(["generate", "--model", str(tiny), "--noise", "nonsense", "x?"]) == 2
    assert "unknown noise type" in capsys.readouterr().err


def test_model_names_resolve_through_the_config(tmp_path):
    from attnlab.config import validate_config
    from attnlab.study.schema import load_yaml

    from workflow_helpers import REPO

    config = validate_config(load_yaml(REPO / "configs" / "ci.yaml"), base_dir=REPO)
    config["models"]["hubby"] = {"source": "hub", "id": "org/hubby", "revision": "v2", "dtype": "bfloat16",
                                 "trust_remote_code": True}
    assert resolve_model("llama", config).location == "results/models/llama"
    sft = resolve_model("llama+sft-noisy", config, results=tmp_path)
    assert sft.location == str(tmp_path / "models" / "llama+sft-noisy")
    hub = resolve_model("hubby", config)
    assert (hub.location, hub.revision, hub.dtype, hub.trust_remote_code) == ("org/hubby", "v2", "bfloat16", True)
    assert resolve_model("some/folder", config).location == "some/folder"  # not a name: passed to the loader as is
    assert resolve_model("llama", None).location == "llama"


def test_generate_names_the_model_when_it_cannot_be_loaded(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "study.yaml").write_text(yaml.safe_dump({
        "study": "g", "seed": 1,
        "datasets": {"s": {"loader": "synthetic", "train_size": 10, "test_size": 10}},
        "tokenizer": {"corpus": "s", "vocab_size": 320},
        "pretrain": {"corpus": "s", "steps": 1, "batch_size": 1, "learning_rate": 0.001},
        "models": {"llama": {"source": "scratch", "architecture": "llama", "hidden_size": 8, "num_layers": 1, "num_heads": 2}},
    }))
    assert main(["generate", "--model", "llama", "--config", "study.yaml", "x?"]) == 1
    err = capsys.readouterr().err
    assert "--model llama" in err and "results/models/llama does not exist" in err

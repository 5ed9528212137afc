"""``attnlab evaluate`` through argparse and the real model loader, on a saved tiny model; byte-identical outputs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from attnlab.evaluate.cli import evaluate_file, register
from attnlab.evaluate.evaluate import EVAL_COLUMNS, EVAL_SCHEMA
from attnlab.evaluate.tiny import build_tiny_model, build_tiny_tokenizer
from attnlab.io import read_metadata, read_parquet, write_parquet


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="attnlab")
    register(top.add_subparsers(dest="command", required=True))
    return top


def items(prefix: str, n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [f"{prefix}-{i:03d}" for i in range(n)],
            "split": [prefix] * n,
            "question": [f"Ava has {i} boxes of {i + 2} pens. How many pens?" for i in range(n)],
            "answer": [f"Ava has {i}*{i + 2}=<<{i}*{i + 2}={i * (i + 2)}>>{i * (i + 2)} pens.\n#### {i * (i + 2)}" for i in range(n)],
            "answer_number": [float(i * (i + 2)) for i in range(n)],
            "noise_type": ["clean"] * n,
        }
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("evaluate_cli")
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model("diffllama", tokenizer, seed=3)
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    write_parquet(items("test", 7), root / "test.parquet")
    write_parquet(items("train", 20), root / "train.parquet")
    return root


def run(workspace: Path, out: str, spec: dict, *extra: str) -> int:
    """Run ``attnlab evaluate`` in-process (``--threads 1``), restoring torch's thread count afterwards."""
    threads = torch.get_num_threads()
    args = parser().parse_args(
        [
            "evaluate",
            "--model", str(workspace / "model"),
            "--data", str(workspace / "test.parquet"),
            "--spec", json.dumps(spec),
            "--model-name", "tiny-diffllama",
            "--base", "toy",
            "--variant", "clean",
            "--device", "cpu",
            "--threads", "1",
            "--out", str(workspace / out),
            *extra,
        ]
    )
    try:
        return args.func(args)
    finally:
        torch.set_num_threads(threads)


SPEC = {"num_fewshot": 2, "fewshot_seed": 1234, "batch_size": 4, "max_new_tokens": 12}


def test_cli_writes_schema_metadata_and_is_byte_deterministic(workspace: Path) -> None:
    train = ["--train", str(workspace / "train.parquet")]
    assert run(workspace, "a.parquet", SPEC, *train) == 0
    assert run(workspace, "b.parquet", SPEC, *train) == 0
    a, b = workspace / "a.parquet", workspace / "b.parquet"
    assert a.read_bytes() == b.read_bytes()
    assert pq.read_schema(a).remove_metadata().equals(EVAL_SCHEMA)
    table = read_parquet(a)
    assert tuple(table.columns) == EVAL_COLUMNS
    assert table["id"].tolist() == [f"test-{i:03d}" for i in range(7)]
    assert (table["model"] == "tiny-diffllama").all()
    assert (table["n_generated_tokens"].between(1, 12)).all()
    metadata = read_metadata(a)
    assert metadata["eval_spec"] == {**SPEC, "stop_sequences": ["Question:", "\n\n"], "add_special_tokens": True, "diffusion": None}
    assert metadata["model"] == "tiny-diffllama" and metadata["variant"] == "clean" and metadata["base"] == "toy"
    assert metadata["dtype"] == "float32"
    train_table = read_parquet(workspace / "train.parquet")
    assert len(metadata["exemplar_ids"]) == 2
    # every prompt starts with the two recorded exemplars' questions, in draw order
    by_id = dict(zip(train_table["id"], train_table["question"]))
    first, second = (by_id[i] for i in metadata["exemplar_ids"])
    for prompt in table["prompt"]:
        assert prompt.startswith(f"Question: {first}\nAnswer:")
        assert f"\n\nQuestion: {second}\nAnswer:" in prompt
    # a different seed gives different exemplars (and therefore different prompts)
    assert run(workspace, "c.parquet", {**SPEC, "fewshot_seed": 99}, *train) == 0
    assert read_metadata(workspace / "c.parquet")["exemplar_ids"] != metadata["exemplar_ids"]


def test_cli_zero_shot_needs_no_train(workspace: Path) -> None:
    assert run(workspace, "zero.parquet", {**SPEC, "num_fewshot": 0}) == 0
    table = read_parquet(workspace / "zero.parquet")
    assert table["prompt"].iloc[0] == "Question: Ava has 0 boxes of 2 pens. How many pens?\nAnswer:"


def test_cli_errors(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(workspace, "x.parquet", SPEC) == 2  # num_fewshot 2 without --train
    assert "--train PARQUET is required when num_fewshot > 0" in capsys.readouterr().err
    assert run(workspace, "x.parquet", {**SPEC, "batch_sise": 2}) == 2
    assert "unknown eval spec key(s) ['batch_sise']" in capsys.readouterr().err
    assert run(workspace, "x.parquet", SPEC, "--train", str(workspace / "missing.parquet")) == 2
    assert "missing.parquet: no such file" in capsys.readouterr().err
    args = parser().parse_args(
        ["evaluate", "--model", str(workspace / "no-model"), "--data", str(workspace / "test.parquet"),
         "--spec", json.dumps({**SPEC, "num_fewshot": 0}), "--model-name", "m", "--base", "b", "--variant", "v",
         "--out", str(workspace / "x.parquet")]
    )
    assert args.func(args) == 1
    assert "no-model" in capsys.readouterr().err
    assert not (workspace / "x.parquet").exists()


def test_spec_from_file_and_bad_json(workspace: Path, tmp_path: Path) -> None:
    """Every JSON option takes the object as text or as a file; a bad one names the file and line."""
    import argparse

    from attnlab.cli.convention import json_object_arg
    from attnlab.evaluate.cli import parse_spec

    path = tmp_path / "spec.json"
    path.write_text(json.dumps(SPEC))
    assert parse_spec(json_object_arg(str(path)))["batch_size"] == 4
    assert json_object_arg(json.dumps(SPEC)) == SPEC
    bad = tmp_path / "bad.json"
    bad.write_text('{"num_fewshot": 1,\n oops}')
    with pytest.raises(argparse.ArgumentTypeError, match="bad.json: invalid JSON \\(line 2\\)"):
        json_object_arg(str(bad))
    with pytest.raises(argparse.ArgumentTypeError, match="neither a JSON object .* nor a file"):
        json_object_arg("{not json")
    with pytest.raises(argparse.ArgumentTypeError, match="expected a JSON object, got list"):
        json_object_arg("[1, 2]")


def test_evaluate_file_names_the_data_file_on_bad_data(workspace: Path, tmp_path: Path) -> None:
    bad = items("test", 3)
    bad.loc[1, "id"] = bad.loc[0, "id"]
    write_parquet(bad, tmp_path / "dup.parquet")
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model("llama", tokenizer)
    with pytest.raises(ValueError, match="dup.parquet: evaluation data has duplicate id"):
        evaluate_file(
            model, tokenizer, data_path=tmp_path / "dup.parquet", train_path=None,
            spec={**SPEC, "num_fewshot": 0}, model_name="m", base="b", variant="v", out=tmp_path / "o.parquet",
        )

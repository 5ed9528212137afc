"""`attnlab data base|noise`: Parquet outputs, metadata, byte-determinism."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from attnlab.data import DATA_SCHEMA, read_dataset
from attnlab.data.cli import register
from attnlab.io import read_metadata

SPEC = {"loader": "synthetic", "train_size": 60, "test_size": 40}


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="attnlab")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(root: Path) -> dict[str, Path]:
    spec = json.dumps(SPEC)
    paths = {name: root / f"{name}.parquet" for name in ("train", "clean", "inf", "rcs", "sd")}
    assert run(["data", "base", "--spec", spec, "--split", "train", "--seed", "7", "--out", str(paths["train"])]) == 0
    assert run(["data", "base", "--spec", spec, "--split", "test", "--seed", "7", "--n", "30", "--out", str(paths["clean"])]) == 0
    for noise in ("inf", "rcs", "sd"):
        argv = ["data", "noise", "--input", str(paths["clean"]), "--noise-type", noise, "--seed", "3", "--out", str(paths[noise])]
        assert run(argv) == 0
    return paths


def test_outputs_schema_metadata_and_byte_determinism(tmp_path: Path) -> None:
    first, second = build(tmp_path / "a"), build(tmp_path / "b")
    for name in first:
        assert digest(first[name]) == digest(second[name]), name
        assert pq.read_schema(first[name]).remove_metadata().equals(DATA_SCHEMA.remove_metadata()), name
    assert read_metadata(first["train"]) == {"stage": "data", "spec": SPEC, "split": "train", "seed": 7, "n": None, "noise_type": "clean"}
    assert read_metadata(first["rcs"]) == {
        "stage": "data", "spec": SPEC, "split": "test", "seed": 7, "n": 30, "noise_type": "rcs", "noise_seed": 3,
    }  # fmt: skip
    clean, noisy = read_dataset(first["clean"]), read_dataset(first["sd"])
    assert len(clean) == 30 and len(read_dataset(first["train"])) == 60
    assert set(clean["noise_type"]) == {"clean"} and set(noisy["noise_type"]) == {"sd"}
    assert noisy["original_question"].tolist() == clean["question"].tolist()
    assert digest(first["inf"]) != digest(first["sd"])


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run(["data", "base", "--spec", "{not json", "--split", "test", "--seed", "1", "--out", str(tmp_path / "x.parquet")])
    assert "argument --spec: neither a JSON object" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run(["data", "base", "--spec", "{}", "--split", "dev", "--seed", "1", "--out", str(tmp_path / "x.parquet")])
    out = tmp_path / "clean.parquet"
    run(["data", "base", "--spec", json.dumps(SPEC), "--split", "test", "--seed", "1", "--n", "3", "--out", str(out)])
    assert run(["data", "noise", "--input", str(out), "--noise-type", "LOUD", "--seed", "1", "--out", str(tmp_path / "y.parquet")]) == 2
    assert "unknown noise type 'LOUD'" in capsys.readouterr().err
    assert not (tmp_path / "y.parquet").exists()

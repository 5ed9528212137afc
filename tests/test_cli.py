"""The top-level ``attnlab`` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from attnlab.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_config_check_prints_selections(capsys) -> None:
    assert main(["config", "check", str(REPO / "config.yaml"), "--base-dir", str(REPO)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["models"] == ["llama", "diffllama", "mdlm", "gpt2", "mamba2"]
    assert summary["variants"] == ["clean", "inf", "rcs", "sd"]


def test_config_check_rejects_bad_config_naming_the_key(tmp_path: Path, capsys) -> None:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["pretrain"]["batch_sise"] = 8
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["config", "check", str(path)]) == 2
    assert "pretrain.batch_sise" in capsys.readouterr().err


def test_data_subcommand_does_not_import_torch() -> None:
    code = "import sys; from attnlab.cli import build_parser; build_parser('data'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_bad_input_exits_2_with_one_message_form(tmp_path, capsys) -> None:
    """Every command: bad input is exit 2 and ``attnlab <command> <subcommand>: error: <what>``."""
    missing = str(tmp_path / "missing.parquet")
    assert main(["validation", "tables", "--pruning", missing, "--out-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("attnlab validation tables: error: ")
    assert main(["report", "tables", "--inputs", missing, "--out-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"attnlab report tables: error: {missing}")
    spec = '{"templates": [1], "selection_templates": [1], "max_facts": 2}'  # the same phrasing twice
    assert main(["perturbation", "run", "--model", str(tmp_path / "no-model"), "--model-name", "m", "--relations",
                 "fictional", "--spec", spec, "--seed", "1", "--out", str(tmp_path / "o.parquet")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("attnlab perturbation run: error: template(s) [1] are both measurement"), err
    assert not (tmp_path / "o.parquet").exists()


def test_a_key_error_is_named_without_quotes() -> None:
    from attnlab.cli.convention import error_message

    assert error_message("attnlab x y", KeyError("relation 'a' is not in the knowledge base")) == (
        "attnlab x y: error: relation 'a' is not in the knowledge base")

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

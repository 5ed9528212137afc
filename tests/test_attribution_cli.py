"""``attnlab attribution``: score files from a saved tiny model, byte-stable; report; errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from attnlab.cli import main
from attnlab.evaluate.tiny import build_tiny_model, build_tiny_tokenizer
from attnlab.io import read_metadata, write_parquet

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPEC = {
    "methods": ["dp", "stp", "michel"],
    "items": 2,
    "ig_steps": 4,
    "quadrature": "trapezoid",
    "path_samples": 2,
    "baseline": 0.0,
    "postprocess": "signed",
    "layers": {"first": 0, "last": None},
    "objective": {"target": "solution", "normalization": "mean_masked"},
    "seed": 3,
    "batch_rows": 8,
    "dtype": "float32",
}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("attribution_cli")
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model("llama", tokenizer, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64)
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    data = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "question": ["Ava has 3 boxes of 5 pens. How many pens does Ava have?"] * 3,
            "answer": ["Ava has 3*5=<<3*5=15>>15 pens.\n#### 15"] * 3,
        }
    )
    write_parquet(data, root / "clean.parquet")
    write_parquet(data.assign(id=["x", "y", "z"]), root / "inf.parquet")
    return root


def _score(study: Path, out: str, spec: dict = SPEC) -> int:
    return main([
        "attribution", "score", "--model", str(study / "model"),
        "--data", str(study / "clean.parquet"), str(study / "inf.parquet"), "--variants", "clean", "inf",
        "--spec", json.dumps(spec), "--model-name", "tiny", "--base", "toy", "--device", "cpu", "--threads", "1",
        "--out-dir", str(study / out),
    ])


def test_score_writes_every_method_byte_stably(study: Path) -> None:
    assert _score(study, "run1") == 0
    assert _score(study, "run2") == 0
    for method in ("dp", "stp", "michel"):
        for name in (f"{method}.parquet", f"{method}_items.parquet"):
            assert (study / "run1" / name).read_bytes() == (study / "run2" / name).read_bytes()
        scores = pd.read_parquet(study / "run1" / f"{method}.parquet")
        assert len(scores) == 8 and (scores["n_items"] == 4).all()  # 2 items × 2 variants pooled
        meta = read_metadata(study / "run1" / f"{method}.parquet")
        assert meta["spec"]["method"] == method and meta["variants"] == ["clean", "inf"]
        assert ("path_samples" in meta["spec"]) == (method == "stp")
    items = pd.read_parquet(study / "run1" / "dp_items.parquet")
    assert set(items["item_id"]) == {"a", "b", "x", "y"} and set(items["variant"]) == {"clean", "inf"}
    # completeness bookkeeping: Σ attributions − (J(1) − J(α₀)) per item
    first = items[items["item_id"] == "a"]
    delta = first["attribution"].sum() - (first["j_full"].iloc[0] - first["j_baseline"].iloc[0])
    assert first["completeness_delta"].iloc[0] == pytest.approx(delta, abs=1e-9)


def test_report_writes_correlations_and_heatmaps(study: Path) -> None:
    if not (study / "run1" / "dp.parquet").exists():
        assert _score(study, "run1") == 0
    inputs = [str(study / "run1" / f"{m}.parquet") for m in ("dp", "stp", "michel")]
    assert main([
        "attribution", "report", "--inputs", *inputs, "--out", str(study / "corr.parquet"),
        "--markdown", str(study / "corr.md"), "--figures-dir", str(study / "figures"),
    ]) == 0
    table = pd.read_parquet(study / "corr.parquet")
    assert len(table) == 3 and (table["n_heads"] == 8).all() and table["spearman_rho"].between(-1, 1).all()
    assert "dp vs stp" in (study / "corr.md").read_text()
    for method in ("dp", "stp", "michel"):
        assert (study / "figures" / f"tiny_toy_{method}.png").stat().st_size > 0


def test_errors_are_reported(study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _score(study, "bad", {**SPEC, "methods": ["ig"]}) == 2
    assert "unknown attribution method" in capsys.readouterr().err
    assert _score(study, "bad", {**SPEC, "layers": {"first": 0, "last": 7}}) == 2
    assert "do not fit" in capsys.readouterr().err
    assert main(["attribution", "score", "--model", str(study / "model"), "--data", str(study / "nope.parquet"),
                 "--variants", "clean", "--spec", json.dumps(SPEC), "--model-name", "m", "--base", "b",
                 "--out-dir", str(study / "bad")]) == 2
    assert "no such file" in capsys.readouterr().err

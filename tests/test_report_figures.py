"""Tests of attnlab.report.figures and the `attnlab report figures` CLI."""

from __future__ import annotations

import argparse
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from attnlab.report.cli import register
from attnlab.report.figures import plot_accuracy, plot_robustness
from attnlab.report.tables import accuracy_tables, write_tables

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def eval_frame(model: str, base: str, variant: str, correct: np.ndarray) -> pd.DataFrame:
    n = correct.size
    return pd.DataFrame(
        {
            "model": model,
            "base": base,
            "variant": variant,
            "id": [f"{base}-{index}" for index in range(n)],
            "correct_strict": correct,
            "correct_flexible": correct | (np.arange(n) % 5 == 0),
        }
    )


def study_tables(bases: tuple[str, ...] = ("gsm", "svamp"), seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    frames = []
    for model, skill in (("diffllama", 0.7), ("llama", 0.55)):
        for base in bases:
            for variant, penalty in (("clean", 0.0), ("inf", 0.2), ("sd", 0.3), ("rcs", 0.1)):
                frames.append(eval_frame(model, base, variant, rng.random(30) < skill - penalty))
    return accuracy_tables(frames)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", data[16:24])  # IHDR chunk
    return width, height


def test_plot_accuracy_is_byte_stable_and_depends_on_data(tmp_path: Path) -> None:
    tables = study_tables()
    plot_accuracy(tables["accuracy"], tmp_path / "a1.png")
    plot_accuracy(tables["accuracy"], tmp_path / "a2.png")
    assert (tmp_path / "a1.png").read_bytes() == (tmp_path / "a2.png").read_bytes()
    assert b"Software" not in (tmp_path / "a1.png").read_bytes()
    plot_accuracy(tables["accuracy"], tmp_path / "flex.png", metric="flexible")
    assert (tmp_path / "flex.png").read_bytes() != (tmp_path / "a1.png").read_bytes()
    # one panel per base dataset: two bases give a wider figure than one
    plot_accuracy(study_tables(bases=("gsm",))["accuracy"], tmp_path / "one.png")
    (width_two, height_two), (width_one, height_one) = png_size(tmp_path / "a1.png"), png_size(tmp_path / "one.png")
    assert width_two > width_one and height_two == height_one


def test_plot_robustness_is_byte_stable(tmp_path: Path) -> None:
    tables = study_tables()
    plot_robustness(tables["robustness"], tmp_path / "r1.png")
    plot_robustness(tables["robustness"], tmp_path / "r2.png")
    assert (tmp_path / "r1.png").read_bytes() == (tmp_path / "r2.png").read_bytes()
    plot_robustness(study_tables(seed=1)["robustness"], tmp_path / "r3.png")
    assert (tmp_path / "r3.png").read_bytes() != (tmp_path / "r1.png").read_bytes()


def test_plots_reject_bad_tables(tmp_path: Path) -> None:
    tables = study_tables()
    with pytest.raises(ValueError, match="no rows for metric 'exact'"):
        plot_accuracy(tables["accuracy"], tmp_path / "x.png", metric="exact")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['drop_ci_low'\]"):
        plot_robustness(tables["robustness"].drop(columns=["drop_ci_low"]), tmp_path / "x.png")
    doubled = pd.concat([tables["accuracy"], tables["accuracy"].head(1)])
    with pytest.raises(ValueError, match="more than one row for model='diffllama'"):
        plot_accuracy(doubled, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_plot_robustness_without_noisy_variants(tmp_path: Path) -> None:
    tables = accuracy_tables([eval_frame("m", "gsm", "clean", np.array([True, False, True]))])
    assert tables["robustness"].empty
    plot_robustness(tables["robustness"], tmp_path / "r.png")
    width, height = png_size(tmp_path / "r.png")
    assert (width, height) == (750, 300)  # the 5 x 2 inch placeholder at 150 dpi


def test_cli_report_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tables(study_tables(), tmp_path / "tables")
    parser = argparse.ArgumentParser(prog="attnlab")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        ["report", "figures", "--tables-dir", str(tmp_path / "tables"), "--out-dir", str(tmp_path / "figures")]
    )
    assert args.func(args) == 0
    for name in ("accuracy.png", "robustness.png"):
        assert (tmp_path / "figures" / name).read_bytes()[:8] == PNG_SIGNATURE
    args = parser.parse_args(
        ["report", "figures", "--tables-dir", str(tmp_path / "none"), "--out-dir", str(tmp_path / "f2")]
    )
    assert args.func(args) == 2  # bad input
    assert "accuracy.parquet: table not found" in capsys.readouterr().err

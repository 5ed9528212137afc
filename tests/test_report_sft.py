"""Zero-shot vs SFT gain table (Newcombe interval, exact McNemar) and its figure and CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from attnlab.cli import main
from attnlab.io import read_metadata, write_parquet
from attnlab.report.figures import plot_sft_gain
from attnlab.report.tables import sft_gain_table
from attnlab.stats import mcnemar_exact, paired_difference_interval


def frame(model: str, variant: str, correct: list[bool], base: str = "synthetic") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": model, "base": base, "variant": variant, "id": [f"q{i}" for i in range(len(correct))],
            "correct_strict": correct, "correct_flexible": [True] * len(correct),
        }
    )  # fmt: skip


BASE_CLEAN = [True, True, False, False, True, False, False, False]
SFT_CLEAN = [True, False, True, True, True, True, False, True]
BASE_INF = [False] * 8
SFT_INF = [True, True, True, False, False, False, False, False]


def frames() -> list[pd.DataFrame]:
    return [
        frame("llama", "clean", BASE_CLEAN), frame("llama+sft-noisy", "clean", SFT_CLEAN),
        frame("llama", "inf", BASE_INF), frame("llama+sft-noisy", "inf", SFT_INF),
        frame("diffllama", "clean", BASE_CLEAN),  # a base without SFT variant: not in the table
    ]  # fmt: skip


def test_gain_table_pairs_each_sft_model_with_its_base() -> None:
    table = sft_gain_table(frames())
    assert list(table["model"].unique()) == ["llama+sft-noisy"]
    assert set(table["base_model"]) == {"llama"} and set(table["recipe"]) == {"noisy"}
    assert list(table["variant"]) == ["clean", "clean", "inf", "inf"]  # clean first, strict before flexible
    row = table[(table.variant == "clean") & (table.metric == "strict")].iloc[0]
    assert row.n == 8 and row.pass_at_1_base == 3 / 8 and row.pass_at_1_sft == 6 / 8
    assert (row.both_correct, row.only_base, row.only_sft, row.neither_correct) == (2, 1, 4, 1)
    gain, low, high = paired_difference_interval(np.array(BASE_CLEAN), np.array(SFT_CLEAN))
    assert row.gain == pytest.approx(3 / 8) == pytest.approx(gain)
    assert (row.gain_ci_low, row.gain_ci_high) == pytest.approx((low, high))
    assert row.mcnemar_p == pytest.approx(mcnemar_exact(1, 4))
    inf = table[(table.variant == "inf") & (table.metric == "strict")].iloc[0]
    # 3 of 3 discordant items favour SFT: gain 3/8, yet n = 8 is too few (interval spans 0, p = 0.25)
    assert inf.gain == pytest.approx(3 / 8) and inf.gain_ci_low < 0 < inf.gain_ci_high and inf.mcnemar_p == pytest.approx(0.25)
    flexible = table[table.metric == "flexible"]
    assert (flexible.gain == 0).all() and (flexible.mcnemar_p == 1).all()


def test_gain_table_needs_the_base_evaluation() -> None:
    with pytest.raises(ValueError, match="base model 'llama' has no evaluation"):
        sft_gain_table([frame("llama+sft-noisy", "clean", SFT_CLEAN)])
    empty = sft_gain_table([frame("llama", "clean", BASE_CLEAN)])
    assert empty.empty and "gain_ci_low" in empty.columns


def test_report_sft_cli_writes_table_and_figure(tmp_path: Path) -> None:
    inputs = []
    for i, f in enumerate(frames()):
        inputs.append(str(tmp_path / f"eval{i}.parquet"))
        write_parquet(f, inputs[-1])
    out = tmp_path / "tables"
    assert main(["report", "sft", "--inputs", *inputs, "--out-dir", str(out), "--figure", str(tmp_path / "sft.png")]) == 0
    table = pd.read_parquet(out / "sft.parquet")
    assert len(table) == 4 and read_metadata(out / "sft.parquet")["inputs"] == inputs
    assert "| llama+sft-noisy |" in (out / "sft.md").read_text()
    png = (tmp_path / "sft.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    plot_sft_gain(table, tmp_path / "again.png")
    assert (tmp_path / "again.png").read_bytes() == png  # byte-stable
    assert main(["report", "sft", "--inputs", inputs[1], "--out-dir", str(out)]) == 2  # base missing: bad input, clear error


def test_empty_gain_table_gives_a_placeholder_figure(tmp_path: Path) -> None:
    plot_sft_gain(sft_gain_table([frame("llama", "clean", BASE_CLEAN)]), tmp_path / "sft.png")
    assert (tmp_path / "sft.png").stat().st_size > 0

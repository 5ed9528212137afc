"""Tests of attnlab.report.tables and the `attnlab report tables` CLI on constructed eval files."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from scipy import stats as sps

from attnlab.io import read_metadata, read_parquet, write_parquet
from attnlab.report.cli import register
from attnlab.report.tables import TABLE_SCHEMAS, accuracy_tables, markdown_table, write_tables
from attnlab.stats import paired_difference_interval, wilson_interval


def eval_frame(
    model: str,
    base: str,
    variant: str,
    strict: list[int],
    flexible: list[int] | None = None,
    ids: list[str] | None = None,
) -> pd.DataFrame:
    """A per-sample evaluation frame following the eval contract, with given correctness."""
    n = len(strict)
    ids = ids if ids is not None else [f"{base}-{index:03d}" for index in range(n)]
    flexible = flexible if flexible is not None else strict
    return pd.DataFrame(
        {
            "model": model,
            "base": base,
            "variant": variant,
            "id": ids,
            "prompt": [f"Question: q{index}\nAnswer:" for index in range(n)],
            "generation": ["The answer is 1." for _ in range(n)],
            "prediction": ["1" if value else "2" for value in strict],
            "prediction_flexible": ["1" for _ in range(n)],
            "gold": np.ones(n, dtype="float64"),
            "correct_strict": np.array(strict, dtype=bool),
            "correct_flexible": np.array(flexible, dtype=bool),
            "n_generated_tokens": np.full(n, 5, dtype="int64"),
            "n_prompt_tokens": np.full(n, 12, dtype="int64"),
        }
    )


# model A: 8/10 on clean, 5/10 on inf; discordant: items 4-7 lost (b = 4), item 8 gained (c = 1)
A_CLEAN = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0]
A_INF = [1, 1, 1, 1, 0, 0, 0, 0, 1, 0]
# model B: 6/10 on clean, 6/10 on inf
B_CLEAN = [0, 1, 1, 0, 1, 0, 1, 1, 0, 1]
B_INF = [1, 1, 0, 0, 1, 0, 1, 1, 0, 1]


def study_frames() -> list[pd.DataFrame]:
    return [
        eval_frame("model_a", "gsm", "clean", A_CLEAN, flexible=[1] * 9 + [0]),
        eval_frame("model_a", "gsm", "inf", A_INF),
        eval_frame("model_b", "gsm", "inf", B_INF),
        eval_frame("model_b", "gsm", "clean", B_CLEAN),
    ]


def row(table: pd.DataFrame, **where: str) -> pd.Series:
    mask = np.ones(len(table), dtype=bool)
    for column, value in where.items():
        mask &= (table[column] == value).to_numpy()
    assert mask.sum() == 1, f"expected one row for {where}, found {mask.sum()}"
    return table[mask].iloc[0]


def test_accuracy_table_counts_and_wilson() -> None:
    accuracy = accuracy_tables(study_frames())["accuracy"]
    assert len(accuracy) == 2 * 2 * 2  # models x variants x metrics
    a_clean = row(accuracy, model="model_a", variant="clean", metric="strict")
    assert (a_clean["n"], a_clean["correct"], a_clean["pass_at_1"]) == (10, 8, 0.8)
    assert (a_clean["ci_low"], a_clean["ci_high"]) == pytest.approx(wilson_interval(8, 10))
    a_clean_flex = row(accuracy, model="model_a", variant="clean", metric="flexible")
    assert (a_clean_flex["correct"], a_clean_flex["pass_at_1"]) == (9, 0.9)
    b_inf = row(accuracy, model="model_b", variant="inf", metric="strict")
    assert (b_inf["correct"], b_inf["pass_at_1"]) == (6, 0.6)
    assert b_inf["ci_low"] < 0.6 < b_inf["ci_high"]


def test_rows_sorted_clean_first_strict_first_and_independent_of_input_order() -> None:
    tables = accuracy_tables(study_frames())
    accuracy = tables["accuracy"]
    assert list(accuracy["model"]) == ["model_a"] * 4 + ["model_b"] * 4
    assert list(accuracy["variant"][:4]) == ["clean", "clean", "inf", "inf"]
    assert list(accuracy["metric"][:4]) == ["strict", "flexible", "strict", "flexible"]
    shuffled = accuracy_tables(list(reversed(study_frames())))
    for name, table in tables.items():
        pd.testing.assert_frame_equal(table, shuffled[name])


def test_variant_order_puts_clean_before_alphabetically_earlier_noise() -> None:
    frames = [eval_frame("m", "gsm", variant, [1, 0]) for variant in ("sd", "clean", "aaa", "inf")]
    accuracy = accuracy_tables(frames)["accuracy"]
    assert list(dict.fromkeys(accuracy["variant"])) == ["clean", "aaa", "inf", "sd"]


def test_robustness_drop_interval_and_exact_mcnemar() -> None:
    robustness = accuracy_tables(study_frames())["robustness"]
    assert len(robustness) == 2 * 1 * 2  # models x noisy variants x metrics
    a = row(robustness, model="model_a", variant="inf", metric="strict")
    clean, noisy = np.array(A_CLEAN, bool), np.array(A_INF, bool)
    lost, gained = int((clean & ~noisy).sum()), int((~clean & noisy).sum())
    assert (lost, gained) == (4, 1)
    assert (a["only_clean"], a["only_noisy"]) == (lost, gained)
    assert (a["both_correct"], a["neither_correct"]) == (4, 1)
    assert (a["n"], a["n_clean"], a["n_noisy"]) == (10, 10, 10)
    assert (a["pass_at_1_clean"], a["pass_at_1_noisy"]) == (0.8, 0.5)
    assert a["drop"] == pytest.approx(-0.3)
    expected_p = sps.binomtest(min(lost, gained), lost + gained, 0.5).pvalue  # = 2 * 6/32
    assert a["mcnemar_p"] == pytest.approx(expected_p)
    assert a["mcnemar_p"] == pytest.approx(0.375)
    _, low, high = paired_difference_interval(clean, noisy)
    assert (a["drop_ci_low"], a["drop_ci_high"]) == pytest.approx((low, high))
    assert a["drop_ci_low"] < -0.3 < a["drop_ci_high"]

    b = row(robustness, model="model_b", variant="inf", metric="strict")
    assert b["drop"] == pytest.approx(0.0)
    assert (b["only_clean"], b["only_noisy"]) == (1, 1)
    assert b["mcnemar_p"] == 1.0


def test_robustness_pairs_on_id_intersection() -> None:
    clean = eval_frame("m", "gsm", "clean", [1, 1, 0, 1], ids=["q1", "q2", "q3", "q4"])
    # noisy lacks q1 and has an extra q9; q2 lost, q3 gained, q4 kept
    noisy = eval_frame("m", "gsm", "inf", [1, 0, 1, 1], ids=["q9", "q2", "q3", "q4"])
    r = row(accuracy_tables([clean, noisy])["robustness"], metric="strict")
    assert (r["n"], r["n_clean"], r["n_noisy"]) == (3, 4, 4)
    assert (r["both_correct"], r["only_clean"], r["only_noisy"], r["neither_correct"]) == (1, 1, 1, 0)
    assert r["pass_at_1_clean"] == pytest.approx(2 / 3)
    assert r["pass_at_1_noisy"] == pytest.approx(2 / 3)


def test_pairs_by_id_not_by_row_order() -> None:
    clean = eval_frame("m", "gsm", "clean", [1, 0, 0], ids=["a", "b", "c"])
    noisy = eval_frame("m", "gsm", "inf", [0, 0, 1], ids=["c", "b", "a"])  # same scores per id, shuffled rows
    r = row(accuracy_tables([clean, noisy])["robustness"], metric="strict")
    assert (r["only_clean"], r["only_noisy"], r["drop"]) == (0, 0, 0.0)


def test_mcnemar_table_model_pairs() -> None:
    frames = study_frames() + [eval_frame("model_c", "gsm", "clean", [1] * 10)]
    mcnemar = accuracy_tables(frames)["mcnemar"]
    clean_strict = mcnemar[(mcnemar["variant"] == "clean") & (mcnemar["metric"] == "strict")]
    assert list(zip(clean_strict["model_a"], clean_strict["model_b"])) == [
        ("model_a", "model_b"),
        ("model_a", "model_c"),
        ("model_b", "model_c"),
    ]
    inf_strict = mcnemar[(mcnemar["variant"] == "inf") & (mcnemar["metric"] == "strict")]
    assert len(inf_strict) == 1  # model_c has no inf evaluation

    ab = row(mcnemar, variant="clean", metric="strict", model_a="model_a", model_b="model_b")
    a, b = np.array(A_CLEAN, bool), np.array(B_CLEAN, bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    assert (ab["both_correct"], ab["only_a"], ab["only_b"], ab["neither_correct"]) == (
        int((a & b).sum()),
        only_a,
        only_b,
        int((~a & ~b).sum()),
    )
    assert ab["n"] == 10
    assert ab["mcnemar_p"] == pytest.approx(sps.binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue)
    assert ab["diff"] == pytest.approx(0.6 - 0.8)
    assert (ab["pass_at_1_a"], ab["pass_at_1_b"]) == (0.8, 0.6)
    assert ab["diff_ci_low"] < ab["diff"] < ab["diff_ci_high"]

    ac = row(mcnemar, variant="clean", metric="strict", model_a="model_a", model_b="model_c")
    assert (ac["only_a"], ac["only_b"]) == (0, 2)
    assert ac["mcnemar_p"] == pytest.approx(0.5)  # 2 * 0.5^2


def test_duplicate_model_base_variant_is_rejected() -> None:
    frames = study_frames() + [eval_frame("model_a", "gsm", "inf", A_INF)]
    with pytest.raises(ValueError, match=r"model='model_a', base='gsm', variant='inf' appears twice.*frame 1.*frame 4"):
        accuracy_tables(frames)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda f: f.drop(columns=["correct_flexible"]),
            r"eval/x\.parquet: missing column\(s\) \['correct_flexible'\]",
        ),
        (lambda f: f.iloc[0:0], "has no rows"),
        (lambda f: f.assign(id=["same"] * len(f)), "item id 'same' appears more than once"),
        (lambda f: f.assign(correct_strict=[None] * len(f)), "missing value"),
        (lambda f: f.assign(correct_strict=[0.5] * len(f)), "must be boolean"),
    ],
)
def test_bad_frames_name_the_source(mutate, message) -> None:
    frame = mutate(eval_frame("m", "gsm", "clean", [1, 0, 1]))
    with pytest.raises(ValueError, match=message):
        accuracy_tables([frame], sources=["eval/x.parquet"])


def test_noisy_without_clean_or_without_shared_ids_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"noisy variant 'inf' has no 'clean'"):
        accuracy_tables([eval_frame("m", "gsm", "inf", [1, 0])])
    clean = eval_frame("m", "gsm", "clean", [1, 0], ids=["a", "b"])
    noisy = eval_frame("m", "gsm", "inf", [1, 0], ids=["c", "d"])
    with pytest.raises(ValueError, match="share no item ids"):
        accuracy_tables([clean, noisy])


def test_write_tables_round_trip_and_byte_identical(tmp_path: Path) -> None:
    tables = accuracy_tables(study_frames())
    written = write_tables(tables, tmp_path / "one", metadata={"inputs": ["x"], "confidence": 0.95})
    assert [path.name for path in written] == [
        f"{name}.{ext}" for name in ("accuracy", "robustness", "mcnemar") for ext in ("parquet", "csv", "md")
    ]
    tables_again = accuracy_tables(list(reversed(study_frames())))
    write_tables(tables_again, tmp_path / "two", metadata={"inputs": ["x"], "confidence": 0.95})
    for path in written:
        assert path.read_bytes() == (tmp_path / "two" / path.name).read_bytes(), path.name
    for name, table in tables.items():
        pd.testing.assert_frame_equal(read_parquet(tmp_path / "one" / f"{name}.parquet"), table, check_dtype=False)
        assert pd.read_csv(tmp_path / "one" / f"{name}.csv").shape == table.shape
    assert read_metadata(tmp_path / "one" / "robustness.parquet") == {"inputs": ["x"], "confidence": 0.95}
    markdown = (tmp_path / "one" / "accuracy.md").read_text()
    assert markdown.startswith("# accuracy\n")
    assert "| model_a | gsm | clean | strict | 10 | 8 | 0.8000 | " in markdown


def test_single_model_gives_typed_empty_mcnemar_table(tmp_path: Path) -> None:
    tables = accuracy_tables([eval_frame("m", "gsm", "clean", [1, 0, 1])])
    assert tables["mcnemar"].empty and tables["robustness"].empty
    write_tables(tables, tmp_path)
    schema = pq.read_schema(tmp_path / "mcnemar.parquet")
    assert schema.remove_metadata().equals(TABLE_SCHEMAS["mcnemar"])


def test_markdown_table_format() -> None:
    frame = pd.DataFrame({"name": ["a|b"], "n": [3], "value": [0.123456], "mcnemar_p": [0.000123456]})
    assert markdown_table(frame).splitlines() == [
        "| name | n | value | mcnemar_p |",
        "| :--- | ---: | ---: | ---: |",
        "| a\\|b | 3 | 0.1235 | 0.000123 |",
    ]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attnlab")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_report_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inputs = []
    for frame in study_frames():
        model, base, variant = frame.loc[0, ["model", "base", "variant"]]
        path = tmp_path / "eval" / model / base / f"{variant}.parquet"
        write_parquet(frame, path, metadata={"model": model})
        inputs.append(str(path))
    args = _parser().parse_args(["report", "tables", "--inputs", *inputs, "--out-dir", str(tmp_path / "tables")])
    assert args.func(args) == 0
    accuracy = read_parquet(tmp_path / "tables" / "accuracy.parquet")
    pd.testing.assert_frame_equal(accuracy, accuracy_tables(study_frames())["accuracy"], check_dtype=False)
    assert read_metadata(tmp_path / "tables" / "mcnemar.parquet") == {"inputs": inputs, "confidence": 0.95}
    assert (tmp_path / "tables" / "robustness.md").is_file()

    # the same file twice: a duplicate model x base x variant, reported with both file names
    args = _parser().parse_args(
        ["report", "tables", "--inputs", inputs[0], inputs[0], "--out-dir", str(tmp_path / "bad")]
    )
    assert args.func(args) == 2  # bad input
    error = capsys.readouterr().err
    assert "appears twice" in error and inputs[0] in error
    assert not (tmp_path / "bad").exists()

    missing = str(tmp_path / "nope.parquet")
    args = _parser().parse_args(["report", "tables", "--inputs", missing, "--out-dir", str(tmp_path / "bad")])
    assert args.func(args) == 2
    assert "nope.parquet: evaluation file not found" in capsys.readouterr().err

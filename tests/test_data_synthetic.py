"""The synthetic GSM8K-style generator (loader "synthetic")."""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import pytest

from attnlab.data import BASE_COLUMNS, DataFormatError, load_base_dataset
from attnlab.data.synthetic import default_templates_path, load_templates

SPEC = {"loader": "synthetic", "train_size": 3000, "test_size": 500}
ANNOTATION = re.compile(r"<<([^<>=]+)=([^<>]+)>>([^\s]+)")


@pytest.fixture(scope="module")
def test_split():
    return load_base_dataset(SPEC, "test", seed=0)


@pytest.fixture(scope="module")
def train_split():
    return load_base_dataset(SPEC, "train", seed=0)


def exact(expression: str) -> Fraction:
    """Evaluate a calculator annotation with Fractions (only + - * / and parentheses)."""
    assert re.fullmatch(r"[\d.+\-*/()]+", expression), expression
    return eval(re.sub(r"(\d+(?:\.\d+)?)", r"Fraction('\1')", expression), {"Fraction": Fraction})


def test_columns_ids_and_families(test_split) -> None:
    assert list(test_split.columns) == list(BASE_COLUMNS)
    assert len(test_split) == 500
    assert test_split["id"].tolist() == [f"synthetic-test-{i:05d}" for i in range(500)]
    assert set(test_split["split"]) == {"test"}
    assert test_split["family"].nunique() >= 8
    assert {"shopping", "school", "cooking", "travel", "work", "farming", "sports"} <= set(test_split["topic"])
    assert test_split["answer_number"].dtype == "float64"


def test_bank_has_at_least_eight_families_with_one_to_four_steps() -> None:
    bank = load_templates(str(default_templates_path()))
    assert len(bank.families) >= 8
    steps = {len(t.steps) for templates in bank.families.values() for t in templates}
    assert steps == {1, 2, 3, 4}
    assert min(len(bank.names["female"]), len(bank.names["male"])) >= 20


def test_solutions_are_gsm8k_format_and_arithmetic_is_right(test_split) -> None:
    for row in test_split.itertuples():
        lines = row.answer.split("\n")
        assert re.fullmatch(r"#### -?\d+(\.\d+)?", lines[-1]), row.answer
        assert float(lines[-1][5:]) == row.answer_number
        assert 1 <= len(lines) - 1 <= 4
        for line in lines[:-1]:
            (expression, result, written), = ANNOTATION.findall(line)  # one annotation per step line
            assert line.count(f"{expression}=<<{expression}={result}>>{result}") == 1  # "3*4=<<3*4=12>>12"
            value = exact(expression)
            assert Fraction(result) == value and result == written
            assert 0 <= value < 1000 and (value * 100).denominator == 1
            assert not result.endswith(".0") and "$" not in result
        assert lines[-1] == f"#### {written}"  # the answer is the last step's result


def test_key_spans_are_the_numbers_of_the_question_and_the_solution_uses_them(test_split) -> None:
    for row in test_split.itertuples():
        spans = [(s["start"], s["end"]) for s in row.key_spans]
        assert spans, row.question
        texts = [row.question[s:e] for s, e in spans]
        # every digit of the question is inside a key span, and every span is exactly a number
        covered = set().union(*(range(s, e) for s, e in spans))
        assert all(i in covered for i, ch in enumerate(row.question) if ch.isdigit()), row.question
        for text in texts:
            assert re.fullmatch(r"\d+(\.\d\d?)?", text)
            assert re.search(rf"(?<![\d.]){re.escape(text)}(?![\d])", row.answer), (text, row.answer)


def test_money_and_decimals_appear_only_in_some_families(test_split) -> None:
    has_decimal = test_split["question"].str.contains(r"\d\.\d")
    assert 0.05 < has_decimal.mean() < 0.5
    assert test_split.loc[has_decimal, "family"].nunique() < test_split["family"].nunique()
    assert test_split["question"].str.contains(r"\$\d+\.(?:25|50|75)\b").any()
    cents = test_split["question"].str.findall(r"\d+\.(\d+)").explode().dropna()
    assert set(cents) <= {"5", "25", "50", "75"}


def test_train_and_test_share_no_question(train_split, test_split) -> None:
    assert train_split["question"].is_unique and test_split["question"].is_unique
    assert not set(train_split["question"]) & set(test_split["question"])
    assert len(train_split) == 3000


def test_test_split_does_not_depend_on_train_size(test_split) -> None:
    other = load_base_dataset({**SPEC, "train_size": 17}, "test", seed=0)
    assert other.equals(test_split)


def test_n_truncates_and_seed_changes_items(test_split) -> None:
    first = load_base_dataset(SPEC, "test", seed=0, n=25)
    assert first.equals(test_split.iloc[:25].reset_index(drop=True))
    assert load_base_dataset(SPEC, "train", 0, n=10).equals(
        load_base_dataset(SPEC, "train", 0).iloc[:10].reset_index(drop=True)
    )
    other_seed = load_base_dataset(SPEC, "test", seed=1, n=25)
    assert (other_seed["question"] != first["question"]).mean() > 0.9


def test_family_subset() -> None:
    frame = load_base_dataset({**SPEC, "families": ["ages", "recipe"]}, "test", seed=0, n=50)
    assert set(frame["family"]) == {"ages", "recipe"}
    assert set(frame["topic"]) == {"family", "cooking"}


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"loader": "synthetic", "test_size": 5}, "missing key 'train_size'"),
        ({"loader": "synthetic", "train_size": -1, "test_size": 5}, "'train_size' must be an int >= 0"),
        ({**SPEC, "families": ["nope"]}, "unknown families \\['nope'\\]"),
        ({**SPEC, "size": 3}, "unknown keys \\['size'\\]"),
    ],
)
def test_bad_specs_are_named(spec, message) -> None:
    with pytest.raises(ValueError, match=message):
        load_base_dataset(spec, "test", seed=0)
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_base_dataset(SPEC, "validation", seed=0)


def test_template_errors_name_file_and_key(tmp_path: Path) -> None:
    text = default_templates_path().read_text(encoding="utf-8")
    broken = tmp_path / "broken.yaml"
    broken.write_text(text.replace('calc: "a*b", let: total, text: "{name} buys {a} packs', 'calc: "a*zz", let: total, text: "{name} buys {a} packs', 1))
    with pytest.raises(DataFormatError, match=r"broken\.yaml: families\.shopping\.templates\[0\] \(id packs\)\.steps\[0\]\.calc: unknown variables \['zz'\]"):
        load_templates(str(broken))
    unused = tmp_path / "unused.yaml"
    unused.write_text(text.replace("steps:\n          - {calc: \"a*b\", let: total, text: \"{name} buys {a} packs of {b} {item}, so {he} buys", "steps:\n          - {calc: \"a*2\", let: total, text: \"{name} buys {a} packs of {b} {item}, so {he} buys", 1))
    with pytest.raises(DataFormatError, match=r"unused\.yaml: .*question: quantities \['b'\] appear in the question but no step uses them"):
        load_templates(str(unused))
    with pytest.raises(DataFormatError, match="template file not found"):
        load_templates(str(tmp_path / "missing.yaml"))


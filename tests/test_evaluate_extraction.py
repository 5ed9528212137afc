"""Answer extraction: lm-eval gsm8k strict-match / flexible-extract semantics, made robust (signs, $, commas)."""

from __future__ import annotations

import re

import pytest

from attnlab.evaluate.extraction import (
    answers_match,
    extract_flexible,
    extract_strict,
    parse_number,
    truncate_at_new_question,
)

# lm-evaluation-harness gsm8k.yaml filters, verbatim, to show where the old behaviour differs.
LM_EVAL_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
LM_EVAL_FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("18", 18.0),
        ("18.0", 18.0),
        ("$18", 18.0),
        ("18.", 18.0),
        ("1,018", 1018.0),
        ("1,234", 1234.0),
        ("1,234,567.25", 1234567.25),
        ("-18", -18.0),
        ("-3.5", -3.5),
        ("-$4", -4.0),
        ("$-4", -4.0),
        ("\u22127", -7.0),  # U+2212 MINUS SIGN
        ("$1,018.00", 1018.0),
        (".5", 0.5),
        ("  42  ", 42.0),
        ("0", 0.0),
    ],
)
def test_parse_number_values(text: str, value: float) -> None:
    assert parse_number(text) == value


@pytest.mark.parametrize("text", ["garbage", "", "  ", "$", "-", "12,34", "1,2345", "--4", "18..", "1.2.3", "18 apples", None])
def test_parse_number_rejects_non_numbers(text: str | None) -> None:
    assert parse_number(text) is None


@pytest.mark.parametrize(
    ("generation", "expected"),
    [
        ("She has 3*6=<<3*6=18>>18 apples.\n#### 18", "18"),
        ("#### 18.0", "18.0"),
        ("#### $18", "$18"),
        ("#### 18.", "18"),
        ("#### 1,018", "1,018"),
        ("#### -18", "-18"),
        ("#### $1,018.00", "$1,018.00"),
        ("#### -$4", "-$4"),
        ("####18", "18"),
        ("so the total is 5.\n#### 12\n#### 13", "12"),  # first match, like lm-eval take_first
        ("The answer is 18.", None),
        ("no number here", None),
        ("####", None),
        ("#### twelve", None),
        # a new question after the answer is not scored
        ("I am not sure.\n\nQuestion: Tom has 2 pens.\nAnswer: #### 2", None),
        ("#### 7\nQuestion: Tom has 2 pens.\nAnswer: #### 2", "7"),
    ],
)
def test_extract_strict(generation: str, expected: str | None) -> None:
    assert extract_strict(generation) == expected


@pytest.mark.parametrize(
    ("generation", "expected"),
    [
        ("18", "18"),
        ("18.0", "18.0"),
        ("$18", "$18"),
        ("18.", "18"),
        ("1,018", "1,018"),
        ("-18", "-18"),
        ("#### -18", "-18"),
        ("#### $1,018.00", "$1,018.00"),
        ("The answer is 18.", "18"),
        ("3 boxes of 4 pens is 12 pens, minus 5 gives 7.", "7"),
        ("The temperature fell to -12 degrees.", "-12"),
        ("He owes -$4 in total.", "-$4"),
        ("Pages 3-4", "4"),  # a range dash is not a minus sign
        ("10 - 5 = 5", "5"),
        ("10 - 15 = -5", "-5"),
        ("items 1,2,3", "3"),  # commas not in groups of three separate numbers
        ("She has 2 cats and x2 dogs", "2"),  # digits glued to a letter are not a number
        ("about .5 cups", ".5"),
        ("no number", None),
        ("", None),
        ("It costs 5.\n\nQuestion: Ann has 9 cats. How many?\nAnswer: 9", "5"),
    ],
)
def test_extract_flexible(generation: str, expected: str | None) -> None:
    assert extract_flexible(generation) == expected


@pytest.mark.parametrize(
    ("generation", "gold"),
    [("#### -18", -18.0), ("#### -$4", -4.0), ("The loss was -3.5.", -3.5)],
)
def test_negative_answers_keep_their_sign(generation: str, gold: float) -> None:
    """A number regex without the sign drops the minus (-18 scored as 18). Here only the signed value matches."""
    predicted = extract_strict(generation) or extract_flexible(generation)
    assert answers_match(predicted, gold)
    assert not answers_match(predicted, -gold)


def test_lm_eval_agreement_on_plain_answers() -> None:
    """On well-formed answers our strict extraction agrees with lm-eval's regex (after its ignore rules)."""
    for generation in ["#### 18", "#### 1,018", "#### -7", "x = 3.\n#### 72"]:
        lm_eval = LM_EVAL_STRICT.search(generation).group(1).replace(",", "")
        ours = extract_strict(generation)
        assert parse_number(ours) == float(lm_eval)
    # lm-eval's flexible filter takes the last match; ours agrees on the number
    generation = "She pays 3*4=12 dollars, so 12 + 6 = 18"
    last = LM_EVAL_FLEXIBLE.findall(generation)[-1]
    assert extract_flexible(generation) == (last[0] or last[1]) == "18"


@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [
        ("18", 18.0, True),
        ("18.0", 18.0, True),
        ("$1,018.00", 1018.0, True),
        ("1,018", 1018.0, True),
        ("18", 19.0, False),
        ("0.1", 0.1000000001, True),  # within rel_tol/abs_tol
        ("0.1", 0.11, False),
        (None, 18.0, False),
        ("abc", 18.0, False),
        ("-18", 18.0, False),
    ],
)
def test_answers_match(pred: str | None, gold: float, expected: bool) -> None:
    assert answers_match(pred, gold) is expected


def test_answers_match_rejects_nan_gold() -> None:
    with pytest.raises(ValueError, match="NaN"):
        answers_match("1", float("nan"))


def test_truncate_at_new_question() -> None:
    assert truncate_at_new_question("a 1\nQuestion: b 2") == "a 1\n"
    assert truncate_at_new_question("no marker") == "no marker"

"""Answer extraction for GSM8K-style generations.

Compatible with lm-evaluation-harness's ``gsm8k`` task (``lm_eval/tasks/gsm8k/gsm8k.yaml``), which scores two
filters of the same greedy generation:

* ``strict-match``: regex ``#### (\\-?[0-9\\.\\,]+)``, first match;
* ``flexible-extract``: regex ``(-?[$0-9.,]{2,})|(-?[0-9]+)``, last match (``group_select: -1``);

and then compares strings after deleting ``,``, ``$``, everything up to ``#### `` and a trailing ``.``.

Here the same two filters are implemented with one stricter number pattern, and answers are compared as numbers:

* a number is ``[-]['$'][-]digits`` with optional thousands groups (``1,018``) and decimals (``18.50``); a
  minus sign (ASCII ``-`` or Unicode ``−``) before or after the ``$`` is kept (``-$4`` and ``$-4`` are -4);
* a sentence-final period is not part of the number (``18.`` is 18), a comma that does not start a group of
  exactly three digits is a separator (``1,2,3`` is three numbers, not ``123``);
* the minus of a range or a subtraction is not a sign (``3-4`` is 3 and 4, ``10 - 5`` is 10 and 5);
* digits glued to letters or dots on their left are not numbers (``x2``, ``v1.2.3``'s ``2``/``3``);
* extraction only reads the text before the first ``Question:``: a model that goes on to pose (and answer) a new
  question is not scored on that continuation, even when the stop sequence did not truncate the raw text.
"""

from __future__ import annotations

import math
import re

__all__ = [
    "NEW_QUESTION_MARKER",
    "answers_match",
    "extract_flexible",
    "extract_strict",
    "parse_number",
    "truncate_at_new_question",
]

NEW_QUESTION_MARKER = "Question:"

_MINUS = "-\u2212"  # ASCII hyphen-minus and U+2212 MINUS SIGN
# One number: optional minus and dollar (either order), an integer part with strict thousands groups or plain
# digits (or none, for ".5"), optional decimals.
_NUMBER_CORE = (
    rf"(?P<sign1>[{_MINUS}])?\$?(?P<sign2>[{_MINUS}])?"
    r"(?:(?P<int>[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)(?:\.(?P<frac>[0-9]+))?|\.(?P<frac_only>[0-9]+))"
)
# A number starts at a position not preceded by a letter, digit, underscore or dot, so "x2", "3-4"'s minus and
# "1.2.3"'s last part are not (signed) numbers of their own.
_NUMBER_RE = re.compile(r"(?<![\w.])" + _NUMBER_CORE)
_STRICT_PREFIX = re.compile(r"####\s*")
_STRICT_RE = re.compile(_STRICT_PREFIX.pattern + _NUMBER_CORE)
_FULL_NUMBER_RE = re.compile(_NUMBER_CORE)


def truncate_at_new_question(generation: str) -> str:
    """The part of ``generation`` before the first ``"Question:"`` (all of it if there is none)."""
    cut = generation.find(NEW_QUESTION_MARKER)
    return generation if cut < 0 else generation[:cut]


def _match_text(match: re.Match[str]) -> str:
    """The matched number as written, without a ``####`` prefix (``"$1,018.00"``, ``"-18"``)."""
    text = match.group(0)
    prefix = _STRICT_PREFIX.match(text)
    return text if prefix is None else text[prefix.end() :]


def extract_strict(generation: str) -> str | None:
    """The number after the first ``#### `` (lm-eval ``strict-match``), or ``None``.

    Examples: ``"... #### 18"`` -> ``"18"``; ``"#### $1,018.00"`` -> ``"$1,018.00"``; ``"#### -18."`` -> ``"-18"``;
    ``"The answer is 18."`` -> ``None``.
    """
    match = _STRICT_RE.search(truncate_at_new_question(generation))
    return None if match is None else _match_text(match)


def extract_flexible(generation: str) -> str | None:
    """The last number in the text (lm-eval ``flexible-extract``, ``group_select: -1``), or ``None``.

    Examples: ``"The answer is 18."`` -> ``"18"``; ``"3 + 4 = 7 so -2"`` -> ``"-2"``; ``"no digits"`` -> ``None``.
    """
    last = None
    for last in _NUMBER_RE.finditer(truncate_at_new_question(generation)):
        pass
    return None if last is None else _match_text(last)


def parse_number(text: str | None) -> float | None:
    """The value of one written number, or ``None`` if ``text`` is not exactly one number.

    ``"1,234"`` -> 1234.0, ``"$18"`` -> 18.0, ``"18."`` -> 18.0, ``"-3.5"`` -> -3.5, ``"-$4"`` -> -4.0,
    ``"garbage"`` / ``"12,34"`` / ``""`` -> ``None``. Surrounding whitespace and one trailing period are ignored.
    """
    if text is None:
        return None
    stripped = text.strip()
    if stripped.endswith(".") and not stripped.endswith(".."):
        stripped = stripped[:-1]
    match = _FULL_NUMBER_RE.fullmatch(stripped)
    if match is None or (match.group("sign1") and match.group("sign2")):
        return None
    negative = bool(match.group("sign1") or match.group("sign2"))
    integer = (match.group("int") or "0").replace(",", "")
    fraction = match.group("frac") or match.group("frac_only") or "0"
    value = float(f"{integer}.{fraction}")
    return -value if negative else value


def answers_match(pred: str | None, gold: float, rel_tol: float = 1e-9, abs_tol: float = 1e-6) -> bool:
    """Whether the extracted prediction equals the gold number: ``math.isclose(value, gold, rel_tol, abs_tol)``.

    A missing or unparsable prediction is wrong. A NaN gold is a data error and raises ``ValueError``.
    """
    if isinstance(gold, float) and math.isnan(gold):
        raise ValueError("gold answer is NaN; the dataset's answer_number column must be filled")
    value = parse_number(pred)
    if value is None:
        return False
    return math.isclose(value, float(gold), rel_tol=rel_tol, abs_tol=abs_tol)

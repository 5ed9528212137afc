"""Text utilities shared by the data stage: numbers, sentences, seeds.

* :func:`split_sentences` — a rule-based splitter that keeps decimals, money,
  abbreviations and initials intact ("$2.50", "3.5 kg", "Mr. Smith", "5 p.m.",
  "J. K. Rowling", "e.g.", "Dr.", "St.").
* :func:`find_numbers` — character spans and values of the numbers in a text
  (digits with optional thousands separators and decimals, and the cardinal
  number words "two" … "ninety").
* :func:`format_number` — GSM8K's way of writing a number ("12", "7.5", "-3").
* :func:`derive_seed` — a process-independent sub-seed (SHA-256, never ``hash()``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

# --------------------------------------------------------------------------- seeds


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from ``parts`` (joined with ``"|"``), stable across processes and platforms.

    Uses SHA-256 rather than Python's ``hash()``, which is salted per process.
    """
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


# ------------------------------------------------------------------------- numbers

# Cardinal number words recognised as quantities. "one" is left out on purpose: in
# word problems it is mostly a pronoun ("one of them", "no one"), not a quantity.
NUMBER_WORDS: dict[str, int] = {
    "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30,
    "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip

# A digit number: "16", "80,000", "2.50", ".5" is not matched (GSM8K writes "0.5").
# Number words inside hyphenated compounds ("forty-four") are not matched (their value would be wrong).
# Not preceded by a word character, digit, "." or ","; a trailing sentence period is not part of it.
_DIGIT_NUMBER = r"(?<![\w.,])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\d|,\d)|(?<![\w.,])\d+(?:\.\d+)?"
_NUMBER_RE = re.compile(
    rf"(?P<digits>{_DIGIT_NUMBER})|(?P<word>(?<![-\w])(?:{'|'.join(sorted(NUMBER_WORDS, key=len, reverse=True))})(?![-\w]))",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class NumberMention:
    """A number in a text: ``text[start:end]`` is ``surface``, whose value is ``value``."""

    start: int
    end: int
    surface: str
    value: Decimal
    is_word: bool


def parse_number(surface: str) -> Decimal:
    """The value of a number as written: ``"1,000"`` → 1000, ``"-2.50"`` → -2.50, ``"seven"`` → 7.

    Raises:
        ValueError: if ``surface`` is not a number.
    """
    word = NUMBER_WORDS.get(surface.lower())
    if word is not None:
        return Decimal(word)
    cleaned = surface.replace(",", "").strip()
    if not re.fullmatch(r"-?\d+(?:\.\d+)?", cleaned):
        raise ValueError(f"not a number: {surface!r}")
    try:
        return Decimal(cleaned)
    except InvalidOperation as exc:  # pragma: no cover - the regex above already rules this out
        raise ValueError(f"not a number: {surface!r}") from exc


def find_numbers(text: str, words: bool = True) -> list[NumberMention]:
    """All numbers in ``text``, left to right (digits, and number words if ``words``)."""
    found = []
    for match in _NUMBER_RE.finditer(text):
        is_word = match.group("word") is not None
        if is_word and not words:
            continue
        found.append(
            NumberMention(match.start(), match.end(), match.group(), parse_number(match.group()), is_word)
        )
    return found


def format_number(value: Fraction | Decimal | int | float) -> str:
    """Write a number the way GSM8K's ``#### N`` line does: no ``.0``, no trailing zeros, no separators.

    ``12`` → ``"12"``, ``Fraction(15, 2)`` → ``"7.5"``, ``Decimal("2.50")`` → ``"2.5"``, ``-3`` → ``"-3"``.

    Raises:
        ValueError: for a fraction that is not a terminating decimal (e.g. 1/3).
    """
    frac = Fraction(value) if not isinstance(value, float) else Fraction(Decimal(repr(value)))
    if frac.denominator == 1:
        return str(frac.numerator)
    den = frac.denominator
    for prime in (2, 5):
        while den % prime == 0:
            den //= prime
    if den != 1:
        raise ValueError(f"{frac} is not a terminating decimal")
    text = format(Decimal(frac.numerator) / Decimal(frac.denominator), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


# ----------------------------------------------------------------------- sentences

# Words that end with "." without ending a sentence (compared lower-case, without the final ".").
ABBREVIATIONS: frozenset[str] = frozenset(
    {
        "mr", "mrs", "ms", "dr", "st", "jr", "sr", "prof", "mt", "ave", "rd", "blvd", "capt", "col", "gen",
        "gov", "lt", "sgt", "rev", "hon", "vs", "approx", "dept", "fig", "inc", "ltd", "corp",
        "oz", "lb", "lbs", "ft", "yd", "mi", "hr", "hrs", "min", "mins", "sec", "secs", "pp", "vol",
        "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "cf",
    }
)  # fmt: skip
# Dotted abbreviations: "e.g.", "i.e.", "a.m.", "p.m.", "U.S.", "Ph.D." …
_DOTTED_ABBREVIATION = re.compile(r"(?:[A-Za-z]{1,2}\.){1,}[A-Za-z]{1,2}\.?")
# Sentence-final punctuation, then closing quotes/brackets, then whitespace (or the end).
_TERMINATOR = re.compile(r"[.!?]+[\"'\u2019\u201d)\]]*(?=\s|$)")
_OPENERS = "\"'(\u201c\u2018["


def _is_abbreviation(text: str, period_end: int, next_char: str) -> bool:
    """Whether the "." ending at ``period_end`` belongs to an abbreviation or an initial."""
    word_start = period_end
    while word_start > 0 and not text[word_start - 1].isspace():
        word_start -= 1
    word = text[word_start:period_end].lstrip(_OPENERS)  # e.g. "Mr.", "p.m.", "J.", "$2.50."
    bare = word[:-1]
    if len(bare) == 1 and bare.isalpha() and bare.isupper():  # an initial: "J. K. Rowling"
        return True
    if bare.lower() in ABBREVIATIONS:
        return True
    if bare.lower() == "no" and next_char.isdigit():  # "No. 5"
        return True
    return bool(_DOTTED_ABBREVIATION.fullmatch(word)) and "." in bare


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the sentences of ``text``, in order.

    A sentence ends at ``.``, ``!`` or ``?`` (plus any closing quotes/brackets) that is
    followed by whitespace and then a character that is not a lower-case letter, and —
    for ``.`` — that does not end an abbreviation ("Mr.", "St.", "e.g.", "p.m.") or an
    initial ("J."). Decimals and money never split because their "." is not followed by
    whitespace. Spans exclude the whitespace between sentences; the last sentence ends
    at the last non-space character. An empty or blank text has no sentences.
    """
    spans: list[tuple[int, int]] = []
    start = len(text) - len(text.lstrip())
    stop = len(text.rstrip())
    if start >= stop:
        return spans
    for match in _TERMINATOR.finditer(text, start, stop):
        end = match.end()
        if end >= stop:
            break
        rest = text[end:stop].lstrip()
        next_char = rest[:1]
        if not next_char or next_char.islower():
            continue
        punct = match.group()
        if punct[0] == "." and len(punct.rstrip("\"'\u2019\u201d)]")) == 1:
            period_end = match.start() + 1
            if _is_abbreviation(text, period_end, next_char):
                continue
        spans.append((start, end))
        start = stop - len(rest)
    spans.append((start, stop))
    return spans

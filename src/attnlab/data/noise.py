"""Noise injection: insert one distracting sentence into each question, with spans.

:func:`apply_noise` turns a base dataset (or a clean data table) into a data table
(:data:`~attnlab.data.schema.DATA_COLUMNS`) for one noise type. The framework does the
bookkeeping; a noise function (registered with :func:`~attnlab.data.registry.register_noise`)
only writes the sentence: ``noise(item: NoiseContext, rng: random.Random) -> str``.

For each item:

1. The question is split into sentences (:func:`~attnlab.data.text.split_sentences`).
   The *question sentence* is the last one ending in "?" (else the last sentence).
2. An insertion boundary ``i`` is drawn uniformly from 1 … q (q = index of the question
   sentence): the noise goes between sentence ``i-1`` and sentence ``i``, so never after
   the question sentence and never in front of the whole story. Only a one-sentence
   question (q = 0) gets its noise in front (``i = 0``).
3. The noise function is called with the same per-item RNG,
   ``random.Random(derive_seed(seed, noise_type, item_id))`` — an item's noise depends on
   the seed, the noise type and its id only, not on row order or dataset size.
4. The sentence is inserted with exactly one joining space: ``" " + noise`` right after
   sentence ``i-1`` (for ``i >= 1``), or ``noise + " "`` before sentence 0 (``i = 0``). The
   recorded noise span covers the sentence *and* that space, so
   ``question[:start] + question[end:] == original_question`` exactly; the whitespace
   that separated the original sentences is kept as it was.
5. Key spans after the insertion point are shifted by the inserted length, so
   ``question[key span]`` is the same text before and after.

The built-in types, registered as ``"inf"``, ``"rcs"`` and ``"sd"`` (Shi et al. 2023 "Large Language Models Can Be Easily Distracted by
Irrelevant Context" and the noise taxonomy of the DiffLlama robustness study):

* ``inf`` (INF) — irrelevant facts with numbers (ages, distances, dates, prices of unrelated
  things), from templates with random names and numbers (resources/data/noise.yaml).
* ``rcs`` (RCS) — redundant calculation statements about the item's own key quantities: true
  arithmetic ("Note that 3 plus 4 is 7.") or restatements; the answer is unchanged.
* ``sd`` (SD) — semantic distractions that match the item's topic and contain no numbers.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from attnlab.data.errors import DataFormatError, read_yaml_resource
from attnlab.data.registry import CLEAN, get_noise_function, register_noise
from attnlab.data.schema import (
    BASE_COLUMNS,
    DATA_COLUMNS,
    DATA_SCHEMA,
    NOISE_COLUMNS,
    validate_base_frame,
    validate_data_frame,
    write_dataset,
)
from attnlab.data.text import derive_seed, find_numbers, format_number, parse_number, split_sentences
from attnlab.paths import resources_dir

__all__ = [
    "DATA_COLUMNS",
    "DATA_SCHEMA",
    "KeyQuantity",
    "NoiseContext",
    "NoiseError",
    "apply_noise",
    "insertion_boundaries",
    "make_context",
    "write_dataset",
]


class NoiseError(ValueError):
    """A noise function cannot produce a valid sentence for an item."""


@dataclass(frozen=True)
class KeyQuantity:
    """A key quantity of the question: ``question[start:end] == text``, numeric value ``value``."""

    text: str
    value: Decimal
    start: int
    end: int


@dataclass(frozen=True)
class NoiseContext:
    """What a noise function may look at (the clean item)."""

    id: str
    question: str
    answer: str
    answer_number: float
    key_quantities: tuple[KeyQuantity, ...]
    topic: str
    family: str
    sentences: tuple[str, ...]


# ----------------------------------------------------------------------- framework


def question_sentence_index(sentences: Sequence[str]) -> int:
    """Index of the last sentence ending in "?" (ignoring closing quotes); the last one if none."""
    for index in range(len(sentences) - 1, -1, -1):
        if sentences[index].rstrip("\"'\u2019\u201d) ").endswith("?"):
            return index
    return len(sentences) - 1


def insertion_boundaries(question: str) -> list[int]:
    """The boundaries where noise may go: 1 … q, or [0] for a one-sentence question (module docstring)."""
    spans = split_sentences(question)
    if not spans:
        return []
    q = question_sentence_index([question[s:e] for s, e in spans])
    return list(range(1, q + 1)) if q >= 1 else [0]


def make_context(row: Any) -> NoiseContext:
    """The :class:`NoiseContext` of a base-dataset row (a namedtuple from ``itertuples``)."""
    question = row.question
    quantities = []
    for span in row.key_spans:
        text = question[span["start"] : span["end"]]
        try:
            value = parse_number(text)
        except ValueError:
            raise DataFormatError(f"row id={row.id!r}: key span {span} covers {text!r}, which is not a number") from None
        quantities.append(KeyQuantity(text, value, span["start"], span["end"]))
    sentences = tuple(question[s:e] for s, e in split_sentences(question))
    return NoiseContext(
        row.id, question, row.answer, float(row.answer_number), tuple(quantities), row.topic, row.family, sentences
    )


def _check_noise_text(text: Any, noise_type: str, item_id: str) -> str:
    where = f"noise type {noise_type!r}, item id={item_id!r}"
    if not isinstance(text, str) or not text.strip():
        raise NoiseError(f"{where}: the noise function must return a non-empty string, got {text!r}")
    if text != text.strip() or "\n" in text or "\r" in text:
        raise NoiseError(f"{where}: noise must be one line without surrounding whitespace, got {text!r}")
    return text


def apply_noise(df: pd.DataFrame, noise_type: str, seed: int) -> pd.DataFrame:
    """Insert one ``noise_type`` sentence into every question of ``df``.

    Args:
        df: a base dataset (:data:`BASE_COLUMNS`) or a data table whose rows are all clean.
        noise_type: ``"clean"`` or a registered noise type (``"inf"``, ``"rcs"``, ``"sd"``, …).
        seed: the noise seed; item ``x`` uses ``derive_seed(seed, noise_type, x.id)``.

    Returns:
        A data table with :data:`DATA_COLUMNS` (validated), in the input's row order.
    """
    if set(NOISE_COLUMNS) & set(df.columns):
        table = validate_data_frame(df, source="apply_noise input")
        dirty = table.loc[table["noise_type"] != CLEAN, "id"]
        if len(dirty):
            raise ValueError(
                f"apply_noise input must be clean; row id={dirty.iloc[0]!r} already has noise type "
                f"{table.loc[dirty.index[0], 'noise_type']!r}"
            )
        base = table.loc[:, list(BASE_COLUMNS)]
    else:
        base = validate_base_frame(df, source="apply_noise input")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")

    out = base.copy()
    if noise_type == CLEAN:
        out["original_question"] = out["question"]
        out["noise_type"] = CLEAN
        out["noise_spans"] = [[] for _ in range(len(out))]
        out["insert_sentence_index"] = -1
        return validate_data_frame(out.loc[:, list(DATA_COLUMNS)], source="apply_noise output")

    noise_function = get_noise_function(noise_type)
    questions, key_spans, noise_spans, indices = [], [], [], []
    for row in base.itertuples(index=False):
        rng = random.Random(derive_seed(seed, noise_type, row.id))
        boundaries = insertion_boundaries(row.question)
        if not boundaries:
            raise ValueError(f"row id={row.id!r}: the question is empty")
        boundary = boundaries[rng.randrange(len(boundaries))]
        noise = _check_noise_text(noise_function(make_context(row), rng), noise_type, row.id)
        sentences = split_sentences(row.question)
        if boundary == 0:
            position, inserted = sentences[0][0], noise + " "
        else:
            position, inserted = sentences[boundary - 1][1], " " + noise
        shift = len(inserted)
        shifted = []
        for span in row.key_spans:
            if span["start"] < position < span["end"]:  # impossible for sentence boundaries; guard anyway
                raise AssertionError(f"row id={row.id!r}: key span {span} straddles the insertion point {position}")
            delta = shift if span["start"] >= position else 0
            shifted.append({"start": span["start"] + delta, "end": span["end"] + delta})
        questions.append(row.question[:position] + inserted + row.question[position:])
        key_spans.append(shifted)
        noise_spans.append([{"start": position, "end": position + shift}])
        indices.append(boundary)
    out["original_question"] = out["question"]
    out["question"] = questions
    out["key_spans"] = key_spans
    out["noise_type"] = noise_type
    out["noise_spans"] = noise_spans
    out["insert_sentence_index"] = indices
    return validate_data_frame(out.loc[:, list(DATA_COLUMNS)], source=f"apply_noise output ({noise_type})")


# -------------------------------------------------------------------------- banks

_SLOT = re.compile(r"\{([a-z_][a-z0-9_]*)(?::(\d+)-(\d+))?\}")
_NUMERIC_SLOTS = ("int", "money")
RCS_KINDS = {
    "sum": 2, "difference": 2, "product": 2, "restate_two": 2, "double": 1, "half": 1, "restate_one": 1, "restate_none": 0,
}  # fmt: skip


@dataclass(frozen=True)
class NoiseBank:
    path: str
    slots: Mapping[str, tuple[str, ...]]
    inf: tuple[str, ...]
    rcs: Mapping[str, tuple[str, ...]]
    sd: Mapping[str, tuple[tuple[str, ...], Mapping[str, tuple[str, ...]]]]  # topic -> (templates, slots)


def noise_bank_path() -> Path:
    return resources_dir() / "data" / "noise.yaml"


def _string_list(value: Any, path: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() == v and v for v in value):
        raise DataFormatError(f"{path}: {key}: must be a non-empty list of non-empty strings without surrounding spaces")
    return tuple(value)


def _check_slots(template: str, slots: Mapping[str, Any], path: str, key: str, allow_numeric: bool) -> None:
    for match in _SLOT.finditer(template):
        name = match.group(1)
        if match.group(2) is not None:
            if name not in _NUMERIC_SLOTS or not allow_numeric:
                raise DataFormatError(f"{path}: {key}: slot {match.group()!r} is not allowed here")
            if int(match.group(2)) > int(match.group(3)):
                raise DataFormatError(f"{path}: {key}: empty range in {match.group()!r}")
        elif name not in slots:
            raise DataFormatError(f"{path}: {key}: unknown slot {{{name}}}")
    leftover = _SLOT.sub("", template)
    if "{" in leftover or "}" in leftover:
        raise DataFormatError(f"{path}: {key}: malformed slot in {template!r}")


@lru_cache(maxsize=4)
def load_noise_bank(path: str) -> NoiseBank:
    """Parse and check the noise banks; errors name the file and the key."""
    raw = read_yaml_resource(path, "noise bank file")
    if not isinstance(raw, Mapping) or set(raw) != {"slots", "INF", "RCS", "SD"}:
        raise DataFormatError(f"{path}: top level must have exactly the keys slots, INF, RCS, SD")
    if not isinstance(raw["slots"], Mapping):
        raise DataFormatError(f"{path}: slots: must map slot name -> list of strings")
    slots = {str(k): _string_list(v, path, f"slots.{k}") for k, v in raw["slots"].items()}

    inf = _string_list(raw["INF"], path, "INF")
    for i, template in enumerate(inf):
        _check_slots(template, slots, path, f"INF[{i}]", allow_numeric=True)
        if not _SLOT.search(template) or not any(m.group(2) for m in _SLOT.finditer(template)):
            raise DataFormatError(f"{path}: INF[{i}]: an irrelevant fact must contain a number slot ({{int:lo-hi}} or {{money:lo-hi}})")

    if not isinstance(raw["RCS"], Mapping) or set(raw["RCS"]) != set(RCS_KINDS):
        raise DataFormatError(f"{path}: RCS: must have exactly the kinds {sorted(RCS_KINDS)}")
    rcs = {}
    for kind, templates in raw["RCS"].items():
        rcs[kind] = _string_list(templates, path, f"RCS.{kind}")
        for i, template in enumerate(rcs[kind]):
            names = {m.group(1) for m in _SLOT.finditer(template)}
            needed = {"a", "b"} if RCS_KINDS[kind] == 2 else {"a"} if RCS_KINDS[kind] == 1 else set()
            if not kind.startswith("restate"):
                needed = needed | {"result"}
            if names != needed:
                raise DataFormatError(f"{path}: RCS.{kind}[{i}]: must use exactly the slots {sorted(needed)}, uses {sorted(names)}")

    if not isinstance(raw["SD"], Mapping) or not raw["SD"]:
        raise DataFormatError(f"{path}: SD: must map topic -> {{templates, slots}}")
    sd = {}
    for topic, body in raw["SD"].items():
        key = f"SD.{topic}"
        if not isinstance(body, Mapping) or set(body) - {"templates", "slots"} or "templates" not in body:
            raise DataFormatError(f"{path}: {key}: must have 'templates' and optionally 'slots'")
        topic_slots = {str(k): _string_list(v, path, f"{key}.slots.{k}") for k, v in (body.get("slots") or {}).items()}
        merged = {**slots, **topic_slots}
        templates = _string_list(body["templates"], path, f"{key}.templates")
        for i, template in enumerate(templates):
            _check_slots(template, merged, path, f"{key}.templates[{i}]", allow_numeric=False)
            for name in {m.group(1) for m in _SLOT.finditer(template)}:
                for value in merged[name]:
                    if find_numbers(value) or re.search(r"\d", value):
                        raise DataFormatError(f"{path}: {key}: slot {name!r} value {value!r} contains a number")
            if find_numbers(_SLOT.sub("", template)) or re.search(r"\d", _SLOT.sub("", template)):
                raise DataFormatError(f"{path}: {key}.templates[{i}]: a semantic distraction must not contain numbers")
        sd[str(topic)] = (templates, merged)
    return NoiseBank(path, slots, inf, rcs, sd)


def _fill(template: str, slots: Mapping[str, Sequence[str]], rng: random.Random) -> str:
    """Fill ``{slot}``, ``{int:lo-hi}`` and ``{money:lo-hi}`` (dollars, cents from .00/.25/.50/.75)."""

    def replace(match: re.Match[str]) -> str:
        name, lo, hi = match.groups()
        if lo is not None:
            value = rng.randint(int(lo), int(hi))
            if name == "money":
                cents = (0, 25, 50, 75)[rng.randrange(4)]
                return f"{value}.{cents:02d}" if cents else str(value)
            return str(value)
        options = slots[name]
        return options[rng.randrange(len(options))]

    text = _SLOT.sub(replace, template)
    return text[:1].upper() + text[1:]


def _bank() -> NoiseBank:
    return load_noise_bank(str(noise_bank_path()))


# -------------------------------------------------------------------- noise types


@register_noise("inf")
def irrelevant_fact(item: NoiseContext, rng: random.Random) -> str:
    """INF: an irrelevant fact with a number (age, distance, date, price of something unrelated)."""
    bank = _bank()
    return _fill(bank.inf[rng.randrange(len(bank.inf))], bank.slots, rng)


def _rcs_quantities(item: NoiseContext) -> list[tuple[str, Decimal]]:
    """(how to write it, value) of the quantities RCS may talk about, distinct values, question order.

    The item's key quantities; if it has none, every number in the question. Digits are
    written as in the question ("2.50", "1,000"); number words as digits ("three" -> "3").
    """
    mentions = [(q.text, q.value, q.text.isalpha()) for q in item.key_quantities]
    if not mentions:
        mentions = [(m.surface, m.value, m.is_word) for m in find_numbers(item.question)]
    out, seen = [], set()
    for text, value, is_word in mentions:
        if value.normalize() in seen:
            continue
        seen.add(value.normalize())
        out.append((format_number(value) if is_word else text, value))
    return out


@register_noise("rcs")
def redundant_calculation(item: NoiseContext, rng: random.Random) -> str:
    """RCS: a true statement about the item's own quantities that does not change the answer.

    Kinds (templates in resources/data/noise.yaml): sum a+b, difference a-b (a > b),
    product a*b, restatement of two quantities (needs two distinct values); double 2a,
    half a/2 (when it has at most two decimals), restatement of one (needs one). The kind
    is drawn uniformly among those possible, then a template, then the quantities.
    A question with no numbers at all (GSM8K has a handful: "twice", "once", "half") gets
    the ``restate_none`` kind: a redundant remark without numbers.
    """
    bank = _bank()
    quantities = _rcs_quantities(item)
    kinds = [k for k, arity in RCS_KINDS.items() if 1 <= arity <= len(quantities)] or ["restate_none"]
    kind = kinds[rng.randrange(len(kinds))]
    if kind == "restate_none":
        (a_text, a), (b_text, b) = ("", Decimal(0)), ("", Decimal(0))
    elif RCS_KINDS[kind] == 2:
        i, j = rng.sample(range(len(quantities)), 2)
        (a_text, a), (b_text, b) = quantities[i], quantities[j]
        if kind == "difference" and a < b:
            (a_text, a), (b_text, b) = (b_text, b), (a_text, a)
    else:
        (a_text, a), (b_text, b) = quantities[rng.randrange(len(quantities))], ("", Decimal(0))
    result = {
        "sum": lambda: a + b,
        "difference": lambda: a - b,
        "product": lambda: a * b,
        "double": lambda: 2 * a,
        "half": lambda: a / 2,
    }.get(kind, lambda: None)()
    if kind == "half" and (result * 100) != (result * 100).to_integral_value():
        kind, result = "double", 2 * a
    templates = bank.rcs[kind]
    template = templates[rng.randrange(len(templates))]
    values = {"a": a_text, "b": b_text, "result": format_number(result) if result is not None else ""}
    text = _SLOT.sub(lambda m: values[m.group(1)], template)
    return text[:1].upper() + text[1:]


@register_noise("sd")
def semantic_distraction(item: NoiseContext, rng: random.Random) -> str:
    """SD: a sentence about the item's topic that carries no numbers."""
    bank = _bank()
    if item.topic not in bank.sd:
        raise NoiseError(
            f"SD: no distractor bank for topic {item.topic!r} (item id={item.id!r}) in {bank.path}; "
            f"topics with banks: {sorted(bank.sd)}"
        )
    templates, slots = bank.sd[item.topic]
    return _fill(templates[rng.randrange(len(templates))], slots, rng)

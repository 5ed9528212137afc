"""The real GSM8K benchmark (loader ``"gsm8k"``; Cobbe et al. 2021, arXiv:2110.14168).

Spec keys, either

* ``train_path`` / ``test_path``: local JSON-lines files, one ``{"question", "answer"}``
  object per line (the format of github.com/openai/grade-school-math), or
* ``hub_id`` (e.g. ``"openai/gsm8k"``), ``hub_config`` (e.g. ``"main"``) and an optional
  ``revision``: loaded with :func:`datasets.load_dataset` — the only case that may use
  the network.

Items keep file order; ``n`` keeps the first ``n``. Each item is checked: a malformed
line raises :class:`~attnlab.data.errors.DataFormatError` naming the file, the 1-based
line number and the problem (not UTF-8, bad JSON, missing/non-string field, no final ``#### N``
line, a question repeated from an earlier line); so does a file without items. Blank lines are skipped.

Derived columns:

* ``answer_number``: the number on the final ``#### N`` line ("1,000" → 1000, "-3" → -3).
* ``key_spans``: numbers in the question (digits, or the number words "two" … "ninety")
  whose value is used by the solution — i.e. occurs among the numbers of the solution
  text, including inside ``<<…>>`` calculator annotations. A percentage "p%" also counts
  when p/100 occurs (GSM8K often writes 150% as 1.5).
* ``topic``: :func:`classify_topic`, a documented keyword vote (resources/data/topics.yaml)
  used only to pick topic-matched semantic distractors.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import pandas as pd

from attnlab.data.errors import DataFormatError, read_yaml_resource
from attnlab.data.registry import register_dataset
from attnlab.data.schema import BASE_COLUMNS
from attnlab.data.text import find_numbers, parse_number
from attnlab.paths import resources_dir

FAMILY = "gsm8k"
GENERAL_TOPIC = "general"
SPEC_KEYS = frozenset({"loader", "train_path", "test_path", "hub_id", "hub_config", "revision"})
_FINAL_LINE = re.compile(r"####\s*(-?[\d,]*\d(?:\.\d+)?)\s*")
_ANNOTATION = re.compile(r"<<([^<>]*)>>")


# ------------------------------------------------------------------------ parsing


def parse_final_answer(answer: str) -> float:
    """The number on the final ``#### N`` line of a GSM8K solution.

    Raises:
        ValueError: if the last non-empty line is not ``#### N``.
    """
    lines = [line for line in answer.strip().splitlines() if line.strip()]
    if not lines:
        raise ValueError("the answer is empty")
    match = _FINAL_LINE.fullmatch(lines[-1].strip())
    if not match:
        raise ValueError(f"the last answer line must be '#### N', got {lines[-1].strip()!r}")
    return float(parse_number(match.group(1)))


def solution_values(answer: str) -> set[Decimal]:
    """Every number value the worked solution mentions (text and ``<<a*b=c>>`` annotations)."""
    values = {m.value.normalize() for m in find_numbers(answer, words=False)}
    for expression in _ANNOTATION.findall(answer):
        # Inside annotations numbers touch operators ("16-3-4=9", "80000*1.5"): split on them.
        for token in re.findall(r"\d+(?:\.\d+)?", expression.replace(",", "")):
            values.add(Decimal(token).normalize())
    return values


def key_spans(question: str, answer: str) -> list[dict[str, int]]:
    """Spans of the numbers in ``question`` whose value the solution uses (see module docstring)."""
    used = solution_values(answer)
    spans = []
    for mention in find_numbers(question):
        candidates = {mention.value.normalize()}
        if question[mention.end : mention.end + 1] == "%":
            candidates.add((mention.value / 100).normalize())
        if candidates & used:
            spans.append({"start": mention.start, "end": mention.end})
    return spans


@lru_cache(maxsize=4)
def _topic_patterns(path: str) -> tuple[tuple[str, re.Pattern[str]], ...]:
    raw = read_yaml_resource(path, "topic keyword file")
    topics = raw.get("topics") if isinstance(raw, Mapping) else None
    if not isinstance(topics, Mapping) or not topics:
        raise DataFormatError(f"{path}: expected a mapping 'topics: {{topic: [keywords]}}'")
    patterns = []
    for topic, words in topics.items():
        if not isinstance(words, list) or not words or not all(isinstance(w, str) and w.strip() for w in words):
            raise DataFormatError(f"{path}: topics.{topic}: must be a non-empty list of keywords")
        alternatives = "|".join(re.escape(w.lower()) for w in sorted(words, key=len, reverse=True))
        patterns.append((str(topic), re.compile(rf"\b(?:{alternatives})(?:s|es)?\b")))
    return tuple(patterns)


def topics_path() -> Path:
    return resources_dir() / "data" / "topics.yaml"


def classify_topic(question: str, path: str | None = None) -> str:
    """The topic of a question by keyword vote (resources/data/topics.yaml).

    Lower-case the question, count whole-word keyword matches per topic; the most
    matches wins, ties go to the topic listed first; no match gives ``"general"``.
    Used only to pick topic-matched semantic distractors.
    """
    text = question.lower()
    best, best_count = GENERAL_TOPIC, 0
    for topic, pattern in _topic_patterns(str(path or topics_path())):
        count = len(pattern.findall(text))
        if count > best_count:
            best, best_count = topic, count
    return best


# ------------------------------------------------------------------------ loading


def _check_item(item: Any, where: str) -> tuple[str, str, float]:
    if not isinstance(item, Mapping):
        raise DataFormatError(f"{where}: expected a JSON object with 'question' and 'answer', got {type(item).__name__}")
    for key in ("question", "answer"):
        if key not in item:
            raise DataFormatError(f"{where}: missing field {key!r}")
        if not isinstance(item[key], str) or not item[key].strip():
            raise DataFormatError(f"{where}: field {key!r} must be a non-empty string")
    try:
        number = parse_final_answer(item["answer"])
    except ValueError as exc:
        raise DataFormatError(f"{where}: no final '#### N' answer line ({exc})") from None
    return item["question"], item["answer"], number


def read_jsonl(path: str | Path, n: int | None = None) -> Iterator[tuple[str, str, float]]:
    """(question, answer, answer_number) per line of a GSM8K JSON-lines file, checked, in order.

    Raises:
        DataFormatError: ``FILE: line N: what`` for a line that is not UTF-8, not a JSON object with a
            question and a ``#### N`` answer, or whose question repeats an earlier line's; and for a file
            with no item at all (empty or blank lines only).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GSM8K file not found: {path}")
    count, line_number = 0, 0
    first_line_of: dict[str, int] = {}
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            if n is not None and count >= n:
                return
            where = f"{path}: line {line_number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataFormatError(
                    f"{where}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
                ) from None
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(f"{where}: bad JSON ({exc.msg} at column {exc.colno})") from None
            question, answer, number = _check_item(item, where)
            if question in first_line_of:
                raise DataFormatError(f"{where}: duplicate item: the same question as line {first_line_of[question]}")
            first_line_of[question] = line_number
            yield question, answer, number
            count += 1
    if count == 0:
        what = "the file is empty" if line_number == 0 else f"its {line_number} line(s) are blank"
        raise DataFormatError(f"{path}: line {max(line_number, 1)}: no GSM8K items ({what})")


def read_hub(hub_id: str, hub_config: str | None, revision: str | None, split: str, n: int | None) -> Iterator[tuple[str, str, float]]:
    """The same triples from a Hugging Face dataset (may use the network)."""
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is a dependency
        raise ImportError("loading GSM8K from the hub needs the 'datasets' package") from exc
    try:
        dataset = datasets.load_dataset(hub_id, hub_config, revision=revision, split=split)
    except Exception as exc:
        raise RuntimeError(
            f"could not load hub dataset {hub_id!r} (config {hub_config!r}, revision {revision!r}, split {split!r}): "
            f"{type(exc).__name__}: {exc}. If this machine is offline, fetch it first where the network is reachable: "
            f"`attnlab prefetch --dataset {hub_id}"
            + (f" --dataset-config {hub_config}" if hub_config else "")
            + (f" --revision {revision}" if revision else "")
            + "` (or `attnlab prefetch --config YOUR_CONFIG.yaml`), or use train_path/test_path with local JSON-lines files"
        ) from exc
    for index, item in enumerate(dataset):
        if n is not None and index >= n:
            return
        yield _check_item(item, f"hub dataset {hub_id!r} split {split!r}: row {index}")


def _check_spec(spec: Mapping[str, Any], split: str) -> None:
    extra = set(spec) - SPEC_KEYS
    if extra:
        raise ValueError(f"gsm8k dataset spec: unknown keys {sorted(extra)} (allowed: {sorted(SPEC_KEYS)})")
    local = f"{split}_path" in spec
    if local and "hub_id" in spec:
        raise ValueError("gsm8k dataset spec: give either train_path/test_path or hub_id, not both")
    if not local and "hub_id" not in spec:
        raise ValueError(f"gsm8k dataset spec: no {split}_path and no hub_id for split {split!r}")


def frame_from_items(items: Iterable[tuple[str, str, float]], split: str, family: str = FAMILY) -> pd.DataFrame:
    """The base-dataset frame for (question, answer, answer_number) triples."""
    rows = list(items)
    return pd.DataFrame(
        {
            "id": [f"{family}-{split}-{i:05d}" for i in range(len(rows))],
            "split": [split] * len(rows),
            "family": [family] * len(rows),
            "topic": [classify_topic(q) for q, _, _ in rows],
            "question": [q for q, _, _ in rows],
            "answer": [a for _, a, _ in rows],
            "answer_number": [x for _, _, x in rows],
            "key_spans": [key_spans(q, a) for q, a, _ in rows],
        },
        columns=list(BASE_COLUMNS),
    )


@register_dataset("gsm8k")
def load_gsm8k(spec: Mapping[str, Any], split: str, seed: int, n: int | None) -> pd.DataFrame:
    """GSM8K split ``split`` in file order (``seed`` is unused: nothing is sampled)."""
    del seed
    _check_spec(spec, split)
    if f"{split}_path" in spec:
        items = read_jsonl(spec[f"{split}_path"], n)
    else:
        items = read_hub(spec["hub_id"], spec.get("hub_config"), spec.get("revision"), split, n)
    return frame_from_items(items, split)

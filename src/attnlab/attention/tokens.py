"""Token classes from character spans and the tokenizer's offset mapping (no keyword heuristics).

A prompt token covers the characters ``prompt[start:end]`` (its offset mapping). Its class is decided by its
**non-whitespace** characters, so the one joining space a noise span includes (or a byte-level BPE token's leading
space) never moves a token into a neighbouring span:

* the first token of the sequence (BOS, or the first text token when the tokenizer adds none) is the attention
  sink ``SINK``;
* else the first class, in the priority order given, that holds any non-whitespace character of the token
  (for the GSM8K prompts: KMI, then NI); a whitespace-only token uses all its characters;
* else the default class (OC). Special tokens other than the first (no characters) are OC too.

The prompt is :func:`attnlab.prompts.build_prompt` of the question, zero-shot, exactly as evaluation builds it
(``"Question: " + question.strip() + "\\nAnswer:"``); question spans are shifted into the prompt and checked to
cover the same text.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from attnlab.attention import KMI, NI, OC, SINK
from attnlab.prompts import TARGET_DELIMITER, build_prompt

__all__ = ["answer_producer", "classes_from_spans", "prompt_with_spans"]

Span = tuple[int, int]


def prompt_with_spans(
    question: str, key_spans: Sequence[Mapping[str, int]], noise_spans: Sequence[Mapping[str, int]], where: str = ""
) -> tuple[str, list[Span], list[Span]]:
    """The zero-shot prompt of ``question`` and its key / noise spans shifted into the prompt.

    Spans are ``{"start", "end"}`` character spans in ``question`` (data-stage format, :mod:`attnlab.data.schema`);
    parts of a span in the question's leading/trailing whitespace (stripped by the prompt) are dropped.

    Raises:
        ValueError: (prefixed with ``where``) if a span lies outside the question or the prompt does not contain
            the question text at the computed shift.
    """
    prompt = build_prompt(question)
    stripped = question.strip()
    lead = len(question) - len(question.lstrip())
    shift = prompt.find(stripped) - lead
    if stripped and prompt.find(stripped) < 0:
        raise ValueError(f"{where}the prompt does not contain the question text")

    def moved(spans: Sequence[Mapping[str, int]], name: str) -> list[Span]:
        out: list[Span] = []
        for span in spans:
            start, end = int(span["start"]), int(span["end"])
            if not 0 <= start < end <= len(question):
                raise ValueError(f"{where}{name} span ({start}, {end}) is outside the question (length {len(question)})")
            start, end = max(start, lead), min(end, lead + len(stripped))
            if start >= end:
                continue
            if prompt[start + shift : end + shift] != question[start:end]:
                raise ValueError(f"{where}{name} span ({start}, {end}) does not map onto the prompt text")
            out.append((start + shift, end + shift))
        return out

    return prompt, moved(key_spans, "key"), moved(noise_spans, "noise")


def classes_from_spans(
    text: str,
    offsets: Sequence[Sequence[int]],
    spans_by_class: Mapping[int, Sequence[Span]],
    default_class: int = OC,
    first_class: int | None = SINK,
) -> list[int]:
    """Class per token: ``offsets [T]`` of ``(start, end)`` in ``text`` -> ``[T]`` class ids.

    Args:
        text: the tokenized text.
        offsets: the tokenizer's offset mapping (``return_offsets_mapping=True``); special tokens have ``(0, 0)``.
        spans_by_class: class id -> character spans ``(start, end)`` in ``text``; dict order is the priority.
        default_class: class of tokens in no span.
        first_class: class of token 0 (the attention sink); ``None`` = classify token 0 like the others.
    """
    classes: list[int] = []
    for position, (start, end) in enumerate(offsets):
        start, end = int(start), int(end)
        if position == 0 and first_class is not None:
            classes.append(first_class)
            continue
        chars = [i for i in range(start, end) if not text[i].isspace()] or list(range(start, end))
        label = default_class
        for cls, spans in spans_by_class.items():
            if any(s <= i < e for i in chars for s, e in spans):
                label = cls
                break
        classes.append(label)
    return classes


def prompt_token_classes(
    tokenizer, question: str, key_spans, noise_spans, where: str = ""
) -> tuple[str, list[int], list[int]]:
    """(prompt, input ids, class per token: KMI / NI / OC / SINK) of an item's zero-shot prompt.

    The prompt is tokenized as evaluation does (``add_special_tokens=True``: BOS where the tokenizer adds one).

    Raises:
        ValueError: if the tokenizer gives no offset mapping (a slow tokenizer) or a span does not map.
    """
    prompt, keys, noise = prompt_with_spans(question, key_spans, noise_spans, where)
    try:
        encoding = tokenizer(prompt, add_special_tokens=True, return_offsets_mapping=True)
    except NotImplementedError as err:
        raise ValueError(f"tokenizer {type(tokenizer).__name__} gives no offset mapping (needs a fast tokenizer)") from err
    classes = classes_from_spans(prompt, encoding["offset_mapping"], {KMI: keys, NI: noise}, OC, SINK)
    return prompt, list(encoding["input_ids"]), classes


def answer_producer(tokenizer, prompt: str, answer: str, where: str = "") -> tuple[list[int], list[tuple[int, int]], int, int]:
    """Teacher-forced ``prompt + " " + answer``: (input ids, offsets, prompt tokens, answer-producing position).

    The answer-producing position is ``p - 1`` for the token ``p`` that covers the answer's first non-whitespace
    character: its next-token prediction is the first non-whitespace answer token. With a tokenizer that emits
    the space before a number as its own token the prompt's last token predicts only that space and this position
    is one later; for a tokenizer that glues the space to the answer it is the last prompt token.

    Raises:
        ValueError: (prefixed with ``where``) if the prompt's tokens are not a prefix of the full sequence's,
            the answer has no non-whitespace character, or that character is not among the tokens.
    """
    text = prompt + TARGET_DELIMITER + answer
    try:
        encoding = tokenizer(text, return_offsets_mapping=True)
    except NotImplementedError as err:
        raise ValueError(f"tokenizer {type(tokenizer).__name__} gives no offset mapping (needs a fast tokenizer)") from err
    ids, offsets = list(encoding["input_ids"]), [(int(s), int(e)) for s, e in encoding["offset_mapping"]]
    prompt_ids = list(tokenizer(prompt)["input_ids"])
    n_prompt = len(prompt_ids)
    if ids[:n_prompt] != prompt_ids:
        raise ValueError(f"{where}the prompt does not tokenize as a prefix of prompt + answer")
    stripped = answer.lstrip()
    if not stripped:
        raise ValueError(f"{where}the answer is empty")
    first = len(prompt) + len(TARGET_DELIMITER) + (len(answer) - len(stripped))
    producer = next((p - 1 for p, (s, e) in enumerate(offsets) if p > 0 and s <= first < e), None)
    if producer is None or producer < n_prompt - 1:
        raise ValueError(f"{where}cannot locate the answer's first non-whitespace character among the tokens")
    return ids, offsets, n_prompt, producer

"""Token classes from recorded spans and the tokenizer's offset mapping."""

from __future__ import annotations

import pytest

from attnlab.attention import KMI, NI, OC, SINK
from attnlab.attention.tokens import classes_from_spans, prompt_token_classes, prompt_with_spans
from attnlab.evaluate.tiny import build_tiny_tokenizer
from attnlab.prompts import build_prompt


def test_spans_shift_into_the_prompt_with_stripped_whitespace():
    question = "  Ava has 3 pens. Ben is 40. How many pens?  "
    key = [{"start": question.index("3"), "end": question.index("3") + 1}]
    noise = [{"start": question.index(" Ben"), "end": question.index("40.") + 3}]
    prompt, keys, noises = prompt_with_spans(question, key, noise)
    assert prompt == build_prompt(question)
    assert [prompt[s:e] for s, e in keys] == ["3"]
    assert [prompt[s:e] for s, e in noises] == [" Ben is 40."]


def test_span_outside_question_is_an_error():
    with pytest.raises(ValueError, match="item 'x': key span"):
        prompt_with_spans("short", [{"start": 2, "end": 9}], [], where="item 'x': ")


def test_classes_use_non_whitespace_characters():
    text = "ab 12. cd"
    # tokens: "ab", " 1", "2", ".", " ", "cd"  (the " " token is inside the noise span's joining space)
    offsets = [(0, 0), (0, 2), (2, 4), (4, 5), (5, 6), (6, 7), (7, 9)]
    classes = classes_from_spans(text, offsets, {KMI: [(3, 5)], NI: [(6, 9)]}, OC, SINK)
    assert classes == [SINK, OC, KMI, KMI, OC, NI, NI]


def test_real_tokenizer_classes_cover_the_spans():
    tokenizer = build_tiny_tokenizer()
    question = "Ava has 3 boxes of 12 pens. Ben has 40 cards. How many pens does Ava have?"
    key = [{"start": question.index("3"), "end": question.index("3") + 1},
           {"start": question.index("12"), "end": question.index("12") + 2}]
    start = question.index(" Ben")
    noise = [{"start": start, "end": question.index("cards.") + 6}]
    prompt, ids, classes = prompt_token_classes(tokenizer, question, key, noise)
    assert len(ids) == len(classes) and classes[0] == SINK and ids[0] == tokenizer.bos_token_id
    text = lambda cls: "".join(tokenizer.decode([i]) for i, c in zip(ids, classes) if c == cls)  # noqa: E731
    assert text(KMI).replace(" ", "") == "312"
    assert text(NI).strip() == "Ben has 40 cards."
    assert "How many pens" in text(OC) and "40" not in text(OC)

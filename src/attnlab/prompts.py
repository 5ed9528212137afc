"""The one prompt format, shared by pretraining, fine-tuning and evaluation.

The *prompt* is lm-evaluation-harness's ``gsm8k`` task format (``doc_to_text``:
``"Question: {{question}}\\nAnswer:"``, target delimiter ``" "``, few-shot
delimiter ``"\\n\\n"``). The *scoring* is not lm-eval's:
attnlab's strict and flexible filters use one stricter number pattern
(thousands groups, sentence-final periods, ranges and glued digits are
handled; ``attnlab.evaluate.extraction``), read only the text before a
model-posed new ``Question:``, and compare the answer *numerically* with the
gold number (``18`` and ``18.00`` agree), where lm-eval compares cleaned
strings. Generation length, stop sequences and few-shot sampling also follow
attnlab's config. So scores are comparable between models of one attnlab run,
not directly with published lm-eval numbers.
"""

from __future__ import annotations

from typing import Sequence

TARGET_DELIMITER = " "
FEWSHOT_DELIMITER = "\n\n"


def format_question(question: str) -> str:
    """``Question: {q}\\nAnswer:`` — the zero-shot prompt for one item."""
    return f"Question: {question.strip()}\nAnswer:"


def format_example(question: str, answer: str) -> str:
    """A solved example: the prompt, the target delimiter and the worked solution."""
    return format_question(question) + TARGET_DELIMITER + answer.strip()


def build_prompt(question: str, exemplars: Sequence[tuple[str, str]] = ()) -> str:
    """The k-shot prompt: solved exemplars separated by a blank line, then the question.

    With no exemplars this is :func:`format_question` (zero-shot).
    """
    shots = [format_example(q, a) for q, a in exemplars]
    return FEWSHOT_DELIMITER.join([*shots, format_question(question)])

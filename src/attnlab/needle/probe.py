"""Probe one model on the needle items: retrieval accuracy and attention masses per layer and head.

Accuracy. Greedy decoding (:func:`attnlab.evaluate.generation.generate_greedy`, the evaluation's engine) of each
item's prompt, stopping at a newline or ``Question:``; the prediction is the first whitespace-separated word of
the generation, parsed as one number (:func:`attnlab.evaluate.extraction.parse_number`), and the item is correct
when it equals the magic number (:func:`~attnlab.evaluate.extraction.answers_match`): an exact number match.

Attention. One teacher-forced forward pass of ``prompt + " " + answer`` per item through
:func:`attnlab.attention.masses.measure_class_masses` (per-layer capture, one layer's rows at a time; DiffLlama:
the differential map ``A_i - λ·A_{i+H/2}`` and the two raw maps). Two query positions:

* ``last_prompt_token`` — the prompt's last token (``:`` of ``Answer:``);
* ``answer`` — the position whose next-token prediction is the answer's first digit (with the project's
  digit-split tokenizer the prompt is followed by a lone space token, so this is one position later; for a
  tokenizer that glues the space to the number it is the last prompt token).

Keys are classed by the tokenizer's offset mapping of the recorded spans
(:func:`attnlab.attention.tokens.classes_from_spans`, decided by a token's non-whitespace characters), in
priority order: ``answer_value`` (the target's digits), ``answer_text`` (the rest of the target needle sentence),
``distractors`` (the other needles), ``question`` (``Question:``, the question sentence, ``Answer:`` and the
answer tokens), ``haystack`` (every other context token: the filler) and ``sink`` (the first token, BOS).
For a query q and map row a_q the mass on class c is ``m_c = Σ_{j in c} a_q[j]``; the per-row ``total`` is
``Σ_c m_c`` (1 for softmax rows, ``1 - λ_full`` for a differential row) and ``negative_mass = Σ_j min(a_q[j], 0)``.
Fractions of the query's attention mass are ``m_c / total`` (computed in :mod:`attnlab.needle.aggregate`).
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from attnlab.evaluate.extraction import answers_match, parse_number
from attnlab.evaluate.generation import generate_greedy
from attnlab.prompts import TARGET_DELIMITER

logger = logging.getLogger(__name__)

__all__ = [
    "CLASS_NAMES",
    "PROBE_SCHEMA",
    "QUERY_SCOPES",
    "item_token_classes",
    "predict_number",
    "probe_model",
    "retrieval",
]

#: key classes, in priority order; column names of the mass columns
CLASS_NAMES: tuple[str, ...] = ("answer_value", "answer_text", "distractors", "question", "haystack", "sink")
ANSWER_VALUE, ANSWER_TEXT, DISTRACTORS, QUESTION, HAYSTACK, SINK = range(len(CLASS_NAMES))
QUERY_SCOPES: tuple[str, ...] = ("last_prompt_token", "answer")

PROBE_SCHEMA = pa.schema(
    [
        pa.field("model", pa.string(), nullable=False),
        pa.field("id", pa.string(), nullable=False),
        pa.field("context_length", pa.int64(), nullable=False),
        pa.field("depth", pa.float64(), nullable=False),
        pa.field("n_needles", pa.int64(), nullable=False),
        pa.field("depth_actual", pa.float64(), nullable=False),
        pa.field("n_prompt_tokens", pa.int64(), nullable=False),
        pa.field("correct", pa.bool_(), nullable=False),
        pa.field("prediction", pa.string(), nullable=True),
        pa.field("generation", pa.string(), nullable=False),
        pa.field("gold", pa.string(), nullable=False),
        pa.field("query_scope", pa.string(), nullable=False),
        pa.field("map_kind", pa.string(), nullable=False),
        pa.field("layer", pa.int64(), nullable=False),
        pa.field("head", pa.int64(), nullable=False),
        *[pa.field(name, pa.float64(), nullable=False) for name in CLASS_NAMES],
        pa.field("total", pa.float64(), nullable=False),
        pa.field("negative_mass", pa.float64(), nullable=False),
        pa.field("lambda_full", pa.float64(), nullable=True),
        *[pa.field(f"n_{name}", pa.int64(), nullable=False) for name in CLASS_NAMES],
    ]
)


def predict_number(generation: str) -> str | None:
    """The first whitespace-separated word of ``generation`` if it is one number (``"4821."`` -> ``"4821."``), else None."""
    words = generation.split()
    if not words or parse_number(words[0]) is None:
        return None
    return words[0]


def retrieval(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    answers: Sequence[str],
    *,
    batch_size: int,
    max_new_tokens: int,
) -> tuple[list[str], list[str | None], list[bool]]:
    """Greedy generations, predictions and exact-number correctness for the prompts (stop at newline / Question:)."""
    generations = generate_greedy(
        model,
        tokenizer,
        list(prompts),
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        stop_sequences=["\n", "Question:"],
    )
    texts = [g.text for g in generations]
    predictions = [predict_number(t) for t in texts]
    correct = [answers_match(p, float(a)) for p, a in zip(predictions, answers)]
    return texts, predictions, correct


def item_token_classes(
    tokenizer: PreTrainedTokenizerBase, item: pd.Series | dict
) -> tuple[list[int], list[int], tuple[int, int]]:
    """(input ids of ``prompt + " " + answer``, class per token, (last prompt token, answer query) positions).

    Raises:
        ValueError: naming the item if the prompt's tokens are not a prefix of the full sequence's, or the answer
            digits cannot be located in the tokens.
    """
    from attnlab.attention.tokens import answer_producer, classes_from_spans

    prompt, answer = item["prompt"], item["answer"]
    text = prompt + TARGET_DELIMITER + answer
    ids, offsets, n_prompt, producer = answer_producer(tokenizer, prompt, answer, where=f"needle item {item['id']}: ")
    value, target = tuple(item["value_span"]), tuple(item["answer_span"])
    question_spans = [(0, prompt.index(":") + 1), (int(item["question_span"][0]), len(text))]
    spans = {
        ANSWER_VALUE: [value],
        ANSWER_TEXT: [target],
        DISTRACTORS: [tuple(s) for s in item["distractor_spans"]],
        QUESTION: question_spans,
    }
    classes = classes_from_spans(text, offsets, spans, default_class=HAYSTACK, first_class=SINK)
    return ids, classes, (n_prompt - 1, producer)


@torch.no_grad()
def probe_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: pd.DataFrame,
    *,
    model_name: str,
    batch_size: int,
    max_new_tokens: int,
    progress: bool = False,
) -> pd.DataFrame:
    """Accuracy and attention masses of ``model`` on every item: one row per item x query scope x map kind x layer x head.

    Columns: :data:`PROBE_SCHEMA`. Raises :class:`attnlab.attention.capture.UnsupportedArchitectureError` for a model
    without capturable attention (e.g. Mamba).
    """
    from attnlab.attention.capture import check_supported
    from attnlab.attention.masses import measure_class_masses

    check_supported(model)
    generations, predictions, correct = retrieval(
        model, tokenizer, list(items["prompt"]), list(items["answer"]), batch_size=batch_size, max_new_tokens=max_new_tokens
    )
    rows: dict[str, list] = {name: [] for name in PROBE_SCHEMA.names}
    iterator = range(len(items))
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc=f"needle {model_name}", unit="item")
    for index in iterator:
        item = items.iloc[index]
        ids, classes, queries = item_token_classes(tokenizer, item)
        counts = np.bincount(np.asarray(classes), minlength=len(CLASS_NAMES))
        result = measure_class_masses(
            model, torch.tensor([ids]), classes, query_positions=list(queries), n_classes=len(CLASS_NAMES)
        )
        for kind, masses in result.masses.items():  # masses [layers, heads, Q, C]
            negative = result.negative[kind]  # [layers, heads, Q]
            n_layers, n_heads, n_queries, _ = masses.shape
            for layer in range(n_layers):
                for head in range(n_heads):
                    for q, scope in enumerate(QUERY_SCOPES[:n_queries]):
                        row = masses[layer, head, q]
                        values = {
                            "model": model_name,
                            "id": item["id"],
                            "context_length": int(item["context_length"]),
                            "depth": float(item["depth"]),
                            "n_needles": int(item["n_needles"]),
                            "depth_actual": float(item["depth_actual"]),
                            "n_prompt_tokens": int(item["n_prompt_tokens"]),
                            "correct": bool(correct[index]),
                            "prediction": predictions[index],
                            "generation": generations[index],
                            "gold": str(item["answer"]),
                            "query_scope": scope,
                            "map_kind": kind,
                            "layer": layer,
                            "head": head,
                            "total": float(row.sum()),
                            "negative_mass": float(negative[layer, head, q]),
                            "lambda_full": result.lambda_full[layer],
                        }
                        for c, name in enumerate(CLASS_NAMES):
                            values[name] = float(row[c])
                            values[f"n_{name}"] = int(counts[c])
                        for key, value in values.items():
                            rows[key].append(value)
    return pd.DataFrame(rows, columns=PROBE_SCHEMA.names)

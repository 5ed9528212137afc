"""Evaluation stage: few-shot prompts, batched greedy generation, lm-eval-compatible answer extraction, pass@1.

Modules:
    extraction  -- ``extract_strict``, ``extract_flexible``, ``parse_number``, ``answers_match``
    generation  -- ``generate_greedy`` (length-sorted, left-padded, KV-cached, per-row stop) -> ``Generation``
    fewshot     -- ``select_exemplars`` (one seeded draw from the train split, shared by all items)
    evaluate    -- ``evaluate_items`` -> a table with ``EVAL_COLUMNS`` / ``EVAL_SCHEMA``
    cli         -- ``register(subparsers)`` adds ``attnlab evaluate``
    tiny        -- tiny random models and tokenizer for tests and benchmarks
"""

from attnlab.evaluate.evaluate import EVAL_COLUMNS, EVAL_SCHEMA, evaluate_items, normalize_eval_spec
from attnlab.evaluate.extraction import answers_match, extract_flexible, extract_strict, parse_number
from attnlab.evaluate.fewshot import select_exemplars
from attnlab.evaluate.generation import Generation, generate_greedy

__all__ = [
    "EVAL_COLUMNS",
    "EVAL_SCHEMA",
    "Generation",
    "answers_match",
    "evaluate_items",
    "extract_flexible",
    "extract_strict",
    "generate_greedy",
    "normalize_eval_spec",
    "parse_number",
    "select_exemplars",
]

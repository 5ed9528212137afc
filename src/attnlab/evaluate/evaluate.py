"""Evaluate a model on one dataset: prompts -> batched greedy generations -> extracted answers -> pass@1 rows.

One row per item (``EVAL_COLUMNS``). ``correct_strict`` / ``correct_flexible`` are lm-evaluation-harness's gsm8k
``strict-match`` / ``flexible-extract`` scores (see :mod:`attnlab.evaluate.extraction`); pass@1 of a model on a
dataset is the mean of ``correct_strict`` over its rows (greedy decoding, one sample per item).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import pandas as pd
import pyarrow as pa
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from attnlab.evaluate.extraction import answers_match, extract_flexible, extract_strict
from attnlab.evaluate.diffusion import generate_diffusion, normalize_diffusion_spec
from attnlab.evaluate.generation import generate_greedy
from attnlab.models.mdlm import is_masked_diffusion_model
from attnlab.prompts import build_prompt

__all__ = [
    "DEFAULT_STOP_SEQUENCES",
    "EVAL_COLUMNS",
    "EVAL_SCHEMA",
    "EVAL_SPEC_DEFAULTS",
    "evaluate_items",
    "normalize_eval_spec",
]

DEFAULT_STOP_SEQUENCES: tuple[str, ...] = ("Question:", "\n\n")

EVAL_SCHEMA = pa.schema(
    [
        pa.field("model", pa.string(), nullable=False),
        pa.field("base", pa.string(), nullable=False),
        pa.field("variant", pa.string(), nullable=False),
        pa.field("id", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("generation", pa.string(), nullable=False),
        pa.field("prediction", pa.string(), nullable=True),
        pa.field("prediction_flexible", pa.string(), nullable=True),
        pa.field("gold", pa.float64(), nullable=False),
        pa.field("correct_strict", pa.bool_(), nullable=False),
        pa.field("correct_flexible", pa.bool_(), nullable=False),
        pa.field("n_generated_tokens", pa.int64(), nullable=False),
        pa.field("n_prompt_tokens", pa.int64(), nullable=False),
    ]
)
EVAL_COLUMNS: tuple[str, ...] = tuple(EVAL_SCHEMA.names)

# Keys of the ``evaluate`` config section. Required keys have no default.
EVAL_SPEC_DEFAULTS: dict[str, Any] = {
    "stop_sequences": list(DEFAULT_STOP_SEQUENCES),
    "add_special_tokens": True,  # let the tokenizer add BOS, as the scratch models saw in training
    "diffusion": None,  # masked diffusion LMs: iterative-unmasking settings (attnlab.evaluate.diffusion)
}
_REQUIRED_SPEC_KEYS = ("num_fewshot", "fewshot_seed", "batch_size", "max_new_tokens")
_REQUIRED_DATA_COLUMNS = ("id", "question", "answer_number")


def _require_int(spec: dict[str, Any], key: str, minimum: int) -> int:
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"eval spec key {key!r} must be an integer >= {minimum}, got {value!r}")
    return value


def normalize_eval_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The eval spec with defaults filled in and every value checked.

    Keys: ``num_fewshot`` (int >= 0), ``fewshot_seed`` (int), ``batch_size`` (int >= 1), ``max_new_tokens``
    (int >= 1), ``stop_sequences`` (list of non-empty str; default ``["Question:", "\\n\\n"]``; EOS always stops),
    ``add_special_tokens`` (bool; default true), ``diffusion`` (null, or the iterative-unmasking settings of a masked
    diffusion LM, see :func:`attnlab.evaluate.diffusion.normalize_diffusion_spec`; ``answer_length`` defaults to
    ``max_new_tokens``). With ``diffusion`` set — or for an ``attnlab_mdlm`` model, with the defaults — answers come
    from :func:`attnlab.evaluate.diffusion.generate_diffusion` instead of greedy decoding.

    Raises:
        ValueError: naming the missing, unknown or invalid key.
    """
    if not isinstance(spec, dict):
        raise ValueError(f"eval spec must be a JSON object, got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(_REQUIRED_SPEC_KEYS) - set(EVAL_SPEC_DEFAULTS))
    if unknown:
        raise ValueError(
            f"unknown eval spec key(s) {unknown}; known: {sorted([*_REQUIRED_SPEC_KEYS, *EVAL_SPEC_DEFAULTS])}"
        )
    missing = [key for key in _REQUIRED_SPEC_KEYS if key not in spec]
    if missing:
        raise ValueError(f"eval spec is missing required key(s) {missing}")
    normalized = {**EVAL_SPEC_DEFAULTS, **spec}
    _require_int(normalized, "num_fewshot", 0)
    _require_int(normalized, "fewshot_seed", -(2**63))
    _require_int(normalized, "batch_size", 1)
    _require_int(normalized, "max_new_tokens", 1)
    stops = normalized["stop_sequences"]
    if not isinstance(stops, list) or any(not isinstance(s, str) or not s for s in stops):
        raise ValueError(f"eval spec key 'stop_sequences' must be a list of non-empty strings, got {stops!r}")
    if not isinstance(normalized["add_special_tokens"], bool):
        value = normalized["add_special_tokens"]
        raise ValueError(f"eval spec key 'add_special_tokens' must be true or false, got {value!r}")
    normalized["stop_sequences"] = list(stops)
    if normalized["diffusion"] is not None:
        if not isinstance(normalized["diffusion"], dict):
            raise ValueError(f"eval spec key 'diffusion' must be an object or null, got {normalized['diffusion']!r}")
        try:
            normalized["diffusion"] = normalize_diffusion_spec(normalized["diffusion"], normalized["max_new_tokens"])
        except ValueError as error:
            raise ValueError(f"eval spec key 'diffusion': {error}") from None
    return normalized


def _check_data(data: pd.DataFrame) -> None:
    """Required columns present, ids unique, every question a non-empty string, every gold answer finite."""
    missing = [c for c in _REQUIRED_DATA_COLUMNS if c not in data.columns]
    if missing:
        raise ValueError(f"evaluation data is missing column(s) {missing}; has {list(data.columns)}")
    duplicated = data["id"][data["id"].duplicated()].tolist()
    if duplicated:
        raise ValueError(f"evaluation data has duplicate id(s) {duplicated[:5]}")
    for item_id, question, gold in zip(data["id"], data["question"], data["answer_number"]):
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"item {item_id!r}: empty question")
        if gold is None or not math.isfinite(float(gold)):
            raise ValueError(f"item {item_id!r}: answer_number is {gold!r}, expected a finite number")


def evaluate_items(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    data: pd.DataFrame,
    eval_spec: dict[str, Any],
    exemplars: Sequence[tuple[str, str]],
    *,
    model_name: str,
    base: str,
    variant: str,
    progress: bool = False,
) -> pd.DataFrame:
    """Greedy pass@1 rows for every item of ``data``, in input order, with exactly ``EVAL_COLUMNS``.

    Args:
        model, tokenizer: the model under test (eval mode) and its tokenizer.
        data: a data-stage table (columns ``id``, ``question``, ``answer_number``, ... ); ``question`` is the
            (possibly noisy) text the model sees.
        eval_spec: see :func:`normalize_eval_spec`.
        exemplars: the few-shot (question, answer) pairs, from :func:`attnlab.evaluate.fewshot.select_exemplars`;
            their number must equal ``eval_spec["num_fewshot"]``.
        model_name, base, variant: labels copied into every row (model, base dataset, noise variant).
        progress: show a progress bar.

    Raises:
        ValueError: for a bad spec, a missing column, a duplicate id, an empty question, a non-finite gold answer,
            or a number of exemplars different from ``num_fewshot``.
    """
    spec = normalize_eval_spec(eval_spec)
    if len(exemplars) != spec["num_fewshot"]:
        raise ValueError(f"got {len(exemplars)} exemplars but eval spec num_fewshot is {spec['num_fewshot']}")
    _check_data(data)
    prompts = [build_prompt(question, exemplars) for question in data["question"]]
    diffusion = spec["diffusion"]
    if diffusion is None and is_masked_diffusion_model(model):
        diffusion = normalize_diffusion_spec({}, spec["max_new_tokens"])  # a masked diffusion LM never decodes greedily
    if diffusion is not None:  # masked diffusion LM: iterative unmasking (LLaDA), same Generation rows
        generations = generate_diffusion(
            model,
            tokenizer,
            prompts,
            batch_size=spec["batch_size"],
            steps=diffusion["steps"],
            block_length=diffusion["block_length"],
            answer_length=diffusion["answer_length"],
            remasking=diffusion["remasking"],
            seed=diffusion["seed"],
            mask_token_id_override=diffusion["mask_token_id"],
            stop_sequences=spec["stop_sequences"],
            progress=progress,
            add_special_tokens=spec["add_special_tokens"],
        )
    else:
        generations = generate_greedy(
            model,
            tokenizer,
            prompts,
            batch_size=spec["batch_size"],
            max_new_tokens=spec["max_new_tokens"],
            stop_sequences=spec["stop_sequences"],
            progress=progress,
            add_special_tokens=spec["add_special_tokens"],
        )
    golds = [float(g) for g in data["answer_number"]]
    strict = [extract_strict(g.text) for g in generations]
    flexible = [extract_flexible(g.text) for g in generations]
    table = pd.DataFrame(
        {
            "model": [model_name] * len(prompts),
            "base": [base] * len(prompts),
            "variant": [variant] * len(prompts),
            "id": [str(i) for i in data["id"]],
            "prompt": prompts,
            "generation": [g.text for g in generations],
            "prediction": pd.Series(strict, dtype=object),
            "prediction_flexible": pd.Series(flexible, dtype=object),
            "gold": pd.Series(golds, dtype="float64"),
            "correct_strict": pd.Series([answers_match(p, g) for p, g in zip(strict, golds)], dtype=bool),
            "correct_flexible": pd.Series([answers_match(p, g) for p, g in zip(flexible, golds)], dtype=bool),
            "n_generated_tokens": pd.Series([g.n_generated_tokens for g in generations], dtype="int64"),
            "n_prompt_tokens": pd.Series([g.n_prompt_tokens for g in generations], dtype="int64"),
        }
    )
    return table[list(EVAL_COLUMNS)]

"""Attention allocation of one model on one data table: per item × layer × head × map kind × query scope.

For each item the zero-shot prompt (:func:`attnlab.attention.tokens.prompt_token_classes`) is run through the
model once per query scope, with :func:`attnlab.attention.capture.capture_attention` reducing each layer's rows to
class masses at once:

* ``answer_token``: the query is the position that predicts the first non-whitespace token of the gold answer,
  teacher-forced on ``prompt + " " + answer`` (:func:`attnlab.attention.tokens.answer_producer`, the needle
  stage's answer query). With the project's digit-splitting tokenizer the last prompt token often predicts a lone
  space; this query is then one position later, and the tokens between the prompt and it are keys of class
  ``gen``. Left out for masked-diffusion LMs (they predict every answer position at once);
* ``last_prompt_token``: the query is the prompt's last token (it produces the first answer token, which may be
  whitespace); masked-diffusion LMs: the first masked answer position after the prompt, see
  :func:`allocation_tables`;
* ``generated``: the model's greedy continuation is generated first (:func:`attnlab.evaluate.generation.generate_greedy`,
  the evaluation's stop sequences), then prompt + continuation is run once and the queries are every
  answer-producing position — the last prompt token and each generated token but the last — averaged. Keys that
  are generated tokens form the class ``gen``.

Row values (see :mod:`attnlab.attention.masses`): ``kmi, ni, oc, sink, gen`` = class masses m_c (mean over the
scope's queries), ``total_mass`` = Σ_c m_c (1 for softmax maps, 1 - λ_full for DiffLlama's differential map),
``negative_mass`` = Σ_j min(a_j, 0) ≤ 0. Ratios (m_c / total_mass) are formed in :mod:`attnlab.attention.aggregate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from attnlab.attention import GEN, MAP_KINDS, QUERY_SCOPES, TOKEN_CLASSES
from attnlab.attention.capture import LayerAttention, capture_attention, check_supported
from attnlab.attention.masses import class_masses, negative_mass
from attnlab.attention.tokens import answer_producer, prompt_token_classes
from attnlab.models.mdlm import is_masked_diffusion_model

__all__ = ["ALLOCATION_SCHEMA", "TOKEN_MAP_SCHEMA", "AllocationSpec", "allocation_tables"]

_COUNT_COLUMNS = [f"n_{c}" for c in TOKEN_CLASSES]

ALLOCATION_SCHEMA = pa.schema(
    [
        pa.field("model", pa.string(), nullable=False),
        pa.field("base", pa.string(), nullable=False),
        pa.field("variant", pa.string(), nullable=False),
        pa.field("item", pa.string(), nullable=False),
        pa.field("layer", pa.int64(), nullable=False),
        pa.field("head", pa.int64(), nullable=False),
        pa.field("map_kind", pa.string(), nullable=False),
        pa.field("query_scope", pa.string(), nullable=False),
        pa.field("n_queries", pa.int64(), nullable=False),
        *[pa.field(c, pa.float64(), nullable=False) for c in TOKEN_CLASSES],
        pa.field("total_mass", pa.float64(), nullable=False),
        pa.field("negative_mass", pa.float64(), nullable=False),
        pa.field("lambda_full", pa.float64(), nullable=True),
        *[pa.field(c, pa.int64(), nullable=False) for c in _COUNT_COLUMNS],
    ]
)

TOKEN_MAP_SCHEMA = pa.schema(
    [
        pa.field("model", pa.string(), nullable=False),
        pa.field("base", pa.string(), nullable=False),
        pa.field("variant", pa.string(), nullable=False),
        pa.field("item", pa.string(), nullable=False),
        pa.field("layer", pa.int64(), nullable=False),
        pa.field("head", pa.int64(), nullable=False),
        pa.field("map_kind", pa.string(), nullable=False),
        pa.field("position", pa.int64(), nullable=False),
        pa.field("token", pa.string(), nullable=False),
        pa.field("token_class", pa.string(), nullable=False),
        pa.field("weight", pa.float64(), nullable=False),
    ]
)


@dataclass(frozen=True)
class AllocationSpec:
    """What to measure (the ``attention`` config section, normalised).

    Attributes:
        items: the first ``items`` rows of the data table (file order; the same ids in every variant).
        query_scopes: a subset of :data:`attnlab.attention.QUERY_SCOPES`.
        token_map_items: the first this-many items also get token-level rows (last prompt token query).
        max_new_tokens, stop_sequences, batch_size: greedy generation for the ``generated`` scope.
    """

    items: int = 100
    query_scopes: tuple[str, ...] = ("answer_token", "last_prompt_token")
    token_map_items: int = 2
    max_new_tokens: int = 32
    stop_sequences: tuple[str, ...] = ("Question:", "\n\n")
    batch_size: int = 32

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> "AllocationSpec":
        known = {"items", "query_scopes", "token_map_items", "max_new_tokens", "stop_sequences", "batch_size"}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise ValueError(f"unknown attention spec key(s) {unknown}; known: {sorted(known)}")
        out = cls(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}  # type: ignore[arg-type]
        )
        bad = [s for s in out.query_scopes if s not in QUERY_SCOPES]
        if bad or not out.query_scopes:
            raise ValueError(f"attention spec 'query_scopes' must be a non-empty subset of {QUERY_SCOPES}, got {bad}")
        for key in ("items", "max_new_tokens", "batch_size"):
            if not isinstance(getattr(out, key), int) or getattr(out, key) < 1:
                raise ValueError(f"attention spec {key!r} must be an integer >= 1, got {getattr(out, key)!r}")
        if not isinstance(out.token_map_items, int) or out.token_map_items < 0:
            raise ValueError(f"attention spec 'token_map_items' must be an integer >= 0, got {out.token_map_items!r}")
        return out


def _reducer(classes: torch.Tensor, keep_rows: bool):
    """Per layer: kind -> (masses [heads, C] mean over queries, negative [heads], λ, token rows [heads, T] or None)."""

    def reduce(attention: LayerAttention) -> tuple[int, float | None, dict[str, tuple]]:
        out = {}
        for kind, rows in attention.maps.items():  # rows: [1, heads, Q, T]
            masses = class_masses(rows[0], classes, len(TOKEN_CLASSES)).mean(dim=1)  # [heads, C]
            negative = negative_mass(rows[0]).mean(dim=1)  # [heads]
            token_rows = rows[0, :, 0, :].double().cpu().numpy() if keep_rows else None  # [heads, T], first query
            out[kind] = (masses.cpu().numpy(), negative.cpu().numpy(), token_rows, rows.shape[2])
        return attention.layer, attention.lambda_full, out

    return reduce


@torch.no_grad()
def _run(model, ids: list[int], classes: list[int], positions: list[int], keep_rows: bool):
    class_tensor = torch.tensor(classes, dtype=torch.long)
    with capture_attention(model, _reducer(class_tensor, keep_rows), positions) as per_layer:
        model(input_ids=torch.tensor([ids], device=model.device), use_cache=False)
    return per_layer


def allocation_tables(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    data: pd.DataFrame,
    spec: AllocationSpec,
    *,
    model_name: str,
    base: str,
    variant: str,
    mask_tokens: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(allocation rows with :data:`ALLOCATION_SCHEMA` columns, token-map rows with :data:`TOKEN_MAP_SCHEMA`).

    Args:
        data: a data-stage table (``id``, ``question``, ``answer``, ``key_spans``, ``noise_spans``); the first
            ``spec.items`` rows are measured.
        mask_tokens: masked-diffusion LMs (``attnlab_mdlm``) only: the answer length of their first decoding
            step. Their "last_prompt_token" scope is then the state at that step — prompt followed by
            ``mask_tokens`` ``<mask>`` tokens (class ``gen``) — and the query is the first answer position, the
            bidirectional model's analogue of the token that produces the first answer token. The ``generated``
            scope (greedy left-to-right decoding) does not apply to them and is left out for these models.

    Raises:
        UnsupportedArchitectureError: the model has no capturable attention.
        ValueError: a span that does not map onto the prompt (names the item id).
    """
    check_supported(model)
    items = data.iloc[: spec.items]
    labels = {"model": model_name, "base": base, "variant": variant}
    prepared = []
    for row in items.itertuples(index=False):
        prompt, ids, classes = prompt_token_classes(
            tokenizer, row.question, row.key_spans, row.noise_spans, where=f"item {row.id!r}: "
        )
        producer = None
        if "answer_token" in spec.query_scopes:
            full, _, n_prompt, producer = answer_producer(tokenizer, prompt, str(row.answer), where=f"item {row.id!r}: ")
            if full[:n_prompt] != ids:
                raise ValueError(f"item {row.id!r}: the prompt tokenizes differently with and without the answer")
            producer = (full[: producer + 1], producer)
        prepared.append((str(row.id), prompt, ids, classes, producer))
    diffusion = is_masked_diffusion_model(model)
    # masked-diffusion LMs: no left-to-right decoding and no single answer-producing position
    scopes = [s for s in spec.query_scopes if not (diffusion and s in ("generated", "answer_token"))]
    if diffusion and (mask_tokens < 1 or getattr(model.config, "mask_token_id", None) is None):
        raise ValueError("a masked diffusion LM needs mask_tokens >= 1 and config.mask_token_id")
    continuations: list[Sequence[int]] = [()] * len(prepared)
    if "generated" in scopes:
        from attnlab.evaluate.generation import generate_greedy

        generations = generate_greedy(
            model, tokenizer, [p[1] for p in prepared], batch_size=spec.batch_size,
            max_new_tokens=spec.max_new_tokens, stop_sequences=list(spec.stop_sequences),
        )
        continuations = [g.token_ids for g in generations]

    rows: list[dict[str, Any]] = []
    token_rows: list[dict[str, Any]] = []
    for index, (item, _prompt, ids, classes, producer) in enumerate(prepared):
        counts = {f"n_{c}": int(np.sum(np.asarray(classes) == k)) for k, c in enumerate(TOKEN_CLASSES)}
        for scope in scopes:
            keep = scope == "last_prompt_token" and index < spec.token_map_items
            if scope == "last_prompt_token" and diffusion:
                # the first decoding step: prompt + masked answer; the query is the first answer position
                seq = ids + [int(model.config.mask_token_id)] * mask_tokens
                # the state that predicts the first answer position: that position itself, or (shift operation,
                # an mdlm adapted from a causal LM) the last prompt token
                first = len(ids) - 1 if getattr(model.config, "shift_logits", False) else len(ids)
                seq_classes, positions = classes + [GEN] * mask_tokens, [first]
            elif scope == "last_prompt_token":
                seq, seq_classes, positions = ids, classes, [len(ids) - 1]
            elif scope == "answer_token":
                # prompt + the answer's leading whitespace tokens; the query predicts the first non-whitespace one
                seq, position = producer
                seq_classes, positions = classes + [GEN] * (len(seq) - len(ids)), [position]
            else:
                generated = list(continuations[index])
                seq = ids + generated[:-1]  # the last generated token produces nothing
                seq_classes = classes + [GEN] * (len(seq) - len(ids))
                positions = list(range(len(ids) - 1, len(seq)))
            scope_counts = {**counts, "n_gen": len(seq) - len(ids)}
            for layer, lambda_full, kinds in _run(model, seq, seq_classes, positions, keep):
                for kind, (masses, negative, per_token, n_queries) in kinds.items():
                    for head in range(masses.shape[0]):
                        rows.append(
                            {
                                **labels,
                                "item": item,
                                "layer": layer,
                                "head": head,
                                "map_kind": kind,
                                "query_scope": scope,
                                "n_queries": n_queries,
                                **{c: float(masses[head, k]) for k, c in enumerate(TOKEN_CLASSES)},
                                "total_mass": float(masses[head].sum()),
                                "negative_mass": float(negative[head]),
                                "lambda_full": lambda_full,
                                **scope_counts,
                            }
                        )
                        if per_token is not None:
                            tokens = [tokenizer.decode([t]) for t in seq]
                            token_rows += [
                                {
                                    **labels,
                                    "item": item,
                                    "layer": layer,
                                    "head": head,
                                    "map_kind": kind,
                                    "position": position,
                                    "token": str(tokens[position]),
                                    "token_class": TOKEN_CLASSES[seq_classes[position]],
                                    "weight": float(per_token[head, position]),
                                }
                                for position in range(len(seq))
                            ]
    allocation = pd.DataFrame(rows, columns=ALLOCATION_SCHEMA.names)
    kind_order = {k: i for i, k in enumerate(MAP_KINDS)}
    scope_order = {s: i for i, s in enumerate(QUERY_SCOPES)}
    if not allocation.empty:
        allocation = allocation.assign(
            _i=allocation["item"].map({p[0]: i for i, p in enumerate(prepared)}),
            _s=allocation["query_scope"].map(scope_order),
            _k=allocation["map_kind"].map(kind_order),
        ).sort_values(["_i", "_s", "layer", "_k", "head"], kind="stable").drop(columns=["_i", "_s", "_k"])
    allocation = allocation.reset_index(drop=True)
    allocation["lambda_full"] = allocation["lambda_full"].astype("float64")
    tokens_frame = pd.DataFrame(token_rows, columns=TOKEN_MAP_SCHEMA.names)
    return allocation, tokens_frame

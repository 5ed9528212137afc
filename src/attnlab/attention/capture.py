"""Per-layer capture of attention rows, reduced as soon as each layer has computed them.

How it works
------------
Llama, DiffLlama, GPT-2 (and Llama-like models such as the project's masked-diffusion LM) look their attention
function up in transformers' ``ALL_ATTENTION_FUNCTIONS`` under ``config._attn_implementation``. Inside
:func:`capture_attention` the model is switched to the implementation ``"attnlab_capture"`` registered here. That
function

1. computes the layer's output exactly as the model's own implementation does (SDPA, or eager if the model was
   loaded with eager attention), so the forward pass is unchanged;
2. computes the softmax rows of **only the requested query positions** with the model's own
   ``eager_attention_forward`` (same scaling, mask, GQA layout, softmax dtype), i.e. ``[B, H, Q, T]`` instead of
   ``[B, H, T, T]``;
3. checks that those rows reproduce the layer's output (``rows @ V == output rows``; a mismatch raises
   :class:`CaptureMismatchError`, so what is reported is what the model computed);
4. hands a :class:`LayerAttention` to the caller's ``reduce`` callback and drops the rows.

So at most one layer's ``[B, H, Q, T]`` rows exist at a time, whatever the depth (the benchmark
``benchmarks/bench_attention_memory.py`` measures it against ``output_attentions=True``).

Differential attention (DiffLlama, Ye et al. 2024, "Differential Transformer", arXiv:2410.05258)
--------------------------------------------------------------------------------------------------
HF's ``DiffLlamaAttention`` (transformers 5.x) computes, with H query heads of size d and value heads split in
two halves ``V1, V2``::

    A_h      = softmax(q_h k_hᵀ · d^-1/2 + mask)                       h = 0 … H-1   (raw softmax maps)
    λ_full   = exp(λ_q1 · λ_k1) - exp(λ_q2 · λ_k2) + λ_init            one scalar per layer
    λ_init   = 0.8 - 0.6 · exp(-0.3 · layer_idx)
    O_i      = (A_i - λ_full · A_{i+H/2}) · [V1 | V2]                  i = 0 … H/2-1  (pair i, width 2d)
    out      = o_proj((1 - λ_init) · RMSNorm(O_i) concatenated over i)

Both heads of pair i read the same values ``[V1 | V2]`` of KV group ``i // n_rep``. The effective map of
differential head i is therefore ``D_i = A_i - λ_full · A_{i+H/2}``; its rows sum to ``1 - λ_full`` and may have
negative entries. :class:`LayerAttention` for a DiffLlama layer carries ``differential`` (D_i), ``raw_a`` (A_i)
and ``raw_b`` (A_{i+H/2}), each ``[B, H/2, Q, T]`` with head index i = pair index.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch
from transformers import PreTrainedModel
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from attnlab.attention import MAP_DIFFERENTIAL, MAP_RAW_A, MAP_RAW_B, MAP_STANDARD
from attnlab.models.architectures import model_types

__all__ = [
    "CAPTURE_IMPLEMENTATION",
    "SUPPORTED_MODEL_TYPES",
    "CaptureMismatchError",
    "LayerAttention",
    "UnsupportedArchitectureError",
    "capture_attention",
    "check_supported",
    "is_differential",
]

CAPTURE_IMPLEMENTATION = "attnlab_capture"

#: ``config.model_type`` values whose attention modules use ``ALL_ATTENTION_FUNCTIONS`` (checked at run time too:
#: a model whose layers never call the capture function raises :class:`UnsupportedArchitectureError`).
SUPPORTED_MODEL_TYPES: tuple[str, ...] = model_types(attention=True)


class UnsupportedArchitectureError(ValueError):
    """The model has no attention layers this module can capture (e.g. Mamba) or an unknown model type."""


class CaptureMismatchError(RuntimeError):
    """The captured attention rows do not reproduce the layer's output: the capture would not be what the model computes."""


@dataclass(frozen=True)
class LayerAttention:
    """Attention rows of one layer for the requested query positions.

    Attributes:
        layer: 0-based decoder layer index (``module.layer_idx``).
        differential: whether the layer is a DiffLlama differential-attention layer.
        maps: map kind -> rows ``[B, heads, Q, T]`` (float32). Standard attention: ``{"standard": A}`` with H heads.
            Differential: ``{"differential": A_i - λ A_{i+H/2}, "raw_a": A_i, "raw_b": A_{i+H/2}}`` with H/2 heads.
        values: map kind -> the values those rows mix, ``[B, heads, T, dv]`` (float32); ``maps[k] @ values[k]`` is
            the layer's attention output for those queries, before ``o_proj`` (and, for DiffLlama, before the
            per-head RMSNorm and the ``1 - λ_init`` scale). Raw DiffLlama maps mix the same ``[V1 | V2]``.
        query_positions: the absolute key positions of the Q query rows.
        lambda_full: DiffLlama's λ_full for this layer; ``None`` for standard attention.
    """

    layer: int
    differential: bool
    maps: dict[str, torch.Tensor]
    values: dict[str, torch.Tensor] = field(repr=False)
    query_positions: tuple[int, ...]
    lambda_full: float | None = None


def is_differential(module: torch.nn.Module) -> bool:
    """Whether an attention module is DiffLlama's differential attention (it has the λ parameters)."""
    return all(hasattr(module, name) for name in ("lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2", "lambda_init"))


def check_supported(model: PreTrainedModel) -> str:
    """The model's ``config.model_type`` if this module can capture its attention.

    Raises:
        UnsupportedArchitectureError: for a model type outside :data:`SUPPORTED_MODEL_TYPES` (e.g. ``mamba``).
    """
    model_type = getattr(model.config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedArchitectureError(
            f"attention capture does not support model type {model_type!r} ({type(model).__name__}); "
            f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    return model_type


# --- the registered attention function ------------------------------------------------------------------------


@dataclass
class _State:
    reduce: Callable[[LayerAttention], Any]
    query_positions: tuple[int, ...] | None
    base: str  # the model's own implementation: "sdpa" or "eager"
    atol: float
    results: list[Any]
    calls: int = 0
    pending: dict[int, dict[str, Any]] = field(default_factory=dict)  # DiffLlama: first call's rows, per module


_ACTIVE: list[_State] = []


def _eager_function(module: torch.nn.Module) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """The module's own ``eager_attention_forward`` (its modeling file), so weights follow its exact formula."""
    fn = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
    if fn is None:
        raise UnsupportedArchitectureError(
            f"{type(module).__module__} has no eager_attention_forward; cannot compute attention weights"
        )
    return fn


def _row_mask(
    attention_mask: torch.Tensor | None, module: torch.nn.Module, rows: torch.Tensor, offset: int, t_k: int,
    dtype: torch.dtype,
) -> torch.Tensor | None:
    """An additive float mask ``[B|1, 1, Q, T]`` for the selected query rows (0 = attend, dtype-min = masked).

    ``sdpa_mask`` gives a boolean mask (True = attend) or ``None`` when the pattern is plain causal (or full, for
    non-causal modules) without padding; ``None`` is rebuilt from ``module.is_causal`` as SDPA would apply it.
    """
    minimum = torch.finfo(dtype).min
    if attention_mask is None:
        if not getattr(module, "is_causal", True):
            return None
        keys = torch.arange(t_k, device=rows.device)  # [T]
        allowed = keys[None, :] <= (rows + offset)[:, None]  # [Q, T]
        return torch.zeros(allowed.shape, dtype=dtype, device=rows.device).masked_fill(~allowed, minimum)[None, None]
    selected = attention_mask.index_select(2, rows) if attention_mask.shape[2] > 1 else attention_mask
    if selected.dtype == torch.bool:
        return torch.zeros(selected.shape, dtype=dtype, device=selected.device).masked_fill(~selected, minimum)
    return selected.to(dtype)


def _base_output(state: _State, module: torch.nn.Module, query, key, value, attention_mask, **kwargs):
    if state.base == "eager":
        mask = attention_mask
        if mask is not None and mask.dtype == torch.bool:
            mask = torch.zeros(mask.shape, dtype=query.dtype, device=mask.device).masked_fill(
                ~mask, torch.finfo(query.dtype).min
            )
        if mask is None and getattr(module, "is_causal", True) and query.shape[2] > 1:
            rows = torch.arange(query.shape[2], device=query.device)
            mask = _row_mask(None, module, rows, key.shape[2] - query.shape[2], key.shape[2], query.dtype)
        return _eager_function(module)(module, query, key, value, mask, **kwargs)
    return ALL_ATTENTION_FUNCTIONS["sdpa"](module, query, key, value, attention_mask, **kwargs)


def _check_rows(what: str, layer: int, expected: torch.Tensor, got: torch.Tensor, atol: float) -> None:
    if not torch.allclose(expected.float(), got.float(), atol=atol, rtol=atol):
        error = (expected.float() - got.float()).abs().max().item()
        raise CaptureMismatchError(
            f"layer {layer}: captured {what} attention rows do not reproduce the layer's output "
            f"(max abs difference {error:.3g} > {atol:g}); the capture would not measure what the model computes"
        )


def _capture_forward(module, query, key, value, attention_mask, **kwargs):
    """``AttentionInterface`` function: the model's own output plus captured rows for the requested queries.

    Shapes: query ``[B, H, Tq, d]``, key/value ``[B, Hkv, Tk, d|dv]``; returns ``([B, Tq, H, dv], None)``.
    """
    state = _ACTIVE[-1] if _ACTIVE else None
    base = state.base if state is not None else "sdpa"
    output, _ = _base_output(state or _State(lambda a: None, None, base, 0.0, []), module, query, key, value,
                             attention_mask, **kwargs)
    if state is None:
        return output, None
    state.calls += 1
    t_q, t_k = query.shape[2], key.shape[2]
    offset = t_k - t_q  # absolute key position of query row 0 (> 0 when decoding with a cache)
    positions = range(t_k) if state.query_positions is None else state.query_positions
    absolute = [p + t_k if p < 0 else p for p in positions]
    chosen = [p for p in absolute if offset <= p < t_k]
    if not chosen:
        return output, None
    rows = torch.tensor([p - offset for p in chosen], device=query.device)  # [Q]
    eager_kwargs = {k: v for k, v in kwargs.items() if k in ("scaling", "dropout")}
    mask = _row_mask(attention_mask, module, rows, offset, t_k, query.dtype)
    q_rows = query.index_select(2, rows)  # [B, H, Q, d]
    eager_out, weights = _eager_function(module)(module, q_rows, key, value, mask, **eager_kwargs)
    # eager_out: [B, Q, H, dv]; weights: [B, H, Q, T]
    layer = int(getattr(module, "layer_idx", -1))
    n_heads = query.shape[1]
    n_rep = n_heads // key.shape[1]
    values = value.repeat_interleave(n_rep, dim=1) if n_rep > 1 else value  # [B, H, T, dv]

    if not is_differential(module):
        _check_rows("standard", layer, output.index_select(1, rows), eager_out, state.atol)
        state.results.append(
            state.reduce(
                LayerAttention(
                    layer=layer,
                    differential=False,
                    maps={MAP_STANDARD: weights.float()},
                    values={MAP_STANDARD: values.float()},
                    query_positions=tuple(chosen),
                )
            )
        )
        return output, None

    # DiffLlama calls the attention function twice per forward (values V1 then V2, same Q/K so same weights).
    key_id = id(module)
    if key_id not in state.pending:
        _check_rows("raw", layer, output.index_select(1, rows), eager_out, state.atol)
        state.pending[key_id] = {"weights": weights, "values1": values, "output1": output.index_select(1, rows)}
        return output, None
    first = state.pending.pop(key_id)
    half = n_heads // 2
    lambda_1 = torch.exp(torch.sum(module.lambda_q1 * module.lambda_k1, dim=-1, dtype=torch.float32)).to(query.dtype)
    lambda_2 = torch.exp(torch.sum(module.lambda_q2 * module.lambda_k2, dim=-1, dtype=torch.float32)).to(query.dtype)
    lambda_full = lambda_1 - lambda_2 + module.lambda_init  # scalar
    raw = first["weights"].float()  # [B, H, Q, T]
    raw_a, raw_b = raw[:, :half], raw[:, half:]  # [B, H/2, Q, T] each
    differential = raw_a - lambda_full.float() * raw_b
    # values of pair i: [V1 | V2] of head i (head i + H/2 reads the same ones)
    pair_values = torch.cat([first["values1"], values], dim=-1)[:, :half].float()  # [B, H/2, T, 2 dv]
    # the module's own combination, before its RMSNorm: out1 - λ · out2 over the head halves
    combined = torch.cat([first["output1"], output.index_select(1, rows)], dim=-1)  # [B, Q, H, 2 dv]
    expected = combined[:, :, :half] - lambda_full * combined[:, :, half:]  # [B, Q, H/2, 2 dv]
    got = torch.einsum("bhqt,bhtv->bqhv", differential, pair_values)
    _check_rows("differential", layer, expected, got, state.atol * max(1.0, abs(float(lambda_full))) * 2)
    state.results.append(
        state.reduce(
            LayerAttention(
                layer=layer,
                differential=True,
                maps={MAP_DIFFERENTIAL: differential, MAP_RAW_A: raw_a, MAP_RAW_B: raw_b},
                values={MAP_DIFFERENTIAL: pair_values, MAP_RAW_A: pair_values, MAP_RAW_B: pair_values},
                query_positions=tuple(chosen),
                lambda_full=float(lambda_full),
            )
        )
    )
    return output, None


ALL_ATTENTION_FUNCTIONS.register(CAPTURE_IMPLEMENTATION, _capture_forward)
ALL_MASK_ATTENTION_FUNCTIONS.register(CAPTURE_IMPLEMENTATION, sdpa_mask)


def _default_atol(model: PreTrainedModel) -> float:
    return 1e-4 if model.dtype == torch.float32 else 2e-2


@contextmanager
def capture_attention(
    model: PreTrainedModel,
    reduce: Callable[[LayerAttention], Any],
    query_positions: Sequence[int] | None = (-1,),
    *,
    atol: float | None = None,
) -> Iterator[list[Any]]:
    """Within the block, every attention layer of every forward pass of ``model`` calls ``reduce`` once.

    Usage::

        with capture_attention(model, reduce=lambda a: class_masses(a, token_class, 4), query_positions=[-1]) as out:
            model(input_ids)
        # out: one reduce() result per attention layer, in layer order

    Args:
        model: a supported causal LM (:data:`SUPPORTED_MODEL_TYPES`), any attention implementation; it is switched
            to the capture implementation inside the block and restored after.
        reduce: called with a :class:`LayerAttention` per layer; keep only reduced numbers (the rows are freed
            after the call). Its return values are appended to the yielded list.
        query_positions: absolute positions of the query tokens in the sequence (negative = from the end, -1 = the
            last token); ``None`` = every position (full ``[T, T]`` maps, one layer at a time). Every row of a
            batch uses the same positions (use batch size 1, or right-aligned left-padded rows).
        atol: tolerance of the check that captured rows reproduce the layer output (default 1e-4 in float32,
            2e-2 in half precision).

    Raises:
        UnsupportedArchitectureError: unsupported model type, or no layer called the capture function.
        CaptureMismatchError: captured rows that do not reproduce a layer's output.
    """
    check_supported(model)
    previous = model.config._attn_implementation
    base = "eager" if previous == "eager" else "sdpa"
    state = _State(
        reduce=reduce,
        query_positions=None if query_positions is None else tuple(int(p) for p in query_positions),
        base=base,
        atol=_default_atol(model) if atol is None else float(atol),
        results=[],
    )
    model.set_attn_implementation(CAPTURE_IMPLEMENTATION)
    _ACTIVE.append(state)
    try:
        yield state.results
    finally:
        _ACTIVE.remove(state)
        model.set_attn_implementation(previous)
    if state.calls == 0:
        raise UnsupportedArchitectureError(
            f"no attention layer of {type(model).__name__} called the capture function; its attention modules do "
            "not dispatch through transformers' ALL_ATTENTION_FUNCTIONS"
        )
    if state.pending:
        raise CaptureMismatchError("a differential-attention layer was called once instead of twice per forward")

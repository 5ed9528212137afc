"""Adaptive sparse attention: per head, each query keeps only its top-scoring keys.

The attention function :func:`sparse_attention_forward` is registered with transformers' attention
interface under the name ``"attnlab_sparse"`` (``transformers.AttentionInterface.register``), together with
the eager (additive float) mask builder for the same name (``AttentionMaskInterface.register``), so a model is
switched with ``model.set_attn_implementation("attnlab_sparse")`` — no model file is edited. Every attention
module of Llama, DiffLlama, GPT-2 and the project's ``mdlm`` (Llama blocks, bidirectional) calls the interface
(transformers 5.24: ``ALL_ATTENTION_FUNCTIONS.get_interface(config._attn_implementation, ...)``).

Per query q of head h with the set V(q) of keys the mask allows (causal and padding, or padding only for a
bidirectional model), and a keep ratio r_h in (0, 1]::

    n(q)      = |V(q)|
    k_h(q)    = clamp(ceil(r_h · n(q) − 1e-6), 1, n(q))      keys kept, the sink included (1e-6: float32 ratios)
    sink(q)   = min V(q)                                     first attendable key (BOS; after left padding)
    K_h(q)    = {sink(q)} ∪ top_{k_h(q)−1} {s(q, j) : j ∈ V(q) \\ {sink(q)}},   s(q, j) = q·k_j · scale
    A_h(q, ·) = softmax over K_h(q) of s(q, ·)               (other keys get the mask's minimum value)

The selection is ``torch.topk`` over the scores (a partial sort; exact ties between scores are broken by topk's
deterministic order). With r_h = 1 every allowed key is kept and the result is the eager softmax attention,
term for term.

DiffLlama: its attention module calls the interface twice with the same query/key and the two halves of V and
combines the outputs as ``A_i − λ·A_{i+H/2}`` per differential head i (Ye et al. 2024). Both calls select the
same keys (selection depends on q and k only). The unit of a keep ratio is the differential head (as for the
HeadIG gates): unit i's ratio applies to softmax heads i and i + H/2, so :func:`expand_unit_ratios` repeats the
H/2 unit ratios twice.

Adaptive allocation at a budget b (mean keep ratio over all units). The head scores s (signed HeadIG) are first
mapped to weights w ≥ 0 by an allocation rule, :func:`allocation_weights`:

* ``linear_signed``: w_h = max(s_h, 0) — a head with s_h ≤ 0 keeps only the floor m, whatever its |s_h|;
* ``magnitude``:     w_h = |s_h| — relevance regardless of sign;
* ``rank``:          w_h = rank of s_h among the heads (1 = lowest, ties averaged) — scale-free, no head at 0;
* ``softmax``:       w_h = exp(z_h / T), z = (s − mean s) / std s, T = ``temperature`` — no head at 0, T → ∞
  is uniform, T → 0 gives everything to the top head.

Then, with the weights w ≥ 0 and a floor m (``min_ratio``), :func:`allocate_keep_ratios`::

    r_h(c) = clip(c · w_h, m, 1),      find c ≥ 0 with mean_h r_h(c) = b     (water-filling)

mean_h r_h(c) is continuous and non-decreasing in c, from m (c = 0) to its limit
(|{w > 0}| + m·|{w = 0}|)/n, so c is found by bisection; this is the clip-and-renormalise iteration
(rescale the unclipped heads so the mean is b, clip, repeat) solved exactly. When the limit is below b (many
heads with zero weight), the heads with w > 0 get 1 and the zero-weight heads share the remainder
equally. Uniform allocation gives every unit r = b. Either way mean_h r_h = b: equal total budget.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn
from transformers import AttentionInterface, PreTrainedModel
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

from attnlab.models.architectures import by_model_type, head_units

__all__ = [
    "SPARSE_ATTENTION",
    "ALLOCATIONS",
    "allocate_keep_ratios",
    "allocation_weights",
    "attention_modules",
    "expand_unit_ratios",
    "register_sparse_attention",
    "sparse_attention",
    "sparse_attention_forward",
    "sparse_keep_mask",
    "uniform_keep_ratios",
    "units_per_layer",
]

#: the name the attention function is registered under
SPARSE_ATTENTION = "attnlab_sparse"
#: module attribute holding the per-query-head keep ratios ([H] float tensor); absent = dense
_RATIO_ATTR = "_attnlab_keep_ratio"
#: module attribute accumulating [kept, allowed] (query, key) pair counts while a context is active
_COUNT_ATTR = "_attnlab_keep_counts"


def sparse_keep_mask(scores: torch.Tensor, allowed: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """Which (query, key) pairs a sparse head keeps.

    Args:
        scores: pre-softmax scores, [batch, heads, q_len, kv_len].
        allowed: bool, broadcastable to ``scores``: the keys the mask lets each query see.
        ratio: keep ratio per head, [heads] (values in (0, 1]).

    Returns:
        bool [batch, heads, q_len, kv_len]: k(q) = clamp(ceil(r·n(q)), 1, n(q)) keys per query with n(q) ≥ 1
        allowed keys — the first allowed key (sink) and the k(q) − 1 highest-scoring other allowed keys.
        Queries with no allowed key keep nothing.
    """
    allowed = allowed.expand_as(scores)
    kv_len = scores.shape[-1]
    n_allowed = allowed.sum(dim=-1)  # [b, h, q]
    ratio = ratio.to(device=scores.device, dtype=torch.float64).view(1, -1, 1)  # [1, h, 1]
    k_keep = torch.ceil(ratio * n_allowed.to(torch.float64) - 1e-6).to(torch.long)  # [b, h, q]; 1e-6: float32 ratios
    k_keep = torch.minimum(k_keep.clamp(min=1), n_allowed)
    positions = torch.arange(kv_len, device=scores.device)
    sink = torch.where(allowed, positions, kv_len).amin(dim=-1, keepdim=True)  # [b, h, q, 1]
    rank_key = scores.detach().to(torch.float32).masked_fill(~allowed, -math.inf)
    rank_key = rank_key.masked_fill(positions == sink, math.inf)  # the sink ranks first
    k_max = int(k_keep.max()) if k_keep.numel() else 0
    top = torch.topk(rank_key, k_max, dim=-1, sorted=True).indices  # [b, h, q, k_max], best first
    take = torch.arange(k_max, device=scores.device) < k_keep.unsqueeze(-1)  # [b, h, q, k_max]
    keep = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device).scatter_(-1, top, take)
    return keep & allowed


def _repeat_kv(states: torch.Tensor, n_rep: int) -> torch.Tensor:
    """[b, kv_heads, s, d] -> [b, kv_heads·n_rep, s, d] (grouped-query attention)."""
    if n_rep == 1:
        return states
    b, kv_heads, s, d = states.shape
    return states[:, :, None].expand(b, kv_heads, n_rep, s, d).reshape(b, kv_heads * n_rep, s, d)


def sparse_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: object,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention with per-head top-k key selection (the ``attnlab_sparse`` implementation).

    Shapes (transformers' attention interface): query [b, H, q, d], key [b, H_kv, k, d], value
    [b, H_kv, k, d_v], attention_mask additive float [b, 1, q, k] (0 = attend, dtype min = masked) or bool
    (True = attend) or None (a causal module then gets a causal mask aligned to the last query).
    Returns (output [b, q, H, d_v], weights [b, H, q, k]), as the eager implementations do.

    The keep ratios come from the module attribute set by :func:`sparse_attention`; a module without one
    computes dense eager attention.
    """
    n_heads = query.shape[1]
    key = _repeat_kv(key, n_heads // key.shape[1])
    value = _repeat_kv(value, n_heads // value.shape[1])
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling  # [b, H, q, k]
    q_len, kv_len = scores.shape[-2:]
    if attention_mask is None:
        if getattr(module, "is_causal", True) and q_len > 1:
            rows = torch.arange(q_len, device=scores.device).view(-1, 1) + (kv_len - q_len)
            allowed = torch.arange(kv_len, device=scores.device).view(1, -1) <= rows  # [q, k]
            attention_mask = torch.zeros(q_len, kv_len, dtype=scores.dtype, device=scores.device)
            attention_mask = attention_mask.masked_fill(~allowed, torch.finfo(scores.dtype).min)[None, None]
        else:
            allowed = torch.ones(1, 1, q_len, kv_len, dtype=torch.bool, device=scores.device)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            allowed = attention_mask[..., :kv_len]
            attention_mask = torch.zeros_like(allowed, dtype=scores.dtype).masked_fill(
                ~allowed, torch.finfo(scores.dtype).min
            )
        else:
            attention_mask = attention_mask[..., :kv_len]
            allowed = attention_mask > torch.finfo(attention_mask.dtype).min / 2
        scores = scores + attention_mask
    ratio = getattr(module, _RATIO_ATTR, None)
    if ratio is not None:
        if ratio.numel() != n_heads:
            raise ValueError(f"{type(module).__name__}: {ratio.numel()} keep ratios for {n_heads} query heads")
        keep = sparse_keep_mask(scores, allowed, ratio)
        counts = getattr(module, _COUNT_ATTR, None)
        if counts is not None:
            counts[0] += int(keep.sum())
            counts[1] += int(allowed.expand_as(scores).sum())
        scores = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
    weights = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()  # [b, q, H, d_v]
    return output, weights


def register_sparse_attention() -> None:
    """Register the attention function and its (eager, additive float) mask builder; idempotent."""
    AttentionInterface.register(SPARSE_ATTENTION, sparse_attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(SPARSE_ATTENTION, eager_mask)


register_sparse_attention()


def attention_modules(model: PreTrainedModel) -> list[nn.Module]:
    """The self-attention module of every layer, in layer order (modules with a ``layer_idx`` and ``*Attention``)."""
    found = [
        m
        for m in model.modules()
        if type(m).__name__.endswith("Attention") and getattr(m, "layer_idx", None) is not None
        and not getattr(m, "is_cross_attention", False)
    ]
    if not found:
        raise ValueError(f"{type(model).__name__}: no attention modules with a layer_idx found")
    found.sort(key=lambda m: m.layer_idx)
    return found


def _is_differential(model: PreTrainedModel) -> bool:
    arch = by_model_type(model.config.model_type)
    return arch is not None and arch.differential


def units_per_layer(model: PreTrainedModel) -> int:
    """Head units of a layer: H query heads, or H/2 differential heads for DiffLlama."""
    return head_units(model.config)


def expand_unit_ratios(model: PreTrainedModel, unit_ratios: np.ndarray) -> np.ndarray:
    """Per-unit ratios [layers, units] -> per-query-head ratios [layers, H] (DiffLlama: unit i -> heads i, i+H/2)."""
    unit_ratios = np.asarray(unit_ratios, dtype=np.float64)
    layers = len(attention_modules(model))
    expected = (layers, units_per_layer(model))
    if unit_ratios.shape != expected:
        raise ValueError(f"keep ratios have shape {unit_ratios.shape}, the model has (layers, units) = {expected}")
    if np.any(~np.isfinite(unit_ratios)) or np.any(unit_ratios <= 0) or np.any(unit_ratios > 1):
        raise ValueError("keep ratios must lie in (0, 1]")
    if _is_differential(model):
        return np.concatenate([unit_ratios, unit_ratios], axis=1)
    return unit_ratios


@contextmanager
def sparse_attention(model: PreTrainedModel, unit_ratios: np.ndarray | None) -> Iterator[list[int]]:
    """Run ``model`` with per-unit keep ratios [layers, units] (None = dense, the model's own implementation).

    Switches the model to the ``attnlab_sparse`` implementation for the duration and restores the previous
    implementation after. Yields ``[kept, allowed]``: (query, key) pair counts summed over all heads and layers
    while the context is active, so the realised keep fraction is ``kept / allowed`` (DiffLlama calls the
    attention function twice per layer, once per half of V, so its pairs are counted twice).
    """
    counts = [0, 0]
    if unit_ratios is None:
        yield counts
        return
    head_ratios = expand_unit_ratios(model, unit_ratios)
    modules = attention_modules(model)
    previous = model.config._attn_implementation
    model.set_attn_implementation(SPARSE_ATTENTION)
    if model.config._attn_implementation != SPARSE_ATTENTION:
        raise RuntimeError(f"{type(model).__name__} does not accept the attention implementation {SPARSE_ATTENTION!r}")
    try:
        for module, ratios in zip(modules, head_ratios):
            setattr(module, _RATIO_ATTR, torch.tensor(ratios, dtype=torch.float64))
            setattr(module, _COUNT_ATTR, counts)
        yield counts
    finally:
        for module in modules:
            for attr in (_RATIO_ATTR, _COUNT_ATTR):
                if hasattr(module, attr):
                    delattr(module, attr)
        model.set_attn_implementation(previous)


def allocate_keep_ratios(
    importance: np.ndarray,
    budget: float,
    min_ratio: float,
    *,
    scope: str = "global",
    tol: float = 1e-10,
) -> np.ndarray:
    """Keep ratios ∝ importance with mean = ``budget``, clipped to [``min_ratio``, 1] (see module docstring).

    Args:
        importance: head importances, [layers, units]; negative and NaN-free values (negatives count as 0).
        budget: the mean keep ratio, min_ratio <= budget <= 1.
        min_ratio: the floor every head keeps, in (0, 1].
        scope: ``global`` (mean over all heads = budget) or ``per_layer`` (mean over each layer's heads = budget).

    Returns:
        ratios [layers, units], float64.
    """
    importance = np.asarray(importance, dtype=np.float64)
    if importance.ndim != 2 or importance.size == 0:
        raise ValueError(f"importance must be a non-empty [layers, units] array, got shape {importance.shape}")
    if not np.all(np.isfinite(importance)):
        raise ValueError("importance has non-finite values")
    if not 0 < min_ratio <= 1:
        raise ValueError(f"min_ratio must lie in (0, 1], got {min_ratio}")
    if not min_ratio <= budget <= 1:
        raise ValueError(f"budget {budget} must lie in [min_ratio={min_ratio}, 1]")
    if scope == "per_layer":
        return np.stack([_allocate(row, budget, min_ratio, tol) for row in importance])
    if scope != "global":
        raise ValueError(f"scope must be 'global' or 'per_layer', got {scope!r}")
    return _allocate(importance.ravel(), budget, min_ratio, tol).reshape(importance.shape)


def _allocate(importance: np.ndarray, budget: float, floor: float, tol: float) -> np.ndarray:
    s = np.clip(importance, 0.0, None)
    positive = s > 0
    n = s.size
    if not positive.any():
        return np.full(n, budget)
    limit = (positive.sum() + floor * (~positive).sum()) / n
    if limit <= budget + tol:  # even c -> inf falls short: positive heads keep all, zero heads share the rest
        ratios = np.where(positive, 1.0, 0.0)
        ratios[~positive] = (budget * n - positive.sum()) / (~positive).sum()
        return ratios

    def mean_ratio(c: float) -> float:
        return float(np.clip(c * s, floor, 1.0).mean())

    low, high = 0.0, 1.0 / s[positive].min()  # at `high` every positive head is clipped to 1
    for _ in range(200):
        mid = 0.5 * (low + high)
        if mean_ratio(mid) < budget:
            low = mid
        else:
            high = mid
        if high - low <= tol * high:
            break
    ratios = np.clip(high * s, floor, 1.0)
    # remove the bisection's last rounding so the mean is the budget to float precision
    free = (ratios > floor) & (ratios < 1.0)
    if free.any():
        ratios[free] += (budget * n - ratios.sum()) / free.sum()
    return np.clip(ratios, floor, 1.0)


#: the adaptive allocation rules (see the module docstring)
ALLOCATIONS: tuple[str, ...] = ("linear_signed", "magnitude", "rank", "softmax")


def allocation_weights(scores: np.ndarray, allocation: str, *, temperature: float = 1.0) -> np.ndarray:
    """Non-negative allocation weights w [same shape] from signed head scores s (see the module docstring).

    ``softmax`` standardises over all the given scores (a constant score vector gives equal weights); ``rank``
    ranks over all of them (scipy's average ranks, 1 = lowest).
    """
    from scipy.stats import rankdata

    s = np.asarray(scores, dtype=np.float64)
    if not np.all(np.isfinite(s)):
        raise ValueError("head scores have non-finite values")
    if allocation == "linear_signed":
        return np.clip(s, 0.0, None)
    if allocation == "magnitude":
        return np.abs(s)
    if allocation == "rank":
        return rankdata(s.ravel(), method="average").reshape(s.shape)
    if allocation == "softmax":
        if not temperature > 0:
            raise ValueError(f"softmax allocation needs temperature > 0, got {temperature}")
        std = float(s.std())
        z = (s - s.mean()) / std if std > 0 else np.zeros_like(s)
        logits = z / temperature
        return np.exp(logits - logits.max())
    raise ValueError(f"unknown allocation {allocation!r}; choose from {ALLOCATIONS}")


def uniform_keep_ratios(shape: Sequence[int], budget: float) -> np.ndarray:
    """Every head keeps the same ratio: [layers, units] filled with ``budget``."""
    if not 0 < budget <= 1:
        raise ValueError(f"budget must lie in (0, 1], got {budget}")
    return np.full(tuple(shape), float(budget))


# --- running dense / uniform / adaptive conditions on a model -------------------

#: per-item results: one row per condition (method × budget) × item
SPARSE_METHODS: tuple[str, ...] = ("dense", "uniform", "adaptive")


def sparse_schema():  # pyarrow imported here: the attention function itself does not need it
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("model", pa.string(), nullable=False),
            pa.field("base", pa.string(), nullable=False),
            pa.field("scores", pa.string(), nullable=False),
            pa.field("method", pa.string(), nullable=False),  # dense | uniform | adaptive
            pa.field("allocation", pa.string(), nullable=False),  # adaptive: the allocation rule; else ""
            pa.field("budget", pa.float64(), nullable=False),  # mean keep ratio (1.0 for dense)
            pa.field("realised_keep_fraction", pa.float64(), nullable=False),  # kept / attendable pairs, loss pass
            pa.field("id", pa.string(), nullable=False),
            pa.field("correct", pa.bool_(), nullable=True),  # strict pass@1; null if not a pass@1 item
            pa.field("loss", pa.float64(), nullable=True),  # answer-token loss; null if not a loss item
        ]
    )


def sparse_conditions(
    scores: np.ndarray,
    budgets: Sequence[float],
    *,
    min_ratio: float,
    scope: str,
    allocations: Sequence[str] = ("linear_signed",),
    temperature: float = 1.0,
) -> list[tuple[str, str, float, np.ndarray | None]]:
    """(method, allocation, budget, unit keep ratios [L, U] or None): dense, then at each budget uniform and one
    adaptive condition per allocation rule (allocation "" for dense and uniform)."""
    conditions: list[tuple[str, str, float, np.ndarray | None]] = [("dense", "", 1.0, None)]
    weights = {a: allocation_weights(scores, a, temperature=temperature) for a in allocations}
    for budget in budgets:
        conditions.append(("uniform", "", float(budget), uniform_keep_ratios(scores.shape, budget)))
        for allocation in allocations:
            ratios = allocate_keep_ratios(weights[allocation], budget, min_ratio, scope=scope)
            conditions.append(("adaptive", allocation, float(budget), ratios))
    return conditions


def run_sparse(
    data,
    scores: np.ndarray,
    *,
    budgets: Sequence[float],
    min_ratio: float,
    scope: str,
    pass_items: int,
    loss_items: int,
    measure,
    labels: dict[str, str],
    allocations: Sequence[str] = ("linear_signed",),
    temperature: float = 1.0,
):
    """Measure dense, uniform and adaptive sparse attention; one row per condition × item (:func:`sparse_schema`).

    Args:
        data: the data-stage items (first ``max(pass_items, loss_items)`` rows are used).
        scores: [layers, units] signed head scores, mapped to weights by each rule of ``allocations``.
        measure: ``measure(ratios, pass_data, loss_data) -> (correct, loss, realised keep fraction)``
            (:meth:`attnlab.validation.measure.Measurer.sparse`).
        labels: ``model``, ``base``, ``scores`` copied into every row.

    Returns:
        (per-item DataFrame, {"{method}@{budget}": ratios as nested lists}) — the ratios go to the file's metadata.
    """
    import pandas as pd

    n_pass, n_loss = min(pass_items, len(data)), min(loss_items, len(data))
    items = data.iloc[: max(n_pass, n_loss)].reset_index(drop=True)
    ids = [str(i) for i in items["id"]]
    rows = []
    ratios_used: dict[str, list[list[float]]] = {}
    conditions = sparse_conditions(
        scores, budgets, min_ratio=min_ratio, scope=scope, allocations=allocations, temperature=temperature
    )
    for method, allocation, budget, ratios in conditions:
        correct, loss, realised = measure(ratios, items.iloc[:n_pass], items.iloc[:n_loss])
        if ratios is not None:
            name = f"{method}-{allocation}" if allocation else method
            ratios_used[f"{name}@{budget:g}"] = np.round(ratios, 6).tolist()
        for position, item_id in enumerate(ids):
            rows.append(
                {
                    **labels,
                    "method": method,
                    "allocation": allocation,
                    "budget": budget,
                    "realised_keep_fraction": float(realised),
                    "id": item_id,
                    "correct": bool(correct[position]) if position < n_pass else None,
                    "loss": float(loss[position]) if position < n_loss else None,
                }
            )
    return pd.DataFrame(rows, columns=sparse_schema().names), ratios_used

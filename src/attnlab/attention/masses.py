"""Reduce captured attention rows to the mass each token class receives.

For a query q and a map row a_q (``[T]``, a softmax row, or for DiffLlama the differential row
``A_i[q] - λ·A_{i+H/2}[q]``), the mass on class c is

    m_c(q) = Σ_{j : class(j) = c} a_q[j]

and the negative mass is ``Σ_j min(a_q[j], 0)`` (zero for softmax rows; reported separately, never clamped away).
For softmax rows Σ_c m_c = 1; for a differential row Σ_c m_c = 1 - λ_full.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from transformers import PreTrainedModel

from attnlab.attention.capture import LayerAttention, capture_attention

__all__ = ["ClassMasses", "class_masses", "layer_class_masses", "measure_class_masses", "negative_mass"]


def class_masses(rows: torch.Tensor, token_class: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Mass per class: ``rows [..., T]`` × one-hot ``token_class [T]`` -> ``[..., n_classes]`` (float64 result).

    Keys with class ``-1`` (e.g. padding) count in no class.
    """
    if token_class.shape[-1] != rows.shape[-1]:
        raise ValueError(f"token_class has {token_class.shape[-1]} keys but the attention rows have {rows.shape[-1]}")
    valid = token_class >= 0
    onehot = torch.nn.functional.one_hot(token_class.clamp(min=0), n_classes).to(rows.dtype)  # [T, C]
    onehot = onehot * valid[..., None].to(rows.dtype)
    # sum in the rows' dtype (no float64 copy of [.., Q, T] rows), result in float64
    return (rows @ onehot.to(rows.device)).to(torch.float64)


def negative_mass(rows: torch.Tensor) -> torch.Tensor:
    """``Σ_j min(rows[..., j], 0)`` -> ``[...]`` (float64, ≤ 0)."""
    return rows.clamp(max=0.0).sum(-1).to(torch.float64)


def layer_class_masses(
    attention: LayerAttention, token_class: torch.Tensor, n_classes: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """map kind -> (masses ``[B, heads, Q, n_classes]``, negative mass ``[B, heads, Q]``) for one layer."""
    return {
        kind: (class_masses(rows, token_class, n_classes).cpu().numpy(), negative_mass(rows).cpu().numpy())
        for kind, rows in attention.maps.items()
    }


@dataclass(frozen=True)
class ClassMasses:
    """Class masses of every layer for one sequence (batch size 1).

    Attributes:
        masses: map kind -> ``[layers, heads, Q, n_classes]`` (float64).
        negative: map kind -> ``[layers, heads, Q]`` (float64, ≤ 0).
        lambda_full: per layer, DiffLlama's λ_full (``None`` for standard attention).
        query_positions: absolute positions of the Q queries.
    """

    masses: dict[str, np.ndarray]
    negative: dict[str, np.ndarray]
    lambda_full: tuple[float | None, ...]
    query_positions: tuple[int, ...]


@torch.no_grad()
def measure_class_masses(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    token_class: Sequence[int] | torch.Tensor,
    query_positions: Sequence[int],
    n_classes: int,
) -> ClassMasses:
    """One forward pass of ``input_ids [1, T]``; the class masses of every layer and head for the given queries.

    Args:
        model: a supported model (see :func:`attnlab.attention.capture.check_supported`).
        input_ids: ``[1, T]`` token ids (on any device; moved to the model's).
        token_class: ``[T]`` class index per token (0 … n_classes-1; -1 = in no class).
        query_positions: absolute query positions (negative = from the end).
        n_classes: number of classes.
    """
    if input_ids.ndim != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"input_ids must have shape [1, T], got {tuple(input_ids.shape)}")
    classes = torch.as_tensor(token_class, dtype=torch.long)
    if classes.shape != (input_ids.shape[1],):
        raise ValueError(f"token_class must have one entry per token ({input_ids.shape[1]}), got {tuple(classes.shape)}")

    def reduce(attention: LayerAttention):
        return attention.lambda_full, attention.query_positions, layer_class_masses(attention, classes, n_classes)

    with capture_attention(model, reduce, query_positions) as per_layer:
        model(input_ids=input_ids.to(model.device), use_cache=False)
    kinds = list(per_layer[0][2])
    return ClassMasses(
        masses={k: np.stack([layer[2][k][0][0] for layer in per_layer]) for k in kinds},
        negative={k: np.stack([layer[2][k][1][0] for layer in per_layer]) for k in kinds},
        lambda_full=tuple(layer[0] for layer in per_layer),
        query_positions=per_layer[0][1],
    )

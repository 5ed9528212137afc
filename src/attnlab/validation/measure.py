"""Score one model condition on fixed items: pass@1 (the evaluate stage) and the answer-token loss (HeadIG's L).

A :class:`Measurer` holds the model, tokenizer, evaluation spec, few-shot exemplars and objective spec, and
measures a condition — head gates α (pruning) or per-head keep ratios (sparse attention) — on the same items
every time, so conditions can be compared item by item (paired tests).

* pass@1: :func:`attnlab.evaluate.evaluate.evaluate_items` (greedy generation, or iterative unmasking for the
  masked diffusion model when the spec has a ``diffusion`` entry; strict answer extraction), ``correct_strict``.
* loss: :func:`attnlab.attribution.objectives.item_losses`, the objective HeadIG attributes (answer-token
  cross-entropy given the prompt; masked-reconstruction loss for mdlm).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from attnlab.attribution.gates import HeadGates
from attnlab.attribution.objectives import ObjectiveSpec, encode_items, item_losses
from attnlab.evaluate.evaluate import evaluate_items
from attnlab.validation.sparse_attention import sparse_attention

__all__ = ["Measurer"]


class Measurer:
    """Measures pass@1 and answer loss of conditions of one model on fixed items."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        eval_spec: dict[str, Any],
        exemplars: Sequence[tuple[str, str]],
        objective: ObjectiveSpec,
        labels: dict[str, str],
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.eval_spec = eval_spec
        self.exemplars = list(exemplars)
        self.objective = objective
        self.labels = labels
        self._encoded: dict[tuple[str, ...], list] = {}

    def _encode(self, data: pd.DataFrame) -> list:
        key = tuple(str(i) for i in data["id"])
        if key not in self._encoded:
            self._encoded[key] = encode_items(self.model, self.tokenizer, data, self.objective, source="validation items")
        return self._encoded[key]

    def pass_at_1(self, data: pd.DataFrame) -> list[bool]:
        """Strict-match correctness per item (in order); empty for no items."""
        if len(data) == 0:
            return []
        rows = evaluate_items(
            self.model,
            self.tokenizer,
            data,
            self.eval_spec,
            self.exemplars,
            model_name=self.labels["model"],
            base=self.labels["base"],
            variant="validation",
        )
        return [bool(c) for c in rows["correct_strict"]]

    def losses(self, data: pd.DataFrame, alpha: torch.Tensor | None = None) -> list[float]:
        """Answer loss per item under gates ``alpha`` [L, U] (None = ungated)."""
        if len(data) == 0:
            return []
        return [float(v) for v in item_losses(self.model, self._encode(data), self.objective, alpha=alpha)]

    def gated(self, alpha: torch.Tensor, pass_data: pd.DataFrame, loss_data: pd.DataFrame) -> tuple[list[bool], list[float]]:
        """(correct, loss) with head gates ``alpha`` [L, U] (0 = pruned head)."""
        with HeadGates(self.model) as gates:
            gates.set(alpha)
            correct = self.pass_at_1(pass_data)
        return correct, self.losses(loss_data, alpha)

    def sparse(
        self, ratios: np.ndarray | None, pass_data: pd.DataFrame, loss_data: pd.DataFrame
    ) -> tuple[list[bool], list[float], float]:
        """(correct, loss, realised keep fraction) with per-unit keep ratios [L, U] (None = dense).

        The realised keep fraction is kept / attendable (query, key) pairs over the loss forwards (1.0 for dense).
        """
        with sparse_attention(self.model, ratios):
            correct = self.pass_at_1(pass_data)
        with sparse_attention(self.model, ratios) as counts:
            loss = self.losses(loss_data)
        realised = counts[0] / counts[1] if counts[1] else 1.0
        return correct, loss, realised

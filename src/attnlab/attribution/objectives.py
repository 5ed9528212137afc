"""The attribution objective J = −L: the loss of the gold answer, per item, under per-row head gates.

Autoregressive models (llama, diffllama, gpt2)
    L is the next-token cross-entropy of the scored answer tokens given everything before them, on the
    pretraining document ``<s>Question: {q}\\nAnswer: {worked solution}</s>`` (the prompt of
    :func:`attnlab.prompts.build_prompt`, zero-shot, then the target delimiter and the gold solution from the
    data Parquet ``answer`` column, then the model's end token — exactly the document format the scratch models
    are trained on; see :func:`answer_end_token_id` for which end token).
    ``target: solution`` scores every token of the worked solution and the EOS (the recommended default: the
    quantity that greedy pass@1 depends on); ``target: final_answer`` keeps the same teacher-forced document but
    scores only the tokens of the final number after ``####`` and the EOS.

        L = Σ_{t∈S} −log p(x_t | x_<t)  /  |S|   (normalization ``mean_masked``; ``sum`` drops the division)

Masked diffusion (``attnlab_mdlm``)
    The answer tokens S are masked with probability p for each p in ``mask_probs`` and ``mask_samples_per_prob``
    seeded draws each (at least one token masked per draw); L is the reconstruction cross-entropy of the masked
    answer tokens M given the partially masked sequence, averaged over the draws (Nie et al. 2025, LLaDA, eq. 3
    with fixed mask ratios instead of t ~ U(0,1); no 1/t weight, so every ratio counts equally):

        L = mean_draws  Σ_{t∈M} −log p_θ(x_t | x_masked)  /  |M|   (``mean_masked``; ``sum``: no division)

The draws depend only on the config seed and the item id, so they are identical for every gate setting and
every method (IG steps, paths, baseline), as completeness requires.
"""

from __future__ import annotations


import zlib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from attnlab.attribution.gates import HeadGates
from attnlab.models.mdlm import is_masked_diffusion_model
from attnlab.prompts import format_example, format_question

__all__ = [
    "EncodedItem",
    "ObjectiveSpec",
    "answer_end_token_id",
    "encode_items",
    "item_losses",
    "objective_rows",
    "row_losses",
]

TARGETS = ("solution", "final_answer")
NORMALIZATIONS = ("mean_masked", "sum")
FINAL_ANSWER_MARKER = "####"


@dataclass(frozen=True)
class ObjectiveSpec:
    """How the answer loss is formed (see the module docstring)."""

    target: str = "solution"
    normalization: str = "mean_masked"
    mask_probs: tuple[float, ...] = (0.15, 0.3, 0.5, 0.7, 0.9)
    mask_samples_per_prob: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"objective target must be one of {TARGETS}, got {self.target!r}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"objective normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}")
        if not self.mask_probs or any(not 0.0 < p <= 1.0 for p in self.mask_probs):
            raise ValueError(f"objective mask_probs must be non-empty, each in (0, 1], got {self.mask_probs}")
        if self.mask_samples_per_prob < 1:
            raise ValueError("objective mask_samples_per_prob must be ≥ 1")

    @classmethod
    def from_config(cls, section: Mapping[str, Any], seed: int) -> "ObjectiveSpec":
        """From the ``attribution.objective`` config section (defaults filled) and a seed."""
        return cls(
            target=section.get("target", "solution"),
            normalization=section.get("normalization", "mean_masked"),
            mask_probs=tuple(float(p) for p in section.get("mask_probs", cls.mask_probs)),
            mask_samples_per_prob=int(section.get("mask_samples_per_prob", cls.mask_samples_per_prob)),
            seed=int(seed),
        )

    @property
    def draws(self) -> int:
        return len(self.mask_probs) * self.mask_samples_per_prob


@dataclass(frozen=True)
class EncodedItem:
    """One item, tokenized: the full document and which positions are scored.

    ``input_ids`` [T] (long), ``target_mask`` [T] (bool, True at the scored answer tokens),
    ``masked_ids`` [K, T] and ``draw_mask`` [K, T] for masked diffusion (the K masked copies), else None.
    """

    item_id: str
    variant: str
    input_ids: torch.Tensor
    target_mask: torch.Tensor
    masked_ids: torch.Tensor | None = None
    draw_mask: torch.Tensor | None = None

    @property
    def rows_per_gate(self) -> int:
        """Sequences evaluated per gate vector: K mask draws (mdlm) or 1."""
        return 1 if self.masked_ids is None else int(self.masked_ids.shape[0])


def _mask_token_id(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> int:
    mask_id = getattr(model.config, "mask_token_id", None)
    if mask_id is None:
        mask_id = tokenizer.mask_token_id
    if mask_id is None:
        raise ValueError("masked diffusion model: neither config.mask_token_id nor the tokenizer's mask token is set")
    return int(mask_id)


def _item_seed(seed: int, item_id: str) -> int:
    """A stable per-item seed, ``crc32(f"{seed}:attribution-mask:{item_id}")`` (never the salted ``hash()``)."""
    return zlib.crc32(f"{seed}:attribution-mask:{item_id}".encode())


def mask_draws(
    target_mask: torch.Tensor, mask_probs: Sequence[float], samples_per_prob: int, seed: int
) -> torch.Tensor:
    """``[K, T]`` bool masks, K = len(mask_probs)·samples_per_prob: each answer position masked with prob p.

    Draw k uses p = mask_probs[k // samples_per_prob]. A draw that masks nothing masks the answer position with
    the smallest uniform number instead (so every draw scores at least one token).
    """
    generator = torch.Generator().manual_seed(seed)
    probs = torch.tensor([p for p in mask_probs for _ in range(samples_per_prob)], dtype=torch.float64)  # [K]
    uniform = torch.rand((len(probs), target_mask.shape[0]), generator=generator, dtype=torch.float64)  # [K, T]
    uniform = uniform.masked_fill(~target_mask.cpu()[None, :], 2.0)
    draws = uniform < probs[:, None]  # [K, T]
    empty = ~draws.any(dim=1)
    if empty.any():
        draws[empty, uniform[empty].argmin(dim=1)] = True
    return draws


def answer_end_token_id(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> int:
    """The token appended after the gold answer: the end of text *the model* emits, not the tokenizer's default.

    The model's end ids come from ``generation_config.eos_token_id``, else ``config.eos_token_id`` (an int or a
    list). If the tokenizer's eos is one of them it is used (both agree); otherwise the model's first id — e.g. the
    reyllama checkpoints end with ``<|end_of_text|>`` (config and generation config) while their Llama-3-style
    tokenizer names ``<|eot_id|>``, which they were never trained to emit after an answer. Without any model end id
    the tokenizer's eos is used.

    Raises:
        ValueError: neither the model nor the tokenizer names an end token.
    """
    model_ids: list[int] = []
    for source in (getattr(model, "generation_config", None), model.config):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        if value is not None:
            model_ids = [int(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
            break
    tokenizer_eos = tokenizer.eos_token_id
    if model_ids:
        return int(tokenizer_eos) if tokenizer_eos is not None and int(tokenizer_eos) in model_ids else model_ids[0]
    if tokenizer_eos is None:
        raise ValueError("neither the model (generation_config / config eos_token_id) nor the tokenizer has an EOS token")
    return int(tokenizer_eos)


def _encode_one(
    tokenizer: PreTrainedTokenizerBase, question: str, answer: str, target: str, where: str, end_id: int
) -> tuple[list[int], list[bool]]:
    document = format_example(question, answer)
    prompt = format_question(question)
    encoded = tokenizer(document, add_special_tokens=True, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])
    offsets = list(encoded["offset_mapping"])
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    if ids[: len(prompt_ids)] != list(prompt_ids):
        raise ValueError(f"{where}: the prompt does not tokenize as a prefix of prompt + answer")
    if target == "solution":
        start_char = len(prompt)
    else:
        marker = document.rfind(FINAL_ANSWER_MARKER)
        if marker < 0:
            raise ValueError(f"{where}: target 'final_answer' needs '{FINAL_ANSWER_MARKER} N' in the answer")
        start_char = marker + len(FINAL_ANSWER_MARKER)
    scored = [index >= len(prompt_ids) and end > start_char for index, (_, end) in enumerate(offsets)]
    ids.append(int(end_id))
    scored.append(True)
    if not any(scored[:-1]):
        raise ValueError(f"{where}: the answer has no tokens to score")
    return ids, scored


def encode_items(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    data: pd.DataFrame,
    spec: ObjectiveSpec,
    *,
    variant: str = "",
    source: str = "data",
) -> list[EncodedItem]:
    """Tokenize the items of a data Parquet frame (``id``, ``question``, ``answer`` columns) for the objective.

    Raises:
        ValueError: a missing column, an item longer than the model's positions, an answer without tokens to
            score (the message names ``source`` and the item id).
    """
    missing = [c for c in ("id", "question", "answer") if c not in data.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}")
    max_positions = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    diffusion = is_masked_diffusion_model(model)
    mask_id = _mask_token_id(model, tokenizer) if diffusion else None
    try:
        end_id = answer_end_token_id(model, tokenizer)
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None
    items = []
    for item_id, question, answer in zip(data["id"], data["question"], data["answer"]):
        where = f"{source}: item {item_id}"
        ids, scored = _encode_one(tokenizer, str(question), str(answer), spec.target, where, end_id)
        if max_positions is not None and len(ids) > int(max_positions):
            raise ValueError(f"{where}: {len(ids)} tokens exceed the model's {max_positions} positions")
        input_ids = torch.tensor(ids, dtype=torch.long)  # [T]
        target_mask = torch.tensor(scored, dtype=torch.bool)  # [T]
        masked_ids = draw_mask = None
        if diffusion:
            draw_mask = mask_draws(target_mask, spec.mask_probs, spec.mask_samples_per_prob, _item_seed(spec.seed, str(item_id)))
            masked_ids = input_ids[None, :].expand_as(draw_mask).masked_fill(draw_mask, mask_id)  # [K, T]
        items.append(EncodedItem(str(item_id), variant, input_ids, target_mask, masked_ids, draw_mask))
    return items


def row_losses(
    model: PreTrainedModel, item: EncodedItem, n_rows: int, normalization: str, device: torch.device
) -> torch.Tensor:
    """``[n_rows]`` loss L of one item for ``n_rows`` gate rows (gates already set on the model)."""
    if item.masked_ids is None:
        ids = item.input_ids.to(device)[None, :].expand(n_rows, -1)  # [R, T]
        logits = model(input_ids=ids).logits[:, :-1].float()  # [R, T-1, V]: position t predicts token t+1
        targets = ids[:, 1:]  # [R, T-1]
        scored = item.target_mask.to(device)[1:].float()  # [T-1]
        nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # [R, T-1]
        total = (nll * scored).sum(dim=1)  # [R]
        return total / scored.sum() if normalization == "mean_masked" else total
    draws = item.rows_per_gate
    ids = item.masked_ids.to(device).repeat(n_rows, 1)  # [R·K, T], row r·K + k = gate row r, draw k
    masked = item.draw_mask.to(device).repeat(n_rows, 1).float()  # [R·K, T]
    logits = model(input_ids=ids).logits.float()  # [R·K, T, V]: position t predicts token t (no shift)
    targets = item.input_ids.to(device)[None, :].expand(ids.shape[0], -1)  # [R·K, T]
    nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # [R·K, T]
    total = (nll * masked).sum(dim=1)  # [R·K]
    per_draw = total / masked.sum(dim=1) if normalization == "mean_masked" else total
    return per_draw.view(n_rows, draws).mean(dim=1)  # [R]


def objective_rows(
    model: PreTrainedModel,
    gates: HeadGates,
    item: EncodedItem,
    alpha: torch.Tensor,
    spec: ObjectiveSpec,
    *,
    batch_rows: int = 64,
    grad: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """J = −L of ``item`` for each gate row of ``alpha`` [R, L, U], and ∂J/∂alpha [R, L, U] if ``grad``.

    The R rows (× K mask draws for mdlm) run as batches of at most ``batch_rows`` sequences: one forward and
    one backward per batch give every row's value and every gate's gradient (J of a row depends only on that
    row's gates, so the gradient of Σ_r J_r w.r.t. alpha_r is ∂J_r/∂alpha_r). ``gates`` must be active.

    Returns:
        ``(J [R] float64 on CPU, dJ/dalpha [R, L, U] float64 on CPU or None)``.
    """
    device = next(model.parameters()).device
    per_chunk = max(1, batch_rows // item.rows_per_gate)
    values, grads = [], []
    for start in range(0, alpha.shape[0], per_chunk):
        chunk = alpha[start : start + per_chunk].detach().to(device).requires_grad_(grad)  # [r, L, U]
        gate_rows = chunk.repeat_interleave(item.rows_per_gate, dim=0) if item.rows_per_gate > 1 else chunk
        gates.set(gate_rows)
        with torch.set_grad_enabled(grad):
            objective = -row_losses(model, item, chunk.shape[0], spec.normalization, device)  # [r]
            if grad:
                (gradient,) = torch.autograd.grad(objective.sum(), chunk)
                grads.append(gradient.detach().double().cpu())
        values.append(objective.detach().double().cpu())
    gates.set(None)
    return torch.cat(values), (torch.cat(grads) if grad else None)


def item_losses(
    model: PreTrainedModel,
    items: Sequence[EncodedItem],
    spec: ObjectiveSpec,
    *,
    alpha: torch.Tensor | None = None,
    batch_rows: int = 64,
) -> np.ndarray:
    """The answer loss L of each item (``[n_items]``), with optional fixed gates ``alpha`` [L, U] (e.g. a head mask).

    No gradients are computed. ``alpha=None`` is the unmodified model.
    """
    gates = HeadGates(model)
    alpha = torch.ones(1, *gates.layout.shape) if alpha is None else alpha.detach().float().cpu()[None]
    losses = []
    with gates:
        for item in items:
            values, _ = objective_rows(model, gates, item, alpha, spec, batch_rows=batch_rows, grad=False)
            losses.append(-float(values[0]))
    out = np.asarray(losses, dtype=np.float64)
    if not np.all(np.isfinite(out)):
        bad = [items[i].item_id for i in np.flatnonzero(~np.isfinite(out))]
        raise ValueError(f"non-finite answer loss for item(s) {bad[:5]}")
    return out



"""Probe encoding, perplexity on target tokens and on whole sentences, and change metrics.

Perplexity of a set of tokens S (Jelinek et al. 1977)::

    PPL(S) = exp( (1/|S|) · Σ_{t∈S} −log p(x_t | x_<t) )

pooled over every probe of a relation (micro average). ``target`` = the tokens of the object span,
``sentence`` = every predicted token of the statement (all real tokens but the first).

Change of a perturbed perplexity p against the baseline b:

* absolute ``p − b``;
* percent ``100 · (p − b) / b`` — depends on the denominator: for a relation the model knows well
  (b close to 1) a tiny absolute change is a large percentage, for one it does not know (b in the
  hundreds) a large absolute change is a small one, so percents are not comparable across relations
  or models with different baselines (the "denominator effect");
* log-ratio ``ln(p / b)`` = the change of the mean token NLL in nats, symmetric (doubling and halving
  are ±ln 2) and additive across perturbations; it is the number to compare across models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class ProbeBatch:
    """A relation's probes, tokenized and right-padded (causal models never look right, so pads are inert).

    Shapes: ``input_ids``, ``attention_mask``, ``target_mask``: ``[n, seq]``; ``last_prompt``: ``[n]``.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    target_mask: torch.Tensor  # True where the token belongs to the target span
    last_prompt: torch.Tensor  # index of the last prompt token (it predicts the first target token)

    @property
    def n(self) -> int:
        return int(self.input_ids.shape[0])

    def to(self, device: torch.device) -> "ProbeBatch":
        return ProbeBatch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.target_mask, self.last_prompt)))


def encode_probes(tokenizer: PreTrainedTokenizerBase, probes: pd.DataFrame) -> ProbeBatch:
    """Tokenize ``probes`` (from :func:`attnlab.perturbation.relations.build_probes`) with target masks.

    A token is a target token if its character span overlaps ``[target_start, target_end)``.

    Raises:
        ValueError: a token straddles the prompt/target boundary, a probe has no target token, or the
            target starts at the first token (nothing to predict it from); the message names the probe.
    """
    if probes.empty:
        raise ValueError("no probes to encode")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise ValueError("tokenizer has neither a pad nor an eos token to right-pad probes with")
    enc = tokenizer(
        list(probes["sentence"]), return_offsets_mapping=True, return_special_tokens_mask=True, add_special_tokens=True
    )
    rows, targets, lasts = [], [], []
    for i, (ids, offsets, special) in enumerate(zip(enc["input_ids"], enc["offset_mapping"], enc["special_tokens_mask"])):
        start, end = int(probes["target_start"].iloc[i]), int(probes["target_end"].iloc[i])
        mask = []
        for (s, e), sp in zip(offsets, special):
            if sp:
                mask.append(False)
                continue
            if s < start < e:
                raise ValueError(
                    f"probe {i} ({probes['sentence'].iloc[i]!r}): token [{s}, {e}) straddles the target start {start}"
                )
            mask.append(e > start and s < end)
        if not any(mask):
            raise ValueError(f"probe {i} ({probes['sentence'].iloc[i]!r}): no token covers the target span")
        first = mask.index(True)
        if first == 0:
            raise ValueError(f"probe {i} ({probes['sentence'].iloc[i]!r}): the target is the first token")
        rows.append(ids)
        targets.append(mask)
        lasts.append(first - 1)
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    target = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, (ids, mask) in enumerate(zip(rows, targets)):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention[i, : len(ids)] = 1
        target[i, : len(ids)] = torch.tensor(mask)
    return ProbeBatch(input_ids, attention, target, torch.tensor(lasts, dtype=torch.long))


def token_nll(model: PreTrainedModel, batch: ProbeBatch) -> torch.Tensor:
    """−log p(x_t | x_<t) for t = 1..seq−1: ``[n, seq − 1]`` (float32; pads included, mask them)."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits  # [n, seq, vocab]
    logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return -logprobs.gather(-1, batch.input_ids[:, 1:, None])[..., 0]


@dataclass(frozen=True)
class Perplexities:
    """Pooled NLL sums and token counts of a relation, and their perplexities."""

    target_nll: float
    target_tokens: int
    sentence_nll: float
    sentence_tokens: int

    @property
    def target_ppl(self) -> float:
        return math.exp(self.target_nll / self.target_tokens)

    @property
    def sentence_ppl(self) -> float:
        return math.exp(self.sentence_nll / self.sentence_tokens)


def pooled_perplexities(nll: torch.Tensor, batch: ProbeBatch) -> Perplexities:
    """Pool ``nll`` ([n, seq − 1] from :func:`token_nll`) over target tokens and over sentence tokens."""
    target = batch.target_mask[:, 1:]
    sentence = batch.attention_mask[:, 1:].bool()
    nll = nll.double()
    return Perplexities(
        target_nll=float(nll[target].sum()),
        target_tokens=int(target.sum()),
        sentence_nll=float(nll[sentence].sum()),
        sentence_tokens=int(sentence.sum()),
    )


def change_metrics(baseline: float, perturbed: float) -> dict[str, float]:
    """``abs_change``, ``pct_change`` and ``log_ratio`` of ``perturbed`` against ``baseline`` (see module doc)."""
    if not (baseline > 0 and perturbed > 0):
        raise ValueError(f"perplexities must be positive, got baseline={baseline}, perturbed={perturbed}")
    return {
        "abs_change": perturbed - baseline,
        "pct_change": 100.0 * (perturbed - baseline) / baseline,
        "log_ratio": math.log(perturbed / baseline),
    }

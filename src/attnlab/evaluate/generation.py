"""Batched greedy generation with per-row stop sequences.

The evaluation hot loop. Prompts are tokenized once, sorted by token length (so a batch holds prompts of similar
length and little padding), left-padded by hand with an attention mask, and decoded greedily with a KV cache.
Left padding plus the attention mask plus position ids counted over real tokens only (``cumsum(mask) - 1``) make
every row compute what it would compute alone, so batching changes speed, not results (tested: token ids equal
unbatched ``model.generate`` for Llama, DiffLlama, GPT-2, Mamba and Mamba2).

Stopping follows lm-evaluation-harness's ``until`` semantics: a row is done when it emits an EOS token or when any
stop sequence appears in the text decoded from its new tokens; the returned text is cut at the first stop
sequence and never contains EOS or padding.

Two engines compute the same tokens:

* ``"pruned"`` (default for attention models, i.e. models whose ``forward`` takes ``position_ids`` and a cache):
  a plain greedy loop over a :class:`~transformers.DynamicCache` that drops finished rows from the batch (cache,
  mask, positions) as soon as they stop, so one long-running row does not keep 31 finished ones computing. On a
  trained tiny Llama with GSM8K-style prompts this is ~1.5x faster than ``generate`` (benchmarks/README.md).
* ``"generate"``: ``model.generate(do_sample=False, use_cache=True)`` with :class:`StopOnSequences`, which marks
  rows done (``generate`` then feeds them padding) and ends the batch when all are done. Used for models without
  position ids (Mamba, Mamba2: recurrent state, no attention cache).

Decoding is pure greedy (argmax at every step): the model's own ``generation_config`` (hub checkpoints may ship
sampling settings, repetition penalties, banned n-grams) is set aside during the call, so every model is decoded
the same way. Only its EOS ids are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import inspect

import torch
from transformers import DynamicCache, GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase
from transformers.generation import StoppingCriteria, StoppingCriteriaList

__all__ = [
    "ENGINES",
    "STOPPED_BY_EOS",
    "STOPPED_BY_LENGTH",
    "Generation",
    "StopOnSequences",
    "batch_decoder",
    "batch_order",
    "eos_token_ids",
    "generate_greedy",
    "pad_token_id",
    "supports_row_pruning",
]

ENGINES = ("auto", "pruned", "generate")

STOPPED_BY_EOS = "eos"
STOPPED_BY_LENGTH = "max_new_tokens"
_STOPPED_BY_SEQUENCE = "stop:"  # + the stop sequence, e.g. "stop:Question:"


@dataclass(frozen=True)
class Generation:
    """One greedy continuation.

    Attributes:
        text: the decoded new tokens, cut before the first stop sequence; no EOS / padding.
        n_generated_tokens: tokens generated up to and including the one that completed the stop sequence or the
            EOS token (``max_new_tokens`` when neither happened); padding after the stop is not counted.
        n_prompt_tokens: tokens in the prompt (special tokens the tokenizer adds, e.g. BOS, included).
        stopped_by: ``"eos"``, ``"max_new_tokens"`` or ``"stop:" + sequence`` (e.g. ``"stop:Question:"``).
        token_ids: the ``n_generated_tokens`` generated token ids (EOS / stop tokens included).
    """

    text: str
    n_generated_tokens: int
    n_prompt_tokens: int
    stopped_by: str
    token_ids: tuple[int, ...] = field(default=(), repr=False)


def eos_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """All end-of-sequence ids: the model's generation config (an int or a list) and the tokenizer's, sorted."""
    ids: set[int] = set()
    configured = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured is not None:
        ids.update(int(i) for i in configured)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return sorted(ids)


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id used for left padding: the tokenizer's pad token, else its EOS token (hub GPT-2 has no pad token).

    Padded positions are masked out of attention, so which id fills them does not change any result.

    Raises:
        ValueError: if the tokenizer has neither a pad nor an EOS token.
    """
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    if tokenizer.eos_token_id is not None:
        return int(tokenizer.eos_token_id)
    raise ValueError(
        f"tokenizer {type(tokenizer).__name__} ({tokenizer.name_or_path!r}) has neither a pad nor an eos token; "
        "set tokenizer.pad_token before generating"
    )


def batch_order(lengths: Sequence[int]) -> list[int]:
    """Indices of prompts sorted by token length, longest first (ties in input order).

    Longest first puts the largest batch (memory, time) at the start, so out-of-memory fails fast and a progress
    bar's estimate is pessimistic rather than optimistic.
    """
    return sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))


def batch_decoder(tokenizer: PreTrainedTokenizerBase) -> Callable[[list[list[int]]], list[str]]:
    """A function decoding rows of ids exactly like ``tokenizer.batch_decode(rows, skip_special_tokens=True)``.

    For a fast tokenizer that does not clean up tokenization spaces this calls the Rust backend's ``decode_batch``
    directly, skipping ``transformers``' per-element Python input conversion (measured 2.3x cheaper, 32 rows x 64
    tokens: 0.23 ms vs 0.54 ms per call); otherwise it is ``batch_decode`` itself.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and not getattr(tokenizer, "clean_up_tokenization_spaces", False):
        return lambda rows: backend.decode_batch(rows, skip_special_tokens=True)
    return lambda rows: tokenizer.batch_decode(rows, skip_special_tokens=True)


def stop_reasons(
    rows: Sequence[Sequence[int]],
    eos_ids: frozenset[int],
    stop_sequences: Sequence[str],
    decode_rows: Callable[[list[list[int]]], list[str]],
) -> list[str | None]:
    """Why each row of new tokens is done now (``"eos"``, ``"stop:<sequence>"``) or ``None`` if it goes on.

    A row is done if its newest token is an EOS id, or if the text decoded from all its new tokens contains a stop
    sequence. Only rows not ended by EOS are decoded, all in one batched call.
    """
    reasons: list[str | None] = [None] * len(rows)
    to_decode = []
    for i, row in enumerate(rows):
        if row and row[-1] in eos_ids:
            reasons[i] = STOPPED_BY_EOS
        elif stop_sequences:
            to_decode.append(i)
    if to_decode:
        texts = decode_rows([list(rows[i]) for i in to_decode])
        for i, text in zip(to_decode, texts):
            hit = _first_stop(text, stop_sequences)
            if hit is not None:
                reasons[i] = _STOPPED_BY_SEQUENCE + hit[1]
    return reasons


class StopOnSequences(StoppingCriteria):
    """Per-row stopping on EOS ids or stop sequences in the decoded new text, for one left-padded batch.

    ``generate`` calls it after every step with ``input_ids`` of shape (batch, prompt_len + step). A row whose
    newest token is an EOS id, or whose decoded new tokens contain a stop sequence, is marked done; the
    generated-token count at that moment is kept in :attr:`finished_at`. Rows already done are not decoded again.
    The returned (batch,) bool tensor tells ``generate`` which rows are done; it ends the batch when all are.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        stop_sequences: Sequence[str],
        prompt_length: int,
        eos_ids: Iterable[int],
        batch_size: int,
    ) -> None:
        self.decode_rows = batch_decoder(tokenizer)
        self.stop_sequences = tuple(stop_sequences)
        self.prompt_length = prompt_length
        self.eos_ids = frozenset(eos_ids)
        self.finished_at: list[int | None] = [None] * batch_size
        self.stopped_by: list[str | None] = [None] * batch_size

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor | None, **kwargs) -> torch.BoolTensor:
        new_tokens = input_ids[:, self.prompt_length :]  # (batch, step)
        step = new_tokens.shape[1]
        open_rows = [row for row, done in enumerate(self.finished_at) if done is None]
        if open_rows:
            rows = new_tokens[open_rows].tolist()
            for row, reason in zip(open_rows, stop_reasons(rows, self.eos_ids, self.stop_sequences, self.decode_rows)):
                if reason is not None:
                    self.finished_at[row], self.stopped_by[row] = step, reason
        done = [at is not None for at in self.finished_at]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def _first_stop(text: str, stop_sequences: Sequence[str]) -> tuple[int, str] | None:
    """(position, sequence) of the earliest stop sequence in ``text`` (longest first on a tie), or ``None``."""
    best: tuple[int, str] | None = None
    for sequence in stop_sequences:
        position = text.find(sequence)
        if position >= 0 and (best is None or (position, -len(sequence)) < (best[0], -len(best[1]))):
            best = (position, sequence)
    return best


def _left_pad(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists to one length: (input_ids, attention_mask), both (batch, max_len) int64."""
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            input_ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, width - len(row) :] = 1
    return input_ids.to(device), attention_mask.to(device)


def _max_positions(model: PreTrainedModel) -> int | None:
    """The model's context length if its config declares one (GPT-2: ``n_positions``)."""
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(model.config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def generate_greedy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    *,
    batch_size: int,
    max_new_tokens: int,
    stop_sequences: list[str],
    device: torch.device | str | None = None,
    progress: bool = False,
    add_special_tokens: bool = True,
    engine: str = "auto",
) -> list[Generation]:
    """Greedy continuations of ``prompts``, in the order given, computed in length-sorted left-padded batches.

    Args:
        model: a decoder-only causal LM (Llama, DiffLlama, GPT-2, ...), in eval mode.
        tokenizer: its tokenizer; a missing pad token is replaced by EOS for padding (see :func:`pad_token_id`).
        prompts: the texts to continue.
        batch_size: prompts per ``generate`` call.
        max_new_tokens: the most tokens generated per prompt.
        stop_sequences: strings that end a row (the text is cut before the first); EOS always ends a row.
        device: where to run; default the model's device.
        progress: show a tqdm bar over batches.
        add_special_tokens: let the tokenizer add its special tokens (e.g. BOS) to each prompt, as in training.
        engine: ``"pruned"`` (greedy loop dropping finished rows), ``"generate"`` (``model.generate``) or
            ``"auto"``: pruned when :func:`supports_row_pruning`, else generate. Both give the same tokens.

    Returns:
        One :class:`Generation` per prompt, ``result[i]`` for ``prompts[i]``.

    Raises:
        ValueError: for ``batch_size < 1``, ``max_new_tokens < 1``, an empty stop sequence, an empty tokenized
            prompt, or a prompt whose length plus ``max_new_tokens`` exceeds the model's context length.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if any(not isinstance(s, str) or s == "" for s in stop_sequences):
        raise ValueError(f"stop_sequences must be non-empty strings, got {stop_sequences!r}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "auto":
        engine = "pruned" if supports_row_pruning(model) else "generate"
    elif engine == "pruned" and not supports_row_pruning(model):
        raise ValueError(f"engine 'pruned' needs a model whose forward takes position_ids and a KV cache; "
                         f"{type(model).__name__} does not (use engine='generate')")
    if not prompts:
        return []
    device = torch.device(device) if device is not None else model.device
    pad_id = pad_token_id(tokenizer)
    eos_ids = eos_token_ids(model, tokenizer)

    encoded: list[list[int]] = tokenizer(list(prompts), add_special_tokens=add_special_tokens)["input_ids"]
    context = _max_positions(model)
    for index, ids in enumerate(encoded):
        if not ids:
            raise ValueError(f"prompt {index} tokenizes to no tokens: {prompts[index]!r}")
        if context is not None and len(ids) + max_new_tokens > context:
            raise ValueError(
                f"prompt {index} has {len(ids)} tokens; with max_new_tokens={max_new_tokens} that exceeds the "
                f"model's context length {context} (use fewer few-shot examples or fewer new tokens)"
            )

    # Pure greedy: the model's own generation_config (a hub model may ship repetition_penalty, no_repeat_ngram_size,
    # bad_words_ids, sampling settings, ...) is swapped out for a blank one while we generate, because generate()
    # fills every unset field of the config passed in from model.generation_config.
    generation_config = GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_new_tokens=max_new_tokens,
        use_cache=True,
        pad_token_id=pad_id,
        eos_token_id=eos_ids or None,
        bos_token_id=tokenizer.bos_token_id,
    )
    blank_model_config = GenerationConfig(
        pad_token_id=pad_id, eos_token_id=eos_ids or None, bos_token_id=tokenizer.bos_token_id
    )
    order = batch_order([len(ids) for ids in encoded])
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="generate", unit="batch")

    decode_rows = batch_decoder(tokenizer)
    results: list[Generation | None] = [None] * len(prompts)
    model_generation_config = model.generation_config
    model.generation_config = blank_model_config
    try:
        with torch.inference_mode():
            for batch in batches:
                rows = [encoded[i] for i in batch]
                input_ids, attention_mask = _left_pad(rows, pad_id, device)  # (batch, prompt_len)
                if engine == "pruned":
                    new_tokens, reasons = _decode_pruned(
                        model, input_ids, attention_mask, max_new_tokens, frozenset(eos_ids), stop_sequences,
                        decode_rows,
                    )
                else:
                    new_tokens, reasons = _decode_generate(
                        model, tokenizer, input_ids, attention_mask, generation_config, eos_ids, stop_sequences
                    )
                for row, index in enumerate(batch):
                    results[index] = _finish_row(
                        decode_rows, new_tokens[row], reasons[row], stop_sequences, n_prompt_tokens=len(rows[row])
                    )
    finally:
        model.generation_config = model_generation_config
    return [r for r in results if r is not None]


def supports_row_pruning(model: PreTrainedModel) -> bool:
    """Whether the ``"pruned"`` engine can drive ``model``: a decoder-only model whose ``forward`` takes
    ``position_ids`` and a KV cache (``cache`` in transformers 5, ``past_key_values`` before). Llama, DiffLlama and
    GPT-2 do; Mamba / Mamba2 (no position ids, recurrent state) do not."""
    if model.config.is_encoder_decoder:
        return False
    parameters = inspect.signature(model.forward).parameters
    return "position_ids" in parameters and ("cache" in parameters or "past_key_values" in parameters)


def _decode_pruned(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    eos_ids: frozenset[int],
    stop_sequences: Sequence[str],
    decode_rows: Callable[[list[list[int]]], list[str]],
) -> tuple[list[list[int]], list[str | None]]:
    """Greedy decoding of one left-padded batch that removes rows from the batch as soon as they stop.

    Step t feeds each live row its last token at position ``p_t = (number of real prompt tokens) + t - 1`` with the
    attention mask extended by one column; finished rows are dropped from the KV cache
    (``DynamicCache.batch_select_indices``), the mask and the positions, so the cost of a step is proportional to
    the rows still running.

    Returns:
        (new tokens per row, each ending at its stop token; stop reason per row, ``None`` if it hit the limit).
    """
    parameters = inspect.signature(model.forward).parameters
    cache_argument = "cache" if "cache" in parameters else "past_key_values"
    cache = DynamicCache(config=model.config)
    extra = {"logits_to_keep": 1} if "logits_to_keep" in parameters else {}
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # (batch, prompt_len)
    outputs = model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, use_cache=True,
        **{cache_argument: cache}, **extra,
    )
    logits = outputs.logits[:, -1].float()  # (batch, vocab)
    next_positions = positions[:, -1:] + 1  # (batch, 1)
    live = list(range(input_ids.shape[0]))  # batch rows still running, in cache order
    generated: list[list[int]] = [[] for _ in live]
    reasons: list[str | None] = [None] * len(live)
    for step in range(1, max_new_tokens + 1):
        next_tokens = logits.argmax(dim=-1)  # (live,)
        for row, token in zip(live, next_tokens.tolist()):
            generated[row].append(token)
        step_reasons = stop_reasons([generated[row] for row in live], eos_ids, stop_sequences, decode_rows)
        keep = [k for k, reason in enumerate(step_reasons) if reason is None]
        for k, reason in enumerate(step_reasons):
            if reason is not None:
                reasons[live[k]] = reason
        if not keep or step == max_new_tokens:
            break
        if len(keep) < len(live):
            index = torch.tensor(keep, device=input_ids.device)
            cache.batch_select_indices(index)
            attention_mask, next_tokens = attention_mask[index], next_tokens[index]
            next_positions = next_positions[index]
            live = [live[k] for k in keep]
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(live), 1)], dim=1)  # (live, len + 1)
        outputs = model(
            input_ids=next_tokens[:, None], attention_mask=attention_mask, position_ids=next_positions,
            use_cache=True, **{cache_argument: cache},
        )
        logits = outputs.logits[:, -1].float()  # (live, vocab)
        next_positions = next_positions + 1
    return generated, reasons


def _decode_generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    generation_config: GenerationConfig,
    eos_ids: list[int],
    stop_sequences: Sequence[str],
) -> tuple[list[list[int]], list[str | None]]:
    """One left-padded batch through ``model.generate`` with :class:`StopOnSequences`; same return as
    :func:`_decode_pruned` (padding after each row's stop removed)."""
    prompt_length = input_ids.shape[1]
    stopper = StopOnSequences(tokenizer, stop_sequences, prompt_length, eos_ids, input_ids.shape[0])
    sequences = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        generation_config=generation_config,
        stopping_criteria=StoppingCriteriaList([stopper]),
    )  # (batch, prompt_len + steps)
    new_tokens = sequences[:, prompt_length:].tolist()
    rows = [
        tokens if finished_at is None else tokens[:finished_at]
        for tokens, finished_at in zip(new_tokens, stopper.finished_at)
    ]
    return rows, list(stopper.stopped_by)


def _finish_row(
    decode_rows: Callable[[list[list[int]]], list[str]],
    new_tokens: list[int],
    stopped_by: str | None,
    stop_sequences: Sequence[str],
    *,
    n_prompt_tokens: int,
) -> Generation:
    """Decode one row's new tokens (already cut at its stop point) and cut the text before the first stop sequence."""
    text_tokens = new_tokens[:-1] if stopped_by == STOPPED_BY_EOS else new_tokens
    text = decode_rows([text_tokens])[0]
    hit = _first_stop(text, stop_sequences)
    if hit is not None:
        text = text[: hit[0]]
    return Generation(
        text=text,
        n_generated_tokens=len(new_tokens),
        n_prompt_tokens=n_prompt_tokens,
        stopped_by=stopped_by if stopped_by is not None else STOPPED_BY_LENGTH,
        token_ids=tuple(new_tokens),
    )

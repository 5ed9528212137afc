"""Generation by iterative unmasking for masked diffusion LMs (LLaDA's semi-autoregressive sampler).

Nie et al. 2025, "Large Language Diffusion Models" (arXiv:2502.09992), Algorithm 5 (low-confidence remasking) with
semi-autoregressive blocks (their Appendix B.3 / ``generate.py``):

1. x = prompt ‖ [M] × answer_length (M = the mask token); the answer is cut into answer_length / block_length blocks,
   decoded left to right, each in steps / n_blocks steps.
2. At each step, the model predicts every position of x at once; at each masked position of the current block the
   prediction is the argmax x̂_i with confidence c_i = softmax(logits_i)[x̂_i] (``low_confidence``) or a seeded
   uniform draw (``random``).
3. Of the current block's masked positions the k with the highest confidence are fixed to x̂_i; the rest stay masked
   (are "remasked"). k follows LLaDA's schedule: the block's masks are spread evenly over its steps (the first
   ``n_masked mod steps`` steps fix one more).

Decoding is greedy (temperature 0) and deterministic on CPU; the mask token itself is never predicted. Prompts of a
batch are left-padded with an attention mask and position ids counted over real tokens, so every row computes what
it would compute alone (the answer occupies the same columns in every row). A block, once decoded, never changes, so
after each block the rows whose fixed answer already holds an EOS token or a stop sequence are finished and leave the
batch (this changes speed, not results). The returned text is cut exactly like greedy generation's
(:mod:`attnlab.evaluate.generation`): before EOS and before the first stop sequence.

Hub diffusion models with their own sampler (Dream: ``model.diffusion_generate``) are driven through it instead;
LLaDA checkpoints (bidirectional, mask id 126336, plain ``forward``) use the sampler here.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping, Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from attnlab.evaluate.generation import (
    STOPPED_BY_EOS,
    STOPPED_BY_LENGTH,
    Generation,
    _first_stop,
    _left_pad,
    _max_positions,
    batch_decoder,
    batch_order,
    eos_token_ids,
    pad_token_id,
)

__all__ = [
    "DIFFUSION_DEFAULTS",
    "REMASKING",
    "generate_diffusion",
    "mask_token_id",
    "normalize_diffusion_spec",
    "transfer_schedule",
]

REMASKING = ("low_confidence", "random")

#: defaults of the ``diffusion`` settings (``answer_length`` defaults to the eval spec's ``max_new_tokens``)
DIFFUSION_DEFAULTS: dict[str, Any] = {
    "steps": None,  # default: answer_length (one token fixed per step, LLaDA's best setting)
    "block_length": 32,
    "answer_length": None,
    "remasking": "low_confidence",
    "seed": 0,
    "mask_token_id": None,
}


def normalize_diffusion_spec(spec: Mapping[str, Any], max_new_tokens: int | None = None) -> dict[str, Any]:
    """The diffusion settings with defaults filled in and checked.

    Keys: ``steps`` (total denoising steps; default ``answer_length``), ``block_length`` (tokens per semi-autoregressive block),
    ``answer_length`` (tokens generated = the masked answer; default ``max_new_tokens``), ``remasking``
    (``low_confidence`` | ``random``), ``seed`` (for ``random``), ``mask_token_id`` (override for hub models whose
    config and tokenizer do not name their mask token; default: from the model).

    Raises:
        ValueError: an unknown key, a non-positive size, ``block_length`` not dividing ``answer_length``, or
            ``steps`` not a multiple of the number of blocks.
    """
    unknown = sorted(set(spec) - set(DIFFUSION_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown diffusion key(s) {unknown}; known: {sorted(DIFFUSION_DEFAULTS)}")
    out = {**DIFFUSION_DEFAULTS, **spec}
    if out["answer_length"] is None:
        out["answer_length"] = max_new_tokens
    if out["steps"] is None:
        out["steps"] = out["answer_length"]
    for key in ("steps", "block_length", "answer_length"):
        value = out[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"diffusion key {key!r} must be a positive integer, got {value!r}")
    if out["remasking"] not in REMASKING:
        raise ValueError(f"diffusion key 'remasking' must be one of {list(REMASKING)}, got {out['remasking']!r}")
    if out["answer_length"] % out["block_length"]:
        raise ValueError(
            f"diffusion block_length={out['block_length']} must divide answer_length={out['answer_length']}"
        )
    n_blocks = out["answer_length"] // out["block_length"]
    if out["steps"] % n_blocks:
        raise ValueError(
            f"diffusion steps={out['steps']} must be a multiple of the number of blocks "
            f"answer_length/block_length={n_blocks}"
        )
    if out["steps"] > out["answer_length"]:
        raise ValueError(f"diffusion steps={out['steps']} exceed answer_length={out['answer_length']} (≤ 1 token a step)")
    return out


def transfer_schedule(n_masked: torch.Tensor, steps: int) -> torch.Tensor:
    """How many masked tokens each step fixes: (batch, steps), LLaDA's ``get_num_transfer_tokens``.

    ``n_masked`` (batch,) tokens are spread evenly over ``steps``; the first ``n_masked mod steps`` steps fix one more.
    Each row sums to its ``n_masked``.
    """
    base = n_masked // steps  # (batch,)
    remainder = n_masked % steps  # (batch,)
    step_index = torch.arange(steps, device=n_masked.device)  # (steps,)
    return base[:, None] + (step_index[None, :] < remainder[:, None]).long()


def mask_token_id(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, override: int | None = None) -> int:
    """The mask id: ``override``, else ``model.config.mask_token_id``, else the tokenizer's mask token."""
    for candidate in (override, getattr(model.config, "mask_token_id", None), tokenizer.mask_token_id):
        if candidate is not None:
            return int(candidate)
    raise ValueError(
        f"{type(model).__name__}: no mask token id (model.config.mask_token_id and tokenizer.mask_token_id are None); "
        "set diffusion.mask_token_id in the model's config entry"
    )


def _accepts(model: PreTrainedModel, name: str) -> bool:
    parameters = inspect.signature(model.forward).parameters
    return name in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def _finish(
    answer: list[int], eos_ids: frozenset[int], stop_sequences: Sequence[str], decode_rows, n_prompt_tokens: int,
    complete: bool,
) -> Generation | None:
    """The row's :class:`Generation` if its fixed answer tokens already end it (EOS / stop sequence), else ``None``
    (or, when ``complete``, the whole answer with ``stopped_by="max_new_tokens"``)."""
    eos_at = next((i for i, token in enumerate(answer) if token in eos_ids), None)
    kept = answer if eos_at is None else answer[:eos_at]
    text = decode_rows([kept])[0]
    hit = _first_stop(text, stop_sequences)
    if hit is not None:
        # fewest tokens whose text holds the stop sequence (decoded prefixes grow monotonically)
        low, high = 1, len(kept)
        while low < high:
            middle = (low + high) // 2
            if _first_stop(decode_rows([kept[:middle]])[0], stop_sequences) is not None:
                high = middle
            else:
                low = middle + 1
        return Generation(text[: hit[0]], low, n_prompt_tokens, "stop:" + hit[1], tuple(answer[:low]))
    if eos_at is not None:
        return Generation(text, eos_at + 1, n_prompt_tokens, STOPPED_BY_EOS, tuple(answer[: eos_at + 1]))
    if complete:
        return Generation(text, len(answer), n_prompt_tokens, STOPPED_BY_LENGTH, tuple(answer))
    return None


@torch.inference_mode()
def _unmask_batch(
    model: PreTrainedModel,
    rows: list[list[int]],
    *,
    pad_id: int,
    mask_id: int,
    steps: int,
    block_length: int,
    answer_length: int,
    remasking: str,
    generator: torch.Generator,
    eos_ids: frozenset[int],
    stop_sequences: Sequence[str],
    decode_rows,
) -> list[Generation]:
    """LLaDA semi-autoregressive low-confidence remasking for one batch of tokenised prompts."""
    device = model.device
    input_ids, attention_mask = _left_pad(rows, pad_id, device)  # (batch, prompt_len)
    batch, prompt_len = input_ids.shape
    x = torch.cat([input_ids, input_ids.new_full((batch, answer_length), mask_id)], dim=1)  # (batch, P + A)
    attention_mask = torch.cat([attention_mask, attention_mask.new_ones(batch, answer_length)], dim=1)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # (batch, P + A)
    extra = {"position_ids": position_ids} if _accepts(model, "position_ids") else {}
    live = list(range(batch))  # original row of each row of x
    results: list[Generation | None] = [None] * batch
    n_blocks = answer_length // block_length
    steps_per_block = steps // n_blocks
    for block in range(n_blocks):
        start, end = prompt_len + block * block_length, prompt_len + (block + 1) * block_length
        schedule = transfer_schedule((x[:, start:end] == mask_id).sum(dim=1), steps_per_block)  # (live, steps)
        for step in range(steps_per_block):
            masked = x == mask_id  # (live, P + A)
            masked[:, end:] = False  # only the current block is decoded
            logits = model(input_ids=x, attention_mask=attention_mask, **extra).logits.float()  # (live, P+A, V)
            logits[..., mask_id] = float("-inf")  # never predict the mask itself
            prediction = logits.argmax(dim=-1)  # (live, P + A)
            if remasking == "low_confidence":
                confidence = torch.softmax(logits, dim=-1).gather(-1, prediction[..., None]).squeeze(-1)
            else:
                confidence = torch.rand(x.shape, generator=generator).to(device)
            confidence = confidence.masked_fill(~masked, float("-inf"))
            fix = torch.zeros_like(masked)
            for r in range(x.shape[0]):
                k = int(schedule[r, step])
                if k:
                    fix[r, confidence[r].topk(k).indices] = True
            x = torch.where(fix, prediction, x)
        # the answer up to this block is final: finished rows leave the batch
        answers = x[:, prompt_len:end].tolist()
        keep = []
        for r, row in enumerate(live):
            done = _finish(
                answers[r], eos_ids, stop_sequences, decode_rows, len(rows[row]), complete=block == n_blocks - 1
            )
            if done is None:
                keep.append(r)
            else:
                results[row] = done
        if not keep:
            break
        if len(keep) < len(live):
            index = torch.tensor(keep, device=device)
            x, attention_mask = x[index], attention_mask[index]
            extra = {key: value[index] for key, value in extra.items()}
            live = [live[r] for r in keep]
    return [r for r in results if r is not None]


def generate_diffusion(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    *,
    batch_size: int,
    steps: int,
    block_length: int,
    answer_length: int,
    stop_sequences: Sequence[str],
    remasking: str = "low_confidence",
    seed: int = 0,
    mask_token_id_override: int | None = None,
    add_special_tokens: bool = True,
    progress: bool = False,
) -> list[Generation]:
    """Answers of a masked diffusion LM to ``prompts`` by iterative unmasking, in the order given.

    Args:
        model: a masked diffusion LM whose ``forward(input_ids, attention_mask[, position_ids]).logits`` predicts
            the token at every position (the project's ``attnlab_mdlm`` applies its shift operation inside
            ``forward``; LLaDA) — or a model with its
            own ``diffusion_generate`` (Dream), which is then used (``block_length`` does not apply to it).
        tokenizer: its tokenizer (pad token, else EOS, for left padding).
        prompts: the texts to answer.
        batch_size: prompts per batch (length-sorted, as in greedy generation).
        steps, block_length, answer_length, remasking: the sampler's settings (see :func:`normalize_diffusion_spec`).
        stop_sequences: strings that end an answer (text cut before the first); EOS always ends it.
        seed: seeds the ``random`` remasking draws (unused for ``low_confidence``).
        mask_token_id_override: the mask id when neither the model config nor the tokenizer names one.
        add_special_tokens: let the tokenizer add BOS, as in training.
        progress: show a tqdm bar over batches.

    Returns:
        One :class:`~attnlab.evaluate.generation.Generation` per prompt; ``n_generated_tokens`` counts the answer
        tokens up to and including the one that ends it (``answer_length`` if none does).
    """
    spec = normalize_diffusion_spec(
        {"steps": steps, "block_length": block_length, "answer_length": answer_length, "remasking": remasking}
    )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if any(not isinstance(s, str) or s == "" for s in stop_sequences):
        raise ValueError(f"stop_sequences must be non-empty strings, got {stop_sequences!r}")
    if not prompts:
        return []
    pad_id = pad_token_id(tokenizer)
    eos_ids = frozenset(eos_token_ids(model, tokenizer))
    encoded: list[list[int]] = tokenizer(list(prompts), add_special_tokens=add_special_tokens)["input_ids"]
    context = _max_positions(model)
    trained = getattr(model.config, "trained_positions", None)  # set by attnlab's pretraining
    for index, ids in enumerate(encoded):
        if not ids:
            raise ValueError(f"prompt {index} tokenizes to no tokens: {prompts[index]!r}")
        if context is not None and len(ids) + answer_length > context:
            raise ValueError(
                f"prompt {index} has {len(ids)} tokens; with answer_length={answer_length} that exceeds the "
                f"model's context length {context}"
            )
        if trained is not None and len(ids) + answer_length > trained:
            raise ValueError(
                f"prompt {index} has {len(ids)} tokens; with answer_length={answer_length} the answer window ends at "
                f"position {len(ids) + answer_length}, past the {trained} positions the model was trained on "
                "(lower diffusion.answer_length or raise pretrain.max_length)"
            )
    order = batch_order([len(ids) for ids in encoded])
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="diffusion", unit="batch")
    decode_rows = batch_decoder(tokenizer)
    generator = torch.Generator().manual_seed(int(seed))
    own_sampler = getattr(model, "diffusion_generate", None)
    mask_id = None if own_sampler is not None else mask_token_id(model, tokenizer, mask_token_id_override)
    results: list[Generation | None] = [None] * len(prompts)
    for batch in batches:
        rows = [encoded[i] for i in batch]
        if own_sampler is not None:
            generations = _own_sampler_batch(
                model, rows, pad_id=pad_id, spec=spec, eos_ids=eos_ids, stop_sequences=stop_sequences,
                decode_rows=decode_rows,
            )
        else:
            generations = _unmask_batch(
                model, rows, pad_id=pad_id, mask_id=mask_id, steps=spec["steps"], block_length=spec["block_length"],
                answer_length=spec["answer_length"], remasking=spec["remasking"], generator=generator,
                eos_ids=eos_ids, stop_sequences=stop_sequences, decode_rows=decode_rows,
            )
        for index, generation in zip(batch, generations):
            results[index] = generation
    return [r for r in results if r is not None]


@torch.inference_mode()
def _own_sampler_batch(
    model: PreTrainedModel, rows: list[list[int]], *, pad_id: int, spec: Mapping[str, Any], eos_ids: frozenset[int],
    stop_sequences: Sequence[str], decode_rows,
) -> list[Generation]:
    """One batch through the model's own ``diffusion_generate`` (Dream): greedy, ``maskgit_plus`` (top-1
    confidence) for ``low_confidence`` and ``origin`` (random order) for ``random``. Not runnable offline here."""
    input_ids, attention_mask = _left_pad(rows, pad_id, model.device)
    output = model.diffusion_generate(
        input_ids,
        attention_mask=attention_mask,
        max_new_tokens=spec["answer_length"],
        steps=spec["steps"],
        temperature=0.0,
        alg="maskgit_plus" if spec["remasking"] == "low_confidence" else "origin",
        return_dict_in_generate=True,
        output_history=False,
    )
    sequences = output.sequences if hasattr(output, "sequences") else output
    answers = sequences[:, input_ids.shape[1] :].tolist()
    return [
        _finish(answer, eos_ids, stop_sequences, decode_rows, len(row), complete=True)
        for answer, row in zip(answers, rows)
    ]

"""Supervised fine-tuning of one causal LM on an SFT training set: answer-only loss, learned EOS.

Targets (same prompt format as evaluation, :mod:`attnlab.prompts`)::

    input  = tok(format_question(q), special tokens)  + tok(" " + solution, no special tokens) + [eos]
    labels = [-100] * len(prompt tokens)               + solution tokens                       + [eos]

The prompt is tokenised on its own, exactly as the evaluation tokenises it before
generating, so the model learns to continue the very token sequence it will see. Only
the solution and the final EOS are scored (Ouyang et al. 2022 / common SFT practice:
loss on the response only); the EOS is labelled, so the model learns to stop (the
evaluation stops on EOS or a stop sequence). Batches are right-padded; padding is
masked by each example's length (labels -100 after its last token), never by token id,
so a tokenizer whose pad token is its EOS (or has none) cannot mask the real EOS. Causal
models never attend from a real position to a later (padding) one, so no attention mask
is needed.

Objective per optimiser step, over the ``gradient_accumulation`` micro-batches B_1..B_k
of that step (token-weighted, so accumulation equals one big batch)::

    L = sum_{b in B_1..B_k} sum_{t: label_t != -100} -log p(label_t | x_<t)  /  #{scored tokens in the step}

AdamW (Loshchilov & Hutter 2019; decay on matrices/embeddings only), global-norm clipping,
``transformers.get_scheduler`` with ``round(warmup_ratio * steps)`` warmup steps.
Optimiser steps = ceil(epochs * n_train / (batch_size * gradient_accumulation)); the data
order is consecutive seeded permutations (one per epoch) of the training examples.

Methods: ``full`` (every parameter) or ``lora`` (Hu et al. 2021, through ``peft``; ΔW = (alpha/r)·B·A
on the target modules), merged into the weights before saving (``merge: true``) or saved as
an adapter folder that :func:`attnlab.models.loader.load_model` applies to its base.

Resumable: every ``checkpoint_every`` steps the model (trainable tensors), optimiser,
scheduler, torch RNG states, the step (= data position; the order is a pure function of
the seed) and the curve so far are saved atomically to ``.{out}.ckpt/state.pt`` next to the
output, and read back with ``torch.load(weights_only=True)`` (:func:`load_checkpoint`: tensors and plain
values only, so a planted pickle is refused, not run). A rerun with the same inputs resumes there; the checkpoint is removed once the
final folder is in place (written atomically with :func:`attnlab.io.atomic_dir`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import pandas as pd
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase, get_scheduler

from attnlab.io import atomic_dir, atomic_path, write_json, write_parquet
from attnlab.models.loader import load_model, resolve_device
from attnlab.models.pretrain import (
    CURVE_SCHEMA,
    _parameter_groups,
    batch_index_stream,
    collate,
    plot_loss_curve,
    split_validation,
)
from attnlab.prompts import TARGET_DELIMITER, format_question

logger = logging.getLogger(__name__)

REQUIRED_KEYS: tuple[str, ...] = (
    "epochs", "learning_rate", "scheduler", "warmup_ratio", "weight_decay", "grad_clip", "batch_size",
    "gradient_accumulation", "max_length", "validation_fraction", "eval_every", "checkpoint_every", "seed", "method",
)  # fmt: skip
#: recipe keys that describe the training set, not the optimisation (accepted, recorded only)
DATA_KEYS: frozenset[str] = frozenset({"dataset", "split", "noise_mix", "samples"})
CHECKPOINT_FILE = "state.pt"


class FinetuneResult(NamedTuple):
    """What :func:`finetune` returns: the loss curve, and the saved model (eval mode) with its tokenizer."""

    curve: pd.DataFrame
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase


class TrainingInterrupted(RuntimeError):
    """Raised by ``stop_after_steps`` to simulate a killed job (tests of resuming)."""


def checkpoint_dir_for(out_dir: str | os.PathLike[str]) -> Path:
    """``.{name}.ckpt`` beside the output folder (hidden, so no rule or glob takes it for a model)."""
    out = Path(out_dir)
    return out.parent / f".{out.name}.ckpt"


def validate_sft_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Check a resolved recipe (``attnlab.study.models.sft_recipe``) and fill the LoRA defaults.

    Raises:
        ValueError: naming a missing, unknown or out-of-range key.
    """
    missing = [k for k in REQUIRED_KEYS if k not in spec]
    if missing:
        raise ValueError(f"sft spec is missing keys {missing}")
    unknown = sorted(set(spec) - set(REQUIRED_KEYS) - DATA_KEYS - {"lora"})
    if unknown:
        raise ValueError(f"sft spec has unknown keys {unknown}")
    out = dict(spec)
    for key in ("epochs", "batch_size", "gradient_accumulation", "max_length", "eval_every", "checkpoint_every"):
        if isinstance(out[key], bool) or not isinstance(out[key], int) or out[key] <= 0:
            raise ValueError(f"sft spec key {key!r} must be a positive integer, got {out[key]!r}")
    if not isinstance(out["learning_rate"], (int, float)) or out["learning_rate"] <= 0:
        raise ValueError(f"sft spec key 'learning_rate' must be > 0, got {out['learning_rate']!r}")
    if not 0 < out["validation_fraction"] < 1:
        raise ValueError(f"sft spec key 'validation_fraction' must be in (0, 1), got {out['validation_fraction']!r}")
    if out["method"] not in ("full", "lora"):
        raise ValueError(f"sft spec key 'method' must be 'full' or 'lora', got {out['method']!r}")
    if out["method"] == "lora":
        from attnlab.study.schema import schema_defaults

        defaults = schema_defaults("sft", "recipes", "*", "lora")  # the config schema's LoRA defaults
        lora = {**defaults, **(out.get("lora") or {})}
        unknown_lora = sorted(set(lora) - set(defaults))
        if unknown_lora:
            raise ValueError(f"sft spec key 'lora' has unknown keys {unknown_lora}")
        out["lora"] = lora
    return out


def sft_example(
    tokenizer: PreTrainedTokenizerBase, question: str, answer: str, max_length: int
) -> tuple[list[int], list[int], bool]:
    """``(input_ids, labels, truncated)`` of one problem (module docstring); cut to ``max_length`` tokens.

    Raises:
        ValueError: the tokenizer has no EOS token, or the prompt alone fills ``max_length``.
    """
    if tokenizer.eos_token_id is None:
        raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has no eos token; SFT must learn to stop")
    prompt = tokenizer(format_question(question), add_special_tokens=True)["input_ids"]
    answer_ids = tokenizer(TARGET_DELIMITER + answer.strip(), add_special_tokens=False)["input_ids"]
    if len(prompt) >= max_length:
        raise ValueError(f"the prompt alone has {len(prompt)} tokens >= max_length={max_length}: {question[:60]!r}…")
    ids = [*prompt, *answer_ids, int(tokenizer.eos_token_id)]
    labels = [-100] * len(prompt) + ids[len(prompt) :]
    truncated = len(ids) > max_length
    return ids[:max_length], labels[:max_length], truncated


def sft_examples(
    tokenizer: PreTrainedTokenizerBase, table: pd.DataFrame, max_length: int
) -> tuple[list[list[int]], list[list[int]], int]:
    """Token ids and labels of every row of an SFT table, and how many were cut."""
    missing = [c for c in ("question", "answer") if c not in table.columns]
    if missing:
        raise ValueError(f"SFT table lacks columns {missing}; it has {list(table.columns)}")
    ids, labels, cut = [], [], 0
    for q, a in zip(table["question"], table["answer"]):
        x, y, truncated = sft_example(tokenizer, q, a, max_length)
        ids.append(x)
        labels.append(y)
        cut += truncated
    return ids, labels, cut


def _loss_sum(model: PreTrainedModel, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed next-token cross-entropy over the scored positions (a scalar tensor with grad)."""
    logits = model(input_ids=input_ids).logits  # (batch, length, vocab)
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)).float(), labels[:, 1:].reshape(-1), ignore_index=-100, reduction="sum"
    )


def _scored(labels: torch.Tensor) -> int:
    return int((labels[:, 1:] != -100).sum())


@torch.no_grad()
def validation_loss(
    model: PreTrainedModel, ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]], pad_id: int,
    batch_size: int, device: torch.device,
) -> float:  # fmt: skip
    """Token-weighted mean answer loss (nats per scored token) on held-out examples."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(ids), batch_size):
        x, y = collate(ids[start : start + batch_size], pad_id, labels[start : start + batch_size])
        total += _loss_sum(model, x.to(device), y.to(device)).item()
        count += _scored(y)
    model.train(was_training)
    return total / max(count, 1)


def _fingerprint(model_location: str, spec: Mapping[str, Any], table: pd.DataFrame) -> str:
    """Identity of a training run; a checkpoint is resumed only by the same run."""
    h = hashlib.sha256(json.dumps({"model": model_location, "spec": spec}, sort_keys=True, default=str).encode())
    for column in ("id", "question", "answer"):
        h.update("\x00".join(map(str, table[column])).encode())
    return h.hexdigest()


def load_checkpoint(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> dict[str, Any]:
    """A resume checkpoint, read with ``torch.load(weights_only=True)``: tensors, numbers, strings, lists and
    dicts only — a file holding any other pickled object is refused, never executed.

    Raises:
        ValueError: naming the file, when it holds anything else or is not a checkpoint of this module.
    """
    import pickle

    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ValueError(
            f"{path}: not a resume checkpoint this version can read safely ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); delete the file to start the fine-tuning over"
        ) from None
    missing = {"fingerprint", "step", "rows", "tokens_seen", "model", "optimizer", "scheduler", "rng"} - set(
        state if isinstance(state, dict) else ()
    )
    if missing:
        raise ValueError(f"{path}: not a resume checkpoint (missing {sorted(missing)}); delete it to start over")
    return state


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k in names or not names}


def _apply_lora(model: PreTrainedModel, lora: Mapping[str, Any], seed: int) -> PreTrainedModel:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("method: lora needs peft; install it with `pip install attnlab[lora]`") from err
    torch.manual_seed(seed)
    config = LoraConfig(
        r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
        target_modules=lora["target_modules"], task_type="CAUSAL_LM",
    )  # fmt: skip
    try:
        return get_peft_model(model, config)
    except ValueError as err:
        raise ValueError(
            f"LoRA cannot adapt model type {model.config.model_type!r} with target_modules={lora['target_modules']}: "
            f"{err}; set sft.recipes.<recipe>.lora.target_modules"
        ) from err


def finetune(
    model_location: str | os.PathLike[str],
    table: pd.DataFrame,
    spec: Mapping[str, Any],
    out_dir: str | os.PathLike[str],
    *,
    device: str = "auto",
    threads: int | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    subfolder: str | None = None,
    curve_path: str | os.PathLike[str] | None = None,
    curve_plot_path: str | os.PathLike[str] | None = None,
    progress: bool = True,
    stop_after_steps: int | None = None,
    name: str | None = None,
) -> FinetuneResult:
    """Fine-tune the model at ``model_location`` on ``table`` and save it to ``out_dir``.

    Args:
        model_location: a ``save_pretrained`` folder or hub id, loaded with :func:`load_model` (float32).
        table: the SFT training set (``question``, ``answer``, ``id`` columns; :mod:`attnlab.sft.data`).
        spec: the resolved recipe (:func:`validate_sft_spec`).
        out_dir: destination folder (model + tokenizer + ``training_info.json``), written atomically.
        device / threads: where to train and ``torch.set_num_threads``.
        trust_remote_code / revision / subfolder: passed to the loader (hub models).
        curve_path / curve_plot_path: loss curve Parquet / PNG.
        progress: tqdm progress bar (on stderr, i.e. in the job's log).
        stop_after_steps: raise :class:`TrainingInterrupted` after this many steps of this
            process (simulates a kill; the last checkpoint stays).
        name: a label for the progress bar and plot title.

    Returns:
        ``(curve, model, tokenizer)``: the loss curve (``step, split, loss, lr, tokens_seen``; a train
        row per optimiser step — token-weighted batch loss, lr used — and validation rows at step 0,
        every ``eval_every`` steps and at the end), and the model as saved (LoRA merged if asked).
    """
    spec = validate_sft_spec(spec)
    location = os.fspath(model_location)
    name = name or Path(location).name
    if threads is not None:
        torch.set_num_threads(threads)
    target = resolve_device(device)
    seed = int(spec["seed"])

    model, tokenizer = load_model(
        location, device=str(target), dtype="float32", trust_remote_code=trust_remote_code, revision=revision,
        subfolder=subfolder, for_generation=False,
    )  # fmt: skip
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id  # filler only
    ids, labels, truncated = sft_examples(tokenizer, table, spec["max_length"])
    if truncated:
        logger.warning("%d of %d examples exceed max_length=%d tokens and were cut", truncated, len(ids), spec["max_length"])
    if len(ids) < 2:
        raise ValueError(f"the SFT table has {len(ids)} rows; need at least 2 (train + validation)")
    train_rows, val_rows = split_validation(len(ids), spec["validation_fraction"], seed)
    train_ids, train_labels = [ids[i] for i in train_rows], [labels[i] for i in train_rows]
    val_ids, val_labels = [ids[i] for i in val_rows], [labels[i] for i in val_rows]

    batch_size, accumulation = spec["batch_size"], spec["gradient_accumulation"]
    micro = math.ceil(spec["epochs"] * len(train_ids) / batch_size)
    steps = math.ceil(micro / accumulation)
    order = batch_index_stream(len(train_ids), batch_size, steps * accumulation, seed)  # (steps*acc, batch)

    if spec["method"] == "lora":
        model = _apply_lora(model, spec["lora"], seed)
    model.train()
    optimizer = torch.optim.AdamW(_parameter_groups(model, spec["weight_decay"]), lr=spec["learning_rate"])
    scheduler = get_scheduler(
        spec["scheduler"], optimizer, num_warmup_steps=round(spec["warmup_ratio"] * steps), num_training_steps=steps
    )

    ckpt_dir = checkpoint_dir_for(out_dir)
    ckpt_file = ckpt_dir / CHECKPOINT_FILE
    fingerprint = _fingerprint(location, spec, table)
    rows: list[dict[str, Any]] = []
    tokens_seen, start_step = 0, 0
    if ckpt_file.is_file():
        state = load_checkpoint(ckpt_file, target)
        if state["fingerprint"] == fingerprint:
            model.load_state_dict(state["model"], strict=False)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"])
            if state.get("cuda_rng") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["cuda_rng"])
            rows, tokens_seen, start_step = state["rows"], state["tokens_seen"], state["step"]
            logger.info("resuming %s from checkpoint %s at step %d of %d", name, ckpt_file, start_step, steps)
        else:
            logger.warning("checkpoint %s belongs to another run (inputs or recipe changed); starting over", ckpt_file)
    if start_step == 0:
        rows.append({"step": 0, "split": "validation", "lr": scheduler.get_last_lr()[0], "tokens_seen": 0,
                     "loss": validation_loss(model, val_ids, val_labels, pad_id, batch_size, target)})  # fmt: skip

    started = time.perf_counter()
    bar = tqdm(range(start_step + 1, steps + 1), desc=f"sft {name}", disable=not progress, mininterval=2.0)
    for done, step in enumerate(bar, start=1):
        batches = [collate([train_ids[i] for i in order[m]], pad_id, [train_labels[i] for i in order[m]])
                   for m in range((step - 1) * accumulation, step * accumulation)]  # fmt: skip
        n_scored = sum(_scored(y) for _, y in batches)
        lr = scheduler.get_last_lr()[0]
        step_loss = 0.0
        for x, y in batches:
            loss = _loss_sum(model, x.to(target), y.to(target)) / max(n_scored, 1)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{name}: non-finite training loss at step {step}")
            loss.backward()
            step_loss += loss.item()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], spec["grad_clip"])
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        tokens_seen += n_scored
        rows.append({"step": step, "split": "train", "loss": step_loss, "lr": lr, "tokens_seen": tokens_seen})
        if step % spec["eval_every"] == 0 or step == steps:
            val = validation_loss(model, val_ids, val_labels, pad_id, batch_size, target)
            rows.append({"step": step, "split": "validation", "loss": val, "lr": lr, "tokens_seen": tokens_seen})
            bar.set_postfix(train=f"{step_loss:.3f}", val=f"{val:.3f}")
        if step % spec["checkpoint_every"] == 0 and step < steps:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            state = {
                "fingerprint": fingerprint, "step": step, "rows": rows, "tokens_seen": tokens_seen,
                "model": _trainable_state(model), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            }  # fmt: skip
            with atomic_path(ckpt_file, suffix=".pt") as tmp:
                torch.save(state, tmp)
        if stop_after_steps is not None and done >= stop_after_steps and step < steps:
            raise TrainingInterrupted(f"{name}: stopped after step {step} (stop_after_steps={stop_after_steps})")
    wall_seconds = time.perf_counter() - started
    curve = pd.DataFrame(rows, columns=[f.name for f in CURVE_SCHEMA])

    model.eval()
    adapter_only = spec["method"] == "lora" and not spec["lora"]["merge"]
    if spec["method"] == "lora" and not adapter_only:
        model = model.merge_and_unload()
    generation_config = model.generation_config
    generation_config.eos_token_id = tokenizer.eos_token_id
    if tokenizer.pad_token_id is not None:
        generation_config.pad_token_id = tokenizer.pad_token_id
    provenance = {
        "base_model": location, "sft": spec, "num_examples": len(ids), "num_train_examples": len(train_ids),
        "num_validation_examples": len(val_ids), "truncated_examples": truncated, "optimizer_steps": steps,
    }  # fmt: skip
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(
            tmp / "training_info.json",
            {
                **provenance,
                "model_class": type(model.get_base_model() if adapter_only else model).__name__,
                "resumed_from_step": start_step,
                "threads": torch.get_num_threads(),
                "wall_seconds": round(wall_seconds, 3),
                "final_train_loss": float(curve.loc[curve.split == "train", "loss"].iloc[-1]),
                "final_validation_loss": float(curve.loc[curve.split == "validation", "loss"].iloc[-1]),
            },
        )
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    if curve_path is not None:
        write_parquet(curve, curve_path, metadata=provenance, schema=CURVE_SCHEMA)
    if curve_plot_path is not None:
        plot_loss_curve(curve, curve_plot_path, title=f"SFT {name} ({steps} steps, seed {seed})")
    return FinetuneResult(curve, model, tokenizer)

"""Pretraining a scratch causal LM on solved word problems, identically for every architecture.

Every architecture sees the same tokenizer, the same documents in the same order,
the same optimiser, schedule, seed and number of steps; only the model differs.

Documents are ``format_example(question, answer) + </s>`` (the lm-eval gsm8k
format of :mod:`attnlab.prompts`), tokenised with the shared tokenizer (which
prepends ``<s>``). Each step draws ``batch_size`` documents from a stream of
seeded permutations of the training rows (epoch after epoch), right-pads them to
the longest in the batch (or, with ``packing``, concatenates documents into full
blocks of ``max_length`` tokens; or ``group_by_length``: batches of similar
length, to waste less compute on padding) and minimises the mean next-token cross-entropy over
the real tokens (labels of padding are ``-100``) — every token (``loss_on: all``), or only
the worked solution and ``</s>`` given the question (``loss_on: answer``, see
:func:`answer_only_labels`). Because padding is on the
right and the models are causal, real positions never see the padding, so no
attention mask is passed (the fast causal kernels stay on).

Optimiser: AdamW (Loshchilov & Hutter 2019) with weight decay on matrices and
embeddings only (parameters with ``ndim >= 2``, as in nanoGPT; norms, biases,
DiffLlama λ and the SSM parameters ``A_log``/``D``/``dt_bias`` are not decayed), gradient
clipping by global norm, and ``transformers.get_scheduler`` (linear warmup then
cosine decay to 0 by default).

A seeded slice of the corpus (``validation_fraction``) is held out; its
token-weighted mean loss is evaluated at step 0, every ``eval_every`` steps and
at the end.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import zlib
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase, get_scheduler

from attnlab.io import write_json, write_parquet
from attnlab.io import atomic_dir
from attnlab.models.mdlm import LOSS_WEIGHTINGS
from attnlab.models.registry import build_scratch_config, count_parameters
from attnlab.models.tokenizer import load_tokenizer
from attnlab.prompts import format_example, format_question

logger = logging.getLogger(__name__)

REQUIRED_TRAIN_KEYS: tuple[str, ...] = (
    "batch_size",
    "learning_rate",
    "steps",
    "warmup_steps",
    "weight_decay",
    "max_length",
    "grad_clip",
    "eval_every",
    "validation_fraction",
)
#: Optional train-spec keys and their defaults (``corpus`` is the study's dataset name, informational).
OPTIONAL_TRAIN_DEFAULTS: dict[str, Any] = {
    "corpus": None,
    "extra_corpora": [],
    "scheduler": "cosine",
    "group_by_length": False,
    "packing": False,
    "loss_on": "all",
    "adam_beta1": 0.9,
    "adam_beta2": 0.95,
    "adam_epsilon": 1e-8,
    "answer_window": None,
    "precision": "float32",
    # masked-diffusion adaptation options (architecture mdlm only; see attnlab.models.mdlm)
    "anneal_steps": 0,
    "loss_weighting": "llada",
    "ar_loss_weight": 0.0,
    "mix_documents": 0.0,
}
#: The train-spec keys that only a masked diffusion LM (``architecture: mdlm``) uses (off at their defaults above).
MDLM_TRAIN_KEYS: tuple[str, ...] = ("anneal_steps", "loss_weighting", "ar_loss_weight", "mix_documents")

#: ``precision`` values: float32 throughout, or bf16 autocast of the training forward/backward (fp32 weights,
#: optimiser state and validation loss)
PRECISIONS: tuple[str, ...] = ("float32", "bfloat16")

#: Keys of a scratch model entry that are not size fields.
NON_SIZE_SPEC_KEYS: frozenset[str] = frozenset(
    {"architecture", "source", "dtype", "diffusion", "init", "head_norm", "pretrain"}
)

#: Batches per length-sorted group when ``group_by_length`` is on.
GROUP_BATCHES = 50

CURVE_SCHEMA = pa.schema(
    [
        ("step", pa.int64()),
        ("split", pa.string()),
        ("loss", pa.float64()),
        ("lr", pa.float64()),
        ("tokens_seen", pa.int64()),
    ]
)


def sub_seed(seed: int, purpose: str) -> int:
    """A stable sub-seed for one use of randomness: ``crc32(f"{seed}:{purpose}")``.

    Never Python's ``hash()``, which is salted per process.
    """
    return zlib.crc32(f"{seed}:{purpose}".encode())


def validate_train_spec(train_spec: Mapping[str, Any]) -> dict[str, Any]:
    """Check the train spec and return it with optional defaults filled in.

    Raises:
        ValueError: naming missing, unknown or out-of-range keys.
    """
    missing = [k for k in REQUIRED_TRAIN_KEYS if k not in train_spec]
    if missing:
        raise ValueError(f"train spec is missing required keys {missing}")
    unknown = sorted(set(train_spec) - set(REQUIRED_TRAIN_KEYS) - set(OPTIONAL_TRAIN_DEFAULTS))
    if unknown:
        raise ValueError(
            f"train spec has unknown keys {unknown}; known: {sorted([*REQUIRED_TRAIN_KEYS, *OPTIONAL_TRAIN_DEFAULTS])}"
        )
    spec = {**OPTIONAL_TRAIN_DEFAULTS, **train_spec}
    for key in ("batch_size", "steps", "max_length", "eval_every"):
        if isinstance(spec[key], bool) or not isinstance(spec[key], int) or spec[key] <= 0:
            raise ValueError(f"train spec key {key!r} must be a positive integer, got {spec[key]!r}")
    if isinstance(spec["warmup_steps"], bool) or not isinstance(spec["warmup_steps"], int) or spec["warmup_steps"] < 0:
        raise ValueError(f"train spec key 'warmup_steps' must be a non-negative integer, got {spec['warmup_steps']!r}")
    for key in ("learning_rate", "grad_clip"):
        if not isinstance(spec[key], (int, float)) or spec[key] <= 0:
            raise ValueError(f"train spec key {key!r} must be a positive number, got {spec[key]!r}")
    if not isinstance(spec["weight_decay"], (int, float)) or spec["weight_decay"] < 0:
        raise ValueError(f"train spec key 'weight_decay' must be >= 0, got {spec['weight_decay']!r}")
    for key in ("group_by_length", "packing"):
        if not isinstance(spec[key], bool):
            raise ValueError(f"train spec key {key!r} must be true or false, got {spec[key]!r}")
    if spec["loss_on"] not in ("all", "answer"):
        raise ValueError(f"train spec key 'loss_on' must be 'all' or 'answer', got {spec['loss_on']!r}")
    if spec["answer_window"] is not None:
        window = spec["answer_window"]
        if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
            raise ValueError(f"train spec key 'answer_window' must be a positive integer or null, got {window!r}")
        if spec["loss_on"] != "answer" or spec["packing"]:
            raise ValueError("train spec key 'answer_window' needs loss_on: answer and packing: false")
    if spec["precision"] not in PRECISIONS:
        raise ValueError(f"train spec key 'precision' must be one of {list(PRECISIONS)}, got {spec['precision']!r}")
    if isinstance(spec["anneal_steps"], bool) or not isinstance(spec["anneal_steps"], int) or spec["anneal_steps"] < 0:
        raise ValueError(f"train spec key 'anneal_steps' must be a non-negative integer, got {spec['anneal_steps']!r}")
    if spec["anneal_steps"] > spec["steps"]:
        raise ValueError(
            f"train spec key 'anneal_steps' ({spec['anneal_steps']}) exceeds 'steps' ({spec['steps']}): the model would "
            "end training with a partly causal mask but is always evaluated bidirectionally"
        )
    if spec["loss_weighting"] not in LOSS_WEIGHTINGS:
        raise ValueError(f"train spec key 'loss_weighting' must be one of {list(LOSS_WEIGHTINGS)}, got {spec['loss_weighting']!r}")
    for key in ("ar_loss_weight", "mix_documents"):
        value = spec[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"train spec key {key!r} must be a number >= 0, got {value!r}")
    if spec["mix_documents"] > 1:
        raise ValueError(f"train spec key 'mix_documents' is a fraction of the steps, in [0, 1], got {spec['mix_documents']!r}")
    if spec["mix_documents"] > 0 and spec["answer_window"] is None:
        raise ValueError("train spec key 'mix_documents' mixes whole documents into answer-window batches: it needs answer_window")
    if spec["packing"] and spec["group_by_length"]:
        raise ValueError("train spec keys 'packing' and 'group_by_length' exclude each other")
    if not 0 < spec["validation_fraction"] < 1:
        raise ValueError(f"train spec key 'validation_fraction' must be in (0, 1), got {spec['validation_fraction']!r}")
    return spec


def validate_architecture_spec(architecture_spec: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Split a scratch model entry into ``(architecture, size)``.

    The entry is the study config's ``models.<name>`` section, flat:
    ``{"architecture": "llama", "hidden_size": 128, "num_layers": 4, ...}``.
    ``source`` (must be ``"scratch"``) and ``dtype`` (a loading option; training
    is always float32) are accepted and not part of the size; every other key
    is a size field, checked by :func:`~attnlab.models.registry.build_scratch_config`.
    """
    if "architecture" not in architecture_spec:
        raise ValueError(f"scratch model spec has no 'architecture' key; got keys {sorted(architecture_spec)}")
    if architecture_spec.get("source", "scratch") != "scratch":
        raise ValueError(f"only scratch models can be pretrained; spec has source={architecture_spec['source']!r}")
    size = {k: v for k, v in architecture_spec.items() if k not in NON_SIZE_SPEC_KEYS}
    return str(architecture_spec["architecture"]), size


def corpus_documents(corpus: pd.DataFrame) -> list[str]:
    """The pretraining documents (without eos): ``format_example(question, answer)`` per row."""
    missing = [c for c in ("question", "answer") if c not in corpus.columns]
    if missing:
        raise ValueError(f"pretraining corpus lacks columns {missing}; it has {list(corpus.columns)}")
    if len(corpus) < 2:
        raise ValueError(f"pretraining corpus has {len(corpus)} rows; need at least 2 (train + validation)")
    for column in ("question", "answer"):
        bad = corpus.index[corpus[column].isna() | (corpus[column].astype(str).str.strip() == "")]
        if len(bad):
            raise ValueError(f"pretraining corpus has empty {column!r} in row(s) {list(bad[:5])}")
    return [format_example(q, a) for q, a in zip(corpus["question"], corpus["answer"])]


def extra_corpus_documents(frame: pd.DataFrame, source: str = "extra corpus") -> list[str]:
    """Documents of an extra pretraining corpus: its ``text`` column, one document per row.

    Extra corpora (needle episodes, knowledge-base statements, ...) are mixed
    with the math documents so that one set of scratch models can be probed
    by every analysis stage.

    Raises:
        ValueError: naming ``source`` and the rows, if the column is missing or a document is empty.
    """
    if "text" not in frame.columns:
        raise ValueError(f"{source}: an extra corpus needs a 'text' column; it has {list(frame.columns)}")
    texts = frame["text"]
    bad = frame.index[texts.isna() | (texts.astype(str).str.strip() == "")]
    if len(bad):
        raise ValueError(f"{source}: empty 'text' in row(s) {list(bad[:5])}")
    return [str(t) for t in texts]


def tokenize_documents(
    documents: Sequence[str], tokenizer: PreTrainedTokenizerBase, max_length: int
) -> tuple[list[list[int]], int]:
    """Token ids of ``<s> document </s>``, cut to ``max_length``; also the number cut."""
    eos = tokenizer.eos_token_id
    encoded = tokenizer(list(documents), add_special_tokens=True)["input_ids"]
    sequences, truncated = [], 0
    for ids in encoded:
        ids = [*ids, eos]
        if len(ids) > max_length:
            truncated += 1
            ids = ids[:max_length]
        sequences.append(ids)
    return sequences, truncated


def answer_only_labels(
    corpus: pd.DataFrame, sequences: Sequence[Sequence[int]], tokenizer: PreTrainedTokenizerBase
) -> list[list[int]]:
    """Labels that score only the solution: prompt tokens (``<s>Question: …\nAnswer:``) become -100.

    The loss is then the cross-entropy of the worked solution and ``</s>`` given the
    question, the quantity pass@1 depends on; the question's own tokens (random
    names and numbers, irreducible) no longer compete for a tiny model's capacity.

    Raises:
        ValueError: if a prompt's tokens are not a prefix of its document's tokens.
    """
    prompts = tokenizer([format_question(q) for q in corpus["question"]], add_special_tokens=True)["input_ids"]
    labels = []
    for row, (prompt, ids) in enumerate(zip(prompts, sequences)):
        if list(ids[: len(prompt)]) != list(prompt)[: len(ids)]:
            raise ValueError(f"corpus row {row}: the prompt does not tokenize as a prefix of the document")
        n_prompt = min(len(prompt), len(ids))
        labels.append([-100] * n_prompt + list(ids[n_prompt:]))
    return labels


def answer_window_sequences(
    corpus: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, window: int, max_length: int
) -> tuple[list[list[int]], list[list[int]], int]:
    """(input ids, labels, number cut) of ``prompt ‖ answer window`` per problem, LLaDA's SFT layout.

    The window is the solution's tokens and ``</s>``, padded with ``</s>`` (or cut) to exactly ``window`` tokens,
    as the iterative unmasking fills a window of ``answer_length`` after the prompt; the padding EOS tokens are
    ordinary targets (Nie et al. 2025, Sec. 2.3), so the model learns to end the answer inside the window. Labels are
    -100 on the prompt (never masked) and the window's tokens elsewhere. A sequence longer than ``max_length``
    (the positions the model was pretrained on) is cut and counted.
    """
    eos = tokenizer.eos_token_id
    prompts = tokenizer([format_question(q) for q in corpus["question"]], add_special_tokens=True)["input_ids"]
    documents = tokenizer(corpus_documents(corpus), add_special_tokens=True)["input_ids"]
    sequences, labels, cut = [], [], 0
    for row, (prompt, ids) in enumerate(zip(prompts, documents)):
        if list(ids[: len(prompt)]) != list(prompt):
            raise ValueError(f"corpus row {row}: the prompt does not tokenize as a prefix of the document")
        answer = [*ids[len(prompt) :], eos]
        answer = (answer + [eos] * window)[:window]
        sequence = [*prompt, *answer]
        if len(sequence) > max_length:
            cut += 1
            sequence = sequence[:max_length]
        sequences.append(sequence)
        labels.append([-100] * min(len(prompt), len(sequence)) + sequence[len(prompt) :])
    return sequences, labels, cut


def init_from_causal(init_dir: str | os.PathLike[str], size_config: Any, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """The masked diffusion LM initialised from the trained causal Llama in ``init_dir`` (shift operation).

    :func:`attnlab.models.mdlm.mdlm_config_from_causal` keeps the Llama's architecture with ``shift_logits``; the
    state dict loads with no missing or unexpected keys.

    Raises:
        ValueError: if the Llama's tokenizer or size fields differ from this model's (the comparison would be unfair
            and the weights would not fit).
    """
    from attnlab.models.mdlm import MDLMForMaskedDiffusion, mdlm_config_from_causal

    source = AutoModelForCausalLM.from_pretrained(init_dir)
    if load_tokenizer(init_dir).get_vocab() != tokenizer.get_vocab():
        raise ValueError(f"init model {init_dir}: its tokenizer differs from the study's tokenizer")
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "num_key_value_heads"):
        if getattr(source.config, key, None) != getattr(size_config, key, None):
            raise ValueError(
                f"init model {init_dir}: {key} = {getattr(source.config, key, None)}, but the mdlm entry gives "
                f"{getattr(size_config, key, None)} (use the llama's size fields)"
            )
    config = mdlm_config_from_causal(source.config, tokenizer.mask_token_id)
    model = MDLMForMaskedDiffusion(config)
    model.load_state_dict(source.state_dict(), strict=True)
    return model


def split_validation(n_rows: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/validation row indices (at least one row each), both sorted."""
    rng = np.random.default_rng(sub_seed(seed, "validation-split"))
    n_val = min(max(1, round(fraction * n_rows)), n_rows - 1)
    order = rng.permutation(n_rows)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def batch_index_stream(
    n_train: int,
    batch_size: int,
    steps: int,
    seed: int,
    lengths: Sequence[int] | None = None,
    group_size: int = GROUP_BATCHES,
) -> np.ndarray:
    """Row positions (into the train split) for every step: ``(steps, batch_size)``.

    Epochs are consecutive seeded permutations; the result depends only on the
    seed, the corpus size and (if given) the documents' token ``lengths`` —
    never on the architecture.

    With ``lengths`` (``group_by_length``), each run of ``group_size * batch_size``
    consecutive stream positions is sorted by length, cut into batches, and the
    batches of the group are put in a seeded random order (as HF Trainer's
    ``group_by_length``): every document is still seen once per epoch, but
    batches hold similar lengths, so less compute goes into padding. Caution:
    when length correlates with content (the synthetic templates: one family ≈
    one length), batches become near-homogeneous and learning suffers — on the
    default study it cut step time by ~30 % but raised the validation loss at
    equal steps from 0.29 to 0.46. Off by default.
    """
    rng = np.random.default_rng(sub_seed(seed, "data-order"))
    needed = steps * batch_size
    epochs = math.ceil(needed / n_train)
    stream = np.concatenate([rng.permutation(n_train) for _ in range(epochs)])[:needed]
    if lengths is None:
        return stream.reshape(steps, batch_size)
    lengths = np.asarray(lengths)
    if len(lengths) != n_train:
        raise ValueError(f"got {len(lengths)} lengths for {n_train} training documents")
    batches = []
    group = group_size * batch_size
    for start in range(0, needed, group):
        chunk = stream[start : start + group]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]  # longest first, ties by stream order
        chunk_batches = chunk.reshape(-1, batch_size)
        batches.append(chunk_batches[rng.permutation(len(chunk_batches))])
    return np.concatenate(batches)


def packed_blocks(
    sequences: Sequence[Sequence[int]], order: np.ndarray, block_length: int, n_blocks: int
) -> np.ndarray:
    """Concatenate documents in stream ``order`` and cut the token stream into blocks: ``(n_blocks, block_length)``.

    GPT-style packing (Radford et al. 2019; Brown et al. 2020): no padding, so every
    position carries a training signal. Documents keep their ``<s>``/``</s>``
    markers, so the model learns where one problem ends and the next begins; a
    document may straddle two blocks. ``order`` is cycled if it runs out.
    """
    needed = n_blocks * block_length
    tokens: list[int] = []
    position = 0
    while len(tokens) < needed:
        tokens.extend(sequences[int(order[position % len(order)])])
        position += 1
    return np.asarray(tokens[:needed], dtype=np.int64).reshape(n_blocks, block_length)


def collate(
    sequences: Sequence[Sequence[int]],
    pad_token_id: int,
    label_sequences: Sequence[Sequence[int]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest sequence: ``input_ids`` and ``labels`` (pad → -100), both ``(batch, length)``.

    ``labels`` are the tokens themselves, or ``label_sequences`` (same lengths) when given.
    """
    label_sequences = sequences if label_sequences is None else label_sequences
    length = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), length), pad_token_id, dtype=torch.long)
    labels = torch.full((len(sequences), length), -100, dtype=torch.long)
    for row, (ids, targets) in enumerate(zip(sequences, label_sequences)):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        labels[row, : len(targets)] = torch.tensor(targets, dtype=torch.long)
    return input_ids, labels


def next_token_loss_sum(model: PreTrainedModel, input_ids: torch.Tensor, labels: torch.Tensor) -> tuple[float, int]:
    """Summed next-token cross-entropy over real targets and their count."""
    logits = model(input_ids=input_ids).logits  # (batch, length, vocab)
    shift_logits = logits[:, :-1].reshape(-1, logits.size(-1)).float()
    shift_labels = labels[:, 1:].reshape(-1)
    loss = F.cross_entropy(shift_logits, shift_labels, ignore_index=-100, reduction="sum")
    return loss.item(), int((shift_labels != -100).sum())


class NextTokenObjective:
    """The causal LMs' objective: mean next-token cross-entropy over the labelled targets (HF's shifted loss)."""

    def train_loss(
        self, model: PreTrainedModel, input_ids: torch.Tensor, labels: torch.Tensor, step: int | None = None
    ) -> torch.Tensor:
        """The batch's mean next-token CE (``step`` is not used)."""
        return model(input_ids=input_ids, labels=labels).loss

    def reset_validation(self) -> None:
        """Nothing to reset: the next-token loss is deterministic."""

    def validation_loss_sum(
        self, model: PreTrainedModel, input_ids: torch.Tensor, labels: torch.Tensor
    ) -> tuple[float, int]:
        return next_token_loss_sum(model, input_ids, labels)


def training_objective(model: PreTrainedModel, seed: int, spec: Mapping[str, Any] | None = None) -> Any:
    """The loss for ``model.config.model_type``: LLaDA's masked-diffusion loss for ``attnlab_mdlm`` (see
    :class:`attnlab.models.mdlm.MaskedDiffusionObjective`; its masks are seeded by ``seed``, and the train ``spec``'s
    ``anneal_steps``, ``loss_weighting`` and ``ar_loss_weight`` configure it), else next-token CE."""
    from attnlab.models.mdlm import MaskedDiffusionObjective, is_masked_diffusion_model

    spec = {**OPTIONAL_TRAIN_DEFAULTS, **(spec or {})}
    if is_masked_diffusion_model(model):
        return MaskedDiffusionObjective(
            model.config.mask_token_id, model.config.pad_token_id, sub_seed(seed, "mdlm-masking"),
            anneal_steps=spec["anneal_steps"], loss_weighting=spec["loss_weighting"],
            ar_loss_weight=spec["ar_loss_weight"],
        )
    return NextTokenObjective()


def whole_document_steps(steps: int, fraction: float, seed: int) -> np.ndarray:
    """(steps,) bool: which optimiser steps train on whole documents instead of answer windows (``mix_documents``).

    Each step is a whole-document step with probability ``fraction``, a seeded draw independent of the data order.
    """
    return np.random.default_rng(sub_seed(seed, "mix-documents")).random(steps) < fraction


@torch.no_grad()
def validation_loss(
    model: PreTrainedModel,
    sequences: Sequence[Sequence[int]],
    pad_token_id: int,
    batch_size: int,
    label_sequences: Sequence[Sequence[int]] | None = None,
    objective: Any = None,
) -> float:
    """Token-weighted mean loss on ``sequences`` (scored on ``label_sequences`` if given): next-token CE, or
    ``objective.validation_loss_sum`` (see :func:`training_objective`)."""
    was_training = model.training
    model.eval()
    objective = NextTokenObjective() if objective is None else objective
    objective.reset_validation()
    total, count = 0.0, 0
    for start in range(0, len(sequences), batch_size):
        chunk = slice(start, start + batch_size)
        input_ids, labels = collate(
            sequences[chunk], pad_token_id, None if label_sequences is None else label_sequences[chunk]
        )
        input_ids, labels = input_ids.to(model.device), labels.to(model.device)
        loss_sum, n = objective.validation_loss_sum(model, input_ids, labels)
        total += loss_sum
        count += n
    model.train(was_training)
    return total / count


def _parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay matrices/embeddings; not norms, biases, λ, or SSM ``A_log``/``D``/``dt_bias``."""

    def decays(name: str, param: torch.nn.Parameter) -> bool:
        return param.ndim >= 2 and not name.endswith("A_log")  # Mamba-1's A_log is (inner, state)

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for n, p in named if decays(n, p)], "weight_decay": weight_decay},
        {"params": [p for n, p in named if not decays(n, p)], "weight_decay": 0.0},
    ]


def pretrain(
    architecture_spec: Mapping[str, Any],
    train_spec: Mapping[str, Any],
    tokenizer_dir: str | os.PathLike[str],
    corpus: pd.DataFrame,
    seed: int,
    out_dir: str | os.PathLike[str],
    threads: int | None = None,
    *,
    curve_path: str | os.PathLike[str] | None = None,
    curve_plot_path: str | os.PathLike[str] | None = None,
    progress: bool = True,
    extra_documents: Sequence[str] = (),
    device: str | torch.device = "cpu",
    init_from: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """Train a scratch model from random init (or an mdlm from a trained Llama) and save it with its tokenizer.

    Args:
        architecture_spec: the flat scratch model entry ``{"architecture": "llama"|"diffllama"|...,
            <size fields>}`` (see :func:`validate_architecture_spec` and
            :mod:`attnlab.models.registry` for the size keys).
        train_spec: ``batch_size, learning_rate, steps, warmup_steps, weight_decay,
            max_length, grad_clip, eval_every, validation_fraction`` (required) and
            ``scheduler`` ("cosine"; any ``transformers.get_scheduler`` name), ``corpus``
            (dataset name, recorded only), ``group_by_length`` (False; batches of
            similar lengths, see :func:`batch_index_stream`), ``adam_beta1`` (0.9), ``adam_beta2`` (0.95),
            ``adam_epsilon`` (1e-8) (optional, defaults in brackets); for ``architecture: mdlm`` also
            ``anneal_steps`` (0), ``loss_weighting`` ("llada"), ``ar_loss_weight`` (0) — see
            :class:`attnlab.models.mdlm.MaskedDiffusionObjective` — and ``mix_documents`` (0: the fraction of steps,
            drawn by :func:`whole_document_steps`, whose batch is the same problems as whole documents with every
            token eligible, LLaDA's pretraining layout, instead of answer windows).
        tokenizer_dir: the shared tokenizer folder (:func:`attnlab.models.tokenizer.save_tokenizer`).
        corpus: DataFrame with ``question`` and ``answer`` columns.
        seed: seeds the init (``torch.manual_seed``), the validation split and the data order.
        out_dir: destination ``save_pretrained`` folder (model + tokenizer +
            ``training_info.json``), written atomically.
        threads: ``torch.set_num_threads`` (None leaves torch's default).
        curve_path / curve_plot_path: if given, the loss curve is written there
            as Parquet (deterministic bytes) / PNG.
        progress: show a tqdm progress bar.
        extra_documents: further documents (:func:`extra_corpus_documents`) mixed into the
            corpus; the loss covers all of their tokens (``loss_on`` concerns the math documents).
        device: where to train (``"cuda"`` on a GPU node; batches are built on the CPU and moved there).
        init_from: ``architecture: mdlm`` only: a trained scratch Llama folder to start from
            (:func:`init_from_causal`) instead of random weights. With ``answer_window`` in the train spec the
            training sequences are :func:`answer_window_sequences` (LLaDA's SFT layout).

    Returns:
        The loss curve: one row per (step, split) with ``step, split
        ("train"|"validation"), loss, lr, tokens_seen``. Train rows are the
        batch mean loss of each optimiser step (1-based step, lr used for it);
        validation rows are evaluated after that many steps (step 0 = init).
    """
    architecture, size = validate_architecture_spec(architecture_spec)
    spec = validate_train_spec(train_spec)
    if threads is not None:
        if threads <= 0:
            raise ValueError(f"threads must be positive, got {threads}")
        torch.set_num_threads(threads)

    tokenizer = load_tokenizer(tokenizer_dir)
    tokenizer.padding_side = "right"
    pad_id = tokenizer.pad_token_id
    config = build_scratch_config(architecture, size, tokenizer, architecture_spec.get("head_norm"))
    n_params = count_parameters(config)

    if init_from is not None and architecture != "mdlm":
        raise ValueError(f"init_from is for architecture mdlm (a diffusion LM adapted from a llama), not {architecture!r}")
    if architecture != "mdlm":
        used = [k for k in MDLM_TRAIN_KEYS if spec[k] != OPTIONAL_TRAIN_DEFAULTS[k]]
        if used:
            raise ValueError(f"train spec keys {used} are for architecture mdlm only, not {architecture!r}")
    documents = corpus_documents(corpus)
    if spec["answer_window"] is not None:
        if extra_documents:
            raise ValueError("train spec key 'answer_window' trains on the math problems only; pass no extra corpora")
        sequences, label_seqs, truncated = answer_window_sequences(corpus, tokenizer, spec["answer_window"], spec["max_length"])
    else:
        sequences, truncated = tokenize_documents([*documents, *extra_documents], tokenizer, spec["max_length"])
    if truncated:
        logger.warning("%d of %d documents exceed max_length=%d tokens and were cut", truncated, len(sequences), spec["max_length"])
    if spec["answer_window"] is None and spec["loss_on"] == "answer":
        label_seqs = answer_only_labels(corpus, sequences[: len(documents)], tokenizer) + sequences[len(documents) :]
    elif spec["answer_window"] is None:
        label_seqs = sequences
    train_rows, val_rows = split_validation(len(sequences), spec["validation_fraction"], seed)
    train_seqs, train_labels = [sequences[i] for i in train_rows], [label_seqs[i] for i in train_rows]
    if spec["mix_documents"] > 0:  # the same training problems as whole documents, every token eligible
        documents_of_rows, _ = tokenize_documents([documents[i] for i in train_rows], tokenizer, spec["max_length"])
        whole_steps = whole_document_steps(spec["steps"], spec["mix_documents"], seed)
    val_seqs, val_labels = [sequences[i] for i in val_rows], [label_seqs[i] for i in val_rows]
    steps, batch_size = spec["steps"], spec["batch_size"]
    lengths = [len(s) for s in train_seqs] if spec["group_by_length"] else None
    batches = batch_index_stream(len(train_seqs), batch_size, steps, seed, lengths)
    if spec["packing"]:
        # enough stream positions for the blocks even if every document were the shortest
        n_documents = steps * batch_size * spec["max_length"] // min(map(len, train_seqs)) + 1
        order = batch_index_stream(len(train_seqs), 1, n_documents, seed).reshape(-1)
        # (steps * batch, max_length) each; the same order keeps tokens and labels aligned
        block_ids = torch.from_numpy(packed_blocks(train_seqs, order, spec["max_length"], steps * batch_size))
        block_labels = torch.from_numpy(packed_blocks(train_labels, order, spec["max_length"], steps * batch_size))

    torch.manual_seed(seed)
    if init_from is not None:
        model = init_from_causal(init_from, config, tokenizer).to(device)
    else:
        model = AutoModelForCausalLM.from_config(config).to(device)
    # positions the model was trained on: the answer window of unmasking must lie inside them
    model.config.trained_positions = int(spec["max_length"])
    model.train()
    objective = training_objective(model, seed, spec)  # next-token CE, or the masked-diffusion loss for mdlm
    optimizer = torch.optim.AdamW(
        _parameter_groups(model, spec["weight_decay"]),
        lr=spec["learning_rate"],
        betas=(spec["adam_beta1"], spec["adam_beta2"]),
        eps=spec["adam_epsilon"],
    )
    scheduler = get_scheduler(
        spec["scheduler"], optimizer, num_warmup_steps=spec["warmup_steps"], num_training_steps=steps
    )

    autocast = spec["precision"] == "bfloat16"
    rows: list[dict[str, Any]] = []
    tokens_seen = 0
    rows.append(
        {"step": 0, "split": "validation", "loss": validation_loss(model, val_seqs, pad_id, batch_size, val_labels, objective),
         "lr": scheduler.get_last_lr()[0], "tokens_seen": 0}
    )
    start = time.perf_counter()
    bar = tqdm(range(1, steps + 1), desc=f"pretrain {architecture}", disable=not progress, mininterval=2.0)
    for step in bar:
        if spec["packing"]:  # (batch, max_length), no padding
            rows_of_step = slice((step - 1) * batch_size, step * batch_size)
            input_ids, labels = block_ids[rows_of_step], block_labels[rows_of_step]
        elif spec["mix_documents"] > 0 and whole_steps[step - 1]:
            input_ids, labels = collate([documents_of_rows[i] for i in batches[step - 1]], pad_id)
        else:
            rows_of_step = batches[step - 1]
            input_ids, labels = collate(
                [train_seqs[i] for i in rows_of_step], pad_id, [train_labels[i] for i in rows_of_step]
            )
        lr = scheduler.get_last_lr()[0]
        input_ids, labels = input_ids.to(device), labels.to(device)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=autocast):
            loss = objective.train_loss(model, input_ids, labels, step=step)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{architecture}: non-finite training loss {loss.item()} at step {step}")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec["grad_clip"])
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        tokens_seen += int((labels != -100).sum())
        rows.append({"step": step, "split": "train", "loss": loss.item(), "lr": lr, "tokens_seen": tokens_seen})
        if step % spec["eval_every"] == 0 or step == steps:
            val = validation_loss(model, val_seqs, pad_id, batch_size, val_labels, objective)
            rows.append({"step": step, "split": "validation", "loss": val, "lr": lr, "tokens_seen": tokens_seen})
            bar.set_postfix(train=f"{loss.item():.3f}", val=f"{val:.3f}")
    wall_seconds = time.perf_counter() - start
    curve = pd.DataFrame(rows, columns=[f.name for f in CURVE_SCHEMA])

    model.eval().to("cpu")  # saved from the CPU: the same files wherever it trained
    model.generation_config.pad_token_id = pad_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    provenance = {
        "architecture": architecture,
        "size": size,
        "train": spec,
        "seed": seed,
        "num_parameters": n_params,
        "num_documents": len(documents),
        "num_train_documents": len(train_seqs),
        "num_validation_documents": len(val_seqs),
        "truncated_documents": truncated,
        "init_from": None if init_from is None else os.fspath(init_from),
    }
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(
            tmp / "training_info.json",
            {
                **provenance,
                "model_class": type(model).__name__,
                "threads": torch.get_num_threads(),
                "wall_seconds": round(wall_seconds, 3),
                "seconds_per_step": round(wall_seconds / steps, 5),
                "final_train_loss": float(curve.loc[curve.split == "train", "loss"].iloc[-1]),
                "final_validation_loss": float(curve.loc[curve.split == "validation", "loss"].iloc[-1]),
            },
        )
    if curve_path is not None:
        write_parquet(curve, curve_path, metadata=provenance, schema=CURVE_SCHEMA)
    if curve_plot_path is not None:
        plot_loss_curve(curve, curve_plot_path, title=f"{architecture} ({n_params:,} parameters, seed {seed})")
    return curve


def plot_loss_curve(curve: pd.DataFrame, path: str | os.PathLike[str], title: str = "") -> None:
    """Train (thin) and validation (markers) loss against step, log-scale y, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from attnlab.io import atomic_path

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    train = curve[curve.split == "train"]
    val = curve[curve.split == "validation"]
    ax.plot(train.step, train.loss, lw=0.6, alpha=0.7, label="train (batch)")
    ax.plot(val.step, val.loss, "o-", ms=3, label="validation")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("next-token cross-entropy (nats)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)


def read_training_info(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``training_info.json`` written next to a pretrained model."""
    path = Path(model_dir) / "training_info.json"
    if not path.is_file():
        raise FileNotFoundError(f"no training_info.json in {model_dir}")
    return json.loads(path.read_text(encoding="utf-8"))

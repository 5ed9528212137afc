"""From-scratch model configurations with matched parameter budgets.

One ``size`` dict describes every scratch architecture, so the comparison differs
only in the sequence mixer (same tokenizer, corpus, steps, seed and parameter budget).
Keys of ``size`` and which architectures read them:

==========================  =====  =========  ====  =====  ======  =========================================
key                         llama  diffllama  gpt2  mamba  mamba2  meaning
                            mdlm
==========================  =====  =========  ====  =====  ======  =========================================
``hidden_size``             yes    yes        yes   yes    yes     residual-stream width d
``num_layers``              yes    yes        yes   yes    yes     number of blocks
``num_heads``               yes    yes (even) yes   --     --      attention heads H (head_dim = d / H)
``num_kv_heads``            opt.   opt.(even) --    --     --      GQA key/value heads (default: H)
``intermediate_size``       yes    yes        yes   --     --      MLP width (SwiGLU for Llama, GELU for GPT-2)
``max_position_embeddings`` yes    yes        yes   --     --      longest sequence (RoPE range / GPT-2 table)
``state_size``              --     --         --    yes    yes     SSM state size N
``expand``                  --     --         --    yes    yes     inner width = expand * d
``head_dim``                --     --         --    --     yes     Mamba-2 head width P (heads = expand*d/P)
``conv_kernel``             --     --         --    opt.   opt.    depthwise conv width (default 4)
``chunk_size``              --     --         --    --     opt.    scan chunk length (default 256; the same function,
                                                                 64 trains ~2x faster on CPU at 256-token blocks)
==========================  =====  =========  ====  =====  ======  =========================================

``mdlm`` (a masked diffusion LM, :mod:`attnlab.models.mdlm`) reads exactly Llama's keys and has exactly
Llama's parameter count: it is a Llama without the causal mask, plus the tokenizer's ``<mask>`` id.

"yes" keys are required by that architecture (a missing one is a ``ValueError``
naming it); "--" keys are ignored by it; a key that no architecture knows is a
``ValueError`` (typo guard). Every architecture ties input and output
embeddings (``tie_word_embeddings=True``) so that the vocabulary costs the same
number of parameters everywhere, and uses no dropout (GPT-2's default 0.1 is
switched off to match Llama). Special-token ids and ``vocab_size`` come from the
shared tokenizer.

DiffLlama (Ye et al. 2024, "Differential Transformer", arXiv:2410.05258, as
implemented in ``transformers.DiffLlamaForCausalLM``) has the same projection
shapes as Llama plus four λ vectors of length head_dim per layer, so with equal
size fields the two budgets differ by ``4 · head_dim · num_layers`` parameters.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from transformers import (
    AutoModelForCausalLM,
    DiffLlamaConfig,
    GPT2Config,
    LlamaConfig,
    Mamba2Config,
    MambaConfig,
    PretrainedConfig,
    PreTrainedTokenizerBase,
)

from attnlab.models.architectures import ARCHITECTURES
from attnlab.models.diffllama import head_norm_spec  # also registers the head-norm DiffLlama class
from attnlab.models.mdlm import MDLMConfig  # also registers attnlab_mdlm with the Auto classes

SCRATCH_ARCHITECTURES: tuple[str, ...] = tuple(ARCHITECTURES)

_REQUIRED_KEYS: dict[str, tuple[str, ...]] = {name: arch.size_keys for name, arch in ARCHITECTURES.items()}
_OPTIONAL_KEYS: frozenset[str] = frozenset({"num_kv_heads", "conv_kernel", "chunk_size"})
KNOWN_SIZE_KEYS: frozenset[str] = frozenset(k for keys in _REQUIRED_KEYS.values() for k in keys) | _OPTIONAL_KEYS


def _positive_int(size: Mapping[str, Any], key: str, architecture: str) -> int:
    if key not in size:
        raise ValueError(f"size spec for architecture {architecture!r} is missing required key {key!r}")
    value = size[key]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"size spec key {key!r} must be a positive integer, got {value!r}")
    return value


def _special_token_ids(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    ids = {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    missing = [name for name, value in ids.items() if value is None]
    if missing:
        raise ValueError(f"tokenizer lacks special tokens needed by scratch models: {missing}")
    if ids["pad_token_id"] == ids["eos_token_id"]:
        raise ValueError("scratch tokenizer must have a pad token distinct from eos")
    return ids


def build_scratch_config(
    architecture: str,
    size: Mapping[str, Any],
    tokenizer: PreTrainedTokenizerBase,
    head_norm: Mapping[str, Any] | None = None,
) -> PretrainedConfig:
    """The HF config of a from-scratch ``architecture`` with the shared ``size`` fields.

    Args:
        architecture: one of :data:`SCRATCH_ARCHITECTURES`.
        size: size fields (see the module docstring for keys per architecture).
        tokenizer: the shared tokenizer; gives ``vocab_size`` (``len(tokenizer)``)
            and the pad/bos/eos ids.
        head_norm: diffllama only: the per-head norm (:func:`attnlab.models.diffllama.head_norm_spec`; ``None`` =
            transformers' published form, which then leaves no ``head_norm`` key in the config).

    Raises:
        ValueError: unknown architecture, unknown or missing size key, or a size
            that the architecture cannot realise (e.g. odd heads for DiffLlama).
    """
    if architecture not in SCRATCH_ARCHITECTURES:
        raise ValueError(f"unknown scratch architecture {architecture!r}; choose one of {list(SCRATCH_ARCHITECTURES)}")
    unknown = sorted(set(size) - KNOWN_SIZE_KEYS)
    if unknown:
        raise ValueError(f"unknown size spec keys {unknown}; known keys are {sorted(KNOWN_SIZE_KEYS)}")
    req = {key: _positive_int(size, key, architecture) for key in _REQUIRED_KEYS[architecture]}
    common: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "tie_word_embeddings": True,
        **_special_token_ids(tokenizer),
    }
    d = req["hidden_size"]
    head_norm = head_norm_spec(head_norm)
    if head_norm is not None and architecture != "diffllama":
        raise ValueError(f"head_norm is a diffllama option, not one of architecture {architecture!r}")
    if head_norm is not None:
        common["head_norm"] = head_norm

    if architecture in ("llama", "diffllama", "mdlm"):
        heads = req["num_heads"]
        kv_heads = _positive_int(size, "num_kv_heads", architecture) if "num_kv_heads" in size else heads
        if d % heads:
            raise ValueError(f"hidden_size={d} is not divisible by num_heads={heads}")
        if heads % kv_heads:
            raise ValueError(f"num_heads={heads} is not divisible by num_kv_heads={kv_heads}")
        if architecture == "diffllama" and (heads % 2 or kv_heads % 2):
            raise ValueError(
                f"diffllama needs an even num_heads and num_kv_heads (head pairs), got {heads} and {kv_heads}"
            )
        cls = {"llama": LlamaConfig, "diffllama": DiffLlamaConfig, "mdlm": MDLMConfig}[architecture]
        if architecture == "mdlm":
            if tokenizer.mask_token_id is None:
                raise ValueError("architecture 'mdlm' needs a tokenizer with a mask token (<mask>)")
            common["mask_token_id"] = tokenizer.mask_token_id
        return cls(
            hidden_size=d,
            intermediate_size=req["intermediate_size"],
            num_hidden_layers=req["num_layers"],
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            max_position_embeddings=req["max_position_embeddings"],
            rms_norm_eps=1e-5,
            attention_dropout=0.0,
            **common,
        )
    if architecture == "gpt2":
        if d % req["num_heads"]:
            raise ValueError(f"hidden_size={d} is not divisible by num_heads={req['num_heads']}")
        return GPT2Config(
            n_embd=d,
            n_layer=req["num_layers"],
            n_head=req["num_heads"],
            n_inner=req["intermediate_size"],
            n_positions=req["max_position_embeddings"],
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **common,
        )
    conv_kernel = _positive_int(size, "conv_kernel", architecture) if "conv_kernel" in size else 4
    if architecture == "mamba":
        return MambaConfig(
            hidden_size=d,
            num_hidden_layers=req["num_layers"],
            state_size=req["state_size"],
            expand=req["expand"],
            conv_kernel=conv_kernel,
            **common,
        )
    # mamba2: heads of width head_dim tile the inner width expand * d.
    inner = req["expand"] * d
    if inner % req["head_dim"]:
        raise ValueError(f"mamba2 inner width expand*hidden_size={inner} is not divisible by head_dim={req['head_dim']}")
    return Mamba2Config(
        hidden_size=d,
        num_hidden_layers=req["num_layers"],
        state_size=req["state_size"],
        expand=req["expand"],
        head_dim=req["head_dim"],
        num_heads=inner // req["head_dim"],
        n_groups=1,
        conv_kernel=conv_kernel,
        chunk_size=_positive_int(size, "chunk_size", architecture) if "chunk_size" in size else 256,
        **common,
    )


def count_parameters(config: PretrainedConfig) -> int:
    """Number of distinct trainable parameters of the causal LM built from ``config``.

    The model is instantiated on the ``meta`` device (no memory, no init), and
    tied weights are counted once.
    """
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def check_parameter_budget(counts: Mapping[str, int], tolerance: float = 0.05) -> None:
    """Raise if the models' parameter counts differ by more than ``tolerance``.

    The spread is ``max(counts) / min(counts) - 1``.

    Raises:
        ValueError: naming the largest and smallest model and their counts.
    """
    if not counts:
        raise ValueError("check_parameter_budget got no models")
    largest = max(counts, key=lambda name: counts[name])
    smallest = min(counts, key=lambda name: counts[name])
    if counts[smallest] <= 0:
        raise ValueError(f"model {smallest!r} has {counts[smallest]} parameters")
    spread = counts[largest] / counts[smallest] - 1
    if counts[largest] > (1 + tolerance) * counts[smallest]:  # spread > tolerance, without rounding noise
        raise ValueError(
            f"parameter budgets differ by {spread:.1%} > {tolerance:.1%}: "
            f"{largest!r} has {counts[largest]:,} and {smallest!r} has {counts[smallest]:,} parameters "
            f"(all: {dict(counts)})"
        )

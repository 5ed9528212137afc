"""The one loader for every model: scratch folders, fine-tuned copies and hub checkpoints.

``load_model(location)`` accepts a local HF folder (``save_pretrained`` output:
the project's scratch models in ``results/models/{name}/``, fine-tuned copies,
or a local copy of a hub checkpoint) or a hub id. The model class is resolved
from the saved ``config.json`` (``model_type`` → ``AutoModelForCausalLM``),
never from the folder's name, so a folder called ``llama-model`` holding a
DiffLlama loads as ``DiffLlamaForCausalLM``.

Padding policy
--------------
Generation uses **left** padding (the prompt's last token sits at the right edge
for every row of a batch). Checkpoints without a pad token (e.g. Llama-2 style
hub tokenizers) get ``pad_token = eos_token`` **for generation only**: with left
padding and the attention mask the pad positions are never attended to and the
pad id never needs to be predicted, so reusing eos is harmless. For training
(``for_generation=False``) the tokenizer keeps its own padding side and pad token,
and a tokenizer without one is returned unchanged — a trainer must add a real pad
token (or mask by ``attention_mask``, not by token id) rather than reuse eos,
which would mask the eos targets out of the loss.

A tokenizer with entries beyond the model's embedding rows (an added pad token past
the matrix, as in the reyllama checkpoints) is handled by
:func:`fit_tokenizer_to_embeddings`: an out-of-range pad is re-pointed to eos, any
other out-of-range token that text or a special-token role can produce is an error.

Hub repositories that keep the model in a folder (a Trainer ``checkpoint-N/``) are
loaded with ``subfolder=``; a cached repository whose top level has no ``config.json``
gets an error naming the sub-folders that have one.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from attnlab.models.diffllama import DiffLlamaForCausalLM
from attnlab.models.mdlm import MDLMConfig

#: importing mdlm registers the masked diffusion LM (model_type attnlab_mdlm) with the Auto classes, and importing
#: diffllama the DiffLlama class that builds the per-head norm its config names
_REGISTERED_CONFIGS = (MDLMConfig,)
_REGISTERED_MODELS = (DiffLlamaForCausalLM,)

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


class ModelNotAvailableError(RuntimeError):
    """A hub model was requested that is neither cached locally nor downloadable now."""


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` → ``cuda`` if a GPU is visible (``CUDA_VISIBLE_DEVICES`` respected) else ``cpu``.

    Explicit names (``"cpu"``, ``"cuda"``, ``"cuda:1"``) are checked: asking for
    CUDA without a visible GPU is a ``ValueError``.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"unknown device {device!r}") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but no CUDA GPU is visible")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``"auto"`` → float32 on CPU, bfloat16 on CUDA when supported (else float32)."""
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose 'auto' or one of {sorted(_DTYPES)}")
    return _DTYPES[dtype]


def prepare_for_generation(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """A copy of ``tokenizer`` set up for batched generation: left padding, a pad token.

    If the tokenizer has no pad token, eos is used for padding (see the module
    docstring for why that is safe for generation only).
    """
    tok = copy.deepcopy(tokenizer)
    tok.padding_side = "left"
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ValueError(f"tokenizer {tok.name_or_path!r} has neither a pad nor an eos token; cannot pad")
        tok.pad_token = tok.eos_token
    return tok


def _is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in {"1", "true", "yes", "on"} or (
        os.environ.get("TRANSFORMERS_OFFLINE", "0").strip().lower() in {"1", "true", "yes", "on"}
    )


def _looks_like_path(location: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else is meant as a local path."""
    return (
        location.startswith((".", "/", "~"))
        or location.count("/") > 1
        or os.sep != "/" and os.sep in location
    )


def _auto_class(config, trust_remote_code: bool) -> type:
    """``AutoModelForCausalLM``, or ``AutoModel`` for a remote-code checkpoint whose ``auto_map`` registers only
    that (Dream-v0: a masked diffusion LM with its own ``diffusion_generate``)."""
    auto_map = getattr(config, "auto_map", None) or {}
    if trust_remote_code and "AutoModelForCausalLM" not in auto_map and "AutoModel" in auto_map:
        return AutoModel
    return AutoModelForCausalLM


def _load_local(
    folder: Path, torch_dtype: torch.dtype, trust_remote_code: bool
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    if not (folder / "config.json").is_file() and (folder / "adapter_config.json").is_file():
        return _load_adapter(folder, torch_dtype, trust_remote_code)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"model folder {folder} has no config.json (not a save_pretrained folder)")
    config = AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=trust_remote_code)
    model = _auto_class(config, trust_remote_code).from_pretrained(
        folder, config=config, local_files_only=True, trust_remote_code=trust_remote_code, dtype=torch_dtype
    )
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise FileNotFoundError(f"model folder {folder} has no loadable tokenizer: {err}") from err
    return model, tokenizer


def _hub_cache_hint() -> str:
    """Where the hub cache is, as the environment says (for error messages)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME"):
        if os.environ.get(var):
            return f"{var}={os.environ[var]}"
    return "the default ~/.cache/huggingface/hub"


def _prefetch_hint(repo_id: str, revision: str | None, subfolder: str | None = None) -> str:
    """The command that puts a hub model into the cache (see attnlab.tools.prefetch)."""
    return (
        f"`attnlab prefetch --model {repo_id} --revision {revision or 'main'}"
        + (f" --subfolder {subfolder}" if subfolder else "")
        + "` "
        "(or `attnlab prefetch --config YOUR_CONFIG.yaml` for every hub model of a study)"
    )


def _load_adapter(
    folder: Path, torch_dtype: torch.dtype, trust_remote_code: bool
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A LoRA adapter folder (attnlab SFT with ``merge: false``): its base model with the adapter merged in.

    The base comes from ``base_model_name_or_path`` in ``adapter_config.json`` (loaded by
    this module, so its class still comes from its own config); the tokenizer from the folder.
    """
    import json

    try:
        from peft import PeftModel
    except ImportError as err:
        raise ImportError(f"{folder} holds a LoRA adapter; loading it needs peft (pip install attnlab[lora])") from err
    base_location = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"]
    base_path = Path(base_location).expanduser()
    if base_path.is_dir():
        base, _ = _load_local(base_path, torch_dtype, trust_remote_code)
    else:
        base, _ = _load_hub(base_location, torch_dtype, trust_remote_code, None)
    model = PeftModel.from_pretrained(base, folder).merge_and_unload()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise FileNotFoundError(f"adapter folder {folder} has no loadable tokenizer: {err}") from err
    return model, tokenizer


def _subfolder_hint(repo_id: str, revision: str | None) -> str:
    """When the cached repository has no ``config.json`` at its top level but sub-folders that do (a Trainer
    checkpoint published inside the repository), the sentence that names them; else ``""``."""
    from attnlab.tools.hfcache import hub_cache_dir, resolve_revision

    cache = hub_cache_dir()
    commit = resolve_revision(cache, "model", repo_id, revision)
    if commit is None:
        return ""
    snapshot = cache / f"models--{repo_id.replace('/', '--')}" / "snapshots" / commit
    if not snapshot.is_dir() or (snapshot / "config.json").is_file():
        return ""
    found = sorted({p.parent.relative_to(snapshot).as_posix() for p in [*snapshot.glob("*/config.json"), *snapshot.glob("*/*/config.json")]})
    if not found:
        return ""
    return (
        f"the cached repository has no config.json at its top level; the model files are in sub-folder(s) "
        f"{', '.join(repr(f) for f in found)}: set subfolder: {found[0]} in the model's config entry"
    )


def _load_hub(
    repo_id: str, torch_dtype: torch.dtype, trust_remote_code: bool, revision: str | None, subfolder: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    kwargs: dict = {"trust_remote_code": trust_remote_code, "revision": revision}
    if subfolder:
        kwargs["subfolder"] = subfolder  # config, weights and tokenizer all live in {repo}/{subfolder}/
    where = f"{repo_id!r}" + (f" sub-folder {subfolder!r}" if subfolder else "")

    def _load(local_only: bool) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        config = AutoConfig.from_pretrained(repo_id, local_files_only=local_only, **kwargs)
        model = _auto_class(config, trust_remote_code).from_pretrained(
            repo_id, config=config, local_files_only=local_only, dtype=torch_dtype, **kwargs
        )
        tokenizer = AutoTokenizer.from_pretrained(repo_id, local_files_only=local_only, **kwargs)
        return model, tokenizer

    try:
        return _load(local_only=True)
    except OSError as cached_err:
        hint = "" if subfolder else _subfolder_hint(repo_id, revision)
        if hint:
            raise ModelNotAvailableError(f"hub model {where} (revision {revision or 'main'}): {hint}") from cached_err
        if _is_offline():
            raise ModelNotAvailableError(
                f"hub model {where} (revision {revision or 'main'}) is not in the Hugging Face cache "
                f"({_hub_cache_hint()}) and the hub is offline (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE is set); "
                f"download it first on a machine with network access: {_prefetch_hint(repo_id, revision, subfolder)}"
            ) from cached_err
    try:
        return _load(local_only=False)
    except OSError as err:
        raise ModelNotAvailableError(
            f"hub model {where} (revision {revision or 'default'}) could not be loaded: it is not cached and "
            f"downloading failed ({err.__class__.__name__}: {err}); download it first: "
            f"{_prefetch_hint(repo_id, revision, subfolder)}, "
            "or pass a local save_pretrained folder"
        ) from err


class VocabularyMismatchError(ValueError):
    """The tokenizer produces token ids the model has no embedding row for."""


def fit_tokenizer_to_embeddings(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Check that every id the tokenizer can feed the model has an input-embedding row.

    A tokenizer may list more entries than the model has embedding rows R: the Llama-3-style
    reyllama checkpoints ship 128,257 tokens for 128,256 rows, the extra one an added pad token
    ``id = R``. Feeding such an id indexes past the embedding matrix (an ``IndexError`` on the CPU,
    a device-side assert on CUDA), so the first padded batch would fail.

    Policy: ids ≥ R are tolerated only for added special tokens that ordinary text never produces.
    If the pad token is among them, padding is re-pointed to the eos token (or the model's
    ``eos_token_id``) — harmless for the same reason as in :func:`prepare_for_generation`: padded
    positions are masked by ``attention_mask`` and never predicted — and a warning names the change.
    Any other out-of-range token that a role names (bos, eos, unk, mask) or that is a regular
    vocabulary entry is a :class:`VocabularyMismatchError`. A model with *more* rows than the
    tokenizer has entries (Mamba and GPT-NeoX checkpoints pad the matrix to a multiple of 8) is fine.

    Returns the tokenizer (a copy when the pad token was changed).
    """
    import logging

    embeddings = model.get_input_embeddings()
    rows = getattr(embeddings, "num_embeddings", None)
    if rows is None or len(tokenizer) <= rows:
        return tokenizer
    vocabulary = tokenizer.get_vocab()
    beyond = sorted((i, t) for t, i in vocabulary.items() if i >= rows)
    added = set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    roles = {
        role: getattr(tokenizer, f"{role}_token_id", None) for role in ("bos", "eos", "unk", "mask")
    }
    pad_id = tokenizer.pad_token_id
    fatal = [(i, t) for i, t in beyond if i != pad_id and (i not in added or i in roles.values())]
    name = getattr(tokenizer, "name_or_path", "") or "the tokenizer"
    if fatal:
        shown = ", ".join(f"{t!r} (id {i})" for i, t in fatal[:5]) + (" ..." if len(fatal) > 5 else "")
        raise VocabularyMismatchError(
            f"{name} has {len(tokenizer)} tokens but the model's input embedding has {rows} rows; token(s) "
            f"{shown} have no embedding row and ordinary text or a special-token role can produce them — "
            "use the tokenizer the checkpoint was trained with, or resize the model's embeddings"
        )
    if pad_id is not None and pad_id >= rows:
        eos_id = tokenizer.eos_token_id
        if eos_id is None or eos_id >= rows:
            config_eos = getattr(model.config, "eos_token_id", None)
            eos_id = config_eos[0] if isinstance(config_eos, (list, tuple)) else config_eos
        if eos_id is None or eos_id >= rows:
            raise VocabularyMismatchError(
                f"{name}: pad token {tokenizer.pad_token!r} (id {pad_id}) has no embedding row among {rows}, and no "
                "in-range eos token can stand in for it"
            )
        tokenizer = copy.deepcopy(tokenizer)
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(int(eos_id))
        logging.getLogger(__name__).warning(
            "%s: pad token id %d is beyond the %d embedding rows; padding with %r (id %d) instead "
            "(padded positions are masked, never attended to or predicted)",
            name, pad_id, rows, tokenizer.pad_token, eos_id,
        )
    return tokenizer


def load_model(
    location: str | os.PathLike[str],
    *,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    revision: str | None = None,
    subfolder: str | None = None,
    for_generation: bool = True,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer from a local folder or a hub id, in eval mode.

    Args:
        location: a local ``save_pretrained`` folder, or a hub id (``org/name``),
            tried only if no such path exists.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` (see :func:`resolve_device`).
        dtype: ``"auto"`` (float32 on CPU, bfloat16 on CUDA if supported),
            ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        trust_remote_code: allow custom modelling code (only where a model's
            config entry opts in).
        revision: hub revision (branch, tag or commit); ignored for local folders.
        subfolder: the folder inside the hub repository (or inside the local folder) that holds
            ``config.json``, the weights and the tokenizer — e.g. a Trainer checkpoint
            ``checkpoint-64434`` published inside the repository.
        for_generation: return the tokenizer with left padding and a pad token
            (see :func:`prepare_for_generation`); ``False`` leaves padding untouched.

    Returns:
        ``(model, tokenizer)``; the model is on ``device`` and in ``eval()`` mode.

    Raises:
        FileNotFoundError: ``location`` looks like a path but does not exist, or a
            folder lacks ``config.json`` / a tokenizer.
        ModelNotAvailableError: a hub id that is not cached and cannot be
            downloaded (offline or no network).
    """
    target_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target_device)
    location_str = os.fspath(location)
    path = Path(location_str).expanduser()
    if path.exists():
        if not path.is_dir():
            raise FileNotFoundError(f"model location {path} is a file, not a save_pretrained folder")
        folder = path / subfolder if subfolder else path
        if not folder.is_dir():
            raise FileNotFoundError(f"model folder {path} has no sub-folder {subfolder!r}")
        model, tokenizer = _load_local(folder, torch_dtype, trust_remote_code)
    elif isinstance(location, os.PathLike) or _looks_like_path(location_str):
        hint = ""
        parts = location_str.split("/")
        if not location_str.startswith((".", "/", "~")) and len(parts) > 2:
            hint = (f"; for the sub-folder of a hub repository give id: {'/'.join(parts[:2])} and "
                    f"subfolder: {'/'.join(parts[2:])}")
        raise FileNotFoundError(f"model folder {location_str} does not exist{hint}")
    else:
        model, tokenizer = _load_hub(location_str, torch_dtype, trust_remote_code, revision, subfolder)

    tokenizer = fit_tokenizer_to_embeddings(model, tokenizer)
    model.to(target_device)
    model.eval()
    if for_generation:
        tokenizer = prepare_for_generation(tokenizer)
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer

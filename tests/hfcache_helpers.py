"""Test helpers: a tiny real model saved as a folder and placed in the Hugging Face cache layout.

The hub cache layout (what ``huggingface_hub.snapshot_download`` leaves behind)::

    {cache}/models--{org}--{name}/refs/{revision}          -> the commit hash (text)
    {cache}/models--{org}--{name}/snapshots/{commit}/...   -> the files of that commit
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

TINY_REPO = "attnlab-test/tiny-llama"


def save_tiny_model(folder: Path, architecture: str = "llama") -> Path:
    """A tiny random ``architecture`` model and the project tokenizer, ``save_pretrained`` into ``folder``."""
    from attnlab.evaluate.tiny import build_tiny_model, build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(architecture, tokenizer, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def fake_commit(repo_id: str, revision: str) -> str:
    return hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()


def place_in_cache(source: Path, hub_cache: Path, repo_id: str, revision: str = "main") -> Path:
    """Copy a ``save_pretrained`` folder into the hub cache as ``repo_id`` at ``revision``; returns the snapshot."""
    repo = hub_cache / f"models--{repo_id.replace('/', '--')}"
    commit = fake_commit(repo_id, revision)
    snapshot = repo / "snapshots" / commit
    shutil.copytree(source, snapshot, dirs_exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    return snapshot


_TINY: dict[str, Path] = {}


def tiny_model_folder(architecture: str = "llama") -> Path:
    """One tiny saved model per architecture per test session (training the tiny tokenizer takes seconds)."""
    if architecture not in _TINY:
        import tempfile

        _TINY[architecture] = save_tiny_model(Path(tempfile.mkdtemp(prefix="attnlab-tiny-")) / architecture, architecture)
    return _TINY[architecture]


# --------------------------------------------------------------------------------------------------------------
# Stand-ins for the study's published checkpoints (configs/paper.yaml): tiny random models whose files reproduce
# each hub repository's layout and tokenizer conventions, so that loading and every stage can be run offline.
#
#   reyllama/DiffLlama-375M, reyllama/Llama_375M   everything in the Trainer sub-folder checkpoint-64434/ (the
#       repository's top level holds only README.md / .gitattributes); model_type diffllama / llama; GQA
#       (num_key_value_heads < num_attention_heads); llama3 RoPE written in the checkpoint's own format
#       (rope_theta + rope_scaling{rope_type: llama3, factor, low/high_freq_factor, original_max_position_embeddings});
#       tied embeddings; a Llama-3-style tokenizer: <|begin_of_text|> prepended, <|end_of_text|> the config's and
#       generation config's eos, <|eot_id|> the tokenizer's eos, and an added pad token one past the embedding rows
#       (the published tokenizer has 128,257 entries for 128,256 rows);
#   state-spaces/mamba-130m-hf   Mamba-1 (model_type mamba); GPT-NeoX-style tokenizer (<|endoftext|> id 0 as
#       bos/eos/unk, <|padding|> id 1 in the vocabulary but no pad token set, no bos prepended); the embedding
#       matrix padded past the tokenizer's size to a multiple of 8 (50,280 rows for 50,277 tokens);
#   gpt2   GPT-2 (n_embd/n_layer/n_head keys); <|endoftext|> the last id, bos = eos = unk, no pad token.

REYLLAMA_SUBFOLDER = "checkpoint-64434"
STANDIN_REPOS = ("reyllama/DiffLlama-375M", "reyllama/Llama_375M", "state-spaces/mamba-130m-hf", "gpt2")
#: the llama3 RoPE of the reyllama configs as a transformers-4.x config.json writes it
LLAMA3_ROPE_SCALING = {
    "factor": 32.0,
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3",
}
LLAMA3_SPECIALS = 16  # <|begin_of_text|>, <|end_of_text|>, reserved ..., <|eot_id|> (the 10th), reserved ...
LLAMA3_PAD = "<|pad|>"


def _standin_corpus() -> list[str]:
    """What the stand-in tokenizers are trained on: GSM8K-style lines and the real-world relation sentences."""
    from attnlab.evaluate.tiny import tiny_corpus
    from attnlab.perturbation.relations import build_probes, load_relations

    sentences = list(build_probes(load_relations("real"), None, None, None)["sentence"])
    return tiny_corpus(200) + sentences


def _byte_level_bpe(vocab_size: int, specials: list[str]):
    """A byte-level BPE ``tokenizers.Tokenizer`` (specials first, ids 0..) trained on :func:`_standin_corpus`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_standin_corpus(), trainer=trainer)
    return tok


def llama3_style_tokenizer():
    """A Llama-3-style tokenizer and the embedding rows its model has (one fewer than the tokenizer's entries)."""
    from tokenizers import AddedToken, processors
    from transformers import PreTrainedTokenizerFast

    tok = _byte_level_bpe(1000, [])
    base = tok.get_vocab_size()
    names = ["<|begin_of_text|>", "<|end_of_text|>"] + [f"<|reserved_special_token_{i}|>" for i in range(7)]
    names += ["<|eot_id|>"] + [f"<|reserved_special_token_{i}|>" for i in range(7, LLAMA3_SPECIALS - 3)]
    tok.add_special_tokens([AddedToken(n, special=True, normalized=False) for n in names])
    assert tok.token_to_id("<|eot_id|>") == base + 9
    rows = tok.get_vocab_size()
    tok.add_special_tokens([AddedToken(LLAMA3_PAD, special=True, normalized=False)])  # id == rows
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
        special_tokens=[("<|begin_of_text|>", bos)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", pad_token=LLAMA3_PAD,
        model_max_length=131072,
    )
    return fast, rows


def neox_style_tokenizer():
    """A GPT-NeoX-style tokenizer (no pad token) and its model's embedding rows (padded to a multiple of 8, +3)."""
    from transformers import PreTrainedTokenizerFast

    tok = _byte_level_bpe(989, ["<|endoftext|>", "<|padding|>"])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>",
    )
    rows = len(fast) + 3
    return fast, rows


def gpt2_style_tokenizer():
    """A GPT-2-style tokenizer: <|endoftext|> is the last id, bos = eos = unk, no pad token."""
    from tokenizers import AddedToken
    from transformers import GPT2TokenizerFast

    tok = _byte_level_bpe(1000, [])
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    fast = GPT2TokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>",
    )
    return fast, len(fast)


def _write_json(path: Path, data: dict) -> None:
    import json

    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _rewrite_config(folder: Path, drop: tuple[str, ...] = (), **fields) -> None:
    """Edit a saved config.json into the published checkpoint's format."""
    import json

    path = folder / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    for key in drop:
        config.pop(key, None)
    config.update(fields)
    _write_json(path, config)


def build_reyllama_standin(
    folder: Path, model_type: str, *, size: dict | None = None, vocab_rows: int | None = None
) -> Path:
    """A reyllama checkpoint stand-in in ``folder``: README.md at the top, the model in ``checkpoint-64434/``.

    ``size`` overrides the tiny dimensions (hidden_size, num_hidden_layers, num_attention_heads,
    num_key_value_heads, intermediate_size) and ``vocab_rows`` the embedding rows (e.g. the published 128,256),
    to build a full-size random copy for time and memory measurements on a GPU machine.
    """
    import torch
    from transformers import AutoModelForCausalLM, DiffLlamaConfig, LlamaConfig

    tokenizer, rows = llama3_style_tokenizer()
    bos, eos = tokenizer.convert_tokens_to_ids(["<|begin_of_text|>", "<|end_of_text|>"])
    dims = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "intermediate_size": 128, **(size or {})}  # fmt: skip
    config_class = {"llama": LlamaConfig, "diffllama": DiffLlamaConfig}[model_type]
    config = config_class(
        vocab_size=max(rows, vocab_rows or 0), max_position_embeddings=131072, tie_word_embeddings=True, bos_token_id=bos,
        eos_token_id=eos, rope_theta=500000.0, rope_scaling=dict(LLAMA3_ROPE_SCALING), **dims,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.bos_token_id, model.generation_config.eos_token_id = bos, eos
    checkpoint = folder / REYLLAMA_SUBFOLDER
    model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    _rewrite_config(
        checkpoint, drop=("rope_parameters", "dtype"), rope_theta=500000.0, rope_scaling=dict(LLAMA3_ROPE_SCALING),
        torch_dtype="float32", transformers_version="4.44.2",
    )
    _write_json(checkpoint / "trainer_state.json", {"global_step": 64434, "log_history": []})
    (checkpoint / "optimizer.pt").write_bytes(b"\0" * 64)  # the Trainer's state: never loaded, never fetched
    (folder / "README.md").write_text(f"stand-in for the {model_type} checkpoint in {REYLLAMA_SUBFOLDER}/\n")
    return folder


def build_mamba_standin(folder: Path) -> Path:
    """A state-spaces/mamba-130m-hf stand-in: Mamba-1, GPT-NeoX-style tokenizer without pad, rows padded."""
    import torch
    from transformers import MambaConfig, MambaForCausalLM

    tokenizer, rows = neox_style_tokenizer()
    config = MambaConfig(
        vocab_size=rows, hidden_size=32, state_size=16, num_hidden_layers=2, expand=2, conv_kernel=4,
        bos_token_id=0, eos_token_id=0, pad_token_id=0, tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    MambaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_gpt2_standin(folder: Path) -> Path:
    """A gpt2 stand-in: GPT-2 config keys, <|endoftext|> last, no pad token."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer, rows = gpt2_style_tokenizer()
    eos = tokenizer.eos_token_id
    config = GPT2Config(vocab_size=rows, n_embd=32, n_layer=2, n_head=4, n_positions=1024, bos_token_id=eos,
                        eos_token_id=eos)  # fmt: skip
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def place_standins(
    hub_cache: Path,
    revision: str = "main",
    repos: tuple[str, ...] = STANDIN_REPOS,
    *,
    reyllama_size: dict | None = None,
    reyllama_rows: int | None = None,
) -> dict[str, Path]:
    """Build the stand-ins of ``repos`` and place them in the hub cache at ``revision``; repo id -> snapshot.

    ``reyllama_size`` / ``reyllama_rows``: dimensions of the reyllama pair (see :func:`build_reyllama_standin`).
    """
    import tempfile

    sized = {"size": reyllama_size, "vocab_rows": reyllama_rows}
    builders = {
        "reyllama/DiffLlama-375M": lambda f: build_reyllama_standin(f, "diffllama", **sized),
        "reyllama/Llama_375M": lambda f: build_reyllama_standin(f, "llama", **sized),
        "state-spaces/mamba-130m-hf": build_mamba_standin,
        "gpt2": build_gpt2_standin,
    }
    snapshots = {}
    with tempfile.TemporaryDirectory(prefix="attnlab-standin-") as tmp:
        for repo_id in repos:
            folder = builders[repo_id](Path(tmp) / repo_id.replace("/", "--"))
            snapshots[repo_id] = place_in_cache(folder, hub_cache, repo_id, revision)
    return snapshots


def place_dataset_in_cache(datasets_cache: Path, hub_id: str, hub_config: str, files: dict[str, Path]) -> Path:
    """Prepare local JSON-lines splits as the ``datasets`` cache holds a prepared hub dataset, so that
    ``datasets.load_dataset(hub_id, hub_config)`` finds it offline: ``{cache}/{org}___{name}/{config}/0.0.0/{hash}/``."""
    from datasets.packaged_modules.json.json import Json

    name = hub_id.split("/")[-1]
    builder = Json(cache_dir=str(datasets_cache), dataset_name=name, config_name=hub_config,
                   data_files={split: str(path) for split, path in files.items()}, hash="0" * 16)  # fmt: skip
    builder.download_and_prepare()
    built = Path(builder.cache_dir).parents[1]  # {cache}/{name}/{config}-{hash}
    target = datasets_cache / hub_id.replace("/", "___") / hub_config
    target.parent.mkdir(parents=True, exist_ok=True)
    built.rename(target)
    return target

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

"""Checks against a hub model's own files before a job runs: its cached ``config.json`` and ``tokenizer.json``
(what a job would otherwise find out hours in)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from attnlab.study.models import model_entry


def hub_model_files(config: Mapping[str, Any], name: str) -> Path | None:
    """The folder holding a hub entry's ``config.json`` and tokenizer when it is on this machine: a local folder,
    or the Hugging Face cache snapshot (its ``subfolder``); ``None`` for scratch models and uncached ids."""
    from attnlab.tools.hfcache import cached_model_snapshot, hub_cache_dir, is_local_path

    spec = model_entry(config, name)
    if spec["source"] != "hub":
        return None
    subfolder = spec.get("subfolder")
    if is_local_path(spec["id"]):
        folder = Path(spec["id"]).expanduser()
    else:
        root = (config.get("prefetch") or {}).get("hf_cache_dir")
        snapshot = cached_model_snapshot(spec["id"], spec.get("revision", "main"), hub_cache_dir(root), subfolder)
        if snapshot is None:
            return None
        folder = snapshot
    folder = folder / subfolder if subfolder else folder
    return folder if (folder / "config.json").is_file() else None


def hub_config_field(config: Mapping[str, Any], name: str, keys: tuple[str, ...]) -> int | None:
    """The first integer of ``keys`` in a hub entry's cached ``config.json`` (``None``: not cached / not there)."""
    import json

    folder = hub_model_files(config, name)
    if folder is None:
        return None
    try:
        fields = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for key in keys:
        if isinstance(fields.get(key), int):
            return int(fields[key])
    return None


def model_hidden_size(config: Mapping[str, Any], name: str) -> int | None:
    """The residual width of a model: ``hidden_size`` of a scratch entry, or of a hub entry's cached ``config.json``
    (``hidden_size`` / GPT-2's ``n_embd`` / ``d_model``); ``None`` when it cannot be known before the job."""
    spec = model_entry(config, name)
    if spec["source"] == "scratch":
        return int(spec["hidden_size"])
    return hub_config_field(config, name, ("hidden_size", "n_embd", "d_model"))


def token_count(folder: Path | None, texts: list[str]) -> tuple[int, bool]:
    """Tokens of ``texts`` with special tokens, as the job counts them: exact with the model's ``tokenizer.json``
    (``tokenizers``, the file the job's fast tokenizer reads), else an upper bound — UTF-8 bytes + 2 per text —
    that holds for byte-level BPE (every token covers ≥ 1 byte; at most a bos and an eos are added).
    Returns ``(count, exact)``."""
    if folder is not None and (folder / "tokenizer.json").is_file():
        try:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
            return sum(len(tokenizer.encode(t).ids) for t in texts), True
        except Exception:  # an unreadable file: fall back to the bound, the job reports the real problem
            pass
    return sum(len(t.encode("utf-8")) + 2 for t in texts), False


"""The Hugging Face cache: where it is, and whether a hub model or dataset is in it.

The hub cache layout (``huggingface_hub``; https://huggingface.co/docs/huggingface_hub/guides/manage-cache)::

    {HF_HUB_CACHE}/models--{org}--{name}/
        refs/{revision}            # a text file holding the commit hash a branch/tag resolved to
        snapshots/{commit}/...     # the files of that commit (symlinks into blobs/, or plain files)
        blobs/...

A model is *available offline* when its revision resolves to a snapshot folder that
holds a ``config.json``, at least one weights file and a tokenizer file — exactly what
:func:`attnlab.models.loader.load_model` reads with ``local_files_only=True``. A model
entry with ``subfolder`` (a Trainer checkpoint published inside the repository, e.g.
``checkpoint-64434/``) needs those files in ``snapshots/{commit}/{subfolder}/``.

A hub dataset loaded by :func:`datasets.load_dataset` is cached twice: the raw files in
the hub cache (``datasets--{org}--{name}``) and the prepared Arrow tables in
``{HF_DATASETS_CACHE}/{org}___{name}/{config}/``. Offline reloading needs the latter.

``prefetch.hf_cache_dir`` in the config is a cache *root* like ``HF_HOME``: models go to
``{root}/hub`` and datasets to ``{root}/datasets`` (:func:`cache_env`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

__all__ = [
    "OFFLINE_ENV",
    "HubDataset",
    "HubModel",
    "cache_env",
    "cached_dataset",
    "cached_model_config",
    "cached_model_snapshot",
    "datasets_cache_dir",
    "hub_cache_dir",
    "hub_datasets",
    "hub_models",
    "is_local_path",
    "job_environment",
]

#: what every non-prefetch workflow job runs with (set by common.smk when ``prefetch.offline``)
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "spiece.model")


@dataclass(frozen=True)
class HubModel:
    """A config model entry that names a hub id (``source: hub`` and not a local folder)."""

    name: str
    repo_id: str
    revision: str
    subfolder: str | None = None


@dataclass(frozen=True)
class HubDataset:
    """A config dataset entry that loads from the hub (has ``hub_id``)."""

    name: str
    hub_id: str
    hub_config: str | None
    revision: str | None


def is_local_path(location: str) -> bool:
    """Whether a model ``id`` means a local folder (same rule as the loader: it exists, or looks like a path)."""
    return (
        Path(location).expanduser().exists()
        or location.startswith((".", "/", "~"))
        or location.count("/") > 1
    )


def hub_models(config: Mapping[str, Any], names: list[str] | None = None) -> list[HubModel]:
    """The hub models of a (validated) config, in config order; ``names`` restricts to those models."""
    out = []
    for name, spec in config["models"].items():
        if names is not None and name not in names:
            continue
        if spec.get("source") == "hub" and not is_local_path(spec["id"]):
            out.append(HubModel(name, spec["id"], spec.get("revision", "main"), spec.get("subfolder")))
    return out


def hub_datasets(config: Mapping[str, Any], names: list[str] | None = None) -> list[HubDataset]:
    """The datasets of a (validated) config that load from the hub (any loader with a ``hub_id`` key)."""
    out = []
    for name, spec in config["datasets"].items():
        if (names is None or name in names) and "hub_id" in spec:
            out.append(HubDataset(name, spec["hub_id"], spec.get("hub_config"), spec.get("revision")))
    return out


def _env_path(var: str) -> Path | None:
    value = os.environ.get(var)
    return Path(value).expanduser() if value else None


def hub_cache_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """The hub cache folder: ``{root}/hub`` if a cache root is given, else ``HF_HUB_CACHE`` / ``HF_HOME/hub`` / default."""
    if root is not None:
        return Path(root).expanduser().resolve() / "hub"
    env = _env_path("HF_HUB_CACHE") or _env_path("HUGGINGFACE_HUB_CACHE")
    if env is not None:
        return env
    home = _env_path("HF_HOME") or (_env_path("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
    return home / "hub"


def datasets_cache_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """The ``datasets`` cache folder: ``{root}/datasets``, else ``HF_DATASETS_CACHE`` / ``HF_HOME/datasets`` / default."""
    if root is not None:
        return Path(root).expanduser().resolve() / "datasets"
    env = _env_path("HF_DATASETS_CACHE")
    if env is not None:
        return env
    home = _env_path("HF_HOME") or (_env_path("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
    return home / "datasets"


def cache_env(root: str | os.PathLike[str] | None, offline: bool) -> dict[str, str]:
    """Environment variables for jobs: the cache folders of ``root`` (if given) and the offline switches."""
    env: dict[str, str] = {}
    if root is not None:
        env["HF_HUB_CACHE"] = str(hub_cache_dir(root))
        env["HF_DATASETS_CACHE"] = str(datasets_cache_dir(root))
    if offline:
        env.update(OFFLINE_ENV)
    return env


def job_environment(config: Mapping[str, Any], cache_root: str | os.PathLike[str] | None) -> dict[str, str]:
    """What every workflow job runs with: cache folders, offline switches (``prefetch`` section) and the plugins.

    Set by ``workflow/rules/common.smk`` in the Snakemake process; local jobs inherit it and cluster jobs
    re-read the Snakefile, so every job on every node gets the same.
    """
    env = cache_env(cache_root, bool((config.get("prefetch") or {}).get("offline", True)))
    if config.get("plugins"):
        from attnlab.tools.plugins import PLUGINS_ENV

        env[PLUGINS_ENV] = ",".join(config["plugins"])
    return env


def _repo_folder(cache: Path, repo_type: str, repo_id: str) -> Path:
    return cache / f"{repo_type}s--{repo_id.replace('/', '--')}"


def resolve_revision(cache: Path, repo_type: str, repo_id: str, revision: str | None) -> str | None:
    """The commit a revision points to in the cache (``refs/{revision}``), the revision itself if it is a commit."""
    revision = revision or "main"
    folder = _repo_folder(cache, repo_type, repo_id)
    ref = folder / "refs" / revision
    if ref.is_file():
        return ref.read_text(encoding="utf-8").strip()
    if _COMMIT.match(revision) and (folder / "snapshots" / revision).is_dir():
        return revision
    return None


def cached_model_snapshot(
    repo_id: str,
    revision: str | None = "main",
    cache: str | os.PathLike[str] | None = None,
    subfolder: str | None = None,
) -> Path | None:
    """The snapshot folder of ``repo_id`` at ``revision`` if it holds a loadable model (config, weights, tokenizer).

    Args:
        repo_id: ``org/name``.
        revision: branch, tag or commit (default ``main``).
        cache: the hub cache folder (default :func:`hub_cache_dir`).
        subfolder: the folder inside the repository that holds the model files (default: the top level).

    Returns:
        The snapshot folder (the commit's top level, also with ``subfolder``), or ``None`` when the revision
        is not cached or files are missing.
    """
    cache_path = Path(cache) if cache is not None else hub_cache_dir()
    commit = resolve_revision(cache_path, "model", repo_id, revision)
    if commit is None:
        return None
    snapshot = _repo_folder(cache_path, "model", repo_id) / "snapshots" / commit
    folder = snapshot / subfolder if subfolder else snapshot
    if not (folder / "config.json").is_file():
        return None
    has_weights = any(any(folder.glob(p)) for p in WEIGHT_PATTERNS)
    has_tokenizer = any((folder / f).is_file() for f in TOKENIZER_FILES)
    return snapshot if has_weights and has_tokenizer else None


def cached_model_config(
    repo_id: str,
    revision: str | None = "main",
    cache: str | os.PathLike[str] | None = None,
    subfolder: str | None = None,
) -> dict[str, Any] | None:
    """The ``config.json`` of a cached hub model as a dict (``None`` when it is not in the cache)."""
    import json

    snapshot = cached_model_snapshot(repo_id, revision, cache, subfolder)
    if snapshot is None:
        return None
    folder = snapshot / subfolder if subfolder else snapshot
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def cached_dataset(
    hub_id: str, hub_config: str | None = None, cache: str | os.PathLike[str] | None = None
) -> Path | None:
    """The prepared ``datasets`` cache folder of ``hub_id`` / ``hub_config`` if it holds a ``dataset_info.json``."""
    cache_path = Path(cache) if cache is not None else datasets_cache_dir()
    folder = cache_path / hub_id.replace("/", "___") / (hub_config or "default")
    if not folder.is_dir():
        return None
    return folder if any(folder.rglob("dataset_info.json")) else None

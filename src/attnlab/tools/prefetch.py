"""``attnlab prefetch``: put every hub model and hub dataset of a study into the Hugging Face cache.

Compute nodes of a cluster usually have no internet. The workflow therefore
downloads on the login node (the Snakemake ``localrule prefetch``, or this
command by hand) and runs every other job with ``HF_HUB_OFFLINE=1``::

    attnlab prefetch --config configs/paper.yaml           # every hub model and dataset of a study
    attnlab prefetch --model reyllama/DiffLlama-375M --revision main --subfolder checkpoint-64434
    attnlab prefetch --dataset openai/gsm8k --dataset-config main

Models are fetched with :func:`huggingface_hub.snapshot_download` at the
configured ``revision`` (weights of other frameworks — TF, Flax, ONNX — and the
training state of Trainer checkpoints — optimizer, scheduler, RNG — are skipped); a
model entry with ``subfolder`` downloads only that folder of the repository
(``allow_patterns=["{subfolder}/*"]``); datasets with :func:`datasets.load_dataset` (all splits, prepared, so
``load_dataset`` works offline afterwards). Each fetch is verified against the
cache (:mod:`attnlab.tools.hfcache`) and can write a JSON *marker* recording
what was resolved (the commit a branch pointed to, the snapshot folder, the
files) — the workflow's hub-using jobs depend on these markers.

The download functions are parameters (``download=``, ``load=``) so tests run
the whole logic against a local cache without network.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from attnlab.tools.hfcache import (
    HubDataset,
    HubModel,
    cache_env,
    cached_dataset,
    cached_model_snapshot,
    datasets_cache_dir,
    hub_cache_dir,
    hub_datasets,
    hub_models,
)

__all__ = ["PrefetchError", "prefetch_config", "prefetch_dataset", "prefetch_model", "register"]

#: files of other frameworks that the PyTorch loader never reads
IGNORE_PATTERNS = ["*.msgpack", "*.h5", "*.ot", "flax_model*", "tf_model*", "*.onnx", "onnx/*", "*.tflite",
                   # Trainer checkpoint state (checkpoint-N/): ~2x the weights for Adam, never loaded
                   "*optimizer.pt", "*scheduler.pt", "*rng_state*.pth", "*training_args.bin"]

DownloadFunction = Callable[..., str]
LoadFunction = Callable[..., Any]


class PrefetchError(RuntimeError):
    """A download failed or left an incomplete cache entry; the message names the model or dataset."""


def _offline_now() -> bool:
    return any(
        os.environ.get(var, "0").strip().lower() in {"1", "true", "yes", "on"}
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def prefetch_model(
    model: HubModel, *, cache_root: str | os.PathLike[str] | None = None, download: DownloadFunction | None = None
) -> dict[str, Any]:
    """Download ``model`` at its revision into the hub cache and return its marker record.

    Args:
        model: the hub id, revision and config name.
        cache_root: a cache root (models go to ``{root}/hub``); default the environment's hub cache.
        download: ``snapshot_download``-compatible function (keyword arguments ``repo_id``, ``revision``,
            ``cache_dir``, ``ignore_patterns`` and, for a model in a sub-folder, ``allow_patterns``; returns the
            snapshot folder). Default :func:`huggingface_hub.snapshot_download`.

    Returns:
        ``{"kind": "model", "name", "repo_id", "revision", "subfolder", "commit", "snapshot", "files"}``.

    Raises:
        PrefetchError: the download failed, or the cache entry lacks config / weights / tokenizer.
    """
    if download is None:
        from huggingface_hub import snapshot_download as download
    cache = hub_cache_dir(cache_root)
    where = f"{model.repo_id!r}" + (f" (sub-folder {model.subfolder!r})" if model.subfolder else "")
    options: dict[str, Any] = {"ignore_patterns": IGNORE_PATTERNS}
    if model.subfolder:
        options["allow_patterns"] = [f"{model.subfolder}/*"]
    try:
        download(repo_id=model.repo_id, revision=model.revision, cache_dir=str(cache), **options)
    except Exception as err:
        raise PrefetchError(
            f"model {model.name!r}: downloading hub id {where} at revision {model.revision!r} failed "
            f"({type(err).__name__}: {err})"
        ) from err
    snapshot = cached_model_snapshot(model.repo_id, model.revision, cache, model.subfolder)
    if snapshot is None:
        inside = f" in {model.subfolder}/" if model.subfolder else ""
        raise PrefetchError(
            f"model {model.name!r}: after downloading {where}@{model.revision} the cache {cache} holds no "
            f"complete snapshot (config.json, weights and tokenizer files are needed{inside})"
        )
    return {
        "kind": "model",
        "name": model.name,
        "repo_id": model.repo_id,
        "revision": model.revision,
        "subfolder": model.subfolder,
        "commit": snapshot.name,
        "snapshot": str(snapshot),
        "files": sorted(str(p.relative_to(snapshot)) for p in snapshot.rglob("*") if p.is_file()),
    }


def prefetch_dataset(
    dataset: HubDataset, *, cache_root: str | os.PathLike[str] | None = None, load: LoadFunction | None = None
) -> dict[str, Any]:
    """Download and prepare every split of a hub dataset into the ``datasets`` cache; return its marker record.

    Args:
        dataset: hub id, config and revision.
        cache_root: a cache root (prepared tables go to ``{root}/datasets``).
        load: ``datasets.load_dataset``-compatible function (``load(hub_id, hub_config, revision=, cache_dir=)``
            returning a mapping split → dataset). Default :func:`datasets.load_dataset`.

    Returns:
        ``{"kind": "dataset", "name", "hub_id", "hub_config", "revision", "splits": {split: rows}, "cache"}``.
    """
    if load is None:
        from datasets import load_dataset as load
    cache = datasets_cache_dir(cache_root)
    try:
        splits = load(dataset.hub_id, dataset.hub_config, revision=dataset.revision, cache_dir=str(cache))
    except Exception as err:
        raise PrefetchError(
            f"dataset {dataset.name!r}: loading hub dataset {dataset.hub_id!r} (config {dataset.hub_config!r}, "
            f"revision {dataset.revision!r}) failed ({type(err).__name__}: {err})"
        ) from err
    folder = cached_dataset(dataset.hub_id, dataset.hub_config, cache)
    if folder is None:
        raise PrefetchError(
            f"dataset {dataset.name!r}: after loading {dataset.hub_id!r} the datasets cache {cache} holds no prepared "
            f"copy under {dataset.hub_id.replace('/', '___')}/{dataset.hub_config or 'default'}"
        )
    return {
        "kind": "dataset",
        "name": dataset.name,
        "hub_id": dataset.hub_id,
        "hub_config": dataset.hub_config,
        "revision": dataset.revision,
        "splits": {str(split): len(rows) for split, rows in dict(splits).items()},
        "cache": str(folder),
    }


def prefetch_config(
    config: Mapping[str, Any],
    *,
    cache_root: str | os.PathLike[str] | None = None,
    marker_dir: str | os.PathLike[str] | None = None,
    download: DownloadFunction | None = None,
    load: LoadFunction | None = None,
) -> list[dict[str, Any]]:
    """Prefetch every hub model and hub dataset of a validated config (all entries, not only the selected ones).

    With ``marker_dir``, writes ``{marker_dir}/models/{name}.json`` and ``{marker_dir}/datasets/{name}.json``
    (the files the workflow's prefetch rule produces). Returns the marker records in config order.
    """
    from attnlab.io import write_json

    records = []
    for model in hub_models(config):
        record = prefetch_model(model, cache_root=cache_root, download=download)
        if marker_dir is not None:
            write_json(Path(marker_dir) / "models" / f"{model.name}.json", record)
        records.append(record)
    for dataset in hub_datasets(config):
        record = prefetch_dataset(dataset, cache_root=cache_root, load=load)
        if marker_dir is not None:
            write_json(Path(marker_dir) / "datasets" / f"{dataset.name}.json", record)
        records.append(record)
    return records


def prefetch_command(model_name: str, config_hint: str = "YOUR_CONFIG.yaml") -> str:
    """The command that fixes a missing cache entry (used in error messages)."""
    return f"attnlab prefetch --config {config_hint}  (or: snakemake prefetch --configfile {config_hint})"


# ----------------------------------------------------------------------------- CLI


def _run(args: argparse.Namespace) -> int:
    from attnlab.io import write_json

    if _offline_now():
        print(
            "attnlab prefetch: error: the hub is switched off in this shell (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE / "
            "HF_DATASETS_OFFLINE is set); prefetch downloads, so run it where the network is reachable with those unset",
            file=sys.stderr,
        )
        return 2
    cache_root = args.cache_dir
    config = None
    if args.config is not None:
        from attnlab.config import validate_config
        from attnlab.study.schema import ConfigError, load_yaml

        try:
            config = validate_config(load_yaml(args.config), base_dir=args.base_dir)
        except (ConfigError, OSError) as err:
            print(f"attnlab prefetch: error: {args.config}: {err}", file=sys.stderr)
            return 2
        if cache_root is None:
            cache_root = (config.get("prefetch") or {}).get("hf_cache_dir")
    # Set the cache folders before huggingface_hub / datasets are imported (they read them once).
    os.environ.update(cache_env(cache_root, offline=False))
    try:
        records: list[dict[str, Any]] = []
        if config is not None:
            records += prefetch_config(config, cache_root=cache_root, marker_dir=args.markers)
        if args.model is not None:
            model = HubModel(args.name or args.model, args.model, args.revision, args.subfolder)
            record = prefetch_model(model, cache_root=cache_root)
            records.append(record)
        if args.dataset is not None:
            dataset = HubDataset(args.name or args.dataset, args.dataset, args.dataset_config, args.revision)
            records.append(prefetch_dataset(dataset, cache_root=cache_root))
    except PrefetchError as err:
        print(f"attnlab prefetch: error: {err}", file=sys.stderr)
        return 1
    if args.marker is not None:
        if len(records) != 1:
            print(f"attnlab prefetch: error: --marker needs exactly one model or dataset, got {len(records)}", file=sys.stderr)
            return 2
        write_json(args.marker, records[0])
    for record in records:
        if record["kind"] == "model":
            inside = f" sub-folder {record['subfolder']}" if record.get("subfolder") else ""
            print(f"model {record['name']}: {record['repo_id']}@{record['revision']}{inside} -> commit {record['commit']} "
                  f"({len(record['files'])} files in {record['snapshot']})")
        else:
            rows = ", ".join(f"{k} {v}" for k, v in record["splits"].items())
            print(f"dataset {record['name']}: {record['hub_id']} ({record['hub_config']}) -> {rows} in {record['cache']}")
    if not records:
        print("nothing to prefetch: the config has no hub models or hub datasets")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``attnlab prefetch``."""
    parser = subparsers.add_parser(
        "prefetch",
        help="download hub models and datasets into the Hugging Face cache (run on a machine with network)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", default=None, help="a study config: fetch all its hub models and hub datasets")
    parser.add_argument("--base-dir", default=".", help="folder relative dataset paths of the config are resolved against")
    parser.add_argument("--markers", default=None, help="with --config: write {DIR}/models/NAME.json, {DIR}/datasets/NAME.json")
    parser.add_argument("--model", default=None, help="one hub model id (org/name)")
    parser.add_argument("--dataset", default=None, help="one hub dataset id (org/name)")
    parser.add_argument("--dataset-config", default=None, help="the dataset's config name (e.g. main)")
    parser.add_argument("--revision", default=None, help="branch, tag or commit of --model / --dataset (default main)")
    parser.add_argument("--subfolder", default=None, help="with --model: download only this folder of the repository")
    parser.add_argument("--name", default=None, help="label for --model / --dataset in messages and the marker")
    parser.add_argument("--marker", default=None, help="write the one record of --model / --dataset to this JSON file")
    parser.add_argument("--cache-dir", default=None, help="cache root (models in DIR/hub, datasets in DIR/datasets); "
                        "default the config's prefetch.hf_cache_dir, else the usual HF cache")
    parser.set_defaults(func=_handle)


def _handle(args: argparse.Namespace) -> int:
    if args.config is None and args.model is None and args.dataset is None:
        print("attnlab prefetch: error: give --config FILE, --model ID or --dataset ID", file=sys.stderr)
        return 2
    if args.model is not None and args.revision is None:
        args.revision = "main"
    return _run(args)


def main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - convenience
    parser = argparse.ArgumentParser(prog="attnlab")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)

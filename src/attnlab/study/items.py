"""How many items each stage has, computed from the config: the test items of a variant file, the share the
attribution stage takes and the validation stage keeps, and the size of a train split.

The data stage writes ``min(max_samples or the preset's count, the dataset's test size)`` items to each variant
file (``results/data/{base}/{variant}.parquet``). The stages read the first items of these files:

* attention: the first ``attention.items``;
* attribution: the first ``attribution.items`` of each of ``attribution.variants`` (the same item ids in
  every variant);
* validation: the first ``pass_items`` / ``loss_items`` of the items attribution did **not** use (the head
  ranking is never validated on the items it was fitted to).

A count above what a file holds is met by the items there are: that rule is logged when the workflow is parsed
and printed by ``attnlab config check`` (:func:`item_notes`), so ``preset: quick`` scales every stage down. A
split that leaves a stage nothing — no item left to validate on, no item measured — is refused
(:func:`item_errors`), naming the key to change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from attnlab.study.selections import n_test_items, selected_datasets


def split_size(config: Mapping[str, Any], dataset: str, split: str) -> tuple[int | None, str]:
    """``(items in the dataset's split, the key that sets it)`` when the config tells: a synthetic dataset's
    ``{split}_size``, a GSM8K file's lines (``{split}_path``); ``(None, "")`` for a hub dataset or a plugin."""
    spec = config["datasets"][dataset]
    if spec["loader"] == "synthetic":
        return int(spec[f"{split}_size"]), f"datasets.{dataset}.{split}_size"
    path = spec.get(f"{split}_path") if spec["loader"] == "gsm8k" else None
    if path and Path(path).is_file():
        with open(path, encoding="utf-8", errors="replace") as fh:
            return sum(1 for line in fh if line.strip()), f"datasets.{dataset}.{split}_path"
    return None, ""


def items_per_variant(config: Mapping[str, Any], dataset: str) -> tuple[int | None, str]:
    """``(test items of each variant file of the dataset, what sets that number)``; None when not known here."""
    wanted = n_test_items(config)
    size, key = split_size(config, dataset, "test")
    if wanted is None or (size is not None and size < wanted):
        return size, key
    if config.get("max_samples") is not None:
        return wanted, "max_samples"
    return wanted, f"preset {config.get('preset', 'standard')}"


def validation_split(config: Mapping[str, Any], dataset: str) -> dict[str, int] | None:
    """The items of one dataset as attribution and validation use them: ``test`` in each variant file,
    ``attributed`` (the first ones), ``held_out`` (the rest), and the ``pass_items`` / ``loss_items`` the
    validation jobs measure (the configured counts, at most ``held_out``); None when the test size is unknown."""
    total, _ = items_per_variant(config, dataset)
    if total is None:
        return None
    attributed = min(int(config["attribution"]["items"]), total)
    held_out = total - attributed
    section = config["validation"]
    return {
        "test": total,
        "attributed": attributed,
        "held_out": held_out,
        "pass_items": min(int(section["pass_items"]), held_out),
        "loss_items": min(int(section["loss_items"]), held_out),
    }


def _validation_runs(config: Mapping[str, Any]) -> bool:
    return config.get("validation") is not None and config.get("attribution") is not None


def _more_items_hint(source: str, total: int) -> str:
    """How to get more test items than ``total``, given what set the number (:func:`items_per_variant`)."""
    if source.startswith("preset"):
        return f"set max_samples above {total} (or a larger preset)"
    return f"raise {source} above {total}"


def item_errors(config: Mapping[str, Any]) -> list[str]:
    """Item counts no job could run with: validation measuring no item, or attribution taking every test item
    (validation then has none left; it would fail after data, pretraining and attribution have run)."""
    if not _validation_runs(config):
        return []
    section, errors = config["validation"], []
    if section["pass_items"] == 0 and section["loss_items"] == 0:
        errors.append(
            "config key 'validation.loss_items': 0 with validation.pass_items 0 too measures no item: the "
            "validation jobs would write empty tables and fail; set one of them to at least 1"
        )
    for dataset in config["datasets"]:
        split = validation_split(config, dataset)
        if split is None or split["held_out"] > 0:
            continue
        _, source = items_per_variant(config, dataset)
        errors.append(
            f"config key 'attribution.items': {config['attribution']['items']} attributed items take all "
            f"{split['test']} test items of dataset {dataset!r} ({source}), and validation measures only items the "
            f"head scores were not computed on: none would be left (the validation jobs would fail after "
            f"attribution). Set attribution.items below {split['test']}, or {_more_items_hint(source, split['test'])}"
        )
    return errors


def item_notes(config: Mapping[str, Any]) -> list[str]:
    """One line for every stage whose configured item count is above what a selected dataset's files hold: the
    count each stage then uses (the rule of the module docstring)."""
    notes = []
    for dataset in selected_datasets(config):
        total, source = items_per_variant(config, dataset)
        if total is None:
            continue
        where = f"dataset {dataset!r} has {total} test items a variant ({source})"
        attention = config.get("attention")
        if attention is not None and attention["items"] > total:
            notes.append(f"{where}: the attention stage measures {total} (attention.items {attention['items']})")
        if config.get("attribution") is not None and config["attribution"]["items"] > total:
            notes.append(f"{where}: the attribution stage attributes {total} (attribution.items {config['attribution']['items']})")
        if _validation_runs(config):
            split = validation_split(config, dataset)
            section = config["validation"]
            if split is not None and (split["pass_items"] < section["pass_items"] or split["loss_items"] < section["loss_items"]):
                notes.append(
                    f"{where}, {split['attributed']} of them attributed: the validation stage measures pass@1 on "
                    f"{split['pass_items']} (validation.pass_items {section['pass_items']}) and the loss on "
                    f"{split['loss_items']} (validation.loss_items {section['loss_items']}) of the {split['held_out']} left"
                )
    return notes

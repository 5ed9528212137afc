"""Selections of a study: the size preset, the selected models / datasets / variants, the models the study
evaluates (with replicates and SFT variants) and the seed groups its pooled tables are built from."""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

from attnlab.study.models import SFT_SEPARATOR, evaluated_replicates, parse_sft_name, replicate_models, sft_variants

#: test items per dataset for each size preset (``None`` = every item)
PRESET_SAMPLES: dict[str, int | None] = {"quick": 20, "standard": 200, "full": None}


CLEAN = "clean"


def as_name_list(value: Any) -> list[str]:
    """A selection as typed in YAML (list) or on the command line (``a,b``)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


def has_train_split(dataset_spec: Mapping[str, Any]) -> bool:
    """Whether a dataset has a train split (for the tokenizer, pretraining, few-shot)."""
    if dataset_spec["loader"] == "gsm8k":
        return "train_path" in dataset_spec or "hub_id" in dataset_spec
    return True


def n_test_items(config: Mapping[str, Any]) -> int | None:
    """Test items per dataset: ``max_samples`` if set, else the preset's size."""
    if config.get("max_samples") is not None:
        return int(config["max_samples"])
    return PRESET_SAMPLES[config.get("preset", "standard")]


def selected_models(config: Mapping[str, Any]) -> list[str]:
    chosen = as_name_list(config.get("select_models"))
    return [m for m in config["models"] if not chosen or m in chosen]


def unselected(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with the model selection cleared: the lists a stage's section names, before ``select_models``
    narrows them. A stage's checks compare its lists on this config, so deselecting a model drops it from every
    stage that lists it and never makes a valid config invalid."""
    return {**config, "select_models": []}


def selected_datasets(config: Mapping[str, Any]) -> list[str]:
    chosen = as_name_list(config.get("select_datasets"))
    return [d for d in config["datasets"] if not chosen or d in chosen]


def selected_variants(config: Mapping[str, Any]) -> list[str]:
    chosen = as_name_list(config.get("select_variants"))
    return [v for v in [CLEAN, *config["noise"]["types"]] if not chosen or v in chosen]


def study_models(config: Mapping[str, Any]) -> list[str]:
    """Every model the study evaluates: the selected models, their evaluated training-seed replicates, then the
    SFT variants of both (one fine-tune per seed)."""
    selected = selected_models(config)
    return model_variants(config, selected + evaluated_replicates(config, selected))


def seed_groups(config: Mapping[str, Any], models: Sequence[str]) -> dict[str, list[tuple[str, int]]]:
    """``{pooled name: [(model, training seed), ...]}`` for every model of ``models`` that has evaluated replicates:
    a base (``llama`` -> llama, llama-seed1, ...) and each of its SFT variants (``llama+sft-noisy`` ->
    llama+sft-noisy, llama-seed1+sft-noisy, ...); only members present in ``models`` are listed."""
    present = set(models)
    replicates = replicate_models(config)
    groups: dict[str, list[tuple[str, int]]] = {}
    for name in models:
        parsed = parse_sft_name(name)
        base, suffix = (parsed[0], SFT_SEPARATOR + parsed[1]) if parsed else (name, "")
        if base in replicates:
            continue
        members = [(name, int(config["seed"]))] + [
            (rep + suffix, seed) for rep, (b, seed) in replicates.items() if b == base and rep + suffix in present
        ]
        if len(members) > 1:
            groups[name] = members
    return groups


def model_variants(config: Mapping[str, Any], names: Iterator[str] | list[str]) -> list[str]:
    """The given model names followed by their derived variants (SFT variants), in config order.

    A stage whose config section lists base models (``attention.models: [llama]``) runs on
    these and on their fine-tuned variants, so SFT variants need no special case downstream.
    """
    names = list(names)
    return names + sft_variants(config, names)


def fewshot_seed(config: Mapping[str, Any]) -> int:
    return int(config["evaluation"].get("fewshot_seed", config["seed"]))


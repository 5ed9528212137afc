"""Settings of the fine-tuning stage: its checks, the recipes' training-set specs, its variants and targets
(pure; no torch; see :mod:`attnlab.stages`)."""

from __future__ import annotations

from typing import Any, Mapping

from attnlab.models.architectures import architecture_names
from attnlab.study.models import model_architecture, parse_sft_name, replicate_models, sft_recipe
from attnlab.study.schema import schema_defaults
from attnlab.study.selections import has_train_split, study_models

#: the config section that switches the stage: it runs when ``sft`` is present (and not null)
SECTION: str | None = "sft"


#: architectures SFT does not handle (masked diffusion has no next-token loss)
SFT_UNSUPPORTED_ARCHITECTURES: frozenset[str] = frozenset(architecture_names(causal=False))


def _sft_errors(config: Mapping[str, Any]) -> list[str]:
    """SFT: models, recipes, datasets and noise types named by the ``sft`` section exist."""
    if "sft" not in config:
        return []
    from attnlab.data.registry import available_noise_types

    errors: list[str] = []
    sft = config.get("sft", {})
    if not sft.get("models"):
        errors.append("config key 'sft.models': list the models to fine-tune (or leave the section out)")
    if not sft.get("recipes"):
        errors.append("config key 'sft.recipes': define at least one recipe (or leave the section out)")
    known = {*config["models"], *replicate_models(config)}
    for i, model in enumerate(sft.get("models", [])):
        if model not in known:
            errors.append(f"config key 'sft.models.{i}': {model!r} is not a configured model ({sorted(known)})")
        elif model_architecture(config, model) in SFT_UNSUPPORTED_ARCHITECTURES:
            errors.append(
                f"config key 'sft.models.{i}': {model!r} has architecture {model_architecture(config, model)!r}; "
                "SFT supports causal LMs only (not masked diffusion)"
            )
    noise_types = set(available_noise_types())
    for name, recipe in sft.get("recipes", {}).items():
        where = f"sft.recipes.{name}"
        dataset = recipe["dataset"]
        if dataset not in config["datasets"]:
            errors.append(f"config key '{where}.dataset': {dataset!r} is not a configured dataset")
        elif not has_train_split(config["datasets"][dataset]):
            errors.append(f"config key '{where}.dataset': dataset {dataset!r} has no train split (set train_path)")
        else:
            errors += _samples_errors(config, name, dataset)
        for noise in recipe["noise_mix"]:
            if noise not in noise_types:
                errors.append(
                    f"config key '{where}.noise_mix.{noise}': unknown noise type (registered: {sorted(noise_types)})"
                )
        if sum(recipe["noise_mix"].values()) <= 0:
            errors.append(f"config key '{where}.noise_mix': the proportions must not all be 0")
        if recipe["method"] == "full" and recipe.get("lora") not in (None, {}, schema_defaults("sft", "recipes", "*", "lora")):
            errors.append(f"config key '{where}.lora': set method: lora to use LoRA settings")
    return errors


def _samples_errors(config: Mapping[str, Any], recipe: str, dataset: str) -> list[str]:
    """A recipe's ``samples`` (the preset's count when null) fit the train split it draws from, when the config
    tells its size (:func:`attnlab.study.items.split_size`); the training-set job would fail otherwise."""
    from attnlab.study.items import split_size

    samples = sft_recipe(config, recipe)["samples"]
    available, key = split_size(config, dataset, "train")
    if samples is None or available is None or samples <= available:
        return []
    given = config["sft"]["recipes"][recipe].get("samples")
    what = f"{samples}" if given is not None else f"null (preset {config.get('preset', 'standard')}: {samples})"
    return [
        f"config key 'sft.recipes.{recipe}.samples': {what} problems exceed the {available} of the train split of "
        f"dataset {dataset!r} ({key}); the training-set job would fail. Set samples to at most {available} "
        f"(or raise {key})"
    ]


def sft_data_spec(config: Mapping[str, Any], recipe: str) -> dict[str, Any]:
    """The recipe keys that decide its training set (a change of only these rebuilds the set)."""
    spec = sft_recipe(config, recipe)
    return {k: spec[k] for k in ("dataset", "split", "noise_mix", "samples", "seed")}


def fine_tuned_models(config: Mapping[str, Any]) -> list[str]:
    """The study's SFT variants (``m+sft-r``), in study order; none when the study has no ``sft`` section."""

    return [m for m in study_models(config) if parse_sft_name(m) is not None]


def config_errors(config: Mapping[str, Any]) -> list[str]:
    """The fine-tuning stage's checks (:func:`_sft_errors`)."""
    return _sft_errors(config)


def targets(config: Mapping[str, Any], results: str) -> list[str]:
    """The loss curve of every SFT variant, the SFT table and figure; none when no model is fine-tuned."""
    variants = fine_tuned_models(config)
    if not variants:
        return []
    return [*(f"{results}/training/{m}/loss.png" for m in variants), f"{results}/tables/sft.parquet",
            f"{results}/figures/sft.png"]  # fmt: skip

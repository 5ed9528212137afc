"""Config helpers of the validation stage: which models, the job specs, semantic checks (pure; no torch).

Used by the Snakefile (``workflow/rules/validation.smk``) and by :func:`attnlab.config.validate_config`.
A job spec holds exactly the settings that decide one output file, so Snakemake reruns a pruning job when a
pruning setting changes and not when only a sparse-attention budget does (and vice versa); attribution
settings reach the validation jobs through their input (the scores file) and the objective settings.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from attnlab.attribution.settings import attribution_enabled, attribution_models
from attnlab.study.models import diffusion_settings, model_architecture, model_entry
from attnlab.study.selections import (
    CLEAN,
    as_name_list,
    fewshot_seed,
    model_variants,
    selected_datasets,
    selected_models,
    unselected,
)

#: the config section that switches the stage: it runs when ``validation`` is present (and not null)
SECTION: str | None = "validation"


__all__ = [
    "validation_enabled",
    "validation_errors",
    "validation_eval_spec",
    "validation_job_spec",
    "validation_models",
    "validation_objective",
]


def validation_enabled(config: Mapping[str, Any]) -> bool:
    """The stage runs when the config has a ``validation`` section."""
    return config.get("validation") is not None


def validation_models(config: Mapping[str, Any]) -> list[str]:
    """The validated models: ``validation.models`` (plus SFT variants) or every attributed model when null."""

    if not validation_enabled(config) or not attribution_enabled(config):
        return []
    attributed = attribution_models(config)
    chosen = config["validation"].get("models")
    if chosen is None:
        return attributed
    names = set(as_name_list(chosen))
    models = model_variants(config, [m for m in selected_models(config) if m in names])
    return [m for m in models if m in attributed]


def validation_errors(config: Mapping[str, Any]) -> list[str]:
    """What the schema cannot check: the stage needs attribution, named models exist and are attributed, the
    score method is computed, the variant exists, every budget is at least ``min_ratio``, an unmasking model's
    blocks divide ``max_new_tokens``, and some item is measured (:func:`attnlab.study.items.item_errors`).

    Models are compared on the lists the sections name (:func:`attnlab.study.selections.unselected`): a selection
    narrows validation and attribution alike, so it never makes a validated model "not attributed"."""

    if not validation_enabled(config):
        return []
    section = config["validation"]
    if not attribution_enabled(config):
        return ["config key 'validation': needs the 'attribution' section (validation reads its head scores)"]
    errors: list[str] = []
    attributed = set(attribution_models(unselected(config)))
    for name in as_name_list(section.get("models")):
        if name not in config["models"]:
            errors.append(f"config key 'validation.models': {name!r} is not a configured model")
        elif name not in attributed:
            errors.append(f"config key 'validation.models': {name!r} is not attributed (see attribution.models)")
    methods = list(config["attribution"].get("methods", []))
    if section["scores"] not in methods:
        errors.append(f"config key 'validation.scores': {section['scores']!r} is not in attribution.methods {methods}")
    variants = [CLEAN, *config["noise"]["types"]]
    if section["variant"] not in variants:
        errors.append(f"config key 'validation.variant': {section['variant']!r} is not one of {variants}")
    floor = section["sparse"]["min_ratio"]
    for i, budget in enumerate(section["sparse"]["budgets"]):
        if budget < floor:
            errors.append(f"config key 'validation.sparse.budgets.{i}': {budget} is below min_ratio {floor}")
    errors += _diffusion_block_errors(config)
    from attnlab.study.items import item_errors

    return errors + item_errors(config)


def _diffusion_block_errors(config: Mapping[str, Any]) -> list[str]:
    """An unmasking model (mdlm, hub diffusion) generates ``validation.max_new_tokens`` tokens in blocks of its
    ``diffusion.block_length``; a length the block does not divide would silently become one block."""
    if not attribution_enabled(config):
        return []
    new_tokens = int(config["validation"]["max_new_tokens"])
    errors = []
    for name in validation_models(unselected(config)):
        if name not in config["models"]:
            continue  # an SFT variant: causal, greedy
        diffusion = diffusion_settings(config, config["models"][name])
        if diffusion is not None and new_tokens % int(diffusion["block_length"]):
            errors.append(
                f"config key 'validation.max_new_tokens': {new_tokens} is not a multiple of "
                f"models.{name}.diffusion.block_length ({diffusion['block_length']}); the validation of {name!r} "
                f"unmasks in blocks of that length (use a multiple of it, e.g. "
                f"{max(1, round(new_tokens / diffusion['block_length'])) * diffusion['block_length']})"
            )
    return errors


def _scaled_diffusion(settings: dict[str, Any], answer_length: int) -> dict[str, Any]:
    """The model's unmasking settings at a new ``answer_length``: the same block length when it divides the new
    length (else one block: the config check refuses a validation ``max_new_tokens`` the block does not divide,
    so this fallback serves direct calls only), and the same steps per token, as a multiple of the blocks."""
    block = int(settings["block_length"])
    if answer_length % block:
        block = answer_length
    blocks = answer_length // block
    per_token = int(settings["steps"]) / int(settings["answer_length"])
    steps = max(blocks, int(math.ceil(per_token * answer_length / blocks)) * blocks)
    return {**settings, "answer_length": answer_length, "block_length": block, "steps": min(steps, answer_length)}


def validation_eval_spec(config: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The evaluate stage's spec with the validation stage's ``max_new_tokens`` and ``batch_size``."""

    section = config["validation"]
    spec: dict[str, Any] = {
        **config["evaluation"],
        "fewshot_seed": fewshot_seed(config),
        "max_new_tokens": int(section["max_new_tokens"]),
        "batch_size": int(section["batch_size"]),
    }
    diffusion = diffusion_settings(config, model_entry(config, model))
    if diffusion is not None:
        spec["diffusion"] = _scaled_diffusion(diffusion, int(section["max_new_tokens"]))
    return spec


def validation_objective(config: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The HeadIG objective settings (``attribution.objective``) and seed, as the attribution jobs use them:
    the mask settings only for masked-diffusion (or hub) models, so changing them does not rerun the others."""

    attribution = config["attribution"]
    objective = dict(attribution["objective"])
    if model_architecture(config, model) not in (None, "mdlm"):
        objective.pop("mask_probs", None)
        objective.pop("mask_samples_per_prob", None)
    return {"objective": objective, "objective_seed": int(attribution.get("seed", config["seed"]))}


def validation_job_spec(config: Mapping[str, Any], model: str, kind: str) -> dict[str, Any]:
    """The ``--spec`` of one ``attnlab validation {pruning,sparse}`` job (see :mod:`attnlab.validation.cli`)."""
    section = config["validation"]
    spec: dict[str, Any] = {
        "eval": validation_eval_spec(config, model),
        **validation_objective(config, model),
        "pass_items": int(section["pass_items"]),
        "loss_items": int(section["loss_items"]),
    }
    if kind == "pruning":
        spec.update({key: section["pruning"][key] for key in ("fractions", "scope", "random_seeds", "least_by")})
    elif kind == "sparse":
        keys = ("budgets", "min_ratio", "scope", "allocations", "temperature")
        spec.update({key: section["sparse"][key] for key in keys})
    else:
        raise ValueError(f"unknown validation job kind {kind!r}")
    return spec


def config_errors(config: Mapping[str, Any]) -> list[str]:
    """The validation stage's checks (:func:`validation_errors`)."""
    return validation_errors(config)


def targets(config: Mapping[str, Any], results: str) -> list[str]:
    """The pruning and sparse-attention tables and each validated model's two figures per dataset."""

    models = validation_models(config)
    if not models:
        return []
    figures = [f"{results}/figures/validation/{m}_{b}_{kind}.png"
               for m in models for b in selected_datasets(config) for kind in ("pruning", "sparse")]  # fmt: skip
    return [f"{results}/tables/pruning.parquet", f"{results}/tables/sparse_attention.parquet", *figures]

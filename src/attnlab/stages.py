"""The study's stages and what each adds to ``rule all``, found through one registry.

A stage owns its settings module (``attnlab.<stage>.settings``): its model lists, job specs and two functions
the registry calls for a validated ``config``:

* ``config_errors(config) -> list[str]`` — what the schema cannot check about the stage's section, each line
  naming its key (:func:`attnlab.config.validate_config` runs every stage's);
* ``targets(config, results) -> list[str]`` — the final files of the stage (an empty list when the stage is off
  or has nothing to run); the workflow computes :func:`targets_by_stage` once: ``rule all`` asks for every
  target, and each rule file defines its rules only when its stage has targets (``STAGE_RUNS``);

and ``SECTION``, the config section that switches the stage on (it runs when the section is present; null, as
``snakemake --config <section>=`` gives, is absent), or None for a stage that always runs.

So a new stage is one entry here plus its settings module (``attnlab.<stage>.settings``), its CLI module
(``attnlab.<stage>.cli``, registered from this list), its schema fragment, its rule file and its ``include:``
in the Snakefile; no rule file appends to a shared list and no central module lists its checks. The order is
the order of the report: the trained models, fine-tuning, attention, needle, attribution, validation,
perturbation, then the report's pooled and paired tables.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Mapping

#: (stage, settings module) in report order; each module defines ``config_errors`` and ``targets``
STAGES: tuple[tuple[str, str], ...] = (
    ("models", "attnlab.models.settings"),
    ("sft", "attnlab.sft.settings"),
    ("attention", "attnlab.attention.settings"),
    ("needle", "attnlab.needle.settings"),
    ("attribution", "attnlab.attribution.settings"),
    ("validation", "attnlab.validation.settings"),
    ("perturbation", "attnlab.perturbation.settings"),
    ("report", "attnlab.report.settings"),
)


def stage_settings_modules() -> list[ModuleType]:
    """The settings module of every stage, in :data:`STAGES` order."""
    return [importlib.import_module(module) for _, module in STAGES]


def stage_sections() -> list[str]:
    """The config sections that switch a stage on (each settings module's ``SECTION``; None for a stage that
    always runs): the stage runs when its section is present and not null."""
    return [module.SECTION for module in stage_settings_modules() if module.SECTION is not None]


def targets_by_stage(config: Mapping[str, Any], results: str = "results") -> dict[str, list[str]]:
    """``{stage: its final targets}`` for ``config``, in :data:`STAGES` order (an empty list: the stage does not
    run, and its rule file defines no rule)."""
    return {name: list(module.targets(config, results)) for (name, _), module in zip(STAGES, stage_settings_modules())}


def stage_targets(config: Mapping[str, Any], results: str = "results") -> list[str]:
    """Every stage's final targets for ``config``, in :data:`STAGES` order, each file once."""
    return unique_targets(targets_by_stage(config, results))


def unique_targets(by_stage: Mapping[str, list[str]]) -> list[str]:
    """The targets of :func:`targets_by_stage`, in stage order, each file once."""
    return list(dict.fromkeys(target for targets in by_stage.values() for target in targets))

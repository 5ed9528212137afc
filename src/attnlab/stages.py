"""The study's stages and what each adds to ``rule all``, found through one registry.

A stage owns its settings module (``attnlab.<stage>.settings``): its model lists, job specs and two functions
the registry calls for a validated ``config``:

* ``config_errors(config) -> list[str]`` — what the schema cannot check about the stage's section, each line
  naming its key (:func:`attnlab.config.validate_config` runs every stage's);
* ``targets(config, results) -> list[str]`` — the final files of the stage (an empty list when the stage is off
  or has nothing to run); the workflow's ``rule all`` asks :func:`stage_targets`, and each rule file defines
  its rules only when its stage has targets (:func:`stage_runs`);

and ``SECTION``, the config section that switches the stage on (it runs when the section is present; null, as
``snakemake --config <section>=`` gives, is absent), or None for a stage that always runs.

So a new stage is one entry here plus its settings module (``attnlab.<stage>.settings``), its CLI module
(``attnlab.<stage>.cli``, registered from this list), its schema fragment, its rule file and its ``include:``
in the Snakefile; no rule file appends to a shared list and no central module lists its checks. The order is the order of the report:
the trained models, fine-tuning, attention, needle, attribution, validation, perturbation, then
the report's pooled and paired tables.
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


def stage_targets(config: Mapping[str, Any], results: str = "results") -> list[str]:
    """Every stage's final targets for ``config``, in :data:`STAGES` order, each file once."""
    out: list[str] = []
    for module in stage_settings_modules():
        for target in module.targets(config, results):
            if target not in out:
                out.append(target)
    return out


def stage_runs(config: Mapping[str, Any], results: str = "results") -> dict[str, bool]:
    """``{stage: whether it runs}``: a stage runs when its settings name a target (its section is present, with
    something to run). Each rule file defines its rules only under ``if STAGE_RUNS["<stage>"]:``."""
    return {name: bool(importlib.import_module(module).targets(config, results)) for name, module in STAGES}

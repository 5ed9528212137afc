"""The study's stages and what each adds to ``rule all``, found through one registry.

A stage owns its settings module (``attnlab.<stage>.settings``): its model lists, job specs and two functions
the registry calls for a validated ``config``:

* ``config_errors(config) -> list[str]`` — what the schema cannot check about the stage's section, each line
  naming its key (:func:`attnlab.config.validate_config` runs every stage's);
* ``targets(config, results) -> list[str]`` — the final files of the stage (an empty list when the stage is off
  or has nothing to run); the workflow's ``rule all`` asks :func:`stage_targets`.

So a new stage is one entry here plus its settings module, schema fragment, rule file and CLI module; no rule
file appends to a shared list and no central module lists its checks. The order is the order of the report:
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


def stage_targets(config: Mapping[str, Any], results: str = "results") -> list[str]:
    """Every stage's final targets for ``config``, in :data:`STAGES` order, each file once."""
    out: list[str] = []
    for module in stage_settings_modules():
        for target in module.targets(config, results):
            if target not in out:
                out.append(target)
    return out

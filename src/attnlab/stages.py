"""The study's stages and what each adds to ``rule all``, found through one registry.

A stage owns its settings module (``attnlab.<stage>.settings``): its config checks, model lists, job specs and
``targets(config, results) -> list[str]``, the final files of the stage for a validated ``config`` (an empty
list when the stage is off or has nothing to run). The workflow's ``rule all`` asks :func:`stage_targets`, so a
new stage is one entry here plus its settings module and rule file; no rule file appends to a shared list.
The order is the order of the report: fine-tuning, attention, needle, attribution, validation, perturbation,
then the report's pooled and paired tables.
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping

#: (stage, settings module) in report order; each module defines ``targets(config, results)``
STAGES: tuple[tuple[str, str], ...] = (
    ("sft", "attnlab.sft.settings"),
    ("attention", "attnlab.attention.settings"),
    ("needle", "attnlab.needle.settings"),
    ("attribution", "attnlab.attribution.settings"),
    ("validation", "attnlab.validation.settings"),
    ("perturbation", "attnlab.perturbation.settings"),
    ("report", "attnlab.report.settings"),
)


def stage_targets(config: Mapping[str, Any], results: str = "results") -> list[str]:
    """Every stage's final targets for ``config``, in :data:`STAGES` order, each file once."""
    out: list[str] = []
    for _, module in STAGES:
        for target in importlib.import_module(module).targets(config, results):
            if target not in out:
                out.append(target)
    return out

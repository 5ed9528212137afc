"""What the perturbation stage adds to a study's final targets (see :mod:`attnlab.stages`)."""

from __future__ import annotations

from typing import Any, Mapping


def perturbed_models(config: Mapping[str, Any]) -> list[str]:
    """``perturbation.models`` that the study runs (in the model selection); none without the section."""
    from attnlab.config import study_models

    section = config.get("perturbation")
    if not section:
        return []
    models = set(study_models(config))
    return [m for m in section["models"] if m in models]


def targets(config: Mapping[str, Any], results: str) -> list[str]:
    """The perturbation, comparison and Jacobian tables and the three figures."""
    if not perturbed_models(config):
        return []
    return [f"{results}/tables/perturbation.parquet", f"{results}/tables/perturbation_comparison.parquet",
            f"{results}/tables/jacobian.parquet", f"{results}/figures/perturbation/relations.png",
            f"{results}/figures/perturbation/layers.png", f"{results}/figures/perturbation/jacobian.png"]  # fmt: skip

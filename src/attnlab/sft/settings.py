"""What the fine-tuning stage adds to a study's final targets (see :mod:`attnlab.stages`)."""

from __future__ import annotations

from typing import Any, Mapping


def fine_tuned_models(config: Mapping[str, Any]) -> list[str]:
    """The study's SFT variants (``m+sft-r``), in study order; none when ``skip_sft`` is set."""
    from attnlab.config import parse_sft_name, study_models

    return [m for m in study_models(config) if parse_sft_name(m) is not None]


def targets(config: Mapping[str, Any], results: str) -> list[str]:
    """The loss curve of every SFT variant, the SFT table and figure; none when no model is fine-tuned."""
    variants = fine_tuned_models(config)
    if not variants:
        return []
    return [*(f"{results}/training/{m}/loss.png" for m in variants), f"{results}/tables/sft.parquet",
            f"{results}/figures/sft.png"]  # fmt: skip

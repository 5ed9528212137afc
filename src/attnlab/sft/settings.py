"""What the fine-tuning stage adds to a study's final targets (see :mod:`attnlab.stages`)."""

from __future__ import annotations

from typing import Any, Mapping


def targets(config: Mapping[str, Any], results: str) -> list[str]:
    """The loss curve of every SFT variant, the SFT table and figure; none when no model is fine-tuned."""
    from attnlab.config import parse_sft_name, study_models

    variants = [m for m in study_models(config) if parse_sft_name(m) is not None]
    if not variants:
        return []
    return [*(f"{results}/training/{m}/loss.png" for m in variants), f"{results}/tables/sft.parquet",
            f"{results}/figures/sft.png"]  # fmt: skip

"""What the attention-allocation stage adds to a study's final targets (see :mod:`attnlab.stages`)."""

from __future__ import annotations

from typing import Any, Mapping


def measured_models(config: Mapping[str, Any]) -> list[str]:
    """The models whose attention is measured; none when ``skip_attention`` is set."""
    from attnlab.config import attention_models

    return attention_models(config) if not config.get("skip_attention", True) else []


def targets(config: Mapping[str, Any], results: str) -> list[str]:
    """The attention-ratio table and each measured model's heatmap and token maps."""
    models = measured_models(config)
    if not models:
        return []
    return [f"{results}/tables/attention_ratios.parquet",
            *(f"{results}/figures/attention/{m}_ni_heatmap.png" for m in models),
            *(f"{results}/figures/attention/{m}_token_maps.png" for m in models)]  # fmt: skip

"""What the head-attribution stage adds to a study's final targets (see :mod:`attnlab.stages`)."""

from __future__ import annotations

from typing import Any, Mapping


def targets(config: Mapping[str, Any], results: str) -> list[str]:
    """The method-correlation table when some model is attributed with some method."""
    from attnlab.config import attribution_enabled, attribution_models

    if not (attribution_models(config) and attribution_enabled(config) and config["attribution"]["methods"]):
        return []
    return [f"{results}/tables/attribution_correlations.parquet"]

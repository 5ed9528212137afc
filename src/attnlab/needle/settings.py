"""What the needle-in-a-haystack stage adds to a study's final targets (see :mod:`attnlab.stages`)."""

from __future__ import annotations

from typing import Any, Mapping


def targets(config: Mapping[str, Any], results: str) -> list[str]:
    """The depth table (Parquet and Markdown) and figure when the study has a ``needle`` section."""
    from attnlab.config import needle_enabled

    if not needle_enabled(config):
        return []
    return [f"{results}/tables/needle_depth.parquet", f"{results}/tables/needle_depth.md",
            f"{results}/figures/needle_depth.png"]  # fmt: skip

"""Config checks of the report stage that the schema cannot express (numpy/scipy-free: they run at parse time)."""

from __future__ import annotations

from typing import Any, Mapping


def robustness_errors(config: Mapping[str, Any]) -> list[str]:
    """What the schema cannot check: every name of ``robustness_difference.pairs`` is a configured model, the
    two of a pair differ."""
    section = config.get("robustness_difference") or {}
    errors = []
    for i, pair in enumerate(section.get("pairs") or []):
        for j, name in enumerate(pair):
            if name not in config["models"]:
                errors.append(f"config key 'robustness_difference.pairs.{i}.{j}': {name!r} is not a configured model")
        if len(pair) == 2 and pair[0] == pair[1]:
            errors.append(f"config key 'robustness_difference.pairs.{i}': a model is compared with itself")
    return errors

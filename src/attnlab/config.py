"""A study's config, checked: the schema (:mod:`attnlab.study.schema`), then what a schema cannot express.

:func:`validate_config` is what the workflow (when the Snakefile is parsed) and ``attnlab config check`` run.
Errors name the offending key (``models.llama.architecture``), so a typo fails before any job runs. After the
schema and its defaults come the study-wide checks (dataset files exist, noise types and dataset loaders are
registered, selections name configured entries, few-shot datasets have a train split), then every stage's own
checks (``config_errors`` of each settings module in :data:`attnlab.stages.STAGES`), then the cross-field
checks of :mod:`attnlab.config_checks`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

from attnlab.config_checks import cross_field_errors
from attnlab.paths import SCHEMA_PATH
from attnlab.stages import stage_sections, stage_settings_modules
from attnlab.study.schema import (
    ConfigError,
    fill_defaults,
    import_plugins,
    load_schema,
    schema_errors,
)
from attnlab.study.selections import CLEAN, as_name_list, has_train_split, selected_datasets

__all__ = ["ConfigError", "validate_config"]


def _semantic_errors(config: dict[str, Any], base_dir: Path) -> list[str]:
    from attnlab.data.registry import available_datasets, available_noise_types

    errors: list[str] = []
    loaders = set(available_datasets())
    noise_types = set(available_noise_types()) - {CLEAN}
    for name, spec in config["datasets"].items():
        if spec["loader"] not in loaders:
            errors.append(
                f"config key 'datasets.{name}.loader': unknown dataset loader {spec['loader']!r} "
                f"(registered: {', '.join(sorted(loaders))})"
            )
        for key in ("test_path", "train_path", "templates"):
            if key in spec and not (base_dir / spec[key]).is_file():
                errors.append(f"config key 'datasets.{name}.{key}': file not found: {spec[key]}")
    errors += _local_model_errors(config, base_dir)
    for i, noise in enumerate(config["noise"]["types"]):
        if noise == CLEAN or noise not in noise_types:
            errors.append(
                f"config key 'noise.types.{i}': unknown noise type {noise!r} "
                f"(registered: {', '.join(sorted(noise_types))})"
            )
    for key, universe in (
        ("select_models", set(config["models"])),
        ("select_datasets", set(config["datasets"])),
        ("select_variants", {CLEAN, *config["noise"]["types"]}),
    ):
        for name in as_name_list(config.get(key)):
            if name not in universe:
                errors.append(f"config key '{key}': {name!r} is not one of {sorted(universe)}")
    if config["evaluation"]["num_fewshot"] > 0:
        for name in selected_datasets(config):
            if not has_train_split(config["datasets"][name]):
                errors.append(
                    f"config key 'evaluation.num_fewshot': few-shot exemplars come from the train split, "
                    f"but dataset {name!r} has none (set datasets.{name}.train_path)"
                )
    for module in stage_settings_modules():
        errors += module.config_errors(config)
    errors += cross_field_errors(config)
    return errors


def _local_model_errors(config: dict[str, Any], base_dir: Path) -> list[str]:
    """A hub entry whose ``id`` is a path (attnlab.tools.hfcache.is_local_path) names a folder that exists: the
    folder is every model job's input, so a missing one would stop the workflow with no key named."""
    from attnlab.tools.hfcache import is_local_path

    errors = []
    for name, spec in config["models"].items():
        if spec["source"] == "hub" and is_local_path(spec["id"]):
            path = Path(spec["id"]).expanduser()
            if not (base_dir / path).is_dir():
                where = "" if path.is_absolute() else f" (relative to {base_dir})"
                errors.append(
                    f"config key 'models.{name}.id': {spec['id']!r} is a local path (it starts with '.', '/' or '~', "
                    f"or has more than one '/'), but no such folder exists{where}; the model's jobs could not find "
                    "their input"
                )
    return errors


#: top-level keys that do not switch a stage: what to write instead (each stage runs when its section is present)
STAGE_SWITCH_HINTS: dict[str, str] = {
    f"skip_{stage}": f"config key 'skip_{stage}': a stage runs when its section is present; leave out '{stage}' "
    f"(or set it to null, on the command line `--config {stage}=`) to skip the stage"
    for stage in ("sft", "attention")
}


def switched_off_sections_removed(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without the stage sections set to null: ``snakemake --config attention=`` (an empty value is
    null) switches the attention stage off, like leaving the section out of the file."""
    for key in stage_sections():
        if key in config and config[key] is None:
            del config[key]
    return config


def validate_config(
    config: Mapping[str, Any],
    schema_path: str | Path = SCHEMA_PATH,
    base_dir: str | Path = ".",
) -> dict[str, Any]:
    """Validate ``config`` and return a copy with defaults filled in.

    Args:
        config: the raw config (as Snakemake or YAML gives it).
        schema_path: the JSON Schema (YAML) file.
        base_dir: folder that relative dataset paths are resolved against
            (the Snakemake working directory).

    Raises:
        ConfigError: listing every problem, each naming its key.
    """
    schema = load_schema(schema_path)
    config = switched_off_sections_removed(copy.deepcopy(dict(config)))
    errors = [line for key, line in STAGE_SWITCH_HINTS.items() if config.pop(key, None) is not None]
    errors += schema_errors(config, schema)
    if not errors:
        fill_defaults(config, schema)
        import_plugins(config)
        errors = _semantic_errors(config, Path(base_dir))
    if errors:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(errors))
    return config

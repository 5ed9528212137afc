"""Study configuration: schema validation, defaults, and derived selections.

The config is validated against ``workflow/schemas/config.schema.yaml`` (JSON
Schema 2020-12) when the Snakefile is parsed and by ``attnlab config check``.
Errors name the offending key (``models.llama.architecture``) so that a typo
fails before any job runs. After the schema, :func:`validate_config` checks what
a schema cannot: dataset files exist, noise types and dataset loaders are
registered, selections name configured entries, and the corpus used for the
tokenizer and pretraining has a train split.
"""

from __future__ import annotations

import copy
import importlib
from pathlib import Path
from typing import Any, Iterator, Mapping

import jsonschema
import yaml

from attnlab.paths import REPO_ROOT

SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"

#: test items per dataset for each size preset (``None`` = every item)
PRESET_SAMPLES: dict[str, int | None] = {"quick": 20, "standard": 200, "full": None}

#: stages that exist in this release; the others are rejected when switched on
IMPLEMENTED_STAGES: frozenset[str] = frozenset()
STAGE_FLAGS = {"skip_sft": "sft", "skip_attention": "attention"}

CLEAN = "clean"


class ConfigError(ValueError):
    """An invalid study configuration; the message names the key."""


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict (an empty file is an error)."""
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping of keys, got {type(data).__name__}")
    return data


def load_schema(path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    """The config schema: the main file plus one fragment per stage.

    Each ``stages/*.schema.yaml`` beside the main file declares the top-level
    ``properties`` (and ``$defs``) of one analysis stage, so a stage owns its
    keys in its own file; a key declared twice is an error.
    """
    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        schema = yaml.safe_load(fh)
    for fragment_path in sorted((path.parent / "stages").glob("*.schema.yaml")):
        with open(fragment_path, encoding="utf-8") as fh:
            fragment = yaml.safe_load(fh) or {}
        for section in ("properties", "$defs"):
            for key, value in (fragment.get(section) or {}).items():
                if key in schema.setdefault(section, {}):
                    raise ConfigError(f"{fragment_path}: schema key {section}.{key} is already declared")
                schema[section][key] = value
    return schema


def _key(path: Iterator[Any] | Any) -> str:
    parts = [str(p) for p in path]
    return ".".join(parts) if parts else "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    """One clear line for a schema error, naming the full key."""
    where = list(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = set(error.schema.get("properties", {}))
        unknown = sorted(k for k in error.instance if k not in allowed) if isinstance(error.instance, dict) else []
        keys = ", ".join(f"'{_key([*where, k])}'" for k in unknown)
        hint = f" (allowed here: {', '.join(sorted(allowed))})" if allowed else ""
        return f"unknown config key {keys}{hint}"
    if error.validator == "required":
        return f"config key '{_key(where)}': {error.message}"
    return f"config key '{_key(where)}': {error.message}"


def _leaf_errors(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """Descend into oneOf/anyOf/allOf/if-then to the most specific errors."""
    if error.context:
        best = jsonschema.exceptions.best_match(error.context)
        return _leaf_errors(best) if best is not None else [error]
    return [error]


def schema_errors(config: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """All schema violations of ``config`` as readable lines (empty if valid)."""
    validator = jsonschema.Draft202012Validator(schema)
    lines: list[str] = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        for leaf in _leaf_errors(error):
            line = _describe(leaf)
            if line not in lines:
                lines.append(line)
    return lines


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/"), ref
        node: Any = root
        for part in ref[2:].split("/"):
            node = node[part]
        schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def fill_defaults(instance: Any, schema: Mapping[str, Any], root: Mapping[str, Any] | None = None) -> Any:
    """Fill schema ``default`` values into a (valid) instance, in place; returns it."""
    root = root if root is not None else schema
    schema = _resolve(schema, root)
    if not isinstance(instance, dict):
        return instance
    for sub in schema.get("allOf", []):
        condition = sub.get("if")
        if condition is None or jsonschema.Draft202012Validator(condition).is_valid(instance):
            if "then" in sub or condition is None:
                fill_defaults(instance, sub.get("then", sub), root)
    properties = schema.get("properties", {})
    for key, sub in properties.items():
        sub_resolved = _resolve(sub, root) if isinstance(sub, dict) else sub
        if key not in instance and isinstance(sub_resolved, dict) and "default" in sub_resolved:
            instance[key] = copy.deepcopy(sub_resolved["default"])
        if key in instance and isinstance(sub_resolved, dict):
            fill_defaults(instance[key], sub_resolved, root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in instance.items():
            if key not in properties:
                fill_defaults(value, extra, root)
    return instance


def as_name_list(value: Any) -> list[str]:
    """A selection as typed in YAML (list) or on the command line (``a,b``)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


def import_plugins(config: Mapping[str, Any]) -> None:
    """Import the config's plugin modules (they register datasets and noise types)."""
    for module in config.get("plugins", []) or []:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"config key 'plugins': cannot import {module!r}: {exc}") from exc


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
    for section in ("tokenizer", "pretrain") if scratch_models(config) else ():
        if section not in config:
            errors.append(f"config key '{section}': required because the study has scratch models")
            continue
        corpus = config[section]["corpus"]
        if corpus not in config["datasets"]:
            errors.append(f"config key '{section}.corpus': {corpus!r} is not a configured dataset")
        elif not has_train_split(config["datasets"][corpus]):
            errors.append(f"config key '{section}.corpus': dataset {corpus!r} has no train split")
    if "pretrain" in config:
        seeds = config["pretrain"]["replicates"]["seeds"]
        for model in config["pretrain"]["replicates"]["models"]:
            if config["models"].get(model, {}).get("source") != "scratch":
                errors.append(f"config key 'pretrain.replicates.models': {model!r} is not a configured scratch model")
        if config["seed"] in seeds:
            errors.append(f"config key 'pretrain.replicates.seeds': {config['seed']} is the study seed (the model itself)")
        for name in replicate_models(config):
            if name in config["models"]:
                errors.append(f"config key 'pretrain.replicates': replicate name {name!r} clashes with a configured model")
    if config["evaluation"]["num_fewshot"] > 0:
        for name in selected_datasets(config):
            if not has_train_split(config["datasets"][name]):
                errors.append(
                    f"config key 'evaluation.num_fewshot': few-shot exemplars come from the train split, "
                    f"but dataset {name!r} has none (set datasets.{name}.train_path)"
                )
    for flag, stage in STAGE_FLAGS.items():
        if not config.get(flag, True) and stage not in IMPLEMENTED_STAGES:
            errors.append(f"config key '{flag}': the {stage} stage is not available in this release; keep it true")
    for stage_errors in (_sft_errors, _attention_errors, _needle_errors, _attribution_errors, _perturbation_errors):
        errors += stage_errors(config)
    for name, spec in config["models"].items():
        if spec["source"] == "scratch" and spec["architecture"] in ("llama", "diffllama", "gpt2"):
            if "num_heads" not in spec:
                errors.append(f"config key 'models.{name}.num_heads': required for architecture {spec['architecture']}")
            elif spec["hidden_size"] % spec["num_heads"]:
                errors.append(f"config key 'models.{name}.num_heads': must divide hidden_size {spec['hidden_size']}")
            elif spec["architecture"] == "diffllama" and spec["num_heads"] % 2:
                errors.append(f"config key 'models.{name}.num_heads': must be even for diffllama (head pairs)")
    return errors


# --- per-stage semantic checks (what a schema cannot express) ----------------


def _sft_errors(config: Mapping[str, Any]) -> list[str]:
    return []


def _attention_errors(config: Mapping[str, Any]) -> list[str]:
    return []


def _needle_errors(config: Mapping[str, Any]) -> list[str]:
    return []


def _attribution_errors(config: Mapping[str, Any]) -> list[str]:
    return []


def _perturbation_errors(config: Mapping[str, Any]) -> list[str]:
    return []


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
    config = copy.deepcopy(dict(config))
    errors = schema_errors(config, schema)
    if not errors:
        fill_defaults(config, schema)
        import_plugins(config)
        errors = _semantic_errors(config, Path(base_dir))
    if errors:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(errors))
    return config


# --- derived selections (used by the Snakefile and the CLI) -------------------


def has_train_split(dataset_spec: Mapping[str, Any]) -> bool:
    """Whether a dataset has a train split (for the tokenizer, pretraining, few-shot)."""
    if dataset_spec["loader"] == "gsm8k":
        return "train_path" in dataset_spec or "hub_id" in dataset_spec
    return True


def n_test_items(config: Mapping[str, Any]) -> int | None:
    """Test items per dataset: ``max_samples`` if set, else the preset's size."""
    if config.get("max_samples") is not None:
        return int(config["max_samples"])
    return PRESET_SAMPLES[config.get("preset", "standard")]


def selected_models(config: Mapping[str, Any]) -> list[str]:
    chosen = as_name_list(config.get("select_models"))
    return [m for m in config["models"] if not chosen or m in chosen]


def selected_datasets(config: Mapping[str, Any]) -> list[str]:
    chosen = as_name_list(config.get("select_datasets"))
    return [d for d in config["datasets"] if not chosen or d in chosen]


def selected_variants(config: Mapping[str, Any]) -> list[str]:
    chosen = as_name_list(config.get("select_variants"))
    return [v for v in [CLEAN, *config["noise"]["types"]] if not chosen or v in chosen]


def scratch_models(config: Mapping[str, Any]) -> list[str]:
    return [m for m, spec in config["models"].items() if spec["source"] == "scratch"]


def replicate_models(config: Mapping[str, Any]) -> dict[str, tuple[str, int]]:
    """Training-seed replicates ``{"llama-seed11": ("llama", 11), ...}`` from ``pretrain.replicates``."""
    replicates = (config.get("pretrain") or {}).get("replicates") or {}
    return {
        f"{model}-seed{seed}": (model, int(seed))
        for model in replicates.get("models", [])
        for seed in replicates.get("seeds", [])
    }


def model_variants(config: Mapping[str, Any], names: Iterator[str] | list[str]) -> list[str]:
    """The given model names followed by their derived variants (SFT variants), in config order.

    A stage whose config section lists base models (``attention.models: [llama]``) runs on
    these and on their fine-tuned variants, so SFT variants need no special case downstream.
    """
    return list(names)


def model_architecture(config: Mapping[str, Any], name: str) -> str | None:
    """The architecture of a model name (scratch, replicate or derived variant); None for hub models."""
    name = replicate_models(config).get(name, (name, None))[0]
    spec = config["models"].get(name)
    if spec is None:
        raise KeyError(f"unknown model {name!r}")
    return spec.get("architecture") if spec["source"] == "scratch" else None


def fewshot_seed(config: Mapping[str, Any]) -> int:
    return int(config["evaluation"].get("fewshot_seed", config["seed"]))

"""Study configuration: schema validation, defaults, and derived selections.

The config is validated against ``attnlab/schemas/config.schema.yaml`` (JSON
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
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import jsonschema
import yaml

from attnlab.models.architectures import architecture_names
from attnlab.paths import SCHEMA_PATH

#: test items per dataset for each size preset (``None`` = every item)
PRESET_SAMPLES: dict[str, int | None] = {"quick": 20, "standard": 200, "full": None}

#: stages that exist in this release; the others are rejected when switched on
IMPLEMENTED_STAGES: frozenset[str] = frozenset({"sft", "attention"})
STAGE_FLAGS = {"skip_sft": "sft", "skip_attention": "attention"}

CLEAN = "clean"


class ConfigError(ValueError):
    """An invalid study configuration; the message names the key."""


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict (an empty file is an error).

    Read strictly (:func:`attnlab.yamlload.load_yaml_file`): a duplicate key, bad YAML or a non-UTF-8
    byte is a :class:`ConfigError` ``FILE: line N: what``.
    """
    from attnlab.yamlload import YAMLFileError, load_yaml_file

    try:
        data = load_yaml_file(path)
    except YAMLFileError as err:
        raise ConfigError(str(err)) from None
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
    from attnlab.schema_messages import readable_message

    validator = jsonschema.Draft202012Validator(schema)
    lines: list[str] = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        for leaf in _leaf_errors(error) if readable_message(error, lambda s: _resolve(s, schema)) is None else [error]:
            readable = readable_message(leaf, lambda s: _resolve(s, schema))
            line = f"config key '{_key(leaf.absolute_path)}': {readable}" if readable else _describe(leaf)
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


@lru_cache(maxsize=1)
def _study_schema() -> dict[str, Any]:
    return load_schema()


def schema_defaults(*keys: str) -> dict[str, Any]:
    """The values the config schema fills into an empty object at ``keys``: the one source of every default.

    ``keys`` walk the schema's ``properties`` (``"*"``: the value schema of a map, ``additionalProperties``;
    a first key ``"$defs"`` names a shared definition), e.g. ``schema_defaults("sft", "recipes", "*", "lora")``
    or ``schema_defaults("$defs", "diffusion_generation")``. Returns a fresh copy.
    """
    root = _study_schema()
    node: Mapping[str, Any] = root
    for i, key in enumerate(keys):
        node = _resolve(node, root)
        if key == "$defs" and i == 0:
            node = root["$defs"]
        elif key == "*":
            node = node["additionalProperties"]
        else:
            node = node["properties"][key] if "properties" in node else node[key]
    node = _resolve(node, root)
    return fill_defaults(copy.deepcopy(node.get("default", {})), node, root)


def as_name_list(value: Any) -> list[str]:
    """A selection as typed in YAML (list) or on the command line (``a,b``)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


def import_plugins(config: Mapping[str, Any]) -> None:
    """Import the config's plugin modules (they register datasets and noise types).

    The working directory is put on ``sys.path`` first (as ``python -m`` does), so a plugin may be a
    ``.py`` file in the study's folder; every job imports the same modules (attnlab.tools.plugins).
    """
    import os
    import sys

    if config.get("plugins") and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
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
    for stage_errors in (
        _sft_errors, _attention_errors, _needle_errors, _attribution_errors, _perturbation_errors, _mdlm_errors,
        _validation_errors, _cross_field_errors, _attribution_path_errors, _needle_hub_context_errors,
        _robustness_errors,
    ):
        errors += stage_errors(config)
    for name, spec in config["models"].items():
        if spec["source"] == "scratch" and spec["architecture"] in architecture_names(attention=True):
            if "num_heads" not in spec:
                errors.append(f"config key 'models.{name}.num_heads': required for architecture {spec['architecture']}")
            elif spec["hidden_size"] % spec["num_heads"]:
                errors.append(f"config key 'models.{name}.num_heads': must divide hidden_size {spec['hidden_size']}")
            elif spec["architecture"] == "diffllama" and spec["num_heads"] % 2:
                errors.append(f"config key 'models.{name}.num_heads': must be even for diffllama (head pairs)")
    return errors


# --- per-stage semantic checks (what a schema cannot express) ----------------


def _sft_errors(config: Mapping[str, Any]) -> list[str]:
    """SFT: models, recipes, datasets and noise types named by the ``sft`` section exist."""
    if config.get("skip_sft", True):
        return []
    from attnlab.data.registry import available_noise_types

    errors: list[str] = []
    sft = config.get("sft", {})
    if not sft.get("models"):
        errors.append("config key 'sft.models': list the models to fine-tune (skip_sft is false)")
    if not sft.get("recipes"):
        errors.append("config key 'sft.recipes': define at least one recipe (skip_sft is false)")
    known = {*config["models"], *replicate_models(config)}
    for i, model in enumerate(sft.get("models", [])):
        if model not in known:
            errors.append(f"config key 'sft.models.{i}': {model!r} is not a configured model ({sorted(known)})")
        elif model_architecture(config, model) in SFT_UNSUPPORTED_ARCHITECTURES:
            errors.append(
                f"config key 'sft.models.{i}': {model!r} has architecture {model_architecture(config, model)!r}; "
                "SFT supports causal LMs only (not masked diffusion)"
            )
    noise_types = set(available_noise_types())
    for name, recipe in sft.get("recipes", {}).items():
        where = f"sft.recipes.{name}"
        dataset = recipe["dataset"]
        if dataset not in config["datasets"]:
            errors.append(f"config key '{where}.dataset': {dataset!r} is not a configured dataset")
        elif not has_train_split(config["datasets"][dataset]):
            errors.append(f"config key '{where}.dataset': dataset {dataset!r} has no train split (set train_path)")
        for noise in recipe["noise_mix"]:
            if noise not in noise_types:
                errors.append(
                    f"config key '{where}.noise_mix.{noise}': unknown noise type (registered: {sorted(noise_types)})"
                )
        if sum(recipe["noise_mix"].values()) <= 0:
            errors.append(f"config key '{where}.noise_mix': the proportions must not all be 0")
        if recipe["method"] == "full" and recipe.get("lora") not in (None, {}, schema_defaults("sft", "recipes", "*", "lora")):
            errors.append(f"config key '{where}.lora': set method: lora to use LoRA settings")
    return errors


def _attention_errors(config: Mapping[str, Any]) -> list[str]:
    """Attention stage (research question 2): measured models exist and have attention the stage can capture."""
    if config.get("skip_attention", True):
        return []
    errors: list[str] = []
    section = config.get("attention", {})
    for name in as_name_list(section.get("models")):
        spec = config["models"].get(name)
        if spec is None:
            errors.append(f"config key 'attention.models': {name!r} is not a configured model ({sorted(config['models'])})")
        elif spec["source"] == "scratch" and spec["architecture"] not in ATTENTION_ARCHITECTURES:
            errors.append(
                f"config key 'attention.models': {name!r} is a {spec['architecture']} model, which has no attention "
                f"to measure (supported: {', '.join(ATTENTION_ARCHITECTURES)})"
            )
        elif spec["source"] == "hub" and uses_diffusion_generation(spec):
            errors.append(
                f"config key 'attention.models': {name!r} is a hub diffusion model (custom modeling code); the "
                "attention stage captures llama, diffllama, gpt2 and the project's mdlm only"
            )
    if not errors and not attention_models(config):
        errors.append(
            "config key 'attention.models': no model to measure (skip_attention is false; configure a model with "
            f"attention: {', '.join(ATTENTION_ARCHITECTURES)} or a hub model)"
        )
    return errors


# --- attention: helpers of the attention-allocation stage (research question 2) ------

#: scratch architectures whose attention the stage captures (mdlm: Llama modules, non-causal)
ATTENTION_ARCHITECTURES: tuple[str, ...] = architecture_names(attention=True)


def attention_models(config: Mapping[str, Any]) -> list[str]:
    """Models the attention stage measures: ``attention.models`` (default: every configured model whose architecture
    has attention, and hub models other than diffusion ones), restricted to ``select_models``, plus SFT variants."""
    section = config.get("attention", {})
    names = as_name_list(section.get("models")) or [
        m for m, spec in config["models"].items()
        if (spec["source"] == "hub" and not uses_diffusion_generation(spec))
        or (spec["source"] == "scratch" and spec["architecture"] in ATTENTION_ARCHITECTURES)
    ]
    selected = set(selected_models(config))
    bases = [m for m in names if m in selected]
    return model_variants(config, bases + evaluated_replicates(config, bases))


def attention_spec(config: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON spec of ``attnlab attention measure`` (what changes its results)."""
    section = config["attention"]
    spec = {
        "items": section["items"],
        "query_scopes": list(section["query_scopes"]),
        "token_map_items": section["token_map_items"],
    }
    if "generated" in section["query_scopes"]:  # greedy continuation: evaluation's stop sequences
        spec["max_new_tokens"] = section["max_new_tokens"]
        spec["stop_sequences"] = list(config["evaluation"]["stop_sequences"])
    return spec


def _needle_errors(config: Mapping[str, Any]) -> list[str]:
    """Needle stage: probed models exist and have causal attention; contexts fit the scratch models."""
    errors: list[str] = []
    extra = (config.get("pretrain") or {}).get("extra_corpora", [])
    if "needle" in extra and "needle" not in config:
        errors.append("config key 'pretrain.extra_corpora': lists needle, but the config has no 'needle' section")
    if "needle" not in config:
        return errors
    section = config["needle"]
    for name in as_name_list(section.get("models")):
        spec = config["models"].get(name)
        if spec is None:
            errors.append(f"config key 'needle.models': {name!r} is not a configured model")
        elif spec["source"] == "scratch" and spec["architecture"] not in NEEDLE_ARCHITECTURES:
            errors.append(
                f"config key 'needle.models': {name!r} is a {spec['architecture']} model; the needle probe needs "
                f"causal attention ({', '.join(NEEDLE_ARCHITECTURES)})"
            )
    if not errors and not needle_models(config):
        errors.append("config key 'needle': no model to probe (set needle.models or configure a scratch llama/diffllama/gpt2)")
    widest = max(section["context_lengths"]) + (max(section["n_needles"]) - 1) * section["context_per_needle"]
    longest = widest + section["max_new_tokens"]
    block = (config.get("pretrain") or {}).get("max_length")
    for name in dict.fromkeys(spec["base"] for spec in needle_models(config).values()) if not errors else ():
        spec = config["models"][name]
        if spec["source"] == "scratch" and longest > spec.get("max_position_embeddings", 512):
            errors.append(
                f"config key 'needle.context_lengths': the longest cell ({widest} tokens: context_lengths + "
                f"(n_needles - 1) x context_per_needle) + max_new_tokens {section['max_new_tokens']} exceed "
                f"models.{name}.max_position_embeddings ({spec.get('max_position_embeddings', 512)})"
            )
        elif spec["source"] == "scratch" and block is not None and longest > block:
            key = "needle.context_per_needle" if section["context_per_needle"] else "needle.context_lengths"
            errors.append(
                f"config key '{key}': the longest cell ({widest} tokens: context_lengths + "
                f"(n_needles - 1) x context_per_needle) + max_new_tokens {section['max_new_tokens']} exceed "
                f"pretrain.max_length ({block}), the positions models.{name} was trained on"
            )
    corpus = section["corpus"]
    if corpus["min_chars"] > corpus["max_chars"]:
        errors.append(
            f"config key 'needle.corpus.min_chars': {corpus['min_chars']} exceeds needle.corpus.max_chars {corpus['max_chars']}"
        )
    return errors


# --- needle: helpers of the needle-in-a-haystack stage (research question 2) --------

#: scratch architectures the needle probe runs on (causal attention it can capture)
NEEDLE_ARCHITECTURES: tuple[str, ...] = architecture_names(attention=True, causal=True)


def needle_enabled(config: Mapping[str, Any]) -> bool:
    """The needle stage runs when the config has a ``needle`` section."""
    return "needle" in config


def needle_models(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Models the needle stage probes: ``{name: {"base", "seed", "architecture"}}``, bases first, then replicates.

    Bases are ``needle.models``, or (empty) every selected scratch model with causal attention; each base's
    training-seed replicates (``pretrain.replicates``) follow, so results can be pooled over seeds.
    ``architecture`` is the scratch architecture, or None for a hub model.
    """
    if "needle" not in config:
        return {}
    bases = as_name_list(config["needle"].get("models")) or [
        m
        for m in selected_models(config)
        if config["models"][m]["source"] == "scratch" and config["models"][m]["architecture"] in NEEDLE_ARCHITECTURES
    ]
    out = {
        b: {"base": b, "seed": int(config["seed"]), "architecture": config["models"].get(b, {}).get("architecture")}
        for b in bases
    }
    for name, (base, seed) in replicate_models(config).items():
        if base in out:
            out[name] = {"base": base, "seed": int(seed), "architecture": out[base]["architecture"]}
    return out


def needle_probe_spec(config: Mapping[str, Any]) -> dict[str, Any]:
    """The needle settings that change a model's probe results (items, decoding); not the aggregation's."""
    keys = ("context_lengths", "context_per_needle", "depth_tolerance", "depths", "n_needles", "items_per_cell",
            "number_digits", "haystack", "batch_size", "max_new_tokens")
    return {k: config["needle"][k] for k in keys}


def needle_corpus_spec(config: Mapping[str, Any]) -> dict[str, Any]:
    """The needle settings that change the pretraining corpus of needle episodes."""
    return {**config["needle"]["corpus"], "number_digits": config["needle"]["number_digits"],
            "haystack": config["needle"]["haystack"]}


def needle_aggregate_spec(config: Mapping[str, Any]) -> dict[str, Any]:
    """The needle settings of the depth table (query scope, noise classes, bootstrap)."""
    section = config["needle"]
    return {"query_scope": section["query_scope"], "noise_classes": section["noise_classes"], **section["bootstrap"]}


def _attribution_errors(config: Mapping[str, Any]) -> list[str]:
    section = config.get("attribution")
    if section is None:
        return []
    errors: list[str] = []
    if section.get("models") is not None:
        for name in as_name_list(section["models"]):
            if name not in config["models"]:
                errors.append(f"config key 'attribution.models': {name!r} is not a configured model")
                continue
            arch = model_architecture(config, name)
            if arch is not None and arch not in ATTRIBUTION_ARCHITECTURES:
                errors.append(
                    f"config key 'attribution.models': {name!r} has architecture {arch!r}, which has no attention heads "
                    f"to gate (supported: {', '.join(sorted(ATTRIBUTION_ARCHITECTURES))})"
                )
    universe = [CLEAN, *config["noise"]["types"]]
    for name in as_name_list(section["variants"]):
        if name not in universe:
            errors.append(f"config key 'attribution.variants': {name!r} is not one of {universe}")
    if section["quadrature"] == "trapezoid" and section["ig_steps"] < 2:
        errors.append("config key 'attribution.ig_steps': the trapezoid quadrature needs at least 2 steps")
    first, last = section["layers"]["first"], section["layers"]["last"]
    if last is not None and last < first:
        errors.append(f"config key 'attribution.layers.last': {last} is before layers.first {first}")
    for name in attribution_base_models(config):
        spec = config["models"][name]
        if spec["source"] == "scratch" and max(first, last if last is not None else 0) >= spec["num_layers"]:
            errors.append(
                f"config key 'attribution.layers': layers {first}..{last} do not fit model {name!r} "
                f"({spec['num_layers']} layers, 0..{spec['num_layers'] - 1})"
            )
    return errors


# --- attribution: HeadIG head attribution (research question 3) --------------------------
# Pure helpers for workflow/rules/attribution.smk and the attribution CLI.

#: scratch architectures whose attention heads the gates of attnlab.attribution.gates handle
ATTRIBUTION_ARCHITECTURES: frozenset[str] = frozenset(architecture_names(attention=True))
#: config keys of the `attribution` section that change a method's scores (besides the objective)
ATTRIBUTION_METHOD_KEYS: dict[str, tuple[str, ...]] = {
    "dp": ("baseline", "ig_steps", "quadrature", "postprocess"),
    "stp": ("baseline", "ig_steps", "quadrature", "path_samples", "postprocess"),
    "michel": (),
}


def attribution_enabled(config: Mapping[str, Any]) -> bool:
    """The attribution stage runs when the config has an ``attribution`` section."""
    return config.get("attribution") is not None


def attribution_base_models(config: Mapping[str, Any]) -> list[str]:
    """The configured (selected) models that are attributed: ``attribution.models`` or, when null, every
    selected model with a gated scratch architecture (llama, diffllama, gpt2, mdlm)."""
    if not attribution_enabled(config):
        return []
    chosen = config["attribution"].get("models")
    selected = selected_models(config)
    if chosen is None:
        return [
            m for m in selected
            if config["models"][m]["source"] == "scratch" and config["models"][m]["architecture"] in ATTRIBUTION_ARCHITECTURES
        ]
    names = set(as_name_list(chosen))
    return [m for m in selected if m in names]


def attribution_models(config: Mapping[str, Any]) -> list[str]:
    """The attributed models: the base models followed by their SFT variants."""
    return model_variants(config, attribution_base_models(config))


def attribution_job_spec(config: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The settings that decide one model's score files — and nothing else: the methods' path keys only for
    configured methods, ``mask_probs``/``mask_samples_per_prob`` only for masked-diffusion (or hub) models, so
    that e.g. a new ``mask_probs`` reruns only the mdlm job. One job computes every method of a model (the model
    is loaded and the items tokenized once; the per-job start-up costs more than a small model's attribution)."""
    section = config["attribution"]
    objective = dict(section["objective"])
    if model_architecture(config, model) not in (None, "mdlm"):
        objective.pop("mask_probs", None)
        objective.pop("mask_samples_per_prob", None)
    spec: dict[str, Any] = {
        "methods": list(section["methods"]),
        "items": section["items"],
        "layers": dict(section["layers"]),
        "objective": objective,
        "dtype": section["dtype"],
        "seed": int(section.get("seed", config["seed"])),
        "batch_rows": section["batch_rows"],
    }
    for method in section["methods"]:
        spec.update({key: section[key] for key in ATTRIBUTION_METHOD_KEYS[method]})
    return spec


def _perturbation_errors(config: Mapping[str, Any]) -> list[str]:
    section = config.get("perturbation")
    if section is None:
        return []
    from attnlab.perturbation.relations import RelationsError, load_relations, split_probes

    errors: list[str] = []
    analysable = set(architecture_names(causal=True))
    for i, name in enumerate(section["models"]):
        spec = config["models"].get(name)
        if spec is None:
            errors.append(f"config key 'perturbation.models.{i}': {name!r} is not one of {sorted(config['models'])}")
        elif spec["source"] == "scratch" and spec["architecture"] not in analysable:
            errors.append(
                f"config key 'perturbation.models.{i}': architecture {spec['architecture']!r} of {name!r} is not "
                f"analysable (causal LMs only: {sorted(analysable)})"
            )
        elif spec["source"] == "scratch":
            for key in ("layers",):
                bad = [x for x in section[key] or [] if x >= spec["num_layers"]]
                jac_bad = [x for x in section["jacobian"]["layers"] or [] if x >= spec["num_layers"]]
                if bad or jac_bad:
                    errors.append(
                        f"config key 'perturbation.{key if bad else 'jacobian.layers'}': layer(s) {bad or jac_bad} "
                        f"out of range for {name!r} with {spec['num_layers']} layers"
                    )
    sources = {config["models"][m]["source"] for m in section["models"] if m in config["models"]}
    kbs = {("relations." + s, section["relations"][s]) for s in sources}
    for key, kb in sorted(kbs):
        try:
            relations = load_relations(kb)
        except (FileNotFoundError, RelationsError) as err:
            errors.append(f"config key 'perturbation.{key}': {err}")
            continue
        missing = [r for r in section["relation_names"] or [] if r not in relations]
        if missing:
            errors.append(f"config key 'perturbation.relation_names': {missing} not in knowledge base {kb!r}")
            continue
        try:
            split_probes(relations, section["relation_names"], section["max_facts"], section["templates"],
                         section["selection_templates"])  # fmt: skip
        except (IndexError, ValueError) as err:
            message = str(err).strip("'\"")
            errors.append(f"config key 'perturbation.templates' / 'perturbation.selection_templates': {message} "
                          f"(knowledge base {kb!r})")  # fmt: skip
    if "facts" in (config.get("pretrain") or {}).get("extra_corpora", []):
        try:
            load_relations(section["corpus"]["relations"])
        except (FileNotFoundError, RelationsError) as err:
            errors.append(f"config key 'perturbation.corpus.relations': {err}")
    if not errors:
        errors += _jacobian_errors(config)
    return errors


# --- checks against the models' own configs and tokenizers (what a job would otherwise find hours in) ----------


def hub_model_files(config: Mapping[str, Any], name: str) -> Path | None:
    """The folder holding a hub entry's ``config.json`` and tokenizer when it is on this machine: a local folder,
    or the Hugging Face cache snapshot (its ``subfolder``); ``None`` for scratch models and uncached ids."""
    from attnlab.tools.hfcache import cached_model_snapshot, hub_cache_dir, is_local_path

    spec = model_entry(config, name)
    if spec["source"] != "hub":
        return None
    subfolder = spec.get("subfolder")
    if is_local_path(spec["id"]):
        folder = Path(spec["id"]).expanduser()
    else:
        root = (config.get("prefetch") or {}).get("hf_cache_dir")
        snapshot = cached_model_snapshot(spec["id"], spec.get("revision", "main"), hub_cache_dir(root), subfolder)
        if snapshot is None:
            return None
        folder = snapshot
    folder = folder / subfolder if subfolder else folder
    return folder if (folder / "config.json").is_file() else None


def _hub_config_field(config: Mapping[str, Any], name: str, keys: tuple[str, ...]) -> int | None:
    """The first integer of ``keys`` in a hub entry's cached ``config.json`` (``None``: not cached / not there)."""
    import json

    folder = hub_model_files(config, name)
    if folder is None:
        return None
    try:
        fields = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for key in keys:
        if isinstance(fields.get(key), int):
            return int(fields[key])
    return None


def model_hidden_size(config: Mapping[str, Any], name: str) -> int | None:
    """The residual width of a model: ``hidden_size`` of a scratch entry, or of a hub entry's cached ``config.json``
    (``hidden_size`` / GPT-2's ``n_embd`` / ``d_model``); ``None`` when it cannot be known before the job."""
    spec = model_entry(config, name)
    if spec["source"] == "scratch":
        return int(spec["hidden_size"])
    return _hub_config_field(config, name, ("hidden_size", "n_embd", "d_model"))


def _needle_hub_context_errors(config: Mapping[str, Any]) -> list[str]:
    """Needle contexts + answer fit the positions of the probed hub models whose config is cached
    (``max_position_embeddings`` / GPT-2's ``n_positions``); scratch models are checked by :func:`_needle_errors`."""
    if "needle" not in config or _needle_errors(config):
        return []
    section = config["needle"]
    longest = max(section["context_lengths"]) + section["max_new_tokens"]
    errors = []
    for name in dict.fromkeys(spec["base"] for spec in needle_models(config).values()):
        if config["models"][name]["source"] != "hub":
            continue
        positions = _hub_config_field(config, name, ("max_position_embeddings", "n_positions"))
        if positions is not None and longest > positions:
            errors.append(
                f"config key 'needle.context_lengths': {max(section['context_lengths'])} tokens + max_new_tokens "
                f"{section['max_new_tokens']} exceed the {positions} positions of {name!r} (its config.json)"
            )
    return errors


def _token_count(folder: Path | None, texts: list[str]) -> tuple[int, bool]:
    """Tokens of ``texts`` with special tokens, as the job counts them: exact with the model's ``tokenizer.json``
    (``tokenizers``, the file the job's fast tokenizer reads), else an upper bound — UTF-8 bytes + 2 per text —
    that holds for byte-level BPE (every token covers ≥ 1 byte; at most a bos and an eos are added).
    Returns ``(count, exact)``."""
    if folder is not None and (folder / "tokenizer.json").is_file():
        try:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
            return sum(len(tokenizer.encode(t).ids) for t in texts), True
        except Exception:  # an unreadable file: fall back to the bound, the job reports the real problem
            pass
    return sum(len(t.encode("utf-8")) + 2 for t in texts), False


def _jacobian_errors(config: Mapping[str, Any]) -> list[str]:
    """The Jacobian job's preconditions (:func:`attnlab.perturbation.jacobian.run_jacobian`): ``num_texts`` distinct
    probe sentences exist, and they hold ≥ ``hidden_size`` real tokens for the effective rank of the token hidden
    states (an N × d matrix has rank ≤ min(N, d)) — checked for every model whose width is known (scratch entries,
    hub entries whose config is cached), with the same seeded draw as the job."""
    from attnlab.perturbation.relations import load_relations, sample_texts, split_probes

    section = config["perturbation"]
    num_texts = int(section["jacobian"]["num_texts"])
    errors: list[str] = []
    sentences: dict[str, list[str]] = {}
    for name in section["models"]:
        if name not in config["models"]:
            continue
        source = "scratch" if config["models"][name]["source"] == "scratch" else "hub"
        kb = section["relations"][source]
        if kb not in sentences:
            probes, _ = split_probes(load_relations(kb), section["relation_names"], section["max_facts"],
                                     section["templates"], section["selection_templates"])  # fmt: skip
            sentences[kb] = list(probes["sentence"])
            if num_texts > len(sentences[kb]):
                errors.append(
                    f"config key 'perturbation.jacobian.num_texts': {num_texts} texts, but the probes of knowledge base "
                    f"{kb!r} (perturbation.relation_names / max_facts / templates) have only {len(sentences[kb])} sentences"
                )
        if num_texts > len(sentences[kb]):
            continue
        hidden = model_hidden_size(config, name)
        if hidden is None:
            continue
        texts = sample_texts(sentences[kb], num_texts, int(config["seed"]))
        tokens, exact = _token_count(hub_model_files(config, name), texts)
        if tokens < hidden:
            counted = f"{tokens} tokens" if exact else f"at most {tokens} tokens (UTF-8 bytes + 2 per text)"
            errors.append(
                f"config key 'perturbation.jacobian.num_texts': model {name!r} has hidden_size {hidden}; the effective "
                f"rank needs at least that many tokens, but {num_texts} texts of {kb!r} have {counted} "
                f"(raise num_texts to about {num_texts * hidden // max(tokens, 1) + 1})"
            )
    return errors


def _attribution_path_errors(config: Mapping[str, Any]) -> list[str]:
    """The stochastic-threshold path (stp) differs from the diagonal path (dp) only at interior points 0 < τ < 1
    (γ(0) = α₀ and γ(1) = 1 on both): a τ grid with no interior point — riemann_right with 1 step, trapezoid with
    2 — makes stp the dp integral, so stp would duplicate dp under another name."""
    section = config.get("attribution")
    if section is None or "stp" not in section["methods"]:
        return []
    interior = section["ig_steps"] - 1  # riemann_right: k/m, k=1..m-1; trapezoid: k/(m-1), k=1..m-2 (+ both ends)
    if section["quadrature"] == "trapezoid":
        interior = section["ig_steps"] - 2
    if interior < 1:
        return [
            f"config key 'attribution.ig_steps': {section['ig_steps']} step(s) with quadrature {section['quadrature']!r} "
            "evaluate the path only at τ = 0 and τ = 1, where the stochastic-threshold path equals the diagonal one, "
            "so stp would repeat dp; use at least "
            f"{3 if section['quadrature'] == 'trapezoid' else 2} steps or drop stp from attribution.methods"
        ]
    return []



def _cross_field_errors(config: Mapping[str, Any]) -> list[str]:
    """Checks across keys (hub name grammar, head/width divisibility, lengths vs positions, seed range):
    :mod:`attnlab.config_checks`."""
    from attnlab.config_checks import cross_field_errors

    return cross_field_errors(config)


def _robustness_errors(config: Mapping[str, Any]) -> list[str]:
    """Checks of the robustness-difference pairs; they live in :mod:`attnlab.report.settings`."""
    from attnlab.report.settings import robustness_errors

    return robustness_errors(config)


def _validation_errors(config: Mapping[str, Any]) -> list[str]:
    """Validation stage checks (research question 3); they live in :mod:`attnlab.validation.settings`."""
    from attnlab.validation.settings import validation_errors

    return validation_errors(config)


# --- mdlm (research question 3): masked diffusion LMs and their generation settings ----


def uses_diffusion_generation(model_spec: Mapping[str, Any]) -> bool:
    """Whether a model entry is answered by iterative unmasking: a scratch ``mdlm`` or a hub entry with
    ``generation: diffusion``."""
    if model_spec["source"] == "scratch":
        return model_spec.get("architecture") == "mdlm"
    return model_spec.get("generation", "greedy") == "diffusion"


def diffusion_settings(config: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """The iterative-unmasking settings of the model entry ``spec`` (its ``diffusion`` entry over the schema defaults, with
    ``answer_length`` defaulting to ``evaluation.max_new_tokens``), or ``None`` for a greedily decoded model.

    This is the ``diffusion`` key of the eval spec the evaluate rule passes (see
    :func:`attnlab.evaluate.diffusion.normalize_diffusion_spec`).
    """
    if not uses_diffusion_generation(spec):
        return None
    settings = {**schema_defaults("$defs", "diffusion_generation"), **spec.get("diffusion", {})}
    settings.setdefault("answer_length", int(config["evaluation"]["max_new_tokens"]))
    settings.setdefault("steps", settings["answer_length"])
    return settings


def _mdlm_errors(config: Mapping[str, Any]) -> list[str]:
    """``diffusion`` only on models answered by unmasking; block_length divides answer_length; steps a multiple of
    the number of blocks and at most answer_length."""
    errors: list[str] = []
    for name, spec in config["models"].items():
        where = f"models.{name}.diffusion"
        if not uses_diffusion_generation(spec):
            if "diffusion" in spec:
                errors.append(
                    f"config key '{where}': only for architecture mdlm or hub models with generation: diffusion"
                )
            continue
        settings = diffusion_settings(config, spec)
        answer, block, steps = settings["answer_length"], settings["block_length"], settings["steps"]
        if answer % block:
            errors.append(f"config key '{where}.block_length': {block} does not divide answer_length {answer}")
        elif steps % (answer // block):
            errors.append(f"config key '{where}.steps': {steps} is not a multiple of the {answer // block} blocks")
        if steps > answer:
            errors.append(f"config key '{where}.steps': {steps} exceeds answer_length {answer} (≤ 1 token a step)")
        block_length = (config.get("pretrain") or {}).get("max_length")
        if spec.get("source") == "scratch" and block_length is not None and answer >= block_length:
            errors.append(
                f"config key '{where}.answer_length': {answer} answer positions leave no room for a prompt inside the "
                f"{block_length} positions the model is trained on (pretrain.max_length); every prompt + "
                "answer_length must fit them (checked per item before generation)"
            )
        init = spec.get("init")
        if init is not None:
            source = config["models"].get(init["from"])
            if source is None or source.get("source") != "scratch" or source.get("architecture") != "llama":
                errors.append(f"config key 'models.{name}.init.from': {init['from']!r} is not a scratch llama model of this study")
            else:
                different = [k for k in SIZE_KEYS_OF_INIT if source.get(k) != spec.get(k)]
                if different:
                    errors.append(
                        f"config key 'models.{name}': {', '.join(different)} differ from models.{init['from']} "
                        "(an mdlm initialised from a llama has its size fields)"
                    )
    for name, spec in config["models"].items():
        if "init" in spec and not (spec.get("source") == "scratch" and spec.get("architecture") == "mdlm"):
            errors.append(f"config key 'models.{name}.init': only for scratch mdlm models")
    return errors


#: size fields an mdlm initialised from a llama must share with it
SIZE_KEYS_OF_INIT: tuple[str, ...] = (
    "hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size", "max_position_embeddings",
)


def diffusion_init_source(config: Mapping[str, Any], model: str) -> str | None:
    """The scratch llama an mdlm entry is initialised from (``models.<model>.init.from``), else None."""
    init = config["models"].get(model, {}).get("init")
    return None if init is None else str(init["from"])


def diffusion_adaptation_spec(config: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The train spec of an mdlm initialised from a llama: the shared pretrain settings with the ``init`` entry's
    steps, learning rate, batch size, warm-up and loss, on the math problems only (no extra corpora), unpacked,
    each problem's answer padded with EOS to the model's ``diffusion.answer_length`` (the unmasking window)."""
    spec = config["models"][model]
    init = spec["init"]
    settings = diffusion_settings(config, spec)
    train = {k: v for k, v in config["pretrain"].items() if k != "replicates"}
    train.update(
        steps=init["steps"], learning_rate=init["learning_rate"], batch_size=init["batch_size"],
        warmup_steps=init["warmup_steps"], loss_on=init["loss_on"], packing=False, extra_corpora=[],
        eval_every=min(train["eval_every"], init["steps"]),
    )
    if init["loss_on"] == "answer":
        train["answer_window"] = settings["answer_length"]
    return train


#: how a boolean arrives from ``snakemake --config key=value`` (Snakemake passes ``true`` on as a string)
_COMMAND_LINE_BOOLEANS = {"true": True, "false": False}


def command_line_booleans(config: dict[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with the strings ``true`` / ``false`` (any case) of top-level boolean keys made booleans.

    ``snakemake --config skip_sft=true`` hands the workflow the string ``"true"``; any other string stays as it
    is, so the schema still rejects ``skip_sft=yes`` naming the key.
    """
    for key, sub in schema.get("properties", {}).items():
        value = config.get(key)
        if isinstance(value, str) and _resolve(sub, schema).get("type") == "boolean":
            config[key] = _COMMAND_LINE_BOOLEANS.get(value.lower(), value)
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
    config = command_line_booleans(copy.deepcopy(dict(config)), schema)
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


def evaluated_replicates(config: Mapping[str, Any], bases: Iterator[str] | list[str]) -> list[str]:
    """The training-seed replicates of ``bases`` that the study evaluates like their base models
    (``pretrain.replicates.evaluate``, default true), base by base, seeds in config order."""
    replicates = (config.get("pretrain") or {}).get("replicates") or {}
    if not replicates.get("evaluate", True):
        return []
    wanted = list(bases)
    return [name for base in wanted for name, (b, _) in replicate_models(config).items() if b == base]


def study_models(config: Mapping[str, Any]) -> list[str]:
    """Every model the study evaluates: the selected models, their evaluated training-seed replicates, then the
    SFT variants of both (one fine-tune per seed)."""
    selected = selected_models(config)
    return model_variants(config, selected + evaluated_replicates(config, selected))


def seed_groups(config: Mapping[str, Any], models: Sequence[str]) -> dict[str, list[tuple[str, int]]]:
    """``{pooled name: [(model, training seed), ...]}`` for every model of ``models`` that has evaluated replicates:
    a base (``llama`` -> llama, llama-seed1, ...) and each of its SFT variants (``llama+sft-noisy`` ->
    llama+sft-noisy, llama-seed1+sft-noisy, ...); only members present in ``models`` are listed."""
    present = set(models)
    replicates = replicate_models(config)
    groups: dict[str, list[tuple[str, int]]] = {}
    for name in models:
        parsed = parse_sft_name(name)
        base, suffix = (parsed[0], SFT_SEPARATOR + parsed[1]) if parsed else (name, "")
        if base in replicates:
            continue
        members = [(name, int(config["seed"]))] + [
            (rep + suffix, seed) for rep, (b, seed) in replicates.items() if b == base and rep + suffix in present
        ]
        if len(members) > 1:
            groups[name] = members
    return groups


def model_variants(config: Mapping[str, Any], names: Iterator[str] | list[str]) -> list[str]:
    """The given model names followed by their derived variants (SFT variants), in config order.

    A stage whose config section lists base models (``attention.models: [llama]``) runs on
    these and on their fine-tuned variants, so SFT variants need no special case downstream.
    """
    names = list(names)
    return names + sft_variants(config, names)


def model_architecture(config: Mapping[str, Any], name: str) -> str | None:
    """The architecture of a model name (scratch, replicate or derived variant); None for hub models."""
    parsed = parse_sft_name(name)
    if parsed is not None:
        return model_architecture(config, parsed[0])
    name = replicate_models(config).get(name, (name, None))[0]
    spec = config["models"].get(name)
    if spec is None:
        raise KeyError(f"unknown model {name!r}")
    return spec.get("architecture") if spec["source"] == "scratch" else None


def fewshot_seed(config: Mapping[str, Any]) -> int:
    return int(config["evaluation"].get("fewshot_seed", config["seed"]))


# --- sft: supervised fine-tuning -------------------------------------
# An SFT variant of model m with recipe r is named ``m+sft-r`` ('+' cannot occur in a
# configured name, so the split is unambiguous) and lives in results/models/m+sft-r/.

SFT_SEPARATOR = "+sft-"
#: training problems per recipe for each size preset when ``samples`` is null (None = the whole split)
SFT_PRESET_SAMPLES: dict[str, int | None] = {"quick": 200, "standard": 2000, "full": None}
#: architectures SFT does not handle (masked diffusion has no next-token loss)
SFT_UNSUPPORTED_ARCHITECTURES: frozenset[str] = frozenset(architecture_names(causal=False))


def sft_enabled(config: Mapping[str, Any]) -> bool:
    return not config.get("skip_sft", True)


def sft_variant_name(model: str, recipe: str) -> str:
    """``{model}+sft-{recipe}``."""
    return f"{model}{SFT_SEPARATOR}{recipe}"


def parse_sft_name(name: str) -> tuple[str, str] | None:
    """``(base model, recipe)`` of an SFT variant name, or None for any other name."""
    base, sep, recipe = name.partition(SFT_SEPARATOR)
    return (base, recipe) if sep and base and recipe else None


def sft_variants(config: Mapping[str, Any], names: Iterator[str] | list[str]) -> list[str]:
    """SFT variant names of those ``names`` listed in ``sft.models``, model by model, recipes in config order."""
    if not sft_enabled(config):
        return []
    sft = config.get("sft", {})
    chosen = set(sft.get("models", []))
    replicates = replicate_models(config)  # a replicate is fine-tuned when its base is
    return [
        sft_variant_name(m, r) for m in names if replicates.get(m, (m,))[0] in chosen for r in sft.get("recipes", {})
    ]


def sft_recipe(config: Mapping[str, Any], recipe: str) -> dict[str, Any]:
    """A recipe with its defaults resolved: ``seed`` (master seed if null) and ``samples`` (preset if null).

    ``samples`` stays None for the ``full`` preset (= every problem of the split).
    """
    spec = copy.deepcopy(dict(config["sft"]["recipes"][recipe]))
    if spec.get("seed") is None:
        spec["seed"] = int(config["seed"])
    if spec.get("samples") is None:
        spec["samples"] = SFT_PRESET_SAMPLES[config.get("preset", "standard")]
    if spec.get("method", "full") != "lora":
        spec.pop("lora", None)
    return spec


def sft_data_spec(config: Mapping[str, Any], recipe: str) -> dict[str, Any]:
    """The recipe keys that decide its training set (a change of only these rebuilds the set)."""
    spec = sft_recipe(config, recipe)
    return {k: spec[k] for k in ("dataset", "split", "noise_mix", "samples", "seed")}


def sft_model_spec(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The model entry of an SFT variant: ``source: sft``, its base, recipe and the base's loading options."""
    parsed = parse_sft_name(name)
    if parsed is None:
        raise KeyError(f"{name!r} is not an SFT variant name (model{SFT_SEPARATOR}recipe)")
    base, recipe = parsed
    base_spec = config["models"][replicate_models(config).get(base, (base, None))[0]]
    return {
        "source": "sft",
        "base": base,
        "base_source": base_spec["source"],
        "architecture": model_architecture(config, base),
        "recipe": recipe,
        "dtype": base_spec.get("dtype", "auto"),
        "trust_remote_code": bool(base_spec.get("trust_remote_code", False)),
        "sft": sft_recipe(config, recipe),
    }


def model_entry(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The config entry of any model name in MODELS: a configured model, a seed replicate (its base's
    entry) or an SFT variant (:func:`sft_model_spec`, ``source: sft``). Use it instead of
    ``config["models"][name]``, which fails for derived names."""
    if parse_sft_name(name) is not None:
        return sft_model_spec(config, name)
    base = replicate_models(config).get(name, (name, None))[0]
    if base not in config["models"]:
        raise KeyError(f"unknown model {name!r}")
    return dict(config["models"][base])

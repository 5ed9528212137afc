"""A study config as a file and as a schema: strict loading, the schema with its stage fragments, readable errors
naming the key, defaults filled only from the schema, and the plugin modules the config imports.

The config is validated against ``attnlab/schemas/config.schema.yaml`` (JSON Schema 2020-12), shipped with the
package, so an installed wheel checks a config away from the checkout.
"""

from __future__ import annotations

import copy
import importlib
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Mapping

import jsonschema
import yaml

from attnlab.paths import SCHEMA_PATH


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


"""Reading a config file strictly: duplicate keys, bad YAML and non-UTF-8 bytes are errors naming file and line.

PyYAML (like Snakemake's own config reader) keeps the *last* of two equal keys in a mapping, so a
config that defines ``models.llama`` twice silently loses the first entry. :func:`load_yaml_file`
composes the document, rejects any mapping with a repeated key — ``FILE: line 12: duplicate key
'models.llama' (first on line 5)`` — and only then constructs the data (safe types only). YAML merge
keys (``<<: *base``) are not duplicates: overriding a merged key is what they are for.

Every problem is a :class:`YAMLFileError` whose message is one line, ``FILE: line N: what``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

_MERGE_TAG = "tag:yaml.org,2002:merge"


class YAMLFileError(ValueError):
    """A YAML file that cannot be read as written; the message is ``FILE: line N: what``."""


def _duplicate_keys(node: yaml.Node, path: tuple[str, ...] = ()) -> tuple[str, int, int] | None:
    """(dotted key, line, first line) of the first repeated mapping key under ``node`` (1-based lines)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                return ".".join((*path, str(key))), line, seen[key]
            seen[key] = line
            found = _duplicate_keys(value_node, (*path, str(key)))
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found = _duplicate_keys(item, (*path, str(i)))
            if found:
                return found
    return None


def _line_of_offset(raw: bytes, offset: int) -> int:
    return raw[:offset].count(b"\n") + 1


def load_yaml_text(text: str, name: str | os.PathLike[str] = "<string>") -> Any:
    """The data of one YAML document, ``name`` naming it in errors (see the module docstring)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        duplicate = _duplicate_keys(node)
        if duplicate:
            key, line, first = duplicate
            raise YAMLFileError(f"{name}: line {line}: duplicate key '{key}' (first on line {first})")
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}" if mark is not None else "line ?"
        what = " ".join(str(part) for part in (err.context, err.problem) if part)
        raise YAMLFileError(f"{name}: {where}: invalid YAML: {what}") from None
    except yaml.YAMLError as err:
        raise YAMLFileError(f"{name}: invalid YAML: {err}") from None
    finally:
        loader.dispose()


def load_yaml_file(path: str | os.PathLike[str]) -> Any:
    """The data of the YAML file at ``path``, read strictly (see the module docstring)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise YAMLFileError(f"{path}: file not found") from None
    except OSError as err:
        raise YAMLFileError(f"{path}: cannot read: {err.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise YAMLFileError(
            f"{path}: line {_line_of_offset(raw, err.start)}: not UTF-8 (byte 0x{raw[err.start]:02x})"
        ) from None
    return load_yaml_text(text, path)

"""Readable lines for the schema errors whose jsonschema message says how the check failed, not what is wrong.

* ``oneOf`` with a ``null`` alternative (``max_samples: 0``): jsonschema picks the failing ``null`` branch
  ("0 is not of type 'null'"); this says what the key takes: "must be an integer ≥ 1, or null".
* ``oneOf`` of ``required`` alternatives (a GSM8K dataset's ``test_path`` / ``hub_id``): "give one of
  test_path, hub_id" — with "not both" when several are set.
* ``maxLength`` of a name: its length and the limit.
* ``minItems`` of an empty list whose schema has a description: "an empty list" and what the key is for.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jsonschema


def describe_schema(schema: Mapping[str, Any]) -> str | None:
    """A short phrase for a simple schema ("an integer ≥ 1", "a non-empty string"), or None."""
    kind = schema.get("type")
    if kind == "integer" or kind == "number":
        noun = "an integer" if kind == "integer" else "a number"
        bounds = []
        if "minimum" in schema:
            bounds.append(f"≥ {schema['minimum']}")
        if "exclusiveMinimum" in schema:
            bounds.append(f"> {schema['exclusiveMinimum']}")
        if "maximum" in schema:
            bounds.append(f"≤ {schema['maximum']}")
        return " ".join([noun, " and ".join(bounds)]).strip()
    if kind == "string":
        if "enum" in schema:
            return f"one of {', '.join(map(str, schema['enum']))}"
        return "a non-empty string" if schema.get("minLength", 0) >= 1 else "a string"
    if kind == "boolean":
        return "true or false"
    if kind == "array":
        return "a list"
    if "enum" in schema:
        return f"one of {', '.join(map(str, schema['enum']))}"
    return None


def readable_message(
    error: jsonschema.ValidationError, resolve: Callable[[Mapping[str, Any]], Mapping[str, Any]]
) -> str | None:
    """What is wrong, for the error kinds above (None: use jsonschema's own message).

    ``resolve`` follows a ``$ref`` to the schema it names.
    """
    if error.validator == "maxLength" and isinstance(error.instance, str):
        return f"{error.instance[:40]!r}… is {len(error.instance)} characters long; at most {error.validator_value}"
    if error.validator == "minItems" and error.instance == [] and error.schema.get("description"):
        return f"an empty list; the key lists {error.schema['description']}"
    if error.validator != "oneOf":
        return None
    alternatives = [resolve(a) for a in error.validator_value]
    if alternatives and all(set(a) == {"required"} for a in alternatives):
        keys = [k for a in alternatives for k in a["required"]]
        present = [k for k in keys if isinstance(error.instance, Mapping) and k in error.instance]
        if len(present) > 1:
            return f"give one of {', '.join(keys)}, not both ({', '.join(present)} are set)"
        return f"give one of {', '.join(keys)}"
    if any(a.get("type") == "null" for a in alternatives):
        others = [describe_schema(a) for a in alternatives if a.get("type") != "null"]
        if others and all(others):
            return f"{error.instance!r}: must be {', or '.join(others)}, or null"
    return None

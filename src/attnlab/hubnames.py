"""The grammar of Hugging Face hub names a config may give: repo ids, revisions, dataset config names.

Checked when the config is validated (:func:`hub_name_errors`), so a value that no hub could serve —
``gpt2$(touch X)``, an id with a space, a revision ``main; rm -r ~`` — is rejected with its key named,
before any job runs. (Every such value is also shell-quoted where a rule pastes it into a command.)

* **repo id** (``models.*.id``, ``datasets.*.hub_id``): ``name`` or ``namespace/name``, each part of
  letters, digits, ``-``, ``_``, ``.``, not starting or ending with ``-``/``.``, no ``--`` or ``..``,
  not ending in ``.git``, at most 96 characters — ``huggingface_hub.utils.validate_repo_id``.
  An ``id`` that names a local folder (:func:`attnlab.tools.hfcache.is_local_path`: it exists, starts
  with ``.``, ``/`` or ``~``, or has two or more ``/``) is a path, not a repo id, and is not held to it.
* **revision** (``models.*.revision``, ``datasets.*.revision``): a branch, tag or commit — a git ref
  name (``git check-ref-format``: no ``..``, ``//``, ``@{``; no part starting with ``.`` or ending in
  ``.lock``; not ending in ``/`` or ``.``) over the characters hub branch and tag names use: letters,
  digits, ``.``, ``_``, ``-`` and ``/`` (``refs/pr/1``), starting with a letter or digit; at most 255.
* **dataset config name** (``datasets.*.hub_config``): letters, digits, ``.``, ``_``, ``-``, ``+``,
  starting with a letter or digit (``main``, ``socratic``, ``20231101.en``); at most 128.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
_CONFIG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def repo_id_problem(value: str) -> str | None:
    """Why ``value`` is not a hub repo id (None if it is one)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(value)
    except HFValidationError:
        return (
            f"{value!r} is not a Hugging Face repo id ('name' or 'namespace/name' of letters, digits, '-', '_', '.'; "
            "at most 96 characters) nor a local folder ('./dir', '/abs/dir')"
        )
    return None


def revision_problem(value: str) -> str | None:
    """Why ``value`` is not a hub revision (branch, tag or commit; None if it is one)."""
    parts = value.split("/")
    if (
        len(value) > 255
        or not _REVISION.fullmatch(value)
        or ".." in value
        or "//" in value
        or value.endswith((".", "/"))
        or any(p.startswith(".") or p.endswith(".lock") for p in parts)
    ):
        return (
            f"{value!r} is not a branch, tag or commit name (letters, digits, '.', '_', '-', '/'; "
            "no '..', '//', trailing '/' or '.', no part starting with '.' or ending in '.lock')"
        )
    return None


def config_name_problem(value: str) -> str | None:
    """Why ``value`` is not a hub dataset config name (None if it is one)."""
    if len(value) > 128 or not _CONFIG_NAME.fullmatch(value):
        return f"{value!r} is not a dataset config name (letters, digits, '.', '_', '-', '+')"
    return None


def hub_name_errors(config: Mapping[str, Any]) -> list[str]:
    """Config errors (``config key 'models.x.id': ...``) for every hub name of ``config`` off its grammar."""
    from attnlab.tools.hfcache import is_local_path

    errors: list[str] = []
    for name, spec in config.get("models", {}).items():
        if spec.get("source") != "hub":
            continue
        if isinstance(spec.get("id"), str) and not is_local_path(spec["id"]):
            problem = repo_id_problem(spec["id"])
            if problem:
                errors.append(f"config key 'models.{name}.id': {problem}")
        if isinstance(spec.get("revision"), str) and (problem := revision_problem(spec["revision"])):
            errors.append(f"config key 'models.{name}.revision': {problem}")
    for name, spec in config.get("datasets", {}).items():
        checks = (("hub_id", repo_id_problem), ("revision", revision_problem), ("hub_config", config_name_problem))
        if "hub_id" not in spec:
            continue
        for key, check in checks:
            value = spec.get(key)
            if key == "hub_id" and isinstance(value, str) and is_local_path(value):
                continue
            if isinstance(value, str) and (problem := check(value)):
                errors.append(f"config key 'datasets.{name}.{key}': {problem}")
    return errors

"""Where attnlab finds its embedded resources and its config schema (package data, so an installed wheel has them)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = Path(__file__).resolve().parent

#: the study config schema: the main file plus one fragment per stage in ``stages/``
SCHEMA_PATH = PACKAGE_DIR / "schemas" / "config.schema.yaml"


def resources_dir() -> Path:
    """The resources folder (templates, noise banks, needle filler, knowledge bases): ``$ATTNLAB_RESOURCES`` if
    set, else the package's own ``attnlab/resources``.

    Raises:
        FileNotFoundError: if the folder does not exist.
    """
    path = Path(os.environ.get("ATTNLAB_RESOURCES", PACKAGE_DIR / "resources"))
    if not path.is_dir():
        raise FileNotFoundError(f"attnlab resources folder not found at {path} (ATTNLAB_RESOURCES)")
    return path

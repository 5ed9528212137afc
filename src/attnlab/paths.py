"""Where attnlab finds its embedded resources."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def resources_dir() -> Path:
    """The ``resources/`` folder: ``$ATTNLAB_RESOURCES`` if set, else the repository's.

    Raises:
        FileNotFoundError: if the folder does not exist (e.g. a wheel install
            without the repository); set ``ATTNLAB_RESOURCES`` then.
    """
    path = Path(os.environ.get("ATTNLAB_RESOURCES", REPO_ROOT / "resources"))
    if not path.is_dir():
        raise FileNotFoundError(
            f"attnlab resources folder not found at {path}; set ATTNLAB_RESOURCES to the repository's resources/"
        )
    return path

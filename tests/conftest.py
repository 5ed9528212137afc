"""Shared test settings: where the project's shared/ folder (real GSM8K) lies.

CI clones the repository with a copy of shared/ beside it, so the path is taken
relative to the checkout (``../shared``); ``ATTNLAB_SHARED`` overrides it.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ATTNLAB_SHARED", REPO.parent / "shared"))
GSM8K_DIR = SHARED / "datasets" / "gsm8k"

"""Plugin modules: user code that registers datasets and noise types, imported by every ``attnlab`` command.

A study lists its plugins in the config (``plugins: [my_noise]``); validation
imports them (:func:`attnlab.study.schema.import_plugins`), and the workflow passes the
list to every job through the environment variable ``ATTNLAB_PLUGINS``
(comma-separated module names; set at the end of ``workflow/rules/common.smk``),
so ``attnlab data noise --noise-type my_type`` finds the type in a job on any node.
By hand: ``attnlab --plugin my_noise data noise ...`` or ``ATTNLAB_PLUGINS=my_noise attnlab ...``.

A plugin is an importable module: installed, on ``PYTHONPATH``, or a ``.py`` file in
the current working directory (the Snakemake working directory for jobs) — the
working directory is put on ``sys.path`` for this import, as ``python -m`` would.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Iterable, Mapping

__all__ = ["PLUGINS_ENV", "PluginError", "import_plugins", "plugins_from_env"]

PLUGINS_ENV = "ATTNLAB_PLUGINS"


class PluginError(ImportError):
    """A plugin module could not be imported; the message names it."""


def plugins_from_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """The module names in ``ATTNLAB_PLUGINS`` (comma-separated; empty entries ignored)."""
    value = (os.environ if environ is None else environ).get(PLUGINS_ENV, "")
    return [name.strip() for name in value.split(",") if name.strip()]


def import_plugins(modules: Iterable[str], where: str = PLUGINS_ENV) -> None:
    """Import each module once (registration runs as a side effect of the import).

    Raises:
        PluginError: naming the module, ``where`` it was listed and the import error.
    """
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise PluginError(f"{where}: cannot import plugin module {module!r} (working directory {cwd}): {err}") from err

"""The model arguments every model-running command shares.

    --model LOCATION         a save_pretrained folder or a hub id (attnlab.models.loader.load_model)
    --device auto|cpu|cuda|cuda:N
    --dtype auto|float32|bfloat16|float16      (commands whose dtype comes from their spec have none)
    --revision REV           hub revision (commit or tag) of a hub model
    --subfolder DIR          folder inside the hub repository holding the model
    --trust-remote-code      allow the model's own code (opt-in)
    --threads N              torch CPU threads
"""

from __future__ import annotations

import argparse
from typing import Any


def add_model_arguments(parser: argparse.ArgumentParser, *, dtype: bool = True) -> None:
    """Add the shared model arguments (module docstring) to a subcommand's parser."""
    parser.add_argument("--model", required=True, help="local HF folder or hub id, loaded by attnlab.models.loader")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    if dtype:
        parser.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, float16 (default auto)")
    parser.add_argument("--revision", default=None, help="hub revision (commit / tag) of a hub model")
    parser.add_argument("--subfolder", default=None, help="folder inside the hub repository holding the model")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow the model's own code (opt-in)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def model_provenance(args: argparse.Namespace) -> dict[str, Any]:
    """The metadata every output of a model-running command records about its model: ``model_location`` (the
    ``--model`` folder or hub id) and ``revision`` (the hub revision, or None)."""
    return {"model_location": str(args.model), "revision": args.revision}

"""Shared test settings: where shared/ (real GSM8K) lies, a tiny model size, one-thread torch.

CI clones the repository with a copy of shared/ beside it, so the path is taken
relative to the checkout (``../shared``); ``ATTNLAB_SHARED`` overrides it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ATTNLAB_SHARED", REPO.parent / "shared"))
GSM8K_DIR = SHARED / "datasets" / "gsm8k"

#: size fields of a tiny scratch model, valid for every architecture (llama … mamba2)
TINY_SIZE = {
    "hidden_size": 32,
    "num_layers": 2,
    "num_heads": 4,
    "intermediate_size": 64,
    "max_position_embeddings": 128,
    "state_size": 8,
    "expand": 2,
    "head_dim": 16,
}


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a test module's tiny models on one torch thread, restoring the previous count after.

    Tiny models gain nothing from intra-op threads, and one thread keeps these tests fast on a
    busy 2-core machine (2 threads competing with other processes were >10x slower).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def ci_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """One real run of the whole DAG on configs/ci.yaml, shared by every workflow test.

    Returns (workdir, configfile, config). Tests must not modify the workdir's
    results (dry runs only); a test that needs to change outputs copies them.
    """
    from attnlab.study.schema import load_yaml
    from workflow_helpers import snakemake, write_config

    workdir = tmp_path_factory.mktemp("study")
    config = load_yaml(REPO / "configs" / "ci.yaml")
    configfile = write_config(workdir / "study.yaml", config)
    snakemake(workdir, configfile)
    return workdir, configfile, config

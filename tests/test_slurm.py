"""The tiny study on a real single-node SLURM cluster, through workflow/profiles/slurm.

Starts munged + slurmctld + slurmd on localhost (``slurm_cluster.Cluster``), runs
part of the CI study with ``--profile workflow/profiles/slurm`` and a test-only
profile layer (partition, squeue status queries), and checks that what the
cluster computed equals the local run of the same config: the same data bytes,
the same tokenizer, the same per-item evaluation.

Skipped, with the reason, where SLURM cannot be started (not root, packages not
installed); ``.ci/run`` installs the packages and sets ``ATTNLAB_REQUIRE_SLURM=1``,
which turns that skip into a failure.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from attnlab.io import read_parquet
from slurm_cluster import Cluster, why_unavailable
from workflow_helpers import REPO, SNAKEMAKE, write_config

pytestmark = [pytest.mark.workflow, pytest.mark.slurm]

#: what the cluster computes: data, tokenizer, one model, two of its evaluations
DATA_FILES = ["data/synthetic/train.parquet", "data/synthetic/clean.parquet", "data/synthetic/inf.parquet"]
EVAL_FILES = ["eval/llama/synthetic/clean.parquet", "eval/llama/synthetic/inf.parquet"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    reason = why_unavailable()
    if reason is not None:
        if os.environ.get("ATTNLAB_REQUIRE_SLURM") == "1":
            pytest.fail(f"ATTNLAB_REQUIRE_SLURM=1 but SLURM cannot start here: {reason}")
        pytest.skip(reason)
    cluster = Cluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def test_tiny_study_on_slurm_equals_the_local_run(cluster: Cluster, ci_study, tmp_path: Path) -> None:
    local_dir, _, config = ci_study
    workdir = tmp_path / "cluster-run"
    workdir.mkdir()
    configfile = write_config(workdir / "study.yaml", config)
    layer = tmp_path / "site-profile"
    layer.mkdir()
    # what a site adds on top of workflow/profiles/slurm: its partition, and squeue for job status
    # because this cluster has no accounting database (sacct answers "accounting storage is disabled")
    (layer / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "default-resources": {"slurm_partition": "debug", "mem_mb": 4000, "runtime": 30},
                "slurm-status-command": "squeue",
                "slurm-init-seconds-before-status-checks": 2,
                "slurm-logdir": str(tmp_path / "slurm-logs"),
            }
        )
    )
    targets = [f"results/{path}" for path in EVAL_FILES]
    cmd = [
        *SNAKEMAKE,
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir),
        "--configfile", str(configfile),
        "--profile", str(REPO / "workflow" / "profiles" / "slurm"),
        "--workflow-profile", str(layer),
        *targets,
    ]
    # SIGINT on timeout: the executor ignores SIGTERM while it waits for job status
    proc = subprocess.run(["timeout", "-s", "INT", "900", *cmd], capture_output=True, text=True, cwd=workdir)
    log = proc.stdout[-4000:] + proc.stderr[-8000:]
    assert proc.returncode == 0, log
    assert "slurm" in proc.stderr.lower() and "sbatch" in proc.stderr.lower() or "SLURM" in proc.stderr, log
    submitted = [line for line in proc.stderr.splitlines() if "submitted" in line.lower() and "slurm" in line.lower()]
    assert submitted, f"no job went through sbatch:\n{log}"

    cluster_results, local_results = workdir / "results", local_dir / "results"
    for path in DATA_FILES:
        assert (cluster_results / path).read_bytes() == (local_results / path).read_bytes(), path
    for name in sorted(p.name for p in (local_results / "tokenizer").iterdir()):
        assert (cluster_results / "tokenizer" / name).read_bytes() == (local_results / "tokenizer" / name).read_bytes()
    for path in EVAL_FILES:
        pd.testing.assert_frame_equal(read_parquet(cluster_results / path), read_parquet(local_results / path))
    # every job ran on the cluster: each left a benchmark file and a log under results/
    assert (cluster_results / "benchmarks" / "pretrain" / "llama.tsv").is_file()
    assert not (cluster_results / "models" / "diffllama").exists()

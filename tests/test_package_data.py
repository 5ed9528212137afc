"""The installed library carries its schema and resources: `attnlab config check` works from a wheel, away from
the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_config_check_from_an_installed_wheel(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(REPO)],
        capture_output=True, text=True,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = dist.glob("attnlab-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(site)
    assert "attnlab/schemas/config.schema.yaml" in names
    assert any(n.startswith("attnlab/schemas/stages/") for n in names)
    for resource in ("data/synthetic.yaml", "data/noise.yaml", "needle/filler.txt", "relations/fictional.yaml"):
        assert f"attnlab/resources/{resource}" in names

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(REPO / "config.yaml", elsewhere / "config.yaml")
    env = {k: v for k, v in os.environ.items() if k != "ATTNLAB_RESOURCES"}
    env["PYTHONPATH"] = str(site)  # the unpacked wheel shadows the checkout's editable install
    probe = (
        "import attnlab, attnlab.paths as p; "
        "print(attnlab.__file__); print(p.SCHEMA_PATH); print(p.resources_dir())"
    )
    where = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert where.returncode == 0, where.stderr[-3000:]
    assert all(line.startswith(str(site)) for line in where.stdout.split()), where.stdout
    check = subprocess.run(
        [sys.executable, "-m", "attnlab.cli", "config", "check", "config.yaml"],
        cwd=elsewhere, env=env, capture_output=True, text=True,
    )
    assert check.returncode == 0, check.stderr[-3000:]
    assert '"study"' in check.stdout

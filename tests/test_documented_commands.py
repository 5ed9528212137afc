"""Every ``snakemake`` command the README and the config headers show plans on the config it names.

The commands are read from the documents themselves — README.md (shell blocks and inline code) and the leading
comment lines of the Snakefile, config.yaml and configs/*.yaml — and each one runs as written with ``-n`` (a dry
run) in a copy of the checkout's configs, so a command the docs show and the workflow no longer accepts fails here.
Two kinds are not plans and are only recognised: ``--report`` (it reads a finished run) and ``--unlock``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workflow_helpers import REPO

pytestmark = pytest.mark.workflow

#: options of commands that do not plan a run, and why they are not dry-run here
NOT_PLANS = {"--report": "reads the results of a finished run", "--unlock": "removes a stale lock; plans nothing"}
#: files whose leading comment lines show commands, besides README.md
HEADER_FILES = ("Snakefile", "config.yaml", *(f"configs/{p.name}" for p in sorted((REPO / "configs").glob("*.yaml"))))


def _commands_in_line(line: str) -> list[str]:
    """The ``snakemake`` commands of one shell line: ``a && snakemake ...  # comment`` -> ``snakemake ...``."""
    line = re.sub(r"\s#\s.*$", "", line.strip())
    return [part.strip() for part in re.split(r"&&|;", line) if re.match(r"snakemake(\s|$)", part.strip())]


def readme_commands(text: str) -> list[str]:
    """Commands in README.md: every line of its shell code blocks, and every inline code span (which may wrap)."""
    commands: list[str] = []
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.M | re.S)
    for language, body in blocks:
        if language in ("", "bash", "sh", "shell", "console"):
            for line in body.splitlines():
                commands += _commands_in_line(line.removeprefix("$ "))
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    for span in re.findall(r"`([^`]+)`", prose):
        commands += _commands_in_line(" ".join(span.split()))
    return commands


def header_commands(text: str) -> list[str]:
    """Commands in a file's leading comment lines (``#   snakemake ...   # what it does``)."""
    commands: list[str] = []
    for line in text.splitlines():
        if not line.startswith("#"):
            if line.strip():
                break
            continue
        commands += _commands_in_line(line.lstrip("#"))
    return commands


def documented_commands() -> list[tuple[str, str]]:
    """(where, command) of every documented command, each command once, in document order."""
    found = [("README.md", c) for c in readme_commands((REPO / "README.md").read_text(encoding="utf-8"))]
    for name in HEADER_FILES:
        found += [(name, c) for c in header_commands((REPO / name).read_text(encoding="utf-8"))]
    seen: dict[str, str] = {}
    for where, command in found:
        seen.setdefault(command, where)
    return [(where, command) for command, where in seen.items()]


def site_profiles(text: str) -> dict[str, str]:
    """README YAML blocks that name their own file in a first comment line under ``~`` (a user's site profile)."""
    out = {}
    for language, body in re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.M | re.S):
        first = body.splitlines()[0] if body.strip() else ""
        match = re.match(r"#\s*(~/\S+)$", first)
        if language == "yaml" and match:
            out[match.group(1)] = body
    return out


COMMANDS = documented_commands()
PLANS = [(w, c) for w, c in COMMANDS if not any(flag in shlex.split(c) for flag in NOT_PLANS)]


def test_the_documents_show_the_commands_this_test_runs() -> None:
    commands = [c for _, c in COMMANDS]
    for expected in (
        "snakemake --cores 2 --config select_models=diffllama",
        "snakemake --cores 2 --config preset=quick max_samples= select_models=llama",
        "snakemake --cores 2 results/tables/accuracy.parquet --config sft=",
        "snakemake -n --configfile configs/paper.yaml",
        "snakemake --profile workflow/profiles/slurm --workflow-profile ~/.config/snakemake/mylab",
    ):
        assert expected in commands, expected
    assert len(PLANS) >= 20 and len(COMMANDS) - len(PLANS) >= 2
    assert site_profiles((REPO / "README.md").read_text(encoding="utf-8"))  # the site profile --workflow-profile names


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A folder laid out like the checkout for these commands (configs and profiles; the Snakefile is the repo's),
    and an environment whose home holds the README's site profile."""
    root = tmp_path_factory.mktemp("checkout")
    shutil.copy(REPO / "config.yaml", root / "config.yaml")
    shutil.copytree(REPO / "configs", root / "configs")
    shutil.copytree(REPO / "workflow" / "profiles", root / "workflow" / "profiles")
    home = root / "home"
    for path, body in site_profiles((REPO / "README.md").read_text(encoding="utf-8")).items():
        target = home / path.removeprefix("~/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body, encoding="utf-8")
    return root, {**os.environ, "HOME": str(home)}


@pytest.mark.parametrize(("where", "command"), PLANS, ids=[c for _, c in PLANS])
def test_a_documented_command_plans(checkout: tuple[Path, dict[str, str]], where: str, command: str) -> None:
    root, env = checkout
    home = env["HOME"]
    args = [home + a[1:] if a.startswith("~/") else a for a in shlex.split(command)[1:]]  # the shell expands ~
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "-n", *args],
        cwd=root, env=env, capture_output=True, text=True,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{where}: `{command}` does not plan:\n{output[-3000:]}"
    assert "This was a dry-run" in output or "Nothing to be done" in output, output[-2000:]

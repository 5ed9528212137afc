"""Code fingerprints: what a rule's command carries so that Snakemake's ``code`` trigger sees library edits."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from attnlab.fingerprint import code_marker, fingerprint, reach

SRC = Path(__file__).resolve().parents[1] / "src"
HANDLERS = {
    "tokenizer": "attnlab.models.cli:_cmd_tokenizer",
    "pretrain": "attnlab.models.cli:_cmd_pretrain",
    "evaluate": "attnlab.evaluate.cli:_handle_evaluate",
    "tables": "attnlab.report.cli:run_tables",
    "data": "attnlab.data.cli:run_base",
}


def fingerprints_of(src: Path) -> dict[str, str]:
    """The handlers' fingerprints computed from the library at ``src`` (a fresh interpreter imports it)."""
    code = f"import json; from attnlab.fingerprint import fingerprint; print(json.dumps({{k: fingerprint(v) for k, v in {HANDLERS!r}.items()}}))"
    env = {**os.environ, "PYTHONPATH": str(src)}
    return json.loads(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A copy of the library and the fingerprints of the unedited copy."""
    src = tmp_path_factory.mktemp("lib")
    shutil.copytree(SRC / "attnlab", src / "attnlab", ignore=shutil.ignore_patterns("__pycache__"))
    return src, fingerprints_of(src)


def edit(src: Path, relative: str, old: str, new: str) -> str:
    path = src / "attnlab" / relative
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return text


def test_the_closure_follows_what_the_handler_uses() -> None:
    modules = lambda entry: {module for module, _ in reach(entry)}  # noqa: E731
    assert {"attnlab.evaluate.generation", "attnlab.evaluate.extraction", "attnlab.models.loader"} <= modules(HANDLERS["evaluate"])
    assert "attnlab.models.pretrain" in modules(HANDLERS["pretrain"]) and "attnlab.evaluate.generation" not in modules(HANDLERS["pretrain"])
    # the registered GSM8K and synthetic loaders are reached through the registry's imports
    assert {"attnlab.data.gsm8k", "attnlab.data.synthetic", "attnlab.data.noise"} <= modules(HANDLERS["data"])
    # config validation is not part of what a job runs
    assert "attnlab.config_checks" not in modules(HANDLERS["pretrain"]) | modules(HANDLERS["evaluate"])
    assert code_marker(HANDLERS["evaluate"]) == f"; : attnlab code {fingerprint(HANDLERS['evaluate'])}"
    with pytest.raises(ValueError, match="no top-level definition 'nope'"):
        fingerprint("attnlab.evaluate.cli:nope")


def test_comments_docstrings_and_layout_change_no_fingerprint(library) -> None:
    src, before = library
    original = edit(src, "evaluate/extraction.py", "import re\n", "import re  # regular expressions\n\n\n# a comment\n")
    path = src / "attnlab/evaluate/extraction.py"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('"""', '"""Reworded: ', 1), encoding="utf-8")  # the module docstring
    try:
        assert fingerprints_of(src) == before
    finally:
        path.write_text(original, encoding="utf-8")


def test_a_code_edit_changes_exactly_the_rules_that_run_it(library) -> None:
    src, before = library
    original = edit(src, "evaluate/extraction.py", "import re\n", "import re\n\n_UNUSED_CONSTANT = 1\n")
    try:
        after = fingerprints_of(src)
    finally:
        (src / "attnlab/evaluate/extraction.py").write_text(original, encoding="utf-8")
    changed = {rule for rule in before if before[rule] != after[rule]}
    assert changed == {"evaluate"}


def test_fingerprints_are_kept_on_disk_per_version_of_the_sources(library, tmp_path) -> None:
    """A second interpreter reads the stored table (a value planted in it comes back); an edit of any source
    file makes a new key, so the planted value is never read for other sources."""
    src, before = library
    env = {**os.environ, "ATTNLAB_CACHE": str(tmp_path)}
    code = f"import json; from attnlab.fingerprint import fingerprint; print(json.dumps({{k: fingerprint(v) for k, v in {HANDLERS!r}.items()}}))"

    def run() -> dict[str, str]:
        out = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(src)},
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    assert run() == before
    (stored,) = tmp_path.glob("fingerprints-*.json")
    table = json.loads(stored.read_text())
    assert table[HANDLERS["evaluate"]] == before["evaluate"]
    stored.write_text(json.dumps({**table, HANDLERS["evaluate"]: "planted"}))
    assert run()["evaluate"] == "planted"  # read back, not recomputed
    original = edit(src, "evaluate/extraction.py", "import re\n", "import re  # an edit of the file\n")
    try:
        assert run() == before  # a new source key: recomputed, and a comment changes no fingerprint
        assert len(list(tmp_path.glob("fingerprints-*.json"))) == 2
    finally:
        (src / "attnlab/evaluate/extraction.py").write_text(original, encoding="utf-8")

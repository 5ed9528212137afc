"""The project's text speaks of the project only: no pointers to tracker issues or to their sections.

Code, config, docs, resources and report captions describe what a thing is and the criterion it implements. A
reference such as "issue 4" or "§3" means nothing to a reader of the repository, so it is kept out of every
tracked text file. A section sign is allowed only in a citation of a paper or book, after its year
("Davison & Hinkley 1997, §3.8").
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode("utf-8").split("\0")
    files = []
    for name in filter(None, listed):
        path = REPO / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:  # binary (images)
            continue
        files.append(path)
    return files


#: a cited work's year: a section sign after one on the same line is a section of that work
YEAR = re.compile(r"\b(?:1[89]|20)\d\d[a-z]?\b")
WORDS = re.compile(r"\bissues?\s*#?\s*\d+|\bprior tools?\b|\bdesign note\b", re.IGNORECASE)


def _is_history_line(line: str) -> bool:
    if WORDS.search(line):
        return True
    return any(not YEAR.search(line[:at]) for at in (i for i, ch in enumerate(line) if ch == "§"))


def history_mentions(text: str) -> list[tuple[int, str]]:
    """(line number, line) of each line of ``text`` with a history word (a section sign outside a citation)."""
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if _is_history_line(line)]


@pytest.mark.parametrize(
    "line, flagged",
    [
        ("# attention (issue 4, part 1): mass on KMI", True),
        ("Causal validation (Issue #5)", True),
        ("see §3 of the plan", True),
        ("what the prior tools did", True),
        ("design note \"fair comparisons\"", True),
        ("Golub & Van Loan 2013, Sec. 8.2", False),
        ("Golub & Van Loan 2013, §8.2", False),
        ("(Ye et al. 2025, \"Dream 7B\", §2): forward", False),
        ("recipe, Nie et al. 2025 §2.3).", False),
        ("the head scores (issue 5 §3)", True),
        ("validation stage (§3): causal", True),
        ("R. A. Fisher (1935), The Design of Experiments, §21.", False),
        ("a known issue with padding", False),
        ("research question 3: is the head attribution causal?", False),
    ],
)
def test_history_word_pattern(line: str, flagged: bool) -> None:
    assert bool(history_mentions(line)) is flagged


def test_no_history_words_in_tracked_files() -> None:
    files = tracked_text_files()
    assert len(files) > 50  # the listing found the repository
    found = [
        f"{path.relative_to(REPO)}:{n}: {line}"
        for path in files
        if path.name != Path(__file__).name
        for n, line in history_mentions(path.read_text(encoding="utf-8", errors="replace"))
    ]
    assert not found, "history words in the project's text:\n" + "\n".join(found)

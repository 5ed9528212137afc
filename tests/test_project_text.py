"""The project's text speaks of the project only: no pointers to tracker issues or to their sections.

Code, config, docs, resources and report captions describe what a thing is and the criterion it implements. A
reference such as "issue 4" or "§3" means nothing to a reader of the repository, so it is kept out of every
tracked text file; sections of papers and books are cited as "Sec. N" ("Davison & Hinkley 1997, Sec. 3.8"), so
a section sign never appears.
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


#: phrases that point at project history instead of describing the thing itself; a section sign is one
HISTORY_WORDS = re.compile(r"\bissues?\s*#?\s*\d+|§|\bprior tools?\b|\bdesign note\b", re.IGNORECASE)


def history_mentions(text: str) -> list[tuple[int, str]]:
    """(line number, line) of each line of ``text`` with a history word."""
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if HISTORY_WORDS.search(line)]


@pytest.mark.parametrize(
    "line, flagged",
    [
        ("# attention (issue 4, part 1): mass on KMI", True),
        ("Causal validation (Issue #5)", True),
        ("see §3 of the plan", True),
        ("what the prior tools did", True),
        ("design note \"fair comparisons\"", True),
        ("Golub & Van Loan 2013, Sec. 8.2", False),
        ("Golub & Van Loan 2013, §8.2", True),
        ("(Ye et al. 2025, \"Dream 7B\", Sec. 2): forward", False),
        ("the head scores (issue 5 §3)", True),
        ("validation stage (§3): causal", True),
        ("R. A. Fisher (1935), The Design of Experiments, Sec. 21.", False),
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

"""Few-shot exemplars: one seeded draw from the train split, shared by every test item.

Choice (documented, deliberate): the k exemplars are drawn ONCE per (train file, k, seed) with
``random.Random(seed).sample(range(len(train)), k)`` over the train rows in file order, and the same k-shot
context precedes every test item. lm-evaluation-harness instead keeps one seeded RNG per task and draws new
exemplars for each document in turn, so an item's exemplars depend on its position in the test set. A single
shared context is better for this study: the clean and the noisy versions of an item (and every model) see the
identical context, so differences between conditions are due to the inserted noise alone, which is what the
paired statistics assume. The draw does not depend on the test set at all.
"""

from __future__ import annotations

import random

import pandas as pd

__all__ = ["exemplar_positions", "select_exemplars"]

_REQUIRED_COLUMNS = ("question", "answer")


def exemplar_positions(n_rows: int, k: int, seed: int) -> list[int]:
    """Row positions of the ``k`` exemplars: ``random.Random(seed).sample(range(n_rows), k)`` (in draw order)."""
    return random.Random(seed).sample(range(n_rows), k)


def select_exemplars(train: pd.DataFrame, k: int, seed: int, *, source: str = "train data") -> list[tuple[str, str]]:
    """``k`` (question, answer) pairs drawn without replacement from ``train`` with ``random.Random(seed)``.

    Args:
        train: rows with ``question`` and ``answer`` (the worked solution ending in ``#### N``), in file order.
        k: number of exemplars (0 gives ``[]``).
        seed: the few-shot seed (``eval_spec["fewshot_seed"]``).
        source: a name for ``train`` (e.g. its path) used in error messages.

    Raises:
        ValueError: if ``k < 0``, a column is missing, ``train`` has fewer than ``k`` rows, or a drawn row has an
            empty question or answer (the message names the row's ``id`` or position).
    """
    if k < 0:
        raise ValueError(f"num_fewshot must be >= 0, got {k}")
    if k == 0:
        return []
    missing = [c for c in _REQUIRED_COLUMNS if c not in train.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing} needed for few-shot exemplars")
    if len(train) < k:
        raise ValueError(f"{source}: {len(train)} rows, cannot draw {k} few-shot exemplars")
    positions = exemplar_positions(len(train), k, seed)
    exemplars = []
    for position in positions:
        row = train.iloc[position]
        question, answer = row["question"], row["answer"]
        if not isinstance(question, str) or not question.strip() or not isinstance(answer, str) or not answer.strip():
            name = row["id"] if "id" in train.columns else f"row {position}"
            raise ValueError(f"{source}: exemplar {name} has an empty question or answer")
        exemplars.append((question, answer))
    return exemplars

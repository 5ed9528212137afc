"""A worked example of attnlab's extension points (docs/extending.md): one dataset and one noise type.

Put this file in the study's working directory (or anywhere on PYTHONPATH) and name it in the config:

    plugins: [toy_plugin]
    datasets:
      toy: {loader: toy_arith, size: 40}
    noise:
      types: [inf, toy_weather]

tests/test_extension.py runs exactly this file through the data and evaluation stages.
"""

from __future__ import annotations

import random

import pandas as pd

from attnlab.data import BASE_COLUMNS, register_dataset, register_noise


@register_dataset("toy_arith")
def load_toy_arith(spec: dict, split: str, seed: int, n: int | None) -> pd.DataFrame:
    """``spec["size"]`` one-step addition problems per split; train and test come from separate seeded streams."""
    rng = random.Random(f"{seed}-{split}")
    rows = []
    for i in range(spec.get("size", 20) if n is None else min(n, spec.get("size", 20))):
        a, b = rng.randint(2, 9), rng.randint(10, 60)
        first = f"Tom has {a} red pens."
        question = f"{first} He buys {b} blue pens. How many pens does he have now?"
        a_start = first.index(str(a))
        b_start = question.index(str(b), len(first))
        rows.append({
            "id": f"toy-{split}-{i:04d}",
            "split": split,
            "family": "toy_arith",
            "topic": "shopping",
            "question": question,
            "answer": f"Tom has {a}+{b}=<<{a}+{b}={a + b}>>{a + b} pens.\n#### {a + b}",
            "answer_number": float(a + b),
            # character spans of the quantities the solution uses (the data stage keeps them aligned)
            "key_spans": [{"start": a_start, "end": a_start + len(str(a))},
                          {"start": b_start, "end": b_start + len(str(b))}],
        })
    return pd.DataFrame(rows, columns=list(BASE_COLUMNS))


@register_noise("toy_weather")
def toy_weather(item, rng: random.Random) -> str:
    """An irrelevant sentence with a number; ``item`` is the clean problem (attnlab.data.noise.NoiseContext)."""
    return f"It rained for {rng.randint(2, 9)} days in {rng.choice(['May', 'June', 'July'])}."

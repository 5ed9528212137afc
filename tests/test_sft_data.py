"""The SFT training set: train split only, noise mix by largest remainder, seeded, byte-stable."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from attnlab.data.noise import apply_noise
from attnlab.data.registry import load_base_dataset
from attnlab.data.schema import read_dataset, write_dataset
from attnlab.sft.data import allot_counts, build_sft_set

MIX = {"clean": 0.25, "inf": 0.25, "rcs": 0.25, "sd": 0.25}


@pytest.fixture(scope="module")
def train_split() -> pd.DataFrame:
    spec = {"loader": "synthetic", "train_size": 60, "test_size": 5}
    return apply_noise(load_base_dataset(spec, "train", 3, None), "clean", 3)


def test_allot_counts_largest_remainder() -> None:
    assert allot_counts(10, {"clean": 1, "inf": 1, "rcs": 1}) == {"clean": 4, "inf": 3, "rcs": 3}
    assert allot_counts(7, {"clean": 0.5, "sd": 0.5}) == {"clean": 4, "sd": 3}
    assert allot_counts(5, {"clean": 0.0, "inf": 2.0}) == {"clean": 0, "inf": 5}
    for n in range(0, 23):
        assert sum(allot_counts(n, {"a": 0.3, "b": 0.3, "c": 0.4}).values()) == n
    with pytest.raises(ValueError, match="must not all be 0"):
        allot_counts(3, {"clean": 0})


def test_build_sft_set_draws_train_items_with_the_mix(train_split: pd.DataFrame) -> None:
    table = build_sft_set(train_split, {"samples": 40, "noise_mix": MIX, "seed": 5})
    assert len(table) == 40 and table["id"].is_unique
    assert set(table["id"]) <= set(train_split["id"])
    assert (table["split"] == "train").all()
    assert table["noise_type"].value_counts().to_dict() == {"clean": 10, "inf": 10, "rcs": 10, "sd": 10}
    noisy = table[table["noise_type"] != "clean"]
    assert (noisy["question"] != noisy["original_question"]).all()
    clean = table[table["noise_type"] == "clean"]
    assert (clean["question"] == clean["original_question"]).all()
    # the answer is untouched by noise
    by_id = train_split.set_index("id")
    assert (table["answer"].to_numpy() == by_id.loc[table["id"], "answer"].to_numpy()).all()
    # all problems when samples is None; another seed draws another set
    assert len(build_sft_set(train_split, {"samples": None, "noise_mix": MIX, "seed": 5})) == len(train_split)
    other = build_sft_set(train_split, {"samples": 40, "noise_mix": MIX, "seed": 6})
    assert list(other["id"]) != list(table["id"])


def test_build_sft_set_is_byte_stable(train_split: pd.DataFrame, tmp_path: Path) -> None:
    spec = {"samples": 30, "noise_mix": {"clean": 1, "inf": 2}, "seed": 9}
    for name in ("a", "b"):
        write_dataset(build_sft_set(train_split, spec), tmp_path / f"{name}.parquet", {"recipe": spec})
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    assert read_dataset(tmp_path / "a.parquet")["noise_type"].value_counts().to_dict() == {"inf": 20, "clean": 10}


def test_build_sft_set_rejects_test_items_and_oversampling(train_split: pd.DataFrame) -> None:
    test = train_split.assign(split="test")
    with pytest.raises(ValueError, match="train split only"):
        build_sft_set(test, {"samples": 5, "noise_mix": MIX, "seed": 1})
    with pytest.raises(ValueError, match="only 60"):
        build_sft_set(train_split, {"samples": 61, "noise_mix": MIX, "seed": 1})

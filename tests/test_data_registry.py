"""The dataset and noise registries as public extension points."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from attnlab.data import (
    BASE_COLUMNS,
    NoiseContext,
    apply_noise,
    available_datasets,
    available_noise_types,
    load_base_dataset,
    register_dataset,
    register_noise,
    unregister_dataset,
    unregister_noise,
)


def toy_frame(split: str, count: int) -> pd.DataFrame:
    assert count <= 7  # single-digit cat counts keep the key spans at fixed offsets
    questions = [f"Ann has {i + 2} cats. Bo has 1 dog. How many pets are there?" for i in range(count)]
    return pd.DataFrame(
        {
            "id": [f"toy-{split}-{i:05d}" for i in range(count)],
            "split": [split] * count,
            "family": ["toy"] * count,
            "topic": ["general"] * count,
            "question": questions,
            "answer": [f"{i + 2}+1=<<{i + 2}+1={i + 3}>>{i + 3}\n#### {i + 3}" for i in range(count)],
            "answer_number": [float(i + 3) for i in range(count)],
            "key_spans": [[{"start": 8, "end": 9}, {"start": 23, "end": 24}] for _ in range(count)],
        }
    )


def test_builtins_are_available() -> None:
    assert {"synthetic", "gsm8k"} <= set(available_datasets())
    assert {"clean", "inf", "rcs", "sd"} <= set(available_noise_types())


def test_register_a_toy_dataset_and_noise_end_to_end() -> None:
    calls = []

    @register_dataset("toy_pets")
    def load_toy(spec, split, seed, n):
        calls.append((dict(spec), split, seed, n))
        frame = toy_frame(split, spec["size"])
        return frame if n is None else frame.iloc[:n]

    @register_noise("toy_weather")
    def weather(item: NoiseContext, rng: random.Random) -> str:
        return rng.choice(["It was sunny.", "It was rainy.", "It was windy."])

    try:
        assert "toy_pets" in available_datasets() and "toy_weather" in available_noise_types()
        frame = load_base_dataset({"loader": "toy_pets", "size": 6}, "test", seed=3, n=4)
        assert calls == [({"loader": "toy_pets", "size": 6}, "test", 3, 4)]
        assert list(frame.columns) == list(BASE_COLUMNS) and len(frame) == 4
        noisy = apply_noise(frame, "toy_weather", seed=1)
        for row in noisy.itertuples():
            (span,) = row.noise_spans
            assert row.question[span["start"] : span["end"]] in {" It was sunny.", " It was rainy.", " It was windy."}
            assert row.question[: span["start"]] + row.question[span["end"] :] == row.original_question
            assert [row.question[s["start"] : s["end"]] for s in row.key_spans] == [row.original_question[8:9], "1"]
    finally:
        unregister_dataset("toy_pets")
        unregister_noise("toy_weather")
    assert "toy_pets" not in available_datasets()


def test_registration_errors() -> None:
    with pytest.raises(ValueError, match="reserved"):
        register_noise("clean")
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("synthetic")(lambda spec, split, seed, n: None)
    with pytest.raises(KeyError, match="unknown dataset loader 'nope'"):
        load_base_dataset({"loader": "nope"}, "test", seed=0)
    with pytest.raises(KeyError, match="no 'loader' key"):
        load_base_dataset({"train_size": 3}, "test", seed=0)


def test_loader_output_is_validated() -> None:
    @register_dataset("toy_broken")
    def broken(spec, split, seed, n):
        frame = toy_frame(split, 3)
        frame.loc[1, "key_spans"] = [{"start": 5, "end": 500}]
        return frame

    @register_dataset("toy_missing_column")
    def missing(spec, split, seed, n):
        return toy_frame(split, 3).drop(columns=["topic"])

    try:
        with pytest.raises(ValueError, match=r"toy_broken.*row id='toy-test-00001', column 'key_spans'.*outside the question"):
            load_base_dataset({"loader": "toy_broken"}, "test", seed=0)
        with pytest.raises(ValueError, match=r"missing \['topic'\]"):
            load_base_dataset({"loader": "toy_missing_column"}, "test", seed=0)
    finally:
        unregister_dataset("toy_broken")
        unregister_dataset("toy_missing_column")

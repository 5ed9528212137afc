"""The DiffLlama − Llama difference of noise drops: calibration on null data, seeds as clusters, table and CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from attnlab.cli import main
from attnlab.io import read_parquet, write_parquet
from attnlab.report.robustness import (
    drop_difference,
    drop_difference_sentences,
    drop_difference_table,
    robustness_models,
)


def _outcomes(rng, n_items, p_clean, p_noisy, sims=1):
    """Correct / wrong on clean and noisy items for items of varying difficulty: [sims, n] booleans twice."""
    difficulty = rng.normal(size=(sims, n_items))
    clean = rng.uniform(size=(sims, n_items)) < 1 / (1 + np.exp(-(p_clean + difficulty)))
    noisy = rng.uniform(size=(sims, n_items)) < 1 / (1 + np.exp(-(p_noisy + difficulty)))
    return clean, noisy


def test_null_false_positive_rate_is_nominal():
    """Both models drop by the same amount in expectation: the interval excludes 0 in about 5 % of studies."""
    rng = np.random.default_rng(2026)
    sims, n = 600, 100
    rejected = []
    for _ in range(sims):
        a_clean, a_noisy = _outcomes(rng, n, 1.0, 0.0)
        b_clean, b_noisy = _outcomes(rng, n, 1.0, 0.0)
        _, low, high, p = drop_difference(a_noisy.astype(float) - a_clean, b_noisy.astype(float) - b_clean, n_resamples=1000)
        rejected.append(low > 0 or high < 0)
    assert 0.02 <= np.mean(rejected) <= 0.08


def test_a_real_difference_is_detected_and_seeds_widen_the_interval():
    rng = np.random.default_rng(1)
    n = 200
    a_clean, a_noisy = _outcomes(rng, n, 1.0, 0.7)  # DiffLlama loses little
    b_clean, b_noisy = _outcomes(rng, n, 1.0, -0.7)  # Llama loses a lot
    a, b = a_noisy.astype(float) - a_clean, b_noisy.astype(float) - b_clean
    diff, low, high, p = drop_difference(a, b)
    assert diff == pytest.approx(a.mean() - b.mean()) and 0 < low < diff < high and p < 0.01
    # three training seeds per model whose drops differ by seed: the cluster bootstrap is wider than one seed's
    seeds_a = np.concatenate([a, np.roll(a, 7, axis=1) * 0.3, np.roll(a, 13, axis=1) * 1.6])
    seeds_b = np.concatenate([b, np.roll(b, 5, axis=1) * 0.5, np.roll(b, 11, axis=1) * 1.4])
    _, low3, high3, _ = drop_difference(seeds_a, seeds_b)
    _, low1, high1, _ = drop_difference(seeds_a.mean(axis=0, keepdims=True), seeds_b.mean(axis=0, keepdims=True))
    assert high3 - low3 > high1 - low1


def _eval_frame(model, variant, correct, ids):
    return pd.DataFrame({"model": model, "base": "syn", "variant": variant, "id": ids,
                         "correct_strict": correct, "correct_flexible": correct})


def test_table_pairs_architectures_and_recipes_with_holm(tmp_path):
    rng = np.random.default_rng(3)
    n = 120
    ids = [f"q{i}" for i in range(n)]
    frames, models = [], {}
    spec = {"diffllama": (1.0, {"clean": 0, "inf": 0.9, "sd": -0.9}), "llama": (1.0, {"clean": 0, "inf": -0.9, "sd": -0.9}),
            "llama-seed11": (1.0, {"clean": 0, "inf": -0.9, "sd": -0.9}), "gpt2": (0.0, {"clean": 0, "inf": 0, "sd": 0})}
    for model, (level, shifts) in spec.items():
        difficulty = rng.normal(size=n)
        for variant, shift in shifts.items():
            p = 1 / (1 + np.exp(-(level + (shift - 1.0 if variant != "clean" else 0.0) + difficulty)))
            frames.append(_eval_frame(model, variant, rng.uniform(size=n) < p, ids))
    models = {
        "diffllama": {"base_model": "diffllama", "architecture": "diffllama", "seed": 42, "recipe": None},
        "llama": {"base_model": "llama", "architecture": "llama", "seed": 42, "recipe": None},
        "llama-seed11": {"base_model": "llama", "architecture": "llama", "seed": 11, "recipe": None},
        "gpt2": {"base_model": "gpt2", "architecture": "gpt2", "seed": 42, "recipe": None},
    }
    table = drop_difference_table(frames, models)
    assert list(table["variant"].unique()) == ["inf", "sd"] and set(table["metric"]) == {"strict", "flexible"}
    assert (table["model_a"] == "diffllama").all() and (table["model_b"] == "llama").all()
    assert (table["seeds_a"] == 1).all() and (table["seeds_b"] == 2).all()  # llama's replicate is a cluster
    strict = table[table["metric"] == "strict"].set_index("variant")
    assert strict.loc["inf", "diff_ci_low"] > 0  # DiffLlama loses less under inf by construction
    assert (strict["p_holm"] >= strict["p_value"]).all()
    sentences = drop_difference_sentences(table)
    assert "diffllama loses less than llama" in sentences[0] and "Holm-adjusted" in sentences[0]
    assert "1 vs 2 training seeds" in sentences[0]
    # the CLI writes the table and the Markdown with the verdicts
    paths = []
    for i, frame in enumerate(frames):
        paths.append(str(tmp_path / f"e{i}.parquet"))
        write_parquet(frame, paths[-1])
    import json

    code = main(["report", "robustness-difference", "--inputs", *paths, "--models", json.dumps(models),
                 "--parquet", str(tmp_path / "d.parquet"), "--markdown", str(tmp_path / "d.md")])
    assert code == 0
    pd.testing.assert_frame_equal(read_parquet(tmp_path / "d.parquet"), table)
    assert "diffllama loses less than llama" in (tmp_path / "d.md").read_text()


def test_models_map_from_the_config():
    from pathlib import Path

    from attnlab.config import validate_config
    from attnlab.study.schema import load_yaml

    config = validate_config(load_yaml(Path(__file__).resolve().parents[1] / "config.yaml"))
    models = robustness_models(config, ["llama", "diffllama+sft-noisy", "llama-seed2"])
    assert models["llama"] == {"base_model": "llama", "architecture": "llama", "seed": int(config["seed"]), "recipe": None}
    assert models["llama-seed2"] == {"base_model": "llama", "architecture": "llama", "seed": 2, "recipe": None}
    assert models["diffllama+sft-noisy"]["recipe"] == "noisy" and models["diffllama+sft-noisy"]["architecture"] == "diffllama"


def test_explicit_pairs_compare_hub_checkpoints_and_bad_names_are_rejected():
    from pathlib import Path

    from attnlab.config import validate_config
    from attnlab.study.schema import ConfigError, load_yaml

    rng = np.random.default_rng(8)
    ids = [f"q{i}" for i in range(40)]
    frames = [_eval_frame(m, v, rng.uniform(size=40) < 0.5, ids) for m in ("diff-hub", "llama-hub") for v in ("clean", "inf")]
    models = {m: {"base_model": m, "architecture": None, "seed": 0, "recipe": None} for m in ("diff-hub", "llama-hub")}
    assert drop_difference_table(frames, models).empty  # no architecture: nothing is paired automatically
    table = drop_difference_table(frames, models, pairs=[["diff-hub", "llama-hub"]])
    assert set(table["model_a"]) == {"diff-hub"} and set(table["model_b"]) == {"llama-hub"} and len(table) == 2
    assert drop_difference_sentences(table.iloc[0:0]) == [
        "No DiffLlama–Llama pair was evaluated, so the robustness comparison is not tested."
    ]
    config = load_yaml(Path(__file__).resolve().parents[1] / "configs" / "ci.yaml")
    config["robustness_difference"] = {"pairs": [["diffllama", "llama-typo"]]}
    with pytest.raises(ConfigError, match=r"robustness_difference\.pairs\.0\.1.*llama-typo"):
        validate_config(config)


def test_two_standard_models_each_get_a_row():
    rng = np.random.default_rng(9)
    ids = [f"q{i}" for i in range(30)]
    names = ("diffllama", "llama", "llama-wide")
    frames = [_eval_frame(m, v, rng.uniform(size=30) < 0.5, ids) for m in names for v in ("clean", "inf")]
    models = {m: {"base_model": m, "architecture": "diffllama" if m == "diffllama" else "llama", "seed": 0,
                  "recipe": None} for m in names}
    table = drop_difference_table(frames, models)
    assert sorted(set(table["model_b"])) == ["llama", "llama-wide"] and (table["model_a"] == "diffllama").all()

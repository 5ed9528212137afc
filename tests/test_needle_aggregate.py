"""Depth table, two-level bootstrap, model comparison, verdict and figure, on hand-made probe rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from attnlab.io import read_parquet
from attnlab.needle.aggregate import hierarchical_bootstrap, item_scores, plot_depth, write_outputs
from attnlab.needle.probe import CLASS_NAMES, PROBE_SCHEMA


def _probe(model: str, kind: str, answer: float, noise: float, total: float = 1.0, n_items: int = 12,
           depths=(0.0, 100.0), rng_seed: int = 0, correct: float = 0.5) -> pd.DataFrame:
    """Rows of a fake model: 2 layers x 2 heads per item; masses answer/noise around the given fractions x total."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for depth in depths:
        for i in range(n_items):
            item_id = f"d{depth:g}-{i}"
            jitter = rng.normal(0, 0.01)
            for layer in range(2):
                for head in range(2):
                    a, z = (answer + jitter) * total, noise * total
                    masses = {name: 0.0 for name in CLASS_NAMES}
                    masses.update(answer_value=a / 2, answer_text=a / 2, haystack=z * 0.75, distractors=z * 0.25,
                                  question=total - a - z)
                    rows.append({
                        "model": model, "id": item_id, "context_length": 100, "depth": depth, "n_needles": 2,
                        "depth_actual": depth / 100, "n_prompt_tokens": 90, "correct": bool(i < correct * n_items),
                        "prediction": "1", "generation": "1", "gold": "1", "query_scope": "answer",
                        "map_kind": kind, "layer": layer, "head": head, **masses, "total": total,
                        "negative_mass": 0.0, "lambda_full": None if kind == "standard" else 1 - total,
                        **{f"n_{c}": 1 for c in CLASS_NAMES},
                    })
    frame = pd.DataFrame(rows, columns=PROBE_SCHEMA.names)
    if kind == "differential":  # raw maps too; they must not enter the scores
        raw = frame.assign(map_kind="raw_a", answer_value=0.0, answer_text=0.0, question=1.0 - frame["haystack"] - frame["distractors"], total=1.0)
        frame = pd.concat([frame, raw], ignore_index=True)
    return frame


def test_hierarchical_bootstrap_reduces_to_the_item_bootstrap_and_widens_with_seed_spread() -> None:
    values = np.linspace(0, 1, 40)
    estimate, reps = hierarchical_bootstrap([values], 1000, 0.95, 0)
    assert estimate == pytest.approx(values.mean())
    low, high = np.quantile(reps, [0.025, 0.975])
    assert low < estimate < high and high - low < 0.25
    same = [np.full(10, 0.3), np.full(10, 0.3)]
    assert np.allclose(hierarchical_bootstrap(same, 200, 0.95, 1)[1], 0.3)
    spread = [np.full(10, 0.1), np.full(10, 0.5), np.full(10, 0.9)]
    estimate, reps = hierarchical_bootstrap(spread, 2000, 0.95, 2)
    assert estimate == pytest.approx(0.5) and reps.min() < 0.3 and reps.max() > 0.7  # seeds resampled
    assert np.array_equal(reps, hierarchical_bootstrap(spread, 2000, 0.95, 2)[1])


def test_item_scores_are_fractions_of_net_mass_on_the_effective_map() -> None:
    probe = _probe("diffllama", "differential", answer=0.4, noise=0.2, total=0.5)
    scores = item_scores(probe, "answer", ["haystack", "distractors"])
    assert len(scores) == 24
    assert scores["noise"].to_numpy() == pytest.approx(0.2)
    assert scores["haystack"].to_numpy() == pytest.approx(0.15)
    assert scores["answer"].mean() == pytest.approx(0.2, abs=0.01)  # the answer number's tokens only
    assert scores["answer_sentence"].mean() == pytest.approx(0.4, abs=0.02)  # the whole needle sentence
    assert scores["depth_actual"].to_numpy() == pytest.approx(scores["depth"].to_numpy() / 100)
    only_haystack = item_scores(probe, "answer", ["haystack"])
    assert only_haystack["noise"].to_numpy() == pytest.approx(0.15)
    with pytest.raises(ValueError, match="query_scope"):
        item_scores(probe, "last_prompt_token", ["haystack"])


@pytest.mark.parametrize("flip", [False, True])
def test_tables_and_verdict_follow_the_intervals(tmp_path, flip: bool) -> None:
    diff_answer, diff_noise = (0.05, 0.5) if flip else (0.35, 0.02)
    probes = [
        _probe("llama", "standard", answer=0.06, noise=0.5, rng_seed=1),
        _probe("llama-seed2", "standard", answer=0.07, noise=0.52, rng_seed=2),
        _probe("diffllama", "differential", answer=diff_answer, noise=diff_noise, total=0.3, rng_seed=3),
    ]
    if flip:
        probes[2] = _probe("diffllama", "differential", answer=0.01, noise=0.7, total=0.3, rng_seed=3)
    models = {
        "llama": {"base": "llama", "seed": 1, "architecture": "llama"},
        "llama-seed2": {"base": "llama", "seed": 2, "architecture": "llama"},
        "diffllama": {"base": "diffllama", "seed": 1, "architecture": "diffllama"},
    }
    paths = {k: tmp_path / f"{k}.{ext}" for k, ext in (("table", "parquet"), ("comparison", "parquet"), ("markdown", "md"))}
    table, comparison = write_outputs(
        probes, models, query_scope="answer", noise_classes=["haystack", "distractors"], n_resamples=200,
        confidence=0.95, seed=0, table_path=paths["table"], comparison_path=paths["comparison"],
        markdown_path=paths["markdown"], metadata={"test": True},
    )
    assert read_parquet(paths["table"]).equals(table)
    pooled = table[(table["depth"] == "all") & (table["n_needles"] == "all")].set_index(["model", "metric"])
    assert pooled.loc[("llama", "answer"), "n_seeds"] == 2 and pooled.loc[("diffllama", "answer"), "n_seeds"] == 1
    assert pooled.loc[("llama", "answer_sentence"), "mean"] == pytest.approx(0.065, abs=0.01)
    assert pooled.loc[("llama", "answer"), "mean"] == pytest.approx(0.0325, abs=0.005)
    assert pooled.loc[("llama", "accuracy"), "mean"] == pytest.approx(0.5)
    assert set(table["depth"]) == {"0", "100", "all"} and set(table["n_needles"]) == {"2", "all"}
    assert (table["ci_low"] <= table["mean"] + 1e-12).all() and (table["mean"] <= table["ci_high"] + 1e-12).all()
    assert set(comparison["model_a"]) == {"diffllama"} and set(comparison["model_b"]) == {"llama"}
    cells = comparison[(comparison["depth"] != "all") & comparison["metric"].isin(["answer", "noise"])]
    assert len(cells) == 4 and (cells["p_holm"] >= cells["p_value"]).all()  # Holm over the depth × metric cells
    assert comparison.loc[comparison["depth"] == "all", "p_holm"].isna().all()  # the pooled tests are the verdict's
    assert set(comparison.loc[comparison["depth"] == "all", "n_items"]) == {24} and set(comparison["n_items"]) == {12, 24}
    assert set(comparison["metric"]) >= {"answer", "answer_sentence"}
    text = paths["markdown"].read_text()
    assert "| model | 0 % | 100 % | all depths |" in text
    assert "Realised depth of the target needle" in text and "| 1.00 | 1.000 [1.000, 1.000] | 0.000 |" in text
    assert "paired on the identical probe items" in text
    if flip:
        assert "(more for DIFF) is reversed" in text and "(less for DIFF) is reversed" in text
        assert "does not fully reproduce" in text
    else:
        assert "(more for DIFF) reproduces" in text and "(less for DIFF) reproduces" in text
        assert "the published direction reproduces at this scale" in text
    figure = tmp_path / "needle.png"
    plot_depth(table, figure)
    first = figure.read_bytes()
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    plot_depth(table, figure)
    assert figure.read_bytes() == first  # byte-stable


def test_comparison_refuses_models_probed_on_different_items(tmp_path) -> None:
    probes = [
        _probe("llama", "standard", answer=0.06, noise=0.5, rng_seed=1),
        _probe("diffllama", "differential", answer=0.3, noise=0.1, total=0.3, rng_seed=3, n_items=10),
    ]
    models = {m: {"base": m, "seed": 1, "architecture": m} for m in ("llama", "diffllama")}
    with pytest.raises(ValueError, match="same items"):
        write_outputs(
            probes, models, query_scope="answer", noise_classes=["haystack"], n_resamples=50, confidence=0.95,
            seed=0, table_path=tmp_path / "t.parquet", comparison_path=tmp_path / "c.parquet",
            markdown_path=tmp_path / "t.md", metadata={},
        )

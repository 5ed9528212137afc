"""Allocation rows of tiny real models on real noisy data; the ratio table and its intervals; the figures; the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from attnlab.attention import TOKEN_CLASSES
from attnlab.attention.aggregate import ALL_LAYERS, attention_ratios, bootstrap_mean_ci, write_ratio_tables
from attnlab.attention.allocation import ALLOCATION_SCHEMA, AllocationSpec, allocation_tables
from attnlab.attention.figures import plot_ni_heatmap, plot_token_maps
from attnlab.cli import main
from attnlab.data import apply_noise, load_base_dataset
from attnlab.data.schema import write_dataset
from attnlab.evaluate.tiny import build_tiny_model, build_tiny_tokenizer
from attnlab.io import read_parquet
from attnlab.stats import bootstrap_ci

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def noisy():
    base = load_base_dataset({"loader": "synthetic", "train_size": 10, "test_size": 10}, "test", seed=3, n=5)
    return apply_noise(base, "inf", seed=3)


@pytest.fixture(scope="module")
def tables(tokenizer, noisy):
    out = {}
    for arch in ("llama", "diffllama"):
        model = build_tiny_model(arch, tokenizer, hidden_size=32, num_heads=4, intermediate_size=64)
        spec = AllocationSpec(items=4, query_scopes=("last_prompt_token", "generated"), token_map_items=1, max_new_tokens=5)
        out[arch] = allocation_tables(model, tokenizer, noisy, spec, model_name=arch, base="synthetic", variant="inf")
    return out


def test_rows_cover_items_layers_heads_kinds(tables, noisy):
    llama, _ = tables["llama"]
    diff, _ = tables["diffllama"]
    assert list(llama.columns) == ALLOCATION_SCHEMA.names
    assert list(llama["item"].unique()) == list(noisy["id"][:4])
    assert len(llama) == 4 * 2 * 2 * 4  # items × scopes × layers × heads
    assert set(diff["map_kind"]) == {"differential", "raw_a", "raw_b"}
    assert len(diff) == 4 * 2 * 2 * 2 * 3  # items × scopes × layers × head pairs × kinds
    assert not llama.duplicated(["item", "layer", "head", "map_kind", "query_scope"]).any()


def test_masses_sum_and_negative_mass(tables):
    llama, _ = tables["llama"]
    diff, _ = tables["diffllama"]
    masses = llama[list(TOKEN_CLASSES)].sum(axis=1)
    assert np.allclose(masses, 1.0) and np.allclose(llama["total_mass"], 1.0)
    assert (llama["negative_mass"] == 0).all() and llama["lambda_full"].isna().all()
    d = diff[diff["map_kind"] == "differential"]
    assert np.allclose(d["total_mass"], 1 - d["lambda_full"], atol=1e-6)
    assert (d["negative_mass"] < 0).all()
    raw = diff[diff["map_kind"] != "differential"]
    assert np.allclose(raw["total_mass"], 1.0) and (raw["negative_mass"] == 0).all()


def test_class_counts_and_scopes(tables, tokenizer, noisy):
    llama, _ = tables["llama"]
    last = llama[llama["query_scope"] == "last_prompt_token"]
    gen = llama[llama["query_scope"] == "generated"]
    assert (last["n_queries"] == 1).all() and (last["gen"] == 0).all() and (last["n_gen"] == 0).all()
    assert (gen["n_queries"] == gen["n_gen"] + 1).all() and (gen["n_gen"] >= 0).all()
    assert (last["n_ni"] > 0).all() and (last["n_kmi"] > 0).all() and (last["n_sink"] == 1).all()
    first = noisy.iloc[0]
    n_tokens = len(tokenizer(f"Question: {first.question.strip()}\nAnswer:").input_ids)
    row = last[last["item"] == first.id].iloc[0]
    assert row[[f"n_{c}" for c in TOKEN_CLASSES]].sum() == n_tokens


def test_token_rows_are_the_first_items_rows(tables):
    llama, tokens = tables["llama"]
    assert set(tokens["item"]) == {llama["item"].iloc[0]}
    per_head = tokens.groupby(["layer", "head"])["weight"].sum()
    assert np.allclose(per_head, 1.0)
    mass = tokens[tokens["token_class"] == "ni"].groupby(["layer", "head"])["weight"].sum()
    first = llama[(llama["item"] == llama["item"].iloc[0]) & (llama["query_scope"] == "last_prompt_token")]
    assert np.allclose(mass.to_numpy(), first.sort_values(["layer", "head"])["ni"].to_numpy())


def test_bootstrap_mean_ci_equals_stats_bootstrap_ci():
    values = np.random.default_rng(1).normal(size=37)
    assert bootstrap_mean_ci(values, n_resamples=500, seed=4) == pytest.approx(
        bootstrap_ci(values, np.mean, n_resamples=500, seed=4), abs=1e-12
    )


def test_ratio_table(tables):
    allocation = pd.concat([tables["llama"][0], tables["diffllama"][0]], ignore_index=True)
    table = attention_ratios(allocation, n_resamples=200, seed=1)
    overall = table[(table["layer"] == ALL_LAYERS) & (table["query_scope"] == "last_prompt_token")]
    llama = overall[overall["model"] == "llama"].set_index("measure")
    rows = allocation[(allocation["model"] == "llama") & (allocation["query_scope"] == "last_prompt_token")]
    assert llama.loc["ni", "mean"] == pytest.approx(rows.groupby("item")["ni"].mean().mean())
    assert (llama["n_items"] == 4).all()
    assert (overall["ci_low"] <= overall["mean"] + 1e-12).all() and (overall["mean"] <= overall["ci_high"] + 1e-12).all()
    diff = overall[(overall["model"] == "diffllama") & (overall["map_kind"] == "differential")].set_index("measure")
    ratio_sum = sum(diff.loc[c, "mean"] for c in TOKEN_CLASSES)
    assert ratio_sum == pytest.approx(1.0)  # ratios are fractions of the net (1 - λ) mass
    assert set(table["layer"]) == {ALL_LAYERS, 0, 1}
    # a layer whose λ_full is near 1 (net mass 1 − λ ≈ 0.01): its ratios are left out and counted, not printed
    near = allocation.copy()
    differential = (near["model"] == "diffllama") & (near["map_kind"] == "differential") & (near["layer"] == 1)
    scale = 0.01 / near.loc[differential, list(TOKEN_CLASSES)].sum(axis=1)
    near.loc[differential, list(TOKEN_CLASSES)] = near.loc[differential, list(TOKEN_CLASSES)].mul(scale, axis=0)
    marked = attention_ratios(near, n_resamples=50, seed=1)
    rows = marked[(marked["model"] == "diffllama") & (marked["map_kind"] == "differential")
                  & (marked["query_scope"] == "last_prompt_token")]
    layer1 = rows[(rows["layer"] == 1) & rows["measure"].isin(TOKEN_CLASSES)]
    assert layer1["mean"].isna().all() and (layer1["n_items"] == 0).all()
    n_rows = int((differential & (near["query_scope"] == "last_prompt_token")).sum())
    assert (layer1["unstable_rows"] == n_rows).all()
    overall_marked = rows[(rows["layer"] == ALL_LAYERS)].set_index("measure")
    assert sum(overall_marked.loc[c, "mean"] for c in TOKEN_CLASSES) == pytest.approx(1.0)  # layer 0 only
    assert overall_marked.loc["ni", "unstable_rows"] == n_rows
    assert (table["unstable_rows"] == 0).all()  # the real tiny models are far from λ = 1


def test_write_tables_and_figures_are_deterministic(tables, tmp_path):
    paths = []
    for arch, (allocation, _) in tables.items():
        path = tmp_path / f"{arch}.parquet"
        allocation.to_parquet(path)
        paths.append(path)
    write_ratio_tables(paths, tmp_path / "a" / "attention_ratios.parquet", n_resamples=100, seed=2)
    write_ratio_tables(paths, tmp_path / "b" / "attention_ratios.parquet", n_resamples=100, seed=2)
    for ext in ("parquet", "csv", "md"):
        assert (tmp_path / "a" / f"attention_ratios.{ext}").read_bytes() == (tmp_path / "b" / f"attention_ratios.{ext}").read_bytes()
    assert "| diffllama | synthetic | inf | differential |" in (tmp_path / "a" / "attention_ratios.md").read_text()
    for arch, (allocation, tokens) in tables.items():
        for run in ("x", "y"):
            plot_ni_heatmap(allocation, tmp_path / run / f"{arch}_ni.png")
            plot_token_maps(tokens, tmp_path / run / f"{arch}_tok.png")
        for name in (f"{arch}_ni.png", f"{arch}_tok.png"):
            data = (tmp_path / "x" / name).read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and data == (tmp_path / "y" / name).read_bytes()


def test_cli_measure(tokenizer, noisy, tmp_path):
    model = build_tiny_model("llama", tokenizer, hidden_size=32, num_heads=4, intermediate_size=64)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    data = tmp_path / "inf.parquet"
    write_dataset(noisy, data, metadata={})
    out = tmp_path / "out.parquet"
    argv = ["attention", "measure", "--model", str(folder), "--data", str(data), "--spec", json.dumps({"items": 2}),
            "--model-name", "tiny", "--base", "synthetic", "--variant", "inf", "--device", "cpu", "--threads", "1",
            "--out", str(out), "--tokens-out", str(tmp_path / "tokens.parquet")]
    assert main(argv) == 0
    rows = read_parquet(out)
    assert rows["item"].nunique() == 2 and (rows["model"] == "tiny").all()
    assert main([*argv[:7], json.dumps({"items": 2, "typo": 1}), *argv[8:]]) == 2


def test_answer_token_scope_queries_the_position_predicting_the_first_non_whitespace_answer_token(tokenizer, noisy):
    from attnlab.attention.tokens import answer_producer

    data = noisy.iloc[:2].copy()
    # a leading digit (digits are split off, so " 5" is a lone space + "5") vs a word the tiny tokenizer glues (" He")
    data["answer"] = ["5 + 3 = 8\n#### 8", "He has 8 apples.\n#### 8"]
    model = build_tiny_model("llama", tokenizer, hidden_size=32, num_heads=4, intermediate_size=64)
    spec = AllocationSpec(items=2, query_scopes=("answer_token", "last_prompt_token"), token_map_items=0)
    rows, _ = allocation_tables(model, tokenizer, data, spec, model_name="llama", base="synthetic", variant="inf")
    assert set(rows["query_scope"]) == {"answer_token", "last_prompt_token"}
    for item, answer in zip(data["id"], data["answer"]):
        prompt = "Question: " + data.set_index("id").loc[item, "question"].strip() + "\nAnswer:"
        ids, offsets, n_prompt, producer = answer_producer(tokenizer, prompt, answer)
        first = len(prompt) + 1
        assert offsets[producer + 1][0] <= first < offsets[producer + 1][1]  # the next token starts the answer
        assert all(prompt[s:e].strip() == "" or s >= len(prompt) for s, e in offsets[n_prompt : producer + 1])
        mine = rows[rows["item"] == item].set_index(["query_scope", "layer", "head"]).sort_index()
        answer_rows, last_rows = mine.loc["answer_token"], mine.loc["last_prompt_token"]
        assert (answer_rows["n_gen"] == producer + 1 - n_prompt).all()
        if producer == n_prompt - 1:  # the tokenizer glues the space to the answer: the same query
            assert np.allclose(answer_rows[list(TOKEN_CLASSES)], last_rows[list(TOKEN_CLASSES)])
        else:  # the lone space token is a key of the answer query
            assert (answer_rows["gen"] > 0).all() and not np.allclose(answer_rows["kmi"], last_rows["kmi"])
    n_gen = rows[rows["query_scope"] == "answer_token"].groupby("item")["n_gen"].first()
    assert n_gen.loc[data["id"].iloc[0]] == 1 and n_gen.loc[data["id"].iloc[1]] == 0  # digit split vs glued word

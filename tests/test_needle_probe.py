"""Probing tiny real models: token classes from spans, attention masses vs eager attention, accuracy rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from attnlab.needle.items import probe_items
from attnlab.needle.probe import CLASS_NAMES, PROBE_SCHEMA, QUERY_SCOPES, item_token_classes, predict_number, probe_model
from attnlab.needle.resources import load_needle_resources

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tokenizer():
    from attnlab.evaluate.tiny import build_tiny_tokenizer

    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def items(tokenizer) -> pd.DataFrame:
    resources = load_needle_resources()
    return probe_items(
        resources, resources.filler, tokenizer, context_lengths=[200], depths=[0, 100], n_needles=[1, 2],
        items_per_cell=1, number_digits=3, seed=2,
    )


def _model(architecture: str, tokenizer):
    from attnlab.evaluate.tiny import build_tiny_model

    return build_tiny_model(architecture, tokenizer, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64)


def test_predict_number_reads_the_first_word_only() -> None:
    assert predict_number(" 4821\n") == "4821"
    assert predict_number("4821. and 12") == "4821."
    assert predict_number("The number is 4821") is None
    assert predict_number("") is None


def test_token_classes_follow_the_spans(tokenizer, items) -> None:
    item = items[items["n_needles"] == 2].iloc[0]
    ids, classes, (last_prompt, answer_query) = item_token_classes(tokenizer, item)
    text = item["prompt"] + " " + item["answer"]
    encoding = tokenizer(text, return_offsets_mapping=True)
    assert ids == list(encoding["input_ids"]) and classes[0] == CLASS_NAMES.index("sink")
    pieces = {name: "" for name in CLASS_NAMES}
    for (start, end), cls in zip(encoding["offset_mapping"], classes):
        pieces[CLASS_NAMES[cls]] += text[start:end]
    assert pieces["answer_value"].strip() == item["answer"]
    target = item["prompt"][slice(*item["answer_span"])]
    assert sorted((pieces["answer_text"] + pieces["answer_value"]).replace(" ", "")) == sorted(target.replace(" ", ""))
    distractor = item["prompt"][slice(*item["distractor_spans"][0])]
    assert pieces["distractors"].strip() == distractor
    assert "Question:" in pieces["question"] and "Answer:" in pieces["question"]
    assert "magic" not in pieces["haystack"]  # filler only
    # the answer query predicts the first digit; the last prompt token is the ':' of 'Answer:'
    assert tokenizer.decode([ids[answer_query + 1]]).strip() == item["answer"][0]
    assert last_prompt == len(tokenizer(item["prompt"])["input_ids"]) - 1
    assert answer_query >= last_prompt


@pytest.mark.parametrize("architecture", ["llama", "diffllama"])
def test_probe_rows_sum_to_the_row_mass_and_match_eager_attention(tokenizer, items, architecture: str) -> None:
    model = _model(architecture, tokenizer)
    rows = probe_model(model, tokenizer, items, model_name=architecture, batch_size=4, max_new_tokens=5)
    assert list(rows.columns) == PROBE_SCHEMA.names
    kinds = ["differential", "raw_a", "raw_b"] if architecture == "diffllama" else ["standard"]
    heads = 2 if architecture == "diffllama" else 4
    assert len(rows) == len(items) * len(QUERY_SCOPES) * len(kinds) * 2 * heads
    assert sorted(rows["map_kind"].unique()) == sorted(kinds)
    masses = rows[list(CLASS_NAMES)].sum(axis=1)
    assert np.allclose(masses, rows["total"], atol=1e-9)
    softmax = rows[rows["map_kind"] != "differential"]
    assert np.allclose(softmax["total"], 1.0, atol=1e-5) and (softmax["negative_mass"] == 0).all()
    if architecture == "diffllama":
        diff = rows[rows["map_kind"] == "differential"]
        assert np.allclose(diff["total"], 1.0 - diff["lambda_full"], atol=1e-5)
        assert (diff["negative_mass"] < 0).any()
    # accuracy columns are per item and consistent with the prediction
    per_item = rows.drop_duplicates("id")
    assert len(per_item) == len(items)
    for row in per_item.itertuples():
        assert row.correct == (row.prediction is not None and float(row.prediction.rstrip(".")) == float(row.gold))

    if architecture == "llama":  # cross-check with transformers' own eager attention weights
        item = items.iloc[-1]
        ids, classes, (_, answer_query) = item_token_classes(tokenizer, item)
        eager = _model("llama", tokenizer)
        eager.config._attn_implementation = "eager"
        with torch.no_grad():
            attentions = eager(torch.tensor([ids]), output_attentions=True).attentions
        onehot = np.eye(len(CLASS_NAMES))[classes]  # [T, C]
        for layer, weights in enumerate(attentions):  # weights [1, H, T, T]
            expected = weights[0, :, answer_query].double().numpy() @ onehot  # [H, C]
            got = rows[(rows["id"] == item["id"]) & (rows["layer"] == layer) & (rows["query_scope"] == "answer")]
            got = got.sort_values("head")[list(CLASS_NAMES)].to_numpy()
            assert np.allclose(got, expected, atol=1e-5)

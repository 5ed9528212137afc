"""evaluate_items end to end with a tiny Llama trained (in the test, ~1 s) to answer four questions."""

from __future__ import annotations

import math

import pandas as pd
import pyarrow as pa
import pytest
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from attnlab.evaluate.evaluate import EVAL_COLUMNS, EVAL_SCHEMA, evaluate_items, normalize_eval_spec
from attnlab.evaluate.fewshot import exemplar_positions, select_exemplars
from attnlab.evaluate.tiny import build_tiny_model, build_tiny_tokenizer
from attnlab.prompts import build_prompt, format_example

ITEMS = [
    ("Ava has 3 boxes of 12 pens. How many pens does Ava have?", "Ava has 3*12=<<3*12=36>>36 pens.\n#### 36", 36.0),
    ("Ben has 4 boxes of 5 cards. How many cards does Ben have?", "Ben has 4*5=<<4*5=20>>20 cards.\n#### 20", 20.0),
    ("Chen has 2 boxes of 9 apples. How many apples does Chen have?", "Chen has 2*9=<<2*9=18>>18 apples.\n#### 18", 18.0),
    ("Dara has 7 boxes of 11 books. How many books does Dara have?", "Dara has 7*11=<<7*11=77>>77 books.\n#### 77", 77.0),
]
SPEC = {"num_fewshot": 0, "fewshot_seed": 1234, "batch_size": 3, "max_new_tokens": 40}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def data_frame(rows: list[tuple[str, str, str, float]]) -> pd.DataFrame:
    """A data-stage-shaped table (all DATA_COLUMNS) from (id, question, answer, answer_number) rows."""
    return pd.DataFrame(
        {
            "id": [r[0] for r in rows],
            "split": ["test"] * len(rows),
            "family": ["boxes"] * len(rows),
            "topic": ["school"] * len(rows),
            "question": [r[1] for r in rows],
            "original_question": [r[1] for r in rows],
            "answer": [r[2] for r in rows],
            "answer_number": pd.Series([r[3] for r in rows], dtype="float64"),
            "noise_type": ["clean"] * len(rows),
            "key_spans": [[{"start": 0, "end": 1}] for _ in rows],
            "noise_spans": [[] for _ in rows],
            "insert_sentence_index": pd.Series([-1] * len(rows), dtype="int64"),
        }
    )


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def trained_model(tokenizer: PreTrainedTokenizerFast) -> PreTrainedModel:
    """A tiny Llama overfit on the four ITEMS; two end with EOS, two go on with "\\n\\nQuestion:"."""
    documents = [
        format_example(q, a) + ("\n\nQuestion:" if i % 2 else tokenizer.eos_token) for i, (q, a, _) in enumerate(ITEMS)
    ]
    torch.manual_seed(0)
    model = build_tiny_model("llama", tokenizer, initializer_range=0.02, seed=0)
    model.train()
    batch = tokenizer(documents, padding=True, return_tensors="pt")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(80):
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1
    return model.eval()


def test_scores_a_model_that_knows_the_answers(trained_model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast) -> None:
    rows = [(f"t-{i}", q, a, gold) for i, (q, a, gold) in enumerate(ITEMS)]
    rows.append(("t-wrong-gold", ITEMS[0][0], ITEMS[0][1], 35.0))  # same question, wrong gold -> must score False
    result = evaluate_items(
        trained_model, tokenizer, data_frame(rows), SPEC, [], model_name="tiny", base="toy", variant="clean"
    )
    assert tuple(result.columns) == EVAL_COLUMNS
    assert result["id"].tolist() == [r[0] for r in rows]
    assert result["prompt"].tolist() == [build_prompt(r[1]) for r in rows]
    assert set(result["model"]) == {"tiny"} and set(result["base"]) == {"toy"} and set(result["variant"]) == {"clean"}
    assert result["prediction"].tolist() == ["36", "20", "18", "77", "36"]
    assert result["prediction_flexible"].tolist() == ["36", "20", "18", "77", "36"]
    assert result["correct_strict"].tolist() == [True, True, True, True, False]
    assert result["correct_flexible"].tolist() == [True, True, True, True, False]
    assert result["gold"].tolist() == [36.0, 20.0, 18.0, 77.0, 35.0]
    for generation, (_, _, answer, _) in zip(result["generation"], rows):
        # the whole worked solution, and nothing after it: no "\n\nQuestion:", no EOS text
        assert generation.strip() == answer
    prompt_tokens = [len(tokenizer(p)["input_ids"]) for p in result["prompt"]]
    assert result["n_prompt_tokens"].tolist() == prompt_tokens
    answer_tokens = [len(tokenizer(" " + r[2], add_special_tokens=False)["input_ids"]) for r in rows]
    # items 0 and 2 (and the wrong-gold copy of 0) were trained to end with EOS: answer + EOS tokens;
    # items 1 and 3 go on with "\n\nQuestion:" and stop once "\n\n" is complete (one or two newline tokens)
    n_generated = result["n_generated_tokens"].tolist()
    for row in (0, 2, 4):
        assert n_generated[row] == answer_tokens[row] + 1
    for row in (1, 3):
        assert answer_tokens[row] + 1 <= n_generated[row] <= answer_tokens[row] + 2
    table = pa.Table.from_pandas(result, schema=EVAL_SCHEMA, preserve_index=False)
    assert table.schema.equals(EVAL_SCHEMA)


def test_noise_in_question_reaches_the_prompt(trained_model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast) -> None:
    noisy = ITEMS[1][0].replace("cards.", "cards. Ben's cat is 9 years old.")
    result = evaluate_items(
        trained_model, tokenizer, data_frame([("n-1", noisy, ITEMS[1][1], 20.0)]), SPEC, [],
        model_name="tiny", base="toy", variant="INF",
    )
    assert "Ben's cat is 9 years old." in result["prompt"].iloc[0]
    assert result["variant"].iloc[0] == "INF"


def test_fewshot_prompts_share_one_seeded_context(trained_model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast) -> None:
    train = data_frame([(f"train-{i}", f"Q{i} has {i} pens?", f"So {i}.\n#### {i}", float(i)) for i in range(30)])
    exemplars = select_exemplars(train, 3, seed=7)
    assert exemplars == select_exemplars(train, 3, seed=7)  # deterministic
    assert exemplars != select_exemplars(train, 3, seed=8)  # the seed matters
    positions = exemplar_positions(len(train), 3, 7)
    assert exemplars == [(train["question"][p], train["answer"][p]) for p in positions]
    assert len(set(positions)) == 3
    spec = {**SPEC, "num_fewshot": 3, "max_new_tokens": 4}
    data = data_frame([(f"t-{i}", q, a, g) for i, (q, a, g) in enumerate(ITEMS)])
    result = evaluate_items(trained_model, tokenizer, data, spec, exemplars, model_name="m", base="b", variant="clean")
    context = "\n\n".join(format_example(q, a) for q, a in exemplars) + "\n\n"
    for prompt, question in zip(result["prompt"], data["question"]):
        assert prompt == context + f"Question: {question}\nAnswer:"
    with pytest.raises(ValueError, match="2 exemplars but eval spec num_fewshot is 3"):
        evaluate_items(trained_model, tokenizer, data, spec, exemplars[:2], model_name="m", base="b", variant="clean")


def test_select_exemplars_errors() -> None:
    train = data_frame([("a", "Q?", "#### 1", 1.0), ("b", "Q2?", "#### 2", 2.0)])
    assert select_exemplars(train, 0, seed=1) == []
    with pytest.raises(ValueError, match="my.parquet: 2 rows, cannot draw 3"):
        select_exemplars(train, 3, seed=1, source="my.parquet")
    with pytest.raises(ValueError, match="missing column"):
        select_exemplars(train.drop(columns=["answer"]), 1, seed=1)
    with pytest.raises(ValueError, match=">= 0"):
        select_exemplars(train, -1, seed=1)
    blank = data_frame([("blank-1", "  ", "#### 1", 1.0)])
    with pytest.raises(ValueError, match="exemplar blank-1 has an empty question"):
        select_exemplars(blank, 1, seed=1)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({**SPEC, "num_fewshots": 1}, "unknown eval spec key.*num_fewshots"),
        ({k: v for k, v in SPEC.items() if k != "batch_size"}, "missing required key.*batch_size"),
        ({**SPEC, "batch_size": 0}, "'batch_size' must be an integer >= 1"),
        ({**SPEC, "max_new_tokens": "32"}, "'max_new_tokens' must be an integer"),
        ({**SPEC, "num_fewshot": -1}, "'num_fewshot' must be an integer >= 0"),
        ({**SPEC, "num_fewshot": True}, "'num_fewshot' must be an integer"),
        ({**SPEC, "stop_sequences": "Question:"}, "'stop_sequences' must be a list"),
        ({**SPEC, "stop_sequences": ["", "\n\n"]}, "'stop_sequences' must be a list of non-empty strings"),
        ({**SPEC, "add_special_tokens": "yes"}, "'add_special_tokens' must be true or false"),
    ],
)
def test_bad_spec(spec: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalize_eval_spec(spec)


def test_spec_defaults() -> None:
    spec = normalize_eval_spec(SPEC)
    assert spec["stop_sequences"] == ["Question:", "\n\n"]
    assert spec["add_special_tokens"] is True
    assert normalize_eval_spec({**SPEC, "stop_sequences": ["###"]})["stop_sequences"] == ["###"]


def test_bad_data(trained_model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast) -> None:
    good = data_frame([("a", ITEMS[0][0], ITEMS[0][1], 36.0), ("b", ITEMS[1][0], ITEMS[1][1], 20.0)])
    kwargs = {"model_name": "m", "base": "b", "variant": "clean"}
    with pytest.raises(ValueError, match="missing column.*answer_number"):
        evaluate_items(trained_model, tokenizer, good.drop(columns=["answer_number"]), SPEC, [], **kwargs)
    duplicate = good.assign(id=["a", "a"])
    with pytest.raises(ValueError, match="duplicate id.*'a'"):
        evaluate_items(trained_model, tokenizer, duplicate, SPEC, [], **kwargs)
    nan_gold = good.assign(answer_number=[36.0, math.nan])
    with pytest.raises(ValueError, match="item 'b': answer_number is nan"):
        evaluate_items(trained_model, tokenizer, nan_gold, SPEC, [], **kwargs)
    empty = good.assign(question=[ITEMS[0][0], ""])
    with pytest.raises(ValueError, match="item 'b': empty question"):
        evaluate_items(trained_model, tokenizer, empty, SPEC, [], **kwargs)

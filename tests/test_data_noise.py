"""Noise injection: invariants on synthetic and real GSM8K items, per-type properties."""

from __future__ import annotations

import random
import re
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from attnlab.data import DATA_COLUMNS, NoiseContext, apply_noise, load_base_dataset, register_noise, unregister_noise
from attnlab.data.noise import insertion_boundaries, load_noise_bank, noise_bank_path
from attnlab.data.text import find_numbers, split_sentences

from conftest import GSM8K_DIR

GSM8K_TEST = str(GSM8K_DIR / "test.jsonl")
NOISE_TYPES = ("inf", "rcs", "sd")


@pytest.fixture(scope="module")
def synthetic():
    return load_base_dataset({"loader": "synthetic", "train_size": 0, "test_size": 1000}, "test", seed=0)


@pytest.fixture(scope="module")
def gsm8k():
    return load_base_dataset({"loader": "gsm8k", "test_path": GSM8K_TEST}, "test", seed=0, n=300)


def inserted(row) -> str:
    (span,) = row.noise_spans
    return row.question[span["start"] : span["end"]]


def check_invariants(base: pd.DataFrame, noisy: pd.DataFrame, noise_type: str) -> None:
    assert list(noisy.columns) == list(DATA_COLUMNS)
    assert noisy["id"].tolist() == base["id"].tolist()
    assert noisy["original_question"].tolist() == base["question"].tolist()
    assert noisy["answer"].tolist() == base["answer"].tolist()
    assert noisy["answer_number"].tolist() == base["answer_number"].tolist()
    assert set(noisy["noise_type"]) == {noise_type}
    for row, clean in zip(noisy.itertuples(), base.itertuples()):
        (span,) = row.noise_spans
        start, end = span["start"], span["end"]
        # removing the span recovers the original exactly; the span is one sentence plus one joining space
        assert row.question[:start] + row.question[end:] == row.original_question
        text = row.question[start:end]
        assert (text.startswith(" ") and not text.endswith(" ")) or (row.insert_sentence_index == 0 and text.endswith(" "))
        assert text.strip() and text.strip()[-1] in ".!", text
        # key spans still point at the same text
        assert len(row.key_spans) == len(clean.key_spans)
        for new, old in zip(row.key_spans, clean.key_spans):
            assert row.question[new["start"] : new["end"]] == clean.question[old["start"] : old["end"]]
            assert not (start <= new["start"] < end)
        # the noise sits between sentences, never after the question sentence
        sentences = [clean.question[s:e] for s, e in split_sentences(clean.question)]
        boundary = row.insert_sentence_index
        assert boundary in insertion_boundaries(clean.question)
        before, after = "".join(sentences[:boundary]), "".join(sentences[boundary:])
        assert re.sub(r"\s", "", row.question[:start]) == re.sub(r"\s", "", before)
        assert re.sub(r"\s", "", row.question[end:]) == re.sub(r"\s", "", after)
        # decimals and money of the original are intact
        assert [m.surface for m in find_numbers(clean.question, words=False)] == [
            m.surface for m in find_numbers(row.question[:start] + row.question[end:], words=False)
        ]


@pytest.mark.parametrize("noise_type", NOISE_TYPES)
def test_invariants_on_synthetic(synthetic, noise_type) -> None:
    check_invariants(synthetic, apply_noise(synthetic, noise_type, seed=11), noise_type)


@pytest.mark.parametrize("noise_type", NOISE_TYPES)
def test_invariants_on_real_gsm8k(gsm8k, noise_type) -> None:
    check_invariants(gsm8k, apply_noise(gsm8k, noise_type, seed=11), noise_type)


@pytest.mark.parametrize("noise_type", NOISE_TYPES)
def test_most_items_get_a_distinct_sentence(synthetic, noise_type) -> None:
    sentences = [inserted(r).strip() for r in apply_noise(synthetic, noise_type, seed=3).itertuples()]
    assert len(set(sentences)) / len(sentences) > 0.5


def test_clean_is_identity(synthetic) -> None:
    clean = apply_noise(synthetic, "clean", seed=0)
    assert clean["question"].equals(clean["original_question"])
    assert clean["key_spans"].tolist() == synthetic["key_spans"].tolist()
    assert clean["noise_spans"].map(len).eq(0).all() and clean["insert_sentence_index"].eq(-1).all()
    # a clean data table is accepted as input and gives the same result as the base frame
    assert apply_noise(clean, "sd", seed=2).equals(apply_noise(synthetic, "sd", seed=2))


def test_noise_types_have_their_character(synthetic, gsm8k) -> None:
    for base in (synthetic, gsm8k):
        inf = [inserted(r) for r in apply_noise(base, "inf", seed=5).itertuples()]
        assert all(re.search(r"\d", s) for s in inf)
        sd = apply_noise(base, "sd", seed=5)
        for row in sd.itertuples():
            assert not find_numbers(inserted(row)) and not re.search(r"\d", inserted(row))
        bank = load_noise_bank(str(noise_bank_path()))
        for row in sd.itertuples():  # the sentence comes from the item's own topic bank
            templates, _ = bank.sd[row.topic]
            pattern = "|".join(re.sub(r"\\\{[a-z_]+\\\}", ".+", re.escape(t)) for t in templates)
            assert re.fullmatch(pattern, inserted(row).strip()[:1].lower() + inserted(row).strip()[1:], re.IGNORECASE)


def test_rcs_statements_are_true_and_about_the_items_quantities(synthetic) -> None:
    noisy = apply_noise(synthetic, "rcs", seed=9)
    checked = 0
    for row in noisy.itertuples():
        text = inserted(row).strip()
        quantities = {row.original_question[s["start"] : s["end"]] for s in synthetic.loc[row.Index, "key_spans"]}
        numbers = [m.surface for m in find_numbers(text, words=False)]
        assert numbers and numbers[0] in quantities, (text, quantities)
        values = [Decimal(n.replace(",", "")) for n in numbers]
        if re.search(r"\bplus\b|\bsum of\b|\bAdding\b|\badd\b|\bTogether\b", text):
            assert values[0] + values[1] == values[2], text
        elif re.search(r"\btimes\b|\bMultiplying\b|\bproduct\b|\bgroups of\b", text) and len(values) == 3:
            assert values[0] * values[1] == values[2], text
        elif re.search(r"\bminus\b|\bdifference\b", text):
            assert values[0] - values[1] == values[2], text
        elif re.search(r"\bhalf\b|\bHalf\b|Splitting", text):
            assert values[0] / 2 == values[1], text
        elif re.search(r"\btwice\b|Doubling|Two times", text):
            assert values[0] * 2 == values[1], text
        else:
            continue
        checked += 1
    assert checked > 0.6 * len(noisy)


def test_item_noise_is_independent_of_row_order_and_dataset_size(synthetic) -> None:
    full = apply_noise(synthetic, "inf", seed=4).set_index("id")
    subset = synthetic.sample(frac=0.2, random_state=1)
    part = apply_noise(subset, "inf", seed=4).set_index("id")
    pd.testing.assert_frame_equal(part, full.loc[part.index])
    again = apply_noise(synthetic, "inf", seed=4).set_index("id")
    pd.testing.assert_frame_equal(again, full)
    other = apply_noise(synthetic, "inf", seed=5).set_index("id")
    assert (other["question"] != full["question"]).mean() > 0.9


def test_one_sentence_question_gets_noise_in_front() -> None:
    frame = pd.DataFrame(
        {
            "id": ["x-1"], "split": ["test"], "family": ["toy"], "topic": ["general"],
            "question": ["How much is 2 plus 3.5?"], "answer": ["2+3.5=<<2+3.5=5.5>>5.5\n#### 5.5"],
            "answer_number": [5.5], "key_spans": [[{"start": 12, "end": 13}, {"start": 19, "end": 22}]],
        }
    )  # fmt: skip
    noisy = apply_noise(frame, "sd", seed=0).iloc[0]
    assert noisy["insert_sentence_index"] == 0
    span = noisy["noise_spans"][0]
    assert span["start"] == 0 and noisy["question"][span["end"] :] == "How much is 2 plus 3.5?"
    assert [noisy["question"][s["start"] : s["end"]] for s in noisy["key_spans"]] == ["2", "3.5"]


def test_registered_toy_noise_and_bad_noise_functions(synthetic) -> None:
    seen: list[NoiseContext] = []

    @register_noise("toy_echo")
    def echo(item: NoiseContext, rng: random.Random) -> str:
        seen.append(item)
        return f"There are {len(item.key_quantities)} key numbers and {len(item.sentences)} sentences."

    try:
        noisy = apply_noise(synthetic.iloc[:5], "toy_echo", seed=0)
        assert len(seen) == 5 and seen[0].question == synthetic["question"].iloc[0]
        assert seen[0].key_quantities[0].text == synthetic["question"].iloc[0][
            synthetic["key_spans"].iloc[0][0]["start"] : synthetic["key_spans"].iloc[0][0]["end"]
        ]
        assert inserted(next(noisy.itertuples())).strip() == (
            f"There are {len(seen[0].key_quantities)} key numbers and {len(seen[0].sentences)} sentences."
        )
    finally:
        unregister_noise("toy_echo")

    @register_noise("toy_bad")
    def bad(item: NoiseContext, rng: random.Random) -> str:
        return " two\nlines "

    try:
        with pytest.raises(ValueError, match="toy_bad.*one line without surrounding whitespace"):
            apply_noise(synthetic.iloc[:2], "toy_bad", seed=0)
    finally:
        unregister_noise("toy_bad")
    with pytest.raises(KeyError, match="unknown noise type 'nope'"):
        apply_noise(synthetic.iloc[:2], "nope", seed=0)


def test_noisy_input_is_rejected(synthetic) -> None:
    noisy = apply_noise(synthetic.iloc[:3], "inf", seed=0)
    with pytest.raises(ValueError, match="must be clean.*'inf'"):
        apply_noise(noisy, "sd", seed=0)


def test_sd_needs_a_bank_for_the_topic(synthetic) -> None:
    frame = synthetic.iloc[:2].copy()
    frame["topic"] = "astronomy"
    with pytest.raises(ValueError, match="no distractor bank for topic 'astronomy'"):
        apply_noise(frame, "sd", seed=0)


def test_bank_errors_name_the_key(tmp_path: Path) -> None:
    text = noise_bank_path().read_text(encoding="utf-8")
    broken = tmp_path / "noise.yaml"
    broken.write_text(text.replace('"{name} has loved {sport} since childhood."', '"{name} has loved {sport} for 3 years."'))
    with pytest.raises(ValueError, match=r"noise\.yaml: SD\.sports\.templates\[1\]: a semantic distraction must not contain numbers"):
        load_noise_bank(str(broken))
    broken.write_text(text.replace('"Note that {a} plus {b} is {result}."', '"Note that {a} plus {b} is many."'))
    with pytest.raises(ValueError, match=r"RCS\.sum\[0\]: must use exactly the slots"):
        load_noise_bank(str(broken))


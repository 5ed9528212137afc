"""The shared scratch tokenizer: byte-level BPE, single digits, <s> prefix, offsets, determinism."""

from __future__ import annotations

import os
import random

import pytest

from attnlab.models.tokenizer import SPECIAL_TOKENS, load_tokenizer, save_tokenizer, train_tokenizer
from attnlab.prompts import format_example, format_question

NAMES = ["Tom", "Ana", "Lee", "Maria", "Kofi"]
ITEMS = ["apples", "pencils", "stamps", "marbles"]


def make_corpus(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Hand-made two-step word problems with GSM8K-style worked answers."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        name, item = rng.choice(NAMES), rng.choice(ITEMS)
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        price = rng.choice(["$2.50", "$1.25", "$3.75"])
        q = f"{name} has {a} {item} that cost {price} each and buys {b} more. How many {item} does {name} have?"
        ans = f"{name} has {a} + {b} = <<{a}+{b}={a + b}>>{a + b} {item}.\n#### {a + b}"
        rows.append((q, ans))
    return rows


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return [format_example(q, a) for q, a in make_corpus(300)]


@pytest.fixture(scope="module")
def tokenizer(corpus):
    return train_tokenizer(corpus, vocab_size=400)


def test_special_tokens_have_fixed_roles(tokenizer):
    assert tokenizer.convert_ids_to_tokens(list(range(5))) == list(SPECIAL_TOKENS)
    assert tokenizer.pad_token == "<pad>" and tokenizer.bos_token == "<s>" and tokenizer.eos_token == "</s>"
    assert tokenizer.unk_token == "<unk>" and tokenizer.mask_token == "<mask>"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert 261 < len(tokenizer) <= 400  # 5 special + 256 bytes + merges (the tiny corpus may run out of pairs)


def test_bos_prepended_and_no_eos(tokenizer):
    ids = tokenizer("Tom has 3 apples.")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.eos_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == "Tom has 3 apples."


def test_digits_are_single_tokens(tokenizer):
    # "12345" occurs nowhere as one unit in a BPE vocabulary of single digits.
    tokens = tokenizer.tokenize("It costs 12345 dollars and 99 cents")
    digit_tokens = [t.lstrip("Ġ") for t in tokens if any(c.isdigit() for c in t)]
    assert digit_tokens == list("1234599")
    assert all(len(t) == 1 for t in digit_tokens)
    # Frequent numbers in the corpus ("99") never get merged either.
    assert not any(len(t.lstrip("Ġ")) > 1 and t.lstrip("Ġ").isdigit() for t in tokenizer.get_vocab())


def test_byte_level_never_unknown(tokenizer):
    text = "Émilie paid €3,50 — naïve 😀 ∑ 東京 \t tabs\n\nand lines"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_offsets_map_to_characters(tokenizer):
    text = "She paid $2.50 for 3.5 kg of apples."
    enc = tokenizer(text, return_offsets_mapping=True)
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"])
    assert enc["offset_mapping"][0] == (0, 0)  # <s> covers no characters
    pieces = [text[s:e] for s, e in enc["offset_mapping"][1:]]
    # Offsets tile the text exactly, and each piece is what its token spells.
    assert "".join(pieces) == text
    for tok, piece in zip(tokens[1:], pieces):
        assert tokenizer.convert_tokens_to_string([tok]) == piece
    # The number characters are individually addressable.
    for target in ["2", "5", "0", "3"]:
        assert target in pieces
    start = text.index("3.5")
    spans = [(s, e) for s, e in enc["offset_mapping"] if s >= start and e <= start + 3]
    assert [text[s:e] for s, e in spans] == ["3", ".", "5"]


def test_prompt_is_prefix_of_training_tokenization(tokenizer):
    for q, a in make_corpus(40, seed=7):
        prompt = tokenizer(format_question(q))["input_ids"]
        full = tokenizer(format_example(q, a))["input_ids"]
        assert full[: len(prompt)] == prompt
        assert len(full) > len(prompt)


def test_deterministic_tokenizer_json(corpus, tmp_path):
    first = save_tokenizer(train_tokenizer(corpus, 400), tmp_path / "a")
    second = save_tokenizer(train_tokenizer(corpus, 400), tmp_path / "b")
    assert (first / "tokenizer.json").read_bytes() == (second / "tokenizer.json").read_bytes()
    other = save_tokenizer(train_tokenizer(corpus[:100], 400), tmp_path / "c")
    assert (first / "tokenizer.json").read_bytes() != (other / "tokenizer.json").read_bytes()


def test_save_load_round_trip(tokenizer, tmp_path):
    folder = save_tokenizer(tokenizer, tmp_path / "tok")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left behind
    umask = os.umask(0)
    os.umask(umask)
    assert folder.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's private 0700
    loaded = load_tokenizer(folder)
    text = format_example(*make_corpus(1, seed=3)[0])
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert loaded.pad_token_id == tokenizer.pad_token_id and loaded.mask_token_id == tokenizer.mask_token_id
    enc = loaded(text, return_offsets_mapping=True)
    assert enc["offset_mapping"] == tokenizer(text, return_offsets_mapping=True)["offset_mapping"]


def test_bad_inputs(corpus, tmp_path):
    with pytest.raises(ValueError, match="vocab_size=100"):
        train_tokenizer(corpus, 100)
    with pytest.raises(ValueError, match="empty corpus"):
        train_tokenizer([], 400)
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        load_tokenizer(tmp_path)

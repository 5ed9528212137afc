"""Needle episodes: placement by depth, recorded spans, token budgets, seeds, corpus/probe disjointness."""

from __future__ import annotations

import random
import re

import pytest

from attnlab.needle.items import corpus_documents, draw_plan, fit_to_tokens, probe_items, realize
from attnlab.needle.resources import load_needle_resources, read_filler, split_cities
from attnlab.prompts import format_question


@pytest.fixture(scope="module")
def resources():
    return load_needle_resources()


@pytest.fixture(scope="module")
def tokenizer():
    from attnlab.evaluate.tiny import build_tiny_tokenizer

    return build_tiny_tokenizer()


def test_resources_are_clean_and_cities_split_disjointly(resources) -> None:
    assert len(resources.filler) >= 200
    assert not any(re.search(r"[0-9]", s) or "magic number" in s.lower() for s in resources.filler)
    corpus, probe = split_cities(resources)
    assert set(corpus).isdisjoint(probe)
    assert set(corpus) | set(probe) == set(resources.cities)
    assert len(probe) == round(resources.probe_share * len(resources.cities))


def test_read_filler_names_the_line_with_a_digit(tmp_path) -> None:
    path = tmp_path / "filler.txt"
    path.write_text("# comment\n" + "A fine sentence.\n" * 10 + "It costs 5 coins.\n")
    with pytest.raises(ValueError, match=r"filler.txt:12: .*digit"):
        read_filler(path)


@pytest.mark.parametrize("depth", [0, 25, 50, 75, 100])
@pytest.mark.parametrize("n_needles", [1, 3, 6])
def test_realize_places_the_target_at_its_depth_and_records_spans(resources, depth: int, n_needles: int) -> None:
    rng = random.Random(depth * 10 + n_needles)
    plan = draw_plan(rng, resources, resources.filler, resources.cities, n_needles, depth, 4)
    episode = realize(plan, 8)
    text = episode.question
    target = text[slice(*episode.target_span)]
    assert target == plan.needles[0]
    assert text[slice(*episode.value_span)] == episode.answer == str(plan.numbers[0])
    assert [text[slice(*s)] for s in episode.distractor_spans] == list(plan.needles[1:])
    assert text[slice(*episode.question_span)] == plan.question
    assert plan.cities[0] in plan.question
    starts = sorted([episode.target_span[0], *(s[0] for s in episode.distractor_spans)])
    context = text[: episode.question_span[0] - 1]
    if depth == 0:
        assert episode.target_span[0] == 0 == starts[0] and episode.depth_actual == 0.0
    if depth == 100:
        assert episode.target_span[1] == len(context) and episode.depth_actual == pytest.approx(1.0)
    # slot round(depth/100 * 8): the number of filler sentences before the target
    before = sum(1 for s in plan.filler[:8] if text.index(s) < episode.target_span[0])
    assert before == round(depth / 100 * 8)
    assert len(set(plan.numbers)) == n_needles and len(set(plan.cities)) == n_needles


def test_fit_to_tokens_takes_the_most_filler_that_fits(resources, tokenizer) -> None:
    plan = draw_plan(random.Random(3), resources, resources.filler, resources.cities, 2, 50, 4)

    def count(text: str) -> int:
        return len(tokenizer(text)["input_ids"])

    episode = fit_to_tokens(plan, count, 200)
    assert count(format_question(episode.question)) <= 200
    assert count(format_question(realize(plan, episode.n_filler + 1).question)) > 200
    with pytest.raises(ValueError, match="too short"):
        fit_to_tokens(plan, count, 20)


def test_probe_items_are_seeded_per_cell_and_fit_the_context(resources, tokenizer) -> None:
    kwargs = dict(context_lengths=[160], n_needles=[1, 2], items_per_cell=2, number_digits=4, seed=5)
    small = probe_items(resources, resources.filler, tokenizer, depths=[0, 100], **kwargs)
    large = probe_items(resources, resources.filler, tokenizer, depths=[0, 50, 100], **kwargs)
    again = probe_items(resources, resources.filler, tokenizer, depths=[0, 100], **kwargs)
    assert small.equals(again)
    assert len(small) == 8 and len(large) == 12
    merged = small.merge(large, on="id", suffixes=("", "_large"))
    assert (merged["prompt"] == merged["prompt_large"]).all()  # adding a depth leaves other cells unchanged
    assert (small["n_prompt_tokens"] <= 160).all()
    _, probe_cities = split_cities(resources)
    for row in large.itertuples():
        assert row.prompt.startswith("Question: ") and row.prompt.endswith("\nAnswer:")
        assert row.prompt[row.value_span[0] : row.value_span[1]] == row.answer
        assert row.target_city in probe_cities and row.target_city in row.prompt[slice(*row.answer_span)]
        assert len(row.distractor_spans) == row.n_needles - 1
    other = probe_items(resources, resources.filler, tokenizer, depths=[0, 100], **{**kwargs, "seed": 6})
    assert not (other["prompt"] == small["prompt"]).all()


def test_corpus_is_deterministic_bounded_and_disjoint_from_probe_cities(resources) -> None:
    kwargs = dict(size=60, n_needles=[1, 3], min_chars=150, max_chars=400, number_digits=4, seed=1)
    corpus = corpus_documents(resources, resources.filler, **kwargs)
    assert corpus.equals(corpus_documents(resources, resources.filler, **kwargs))
    assert list(corpus.columns) == ["text"] and len(corpus) == 60
    assert (corpus["text"].str.len() <= 400).all()
    _, probe_cities = split_cities(resources)
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, probe_cities)) + r")\b")
    for text in corpus["text"]:
        assert text.startswith("Question: ")
        answer = text.rsplit("\nAnswer: ", 1)[1]
        assert re.fullmatch(r"[1-9][0-9]{3}", answer) and text.count(answer) == 2
        assert pattern.search(text) is None
    with pytest.raises(ValueError, match="max_chars"):
        corpus_documents(resources, resources.filler, **{**kwargs, "max_chars": 60, "min_chars": 50})


def test_hub_haystack_offline_error_names_the_dataset(monkeypatch) -> None:
    import datasets.config

    from attnlab.needle.resources import load_hub_haystack, split_sentences

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(RuntimeError, match=r"'attnlab-test/no-such-dataset'.*needle.haystack.source: resources"):
        load_hub_haystack("attnlab-test/no-such-dataset", None, "test")
    assert split_sentences("It rained. Then it stopped! Did it? yes.") == ["It rained.", "Then it stopped!", "Did it? yes."]

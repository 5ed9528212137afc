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
    # the target sits in the gap whose realised depth is nearest the nominal one: recompute every gap's depth from
    # the context without the target (its sentences and their ends)
    start, end = episode.target_span
    rest = (context[:start] + context[end + 1 :]) if start == 0 else (context[: start - 1] + context[end:])
    sentences = [*plan.filler[:8], *plan.needles[1:]]
    ends = sorted(rest.index(s) + len(s) for s in sentences)
    movable = len(rest) + 1  # positions the target's first character can take: after any sentence and its space
    gap_depths = [0.0] + [(e + 1) / movable for e in ends]
    best = min(abs(g - depth / 100) for g in gap_depths)
    assert abs(episode.depth_actual - depth / 100) == pytest.approx(best)
    assert episode.depth_actual == pytest.approx(start / movable)
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


def test_probe_context_grows_with_the_needles_and_the_tolerance_is_enforced(resources, tokenizer) -> None:
    kwargs = dict(context_lengths=[300], depths=[25, 50], n_needles=[1, 3], items_per_cell=2, number_digits=4, seed=5)
    grown = probe_items(resources, resources.filler, tokenizer, context_per_needle=70, depth_tolerance=0.1, **kwargs)
    assert set(grown.groupby("n_needles")["context_budget"].first().items()) == {(1, 300), (3, 440)}
    assert (grown["n_prompt_tokens"] <= grown["context_budget"]).all()
    assert ((grown["depth_actual"] - grown["depth"] / 100).abs() <= 0.1).all()
    flat = probe_items(resources, resources.filler, tokenizer, **kwargs)
    assert grown.groupby("n_needles")["n_filler"].mean()[3] > flat.groupby("n_needles")["n_filler"].mean()[3]
    # a context with (almost) no room for filler cannot place the target at 25 % or 50 %
    with pytest.raises(ValueError, match=r"depth=25 %, n_needles=3: no draw of 32 .*context_per_needle"):
        probe_items(resources, resources.filler, tokenizer, **{**kwargs, "context_lengths": [200], "n_needles": [3]},
                    depth_tolerance=0.001)


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


def test_default_study_grid_holds_every_nominal_depth_within_the_tolerance() -> None:
    """The default config's probe grid (every context length x depth x N x item) with the default study's tokenizer
    recipe: every item's realised depth is within 0.10 of its nominal depth, with the haystack kept at every N, and
    the longest prompt plus the generated tokens lies inside the pretraining blocks.

    The tokenizer is trained as the default study trains it (byte-level BPE, the configured vocabulary size) on the
    first 2,000 problems of the default study's synthetic train split, to keep the test short.
    """
    from pathlib import Path

    import yaml

    from attnlab.config import validate_config
    from attnlab.data.synthetic import load_synthetic
    from attnlab.models.pretrain import corpus_documents as tokenizer_documents
    from attnlab.models.tokenizer import train_tokenizer

    root = Path(__file__).resolve().parents[1]
    config = validate_config(yaml.safe_load((root / "config.yaml").read_text()))
    section = config["needle"]
    assert section["depth_tolerance"] == pytest.approx(0.10)
    train = load_synthetic(config["datasets"][config["tokenizer"]["corpus"]], "train", config["seed"], 2000)
    tokenizer = train_tokenizer(tokenizer_documents(train), config["tokenizer"]["vocab_size"])
    resources = load_needle_resources()
    items = probe_items(
        resources,
        resources.filler,
        tokenizer,
        context_lengths=section["context_lengths"],
        depths=section["depths"],
        n_needles=section["n_needles"],
        items_per_cell=section["items_per_cell"],
        number_digits=section["number_digits"],
        seed=config["seed"],
        context_per_needle=section["context_per_needle"],
        depth_tolerance=None,  # no redraws: the placement alone must hold the depth
    )
    cells = len(section["context_lengths"]) * len(section["depths"]) * len(section["n_needles"])
    assert len(items) == cells * section["items_per_cell"]
    error = (items["depth_actual"] - items["depth"] / 100).abs()
    worst = error.groupby([items["depth"], items["n_needles"]]).max()
    assert (worst <= 0.10).all(), f"cells off their nominal depth:\n{worst[worst > 0.10]}"
    filler = items.groupby("n_needles")["n_filler"].mean()
    assert filler.min() >= 0.8 * filler.max()  # the haystack keeps its size as N grows
    assert (items["n_prompt_tokens"] <= items["context_budget"]).all()
    assert items["n_prompt_tokens"].max() + section["max_new_tokens"] <= config["pretrain"]["max_length"]

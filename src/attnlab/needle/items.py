"""Needle episodes: a haystack of filler sentences with magic-number needles, and a question about one.

An episode is the text inside the project's one prompt format (:func:`attnlab.prompts.format_question`)::

    Question: <filler> <filler> The magic number for Lima is 4821. <filler> ... What is the magic number for Lima?
    Answer: 4821

with character spans recorded for the target needle (the *answer span*), the number inside it, the other
(distractor) needles and the question sentence; everything else in the context is haystack.

Placement. An episode is first drawn as an :class:`EpisodePlan` (cities, numbers, templates, a shuffled filler
order and, per needle, a slot fraction in [0, 1]; the target's is its depth), independent of any tokenizer. It is
then realised with ``m`` filler sentences: distractor j goes into slot ``round(fraction_j * m)`` (slot k = before
filler sentence k, slot m = after the last), and the target into the gap between sentences whose realised depth
(character offset of its start over the positions it could start at) is nearest its nominal depth, so depth 0 % is
always the first and 100 % the last sentence of the context (:func:`realize`). Probe items take the largest ``m``
whose prompt fits the cell's token budget in the model's tokenizer (:func:`fit_to_tokens`, :func:`context_budget`:
the context grows with the number of needles so the haystack keeps its size) and are redrawn until the realised
depth is within a tolerance of the nominal one (:func:`probe_items`);
corpus episodes the largest ``m`` whose document fits a character budget (no tokenizer needed, so the corpus does not
depend on the tokenizer).

Seeds. Every probe item has its own ``random.Random`` seeded by ``crc32("{seed}:needle:{L}:{depth}:{N}:{i}")``, so an
item does not change when other cells of the grid are added or removed, and items are identical for every model
that shares a tokenizer (paired comparisons).
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from typing import Callable, Sequence

import pandas as pd
import pyarrow as pa

from attnlab.needle.resources import NeedleResources, split_cities
from attnlab.prompts import format_example, format_question

__all__ = [
    "ITEM_SCHEMA",
    "Episode",
    "EpisodePlan",
    "context_budget",
    "corpus_documents",
    "draw_plan",
    "fit_to_tokens",
    "item_seed",
    "probe_items",
    "realize",
]

Span = tuple[int, int]


@dataclass(frozen=True)
class EpisodePlan:
    """Everything random about an episode except how many filler sentences it gets.

    Attributes:
        needles: needle sentences, the target first.
        numbers: their magic numbers (distinct), the target's first.
        cities: their cities (distinct), the target's first.
        fractions: slot fraction per needle in [0, 1]; ``fractions[0] = depth / 100``.
        question: the question sentence (about ``cities[0]``).
        filler: the shuffled filler sentences an episode takes its first ``m`` from.
        depth: the target's nominal depth in percent.
    """

    needles: tuple[str, ...]
    numbers: tuple[int, ...]
    cities: tuple[str, ...]
    fractions: tuple[float, ...]
    question: str
    filler: tuple[str, ...]
    depth: float


@dataclass(frozen=True)
class Episode:
    """A realised episode; spans are ``[start, end)`` character offsets into :attr:`question`.

    Attributes:
        question: the context and the question sentence, what :func:`format_question` wraps.
        answer: the target's magic number as written.
        target_span: the target needle sentence (the *answer span*).
        value_span: the number inside the target needle.
        distractor_spans: the other needle sentences, in plan order.
        question_span: the question sentence at the end.
        n_filler: filler sentences in the context.
        depth_actual: where the target starts, as a fraction of the positions it could start at in the context
            (0 = first character, 1 = ends at the end of the context).
    """

    question: str
    answer: str
    target_span: Span
    value_span: Span
    distractor_spans: tuple[Span, ...]
    question_span: Span
    n_filler: int
    depth_actual: float


def item_seed(seed: int, *parts: object) -> int:
    """A stable seed for one item: ``crc32("{seed}:needle:{part}:{part}...")`` (never Python's salted ``hash``)."""
    return zlib.crc32(":".join([str(seed), "needle", *map(str, parts)]).encode())


def draw_plan(
    rng: random.Random,
    resources: NeedleResources,
    filler: Sequence[str],
    cities: Sequence[str],
    n_needles: int,
    depth: float,
    number_digits: int,
) -> EpisodePlan:
    """Draw one episode's cities, numbers, templates, slot fractions and filler order.

    Args:
        rng: the item's random generator.
        resources: templates.
        filler: haystack sentences to draw from.
        cities: the city pool (corpus or probe share).
        n_needles: needles in the context (>= 1); the first is the target.
        depth: the target's depth in percent, 0..100.
        number_digits: digits of each magic number (no leading zero).

    Raises:
        ValueError: if the pool has fewer cities than needles or the depth is outside 0..100.
    """
    if n_needles < 1 or n_needles > len(cities):
        raise ValueError(f"n_needles={n_needles}: need 1..{len(cities)} (cities in the pool)")
    if not 0 <= depth <= 100:
        raise ValueError(f"depth must be a percentage in [0, 100], got {depth}")
    chosen = rng.sample(list(cities), n_needles)
    low, high = 10 ** (number_digits - 1), 10**number_digits - 1
    numbers: list[int] = []
    while len(numbers) < n_needles:
        value = rng.randint(low, high)
        if value not in numbers:
            numbers.append(value)
    needles = [rng.choice(resources.needle_templates).format(city=c, number=n) for c, n in zip(chosen, numbers)]
    fractions = [depth / 100.0] + [rng.random() for _ in range(n_needles - 1)]
    question = rng.choice(resources.question_templates).format(city=chosen[0])
    order = rng.sample(list(filler), len(filler))
    return EpisodePlan(
        needles=tuple(needles),
        numbers=tuple(numbers),
        cities=tuple(chosen),
        fractions=tuple(fractions),
        question=question,
        filler=tuple(order),
        depth=float(depth),
    )


def realize(plan: EpisodePlan, n_filler: int) -> Episode:
    """The episode with the first ``n_filler`` filler sentences of the plan and the needles in their places.

    Placement. The distractors go into slot ``round(fraction_j * m)`` of the ``m`` filler sentences (slot k = before
    filler sentence k, ties in fraction order). The target then goes into the gap between these ``K`` sentences whose
    realised depth is nearest the nominal one: with sentence lengths ``l_k`` (characters) and single spaces, gap g
    puts the target's first character at ``s_g = Σ_{k<g} (l_k + 1)`` of a context whose other text takes
    ``M = Σ_k l_k + K`` characters, so the realised depth is ``s_g / M`` (0 at the first gap, 1 at the last); the
    nearest gap (the earlier on a tie) is taken. Depth 0 % is therefore always the first and 100 % the last
    sentence, and the realised depth is within half the longest sentence's share of the nominal one.
    """
    if not 0 <= n_filler <= len(plan.filler):
        raise ValueError(f"n_filler must be in 0..{len(plan.filler)}, got {n_filler}")
    keys = sorted((round(fraction * n_filler), fraction, j) for j, fraction in enumerate(plan.fractions) if j > 0)
    others: list[tuple[str, int | None]] = []  # (sentence, needle index or None for filler), target left out
    position = 0
    for k in range(n_filler + 1):
        while position < len(keys) and keys[position][0] == k:
            others.append((plan.needles[keys[position][2]], keys[position][2]))
            position += 1
        if k < n_filler:
            others.append((plan.filler[k], None))
    movable = sum(len(sentence) for sentence, _ in others) + len(others)  # M: context length without the target
    starts = [0]
    for sentence, _ in others:
        starts.append(starts[-1] + len(sentence) + 1)
    starts[-1] = movable  # the last gap: the target ends the context
    wanted = plan.depth / 100.0
    gap = min(range(len(starts)), key=lambda g: (abs(starts[g] / max(1, movable) - wanted), g))
    pieces = others[:gap] + [(plan.needles[0], 0)] + others[gap:]
    spans: dict[int, Span] = {}
    text = ""
    for sentence, j in pieces:
        if text:
            text += " "
        if j is not None:
            spans[j] = (len(text), len(text) + len(sentence))
        text += sentence
    context_length = len(text)
    q_start = context_length + 1
    question = text + " " + plan.question
    target = spans[0]
    answer = str(plan.numbers[0])
    value_start = question.rindex(answer, target[0], target[1])
    return Episode(
        question=question,
        answer=answer,
        target_span=target,
        value_span=(value_start, value_start + len(answer)),
        distractor_spans=tuple(spans[j] for j in range(1, len(plan.needles))),
        question_span=(q_start, len(question)),
        n_filler=n_filler,
        depth_actual=target[0] / max(1, context_length - (target[1] - target[0])),
    )


def fit_to_tokens(plan: EpisodePlan, count_tokens: Callable[[str], int], budget: int) -> Episode:
    """The episode with the most filler sentences whose prompt has at most ``budget`` tokens.

    ``count_tokens(prompt)`` counts the tokens the model sees (special tokens included). The token count grows
    with the filler, so a bisection over ``m`` finds the largest fitting one.

    Raises:
        ValueError: if even the needles and the question alone exceed the budget.
    """
    def fits(m: int) -> bool:
        return count_tokens(format_question(realize(plan, m).question)) <= budget

    if not fits(0):
        n = count_tokens(format_question(realize(plan, 0).question))
        raise ValueError(
            f"context length {budget} tokens is too short: {len(plan.needles)} needle(s) and the question alone "
            f"take {n} tokens (raise needle.context_lengths or lower needle.n_needles)"
        )
    low, high = 0, len(plan.filler)  # fits(low) holds
    if fits(high):
        return realize(plan, high)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return realize(plan, low)


ITEM_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("context_length", pa.int64(), nullable=False),
        pa.field("depth", pa.float64(), nullable=False),
        pa.field("n_needles", pa.int64(), nullable=False),
        pa.field("item", pa.int64(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("answer", pa.string(), nullable=False),
        pa.field("target_city", pa.string(), nullable=False),
        pa.field("answer_span", pa.list_(pa.int64()), nullable=False),
        pa.field("value_span", pa.list_(pa.int64()), nullable=False),
        pa.field("distractor_spans", pa.list_(pa.list_(pa.int64())), nullable=False),
        pa.field("question_span", pa.list_(pa.int64()), nullable=False),
        pa.field("n_filler", pa.int64(), nullable=False),
        pa.field("n_prompt_tokens", pa.int64(), nullable=False),
        pa.field("context_budget", pa.int64(), nullable=False),
        pa.field("depth_actual", pa.float64(), nullable=False),
    ]
)


def _shift(span: Span, offset: int) -> list[int]:
    return [span[0] + offset, span[1] + offset]


def context_budget(context_length: int, n_needles: int, context_per_needle: int) -> int:
    """Prompt tokens allowed in a cell: ``context_length + (n_needles - 1) * context_per_needle``.

    Growing the context by about one needle's tokens per extra needle keeps the filler (the haystack) the same
    size at every needle count, so the target can be placed near its nominal depth at every N.
    """
    return int(context_length) + (int(n_needles) - 1) * int(context_per_needle)


#: redraws of an item whose realised depth misses the tolerance before the grid is rejected
MAX_DRAWS = 32


def probe_items(
    resources: NeedleResources,
    filler: Sequence[str],
    tokenizer,
    *,
    context_lengths: Sequence[int],
    depths: Sequence[float],
    n_needles: Sequence[int],
    items_per_cell: int,
    number_digits: int,
    seed: int,
    context_per_needle: int = 0,
    depth_tolerance: float | None = None,
) -> pd.DataFrame:
    """The probe grid: ``items_per_cell`` items per context length x depth x number of needles.

    A cell's prompt budget is :func:`context_budget` (``context_length`` at one needle, ``context_per_needle``
    more tokens per extra needle). Spans are shifted into prompt coordinates (the prompt is
    ``format_question(episode.question)``), so they index the text the tokenizer's offset mapping refers to.
    Cities come from the probe share only.

    Depth tolerance. With ``depth_tolerance`` set, an item whose realised depth ``depth_actual`` differs from
    ``depth / 100`` by more is redrawn from the next seed (``item_seed(seed, L, depth, N, i, draw)``, draw = 1, 2,
    ...; draw 0 is the seed without a draw number), up to :data:`MAX_DRAWS` times; so every item of the grid
    holds its nominal depth within the tolerance.

    Returns:
        One row per item, columns of :data:`ITEM_SCHEMA`; ``n_prompt_tokens <= context_budget``.

    Raises:
        ValueError: naming the cell when no draw holds the depth within the tolerance (the context has too
            little filler for the placement: raise needle.context_lengths or needle.context_per_needle).
    """
    _, probe_cities = split_cities(resources)

    def count_tokens(text: str) -> int:
        return len(tokenizer(text)["input_ids"])

    rows = []
    for length in context_lengths:
        for depth in depths:
            for n in n_needles:
                budget = context_budget(length, n, context_per_needle)
                for i in range(items_per_cell):
                    for draw in range(MAX_DRAWS):
                        parts = (length, float(depth), n, i) if draw == 0 else (length, float(depth), n, i, draw)
                        rng = random.Random(item_seed(seed, *parts))
                        plan = draw_plan(rng, resources, filler, probe_cities, n, float(depth), number_digits)
                        episode = fit_to_tokens(plan, count_tokens, budget)
                        if depth_tolerance is None or abs(episode.depth_actual - depth / 100.0) <= depth_tolerance:
                            break
                    else:
                        raise ValueError(
                            f"needle cell context_length={length} (budget {budget} tokens), depth={depth:g} %, "
                            f"n_needles={n}: no draw of {MAX_DRAWS} places the target within {depth_tolerance} of "
                            f"its depth (the last at {episode.depth_actual:.3f} with {episode.n_filler} filler "
                            "sentences); raise needle.context_lengths or needle.context_per_needle"
                        )
                    prompt = format_question(episode.question)
                    offset = prompt.index(episode.question)
                    rows.append(
                        {
                            "id": f"L{length}-d{float(depth):g}-n{n}-{i}",
                            "context_length": int(length),
                            "depth": float(depth),
                            "n_needles": int(n),
                            "item": i,
                            "prompt": prompt,
                            "answer": episode.answer,
                            "target_city": plan.cities[0],
                            "answer_span": _shift(episode.target_span, offset),
                            "value_span": _shift(episode.value_span, offset),
                            "distractor_spans": [_shift(s, offset) for s in episode.distractor_spans],
                            "question_span": _shift(episode.question_span, offset),
                            "n_filler": episode.n_filler,
                            "n_prompt_tokens": count_tokens(prompt),
                            "context_budget": budget,
                            "depth_actual": episode.depth_actual,
                        }
                    )
    return pd.DataFrame(rows, columns=ITEM_SCHEMA.names)


def _shortfall_message(max_chars: int, extra: int, n: int, which: str, needed: int | str) -> str:
    return (
        f"needle.corpus.max_chars={max_chars} (+ {extra} for {n} needles) is too small for {n} needles and a question "
        f"({which} needs {needed} characters)"
    )


def _bare_length(resources: NeedleResources, n: int, number_digits: int, longest: bool) -> int:
    """Characters of an episode of ``n`` needles and no filler, built from the shortest (or longest) corpus city,
    needle template and question template: a bound on every drawn episode's."""
    cities, _ = split_cities(resources)
    pick = max if longest else min
    city = pick(cities, key=len)
    number = 10 ** (number_digits - 1)
    needle = pick((t.format(city=city, number=number) for t in resources.needle_templates), key=len)
    question = pick((t.format(city=city) for t in resources.question_templates), key=len)
    plan = EpisodePlan(needles=(needle,) * n, numbers=(number,) * n, cities=(city,) * n,
                       fractions=(0.0,) * n, question=question, filler=(), depth=0.0)  # fmt: skip
    episode = realize(plan, 0)
    return len(format_example(episode.question, episode.answer))


def corpus_shortfall(
    resources: NeedleResources,
    filler: Sequence[str] | None,
    *,
    size: int,
    n_needles: Sequence[int],
    max_chars: int,
    number_digits: int,
    seed: int,
    min_chars: int,
    chars_per_needle: int = 0,
) -> str | None:
    """Why :func:`corpus_documents` would fail for this spec (an episode's needles and question alone exceed
    ``max_chars`` + its ``chars_per_needle`` share), or None. Cheap bounds first: a needle count whose shortest
    possible episode does not fit fails; when even the longest fits for every count, none fails; in between the
    corpus's seeded draws are replayed (``filler`` given; with None only the bounds are checked). ``min_chars``
    is part of the draws, so it is the spec's (at most ``max_chars``)."""
    fits_all = True
    for n in sorted(set(n_needles)):
        room = max_chars + (n - 1) * chars_per_needle
        shortest = _bare_length(resources, n, number_digits, longest=False)
        if shortest > room:
            return _shortfall_message(max_chars, room - max_chars, n, "every episode", f"at least {shortest}")
        fits_all = fits_all and _bare_length(resources, n, number_digits, longest=True) <= room
    if fits_all or filler is None:
        return None
    corpus_cities, _ = split_cities(resources)
    rng = random.Random(item_seed(seed, "corpus"))
    for index in range(size):  # the draws of corpus_documents, in its order (a test holds the two together)
        n = rng.choice(list(n_needles))
        plan = draw_plan(rng, resources, filler, corpus_cities, n, rng.uniform(0.0, 100.0), number_digits)
        extra = (n - 1) * chars_per_needle
        rng.randint(min_chars, max_chars)  # the episode's budget: drawn, not needed here
        episode = realize(plan, 0)
        needed = len(format_example(episode.question, episode.answer))
        if needed > max_chars + extra:
            return _shortfall_message(max_chars, extra, n, f"episode {index}", needed)
    return None


def corpus_documents(
    resources: NeedleResources,
    filler: Sequence[str],
    *,
    size: int,
    n_needles: Sequence[int],
    min_chars: int,
    max_chars: int,
    number_digits: int,
    seed: int,
    chars_per_needle: int = 0,
) -> pd.DataFrame:
    """Pretraining episodes: one document per row, column ``text`` = ``format_example(question, answer)``.

    Each episode draws its number of needles ``n`` from ``n_needles``, a depth uniformly in [0, 100] % and a
    character budget uniformly in [min_chars, max_chars] plus ``(n - 1) * chars_per_needle`` (the probe's context
    growth per needle, in characters); it gets the most filler sentences whose document fits the budget. Cities come from the corpus share only (disjoint from every probe item's cities).

    Raises:
        ValueError: if ``max_chars`` cannot hold the needles and the question.
    """
    corpus_cities, _ = split_cities(resources)
    rng = random.Random(item_seed(seed, "corpus"))
    texts = []
    for index in range(size):
        n = rng.choice(list(n_needles))
        plan = draw_plan(rng, resources, filler, corpus_cities, n, rng.uniform(0.0, 100.0), number_digits)
        extra = (n - 1) * chars_per_needle
        budget = rng.randint(min_chars, max_chars) + extra

        def document(m: int) -> str:
            episode = realize(plan, m)
            return format_example(episode.question, episode.answer)

        if len(document(0)) > max_chars + extra:
            raise ValueError(
                f"needle.corpus.max_chars={max_chars} (+ {extra} for {n} needles) is too small for {n} needles and a question "
                f"(episode {index} needs {len(document(0))} characters)"
            )
        m = 0
        while m < len(plan.filler) and len(document(m + 1)) <= budget:
            m += 1
        texts.append(document(m))
    return pd.DataFrame({"text": texts})

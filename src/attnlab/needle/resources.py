"""The needle task's embedded inputs: filler sentences, city names, needle and question templates.

``resources/needle/filler.txt`` holds one haystack sentence per line (no digits, no city names, never the
words "magic number"); ``resources/needle/needles.yaml`` the templates and cities. An optional hub haystack
(e.g. wikitext through ``datasets``) replaces the filler sentences (:func:`load_hub_haystack`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from attnlab.paths import resources_dir

__all__ = ["NeedleResources", "load_hub_haystack", "load_needle_resources", "split_cities", "split_sentences"]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


@dataclass(frozen=True)
class NeedleResources:
    """Everything an episode is drawn from.

    Attributes:
        filler: haystack sentences (each ends with punctuation, no digits).
        needle_templates: sentences with ``{city}`` and ``{number}``.
        question_templates: questions with ``{city}``.
        cities: all city names, in file order.
        probe_share: fraction of ``cities`` (the tail of the list) reserved for probe items.
    """

    filler: tuple[str, ...]
    needle_templates: tuple[str, ...]
    question_templates: tuple[str, ...]
    cities: tuple[str, ...]
    probe_share: float


def _check_templates(templates: list[str], fields: tuple[str, ...], where: str) -> tuple[str, ...]:
    if not templates:
        raise ValueError(f"{where}: no templates")
    for i, template in enumerate(templates):
        for field in fields:
            if "{" + field + "}" not in template:
                raise ValueError(f"{where}[{i}]: template {template!r} lacks {{{field}}}")
    return tuple(templates)


def read_filler(path: str | Path) -> tuple[str, ...]:
    """Filler sentences from a text file, one a line (``#`` comments and blank lines skipped).

    Raises:
        ValueError: naming the line of a sentence with a digit (numbers would make retrieval ambiguous).
    """
    sentences = []
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if re.search(r"[0-9]", text):
            raise ValueError(f"{path}:{lineno}: filler sentence contains a digit: {text!r}")
        sentences.append(text)
    if len(sentences) < 10:
        raise ValueError(f"{path}: needs at least 10 filler sentences, found {len(sentences)}")
    return tuple(sentences)


def load_needle_resources(folder: str | Path | None = None) -> NeedleResources:
    """Read ``filler.txt`` and ``needles.yaml`` from ``folder`` (default ``resources/needle``)."""
    folder = Path(folder) if folder is not None else resources_dir() / "needle"
    spec_path = folder / "needles.yaml"
    with open(spec_path, encoding="utf-8") as fh:
        spec = yaml.safe_load(fh)
    cities = [str(c) for c in spec.get("cities", [])]
    if len(set(cities)) != len(cities):
        raise ValueError(f"{spec_path}: duplicate city names")
    share = float(spec.get("probe_share", 0.25))
    if not 0 < share < 1:
        raise ValueError(f"{spec_path}: probe_share must be in (0, 1), got {share}")
    return NeedleResources(
        filler=read_filler(folder / "filler.txt"),
        needle_templates=_check_templates(spec.get("needle_templates", []), ("city", "number"), f"{spec_path}: needle_templates"),
        question_templates=_check_templates(spec.get("question_templates", []), ("city",), f"{spec_path}: question_templates"),
        cities=tuple(cities),
        probe_share=share,
    )


def split_cities(resources: NeedleResources) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(corpus cities, probe cities): the last ``round(probe_share * n)`` cities (at least one) are probe-only.

    Disjoint by construction, so no needle sentence of a probe item occurs in the pretraining corpus.
    """
    n_probe = max(1, min(len(resources.cities) - 1, round(resources.probe_share * len(resources.cities))))
    return resources.cities[:-n_probe], resources.cities[-n_probe:]


def split_sentences(text: str) -> list[str]:
    """Sentences of running text: split after ``.``/``!``/``?`` followed by whitespace and a capital letter."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def load_hub_haystack(hub_id: str, hub_config: str | None, split: str, max_sentences: int = 5000) -> tuple[str, ...]:
    """Haystack sentences from a hub text dataset (e.g. ``wikitext``, ``wikitext-2-raw-v1``), via ``datasets``.

    Lines of the ``text`` column are split into sentences; sentences with digits (they would compete with the
    magic numbers), headings (``= ... =``) and fragments shorter than 20 characters are dropped; the first
    ``max_sentences`` are kept, in dataset order.

    Raises:
        RuntimeError: naming the dataset when it is neither cached nor downloadable (offline).
    """
    try:
        import datasets
    except ImportError as err:  # pragma: no cover - datasets is a dependency
        raise RuntimeError("the hub haystack needs the `datasets` package") from err
    try:
        data = datasets.load_dataset(hub_id, hub_config, split=split)
    except Exception as err:  # datasets raises many types (ConnectionError, DatasetNotFoundError, ...)
        raise RuntimeError(
            f"needle haystack: cannot load hub dataset {hub_id!r} (config {hub_config!r}, split {split!r}): "
            f"{type(err).__name__}: {err}. It must be in the local Hugging Face cache or the network reachable; "
            "or use needle.haystack.source: resources"
        ) from err
    if "text" not in data.column_names:
        raise RuntimeError(f"needle haystack: hub dataset {hub_id!r} has no 'text' column ({data.column_names})")
    sentences: list[str] = []
    for line in data["text"]:
        line = line.strip()
        if not line or line.startswith("="):
            continue
        for sentence in split_sentences(line):
            if len(sentence) >= 20 and not re.search(r"[0-9]", sentence) and sentence[-1] in ".!?":
                sentences.append(sentence)
                if len(sentences) >= max_sentences:
                    return tuple(sentences)
    if len(sentences) < 10:
        raise RuntimeError(f"needle haystack: hub dataset {hub_id!r} gave only {len(sentences)} usable sentences")
    return tuple(sentences)

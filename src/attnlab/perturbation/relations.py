"""Knowledge bases of factual relations: probes with target spans, and the ``facts`` pretraining corpus.

A knowledge base is a YAML file (``resources/relations/{name}.yaml``)::

    name: fictional
    relations:
      capital:
        templates: ["The capital of {subject} is {object}", ...]   # {object} last: it is the target
        facts: [[Rifelistan, Drouzex], ...]                          # [subject, object]

``fictional`` holds invented entities (12 relations × 24 facts) whose statements go into the scratch
pretraining corpus (``pretrain.extra_corpora: [facts]``); ``real`` holds well-known country facts
for pretrained hub models. A statement is ``template.format(subject, object) + "."``; the **prompt**
is everything before the object, the **target** is `` {object}`` (with its leading space, which
byte-level BPE tokenizers attach to the object's first token) and its character span is recorded.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import yaml

from attnlab.paths import resources_dir

#: columns of a probe table (one row per fact × template)
PROBE_COLUMNS = (
    "relation", "fact_index", "template_index", "subject", "object",
    "prompt", "target", "sentence", "target_start", "target_end",
)  # fmt: skip

_PLACEHOLDER = re.compile(r"\{(\w*)\}")


class RelationsError(ValueError):
    """A malformed knowledge base; the message names the file and the relation."""


def relations_path(name_or_path: str) -> Path:
    """``fictional`` / ``real`` → ``resources/relations/{name}.yaml``; anything with a suffix is a path."""
    if name_or_path.endswith((".yaml", ".yml")):
        return Path(name_or_path)
    return resources_dir() / "relations" / f"{name_or_path}.yaml"


def load_relations(name_or_path: str, min_relations: int = 1, min_facts: int = 1) -> dict[str, dict[str, Any]]:
    """Read and check a knowledge base; returns ``{relation: {"templates": [...], "facts": [(s, o), ...]}}``.

    Raises:
        FileNotFoundError: the file does not exist.
        RelationsError: a template without ``{subject}`` or not ending in ``{object}``, a fact that is
            not a [subject, object] pair of non-empty strings, a duplicated subject within a relation,
            or fewer relations / facts than asked.
    """
    path = relations_path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(f"knowledge base {name_or_path!r}: file not found: {path}")
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict) or not isinstance(data.get("relations"), dict) or not data["relations"]:
        raise RelationsError(f"{path}: expected a mapping with a non-empty 'relations' mapping")
    relations: dict[str, dict[str, Any]] = {}
    for name, entry in data["relations"].items():
        where = f"{path}: relation {name!r}"
        if not isinstance(entry, dict) or set(entry) != {"templates", "facts"}:
            raise RelationsError(f"{where}: needs exactly the keys 'templates' and 'facts'")
        templates = entry["templates"]
        if not isinstance(templates, list) or not templates:
            raise RelationsError(f"{where}: 'templates' must be a non-empty list")
        for i, template in enumerate(templates):
            fields = _PLACEHOLDER.findall(template) if isinstance(template, str) else None
            if fields is None or sorted(fields) != ["object", "subject"] or not template.endswith("{object}"):
                raise RelationsError(
                    f"{where}: template {i} {template!r} must contain {{subject}} once and end with {{object}}"
                )
            if template.endswith(" {object}") is False:
                raise RelationsError(f"{where}: template {i} {template!r} needs a space before {{object}}")
        facts = entry["facts"]
        if not isinstance(facts, list) or not facts:
            raise RelationsError(f"{where}: 'facts' must be a non-empty list")
        seen: set[str] = set()
        pairs = []
        for i, fact in enumerate(facts):
            if not (isinstance(fact, list) and len(fact) == 2 and all(isinstance(x, str) and x.strip() for x in fact)):
                raise RelationsError(f"{where}: fact {i} {fact!r} must be a [subject, object] pair of non-empty strings")
            if fact[0] in seen:
                raise RelationsError(f"{where}: subject {fact[0]!r} appears twice")
            seen.add(fact[0])
            pairs.append((fact[0], fact[1]))
        relations[str(name)] = {"templates": list(templates), "facts": pairs}
    if len(relations) < min_relations:
        raise RelationsError(f"{path}: {len(relations)} relations, need at least {min_relations}")
    small = [n for n, r in relations.items() if len(r["facts"]) < min_facts]
    if small:
        raise RelationsError(f"{path}: relations {small} have fewer than {min_facts} facts")
    return relations


def statement(template: str, subject: str, obj: str) -> tuple[str, str, int, int]:
    """``(sentence, prompt, target_start, target_end)`` of one fact in one phrasing.

    The target span ``[target_start, target_end)`` covers `` {object}`` including its leading space.
    """
    prompt = template[: -len(" {object}")].replace("{subject}", subject)
    sentence = f"{prompt} {obj}."
    return sentence, prompt, len(prompt), len(prompt) + 1 + len(obj)


def build_probes(
    relations: Mapping[str, Mapping[str, Any]],
    relation_names: list[str] | None = None,
    max_facts: int | None = None,
    templates: list[int] | None = None,
) -> pd.DataFrame:
    """One probe per relation × fact × template, in knowledge-base order (deterministic).

    Args:
        relations: from :func:`load_relations`.
        relation_names: only these relations (``None`` = all); an unknown name is a ``KeyError``.
        max_facts: the first ``max_facts`` facts of each relation (``None`` = all).
        templates: template indices to use (``None`` = all); an index a relation lacks is an ``IndexError``.

    Returns:
        A table with :data:`PROBE_COLUMNS`; ``target`` is ``sentence[target_start:target_end]``.
    """
    names = list(relations) if relation_names is None else list(relation_names)
    rows = []
    for name in names:
        if name not in relations:
            raise KeyError(f"relation {name!r} is not in the knowledge base (has {sorted(relations)})")
        entry = relations[name]
        indices = list(range(len(entry["templates"]))) if templates is None else list(templates)
        for t in indices:
            if not 0 <= t < len(entry["templates"]):
                raise IndexError(f"relation {name!r} has {len(entry['templates'])} templates; no template {t}")
        for f, (subject, obj) in enumerate(entry["facts"][:max_facts]):
            for t in indices:
                sentence, prompt, start, end = statement(entry["templates"][t], subject, obj)
                rows.append((name, f, t, subject, obj, prompt, sentence[start:end], sentence, start, end))
    return pd.DataFrame(rows, columns=list(PROBE_COLUMNS))


def split_probes(
    relations: Mapping[str, Mapping[str, Any]],
    relation_names: list[str] | None,
    max_facts: int | None,
    templates: list[int] | None,
    selection_templates: list[int],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(measurement, selection)`` probes: the same facts, in disjoint sets of phrasings.

    Channels are chosen on the selection probes (``selection_templates``) and their effect is measured on
    the measurement probes (``templates``; ``None`` = every template not in ``selection_templates``), so a
    selection is never scored on the sentences it was fitted to.

    Raises:
        ValueError: a template index in both sets, or no measurement template left.
        IndexError, KeyError: as :func:`build_probes`.
    """
    shared = sorted(set(templates or []) & set(selection_templates))
    if shared:
        raise ValueError(
            f"template(s) {shared} are both measurement (templates) and selection (selection_templates) phrasings"
        )
    selection = build_probes(relations, relation_names, max_facts, list(selection_templates))
    measurement = build_probes(relations, relation_names, max_facts, templates)
    if templates is None:
        measurement = measurement[~measurement["template_index"].isin(selection_templates)].reset_index(drop=True)
    if measurement.empty:
        raise ValueError("no measurement phrasing is left: every template is a selection template")
    return measurement, selection


def facts_corpus(relations: Mapping[str, Mapping[str, Any]], repeats: int, seed: int) -> pd.DataFrame:
    """The ``facts`` pretraining corpus: every fact in every phrasing, ``repeats`` times, shuffled.

    One statement per row (column ``text``); the order comes from ``random.Random(seed)``, so the same
    knowledge base, ``repeats`` and ``seed`` give the same table (and byte-identical Parquet).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    texts = [
        statement(template, subject, obj)[0]
        for entry in relations.values()
        for subject, obj in entry["facts"]
        for template in entry["templates"]
    ]
    docs = texts * repeats
    random.Random(seed).shuffle(docs)
    return pd.DataFrame({"text": docs})


def sample_texts(sentences: list[str], num_texts: int, seed: int) -> list[str]:
    """``num_texts`` distinct sentences drawn with ``numpy.random.default_rng(seed)``, in drawn order."""
    import numpy as np

    if num_texts > len(sentences):
        raise ValueError(f"jacobian.num_texts={num_texts} but only {len(sentences)} sentences are available")
    order = np.random.default_rng(seed).choice(len(sentences), size=num_texts, replace=False)
    return [sentences[i] for i in order]

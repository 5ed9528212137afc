"""Settings of the needle-in-a-haystack stage: its checks, probed models, job specs and targets (pure; no torch;
see :mod:`attnlab.stages`)."""

from __future__ import annotations

from typing import Any, Mapping

from attnlab.models.architectures import architecture_names
from attnlab.study.hubfiles import hub_config_field
from attnlab.study.models import listed_model_errors, replicate_models
from attnlab.study.selections import as_name_list, selected_models, unselected

#: the config section that switches the stage: it runs when ``needle`` is present (and not null)
SECTION: str | None = "needle"


#: scratch architectures the needle probe runs on (causal attention it can capture)
NEEDLE_ARCHITECTURES: tuple[str, ...] = architecture_names(attention=True, causal=True)


def _needle_errors(config: Mapping[str, Any]) -> list[str]:
    """Needle stage: probed models exist and have causal attention; contexts fit the scratch models (the key named
    is the one that matters: ``context_lengths`` when one needle is already too long); the pretraining episodes
    fit ``corpus.max_chars``. Checked on every listed model, whatever the selection."""
    errors: list[str] = []
    extra = (config.get("pretrain") or {}).get("extra_corpora", [])
    if "needle" in extra and "needle" not in config:
        errors.append("config key 'pretrain.extra_corpora': lists needle, but the config has no 'needle' section")
    if "needle" not in config:
        return errors
    section = config["needle"]
    errors += listed_model_errors(config, "needle.models", as_name_list(section.get("models")), NEEDLE_ARCHITECTURES,
                                  "the needle probe needs causal attention")  # fmt: skip
    probed = needle_models(unselected(config))
    if not errors and not probed:
        errors.append("config key 'needle': no model to probe (set needle.models or configure a scratch llama/diffllama/gpt2)")
    one_needle = max(section["context_lengths"]) + section["max_new_tokens"]
    widest = max(section["context_lengths"]) + (max(section["n_needles"]) - 1) * section["context_per_needle"]
    longest = widest + section["max_new_tokens"]
    block = (config.get("pretrain") or {}).get("max_length")
    for name in dict.fromkeys(spec["base"] for spec in probed.values()) if not errors else ():
        spec = config["models"][name]
        if spec["source"] != "scratch":
            continue
        for limit, what in ((spec.get("max_position_embeddings", 512), f"models.{name}.max_position_embeddings"),
                            (block, f"pretrain.max_length, the positions models.{name} was trained on")):  # fmt: skip
            if limit is None or longest <= limit:
                continue
            # the key that matters: context_lengths when one needle alone is too long, else the per-needle growth
            key = "needle.context_lengths" if one_needle > limit else "needle.context_per_needle"
            errors.append(
                f"config key '{key}': the longest cell ({widest} tokens: context_lengths + "
                f"(n_needles - 1) x context_per_needle) + max_new_tokens {section['max_new_tokens']} exceed "
                f"{what} ({limit})"
            )
            break
    corpus = section["corpus"]
    if corpus["min_chars"] > corpus["max_chars"]:
        errors.append(
            f"config key 'needle.corpus.min_chars': {corpus['min_chars']} exceeds needle.corpus.max_chars {corpus['max_chars']}"
        )
    elif "needle" in extra:
        errors += _needle_corpus_errors(config)
    return errors


def _needle_corpus_errors(config: Mapping[str, Any]) -> list[str]:
    """The pretraining episodes fit ``needle.corpus.max_chars`` (+ ``chars_per_needle`` a needle beyond the first):
    the same test as the corpus job (:func:`attnlab.needle.items.corpus_shortfall`) on the same seeded draws."""
    from attnlab.needle.items import corpus_shortfall
    from attnlab.needle.resources import load_needle_resources

    section = config["needle"]
    corpus = section["corpus"]
    resources = load_needle_resources()
    haystack = section.get("haystack") or {}
    # the draws need the filler the job uses; a hub haystack is not read here, so only the no-filler bound is checked
    filler = resources.filler if haystack.get("source", "resources") == "resources" else None
    problem = corpus_shortfall(
        resources, filler, size=corpus["size"], n_needles=corpus["n_needles"], min_chars=corpus["min_chars"],
        max_chars=corpus["max_chars"],
        number_digits=section["number_digits"], seed=int(config["seed"]), chars_per_needle=corpus["chars_per_needle"],
    )  # fmt: skip
    if problem is None:
        return []
    return [
        f"config key 'needle.corpus.max_chars': {problem}; the needle corpus job would fail (raise "
        "needle.corpus.max_chars or chars_per_needle, or lower needle.corpus.n_needles)"
    ]


def _needle_hub_context_errors(config: Mapping[str, Any]) -> list[str]:
    """Needle contexts + answer fit the positions of the probed hub models whose config is cached
    (``max_position_embeddings`` / GPT-2's ``n_positions``); scratch models are checked by :func:`_needle_errors`."""
    if "needle" not in config or _needle_errors(config):
        return []
    section = config["needle"]
    longest = max(section["context_lengths"]) + section["max_new_tokens"]
    errors = []
    for name in dict.fromkeys(spec["base"] for spec in needle_models(config).values()):
        if config["models"][name]["source"] != "hub":
            continue
        positions = hub_config_field(config, name, ("max_position_embeddings", "n_positions"))
        if positions is not None and longest > positions:
            errors.append(
                f"config key 'needle.context_lengths': {max(section['context_lengths'])} tokens + max_new_tokens "
                f"{section['max_new_tokens']} exceed the {positions} positions of {name!r} (its config.json)"
            )
    return errors


def needle_enabled(config: Mapping[str, Any]) -> bool:
    """The needle stage runs when the config has a ``needle`` section."""
    return "needle" in config


def needle_models(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Models the needle stage probes: ``{name: {"base", "seed", "architecture"}}``, bases first, then replicates.

    Bases are ``needle.models`` in the model selection (``select_models``), or (empty) every selected scratch
    model with causal attention; each base's training-seed replicates (``pretrain.replicates``) follow, so results
    can be pooled over seeds.
    ``architecture`` is the scratch architecture, or None for a hub model.
    """
    if "needle" not in config:
        return {}
    selected = selected_models(config)
    listed = as_name_list(config["needle"].get("models"))
    bases = [m for m in listed if m in selected] if listed else [
        m
        for m in selected
        if config["models"][m]["source"] == "scratch" and config["models"][m]["architecture"] in NEEDLE_ARCHITECTURES
    ]
    out = {
        b: {"base": b, "seed": int(config["seed"]), "architecture": config["models"].get(b, {}).get("architecture")}
        for b in bases
    }
    for name, (base, seed) in replicate_models(config).items():
        if base in out:
            out[name] = {"base": base, "seed": int(seed), "architecture": out[base]["architecture"]}
    return out


def needle_probe_spec(config: Mapping[str, Any]) -> dict[str, Any]:
    """The needle settings that change a model's probe results (items, decoding); not the aggregation's."""
    keys = ("context_lengths", "context_per_needle", "depth_tolerance", "depths", "n_needles", "items_per_cell",
            "number_digits", "haystack", "batch_size", "max_new_tokens")
    return {k: config["needle"][k] for k in keys}


def needle_corpus_spec(config: Mapping[str, Any]) -> dict[str, Any]:
    """The needle settings that change the pretraining corpus of needle episodes."""
    return {**config["needle"]["corpus"], "number_digits": config["needle"]["number_digits"],
            "haystack": config["needle"]["haystack"]}


def needle_aggregate_spec(config: Mapping[str, Any]) -> dict[str, Any]:
    """The needle settings of the depth table (query scope, noise classes, bootstrap)."""
    section = config["needle"]
    return {"query_scope": section["query_scope"], "noise_classes": section["noise_classes"], **section["bootstrap"]}


def config_errors(config: Mapping[str, Any]) -> list[str]:
    """The needle stage's checks; the hub models' positions only once its own section is valid."""
    errors = _needle_errors(config)
    return errors or _needle_hub_context_errors(config)


def targets(config: Mapping[str, Any], results: str) -> list[str]:
    """The depth table (Parquet and Markdown) and figure when the study has a ``needle`` section and the model
    selection keeps a model it probes."""

    if not needle_enabled(config) or not needle_models(config):
        return []
    return [f"{results}/tables/needle_depth.parquet", f"{results}/tables/needle_depth.md",
            f"{results}/figures/needle_depth.png"]  # fmt: skip

"""Settings of the needle-in-a-haystack stage: its checks, probed models, job specs and targets (pure; no torch;
see :mod:`attnlab.stages`)."""

from __future__ import annotations

from typing import Any, Mapping

from attnlab.models.architectures import architecture_names
from attnlab.study.hubfiles import hub_config_field
from attnlab.study.models import listed_model_errors, replicate_models
from attnlab.study.selections import as_name_list, selected_models

#: the config section that switches the stage: it runs when ``needle`` is present (and not null)
SECTION: str | None = "needle"


#: scratch architectures the needle probe runs on (causal attention it can capture)
NEEDLE_ARCHITECTURES: tuple[str, ...] = architecture_names(attention=True, causal=True)


def _needle_errors(config: Mapping[str, Any]) -> list[str]:
    """Needle stage: probed models exist and have causal attention; contexts fit the scratch models."""
    errors: list[str] = []
    extra = (config.get("pretrain") or {}).get("extra_corpora", [])
    if "needle" in extra and "needle" not in config:
        errors.append("config key 'pretrain.extra_corpora': lists needle, but the config has no 'needle' section")
    if "needle" not in config:
        return errors
    section = config["needle"]
    errors += listed_model_errors(config, "needle.models", as_name_list(section.get("models")), NEEDLE_ARCHITECTURES,
                                  "the needle probe needs causal attention")  # fmt: skip
    if not errors and not needle_models(config):
        errors.append("config key 'needle': no model to probe (set needle.models or configure a scratch llama/diffllama/gpt2)")
    widest = max(section["context_lengths"]) + (max(section["n_needles"]) - 1) * section["context_per_needle"]
    longest = widest + section["max_new_tokens"]
    block = (config.get("pretrain") or {}).get("max_length")
    for name in dict.fromkeys(spec["base"] for spec in needle_models(config).values()) if not errors else ():
        spec = config["models"][name]
        if spec["source"] == "scratch" and longest > spec.get("max_position_embeddings", 512):
            errors.append(
                f"config key 'needle.context_lengths': the longest cell ({widest} tokens: context_lengths + "
                f"(n_needles - 1) x context_per_needle) + max_new_tokens {section['max_new_tokens']} exceed "
                f"models.{name}.max_position_embeddings ({spec.get('max_position_embeddings', 512)})"
            )
        elif spec["source"] == "scratch" and block is not None and longest > block:
            key = "needle.context_per_needle" if section["context_per_needle"] else "needle.context_lengths"
            errors.append(
                f"config key '{key}': the longest cell ({widest} tokens: context_lengths + "
                f"(n_needles - 1) x context_per_needle) + max_new_tokens {section['max_new_tokens']} exceed "
                f"pretrain.max_length ({block}), the positions models.{name} was trained on"
            )
    corpus = section["corpus"]
    if corpus["min_chars"] > corpus["max_chars"]:
        errors.append(
            f"config key 'needle.corpus.min_chars': {corpus['min_chars']} exceeds needle.corpus.max_chars {corpus['max_chars']}"
        )
    return errors


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

    Bases are ``needle.models``, or (empty) every selected scratch model with causal attention; each base's
    training-seed replicates (``pretrain.replicates``) follow, so results can be pooled over seeds.
    ``architecture`` is the scratch architecture, or None for a hub model.
    """
    if "needle" not in config:
        return {}
    bases = as_name_list(config["needle"].get("models")) or [
        m
        for m in selected_models(config)
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
    """The depth table (Parquet and Markdown) and figure when the study has a ``needle`` section."""

    if not needle_enabled(config):
        return []
    return [f"{results}/tables/needle_depth.parquet", f"{results}/tables/needle_depth.md",
            f"{results}/figures/needle_depth.png"]  # fmt: skip

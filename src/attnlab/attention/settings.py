"""Settings of the attention-allocation stage: its checks, measured models, job spec and targets (pure; no
torch; see :mod:`attnlab.stages`)."""

from __future__ import annotations

from typing import Any, Mapping

from attnlab.models.architectures import architecture_names
from attnlab.study.models import evaluated_replicates, listed_model_errors, uses_diffusion_generation
from attnlab.study.selections import as_name_list, model_variants, selected_models, unselected

#: the config section that switches the stage: it runs when ``attention`` is present (and not null)
SECTION: str | None = "attention"


#: scratch architectures whose attention the stage captures (mdlm: Llama modules, non-causal)
ATTENTION_ARCHITECTURES: tuple[str, ...] = architecture_names(attention=True)


def _attention_errors(config: Mapping[str, Any]) -> list[str]:
    """Attention stage (research question 2): measured models exist and have attention the stage can capture."""
    if "attention" not in config:
        return []
    errors: list[str] = []
    section = config.get("attention", {})
    names = as_name_list(section.get("models"))
    errors += listed_model_errors(config, "attention.models", names, ATTENTION_ARCHITECTURES,
                                  "it has no attention to measure")  # fmt: skip
    for name in names:
        spec = config["models"].get(name)
        if spec is not None and spec["source"] == "hub" and uses_diffusion_generation(spec):
            errors.append(
                f"config key 'attention.models': {name!r} is a hub diffusion model (custom modeling code); the "
                "attention stage captures llama, diffllama, gpt2 and the project's mdlm only"
            )
    if not errors and not attention_models(unselected(config)):
        errors.append(
            "config key 'attention.models': no model to measure (configure a model with "
            f"attention: {', '.join(ATTENTION_ARCHITECTURES)} or a hub model)"
        )
    return errors


def attention_models(config: Mapping[str, Any]) -> list[str]:
    """Models the attention stage measures: ``attention.models`` (default: every configured model whose architecture
    has attention, and hub models other than diffusion ones), restricted to ``select_models``, plus SFT variants."""
    section = config.get("attention", {})
    names = as_name_list(section.get("models")) or [
        m for m, spec in config["models"].items()
        if (spec["source"] == "hub" and not uses_diffusion_generation(spec))
        or (spec["source"] == "scratch" and spec["architecture"] in ATTENTION_ARCHITECTURES)
    ]
    selected = set(selected_models(config))
    bases = [m for m in names if m in selected]
    return model_variants(config, bases + evaluated_replicates(config, bases))


def attention_spec(config: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON spec of ``attnlab attention measure`` (what changes its results)."""
    section = config["attention"]
    spec = {
        "items": section["items"],
        "query_scopes": list(section["query_scopes"]),
        "token_map_items": section["token_map_items"],
    }
    if "generated" in section["query_scopes"]:  # greedy continuation: evaluation's stop sequences
        spec["max_new_tokens"] = section["max_new_tokens"]
        spec["stop_sequences"] = list(config["evaluation"]["stop_sequences"])
    return spec


def measured_models(config: Mapping[str, Any]) -> list[str]:
    """The models whose attention is measured; none when the study has no ``attention`` section."""

    return attention_models(config) if "attention" in config else []


def config_errors(config: Mapping[str, Any]) -> list[str]:
    """The attention stage's checks (:func:`_attention_errors`)."""
    return _attention_errors(config)


def targets(config: Mapping[str, Any], results: str) -> list[str]:
    """The attention-ratio table and each measured model's heatmap and token maps."""
    models = measured_models(config)
    if not models:
        return []
    return [f"{results}/tables/attention_ratios.parquet",
            *(f"{results}/figures/attention/{m}_ni_heatmap.png" for m in models),
            *(f"{results}/figures/attention/{m}_token_maps.png" for m in models)]  # fmt: skip

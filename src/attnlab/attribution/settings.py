"""Settings of the head-attribution stage: its checks, attributed models, job spec and targets (pure; no torch;
see :mod:`attnlab.stages`)."""

from __future__ import annotations

from typing import Any, Mapping

from attnlab.models.architectures import architecture_names
from attnlab.study.models import listed_model_errors, model_architecture
from attnlab.study.selections import CLEAN, as_name_list, model_variants, selected_models

#: the config section that switches the stage: it runs when ``attribution`` is present (and not null)
SECTION: str | None = "attribution"


#: scratch architectures whose attention heads the gates of attnlab.attribution.gates handle
ATTRIBUTION_ARCHITECTURES: frozenset[str] = frozenset(architecture_names(attention=True))


#: config keys of the `attribution` section that change a method's scores (besides the objective)
ATTRIBUTION_METHOD_KEYS: dict[str, tuple[str, ...]] = {
    "dp": ("baseline", "ig_steps", "quadrature", "postprocess"),
    "stp": ("baseline", "ig_steps", "quadrature", "path_samples", "postprocess"),
    "michel": (),
}


def _attribution_errors(config: Mapping[str, Any]) -> list[str]:
    section = config.get("attribution")
    if section is None:
        return []
    errors: list[str] = []
    errors += listed_model_errors(config, "attribution.models", as_name_list(section.get("models")),
                                  sorted(ATTRIBUTION_ARCHITECTURES), "it has no attention heads to gate")  # fmt: skip
    universe = [CLEAN, *config["noise"]["types"]]
    for name in as_name_list(section["variants"]):
        if name not in universe:
            errors.append(f"config key 'attribution.variants': {name!r} is not one of {universe}")
    if section["quadrature"] == "trapezoid" and section["ig_steps"] < 2:
        errors.append("config key 'attribution.ig_steps': the trapezoid quadrature needs at least 2 steps")
    first, last = section["layers"]["first"], section["layers"]["last"]
    if last is not None and last < first:
        errors.append(f"config key 'attribution.layers.last': {last} is before layers.first {first}")
    from attnlab.study.selections import unselected  # the lists as written: a selection never invalidates them

    for name in attribution_base_models(unselected(config)):
        spec = config["models"][name]
        if spec["source"] == "scratch" and max(first, last if last is not None else 0) >= spec["num_layers"]:
            errors.append(
                f"config key 'attribution.layers': layers {first}..{last} do not fit model {name!r} "
                f"({spec['num_layers']} layers, 0..{spec['num_layers'] - 1})"
            )
    return errors


def _attribution_path_errors(config: Mapping[str, Any]) -> list[str]:
    """The stochastic-threshold path (stp) differs from the diagonal path (dp) only at interior points 0 < τ < 1
    (γ(0) = α₀ and γ(1) = 1 on both): a τ grid with no interior point — riemann_right with 1 step, trapezoid with
    2 — makes stp the dp integral, so stp would duplicate dp under another name."""
    section = config.get("attribution")
    if section is None or "stp" not in section["methods"]:
        return []
    interior = section["ig_steps"] - 1  # riemann_right: k/m, k=1..m-1; trapezoid: k/(m-1), k=1..m-2 (+ both ends)
    if section["quadrature"] == "trapezoid":
        interior = section["ig_steps"] - 2
    if interior < 1:
        return [
            f"config key 'attribution.ig_steps': {section['ig_steps']} step(s) with quadrature {section['quadrature']!r} "
            "evaluate the path only at τ = 0 and τ = 1, where the stochastic-threshold path equals the diagonal one, "
            "so stp would repeat dp; use at least "
            f"{3 if section['quadrature'] == 'trapezoid' else 2} steps or drop stp from attribution.methods"
        ]
    return []


def attribution_enabled(config: Mapping[str, Any]) -> bool:
    """The attribution stage runs when the config has an ``attribution`` section."""
    return config.get("attribution") is not None


def attribution_base_models(config: Mapping[str, Any]) -> list[str]:
    """The configured (selected) models that are attributed: ``attribution.models`` or, when null, every
    selected model with a gated scratch architecture (llama, diffllama, gpt2, mdlm)."""
    if not attribution_enabled(config):
        return []
    chosen = config["attribution"].get("models")
    selected = selected_models(config)
    if chosen is None:
        return [
            m for m in selected
            if config["models"][m]["source"] == "scratch" and config["models"][m]["architecture"] in ATTRIBUTION_ARCHITECTURES
        ]
    names = set(as_name_list(chosen))
    return [m for m in selected if m in names]


def attribution_models(config: Mapping[str, Any]) -> list[str]:
    """The attributed models: the base models followed by their SFT variants."""
    return model_variants(config, attribution_base_models(config))


def attribution_job_spec(config: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The settings that decide one model's score files — and nothing else: the methods' path keys only for
    configured methods, ``mask_probs``/``mask_samples_per_prob`` only for masked-diffusion (or hub) models, so
    that e.g. a new ``mask_probs`` reruns only the mdlm job. One job computes every method of a model (the model
    is loaded and the items tokenized once; the per-job start-up costs more than a small model's attribution)."""
    section = config["attribution"]
    objective = dict(section["objective"])
    if model_architecture(config, model) not in (None, "mdlm"):
        objective.pop("mask_probs", None)
        objective.pop("mask_samples_per_prob", None)
    spec: dict[str, Any] = {
        "methods": list(section["methods"]),
        "items": section["items"],
        "layers": dict(section["layers"]),
        "objective": objective,
        "dtype": section["dtype"],
        "seed": int(section.get("seed", config["seed"])),
        "batch_rows": section["batch_rows"],
    }
    for method in section["methods"]:
        spec.update({key: section[key] for key in ATTRIBUTION_METHOD_KEYS[method]})
    return spec


def config_errors(config: Mapping[str, Any]) -> list[str]:
    """The attribution stage's checks: its section, then the path grid of the stochastic-threshold method."""
    return _attribution_errors(config) + _attribution_path_errors(config)


def targets(config: Mapping[str, Any], results: str) -> list[str]:
    """The method-correlation table when some model is attributed with some method."""

    if not (attribution_models(config) and attribution_enabled(config) and config["attribution"]["methods"]):
        return []
    return [f"{results}/tables/attribution_correlations.parquet"]

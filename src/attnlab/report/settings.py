"""What the report stage needs when a workflow is parsed: its config checks, the robustness-difference pairing
of models, and its final targets (the summary page among them). Numpy- and scipy-free, since it runs on every parse.

Pairing (``robustness_difference.pairs`` null): every differential-attention model (architecture ``diffllama``)
against every standard one (``llama``), zero-shot with zero-shot and each ``+sft-r`` with the same recipe; a
model's training-seed replicates form one arm with it.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from attnlab.study.models import model_architecture, parse_sft_name, replicate_models
from attnlab.study.selections import seed_groups, selected_variants, study_models

#: no config section switches this stage: it runs whenever the study has something for it
SECTION: str | None = None


#: the two architectures of the default pairing
DIFFERENTIAL, STANDARD = "diffllama", "llama"


def robustness_errors(config: Mapping[str, Any]) -> list[str]:
    """What the schema cannot check: every name of ``robustness_difference.pairs`` is a configured model, the
    two of a pair differ."""
    section = config.get("robustness_difference") or {}
    errors = []
    for i, pair in enumerate(section.get("pairs") or []):
        for j, name in enumerate(pair):
            if name not in config["models"]:
                errors.append(f"config key 'robustness_difference.pairs.{i}.{j}': {name!r} is not a configured model")
        if len(pair) == 2 and pair[0] == pair[1]:
            errors.append(f"config key 'robustness_difference.pairs.{i}': a model is compared with itself")
    return errors


def comparison_arms(
    models: Mapping[str, Mapping[str, Any]], pairs: Sequence[Sequence[str]] | None = None
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """[(arm_a, arm_b)]: each arm ``{"label", "models"}`` holds one model's names over its training seeds.

    ``pairs`` None: by architecture (see the module docstring); else each [a, b] of base model names, with every
    recipe both have."""
    if pairs is None:
        arms = _arms(models)
        order = sorted(arms, key=lambda key: (key[0], key[1], key[2] or ""))
        return [  # every differential model against every standard one, zero-shot with zero-shot, +sft-r with +sft-r
            (arms[a], arms[b])
            for a in order if a[0] == DIFFERENTIAL
            for b in order if b[0] == STANDARD and b[2] == a[2]
        ]
    by_label: dict[tuple[str, str | None], dict[str, Any]] = {}
    for name, spec in models.items():
        arm = by_label.setdefault((spec["base_model"], spec.get("recipe")), {"label": _label(spec), "models": []})
        arm["models"].append(name)
    out = []
    for a, b in pairs:
        recipes = sorted({r for (m, r) in by_label if m == a} & {r for (m, r) in by_label if m == b}, key=lambda r: r or "")
        out += [(by_label[(a, r)], by_label[(b, r)]) for r in recipes]
    return out


def _arms(models: Mapping[str, Mapping[str, Any]]) -> dict[tuple[str, str, str | None], dict[str, Any]]:
    """(architecture, base model, recipe) -> {"label", "models": [names, one per training seed]} for the two
    paired architectures."""
    arms: dict[tuple[str, str, str | None], dict[str, Any]] = {}
    for name, spec in models.items():
        if spec.get("architecture") not in (DIFFERENTIAL, STANDARD):
            continue
        key = (str(spec["architecture"]), str(spec["base_model"]), spec.get("recipe"))
        arms.setdefault(key, {"label": _label(spec), "models": []})["models"].append(name)
    return arms


def _label(spec: Mapping[str, Any]) -> str:
    return spec["base_model"] + (f"+sft-{spec['recipe']}" if spec.get("recipe") else "")


def robustness_models(config: Mapping[str, Any], models: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The ``--models`` map of the evaluated ``models``: ``{name: {"base_model", "architecture", "seed", "recipe"}}``.

    A training-seed replicate (``pretrain.replicates``) has its base model's ``base_model`` and its own seed; an SFT
    variant ``m+sft-r`` has ``base_model`` m and ``recipe`` r; hub models have ``architecture`` None."""

    replicates = replicate_models(config)
    out = {}
    for name in models:
        parsed = parse_sft_name(name)
        trained, recipe = parsed if parsed else (name, None)
        base_model, seed = replicates.get(trained, (trained, int(config["seed"])))
        out[name] = {"base_model": base_model, "architecture": model_architecture(config, name), "seed": int(seed),
                     "recipe": recipe}
    return out


def has_pairs(models: Mapping[str, Mapping[str, Any]], pairs: Sequence[Sequence[str]] | None = None) -> bool:
    """Whether the map holds at least one pair to compare (see :func:`comparison_arms`)."""
    return bool(comparison_arms(models, pairs))


def config_errors(config: Mapping[str, Any]) -> list[str]:
    """The report's checks: the robustness-difference pairs (:func:`robustness_errors`)."""
    return robustness_errors(config)


#: the one-page summary of the study (attnlab.report.summary), written after every other final target
SUMMARY = "summary.md"


def targets(config: Mapping[str, Any], results: str) -> list[str]:
    """The difference-of-drops table when two paired models are evaluated clean and noisy, the pooled
    training-seed tables when some model has evaluated replicates, and the summary page (always, last)."""

    models = study_models(config)
    out = []
    pairs = (config.get("robustness_difference") or {}).get("pairs")
    if has_pairs(robustness_models(config, models), pairs) and config["noise"]["types"] and "clean" in selected_variants(config):
        out.append(f"{results}/tables/robustness_difference.parquet")
    if seed_groups(config, models):
        out += [f"{results}/tables/seeds_accuracy.parquet", f"{results}/tables/seeds.md"]
    return out + [f"{results}/{SUMMARY}"]

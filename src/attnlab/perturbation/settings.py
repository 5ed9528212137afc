"""Settings of the perturbation stage: its checks, perturbed models and targets (pure; no torch; see
:mod:`attnlab.stages`)."""

from __future__ import annotations

from typing import Any, Mapping

from attnlab.models.architectures import architecture_names
from attnlab.study.hubfiles import hub_model_files, model_hidden_size, token_count
from attnlab.study.models import listed_model_errors
from attnlab.study.selections import study_models

#: the config section that switches the stage: it runs when ``perturbation`` is present (and not null)
SECTION: str | None = "perturbation"


def _perturbation_errors(config: Mapping[str, Any]) -> list[str]:
    section = config.get("perturbation")
    if section is None:
        return []
    from attnlab.perturbation.relations import RelationsError, load_relations, split_probes

    errors: list[str] = []
    analysable = set(architecture_names(causal=True))
    errors += listed_model_errors(config, "perturbation.models", section["models"], sorted(analysable),
                                  "the perturbation analysis needs a causal LM", indexed=True)  # fmt: skip
    for name in section["models"]:
        spec = config["models"].get(name)
        if spec is not None and spec["source"] == "scratch" and spec["architecture"] in analysable:
            for key in ("layers",):
                bad = [x for x in section[key] or [] if x >= spec["num_layers"]]
                jac_bad = [x for x in section["jacobian"]["layers"] or [] if x >= spec["num_layers"]]
                if bad or jac_bad:
                    errors.append(
                        f"config key 'perturbation.{key if bad else 'jacobian.layers'}': layer(s) {bad or jac_bad} "
                        f"out of range for {name!r} with {spec['num_layers']} layers"
                    )
    sources = {config["models"][m]["source"] for m in section["models"] if m in config["models"]}
    kbs = {("relations." + s, section["relations"][s]) for s in sources}
    for key, kb in sorted(kbs):
        try:
            relations = load_relations(kb)
        except (FileNotFoundError, RelationsError) as err:
            errors.append(f"config key 'perturbation.{key}': {err}")
            continue
        missing = [r for r in section["relation_names"] or [] if r not in relations]
        if missing:
            errors.append(f"config key 'perturbation.relation_names': {missing} not in knowledge base {kb!r}")
            continue
        try:
            split_probes(relations, section["relation_names"], section["max_facts"], section["templates"],
                         section["selection_templates"])  # fmt: skip
        except (IndexError, ValueError) as err:
            message = str(err).strip("'\"")
            errors.append(f"config key 'perturbation.templates' / 'perturbation.selection_templates': {message} "
                          f"(knowledge base {kb!r})")  # fmt: skip
    if "facts" in (config.get("pretrain") or {}).get("extra_corpora", []):
        try:
            load_relations(section["corpus"]["relations"])
        except (FileNotFoundError, RelationsError) as err:
            errors.append(f"config key 'perturbation.corpus.relations': {err}")
    errors += _site_errors(config)
    if section["jacobian"]["num_texts"] < 2:
        errors.append(
            f"config key 'perturbation.jacobian.num_texts': {section['jacobian']['num_texts']} text; the Jacobian "
            "table's spread and interval over texts need at least 2 (one text gives no variance)"
        )
    if not errors:
        errors += _jacobian_errors(config)
    return errors


#: the scratch architectures that have each site (residual: every one; mlp: Transformers; delta: SSMs)
SITE_ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "residual": architecture_names(causal=True),
    "mlp": architecture_names(causal=True, attention=True),
    "delta": architecture_names(ssm=True),
}


def _site_errors(config: Mapping[str, Any]) -> list[str]:
    """Every site of ``perturbation.sites`` exists in some listed model (a hub model's architecture is not known
    here and may have any): a site none has would add no row, and the tables built for it would be empty."""
    section = config["perturbation"]
    specs = [config["models"][m] for m in section["models"] if m in config["models"]]
    if not specs or any(spec["source"] != "scratch" for spec in specs):
        return []
    architectures = sorted({spec["architecture"] for spec in specs})
    errors = []
    for site in section["sites"]:
        if not any(a in SITE_ARCHITECTURES.get(site, ()) for a in architectures):
            errors.append(
                f"config key 'perturbation.sites': no model of perturbation.models {list(section['models'])} "
                f"({', '.join(architectures)}) has site {site!r} (it exists in {', '.join(SITE_ARCHITECTURES[site])}); "
                "drop it or add such a model"
            )
    return errors


def _jacobian_errors(config: Mapping[str, Any]) -> list[str]:
    """The Jacobian job's preconditions (:func:`attnlab.perturbation.jacobian.run_jacobian`): ``num_texts`` distinct
    probe sentences exist, and they hold ≥ ``hidden_size`` real tokens for the effective rank of the token hidden
    states (an N × d matrix has rank ≤ min(N, d)) — checked for every model whose width is known (scratch entries,
    hub entries whose config is cached), with the same seeded draw as the job."""
    from attnlab.perturbation.relations import load_relations, sample_texts, split_probes

    section = config["perturbation"]
    num_texts = int(section["jacobian"]["num_texts"])
    errors: list[str] = []
    sentences: dict[str, list[str]] = {}
    for name in section["models"]:
        if name not in config["models"]:
            continue
        source = "scratch" if config["models"][name]["source"] == "scratch" else "hub"
        kb = section["relations"][source]
        if kb not in sentences:
            probes, _ = split_probes(load_relations(kb), section["relation_names"], section["max_facts"],
                                     section["templates"], section["selection_templates"])  # fmt: skip
            sentences[kb] = list(probes["sentence"])
            if num_texts > len(sentences[kb]):
                errors.append(
                    f"config key 'perturbation.jacobian.num_texts': {num_texts} texts, but the probes of knowledge base "
                    f"{kb!r} (perturbation.relation_names / max_facts / templates) have only {len(sentences[kb])} sentences"
                )
        if num_texts > len(sentences[kb]):
            continue
        hidden = model_hidden_size(config, name)
        if hidden is None:
            continue
        texts = sample_texts(sentences[kb], num_texts, int(config["seed"]))
        tokens, exact = token_count(hub_model_files(config, name), texts)
        if tokens < hidden:
            counted = f"{tokens} tokens" if exact else f"at most {tokens} tokens (UTF-8 bytes + 2 per text)"
            errors.append(
                f"config key 'perturbation.jacobian.num_texts': model {name!r} has hidden_size {hidden}; the effective "
                f"rank needs at least that many tokens, but {num_texts} texts of {kb!r} have {counted} "
                f"(raise num_texts to about {num_texts * hidden // max(tokens, 1) + 1})"
            )
    return errors


def perturbed_models(config: Mapping[str, Any]) -> list[str]:
    """``perturbation.models`` that the study runs (in the model selection); none without the section."""

    section = config.get("perturbation")
    if not section:
        return []
    models = set(study_models(config))
    return [m for m in section["models"] if m in models]


def config_errors(config: Mapping[str, Any]) -> list[str]:
    """The perturbation stage's checks (:func:`_perturbation_errors`, then the Jacobian's)."""
    return _perturbation_errors(config)


def targets(config: Mapping[str, Any], results: str) -> list[str]:
    """The perturbation, comparison and Jacobian tables and the three figures."""
    if not perturbed_models(config):
        return []
    return [f"{results}/tables/perturbation.parquet", f"{results}/tables/perturbation_comparison.parquet",
            f"{results}/tables/jacobian.parquet", f"{results}/figures/perturbation/relations.png",
            f"{results}/figures/perturbation/layers.png", f"{results}/figures/perturbation/jacobian.png"]  # fmt: skip

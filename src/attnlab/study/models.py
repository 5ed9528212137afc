"""One model reference: what a model name of the study is, where it lives and how a job loads it.

A study's model names are its configured models (``models.<name>``), their training-seed replicates
(``<name>-seed<N>``, from ``pretrain.replicates``) and the SFT variants of both (``<model>+sft-<recipe>``; ``+``
cannot occur in a configured name, so the split is unambiguous). :func:`model_reference` resolves any of them to a
:class:`ModelReference`: the configured entry it derives from, its training seed and recipe, its source, its
location (``results/models/<name>`` for a model the study trains, else the hub id or local path) and the loader
flags of the ``attnlab`` commands (:func:`attnlab.cli.models.add_model_arguments`).
"""

from __future__ import annotations

import copy
import shlex
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

from attnlab.study.schema import schema_defaults

SFT_SEPARATOR = "+sft-"


#: training problems per recipe for each size preset when ``samples`` is null (None = the whole split)
SFT_PRESET_SAMPLES: dict[str, int | None] = {"quick": 200, "standard": 2000, "full": None}


def replicate_models(config: Mapping[str, Any]) -> dict[str, tuple[str, int]]:
    """Training-seed replicates ``{"llama-seed11": ("llama", 11), ...}`` from ``pretrain.replicates``."""
    replicates = (config.get("pretrain") or {}).get("replicates") or {}
    return {
        f"{model}-seed{seed}": (model, int(seed))
        for model in replicates.get("models", [])
        for seed in replicates.get("seeds", [])
    }


def evaluated_replicates(config: Mapping[str, Any], bases: Iterator[str] | list[str]) -> list[str]:
    """The training-seed replicates of ``bases`` that the study evaluates like their base models
    (``pretrain.replicates.evaluate``, default true), base by base, seeds in config order."""
    replicates = (config.get("pretrain") or {}).get("replicates") or {}
    if not replicates.get("evaluate", True):
        return []
    wanted = list(bases)
    return [name for base in wanted for name, (b, _) in replicate_models(config).items() if b == base]


def scratch_models(config: Mapping[str, Any]) -> list[str]:
    return [m for m, spec in config["models"].items() if spec["source"] == "scratch"]


def sft_enabled(config: Mapping[str, Any]) -> bool:
    return config.get("sft") is not None


def sft_variant_name(model: str, recipe: str) -> str:
    """``{model}+sft-{recipe}``."""
    return f"{model}{SFT_SEPARATOR}{recipe}"


def parse_sft_name(name: str) -> tuple[str, str] | None:
    """``(base model, recipe)`` of an SFT variant name, or None for any other name."""
    base, sep, recipe = name.partition(SFT_SEPARATOR)
    return (base, recipe) if sep and base and recipe else None


def sft_variants(config: Mapping[str, Any], names: Iterator[str] | list[str]) -> list[str]:
    """SFT variant names of those ``names`` listed in ``sft.models``, model by model, recipes in config order."""
    if not sft_enabled(config):
        return []
    sft = config.get("sft", {})
    chosen = set(sft.get("models", []))
    replicates = replicate_models(config)  # a replicate is fine-tuned when its base is
    return [
        sft_variant_name(m, r) for m in names if replicates.get(m, (m,))[0] in chosen for r in sft.get("recipes", {})
    ]


def sft_recipe(config: Mapping[str, Any], recipe: str) -> dict[str, Any]:
    """A recipe with its defaults resolved: ``seed`` (master seed if null) and ``samples`` (preset if null).

    ``samples`` stays None for the ``full`` preset (= every problem of the split).
    """
    spec = copy.deepcopy(dict(config["sft"]["recipes"][recipe]))
    if spec.get("seed") is None:
        spec["seed"] = int(config["seed"])
    if spec.get("samples") is None:
        spec["samples"] = SFT_PRESET_SAMPLES[config.get("preset", "standard")]
    if spec.get("method", "full") != "lora":
        spec.pop("lora", None)
    return spec


def sft_model_spec(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The model entry of an SFT variant: ``source: sft``, its base, recipe and the base's loading options."""
    parsed = parse_sft_name(name)
    if parsed is None:
        raise KeyError(f"{name!r} is not an SFT variant name (model{SFT_SEPARATOR}recipe)")
    base, recipe = parsed
    base_spec = config["models"][replicate_models(config).get(base, (base, None))[0]]
    return {
        "source": "sft",
        "base": base,
        "base_source": base_spec["source"],
        "architecture": model_architecture(config, base),
        "recipe": recipe,
        "dtype": base_spec.get("dtype", "auto"),
        "trust_remote_code": bool(base_spec.get("trust_remote_code", False)),
        "sft": sft_recipe(config, recipe),
    }


def model_entry(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The config entry of any model name in MODELS: a configured model, a seed replicate (its base's
    entry) or an SFT variant (:func:`sft_model_spec`, ``source: sft``). Use it instead of
    ``config["models"][name]``, which fails for derived names."""
    if parse_sft_name(name) is not None:
        return sft_model_spec(config, name)
    base = replicate_models(config).get(name, (name, None))[0]
    if base not in config["models"]:
        raise KeyError(f"unknown model {name!r}")
    return dict(config["models"][base])


def model_architecture(config: Mapping[str, Any], name: str) -> str | None:
    """The architecture of a model name (scratch, replicate or derived variant); None for hub models."""
    parsed = parse_sft_name(name)
    if parsed is not None:
        return model_architecture(config, parsed[0])
    name = replicate_models(config).get(name, (name, None))[0]
    spec = config["models"].get(name)
    if spec is None:
        raise KeyError(f"unknown model {name!r}")
    return spec.get("architecture") if spec["source"] == "scratch" else None


def uses_diffusion_generation(model_spec: Mapping[str, Any]) -> bool:
    """Whether a model entry is answered by iterative unmasking: a scratch ``mdlm`` or a hub entry with
    ``generation: diffusion``."""
    if model_spec["source"] == "scratch":
        return model_spec.get("architecture") == "mdlm"
    return model_spec.get("generation", "greedy") == "diffusion"


def diffusion_settings(config: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """The iterative-unmasking settings of the model entry ``spec`` (its ``diffusion`` entry over the schema defaults, with
    ``answer_length`` defaulting to ``evaluation.max_new_tokens``), or ``None`` for a greedily decoded model.

    This is the ``diffusion`` key of the eval spec the evaluate rule passes (see
    :func:`attnlab.evaluate.diffusion.normalize_diffusion_spec`).
    """
    if not uses_diffusion_generation(spec):
        return None
    settings = {**schema_defaults("$defs", "diffusion_generation"), **spec.get("diffusion", {})}
    settings.setdefault("answer_length", int(config["evaluation"]["max_new_tokens"]))
    settings.setdefault("steps", settings["answer_length"])
    return settings



@dataclass(frozen=True)
class ModelReference:
    """A model name of the study, resolved.

    Attributes:
        name: the name as the study uses it (``llama``, ``llama-seed1``, ``llama-seed1+sft-noisy``).
        configured: the ``models.<configured>`` entry it derives from (``llama`` for all three).
        seed: its training seed: the replicate's seed, else the study seed.
        recipe: the SFT recipe of an SFT variant, else None.
        parent: the model an SFT variant is fine-tuned from (``llama-seed1``), else None.
        entry: the config entry (:func:`model_entry`; ``source: sft`` for an SFT variant).
    """

    name: str
    configured: str
    seed: int
    recipe: str | None
    parent: str | None
    entry: Mapping[str, Any]

    @property
    def source(self) -> str:
        """``scratch`` or ``sft`` (the study trains it) or ``hub`` (an id or a local folder)."""
        return str(self.entry["source"])

    @property
    def trained_here(self) -> bool:
        """Whether the study trains this model (a scratch model, a replicate or an SFT variant)."""
        return self.source in ("scratch", "sft")

    def location(self, results: str = "results") -> str:
        """Where the one loader finds the model: the trained folder, or the hub id / local path."""
        return f"{results}/models/{self.name}" if self.trained_here else str(self.entry["id"])

    def hub_flags(self) -> list[str]:
        """A hub entry's ``--revision`` and, for a checkpoint inside the repository, its ``--subfolder`` (quoted);
        none for a model the study trains."""
        if self.source != "hub":
            return []
        flags = [f"--revision {shlex.quote(str(self.entry['revision']))}"]
        if self.entry.get("subfolder"):
            flags.append(f"--subfolder {shlex.quote(str(self.entry['subfolder']))}")
        return flags

    def loader_flags(self, dtype: bool = True, extra: Sequence[str] = ()) -> list[str]:
        """The loader options of an ``attnlab`` model command, each value one shell word.

        ``--dtype`` (for commands that take it), then a command's own ``extra`` options, then a hub entry's
        ``--revision`` and ``--subfolder``, and ``--trust-remote-code`` when the entry (or an SFT variant's
        base) asks for it.
        """
        flags = [f"--dtype {shlex.quote(str(self.entry.get('dtype', 'auto')))}"] if dtype else []
        flags += [*extra, *self.hub_flags()]
        if self.entry.get("trust_remote_code"):
            flags.append("--trust-remote-code")
        return flags


def model_reference(config: Mapping[str, Any], name: str) -> ModelReference:
    """Resolve a model name of the study (configured model, replicate or SFT variant).

    Raises:
        KeyError: ``name`` is none of the study's model names.
    """
    entry = model_entry(config, name)
    parsed = parse_sft_name(name)
    parent, recipe = parsed if parsed is not None else (None, None)
    configured, seed = replicate_models(config).get(parent or name, (parent or name, int(config["seed"])))
    return ModelReference(name=name, configured=configured, seed=int(seed), recipe=recipe, parent=parent, entry=entry)


def listed_model_errors(
    config: Mapping[str, Any], key: str, names: Sequence[str], architectures: Sequence[str], need: str,
    indexed: bool = False,
) -> list[str]:
    """Check the models a stage section lists under ``key``: each is a configured model, and a scratch one has one
    of the ``architectures`` the stage handles (``need`` says what the stage needs of it). One line per problem,
    naming the key (``key.<i>`` with ``indexed``)."""
    errors: list[str] = []
    for i, name in enumerate(names):
        where = f"{key}.{i}" if indexed else key
        spec = config["models"].get(name)
        if spec is None:
            errors.append(f"config key '{where}': {name!r} is not a configured model ({', '.join(sorted(config['models']))})")
        elif spec["source"] == "scratch" and spec["architecture"] not in architectures:
            errors.append(
                f"config key '{where}': {name!r} is a {spec['architecture']} model; {need} ({', '.join(architectures)})"
            )
    return errors

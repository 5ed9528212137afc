# Shared helpers: config validation, selections, paths and per-rule resources.

import json
import os
import re

from attnlab.config import (
    ConfigError,
    fewshot_seed,
    n_test_items,
    replicate_models,
    scratch_models,
    selected_datasets,
    selected_models,
    selected_variants,
    validate_config,
)


try:
    STUDY = validate_config(config, workflow.source_path("../schemas/config.schema.yaml"))
except ConfigError as err:
    raise WorkflowError(str(err)) from None

RESULTS = "results"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
ENV = "../../envs/attnlab.yaml"

MODELS = selected_models(STUDY)
DATASETS = selected_datasets(STUDY)
VARIANTS = selected_variants(STUDY)
NOISE_TYPES = list(STUDY["noise"]["types"])
REPLICATES = replicate_models(STUDY)
SCRATCH = scratch_models(STUDY) + list(REPLICATES)


def _alternatives(names):
    """A wildcard constraint matching exactly these names."""
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) or "(?!)"


def as_json(obj):
    """Stable JSON for params: a changed config entry changes the params, so the job reruns."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def shell_quote(obj):
    import shlex

    return shlex.quote(as_json(obj))


def rule_resource(stage, key, default):
    return STUDY.get("rule_resources", {}).get(stage, {}).get(key, default)


def threads_for(stage, default=1):
    return rule_resource(stage, "threads", default)


def model_spec(model):
    """The config entry of a model; a training-seed replicate has its base model's entry."""
    return STUDY["models"][REPLICATES.get(model, (model,))[0]]


def pretrain_seed(model):
    return REPLICATES[model][1] if model in REPLICATES else STUDY["seed"]


def pretrain_spec(wildcards):
    """The shared train settings as JSON; replicate seeds are not part of them (adding one reruns nothing else)."""
    return shell_quote({k: v for k, v in STUDY["pretrain"].items() if k != "replicates"})


def extra_corpora(wildcards):
    return [f"{RESULTS}/corpus/{name}.parquet" for name in STUDY["pretrain"]["extra_corpora"]]


def model_location(model):
    """Where the one loader finds a model: the trained folder, or the hub id / local path."""
    spec = model_spec(model)
    return f"{RESULTS}/models/{model}" if spec["source"] == "scratch" else spec["id"]


def model_inputs(wildcards):
    """A scratch model's folder is a job input; a hub model is fetched by id."""
    if model_spec(wildcards.model)["source"] == "scratch":
        return {"model": f"{RESULTS}/models/{wildcards.model}"}
    return {}


def eval_outputs():
    return expand(
        f"{RESULTS}/eval/{{model}}/{{base}}/{{variant}}.parquet",
        model=MODELS,
        base=DATASETS,
        variant=VARIANTS,
    )


#: final targets of the analysis stages; each stage's rule file extends it
STAGE_TARGETS = []


def all_outputs():
    outputs = [
        f"{RESULTS}/tables/accuracy.parquet",
        f"{RESULTS}/figures/accuracy.png",
        f"{RESULTS}/figures/robustness.png",
    ]
    outputs += [f"{RESULTS}/training/{m}/loss.png" for m in MODELS if m in SCRATCH]
    return outputs + [t for t in STAGE_TARGETS if t not in outputs]


def evaluate_inputs(wildcards):
    inputs = {"data": f"{RESULTS}/data/{wildcards.base}/{wildcards.variant}.parquet"}
    if STUDY["evaluation"]["num_fewshot"] > 0:
        inputs["train"] = f"{RESULTS}/data/{wildcards.base}/train.parquet"
    inputs.update(model_inputs(wildcards))
    return inputs


def evaluate_flags(wildcards, input):
    spec = model_spec(wildcards.model)
    flags = [f"--dtype {spec.get('dtype', 'auto')}"]
    if "train" in input.keys():
        flags.append(f"--train {input.train}")
    if spec["source"] == "hub":
        flags.append(f"--revision {spec['revision']}")
        if spec["trust_remote_code"]:
            flags.append("--trust-remote-code")
    return " ".join(flags)

# Shared helpers: config validation, selections, paths and per-rule resources.

import json
import os
import re
import shlex

from attnlab.config import validate_config
from attnlab.models.settings import diffusion_init_model, diffusion_init_source, scratch_architecture_spec, scratch_train_spec
from attnlab.study.models import diffusion_settings, model_entry, model_reference, parse_sft_name, replicate_models, scratch_models
from attnlab.study.schema import ConfigError, schema_defaults
from attnlab.study.selections import fewshot_seed, model_variants, n_test_items, seed_groups, selected_datasets, selected_models, selected_variants, study_models


from attnlab.yamlload import YAMLFileError as _YAMLFileError, load_yaml_file as _load_yaml_file

# Snakemake's own reader keeps the last of two equal keys; re-read each config file strictly first.
for _configfile in workflow.configfiles:
    try:
        _load_yaml_file(_configfile)
    except _YAMLFileError as err:
        raise WorkflowError(f"invalid config file: {err}") from None

try:
    # the schema shipped with the package (attnlab/schemas: the main file and one fragment per stage)
    STUDY = validate_config(config)
except ConfigError as err:
    raise WorkflowError(str(err)) from None

# item counts above what the data files hold are met by the items there are (attnlab.study.items): say so
from attnlab.study.items import item_notes as _item_notes
from snakemake.logging import logger as _logger

for _note in _item_notes(STUDY):
    _logger.info(f"note: {_note}")

# Each rule's command ends in "; : attnlab code <fingerprint>" of the library code its subcommand runs
# (attnlab.fingerprint): Snakemake's `code` rerun trigger compares command texts, so an edit of that code
# reruns the rule's jobs. `--rerun-triggers mtime params input software-env` leaves code changes out.
from attnlab.fingerprint import code_marker
from attnlab.stages import targets_by_stage, unique_targets

RESULTS = "results"
LOGS = "results/logs"
BENCH = "results/benchmarks"
ENV = "../../envs/attnlab.yaml"

# selected models and their evaluated training-seed replicates (pretrain.replicates), then their SFT variants
# (model+sft-recipe, one fine-tune per seed) when the study has an sft section
MODELS = study_models(STUDY)
SEED_GROUPS = seed_groups(STUDY, MODELS)
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


def shell_arg(value):
    """One config string as one shell word (quoted when needed): no config value is interpreted by the shell."""
    import shlex

    return shlex.quote(str(value))


#: each stage's job resources unless ``rule_resources.<stage>`` sets them: (mem_mb, runtime in minutes, gpu);
#: gpu None = the stage's jobs never ask for a GPU
STAGE_RESOURCES = {
    "data": (2000, 30, None),
    "tokenizer": (2000, 30, None),
    "prefetch": (2000, 120, None),
    "report": (2000, 10, None),
    "pretrain": (4000, 60, 0),
    "evaluate": (4000, 60, 0),
    "sft": (4000, 60, 0),
    "attention": (4000, 30, 0),
    "needle": (4000, 30, 0),
    "attribution": (4000, 30, 0),
    "validation": (4000, 30, 0),
    "perturbation": (4000, 30, 0),
    "jacobian": (4000, 30, 0),
}


def rule_resource(stage, key, default):
    return STUDY.get("rule_resources", {}).get(stage, {}).get(key, default)


def stage_resources(stage):
    """The ``resources:`` of a stage's jobs: ``rule_resources.<stage>`` over :data:`STAGE_RESOURCES`."""
    mem_mb, runtime, gpu = STAGE_RESOURCES[stage]
    resources = {"mem_mb": rule_resource(stage, "mem_mb", mem_mb), "runtime": rule_resource(stage, "runtime", runtime)}
    if gpu is not None:
        resources["gpu"] = rule_resource(stage, "gpu", gpu)
    return resources


def threads_for(stage, default=1):
    return rule_resource(stage, "threads", default)


def rerun_on_model_entry(wildcard="model"):
    """Params function that only reruns: the JSON of the job's model entry (attnlab.study.models.model_entry),
    which the command does not read, so an edit of the entry (its size keys, revision, dtype) reruns the job."""
    return lambda wildcards: as_json(model_entry(STUDY, getattr(wildcards, wildcard)))


def model_location(model):
    """Where the one loader finds a model: the trained folder, or the hub id / local path."""
    return model_reference(STUDY, model).location(RESULTS)


def model_flags(wildcard="model", dtype=True, train=False, mask_tokens=False):
    """Params function: the loader flags of the job's model (attnlab.study.models.ModelReference.loader_flags:
    --dtype when the command takes it, a hub entry's --revision / --subfolder, --trust-remote-code), with the
    stage's own options after --dtype: --train (few-shot exemplars, when the job has a train input) and
    --mask-tokens (a masked diffusion LM's answer window, measured at its first decoding step)."""

    def flags(wildcards, input):
        reference = model_reference(STUDY, getattr(wildcards, wildcard))
        extra = []
        if train and "train" in input.keys():
            extra.append(f"--train {input.train}")
        if mask_tokens and reference.source in ("scratch", "hub"):
            diffusion = diffusion_settings(STUDY, reference.entry)
            if diffusion is not None:
                extra.append(f"--mask-tokens {diffusion['answer_length']}")
        return " ".join(reference.loader_flags(dtype=dtype, extra=extra))

    return flags


def pretrain_seed(model):
    return REPLICATES[model][1] if model in REPLICATES else STUDY["seed"]


def pretrain_spec(wildcards):
    """The shared train settings as JSON; replicate seeds are not part of them (adding one reruns nothing else).

    An mdlm initialised from a llama (``models.<name>.init``) trains with its adaptation settings instead
    (attnlab.models.settings.scratch_train_spec)."""
    base = REPLICATES.get(wildcards.scratch_model, (wildcards.scratch_model,))[0]
    return shell_quote(scratch_train_spec(STUDY, base))


def extra_corpora(wildcards):
    base = REPLICATES.get(wildcards.scratch_model, (wildcards.scratch_model,))[0]
    if diffusion_init_source(STUDY, base) is not None:
        return []  # the adaptation trains on the math problems only
    return [f"{RESULTS}/corpus/{name}.parquet" for name in STUDY["pretrain"]["extra_corpora"]]


def init_model(wildcards):
    """The trained llama an mdlm starts from (models.<name>.init.from; a replicate: the llama of its own seed),
    as a job input; none for other models."""
    source = diffusion_init_model(STUDY, wildcards.scratch_model)
    return {} if source is None else {"init": f"{RESULTS}/models/{source}"}


def init_flag(wildcards, input):
    return f"--init-from {shlex.quote(input.init)}" if "init" in input.keys() else ""


def model_inputs(wildcards):
    """A scratch or fine-tuned model's folder is a job input; a hub model is fetched by id."""
    reference = model_reference(STUDY, wildcards.model)
    if reference.trained_here:
        return {"model": reference.location(RESULTS)}
    # hub: the prefetch marker (the login node downloaded it), or the local folder the id names
    return prefetch_inputs(wildcards.model)


def eval_outputs():
    return expand(
        "results/eval/{model}/{base}/{variant}.parquet",
        model=MODELS,
        base=DATASETS,
        variant=VARIANTS,
    )


def seed_group_eval_outputs():
    """The evaluation files of every member of every seed group (SEED_GROUPS)."""
    members = [m for group in SEED_GROUPS.values() for m, _ in group]
    return expand("results/eval/{model}/{base}/{variant}.parquet", model=members, base=DATASETS, variant=VARIANTS)


#: {stage: its final targets}, from each stage's settings module (attnlab.stages), computed once
TARGETS_BY_STAGE = targets_by_stage(STUDY, RESULTS)
STAGE_TARGETS = unique_targets(TARGETS_BY_STAGE)
#: {stage: whether it runs}; each stage's rule file defines its rules only when it does
STAGE_RUNS = {stage: bool(targets) for stage, targets in TARGETS_BY_STAGE.items()}


def all_outputs():
    """The evaluation table and figures, then every stage's final targets (the trained models' loss curves first)."""
    outputs = [
        "results/tables/accuracy.parquet",
        "results/figures/accuracy.png",
        "results/figures/robustness.png",
    ]
    return outputs + [t for t in STAGE_TARGETS if t not in outputs]


def per_job_outputs():
    """Every per-model (and per-dataset) output the final targets are built from, for `rule all`.

    Snakemake rebuilds a missing file only when something it must build needs it: a deleted model folder
    or evaluation file under up-to-date tables would stay deleted ("Nothing to be done"). Listing these
    files as targets rebuilds them, and then reruns what reads them. Call it after every rule file is
    included (it reads the stages' model lists).
    """
    trained = [m for m in MODELS if m in SCRATCH or m in SFT_VARIANTS]
    trained += [m for m in NEEDLE_MODELS if m in REPLICATES and m not in trained]
    outputs = [f"{RESULTS}/data/{base}/{variant}.parquet" for base in DATASETS for variant in VARIANTS]
    outputs += [f"{RESULTS}/models/{m}" for m in trained] + [f"{RESULTS}/training/{m}/loss.parquet" for m in trained]
    outputs += eval_outputs() + attention_outputs() + attention_token_outputs()
    outputs += needle_probe_outputs() + [f"{RESULTS}/needle/items/{m}.parquet" for m in NEEDLE_MODELS]
    outputs += expand(
        "results/attribution/{model}/{base}/{method}{suffix}.parquet",
        model=ATTRIBUTION_MODELS if ATTRIBUTION_METHODS else [], base=DATASETS, method=ATTRIBUTION_METHODS,
        suffix=["", "_items"],
    )
    outputs += expand(
        "results/validation/{model}/{base}/{kind}.parquet",
        model=VALIDATION_MODELS, base=DATASETS, kind=["pruning", "sparse"],
    )
    outputs += [f"{RESULTS}/{kind}/{m}.parquet" for m in PERTURBATION_MODELS for kind in ("perturbation", "jacobian")]
    return outputs


def evaluate_inputs(wildcards):
    inputs = {"data": f"{RESULTS}/data/{wildcards.base}/{wildcards.variant}.parquet"}
    if STUDY["evaluation"]["num_fewshot"] > 0:
        inputs["train"] = f"{RESULTS}/data/{wildcards.base}/train.parquet"
    inputs.update(model_inputs(wildcards))
    return inputs


# --- prefetch ---
# Hub models and hub datasets are downloaded by the prefetch local rules; every other job
# runs offline (HF_HUB_OFFLINE=1, set below for the jobs this Snakemake process starts;
# cluster jobs re-read this file and get the same). The config's plugins are imported by
# every `attnlab` job through ATTNLAB_PLUGINS (attnlab.tools.plugins).

from attnlab.tools.hfcache import is_local_path as _prefetch_is_local, job_environment as _prefetch_job_environment


def prefetch_marker(model):
    return f"{RESULTS}/prefetch/models/{model}.json"


def prefetch_dataset_marker(base):
    return f"{RESULTS}/prefetch/datasets/{base}.json"


def prefetch_inputs(model):
    """A hub model's job input: its prefetch marker, or the folder itself when the id is a local path."""
    spec = model_entry(STUDY, model)
    if _prefetch_is_local(spec["id"]):
        return {"model": spec["id"]}
    return {"prefetch": prefetch_marker(model)}


def dataset_inputs(wildcards):
    """A hub dataset's data jobs wait for its prefetch marker; local datasets need nothing."""
    if "hub_id" in STUDY["datasets"][wildcards.base]:
        return {"prefetch": prefetch_dataset_marker(wildcards.base)}
    return {}


def prefetch_targets():
    """Every marker of the study (the inputs of the target rule `prefetch`)."""
    references = [model_reference(STUDY, m) for m in MODELS]
    models = [r.name for r in references if not r.trained_here and not _prefetch_is_local(r.entry["id"])]
    bases = [b for b in DATASETS if "hub_id" in STUDY["datasets"][b]]
    return [prefetch_marker(m) for m in models] + [prefetch_dataset_marker(b) for b in bases]


def hf_cache_root():
    root = STUDY["prefetch"]["hf_cache_dir"]
    return None if root is None else os.path.abspath(root)


os.environ.update(_prefetch_job_environment(STUDY, hf_cache_root()))


# --- attribution ---
# HeadIG head attribution (workflow/rules/attribution.smk; library attnlab.attribution).


def attribution_inputs(wildcards):
    """The data file of each attributed variant, plus the model (folder or prefetch marker)."""
    from attnlab.study.selections import as_name_list

    inputs = {
        "data": [f"{RESULTS}/data/{wildcards.base}/{v}.parquet" for v in as_name_list(STUDY["attribution"]["variants"])]
    }
    inputs.update(model_inputs(wildcards))
    return inputs


def attribution_spec(wildcards):
    """The JSON settings of one model's score files (attnlab.attribution.settings.attribution_job_spec)."""
    from attnlab.attribution.settings import attribution_job_spec

    return shell_quote(attribution_job_spec(STUDY, wildcards.model))


def attribution_score_files(methods=None):
    """Every score file of the study (optionally only some methods)."""
    from attnlab.attribution.settings import attribution_models

    if "attribution" not in STUDY:
        return []
    methods = methods or STUDY["attribution"]["methods"]
    return expand(
        "results/attribution/{model}/{base}/{method}.parquet",
        model=attribution_models(STUDY),
        base=DATASETS,
        method=methods,
    )


# --- sft ---
# Supervised fine-tuning (workflow/rules/finetune.smk): the variant m+sft-r of model m.

from attnlab.sft.settings import sft_data_spec  # noqa: E402
from attnlab.study.models import sft_enabled, sft_recipe  # noqa: E402
from attnlab.sft.settings import fine_tuned_models  # noqa: E402

SFT_VARIANTS = fine_tuned_models(STUDY)
# sft.models and their evaluated training-seed replicates (one fine-tune per seed)
SFT_BASES = list(dict.fromkeys([*(STUDY["sft"]["models"] if sft_enabled(STUDY) else []),
                                *(parse_sft_name(m)[0] for m in SFT_VARIANTS)]))
SFT_RECIPES = list(STUDY["sft"]["recipes"]) if sft_enabled(STUDY) else []


def sft_data_inputs(wildcards):
    dataset = STUDY["sft"]["recipes"][wildcards.recipe]["dataset"]
    return {"train": f"{RESULTS}/data/{dataset}/train.parquet"}


def sft_inputs(wildcards):
    """The recipe's training set and the base model's folder (none for a hub id)."""
    from types import SimpleNamespace

    inputs = {"data": f"{RESULTS}/sft/{wildcards.recipe}/train.parquet"}
    inputs.update(model_inputs(SimpleNamespace(model=wildcards.sft_base)))
    return inputs


def sft_table_inputs(wildcards):
    """Evaluations of every SFT variant and of its zero-shot base, on every dataset variant."""
    models = sorted({*SFT_VARIANTS, *(parse_sft_name(m)[0] for m in SFT_VARIANTS)})
    return expand(
        "results/eval/{model}/{base}/{variant}.parquet",
        model=models,
        base=DATASETS,
        variant=VARIANTS,
    )


# --- mdlm ---


def evaluation_spec(model):
    """The eval spec of one model: the shared evaluation section, plus, for a masked diffusion LM, its
    iterative-unmasking settings under "diffusion" (so changing them reruns only that model's evaluations)."""
    spec = {**STUDY["evaluation"], "fewshot_seed": fewshot_seed(STUDY)}
    diffusion = diffusion_settings(STUDY, model_entry(STUDY, model))
    if diffusion is not None:
        spec["diffusion"] = diffusion
    return spec



# --- validation ---
# Causal validation of head scores (workflow/rules/validation.smk; library attnlab.validation).


def validation_inputs(wildcards):
    """The scored items, the head scores (attribution output) and the model; train items for few-shot."""
    section = STUDY["validation"]
    inputs = {
        "data": f"{RESULTS}/data/{wildcards.base}/{section['variant']}.parquet",
        "scores": f"{RESULTS}/attribution/{wildcards.model}/{wildcards.base}/{section['scores']}.parquet",
    }
    if STUDY["evaluation"]["num_fewshot"] > 0:
        inputs["train"] = f"{RESULTS}/data/{wildcards.base}/train.parquet"
    inputs.update(model_inputs(wildcards))
    return inputs


def validation_spec(kind):
    """Params function: the JSON spec of one validation job of ``kind`` (pruning | sparse)."""
    from attnlab.validation.settings import validation_job_spec

    return lambda wildcards: shell_quote(validation_job_spec(STUDY, wildcards.model, kind))


# --- needle ---
# Needle-in-a-haystack stage (workflow/rules/needle.smk): which models it probes, and their flags.

from attnlab.needle.settings import needle_aggregate_spec, needle_corpus_spec, needle_enabled, needle_models, needle_probe_spec

#: {probed model: {"base", "seed", "architecture"}}: needle.models (or the attention scratch models) + replicates
NEEDLE_MODELS = needle_models(STUDY)


def needle_probe_outputs():
    return [f"{RESULTS}/needle/{m}.parquet" for m in NEEDLE_MODELS]


# --- attention ---
# Attention-allocation stage (workflow/rules/attention.smk): which models it measures, the spec, the flags.

from attnlab.attention.settings import measured_models
from attnlab.attention.settings import attention_spec

#: models the attention stage measures (attention.models or every model with attention, + SFT variants)
ATTENTION_MODELS = measured_models(STUDY)


def attention_outputs(model=None):
    """Per-item allocation tables of one model (or of every measured model)."""
    return expand(
        "results/attention/{model}/{base}/{variant}.parquet",
        model=[model] if model else ATTENTION_MODELS,
        base=DATASETS,
        variant=VARIANTS,
    )


def attention_token_outputs(model=None):
    return [path.replace(".parquet", ".tokens.parquet") for path in attention_outputs(model)]


def attention_inputs(wildcards):
    """Every variant of one base dataset (one job per model x base), and the model."""
    inputs = {"data": [f"{RESULTS}/data/{wildcards.base}/{v}.parquet" for v in VARIANTS]}
    inputs.update(model_inputs(wildcards))
    return inputs


# --- perturbation ---
from attnlab.perturbation.settings import perturbed_models

#: the perturbation section with defaults, or None when the study has none
PERTURBATION = STUDY.get("perturbation")
PERTURBATION_MODELS = perturbed_models(STUDY)
#: keys of the perturbation section that do not change one model's perturbation rows
_PERTURBATION_OTHER_KEYS = ("models", "corpus", "jacobian", "relations", "confidence")
_PROBE_KEYS = ("relation_names", "max_facts", "templates", "selection_templates")


def facts_corpus_spec():
    """The facts corpus settings (the schema's defaults when the study has no perturbation section)."""
    return PERTURBATION["corpus"] if PERTURBATION else schema_defaults("perturbation", "corpus")


def perturbation_relations(model):
    """The knowledge base a model is probed on: fictional facts for scratch models, real ones for hub models."""
    return PERTURBATION["relations"]["scratch" if model_entry(STUDY, model)["source"] == "scratch" else "hub"]


def perturbation_spec(wildcards):
    return shell_quote({k: v for k, v in PERTURBATION.items() if k not in _PERTURBATION_OTHER_KEYS})


def jacobian_spec(wildcards):
    spec = {**PERTURBATION["jacobian"], "confidence": PERTURBATION["confidence"]}
    spec.update({k: PERTURBATION[k] for k in _PROBE_KEYS})
    return shell_quote(spec)

# attnlab — how attention mechanisms handle noise.
#
#   snakemake --cores 2                       # the embedded default study (offline, CPU)
#   snakemake --cores 2 --configfile configs/paper.yaml   # another study (replaces config.yaml)
#   snakemake --report results/report.html    # browsable report of tables and figures
#
# The config is validated against src/attnlab/schemas/config.schema.yaml here,
# before any job runs. Rules are thin calls into the `attnlab` CLI; the science
# lives in src/attnlab.

from snakemake.utils import min_version

min_version("9.0")


# A --configfile replaces the default study instead of being merged into it
# (merging would keep config.yaml's models and datasets); --config still overrides.
if not workflow.config_settings.configfiles:

    configfile: "config.yaml"


include: "workflow/rules/common.smk"


wildcard_constraints:
    model=_alternatives(model_variants(STUDY, [*STUDY["models"], *REPLICATES])),
    scratch_model=_alternatives(SCRATCH),
    base=_alternatives(STUDY["datasets"]),
    variant=_alternatives(["clean", *NOISE_TYPES]),
    noise=_alternatives(NOISE_TYPES),


include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/attention.smk"
include: "workflow/rules/needle.smk"
include: "workflow/rules/attribution.smk"
include: "workflow/rules/validation.smk"
include: "workflow/rules/perturbation.smk"
include: "workflow/rules/prefetch.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        all_outputs(),
        per_job_outputs(),
    default_target: True

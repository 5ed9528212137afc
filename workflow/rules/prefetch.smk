# Prefetch stage: download hub models and hub datasets on the login node (local rules),
# so that every other job runs offline (HF_HUB_OFFLINE=1, set in common.smk under `# --- prefetch ---`).
#
#   snakemake prefetch --configfile configs/paper.yaml        # on the login node, with network
#   snakemake --profile workflow/profiles/slurm --configfile configs/paper.yaml
#
# Hub-using jobs depend on the markers, so a plain `snakemake` runs these first anyway.

# The download rules switch the offline flags back off for their one command (`env ... attnlab prefetch`).



localrules:
    prefetch,
    prefetch_model,
    prefetch_dataset,


rule prefetch:
    input:
        prefetch_targets(),


rule prefetch_model:
    output:
        "results/prefetch/models/{model}.json",
    params:
        repo_id=lambda wc: shell_arg(model_entry(STUDY, wc.model)["id"]),
        hub_flags=lambda wc: " ".join(model_reference(STUDY, wc.model).hub_flags()),
        rerun_on_cache_dir=lambda wc: shell_quote(hf_cache_root()),  # the job downloads into $HF_HOME (set in common.smk)
    log:
        "results/logs/prefetch/models/{model}.log",
    benchmark:
        "results/benchmarks/prefetch/models/{model}.tsv"
    threads: 1
    resources:
        **stage_resources("prefetch"),
    conda:
        ENV
    shell:
        "env HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 TRANSFORMERS_OFFLINE=0 "
        "attnlab prefetch --model {params.repo_id} {params.hub_flags} "
        "--name {wildcards.model} --marker {output} > {log} 2>&1"
        + code_marker("attnlab.tools.prefetch:_handle")


rule prefetch_dataset:
    output:
        "results/prefetch/datasets/{base}.json",
    params:
        hub_id=lambda wc: STUDY["datasets"][wc.base]["hub_id"],
        flags=lambda wc: " ".join(
            f"--{flag} {shell_arg(STUDY['datasets'][wc.base][key])}"
            for key, flag in (("hub_config", "dataset-config"), ("revision", "revision"))
            if STUDY["datasets"][wc.base].get(key) is not None
        ),
        rerun_on_cache_dir=lambda wc: shell_quote(hf_cache_root()),  # the job downloads into $HF_HOME
    log:
        "results/logs/prefetch/datasets/{base}.log",
    benchmark:
        "results/benchmarks/prefetch/datasets/{base}.tsv"
    threads: 1
    resources:
        **stage_resources("prefetch"),
    conda:
        ENV
    shell:
        "env HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 TRANSFORMERS_OFFLINE=0 "
        "attnlab prefetch --dataset {params.hub_id:q} {params.flags} "
        "--name {wildcards.base} --marker {output} > {log} 2>&1"
        + code_marker("attnlab.tools.prefetch:_handle")

# attribution stage (HeadIG, research question 3): which attention heads matter for the gold answer.
# Rules only; helper functions live in common.smk (--- attribution ---) or src/attnlab/attribution.
#
# One job per (model, base) computes every configured method (the model is loaded once; start-up dominates
# for small models). Its params hold exactly the keys that decide its files (attnlab.attribution.settings.attribution_job_spec),
# so e.g. a new objective.mask_probs reruns only masked-diffusion models.

from attnlab.attribution.settings import attribution_enabled as _attribution_enabled
from attnlab.attribution.settings import attribution_models as _attribution_models
from attnlab.study.selections import as_name_list

ATTRIBUTION_MODELS = _attribution_models(STUDY)
ATTRIBUTION_METHODS = list(STUDY["attribution"]["methods"]) if _attribution_enabled(STUDY) else []


if STAGE_RUNS["attribution"]:

    localrules:
        attribution_report,


    rule attribution:
        input:
            unpack(attribution_inputs),
        output:
            scores=expand("results/attribution/{{model}}/{{base}}/{method}.parquet", method=ATTRIBUTION_METHODS),
            per_item=expand("results/attribution/{{model}}/{{base}}/{method}_items.parquet", method=ATTRIBUTION_METHODS),
        params:
            location=lambda wc: model_location(wc.model),
            spec=attribution_spec,
            variants=" ".join(as_name_list(STUDY["attribution"]["variants"])) if ATTRIBUTION_METHODS else "",
            out_dir=lambda wc, output: os.path.dirname(output.scores[0]),
            device=STUDY["device"],
            flags=model_flags(dtype=False),
        log:
            "results/logs/attribution/{model}/{base}.log",
        benchmark:
            "results/benchmarks/attribution/{model}/{base}.tsv"
        threads: threads_for("attribution")
        resources:
            **stage_resources("attribution"),
        conda:
            ENV
        shell:
            "attnlab attribution score --model {params.location:q} --data {input.data} --variants {params.variants} "
            "--spec {params.spec} --model-name {wildcards.model} --base {wildcards.base} --device {params.device} "
            "--threads {threads} {params.flags} --out-dir {params.out_dir} > {log} 2>&1"
            + code_marker("attnlab.attribution.cli:_handle_score")


    rule attribution_report:
        input:
            attribution_score_files(),
        output:
            table=report(
                "results/tables/attribution_correlations.parquet",
                caption="../report/attribution_correlations.rst",
                category="Head attribution",
            ),
            markdown="results/tables/attribution_correlations.md",
            heatmaps=report(
                expand(
                    "results/figures/attribution/{model}_{base}_{method}.png",
                    model=ATTRIBUTION_MODELS,
                    base=DATASETS,
                    method=ATTRIBUTION_METHODS,
                ),
                caption="../report/attribution_heatmap.rst",
                category="Head attribution",
            ),
        params:
            figures_dir=lambda wc, output: os.path.dirname(output.heatmaps[0]),
        log:
            "results/logs/attribution_report/attribution_report.log",
        benchmark:
            "results/benchmarks/attribution_report/attribution_report.tsv"
        threads: 1
        resources:
            **stage_resources("report"),
        conda:
            ENV
        shell:
            "attnlab attribution report --inputs {input} --out {output.table} --markdown {output.markdown} "
            "--figures-dir {params.figures_dir} > {log} 2>&1"
            + code_marker("attnlab.attribution.cli:_handle_report")


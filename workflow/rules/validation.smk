# validation stage (research question 3): are the head scores causal? Head pruning and adaptive sparse attention.
# Rules only; helper functions live in common.smk (--- validation ---) or src/attnlab/validation.
#
# Both jobs of a (model, base) read the attribution score file, so changing HeadIG settings reruns them;
# a pruning setting reruns only the pruning jobs, a sparse setting only the sparse jobs (job specs from
# attnlab.validation.settings.validation_job_spec).

from attnlab.validation.settings import validation_models as _validation_models

VALIDATION_MODELS = _validation_models(STUDY)


if STAGE_RUNS["validation"]:

    localrules:
        validation_tables,
        validation_figures,


    rule validation_pruning:
        input:
            unpack(validation_inputs),
        output:
            "results/validation/{model}/{base}/pruning.parquet",
        params:
            location=lambda wc: model_location(wc.model),
            spec=validation_spec("pruning"),
            device=STUDY["device"],
            flags=model_flags(train=True),
        log:
            "results/logs/validation/{model}/{base}/pruning.log",
        benchmark:
            "results/benchmarks/validation/{model}/{base}/pruning.tsv"
        threads: threads_for("validation")
        resources:
            **stage_resources("validation"),
        conda:
            ENV
        shell:
            "attnlab validation pruning --model {params.location:q} --data {input.data} --scores {input.scores} "
            "--spec {params.spec} --model-name {wildcards.model} --base {wildcards.base} --device {params.device} "
            "--threads {threads} {params.flags} --out {output} > {log} 2>&1"
            + code_marker("attnlab.validation.cli:_handle_pruning")


    rule validation_sparse:
        input:
            unpack(validation_inputs),
        output:
            "results/validation/{model}/{base}/sparse.parquet",
        params:
            location=lambda wc: model_location(wc.model),
            spec=validation_spec("sparse"),
            device=STUDY["device"],
            flags=model_flags(train=True),
        log:
            "results/logs/validation/{model}/{base}/sparse.log",
        benchmark:
            "results/benchmarks/validation/{model}/{base}/sparse.tsv"
        threads: threads_for("validation")
        resources:
            **stage_resources("validation"),
        conda:
            ENV
        shell:
            "attnlab validation sparse --model {params.location:q} --data {input.data} --scores {input.scores} "
            "--spec {params.spec} --model-name {wildcards.model} --base {wildcards.base} --device {params.device} "
            "--threads {threads} {params.flags} --out {output} > {log} 2>&1"
            + code_marker("attnlab.validation.cli:_handle_sparse")


    rule validation_tables:
        input:
            pruning=expand("results/validation/{model}/{base}/pruning.parquet", model=VALIDATION_MODELS, base=DATASETS),
            sparse=expand("results/validation/{model}/{base}/sparse.parquet", model=VALIDATION_MODELS, base=DATASETS),
        output:
            pruning=report(
                "results/tables/pruning.parquet",
                caption="../report/validation_pruning_table.rst",
                category="Head attribution",
                subcategory="Causal validation",
            ),
            pruning_md=report(
                "results/tables/pruning.md",
                caption="../report/validation_pruning_table.rst",
                category="Head attribution",
                subcategory="Causal validation",
            ),
            pruning_csv="results/tables/pruning.csv",
            pruning_tests="results/tables/pruning_tests.parquet",
            sparse=report(
                "results/tables/sparse_attention.parquet",
                caption="../report/validation_sparse_table.rst",
                category="Head attribution",
                subcategory="Causal validation",
            ),
            sparse_md=report(
                "results/tables/sparse_attention.md",
                caption="../report/validation_sparse_table.rst",
                category="Head attribution",
                subcategory="Causal validation",
            ),
            sparse_csv="results/tables/sparse_attention.csv",
            sparse_tests="results/tables/sparse_tests.parquet",
        params:
            out_dir=lambda wc, output: os.path.dirname(output.pruning),
        log:
            "results/logs/validation_tables/validation_tables.log",
        benchmark:
            "results/benchmarks/validation_tables/validation_tables.tsv"
        threads: 1
        resources:
            **stage_resources("report"),
        conda:
            ENV
        shell:
            "attnlab validation tables --pruning {input.pruning} --sparse {input.sparse} "
            "--out-dir {params.out_dir} > {log} 2>&1"
            + code_marker("attnlab.validation.cli:_handle_tables")


    rule validation_figures:
        input:
            pruning="results/tables/pruning.parquet",
            sparse="results/tables/sparse_attention.parquet",
        output:
            pruning=report(
                expand("results/figures/validation/{model}_{base}_pruning.png", model=VALIDATION_MODELS, base=DATASETS),
                caption="../report/validation_pruning_figure.rst",
                category="Head attribution",
                subcategory="Causal validation",
            ),
            sparse=report(
                expand("results/figures/validation/{model}_{base}_sparse.png", model=VALIDATION_MODELS, base=DATASETS),
                caption="../report/validation_sparse_figure.rst",
                category="Head attribution",
                subcategory="Causal validation",
            ),
        params:
            tables=lambda wc, input: os.path.dirname(input.pruning),
            out_dir=lambda wc, output: os.path.dirname(output[0]),
        log:
            "results/logs/validation_figures/validation_figures.log",
        benchmark:
            "results/benchmarks/validation_figures/validation_figures.tsv"
        threads: 1
        resources:
            **stage_resources("report"),
        conda:
            ENV
        shell:
            "attnlab validation figures --tables-dir {params.tables} --out-dir {params.out_dir} > {log} 2>&1"
            + code_marker("attnlab.validation.cli:_handle_figures")


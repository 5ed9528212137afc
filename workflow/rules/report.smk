# Aggregation and figures: accuracy tables with intervals and tests, and their plots.


localrules:
    tables,
    figures,


rule tables:
    input:
        eval_outputs(),
    output:
        accuracy=report(
            "results/tables/accuracy.parquet",
            caption="../report/accuracy_table.rst",
            category="Noise robustness",
        ),
        robustness="results/tables/robustness.parquet",
        mcnemar="results/tables/mcnemar.parquet",
        markdown=report(
            "results/tables/accuracy.md",
            caption="../report/accuracy_markdown.rst",
            category="Noise robustness",
        ),
        # the .csv / .md copies attnlab.report.tables.write_tables writes beside each table
        copies=expand("results/tables/{table}.{ext}", table=["accuracy", "robustness", "mcnemar"], ext=["csv"])
        + expand("results/tables/{table}.md", table=["robustness", "mcnemar"]),
    params:
        out_dir=lambda wc, output: os.path.dirname(output.accuracy),
    log:
        "results/logs/tables/tables.log",
    benchmark:
        "results/benchmarks/tables/tables.tsv"
    threads: 1
    resources:
        **stage_resources("report"),
    conda:
        ENV
    shell:
        "attnlab report tables --inputs {input} --out-dir {params.out_dir} > {log} 2>&1"
        + code_marker("attnlab.report.cli:run_tables")


rule figures:
    input:
        accuracy="results/tables/accuracy.parquet",
        robustness="results/tables/robustness.parquet",
    output:
        accuracy=report(
            "results/figures/accuracy.png",
            caption="../report/accuracy_figure.rst",
            category="Noise robustness",
        ),
        robustness=report(
            "results/figures/robustness.png",
            caption="../report/robustness_figure.rst",
            category="Noise robustness",
        ),
    params:
        tables=lambda wc, input: os.path.dirname(input.accuracy),
        out_dir=lambda wc, output: os.path.dirname(output.accuracy),
    log:
        "results/logs/figures/figures.log",
    benchmark:
        "results/benchmarks/figures/figures.tsv"
    threads: 1
    resources:
        **stage_resources("report"),
    conda:
        ENV
    shell:
        "attnlab report figures --tables-dir {params.tables} --out-dir {params.out_dir} > {log} 2>&1"
        + code_marker("attnlab.report.cli:run_figures")


# Is differential attention more robust? DiffLlama − Llama difference of noise drops, paired over items
# (training seeds as clusters when the evaluated models include replicates); attnlab.report.robustness.
from attnlab.report.settings import robustness_models as _robustness_models

ROBUSTNESS_MODELS = _robustness_models(STUDY, MODELS)
ROBUSTNESS_PAIRS = (STUDY.get("robustness_difference") or {}).get("pairs")


localrules:
    robustness_difference,


rule robustness_difference:
    input:
        eval_outputs(),
    output:
        table=report(
            "results/tables/robustness_difference.parquet",
            caption="../report/robustness_difference_table.rst",
            category="Noise robustness",
        ),
        markdown=report(
            "results/tables/robustness_difference.md",
            caption="../report/robustness_difference_table.rst",
            category="Noise robustness",
        ),
    params:
        models=shell_quote(ROBUSTNESS_MODELS),
        pairs=shell_quote(ROBUSTNESS_PAIRS),
    log:
        "results/logs/tables/robustness_difference.log",
    benchmark:
        "results/benchmarks/tables/robustness_difference.tsv"
    threads: 1
    resources:
        **stage_resources("report"),
    conda:
        ENV
    shell:
        "attnlab report robustness-difference --inputs {input} --models {params.models} --pairs {params.pairs} "
        "--parquet {output.table} --markdown {output.markdown} > {log} 2>&1"
        + code_marker("attnlab.report.cli:run_robustness_difference")



# pass@1 and the robustness drop pooled over training seeds (pretrain.replicates with evaluate: true)
if SEED_GROUPS:

    localrules:
        seed_tables,

    rule seed_tables:
        input:
            seed_group_eval_outputs(),
        output:
            accuracy=report(
                "results/tables/seeds_accuracy.parquet",
                caption="../report/seeds_table.rst",
                category="Noise robustness",
            ),
            robustness="results/tables/seeds_robustness.parquet",
            comparison="results/tables/seeds_comparison.parquet",
            accuracy_csv="results/tables/seeds_accuracy.csv",
            robustness_csv="results/tables/seeds_robustness.csv",
            comparison_csv="results/tables/seeds_comparison.csv",
            markdown=report(
                "results/tables/seeds.md",
                caption="../report/seeds_table.rst",
                category="Noise robustness",
            ),
        params:
            groups=shell_quote(SEED_GROUPS),
            seed=STUDY["seed"],
            out_dir=lambda wc, output: os.path.dirname(output.accuracy),
        log:
            "results/logs/tables/seeds.log",
        benchmark:
            "results/benchmarks/tables/seeds.tsv"
        threads: 1
        resources:
            **stage_resources("report"),
        conda:
            ENV
        shell:
            "attnlab report seeds --inputs {input} --groups {params.groups} --seed {params.seed} "
            "--out-dir {params.out_dir} > {log} 2>&1"
            + code_marker("attnlab.report.cli:run_seeds")


# One page of the finished study (attnlab.report.summary): the run, the pooled headline, the accuracy table,
# every verdict with its table row, and links to the outputs. Every other final target is an input, so it runs last.
from attnlab.report.settings import SUMMARY as _SUMMARY_NAME

SUMMARY = f"{RESULTS}/{_SUMMARY_NAME}"


localrules:
    summary,


rule summary:
    input:
        [target for target in all_outputs() if target != SUMMARY],
    output:
        report(
            SUMMARY,
            caption="../report/summary.rst",
            category="Summary",
        ),
    params:
        results=lambda wc, output: os.path.dirname(output[0]),
        device=shell_arg(STUDY.get("device", "auto")),
    log:
        "results/logs/summary/summary.log",
    benchmark:
        "results/benchmarks/summary/summary.tsv"
    threads: 1
    resources:
        **stage_resources("report"),
    conda:
        ENV
    shell:
        "attnlab report summary --results {params.results} --out {output} --device {params.device} > {log} 2>&1"
        + code_marker("attnlab.report.cli:run_summary")

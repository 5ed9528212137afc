# Aggregation and figures: accuracy tables with intervals and tests, and their plots.


localrules:
    tables,
    figures,


rule tables:
    input:
        eval_outputs(),
    output:
        accuracy=report(
            f"{RESULTS}/tables/accuracy.parquet",
            caption="../report/accuracy_table.rst",
            category="Noise robustness",
        ),
        robustness=f"{RESULTS}/tables/robustness.parquet",
        mcnemar=f"{RESULTS}/tables/mcnemar.parquet",
        markdown=report(
            f"{RESULTS}/tables/accuracy.md",
            caption="../report/accuracy_markdown.rst",
            category="Noise robustness",
        ),
        # the .csv / .md copies attnlab.report.tables.write_tables writes beside each table
        copies=expand(f"{RESULTS}/tables/{{table}}.{{ext}}", table=["accuracy", "robustness", "mcnemar"], ext=["csv"])
        + expand(f"{RESULTS}/tables/{{table}}.md", table=["robustness", "mcnemar"]),
    params:
        out_dir=lambda wc, output: os.path.dirname(output.accuracy),
    log:
        f"{LOGS}/tables/tables.log",
    benchmark:
        f"{BENCH}/tables/tables.tsv"
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
        accuracy=f"{RESULTS}/tables/accuracy.parquet",
        robustness=f"{RESULTS}/tables/robustness.parquet",
    output:
        accuracy=report(
            f"{RESULTS}/figures/accuracy.png",
            caption="../report/accuracy_figure.rst",
            category="Noise robustness",
        ),
        robustness=report(
            f"{RESULTS}/figures/robustness.png",
            caption="../report/robustness_figure.rst",
            category="Noise robustness",
        ),
    params:
        tables=lambda wc, input: os.path.dirname(input.accuracy),
        out_dir=lambda wc, output: os.path.dirname(output.accuracy),
    log:
        f"{LOGS}/figures/figures.log",
    benchmark:
        f"{BENCH}/figures/figures.tsv"
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
            f"{RESULTS}/tables/robustness_difference.parquet",
            caption="../report/robustness_difference_table.rst",
            category="Noise robustness",
        ),
        markdown=report(
            f"{RESULTS}/tables/robustness_difference.md",
            caption="../report/robustness_difference_table.rst",
            category="Noise robustness",
        ),
    params:
        models=shell_quote(ROBUSTNESS_MODELS),
        pairs=shell_quote(ROBUSTNESS_PAIRS),
    log:
        f"{LOGS}/tables/robustness_difference.log",
    benchmark:
        f"{BENCH}/tables/robustness_difference.tsv"
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
                f"{RESULTS}/tables/seeds_accuracy.parquet",
                caption="../report/seeds_table.rst",
                category="Noise robustness",
            ),
            robustness=f"{RESULTS}/tables/seeds_robustness.parquet",
            comparison=f"{RESULTS}/tables/seeds_comparison.parquet",
            accuracy_csv=f"{RESULTS}/tables/seeds_accuracy.csv",
            robustness_csv=f"{RESULTS}/tables/seeds_robustness.csv",
            comparison_csv=f"{RESULTS}/tables/seeds_comparison.csv",
            markdown=report(
                f"{RESULTS}/tables/seeds.md",
                caption="../report/seeds_table.rst",
                category="Noise robustness",
            ),
        params:
            groups=shell_quote(SEED_GROUPS),
            seed=STUDY["seed"],
            out_dir=lambda wc, output: os.path.dirname(output.accuracy),
        log:
            f"{LOGS}/tables/seeds.log",
        benchmark:
            f"{BENCH}/tables/seeds.tsv"
        threads: 1
        resources:
            **stage_resources("report"),
        conda:
            ENV
        shell:
            "attnlab report seeds --inputs {input} --groups {params.groups} --seed {params.seed} "
            "--out-dir {params.out_dir} > {log} 2>&1"
            + code_marker("attnlab.report.cli:run_seeds")

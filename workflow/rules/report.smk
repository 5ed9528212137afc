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
    params:
        out_dir=lambda wc, output: os.path.dirname(output.accuracy),
    log:
        f"{LOGS}/tables/tables.log",
    benchmark:
        f"{BENCH}/tables/tables.tsv"
    threads: 1
    resources:
        mem_mb=rule_resource("report", "mem_mb", 2000),
        runtime=rule_resource("report", "runtime", 10),
    conda:
        ENV
    shell:
        "attnlab report tables --inputs {input} --out-dir {params.out_dir} > {log} 2>&1"


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
        mem_mb=rule_resource("report", "mem_mb", 2000),
        runtime=rule_resource("report", "runtime", 10),
    conda:
        ENV
    shell:
        "attnlab report figures --tables-dir {params.tables} --out-dir {params.out_dir} > {log} 2>&1"


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
            mem_mb=rule_resource("report", "mem_mb", 2000),
            runtime=rule_resource("report", "runtime", 10),
        conda:
            ENV
        shell:
            "attnlab report seeds --inputs {input} --groups {params.groups} --seed {params.seed} "
            "--out-dir {params.out_dir} > {log} 2>&1"

    STAGE_TARGETS.extend([f"{RESULTS}/tables/seeds_accuracy.parquet", f"{RESULTS}/tables/seeds.md"])

# Needle-in-a-haystack stage (research question 2): retrieval accuracy and the fraction of the
# answer-producing query's attention on the answer span vs noise context, by needle depth
# (the Differential Transformer paper's Table 3). Runs when the config has a `needle` section.
# Helper functions live at the end of common.smk (`# --- needle ---`).

if STAGE_RUNS["needle"]:

    localrules:
        corpus_needle,
        needle_table,
        needle_figure,

    rule corpus_needle:
        output:
            f"{RESULTS}/corpus/needle.parquet",
        params:
            spec=shell_quote(needle_corpus_spec(STUDY)),
            seed=STUDY["seed"],
        log:
            f"{LOGS}/needle/corpus.log",
        benchmark:
            f"{BENCH}/needle/corpus.tsv"
        threads: 1
        resources:
            **stage_resources("data"),
        conda:
            ENV
        shell:
            "attnlab needle corpus --spec {params.spec} --seed {params.seed} --out {output} > {log} 2>&1"
            + code_marker("attnlab.needle.cli:_cmd_corpus")

    rule needle_probe:
        input:
            unpack(model_inputs),
        output:
            probe=f"{RESULTS}/needle/{{model}}.parquet",
            item_table=f"{RESULTS}/needle/items/{{model}}.parquet",
        params:
            location=lambda wc: model_location(wc.model),
            rerun_on_model_entry=rerun_on_model_entry(),
            spec=shell_quote(needle_probe_spec(STUDY)),
            seed=STUDY["seed"],
            device=STUDY["device"],
            flags=model_flags(),
        log:
            f"{LOGS}/needle/{{model}}.log",
        benchmark:
            f"{BENCH}/needle/{{model}}.tsv"
        threads: threads_for("needle")
        resources:
            **stage_resources("needle"),
        conda:
            ENV
        shell:
            "attnlab needle probe --model {params.location:q} --model-name {wildcards.model} --spec {params.spec} "
            "--seed {params.seed} --device {params.device} --threads {threads} {params.flags} --no-progress "
            "--items-out {output.item_table} --out {output.probe} > {log} 2>&1"
            + code_marker("attnlab.needle.cli:_cmd_probe")

    rule needle_table:
        input:
            needle_probe_outputs(),
        output:
            table=report(
                f"{RESULTS}/tables/needle_depth.parquet",
                caption="../report/needle_table.rst",
                category="Needle in a haystack",
            ),
            comparison=f"{RESULTS}/tables/needle_comparison.parquet",
            markdown=report(
                f"{RESULTS}/tables/needle_depth.md",
                caption="../report/needle_markdown.rst",
                category="Needle in a haystack",
            ),
        params:
            models=shell_quote(NEEDLE_MODELS),
            spec=shell_quote(needle_aggregate_spec(STUDY)),
            seed=STUDY["seed"],
        log:
            f"{LOGS}/needle/table.log",
        benchmark:
            f"{BENCH}/needle/table.tsv"
        threads: 1
        resources:
            **stage_resources("report"),
        conda:
            ENV
        shell:
            "attnlab needle table --inputs {input} --models {params.models} --spec {params.spec} "
            "--seed {params.seed} --table {output.table} --comparison {output.comparison} "
            "--markdown {output.markdown} > {log} 2>&1"
            + code_marker("attnlab.needle.cli:_cmd_table")

    rule needle_figure:
        input:
            f"{RESULTS}/tables/needle_depth.parquet",
        output:
            report(
                f"{RESULTS}/figures/needle_depth.png",
                caption="../report/needle_figure.rst",
                category="Needle in a haystack",
            ),
        log:
            f"{LOGS}/needle/figure.log",
        benchmark:
            f"{BENCH}/needle/figure.tsv"
        threads: 1
        resources:
            **stage_resources("report"),
        conda:
            ENV
        shell:
            "attnlab needle figure --table {input} --out {output} > {log} 2>&1"
            + code_marker("attnlab.needle.cli:_cmd_figure")

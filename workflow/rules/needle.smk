# Needle-in-a-haystack stage (research question 2): retrieval accuracy and the fraction of the
# answer-producing query's attention on the answer span vs noise context, by needle depth
# (the Differential Transformer paper's Table 3). Runs when the config has a `needle` section.
# Its input functions are in common.smk, under `# --- needle ---`.
# The episode corpus is defined whenever the section is present: pretraining reads it (pretrain.extra_corpora)
# even when the model selection leaves the stage no model to probe.

if needle_enabled(STUDY):

    localrules:
        corpus_needle,

    rule corpus_needle:
        output:
            "results/corpus/needle.parquet",
        params:
            spec=shell_quote(needle_corpus_spec(STUDY)),
            seed=STUDY["seed"],
        log:
            "results/logs/needle/corpus.log",
        benchmark:
            "results/benchmarks/needle/corpus.tsv"
        threads: 1
        resources:
            **stage_resources("data"),
        conda:
            ENV
        shell:
            "attnlab needle corpus --spec {params.spec} --seed {params.seed} --out {output} > {log} 2>&1"
            + code_marker("attnlab.needle.cli:_cmd_corpus")


if STAGE_RUNS["needle"]:

    localrules:
        needle_table,
        needle_figure,

    rule needle_probe:
        input:
            unpack(model_inputs),
        output:
            probe="results/needle/{model}.parquet",
            item_table="results/needle/items/{model}.parquet",
        params:
            location=lambda wc: model_location(wc.model),
            rerun_on_model_entry=rerun_on_model_entry(),
            spec=shell_quote(needle_probe_spec(STUDY)),
            seed=STUDY["seed"],
            device=STUDY["device"],
            flags=model_flags(),
        log:
            "results/logs/needle/{model}.log",
        benchmark:
            "results/benchmarks/needle/{model}.tsv"
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
                "results/tables/needle_depth.parquet",
                caption="../report/needle_table.rst",
                category="Needle in a haystack",
            ),
            comparison="results/tables/needle_comparison.parquet",
            markdown=report(
                "results/tables/needle_depth.md",
                caption="../report/needle_markdown.rst",
                category="Needle in a haystack",
            ),
        params:
            models=shell_quote(NEEDLE_MODELS),
            spec=shell_quote(needle_aggregate_spec(STUDY)),
            seed=STUDY["seed"],
        log:
            "results/logs/needle/table.log",
        benchmark:
            "results/benchmarks/needle/table.tsv"
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
            "results/tables/needle_depth.parquet",
        output:
            report(
                "results/figures/needle_depth.png",
                caption="../report/needle_figure.rst",
                category="Needle in a haystack",
            ),
        log:
            "results/logs/needle/figure.log",
        benchmark:
            "results/benchmarks/needle/figure.tsv"
        threads: 1
        resources:
            **stage_resources("report"),
        conda:
            ENV
        shell:
            "attnlab needle figure --table {input} --out {output} > {log} 2>&1"
            + code_marker("attnlab.needle.cli:_cmd_figure")

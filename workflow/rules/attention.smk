# Attention-allocation stage (research question 2): attention mass of the answer-producing query on key math
# information (KMI), inserted noise (NI), other content (OC) and the sink token, every layer and head.
# Its input functions are in common.smk, under `# --- attention ---`.


if STAGE_RUNS["attention"]:

    localrules:
        attention_tables,
        attention_figures,


    rule attention_measure:
        input:
            unpack(attention_inputs),
        output:
            allocation=expand("results/attention/{{model}}/{{base}}/{variant}.parquet", variant=VARIANTS),
            tokens=expand("results/attention/{{model}}/{{base}}/{variant}.tokens.parquet", variant=VARIANTS),
        params:
            location=lambda wc: model_location(wc.model),
            rerun_on_model_entry=rerun_on_model_entry(),
            spec=shell_quote(attention_spec(STUDY)),
            variants=" ".join(VARIANTS),
            device=STUDY["device"],
            flags=model_flags(mask_tokens=True),
        log:
            "results/logs/attention_measure/{model}/{base}.log",
        benchmark:
            "results/benchmarks/attention_measure/{model}/{base}.tsv"
        threads: threads_for("attention")
        resources:
            **stage_resources("attention"),
        conda:
            ENV
        shell:
            "attnlab attention measure --model {params.location:q} --data {input.data} --variant {params.variants} "
            "--spec {params.spec} --model-name {wildcards.model} --base {wildcards.base} "
            "--device {params.device} --threads {threads} {params.flags} "
            "--out {output.allocation} --tokens-out {output.tokens} > {log} 2>&1"
            + code_marker("attnlab.attention.cli:_measure")


    rule attention_tables:
        input:
            attention_outputs(),
        output:
            table=report(
                "results/tables/attention_ratios.parquet",
                caption="../report/attention_table.rst",
                category="Attention allocation",
            ),
            csv="results/tables/attention_ratios.csv",
            markdown=report(
                "results/tables/attention_ratios.md",
                caption="../report/attention_markdown.rst",
                category="Attention allocation",
            ),
        params:
            seed=STUDY["seed"],
            resamples=STUDY["attention"]["bootstrap_resamples"],
        log:
            "results/logs/attention_tables/attention_tables.log",
        benchmark:
            "results/benchmarks/attention_tables/attention_tables.tsv"
        threads: 1
        resources:
            **stage_resources("report"),
        conda:
            ENV
        shell:
            "attnlab attention tables --inputs {input} --out {output.table} --seed {params.seed} "
            "--n-resamples {params.resamples} > {log} 2>&1"
            + code_marker("attnlab.attention.cli:_tables")


    rule attention_figures:
        input:
            allocation=attention_outputs(),
            tokens=attention_token_outputs(),
        output:
            [
                report(
                    f"{RESULTS}/figures/attention/{m}_{kind}.png",
                    caption=f"../report/attention_{kind}.rst",
                    category="Attention allocation",
                    labels={"model": m, "figure": kind.replace("_", " ")},
                )
                for m in ATTENTION_MODELS
                for kind in ("ni_heatmap", "token_maps")
            ],
        params:
            models=" ".join(ATTENTION_MODELS),
            out_dir=lambda wc, output: os.path.dirname(output[0]),
        log:
            "results/logs/attention_figures/attention_figures.log",
        benchmark:
            "results/benchmarks/attention_figures/attention_figures.tsv"
        threads: 1
        resources:
            **stage_resources("report"),
        conda:
            ENV
        shell:
            "attnlab attention figures --inputs {input.allocation} --tokens {input.tokens} --models {params.models} "
            "--out-dir {params.out_dir} > {log} 2>&1"
            + code_marker("attnlab.attention.cli:_figures")


# SFT stage: supervised fine-tuning of `sft.models` with every recipe in `sft.recipes`.
# The variant `{model}+sft-{recipe}` is an ordinary model downstream (it is in MODELS), so
# the evaluation, analysis and report rules handle it without special cases.
# Its input functions are in common.smk, under `# --- sft ---`.


if STAGE_RUNS["sft"]:

    localrules:
        sft_tables,


    rule sft_data:
        input:
            unpack(sft_data_inputs),
        output:
            "results/sft/{recipe}/train.parquet",
        params:
            spec=lambda wc: shell_quote(sft_data_spec(STUDY, wc.recipe)),
        wildcard_constraints:
            recipe=_alternatives(SFT_RECIPES),
        log:
            "results/logs/sft_data/{recipe}.log",
        benchmark:
            "results/benchmarks/sft_data/{recipe}.tsv"
        threads: 1
        resources:
            **stage_resources("data"),
        conda:
            ENV
        shell:
            "attnlab sft data --train {input.train} --spec {params.spec} --out {output} > {log} 2>&1"
            + code_marker("attnlab.sft.cli:run_data")


    rule sft:
        input:
            unpack(sft_inputs),
        output:
            model=directory("results/models/{sft_base}+sft-{recipe}"),
            curve="results/training/{sft_base}+sft-{recipe}/loss.parquet",
            plot=report(
                "results/training/{sft_base}+sft-{recipe}/loss.png",
                caption="../report/sft_loss_curve.rst",
                category="Fine-tuning",
                labels={"model": "{sft_base}+sft-{recipe}"},
            ),
        params:
            location=lambda wc: model_location(wc.sft_base),
            rerun_on_model_entry=rerun_on_model_entry("sft_base"),
            spec=lambda wc: shell_quote(sft_recipe(STUDY, wc.recipe)),
            device=STUDY["device"],
            flags=model_flags("sft_base", dtype=False),
        wildcard_constraints:
            sft_base=_alternatives(SFT_BASES),
            recipe=_alternatives(SFT_RECIPES),
        log:
            "results/logs/sft/{sft_base}+sft-{recipe}.log",
        benchmark:
            "results/benchmarks/sft/{sft_base}+sft-{recipe}.tsv"
        threads: threads_for("sft")
        resources:
            **stage_resources("sft"),
        conda:
            ENV
        shell:
            "attnlab sft train --model {params.location:q} --data {input.data} --spec {params.spec} "
            "--device {params.device} --threads {threads} {params.flags} --name {wildcards.sft_base}+sft-{wildcards.recipe} "
            "--out {output.model} --curve {output.curve} --curve-plot {output.plot} > {log} 2>&1"
            + code_marker("attnlab.sft.cli:run_train")


    rule sft_tables:
        input:
            sft_table_inputs,
        output:
            table=report(
                "results/tables/sft.parquet",
                caption="../report/sft_table.rst",
                category="Fine-tuning",
            ),
            markdown="results/tables/sft.md",
            csv="results/tables/sft.csv",
            figure=report(
                "results/figures/sft.png",
                caption="../report/sft_figure.rst",
                category="Fine-tuning",
            ),
        params:
            out_dir=lambda wc, output: os.path.dirname(output.table),
        log:
            "results/logs/sft_tables/sft_tables.log",
        benchmark:
            "results/benchmarks/sft_tables/sft_tables.tsv"
        threads: 1
        resources:
            **stage_resources("report"),
        conda:
            ENV
        shell:
            "attnlab report sft --inputs {input} --out-dir {params.out_dir} --figure {output.figure} > {log} 2>&1"
            + code_marker("attnlab.report.cli:run_sft")


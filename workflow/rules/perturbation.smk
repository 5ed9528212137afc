# Perturbation stage (research question 4): neuron perturbation on factual relations and layer-wise Jacobians
# (docs/perturbation.md). The facts corpus rule runs whenever pretrain.extra_corpora lists facts.


localrules:
    corpus_facts,
    perturbation_tables,
    perturbation_figures,


rule corpus_facts:
    output:
        "results/corpus/facts.parquet",
    params:
        relations=lambda wc: facts_corpus_spec()["relations"],
        repeats=lambda wc: facts_corpus_spec()["repeats"],
        seed=STUDY["seed"],
    log:
        "results/logs/corpus/facts.log",
    benchmark:
        "results/benchmarks/corpus/facts.tsv"
    threads: 1
    resources:
        **stage_resources("data"),
    conda:
        ENV
    shell:
        "attnlab perturbation corpus --relations {params.relations:q} --repeats {params.repeats} "
        "--seed {params.seed} --out {output} > {log} 2>&1"
        + code_marker("attnlab.perturbation.cli:_cmd_corpus")


if STAGE_RUNS["perturbation"]:

    rule perturbation:
        input:
            unpack(model_inputs),
        output:
            "results/perturbation/{model}.parquet",
        params:
            location=lambda wc: model_location(wc.model),
            rerun_on_model_entry=rerun_on_model_entry(),
            relations=lambda wc: perturbation_relations(wc.model),
            spec=perturbation_spec,
            seed=STUDY["seed"],
            device=STUDY["device"],
            flags=model_flags(),
        log:
            "results/logs/perturbation/{model}.log",
        benchmark:
            "results/benchmarks/perturbation/{model}.tsv"
        threads: threads_for("perturbation")
        resources:
            **stage_resources("perturbation"),
        conda:
            ENV
        shell:
            "attnlab perturbation run --model {params.location:q} --model-name {wildcards.model} "
            "--relations {params.relations:q} --spec {params.spec} --seed {params.seed} --device {params.device} "
            "--threads {threads} {params.flags} --out {output} > {log} 2>&1"
            + code_marker("attnlab.perturbation.cli:_cmd_run")

    rule jacobian:
        input:
            unpack(model_inputs),
        output:
            "results/jacobian/{model}.parquet",
        params:
            location=lambda wc: model_location(wc.model),
            rerun_on_model_entry=rerun_on_model_entry(),
            relations=lambda wc: perturbation_relations(wc.model),
            spec=jacobian_spec,
            seed=STUDY["seed"],
            device=STUDY["device"],
            flags=model_flags(),
        log:
            "results/logs/jacobian/{model}.log",
        benchmark:
            "results/benchmarks/jacobian/{model}.tsv"
        threads: threads_for("jacobian")
        resources:
            **stage_resources("jacobian"),
        conda:
            ENV
        shell:
            "attnlab perturbation jacobian --model {params.location:q} --model-name {wildcards.model} "
            "--relations {params.relations:q} --spec {params.spec} --seed {params.seed} --device {params.device} "
            "--threads {threads} {params.flags} --out {output} > {log} 2>&1"
            + code_marker("attnlab.perturbation.cli:_cmd_jacobian")

    rule perturbation_tables:
        input:
            perturbation=expand("results/perturbation/{model}.parquet", model=PERTURBATION_MODELS),
            jacobian=expand("results/jacobian/{model}.parquet", model=PERTURBATION_MODELS),
        output:
            table=report(
                "results/tables/perturbation.parquet",
                caption="../report/perturbation_table.rst",
                category="Perturbation sensitivity",
            ),
            summary="results/tables/perturbation_summary.parquet",
            comparison=report(
                "results/tables/perturbation_comparison.parquet",
                caption="../report/perturbation_comparison.rst",
                category="Perturbation sensitivity",
            ),
            markdown=report(
                "results/tables/perturbation.md",
                caption="../report/perturbation_markdown.rst",
                category="Perturbation sensitivity",
            ),
            jacobian=report(
                "results/tables/jacobian.parquet",
                caption="../report/perturbation_jacobian_table.rst",
                category="Perturbation sensitivity",
            ),
            jacobian_markdown="results/tables/jacobian.md",
        params:
            confidence=PERTURBATION["confidence"],
            seed=STUDY["seed"],
            out_dir=lambda wc, output: os.path.dirname(output.table),
        log:
            "results/logs/perturbation/tables.log",
        benchmark:
            "results/benchmarks/perturbation/tables.tsv"
        threads: 1
        resources:
            **stage_resources("report"),
        conda:
            ENV
        shell:
            "attnlab perturbation tables --perturbation {input.perturbation} --jacobian {input.jacobian} "
            "--confidence {params.confidence} --seed {params.seed} --out-dir {params.out_dir} > {log} 2>&1"
            + code_marker("attnlab.perturbation.cli:_cmd_tables")

    rule perturbation_figures:
        input:
            table="results/tables/perturbation.parquet",
            summary="results/tables/perturbation_summary.parquet",
            jacobian="results/tables/jacobian.parquet",
        output:
            relations=report(
                "results/figures/perturbation/relations.png",
                caption="../report/perturbation_relations.rst",
                category="Perturbation sensitivity",
            ),
            layers=report(
                "results/figures/perturbation/layers.png",
                caption="../report/perturbation_layers.rst",
                category="Perturbation sensitivity",
            ),
            jacobian=report(
                "results/figures/perturbation/jacobian.png",
                caption="../report/perturbation_jacobian.rst",
                category="Perturbation sensitivity",
            ),
        params:
            tables=lambda wc, input: os.path.dirname(input.table),
            out_dir=lambda wc, output: os.path.dirname(output.relations),
        log:
            "results/logs/perturbation/figures.log",
        benchmark:
            "results/benchmarks/perturbation/figures.tsv"
        threads: 1
        resources:
            **stage_resources("report"),
        conda:
            ENV
        shell:
            "attnlab perturbation figures --tables-dir {params.tables} --out-dir {params.out_dir} > {log} 2>&1"
            + code_marker("attnlab.perturbation.cli:_cmd_figures")

# Evaluation stage: pass@1 of every model on every dataset variant, one Parquet row per item.


rule evaluate:
    input:
        unpack(evaluate_inputs),
    output:
        "results/eval/{model}/{base}/{variant}.parquet",
    params:
        location=lambda wc: model_location(wc.model),
        rerun_on_model_entry=rerun_on_model_entry(),
        spec=lambda wc: shell_quote(evaluation_spec(wc.model)),
        device=STUDY["device"],
        flags=model_flags(train=True),
    log:
        "results/logs/evaluate/{model}/{base}/{variant}.log",
    benchmark:
        "results/benchmarks/evaluate/{model}/{base}/{variant}.tsv"
    threads: threads_for("evaluate")
    resources:
        **stage_resources("evaluate"),
    conda:
        ENV
    shell:
        "attnlab evaluate --model {params.location:q} --data {input.data} --spec {params.spec} "
        "--model-name {wildcards.model} --base {wildcards.base} --variant {wildcards.variant} "
        "--device {params.device} --threads {threads} {params.flags} --out {output} > {log} 2>&1"
        + code_marker("attnlab.evaluate.cli:_handle_evaluate")

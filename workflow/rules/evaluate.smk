# Evaluation stage: pass@1 of every model on every dataset variant, one Parquet row per item.


rule evaluate:
    input:
        unpack(evaluate_inputs),
    output:
        f"{RESULTS}/eval/{{model}}/{{base}}/{{variant}}.parquet",
    params:
        location=lambda wc: model_location(wc.model),
        model_spec=lambda wc: as_json(model_spec(wc.model)),
        spec=lambda wc: shell_quote(evaluation_spec(wc.model)),
        device=STUDY["device"],
        flags=evaluate_flags,
    log:
        f"{LOGS}/evaluate/{{model}}/{{base}}/{{variant}}.log",
    benchmark:
        f"{BENCH}/evaluate/{{model}}/{{base}}/{{variant}}.tsv"
    threads: threads_for("evaluate")
    resources:
        mem_mb=rule_resource("evaluate", "mem_mb", 4000),
        runtime=rule_resource("evaluate", "runtime", 60),
        gpu=rule_resource("evaluate", "gpu", 0),
    conda:
        ENV
    shell:
        "attnlab evaluate --model {params.location:q} --data {input.data} --spec {params.spec} "
        "--model-name {wildcards.model} --base {wildcards.base} --variant {wildcards.variant} "
        "--device {params.device} --threads {threads} {params.flags} --out {output} > {log} 2>&1"
        + code_marker("attnlab.evaluate.cli:_handle_evaluate")

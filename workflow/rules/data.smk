# Data stage: base datasets (train split, clean test split) and noisy variants.


rule data_train:
    input:
        unpack(dataset_inputs),
    output:
        "results/data/{base}/train.parquet",
    params:
        spec=lambda wc: shell_quote(STUDY["datasets"][wc.base]),
        seed=STUDY["seed"],
    log:
        "results/logs/data_train/{base}.log",
    benchmark:
        "results/benchmarks/data_train/{base}.tsv"
    threads: 1
    resources:
        **stage_resources("data"),
    conda:
        ENV
    shell:
        "attnlab data base --spec {params.spec} --split train --seed {params.seed} "
        "--out {output} > {log} 2>&1"
        + code_marker("attnlab.data.cli:run_base")


rule data_clean:
    input:
        unpack(dataset_inputs),
    output:
        "results/data/{base}/clean.parquet",
    params:
        spec=lambda wc: shell_quote(STUDY["datasets"][wc.base]),
        seed=STUDY["seed"],
        n=f"--n {n_test_items(STUDY)}" if n_test_items(STUDY) else "",
    log:
        "results/logs/data_clean/{base}.log",
    benchmark:
        "results/benchmarks/data_clean/{base}.tsv"
    threads: 1
    resources:
        **stage_resources("data"),
    conda:
        ENV
    shell:
        "attnlab data base --spec {params.spec} --split test --seed {params.seed} {params.n} "
        "--out {output} > {log} 2>&1"
        + code_marker("attnlab.data.cli:run_base")


rule data_noise:
    input:
        "results/data/{base}/clean.parquet",
    output:
        "results/data/{base}/{noise}.parquet",
    params:
        seed=STUDY["seed"],
    log:
        "results/logs/data_noise/{base}/{noise}.log",
    benchmark:
        "results/benchmarks/data_noise/{base}/{noise}.tsv"
    threads: 1
    resources:
        **stage_resources("data"),
    conda:
        ENV
    shell:
        "attnlab data noise --input {input} --noise-type {wildcards.noise} "
        "--seed {params.seed} --out {output} > {log} 2>&1"
        + code_marker("attnlab.data.cli:run_noise")

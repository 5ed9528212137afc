# Model stage: the shared BPE tokenizer and the from-scratch models (an mdlm with `init` is adapted from the
# trained llama it names, which is then an input of its pretrain job).
# Both rules run only for studies with scratch models (the lambdas read
# sections that exist only then). Hub models need no rule: the evaluation loads them by id through the same loader.


rule tokenizer:
    input:
        corpus=lambda wc: f"{RESULTS}/data/{STUDY['tokenizer']['corpus']}/train.parquet",
    output:
        directory("results/tokenizer"),
    params:
        vocab_size=lambda wc: STUDY["tokenizer"]["vocab_size"],
    log:
        "results/logs/tokenizer/tokenizer.log",
    benchmark:
        "results/benchmarks/tokenizer/tokenizer.tsv"
    threads: 1
    resources:
        **stage_resources("tokenizer"),
    conda:
        ENV
    shell:
        "attnlab models tokenizer --corpus {input.corpus} --vocab-size {params.vocab_size} "
        "--out {output} > {log} 2>&1"
        + code_marker("attnlab.models.cli:_cmd_tokenizer")


rule pretrain:
    input:
        unpack(init_model),
        tokenizer="results/tokenizer",
        corpus=lambda wc: f"{RESULTS}/data/{STUDY['pretrain']['corpus']}/train.parquet",
        extra=extra_corpora,
    output:
        model=directory("results/models/{scratch_model}"),
        curve="results/training/{scratch_model}/loss.parquet",
        plot=report(
            "results/training/{scratch_model}/loss.png",
            caption="../report/loss_curve.rst",
            category="Training",
            labels={"model": "{scratch_model}"},
        ),
    params:
        spec=lambda wc: shell_quote(scratch_architecture_spec(STUDY, wc.scratch_model)),
        train_spec=pretrain_spec,
        seed=lambda wc: pretrain_seed(wc.scratch_model),
        device=STUDY["device"],
        init=init_flag,
    log:
        "results/logs/pretrain/{scratch_model}.log",
    benchmark:
        "results/benchmarks/pretrain/{scratch_model}.tsv"
    threads: threads_for("pretrain")
    resources:
        **stage_resources("pretrain"),
    conda:
        ENV
    shell:
        "attnlab models pretrain --spec {params.spec} --train-spec {params.train_spec} "
        "--tokenizer {input.tokenizer} --corpus {input.corpus} --extra-corpus {input.extra} --seed {params.seed} --device {params.device} "
        "--threads {threads} {params.init} --out {output.model} --curve {output.curve} --curve-plot {output.plot} "
        "> {log} 2>&1"
        + code_marker("attnlab.models.cli:_cmd_pretrain")

"""Pretraining: determinism, loss masking, shared data order, atomic output, CLI."""

from __future__ import annotations

import argparse
import json
import random

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from attnlab.io import read_metadata, read_parquet, write_parquet
from attnlab.models import cli as models_cli
from attnlab.models.loader import load_model
from attnlab.models.pretrain import (
    answer_only_labels,
    batch_index_stream,
    collate,
    corpus_documents,
    next_token_loss_sum,
    packed_blocks,
    pretrain,
    read_training_info,
    split_validation,
    validate_architecture_spec,
    validate_train_spec,
)
from attnlab.models.registry import build_scratch_config, count_parameters
from attnlab.models.tokenizer import load_tokenizer, save_tokenizer, train_tokenizer

SPEC = {
    "source": "scratch",
    "architecture": "llama",
    "hidden_size": 32,
    "num_layers": 2,
    "num_heads": 4,
    "intermediate_size": 64,
    "max_position_embeddings": 128,
    "dtype": "auto",
}
TRAIN = {
    "corpus": "toy",
    "batch_size": 8,
    "learning_rate": 0.01,
    "steps": 6,
    "warmup_steps": 2,
    "weight_decay": 0.01,
    "max_length": 64,
    "grad_clip": 1.0,
    "eval_every": 3,
    "validation_fraction": 0.1,
    "scheduler": "cosine",
}


def make_corpus(n: int, seed: int = 0) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        rows.append({"question": f"Sam has {a} cats and gets {b} more. How many cats?", "answer": f"{a}+{b}={a + b}\n#### {a + b}"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def corpus() -> pd.DataFrame:
    return make_corpus(120)


@pytest.fixture(scope="module")
def tokenizer_dir(corpus, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok") / "tokenizer"
    save_tokenizer(train_tokenizer(corpus_documents(corpus), vocab_size=300), folder)
    return folder


def test_same_inputs_same_weights_and_curve(corpus, tokenizer_dir, tmp_path):
    runs = []
    for name in ("a", "b"):
        curve = pretrain(SPEC, TRAIN, tokenizer_dir, corpus, seed=3, out_dir=tmp_path / name, threads=1,
                         curve_path=tmp_path / f"{name}.parquet", progress=False)
        runs.append(curve)
    pd.testing.assert_frame_equal(runs[0], runs[1])
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    wa, wb = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    pretrain(SPEC, TRAIN, tokenizer_dir, corpus, seed=4, out_dir=tmp_path / "c", threads=1, progress=False)
    wc = load_file(tmp_path / "c" / "model.safetensors")
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_curve_contents_and_outputs(corpus, tokenizer_dir, tmp_path):
    out = tmp_path / "models" / "llama"
    curve = pretrain(SPEC, TRAIN, tokenizer_dir, corpus, seed=0, out_dir=out, threads=1,
                     curve_path=tmp_path / "loss.parquet", curve_plot_path=tmp_path / "loss.png", progress=False)
    assert list(curve.columns) == ["step", "split", "loss", "lr", "tokens_seen"]
    train = curve[curve.split == "train"]
    val = curve[curve.split == "validation"]
    assert train.step.tolist() == [1, 2, 3, 4, 5, 6]
    assert val.step.tolist() == [0, 3, 6]
    assert train.tokens_seen.is_monotonic_increasing and train.tokens_seen.iloc[0] > 0
    assert train.lr.iloc[0] == 0.0 and train.lr.iloc[2] == pytest.approx(TRAIN["learning_rate"])  # linear warmup
    assert read_parquet(tmp_path / "loss.parquet").equals(curve)
    meta = read_metadata(tmp_path / "loss.parquet")
    assert meta["architecture"] == "llama" and meta["seed"] == 0 and "wall_seconds" not in meta
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {"config.json", "model.safetensors", "tokenizer.json", "training_info.json"} <= {p.name for p in out.iterdir()}
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp folders left
    info = read_training_info(out)
    tok = load_tokenizer(tokenizer_dir)
    size = validate_architecture_spec(SPEC)[1]
    assert "source" not in size and "dtype" not in size
    assert info["num_parameters"] == count_parameters(build_scratch_config("llama", size, tok))
    assert info["num_train_documents"] + info["num_validation_documents"] == len(corpus) == 120
    assert info["num_validation_documents"] == 12
    model, _ = load_model(out, device="cpu")
    assert type(model).__name__ == "LlamaForCausalLM"


def test_learns_a_tiny_task(corpus, tokenizer_dir, tmp_path):
    train = {**TRAIN, "steps": 60, "eval_every": 60, "learning_rate": 0.01, "warmup_steps": 5}
    curve = pretrain(SPEC, train, tokenizer_dir, corpus, seed=0, out_dir=tmp_path / "m", threads=1, progress=False)
    val = curve[curve.split == "validation"].loss.tolist()
    assert val[-1] < 0.5 * val[0]


def test_data_order_shared_across_architectures(corpus, tokenizer_dir, tmp_path):
    curves = {
        arch: pretrain({**SPEC, "architecture": arch}, {**TRAIN, "steps": 4}, tokenizer_dir, corpus, seed=5,
                       out_dir=tmp_path / arch, threads=1, progress=False)
        for arch in ("llama", "gpt2")
    }
    # Same batches => same number of target tokens per step, whatever the architecture.
    assert curves["llama"].tokens_seen.tolist() == curves["gpt2"].tokens_seen.tolist()
    assert curves["llama"].loss.tolist() != curves["gpt2"].loss.tolist()


def test_batch_stream_and_split_are_seeded():
    a = batch_index_stream(50, 8, 20, seed=1)
    assert a.shape == (20, 8)
    assert (a == batch_index_stream(50, 8, 20, seed=1)).all()
    assert not (a == batch_index_stream(50, 8, 20, seed=2)).all()
    first_epoch = a.reshape(-1)[:50]
    assert sorted(first_epoch.tolist()) == list(range(50))  # each row once per epoch
    train, val = split_validation(100, 0.02, seed=1)
    assert len(val) == 2 and len(train) == 98 and not set(train) & set(val)


def test_group_by_length_keeps_epochs_and_cuts_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 200, size=400)
    plain = batch_index_stream(400, 8, 100, seed=1)
    grouped = batch_index_stream(400, 8, 100, seed=1, lengths=lengths, group_size=10)
    assert (grouped == batch_index_stream(400, 8, 100, seed=1, lengths=lengths, group_size=10)).all()
    # Same documents per epoch (400 rows = 50 batches, 2 epochs), only regrouped.
    for epoch in range(2):
        block = slice(epoch * 50, (epoch + 1) * 50)
        assert sorted(grouped[block].reshape(-1).tolist()) == list(range(400))
    def padded(batches):
        return int(sum(lengths[b].max() * len(b) for b in batches))
    assert padded(grouped) < 0.8 * padded(plain)
    with pytest.raises(ValueError, match="3 lengths for 400"):
        batch_index_stream(400, 8, 10, seed=1, lengths=[1, 2, 3])


def test_padding_is_masked_out_of_the_loss(corpus, tokenizer_dir):
    tok = load_tokenizer(tokenizer_dir)
    input_ids, labels = collate([[1, 7, 8, 2], [1, 9, 2]], tok.pad_token_id)
    assert input_ids[1].tolist() == [1, 9, 2, tok.pad_token_id]
    assert labels[1].tolist() == [1, 9, 2, -100]
    torch.manual_seed(0)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(build_scratch_config("llama", validate_architecture_spec(SPEC)[1], tok))
    short = [1] + tok("Sam has 3 cats")["input_ids"][1:] + [2]
    long = [1] + tok("Sam has 3 cats and gets 4 more cats today")["input_ids"][1:] + [2]
    with torch.no_grad():
        together = next_token_loss_sum(model, *collate([short, long], tok.pad_token_id))
        alone = [next_token_loss_sum(model, *collate([s], tok.pad_token_id)) for s in (short, long)]
    assert together[1] == alone[0][1] + alone[1][1] == len(short) + len(long) - 2
    assert together[0] == pytest.approx(alone[0][0] + alone[1][0], rel=1e-5)


@pytest.mark.parametrize("architecture", ["mamba", "diffllama"])
def test_weight_decay_only_on_matrices(architecture, tokenizer_dir):
    from transformers import AutoModelForCausalLM

    from attnlab.models.pretrain import _parameter_groups

    size = {**validate_architecture_spec(SPEC)[1], "state_size": 4, "expand": 2}
    model = AutoModelForCausalLM.from_config(build_scratch_config(architecture, size, load_tokenizer(tokenizer_dir)))
    decay, no_decay = _parameter_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    kept = {id(p) for p in no_decay["params"]}
    names = [n for n, p in model.named_parameters() if id(p) in kept]
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert all(p.ndim >= 2 for p in decay["params"])
    expected = ("A_log", ".D") if architecture == "mamba" else ("lambda_q1", "lambda_k2")
    for fragment in expected:
        assert any(fragment in n for n in names), fragment
    assert not any("embed" in n for n in names)


def test_bad_specs(corpus, tokenizer_dir, tmp_path):
    with pytest.raises(ValueError, match=r"missing required keys \['grad_clip'\]"):
        validate_train_spec({k: v for k, v in TRAIN.items() if k != "grad_clip"})
    with pytest.raises(ValueError, match=r"unknown keys \['stepz'\]"):
        validate_train_spec({**TRAIN, "stepz": 3})
    with pytest.raises(ValueError, match="'validation_fraction' must be in"):
        validate_train_spec({**TRAIN, "validation_fraction": 1.5})
    with pytest.raises(ValueError, match="no 'architecture' key"):
        validate_architecture_spec({"hidden_size": 32})
    with pytest.raises(ValueError, match=r"lacks columns \['answer'\]"):
        corpus_documents(corpus[["question"]])
    with pytest.raises(ValueError, match="unknown scratch architecture 'rwkv'"):
        pretrain({**SPEC, "architecture": "rwkv"}, TRAIN, tokenizer_dir, corpus, 0, tmp_path / "x", 1, progress=False)
    assert not (tmp_path / "x").exists()


def test_cli_tokenizer_params_pretrain(corpus, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="attnlab")
    models_cli.register(parser.add_subparsers(dest="command", required=True))
    write_parquet(corpus, tmp_path / "train.parquet")

    def run(*argv: str) -> int:
        args = parser.parse_args(list(argv))
        return args.func(args)

    assert run("models", "tokenizer", "--corpus", str(tmp_path / "train.parquet"), "--vocab-size", "300",
               "--out", str(tmp_path / "tok")) == 0
    assert (tmp_path / "tok" / "tokenizer.json").is_file()
    capsys.readouterr()
    assert run("models", "params", "--spec", json.dumps(SPEC), "--tokenizer", str(tmp_path / "tok")) == 0
    printed = int(capsys.readouterr().out.strip())
    expected = count_parameters(build_scratch_config("llama", validate_architecture_spec(SPEC)[1], load_tokenizer(tmp_path / "tok")))
    assert printed == expected
    assert run("models", "pretrain", "--spec", json.dumps(SPEC), "--train-spec", json.dumps(TRAIN),
               "--tokenizer", str(tmp_path / "tok"), "--corpus", str(tmp_path / "train.parquet"), "--seed", "1",
               "--threads", "1", "--out", str(tmp_path / "model"), "--curve", str(tmp_path / "loss.parquet"),
               "--curve-plot", str(tmp_path / "loss.png"), "--no-progress") == 0
    assert len(read_parquet(tmp_path / "loss.parquet")) == TRAIN["steps"] + 3
    assert (tmp_path / "loss.png").is_file() and (tmp_path / "model" / "model.safetensors").is_file()
    with pytest.raises(SystemExit):
        parser.parse_args(["models", "params", "--spec", "{not json", "--tokenizer", "x"])


def test_packed_blocks_concatenate_documents_in_stream_order():
    docs = [[1, 10, 2], [1, 11, 12, 2], [1, 13, 2]]
    blocks = packed_blocks(docs, np.array([2, 0, 1]), block_length=4, n_blocks=3)
    assert blocks.tolist() == [[1, 13, 2, 1], [10, 2, 1, 11], [12, 2, 1, 13]]  # cycles the order when it runs out


def test_packing_trains_on_full_blocks_deterministically(corpus, tokenizer_dir, tmp_path):
    train = {**TRAIN, "packing": True, "max_length": 32}
    first = pretrain(SPEC, train, tokenizer_dir, corpus, seed=2, out_dir=tmp_path / "a", threads=1, progress=False)
    again = pretrain(SPEC, train, tokenizer_dir, corpus, seed=2, out_dir=tmp_path / "b", threads=1, progress=False)
    pd.testing.assert_frame_equal(first, again)
    tokens = first[first.split == "train"].tokens_seen.tolist()
    assert tokens == [step * train["batch_size"] * 32 for step in range(1, 7)]  # no padding anywhere
    with pytest.raises(ValueError, match="exclude each other"):
        validate_train_spec({**train, "group_by_length": True})


def test_answer_only_labels_mask_exactly_the_prompt(corpus, tokenizer_dir):
    from attnlab.models.pretrain import tokenize_documents
    from attnlab.prompts import format_question

    tok = load_tokenizer(tokenizer_dir)
    sequences, _ = tokenize_documents(corpus_documents(corpus), tok, max_length=512)
    labels = answer_only_labels(corpus, sequences, tok)
    for question, ids, targets in zip(corpus["question"], sequences, labels):
        n_prompt = len(tok(format_question(question))["input_ids"])
        assert targets[:n_prompt] == [-100] * n_prompt
        assert targets[n_prompt:] == ids[n_prompt:] and targets[-1] == tok.eos_token_id
        assert tok.decode(targets[n_prompt:-1]).strip() == corpus.loc[corpus["question"] == question, "answer"].iloc[0]


def test_answer_only_loss_counts_only_solution_tokens(corpus, tokenizer_dir, tmp_path):
    full = pretrain(SPEC, {**TRAIN, "steps": 2}, tokenizer_dir, corpus, seed=1, out_dir=tmp_path / "a", threads=1,
                    progress=False)
    answer = pretrain(SPEC, {**TRAIN, "steps": 2, "loss_on": "answer"}, tokenizer_dir, corpus, seed=1,
                      out_dir=tmp_path / "b", threads=1, progress=False)
    tokens_full = full[full.split == "train"].tokens_seen.tolist()
    tokens_answer = answer[answer.split == "train"].tokens_seen.tolist()
    assert all(0 < a < f for a, f in zip(tokens_answer, tokens_full))


def test_extra_corpus_documents_are_validated_with_their_source():
    from attnlab.models.pretrain import extra_corpus_documents

    assert extra_corpus_documents(pd.DataFrame({"text": ["a b", "c"]}), "x.parquet") == ["a b", "c"]
    with pytest.raises(ValueError, match=r"x\.parquet: an extra corpus needs a 'text' column"):
        extra_corpus_documents(pd.DataFrame({"question": ["q"]}), "x.parquet")
    with pytest.raises(ValueError, match=r"x\.parquet: empty 'text' in row\(s\) \[1\]"):
        extra_corpus_documents(pd.DataFrame({"text": ["ok", "  "]}), "x.parquet")


def test_extra_documents_join_the_corpus_and_change_the_model(corpus, tokenizer_dir, tmp_path):
    extra = ["The magic number for Oslo is 4417."] * 40
    train = {**TRAIN, "steps": 4, "loss_on": "answer"}
    plain = pretrain(SPEC, train, tokenizer_dir, corpus, seed=1, out_dir=tmp_path / "a", threads=1, progress=False)
    mixed = pretrain(SPEC, train, tokenizer_dir, corpus, seed=1, out_dir=tmp_path / "b", threads=1, progress=False,
                     extra_documents=extra)
    assert not plain.equals(mixed)
    weights_a = load_file(tmp_path / "a" / "model.safetensors")
    weights_b = load_file(tmp_path / "b" / "model.safetensors")
    assert any(not torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    # the extra documents are scored on every token: with only them, loss_on=answer still trains
    again = pretrain(SPEC, train, tokenizer_dir, corpus, seed=1, out_dir=tmp_path / "c", threads=1, progress=False,
                     extra_documents=extra)
    assert again.equals(mixed)


def test_answer_window_sequences_pad_the_answer_with_eos_to_the_window(corpus, tokenizer_dir):
    from attnlab.models.pretrain import answer_window_sequences
    from attnlab.prompts import format_question

    tokenizer = load_tokenizer(tokenizer_dir)
    sequences, labels, cut = answer_window_sequences(corpus.iloc[:5], tokenizer, 24, 512)
    assert cut == 0
    eos = tokenizer.eos_token_id
    for row, ids, target in zip(corpus.iloc[:5].itertuples(), sequences, labels):
        prompt = tokenizer(format_question(row.question))["input_ids"]
        assert ids[: len(prompt)] == prompt and len(ids) == len(prompt) + 24
        assert target[: len(prompt)] == [-100] * len(prompt) and target[len(prompt) :] == ids[len(prompt) :]
        solution = tokenizer(format_question(row.question) + " " + row.answer)["input_ids"][len(prompt) :]
        window = ids[len(prompt) :]
        n = min(len(solution), 24)
        assert window[:n] == solution[:n] and all(t == eos for t in window[n:])  # EOS-padded (or cut)
    _, _, cut = answer_window_sequences(corpus.iloc[:5], tokenizer, 24, 20)
    assert cut == 5


def test_mdlm_initialised_from_a_llama_keeps_its_weights_and_shifts_its_logits(corpus, tokenizer_dir, tmp_path):
    """The adapted mdlm loads the llama's weights exactly; logits[:, i] is the head of the hidden state at i - 1."""
    from attnlab.evaluate.diffusion import generate_diffusion

    llama_dir = tmp_path / "llama"
    pretrain(SPEC, TRAIN, tokenizer_dir, corpus, 1, llama_dir, progress=False)
    llama, _ = load_model(llama_dir)
    adapt = {**TRAIN, "steps": 0 + 2, "loss_on": "answer", "answer_window": 16, "learning_rate": 1e-12}
    mdlm_spec = {**SPEC, "architecture": "mdlm"}
    mdlm_dir = tmp_path / "mdlm"
    pretrain(mdlm_spec, adapt, tokenizer_dir, corpus, 1, mdlm_dir, progress=False, init_from=llama_dir)
    mdlm, tokenizer = load_model(mdlm_dir)
    assert type(mdlm).__name__ == "MDLMForMaskedDiffusion" and mdlm.config.shift_logits
    assert mdlm.config.trained_positions == TRAIN["max_length"]
    assert read_training_info(mdlm_dir)["init_from"] == str(llama_dir)
    llama_state, mdlm_state = llama.state_dict(), mdlm.state_dict()
    assert set(llama_state) == set(mdlm_state)
    # lr 1e-12 for 2 steps: the weights are still the llama's (to float precision)
    assert all(torch.allclose(llama_state[k], mdlm_state[k], atol=1e-6) for k in llama_state)
    ids = torch.tensor([tokenizer("Question: 3 plus 4?\nAnswer: 7")["input_ids"]])
    with torch.no_grad():
        hidden = mdlm.model(input_ids=ids).last_hidden_state  # [1, T, d]
        logits = mdlm(input_ids=ids).logits  # [1, T, V]
    assert torch.allclose(logits[:, 1:], mdlm.lm_head(hidden)[:, :-1], atol=1e-5)
    with pytest.raises(ValueError, match="positions the model was trained on"):
        generate_diffusion(mdlm, tokenizer, ["Question: 3 plus 4?\nAnswer:"], batch_size=1, steps=60,
                           block_length=60, answer_length=60, stop_sequences=[])
    with pytest.raises(ValueError, match="init_from is for architecture mdlm"):
        pretrain(SPEC, TRAIN, tokenizer_dir, corpus, 1, tmp_path / "x", progress=False, init_from=llama_dir)
    with pytest.raises(ValueError, match="hidden_size"):
        pretrain({**mdlm_spec, "hidden_size": 64}, adapt, tokenizer_dir, corpus, 1, tmp_path / "y", progress=False,
                 init_from=llama_dir)

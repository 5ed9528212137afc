"""Adapt the masked diffusion LM from a trained Llama with one recipe, then measure its clean strict pass@1.

    python benchmarks/bench_mdlm_recipe.py --llama results/models/llama --tokenizer results/tokenizer \
        --train results/data/synthetic/train.parquet --test results/data/synthetic/clean.parquet \
        [--config config.yaml] [--model mdlm] [--seed SEED] [--steps 600] [--learning-rate 1e-4] \
        [--anneal-steps 0] [--loss-weighting llada] [--ar-loss-weight 0] [--mix-documents 0] \
        [--items 200] [--answer-length 160] [--block-length 32] [--decode-steps 160] [--remasking low_confidence] \
        [--threads 2] [--keep DIR]

The recipe is the study's own: the config's ``models.<model>`` entry and its ``init`` section, with the options given
on the command line put over ``init`` (and over ``diffusion`` for decoding), go through the schema and config checks
(:func:`attnlab.config.validate_config`), and the train spec is :func:`attnlab.models.settings.diffusion_adaptation_spec`
of the result — exactly what the models stage would train. Adaptation is :func:`attnlab.models.pretrain.pretrain`
with ``init_from`` (seeded by the study seed unless ``--seed``); evaluation is
:func:`attnlab.evaluate.evaluate.evaluate_items` on the first ``--items`` rows of the test table, with the study's
evaluation section and the diffusion settings. Prints one JSON line: the recipe, the decoding settings,
``train_cpu_s`` and ``eval_cpu_s`` (``time.process_time`` of this process, all threads), wall seconds, the final
losses, and ``pass_at_1`` (mean ``correct_strict``) with the number correct.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import torch

from attnlab.config import validate_config
from attnlab.evaluate.evaluate import evaluate_items
from attnlab.evaluate.fewshot import select_exemplars
from attnlab.io import read_parquet
from attnlab.models.loader import load_model
from attnlab.models.pretrain import pretrain, read_training_info
from attnlab.models.settings import diffusion_adaptation_spec
from attnlab.study.models import diffusion_settings
from attnlab.study.schema import load_yaml
from attnlab.study.selections import fewshot_seed

REPO = Path(__file__).resolve().parents[1]

#: command-line option -> key of models.<model>.init
INIT_OPTIONS = {
    "steps": "steps", "learning_rate": "learning_rate", "batch_size": "batch_size", "warmup_steps": "warmup_steps",
    "anneal_steps": "anneal_steps", "loss_weighting": "loss_weighting", "ar_loss_weight": "ar_loss_weight",
    "mix_documents": "mix_documents",
}
#: command-line option -> key of models.<model>.diffusion
DECODE_OPTIONS = {"answer_length": "answer_length", "block_length": "block_length", "decode_steps": "steps",
                  "remasking": "remasking"}


def study_with_recipe(args: argparse.Namespace) -> dict:
    """The validated study config with the recipe and decoding options over the model entry."""
    config = copy.deepcopy(load_yaml(args.config))
    entry = config["models"][args.model]
    if "init" not in entry:
        raise SystemExit(f"models.{args.model} has no init section: it is not adapted from a llama")
    for option, key in INIT_OPTIONS.items():
        if getattr(args, option) is not None:
            entry["init"][key] = getattr(args, option)
    entry.setdefault("diffusion", {})
    for option, key in DECODE_OPTIONS.items():
        if getattr(args, option) is not None:
            entry["diffusion"][key] = getattr(args, option)
    return validate_config(config, base_dir=REPO)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llama", required=True, help="the trained scratch llama folder to adapt")
    parser.add_argument("--tokenizer", required=True, help="the study's tokenizer folder")
    parser.add_argument("--train", required=True, help="training problems (parquet: question, answer)")
    parser.add_argument("--test", required=True, help="test items (parquet: id, question, answer_number)")
    parser.add_argument("--config", default=str(REPO / "config.yaml"))
    parser.add_argument("--model", default="mdlm", help="the config's mdlm entry whose recipe is varied")
    parser.add_argument("--seed", type=int, default=None, help="training seed (default: the study seed)")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--warmup-steps", type=int)
    parser.add_argument("--anneal-steps", type=int)
    parser.add_argument("--loss-weighting", choices=["llada", "diffullama", "unweighted"])
    parser.add_argument("--ar-loss-weight", type=float)
    parser.add_argument("--mix-documents", type=float)
    parser.add_argument("--items", type=int, default=200, help="the first N test items")
    parser.add_argument("--answer-length", type=int)
    parser.add_argument("--block-length", type=int)
    parser.add_argument("--decode-steps", type=int, help="total denoising steps (answer length = one token a step)")
    parser.add_argument("--remasking", choices=["low_confidence", "random"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep", default=None, help="keep the adapted model in this folder (default: a temporary one)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    study = study_with_recipe(args)
    entry = study["models"][args.model]
    train_spec = diffusion_adaptation_spec(study, args.model)
    architecture_spec = {k: v for k, v in entry.items() if k != "diffusion"}
    seed = study["seed"] if args.seed is None else args.seed
    train = read_parquet(args.train)
    test = read_parquet(args.test).iloc[: args.items]

    with tempfile.TemporaryDirectory() as scratch:
        out = Path(args.keep) if args.keep else Path(scratch) / "mdlm"
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        curve = pretrain(architecture_spec, train_spec, args.tokenizer, train, seed, out, args.threads,
                         progress=False, init_from=args.llama)
        train_cpu, train_wall = time.process_time() - start_cpu, time.perf_counter() - start_wall

        model, tokenizer = load_model(out, device="cpu")
        eval_spec = {**study["evaluation"], "fewshot_seed": fewshot_seed(study),
                     "diffusion": diffusion_settings(study, entry)}
        exemplars = select_exemplars(train, eval_spec["num_fewshot"], eval_spec["fewshot_seed"], source=args.train)
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        table = evaluate_items(model, tokenizer, test, eval_spec, exemplars, model_name=args.model, base="bench",
                               variant="clean")
        eval_cpu, eval_wall = time.process_time() - start_cpu, time.perf_counter() - start_wall
        info = read_training_info(out)

    recipe = {key: train_spec[key] for key in ("steps", "learning_rate", "batch_size", "warmup_steps", "loss_on",
                                                "answer_window", "anneal_steps", "loss_weighting", "ar_loss_weight",
                                                "mix_documents")}
    validation = curve[curve.split == "validation"].loss
    print(json.dumps({
        "recipe": recipe,
        "decoding": {k: eval_spec["diffusion"][k] for k in ("answer_length", "block_length", "steps", "remasking")},
        "seed": seed,
        "threads": args.threads,
        "train_cpu_s": round(train_cpu, 1),
        "train_wall_s": round(train_wall, 1),
        "eval_cpu_s": round(eval_cpu, 1),
        "eval_wall_s": round(eval_wall, 1),
        "final_train_loss": round(info["final_train_loss"], 4),
        "validation_loss": [round(float(validation.iloc[0]), 4), round(float(validation.iloc[-1]), 4)],
        "items": len(table),
        "correct": int(table.correct_strict.sum()),
        "pass_at_1": round(float(table.correct_strict.mean()), 4),
    }))


if __name__ == "__main__":
    main()

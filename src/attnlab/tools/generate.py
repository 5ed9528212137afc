"""``attnlab generate``: ask one model questions interactively — its greedy answer, on clean or noisy text.

    attnlab generate --model diffllama "Tom has 3 boxes of 12 pens. How many pens does he have?"
    attnlab generate --model llama+sft-noisy --file questions.txt        # one question per line
    echo "..." | attnlab generate --model results/models/llama            # stdin; a folder or hub id works too
    attnlab generate --model diffllama --noise inf --attention "..."     # noisy version + attention shares

A model *name* is looked up in the study config (``--config``, default ``./config.yaml``):
scratch models, training-seed replicates and fine-tuned variants (``model+sft-recipe``)
resolve to ``results/models/{name}``; hub entries to their id, revision, dtype and
``trust_remote_code``. Anything else is passed to :func:`attnlab.models.loader.load_model`
as a folder or hub id.

Each question is formatted exactly as evaluation does (:func:`attnlab.prompts.build_prompt`,
zero-shot) and decoded greedily with the config's ``evaluation.max_new_tokens`` and
``stop_sequences`` (:func:`attnlab.evaluate.generation.generate_greedy`; masked diffusion
models by iterative unmasking with the config's settings). The answer is extracted as the
evaluation does: strict (``#### N``) and flexible (last number) —
:mod:`attnlab.evaluate.extraction`.

``--noise TYPE`` inserts one sentence of a registered noise type (``inf``, ``rcs``, ``sd`` or a
plugin's) with the data stage's own :func:`attnlab.data.noise.apply_noise` and answers both
the clean and the noisy question. A typed question has no worked solution, so its *key
quantities* (what ``rcs`` restates and ``--attention`` calls KMI) are all numbers in it
(:func:`attnlab.data.text.find_numbers`) — give ``--solution`` (GSM8K format, ``#### N``) to
use only the numbers the solution uses, as the data stage does for GSM8K.

``--attention`` prints, per layer, how the attention of the last prompt token (the query that
produces the first answer token) splits over the prompt's token classes: key quantities
(KMI), inserted noise (NI), other content (OC) and the first token (sink) —
:func:`attnlab.attention.masses.measure_class_masses`, averaged over heads, as shares
``mass_c / Σ_c mass_c`` (DiffLlama: of the differential map A_i − λ·A_{i+H/2}).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["ModelTarget", "PromptResult", "question_frame", "resolve_model", "run_generate", "register"]

DEFAULT_MAX_NEW_TOKENS = 256
DEFAULT_STOP_SEQUENCES = ["Question:", "\n\n"]


@dataclass(frozen=True)
class ModelTarget:
    """Where and how to load a model: what :func:`attnlab.models.loader.load_model` gets."""

    label: str
    location: str
    revision: str | None = None
    dtype: str = "auto"
    trust_remote_code: bool = False
    spec: Mapping[str, Any] | None = None


@dataclass
class PromptResult:
    """One question's answer (and, with ``--noise``, the noisy question's)."""

    question: str
    prompt: str
    generation: str
    prediction: str | None
    prediction_flexible: str | None
    noise_type: str = "clean"
    noise_spans: list[dict[str, int]] = field(default_factory=list)
    key_spans: list[dict[str, int]] = field(default_factory=list)
    attention: list[dict[str, float]] | None = None


def resolve_model(
    name_or_path: str, config: Mapping[str, Any] | None, results: str | Path = "results", base_dir: str | Path = "."
) -> ModelTarget:
    """A config model name (incl. replicates and SFT variants) → its folder or hub id; anything else as given."""
    if config is not None:
        from attnlab.study.models import model_reference, replicate_models
        from attnlab.study.selections import model_variants

        if name_or_path in model_variants(config, [*config["models"], *replicate_models(config)]):
            reference = model_reference(config, name_or_path)
            entry = reference.entry
            location = str(Path(reference.location(str(results))))
            if not reference.trained_here:
                from attnlab.tools.hfcache import is_local_path

                if is_local_path(location) and not Path(location).is_absolute():
                    location = str(Path(base_dir) / location)
            return ModelTarget(name_or_path, location, entry.get("revision") if reference.source == "hub" else None,
                               entry.get("dtype", "auto"), bool(entry.get("trust_remote_code", False)), entry)
    return ModelTarget(name_or_path, name_or_path)


def question_frame(question: str, solution: str | None = None):
    """A one-row base-dataset frame for a typed question (what :func:`attnlab.data.noise.apply_noise` takes).

    Key spans: the numbers of ``question`` that ``solution`` uses (:func:`attnlab.data.gsm8k.key_spans`), or,
    without a solution, every number in the question.
    """
    import pandas as pd

    from attnlab.data.gsm8k import classify_topic, key_spans, parse_final_answer
    from attnlab.data.schema import BASE_COLUMNS
    from attnlab.data.text import find_numbers

    question = question.strip()
    if not question:
        raise ValueError("empty question")
    if solution is not None:
        spans = key_spans(question, solution)
        answer, number = solution, parse_final_answer(solution)
    else:
        spans = [{"start": m.start, "end": m.end} for m in find_numbers(question)]
        answer, number = "", 0.0
    row = {
        "id": "prompt-0", "split": "test", "family": "prompt", "topic": classify_topic(question),
        "question": question, "answer": answer, "answer_number": number, "key_spans": spans,
    }
    return pd.DataFrame([row], columns=list(BASE_COLUMNS))


def noisy_item(question: str, noise_type: str, seed: int, solution: str | None = None) -> dict[str, Any]:
    """The data-stage row of ``question`` with ``noise_type`` applied (``clean`` = unchanged), as a dict."""
    from attnlab.data.noise import apply_noise

    table = apply_noise(question_frame(question, solution), noise_type, seed)
    return table.iloc[0].to_dict()


def attention_shares(model, tokenizer, question: str, key_spans, noise_spans) -> list[dict[str, float]]:
    """Per layer, the share of the last prompt token's attention on KMI / NI / OC / sink tokens (module docstring)."""
    import numpy as np
    import torch

    from attnlab.attention import KMI, MAP_DIFFERENTIAL, MAP_STANDARD, NI, OC, SINK, TOKEN_CLASSES
    from attnlab.attention.capture import check_supported
    from attnlab.attention.masses import measure_class_masses
    from attnlab.attention.tokens import prompt_token_classes

    check_supported(model)
    _, ids, classes = prompt_token_classes(tokenizer, question, key_spans, noise_spans, where="attnlab generate")
    n_classes = max(KMI, NI, OC, SINK) + 1
    result = measure_class_masses(model, torch.tensor([ids]), classes, query_positions=[-1], n_classes=n_classes)
    kind = MAP_DIFFERENTIAL if MAP_DIFFERENTIAL in result.masses else MAP_STANDARD
    masses = result.masses[kind][:, :, 0, :].mean(axis=1)  # [layers, classes], mean over heads
    rows = []
    for layer, layer_mass in enumerate(masses):
        total = float(np.sum(layer_mass))
        row = {"layer": layer}
        for cls in (KMI, NI, OC, SINK):
            row[TOKEN_CLASSES[cls]] = float(layer_mass[cls] / total) if total else float("nan")
        row["n_kmi_tokens"] = int(sum(c == KMI for c in classes))
        row["n_ni_tokens"] = int(sum(c == NI for c in classes))
        rows.append(row)
    return rows


def _generate_texts(model, tokenizer, prompts: list[str], config: Mapping[str, Any] | None,
                    target: ModelTarget, max_new_tokens: int | None):
    evaluation = (config or {}).get("evaluation", {})
    stops = list(evaluation.get("stop_sequences", DEFAULT_STOP_SEQUENCES))
    new_tokens = max_new_tokens or int(evaluation.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS))
    from attnlab.models.mdlm import is_masked_diffusion_model

    if is_masked_diffusion_model(model):
        from attnlab.evaluate.diffusion import generate_diffusion

        settings = {"steps": 128, "block_length": 32, "remasking": "low_confidence", "seed": 0}
        if config is not None and target.spec is not None and target.spec.get("source") != "sft":
            from attnlab.study.models import diffusion_settings

            settings = diffusion_settings(config, target.spec) or settings
        settings.setdefault("answer_length", new_tokens)
        return generate_diffusion(model, tokenizer, prompts, batch_size=len(prompts), stop_sequences=stops, **settings)
    from attnlab.evaluate.generation import generate_greedy

    return generate_greedy(model, tokenizer, prompts, batch_size=len(prompts), max_new_tokens=new_tokens,
                           stop_sequences=stops)


def run_generate(
    model,
    tokenizer,
    questions: Sequence[str],
    *,
    config: Mapping[str, Any] | None = None,
    target: ModelTarget | None = None,
    noise: str | None = None,
    seed: int = 0,
    solution: str | None = None,
    attention: bool = False,
    max_new_tokens: int | None = None,
) -> list[list[PromptResult]]:
    """Answer every question (clean, and with ``noise`` also noisy); one list of results per question."""
    from attnlab.evaluate.extraction import extract_flexible, extract_strict
    from attnlab.prompts import build_prompt

    target = target or ModelTarget("model", "")
    variants = ["clean"] + ([noise] if noise and noise != "clean" else [])
    items = [[noisy_item(q, v, seed, solution) for v in variants] for q in questions]
    flat = [item for group in items for item in group]
    prompts = [build_prompt(item["question"]) for item in flat]
    generations = _generate_texts(model, tokenizer, prompts, config, target, max_new_tokens)
    results, index = [], 0
    for group in items:
        out = []
        for item in group:
            gen = generations[index]
            result = PromptResult(
                question=item["question"], prompt=prompts[index], generation=gen.text,
                prediction=extract_strict(gen.text), prediction_flexible=extract_flexible(gen.text),
                noise_type=item["noise_type"], noise_spans=list(item["noise_spans"]), key_spans=list(item["key_spans"]),
            )
            if attention:
                result.attention = attention_shares(model, tokenizer, item["question"], item["key_spans"], item["noise_spans"])
            out.append(result)
            index += 1
        results.append(out)
    return results


def _marked(question: str, spans: Sequence[Mapping[str, int]]) -> str:
    """The question with the inserted noise between ⟦ and ⟧."""
    out, cursor = [], 0
    for span in sorted(spans, key=lambda s: s["start"]):
        out += [question[cursor : span["start"]], "⟦", question[span["start"] : span["end"]], "⟧"]
        cursor = span["end"]
    return "".join(out + [question[cursor:]])


def format_results(results: list[list[PromptResult]]) -> str:
    """Human-readable report of :func:`run_generate`'s results."""
    lines = []
    for number, group in enumerate(results, start=1):
        for result in group:
            lines.append(f"=== question {number} ({result.noise_type}) ===")
            lines.append(_marked(result.question, result.noise_spans))
            lines.append("--- continuation ---")
            lines.append(result.generation.rstrip())
            lines.append(f"--- answer: {result.prediction} (strict, '#### N'); {result.prediction_flexible} (flexible, last number)")
            if result.attention is not None:
                lines.append("--- attention of the last prompt token, share per class (mean over heads) ---")
                lines.append(f"{'layer':>5}  {'KMI':>6}  {'NI':>6}  {'OC':>6}  {'sink':>6}")
                for row in result.attention:
                    lines.append(f"{row['layer']:>5}  {row['kmi']:6.3f}  {row['ni']:6.3f}  {row['oc']:6.3f}  {row['sink']:6.3f}")
                first = result.attention[0]
                lines.append(f"({first['n_kmi_tokens']} key-quantity tokens, {first['n_ni_tokens']} noise tokens)")
            lines.append("")
    return "\n".join(lines)


def _read_questions(args: argparse.Namespace) -> list[str]:
    questions = list(args.question)
    if args.file is not None:
        path = Path(args.file)
        if not path.is_file():
            raise ValueError(f"--file {path}: no such file")
        questions += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not questions:
        if sys.stdin is None or sys.stdin.isatty():
            print("type a question per line, end with Ctrl-D:", file=sys.stderr)
        questions = [line.strip() for line in (sys.stdin or []) if line.strip()]
    if not questions:
        raise ValueError("no question given (argument, --file or stdin)")
    return questions


def _handle(args: argparse.Namespace) -> int:
    import torch

    from attnlab.config import validate_config
    from attnlab.study.schema import ConfigError, load_yaml
    from attnlab.models.loader import ModelNotAvailableError, load_model

    config = None
    configfile = args.config if args.config is not None else ("config.yaml" if Path("config.yaml").is_file() else None)
    try:
        if configfile is not None:
            config = validate_config(load_yaml(configfile), base_dir=args.base_dir)
        questions = _read_questions(args)
        if args.noise is not None:
            from attnlab.data.registry import available_noise_types

            if args.noise not in available_noise_types():
                raise ValueError(f"--noise {args.noise}: unknown noise type; known: {', '.join(available_noise_types())}")
    except (ConfigError, OSError, ValueError) as err:
        print(f"attnlab generate: error: {err}", file=sys.stderr)
        return 2
    target = resolve_model(args.model, config, results=Path(args.base_dir) / args.results, base_dir=args.base_dir)
    if target.location != args.model:
        print(f"model {args.model} ({configfile}) -> {target.location}", file=sys.stderr)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = args.device or (config["device"] if config else "auto")
    try:
        model, tokenizer = load_model(target.location, device=device, dtype=args.dtype or target.dtype,
                                      trust_remote_code=target.trust_remote_code, revision=args.revision or target.revision)
    except (FileNotFoundError, ModelNotAvailableError, ValueError) as err:
        print(f"attnlab generate: error: --model {args.model}: {err}", file=sys.stderr)
        return 1
    try:
        results = run_generate(model, tokenizer, questions, config=config, target=target, noise=args.noise,
                               seed=args.seed if args.seed is not None else (config["seed"] if config else 0),
                               solution=args.solution, attention=args.attention, max_new_tokens=args.max_new_tokens)
    except ValueError as err:  # unsupported attention capture, bad solution text, noise that cannot apply
        print(f"attnlab generate: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([[asdict(r) for r in group] for group in results], indent=2))
    else:
        print(format_results(results))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``attnlab generate``."""
    parser = subparsers.add_parser(
        "generate",
        help="greedy answers of one model to typed questions (clean / noisy, with attention shares)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("question", nargs="*", help="question(s); none: read --file or stdin (one per line)")
    parser.add_argument("--model", required=True, help="a model name of the config, a save_pretrained folder or a hub id")
    parser.add_argument("--config", default=None, help="study config to resolve names (default ./config.yaml if present)")
    parser.add_argument("--file", default=None, help="read questions from this file, one per line")
    parser.add_argument("--noise", default=None, metavar="TYPE", help="also answer a noisy version (inf, rcs, sd, or a plugin's)")
    parser.add_argument("--seed", type=int, default=None, help="noise seed (default the config's seed, else 0)")
    parser.add_argument("--solution", default=None, help="worked solution ending '#### N': key quantities = the numbers it uses")
    parser.add_argument("--attention", action="store_true", help="per-layer attention shares on key quantities / noise")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default the config's evaluation.max_new_tokens (256)")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda (default the config's device, else auto)")
    parser.add_argument("--dtype", default=None, help="default the model entry's dtype, else auto")
    parser.add_argument("--revision", default=None, help="hub revision (default the model entry's)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--base-dir", default=".", help="the workflow's working directory")
    parser.add_argument("--results", default="results", help="results folder relative to --base-dir")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.set_defaults(func=_handle)

"""Settings of the model-training stage: checks of the scratch models' entries and the adaptation of a masked
diffusion LM from a trained Llama (pure; no torch).

The training rules (``workflow/rules/models.smk``) read :func:`diffusion_init_source` and
:func:`diffusion_adaptation_spec`; :func:`config_errors` runs inside :func:`attnlab.config.validate_config`.
"""

from __future__ import annotations

from typing import Any, Mapping

from attnlab.models.architectures import architecture_names, head_norm_spec
from attnlab.study.models import diffusion_settings, model_entry, replicate_models, scratch_models, uses_diffusion_generation
from attnlab.study.selections import has_train_split, study_models

#: no config section switches this stage: it runs whenever the study has something for it
SECTION: str | None = None


#: size fields an mdlm initialised from a llama must share with it
SIZE_KEYS_OF_INIT: tuple[str, ...] = (
    "hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size", "max_position_embeddings",
)


def _mdlm_errors(config: Mapping[str, Any]) -> list[str]:
    """``diffusion`` only on models answered by unmasking; block_length divides answer_length; steps a multiple of
    the number of blocks and at most answer_length."""
    errors: list[str] = []
    for name, spec in config["models"].items():
        where = f"models.{name}.diffusion"
        if not uses_diffusion_generation(spec):
            if "diffusion" in spec:
                errors.append(
                    f"config key '{where}': only for architecture mdlm or hub models with generation: diffusion"
                )
            continue
        settings = diffusion_settings(config, spec)
        answer, block, steps = settings["answer_length"], settings["block_length"], settings["steps"]
        if answer % block:
            errors.append(f"config key '{where}.block_length': {block} does not divide answer_length {answer}")
        elif steps % (answer // block):
            errors.append(f"config key '{where}.steps': {steps} is not a multiple of the {answer // block} blocks")
        if steps > answer:
            errors.append(f"config key '{where}.steps': {steps} exceeds answer_length {answer} (≤ 1 token a step)")
        block_length = (config.get("pretrain") or {}).get("max_length")
        if spec.get("source") == "scratch" and block_length is not None and answer >= block_length:
            errors.append(
                f"config key '{where}.answer_length': {answer} answer positions leave no room for a prompt inside the "
                f"{block_length} positions the model is trained on (pretrain.max_length); every prompt + "
                "answer_length must fit them (checked per item before generation)"
            )
        init = spec.get("init")
        if init is not None:
            source = config["models"].get(init["from"])
            if source is None or source.get("source") != "scratch" or source.get("architecture") != "llama":
                errors.append(f"config key 'models.{name}.init.from': {init['from']!r} is not a scratch llama model of this study")
            else:
                different = [k for k in SIZE_KEYS_OF_INIT if source.get(k) != spec.get(k)]
                if different:
                    errors.append(
                        f"config key 'models.{name}': {', '.join(different)} differ from models.{init['from']} "
                        "(an mdlm initialised from a llama has its size fields)"
                    )
            if init["anneal_steps"] > init["steps"]:
                errors.append(
                    f"config key 'models.{name}.init.anneal_steps': {init['anneal_steps']} exceeds init.steps "
                    f"{init['steps']} (the mask must be fully open before adaptation ends; evaluation is bidirectional)"
                )
            if init["mix_documents"] > 0 and init["loss_on"] != "answer":
                errors.append(
                    f"config key 'models.{name}.init.mix_documents': mixes whole documents into answer-window batches; "
                    f"it needs init.loss_on: answer, not {init['loss_on']!r}"
                )
    for name, spec in config["models"].items():
        if "init" in spec and not (spec.get("source") == "scratch" and spec.get("architecture") == "mdlm"):
            errors.append(f"config key 'models.{name}.init': only for scratch mdlm models")
    return errors


def diffusion_init_source(config: Mapping[str, Any], model: str) -> str | None:
    """The scratch llama an mdlm entry is initialised from (``models.<model>.init.from``), else None."""
    init = config["models"].get(model, {}).get("init")
    return None if init is None else str(init["from"])


def scratch_architecture_spec(config: Mapping[str, Any], model: str) -> dict[str, Any]:
    """A scratch model's entry (a replicate: its base's) without its generation and training settings: changing the
    generation settings does not retrain it, and the training settings travel in :func:`scratch_train_spec`."""
    return {k: v for k, v in model_entry(config, model).items() if k not in ("diffusion", "pretrain")}


def scratch_train_spec(config: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The train spec of scratch model ``model``: the shared ``pretrain`` settings with the entry's own
    ``models.<model>.pretrain`` values (steps, learning rate, warm-up) on top; an mdlm with ``init`` trains with
    :func:`diffusion_adaptation_spec` instead."""
    if diffusion_init_source(config, model) is not None:
        return diffusion_adaptation_spec(config, model)
    train = {k: v for k, v in config["pretrain"].items() if k != "replicates"}
    own = config["models"][model].get("pretrain") or {}
    train.update(own)
    if "steps" in own:
        train["eval_every"] = min(train["eval_every"], own["steps"])
    return train


def diffusion_init_model(config: Mapping[str, Any], model: str) -> str | None:
    """The trained model a scratch model or replicate is adapted from, else None: ``models.<base>.init.from``, and
    for a training-seed replicate ``<base>-seed<N>`` the parent's replicate of the same seed (``mdlm-seed1`` from
    ``llama-seed1``; the check requires the parent among ``pretrain.replicates.models``)."""
    base, seed = replicate_models(config).get(model, (model, None))
    source = diffusion_init_source(config, base)
    if source is None or seed is None:
        return source
    return f"{source}-seed{seed}"


def diffusion_adaptation_spec(config: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The train spec of an mdlm initialised from a llama: the shared pretrain settings with the ``init`` entry's
    steps, learning rate, batch size, warm-up, loss and adaptation options (``anneal_steps``, ``loss_weighting``,
    ``ar_loss_weight``, ``mix_documents``; see :class:`attnlab.models.mdlm.MaskedDiffusionObjective`), on the math
    problems only (no extra corpora), unpacked,
    each problem's answer padded with EOS to the model's ``diffusion.answer_length`` (the unmasking window)."""
    spec = config["models"][model]
    init = spec["init"]
    settings = diffusion_settings(config, spec)
    train = {k: v for k, v in config["pretrain"].items() if k != "replicates"}
    train.update(
        steps=init["steps"], learning_rate=init["learning_rate"], batch_size=init["batch_size"],
        warmup_steps=init["warmup_steps"], loss_on=init["loss_on"], packing=False, extra_corpora=[],
        eval_every=min(train["eval_every"], init["steps"]),
        anneal_steps=init["anneal_steps"], loss_weighting=init["loss_weighting"],
        ar_loss_weight=init["ar_loss_weight"], mix_documents=init["mix_documents"],
    )
    if init["loss_on"] == "answer":
        train["answer_window"] = settings["answer_length"]
    return train



def _scratch_entry_errors(config: Mapping[str, Any]) -> list[str]:
    """The sections a scratch model needs, its training-seed replicates, and head counts that fit its width."""
    errors: list[str] = []
    for section in ("tokenizer", "pretrain") if scratch_models(config) else ():
        if section not in config:
            errors.append(f"config key '{section}': required because the study has scratch models")
            continue
        corpus = config[section]["corpus"]
        if corpus not in config["datasets"]:
            errors.append(f"config key '{section}.corpus': {corpus!r} is not a configured dataset")
        elif not has_train_split(config["datasets"][corpus]):
            errors.append(f"config key '{section}.corpus': dataset {corpus!r} has no train split")
    if "pretrain" in config:
        seeds = config["pretrain"]["replicates"]["seeds"]
        for model in config["pretrain"]["replicates"]["models"]:
            if config["models"].get(model, {}).get("source") != "scratch":
                errors.append(f"config key 'pretrain.replicates.models': {model!r} is not a configured scratch model")
        for model in config["pretrain"]["replicates"]["models"]:
            parent = diffusion_init_source(config, model) if model in config["models"] else None
            if parent is not None and parent not in config["pretrain"]["replicates"]["models"]:
                errors.append(
                    f"config key 'pretrain.replicates.models': {model!r} is adapted from {parent!r} "
                    f"(models.{model}.init.from), so each replicate {model}-seed<N> adapts from {parent}-seed<N>; "
                    f"list {parent!r} there too (or leave {model!r} out)"
                )
        if config["seed"] in seeds:
            errors.append(f"config key 'pretrain.replicates.seeds': {config['seed']} is the study seed (the model itself)")
        for name in replicate_models(config):
            if name in config["models"]:
                errors.append(f"config key 'pretrain.replicates': replicate name {name!r} clashes with a configured model")
    for name, spec in config["models"].items():
        if "head_norm" in spec and spec.get("architecture") != "diffllama":
            errors.append(f"config key 'models.{name}.head_norm': only for architecture diffllama")
        elif "head_norm" in spec:
            try:
                head_norm_spec(spec["head_norm"])
            except ValueError as error:
                errors.append(f"config key 'models.{name}.head_norm': {error}")
        if "pretrain" in spec and "init" in spec:
            errors.append(
                f"config key 'models.{name}.pretrain': an mdlm adapted from a llama trains with its init settings"
            )
        if spec["source"] == "scratch" and spec["architecture"] in architecture_names(attention=True):
            if "num_heads" not in spec:
                errors.append(f"config key 'models.{name}.num_heads': required for architecture {spec['architecture']}")
            elif spec["hidden_size"] % spec["num_heads"]:
                errors.append(f"config key 'models.{name}.num_heads': must divide hidden_size {spec['hidden_size']}")
            elif spec["architecture"] == "diffllama" and spec["num_heads"] % 2:
                errors.append(f"config key 'models.{name}.num_heads': must be even for diffllama (head pairs)")
    return errors


def config_errors(config: Mapping[str, Any]) -> list[str]:
    """What the schema cannot check about the models the study trains (each line names its key)."""
    return _scratch_entry_errors(config) + _mdlm_errors(config)


def targets(config: Mapping[str, Any], results: str) -> list[str]:
    """The loss curve of every selected scratch model and evaluated replicate."""

    trained = set(scratch_models(config)) | set(replicate_models(config))
    return [f"{results}/training/{m}/loss.png" for m in study_models(config) if m in trained]

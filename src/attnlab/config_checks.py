"""Cross-field checks of a study config: what the schema passes, the jobs can run.

Each check rejects, naming the key, a config that the schema accepts but that would crash (or silently
misbehave in) a job later; :func:`cross_field_errors` runs them all after the schema and its defaults.

* hub names follow the hub's grammar (:mod:`attnlab.hubnames`);
* a scratch model has the size keys its architecture needs; ``num_kv_heads`` divides ``num_heads``
  (grouped-query attention shares each key/value head among ``num_heads / num_kv_heads`` query heads;
  even for DiffLlama, whose heads come in pairs); a Mamba-2 ``head_dim`` P divides the inner width
  ``expand × hidden_size`` (the heads tile it: ``expand·d / P`` heads);
* the token length a job trains on fits the model: ``pretrain.max_length`` and each SFT recipe's
  ``max_length`` ≤ ``max_position_embeddings`` of every model with position limits it trains
  (llama, diffllama, gpt2, mdlm; the SSMs have no position table);
* every seed (a key ``seed``, ``*_seed``, ``seeds`` or ``*_seeds``, anywhere) is in 0 … 2**32 − 1, the
  range every generator the jobs seed accepts (numpy, ``random``, ``torch.manual_seed`` with offsets);
* a noise type's name does not collide with a file the data stage writes beside the noisy variants
  (``results/data/{base}/train.parquet``) or with the attention stage's ``{variant}.tokens.parquet``.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from attnlab.models.architectures import ARCHITECTURES

#: largest seed accepted anywhere in a config (numpy's legacy and many other generators take 32 bits)
MAX_SEED = 2**32 - 1
#: architectures whose sequence length is bounded by ``max_position_embeddings``
POSITIONAL_ARCHITECTURES = tuple(
    a.name for a in ARCHITECTURES.values() if "max_position_embeddings" in a.size_keys
)
#: size keys a scratch state-space model needs (the attention models' ``num_heads`` is checked in config.py)
SSM_REQUIRED = {
    a.name: tuple(k for k in a.size_keys if k not in ("hidden_size", "num_layers")) for a in ARCHITECTURES.values() if a.ssm
}
#: names a noise type may not have: files the workflow writes beside ``results/data/{base}/{noise}.parquet``
RESERVED_VARIANT_NAMES = frozenset({"train"})
RESERVED_VARIANT_SUFFIXES = (".tokens",)


def _seeds(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every seed value in a config tree."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            key = str(key)
            if key in ("seed", "seeds") or key.endswith(("_seed", "_seeds")):
                values = value if isinstance(value, list) else [value]
                for i, item in enumerate(values):
                    where = (*path, key, str(i)) if isinstance(value, list) else (*path, key)
                    yield ".".join(where), item
            else:
                yield from _seeds(value, (*path, key))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _seeds(item, (*path, str(i)))


def seed_errors(config: Mapping[str, Any]) -> list[str]:
    errors = []
    for key, value in _seeds(config):
        if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value <= MAX_SEED:
            errors.append(f"config key '{key}': {value} is outside the seed range 0 … {MAX_SEED} (2**32 − 1)")
    return errors


def model_size_errors(config: Mapping[str, Any]) -> list[str]:
    errors = []
    for name, spec in config["models"].items():
        if spec.get("source") != "scratch":
            continue
        where, architecture = f"models.{name}", spec["architecture"]
        for key in SSM_REQUIRED.get(architecture, ()):
            if key not in spec:
                errors.append(f"config key '{where}.{key}': required for architecture {architecture}")
        heads, kv_heads = spec.get("num_heads"), spec.get("num_kv_heads")
        if "num_kv_heads" in spec and architecture not in POSITIONAL_ARCHITECTURES:
            errors.append(f"config key '{where}.num_kv_heads': only for attention models, not {architecture}")
        elif heads and kv_heads:
            if heads % kv_heads:
                errors.append(f"config key '{where}.num_kv_heads': {kv_heads} does not divide num_heads {heads}")
            elif ARCHITECTURES[architecture].differential and kv_heads % 2:
                errors.append(f"config key '{where}.num_kv_heads': must be even for diffllama (head pairs), got {kv_heads}")
        if architecture == "mamba2" and "head_dim" in spec and "expand" in spec:
            inner = spec["expand"] * spec["hidden_size"]
            if inner % spec["head_dim"]:
                errors.append(
                    f"config key '{where}.head_dim': {spec['head_dim']} does not divide the inner width "
                    f"expand × hidden_size = {spec['expand']} × {spec['hidden_size']} = {inner}"
                )
    return errors


def _position_limit(config: Mapping[str, Any], model: str) -> tuple[str, int] | None:
    """(configured model, max_position_embeddings) of a scratch model (or replicate) with a position limit."""
    from attnlab.study.models import replicate_models

    base = replicate_models(config).get(model, (model, None))[0]
    spec = config["models"].get(base)
    if spec is None or spec.get("source") != "scratch" or spec["architecture"] not in POSITIONAL_ARCHITECTURES:
        return None
    return base, int(spec.get("max_position_embeddings", 512))


def length_errors(config: Mapping[str, Any]) -> list[str]:
    from attnlab.study.models import scratch_models, sft_enabled

    errors = []
    pretrain = config.get("pretrain")
    if pretrain:
        for model in scratch_models(config):
            limit = _position_limit(config, model)
            if limit and pretrain["max_length"] > limit[1]:
                errors.append(
                    f"config key 'pretrain.max_length': {pretrain['max_length']} tokens exceed "
                    f"models.{limit[0]}.max_position_embeddings ({limit[1]})"
                )
    if sft_enabled(config):
        sft = config.get("sft", {})
        for recipe_name, recipe in sft.get("recipes", {}).items():
            for model in sft.get("models", []):
                limit = _position_limit(config, model)
                if limit and recipe.get("max_length", 0) > limit[1]:
                    errors.append(
                        f"config key 'sft.recipes.{recipe_name}.max_length': {recipe['max_length']} tokens exceed "
                        f"models.{limit[0]}.max_position_embeddings ({limit[1]}) of sft model {model!r}"
                    )
    return errors


def variant_name_errors(config: Mapping[str, Any]) -> list[str]:
    errors = []
    for i, noise in enumerate(config["noise"]["types"]):
        if noise in RESERVED_VARIANT_NAMES:
            clash = f"results/data/<dataset>/{noise}.parquet is the dataset's {noise} split"
        elif noise.endswith(RESERVED_VARIANT_SUFFIXES):
            clash = f"results/attention/<model>/<dataset>/{noise}.parquet is the token table of variant {noise.rsplit('.', 1)[0]!r}"
        else:
            continue
        errors.append(f"config key 'noise.types.{i}': a noise type cannot be named {noise!r}: {clash} (rename it)")
    return errors


def cross_field_errors(config: Mapping[str, Any]) -> list[str]:
    """Every cross-field problem of a schema-valid config (defaults filled), each naming its key."""
    from attnlab.hubnames import hub_name_errors

    errors: list[str] = []
    for check in (hub_name_errors, model_size_errors, length_errors, seed_errors, variant_name_errors):
        errors += check(config)
    return errors

"""The perturbation experiment on one model: every relation × site × layer × method × mode, plus random controls.

Channels are **selected on one set of probes and measured on another**: per relation, the channel
statistics of every (site, layer) — attribution scores, variances, and the channel means and standard
deviations that the ``mean`` and ``gaussian`` modes use — come from one forward/backward pass over the
*selection* probes (:func:`attnlab.perturbation.selection.channel_statistics`; the same facts in other
phrasings, ``selection_templates``), and the perplexities from the *measurement* probes (``templates``),
so a selection cannot fit the very sentences it is scored on. Both sets are encoded once per relation
(:func:`attnlab.perturbation.metrics.encode_probes`); the baseline perplexities come from an unhooked
forward pass over the measurement probes.
Then, for each (site, layer), ``k = ceil(fraction · channels)`` channels are selected per method and
perturbed in each mode (one forward pass each), and the same is done for ``random_seeds`` random draws
of ``k`` channels (the control, shared by the methods). One output row per
relation × site × layer × method (``attribution``, ``variance`` or ``random``) × seed × mode.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Mapping

import pandas as pd
import pyarrow as pa
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from attnlab.perturbation.metrics import (
    Perplexities,
    ProbeBatch,
    change_metrics,
    encode_probes,
    pooled_perplexities,
    token_nll,
)
from attnlab.perturbation.selection import (
    METHODS,
    MODES,
    ChannelStats,
    channel_statistics,
    perturbation_fn,
    random_channels,
    stable_seed,
    top_channels,
)
from attnlab.perturbation.sites import (
    SITES,
    SiteFn,
    model_type,
    num_layers,
    require_called,
    site_available,
    site_hook,
    site_width,
)
from attnlab.study.schema import schema_defaults

log = logging.getLogger(__name__)

#: defaults of the ``perturbation`` config section's experiment keys (the schema repeats them)
#: the keys of an experiment spec (the perturbation section's keys that reach :func:`run_perturbation`)
SPEC_KEYS: tuple[str, ...] = (
    "sites", "methods", "modes", "layers", "fraction", "sigma", "scale_factor", "random_seeds", "max_facts", "templates",
)
#: their defaults: the config schema's (``perturbation`` section), the one place a default is written
DEFAULT_SPEC: dict[str, Any] = {k: v for k, v in schema_defaults("perturbation").items() if k in SPEC_KEYS}

#: probe copies stacked into one forward pass (bounds memory; results do not depend on it)
MAX_ROWS_PER_PASS = 1024

ROW_SCHEMA = pa.schema(
    [
        ("model", pa.string()),
        ("model_type", pa.string()),
        ("relation", pa.string()),
        ("site", pa.string()),
        ("layer", pa.int64()),
        ("method", pa.string()),
        ("seed", pa.int64()),
        ("mode", pa.string()),
        ("n_channels", pa.int64()),
        ("site_width", pa.int64()),
        ("channels", pa.list_(pa.int64())),
        ("n_probes", pa.int64()),
        ("target_tokens", pa.int64()),
        ("sentence_tokens", pa.int64()),
        ("baseline_target_ppl", pa.float64()),
        ("perturbed_target_ppl", pa.float64()),
        ("target_abs_change", pa.float64()),
        ("target_pct_change", pa.float64()),
        ("target_log_ratio", pa.float64()),
        ("baseline_sentence_ppl", pa.float64()),
        ("perturbed_sentence_ppl", pa.float64()),
        ("sentence_abs_change", pa.float64()),
        ("sentence_pct_change", pa.float64()),
        ("sentence_log_ratio", pa.float64()),
    ]
)


def resolve_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``spec`` over :data:`DEFAULT_SPEC`; unknown keys, sites, methods or modes are ``ValueError``."""
    unknown = sorted(set(spec) - set(DEFAULT_SPEC))
    if unknown:
        raise ValueError(f"unknown perturbation spec keys {unknown}; known: {sorted(DEFAULT_SPEC)}")
    full = {**DEFAULT_SPEC, **spec}
    for key, allowed in (("sites", SITES), ("methods", METHODS), ("modes", MODES)):
        bad = [v for v in full[key] if v not in allowed]
        if bad or not full[key]:
            raise ValueError(f"perturbation spec {key!r}: {bad or 'empty'} (choose from {list(allowed)})")
    if not 0 < full["fraction"] <= 1:
        raise ValueError(f"perturbation spec 'fraction' must be in (0, 1], got {full['fraction']}")
    if full["random_seeds"] < 1:
        raise ValueError("perturbation spec 'random_seeds' must be >= 1")
    return full


def resolve_layers(model: PreTrainedModel, layers: list[int] | None) -> list[int]:
    """``None`` → every layer; otherwise the given layers, checked against the model's depth."""
    depth = num_layers(model)
    if layers is None:
        return list(range(depth))
    bad = [layer for layer in layers if not 0 <= layer < depth]
    if bad:
        raise ValueError(f"layers {bad} out of range: the model has {depth} layers (0..{depth - 1})")
    return list(layers)


def check_disjoint_probes(probes: pd.DataFrame, selection_probes: pd.DataFrame) -> None:
    """``ValueError`` unless every relation of ``probes`` has selection probes and no sentence is in both sets."""
    missing = sorted(set(probes["relation"]) - set(selection_probes["relation"]))
    if missing:
        raise ValueError(f"no selection probes for relation(s) {missing}")
    shared = sorted(set(probes["sentence"]) & set(selection_probes["sentence"]))
    if shared:
        raise ValueError(
            f"{len(shared)} sentence(s) are both selection and measurement probes (e.g. {shared[0]!r}); "
            "select channels on other phrasings than the ones measured"
        )


def _perturbed_replicas(
    model: PreTrainedModel, batch: ProbeBatch, site: str, layer: int, fns: list[SiteFn]
) -> list[Perplexities]:
    """Perplexities under each of ``fns``, in one forward pass over ``len(fns)`` stacked copies of the batch.

    Copy r of the probes (rows ``r·n .. (r+1)·n − 1``) is rewritten by ``fns[r]``; copies never interact
    (every row of a causal LM is computed independently), so this equals one pass per function.
    """
    n, copies = batch.n, len(fns)

    def stacked(x: torch.Tensor) -> torch.Tensor:  # x: [copies·n, seq, channels]
        return torch.cat([fn(part) for fn, part in zip(fns, x.split(n, dim=0))], dim=0)

    big = ProbeBatch(
        batch.input_ids.repeat(copies, 1),
        batch.attention_mask.repeat(copies, 1),
        batch.target_mask.repeat(copies, 1),
        batch.last_prompt.repeat(copies),
    )
    with torch.no_grad(), site_hook(model, site, layer, stacked) as counter:
        nll = token_nll(model, big)  # [copies·n, seq-1]
    require_called(counter, site, layer)
    return [pooled_perplexities(part, batch) for part in nll.split(n, dim=0)]


def run_perturbation(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    probes: pd.DataFrame,
    selection_probes: pd.DataFrame,
    spec: Mapping[str, Any],
    seed: int,
    model_name: str,
) -> pd.DataFrame:
    """Every perturbation row of ``model`` (schema :data:`ROW_SCHEMA`).

    Args:
        model, tokenizer: from :func:`attnlab.models.loader.load_model` (eval mode).
        probes: the measurement probes (:func:`attnlab.perturbation.relations.build_probes` output).
        selection_probes: the probes the channels are selected on, same relations, no sentence of ``probes``.
        spec: the experiment keys (:data:`DEFAULT_SPEC`).
        seed: master seed (random channels and Gaussian noise derive from it).
        model_name: recorded in the ``model`` column.

    Raises:
        ValueError: none of the configured sites exists in this architecture, a bad layer, a relation
            without selection probes, a sentence in both probe sets, or a non-finite perplexity.
    """
    spec = resolve_spec(spec)
    check_disjoint_probes(probes, selection_probes)
    kind = model_type(model)
    sites = [s for s in spec["sites"] if site_available(model, s)]
    if not sites:
        raise ValueError(f"none of the sites {spec['sites']} exists in a {kind} model")
    layers = resolve_layers(model, spec["layers"])
    site_layers = [(s, layer) for s in sites for layer in layers]
    device = next(model.parameters()).device
    rows: list[dict[str, Any]] = []
    for relation, rel_probes in probes.groupby("relation", sort=False):
        batch = encode_probes(tokenizer, rel_probes).to(device)
        with torch.no_grad():
            base = pooled_perplexities(token_nll(model, batch), batch)
        if not (math.isfinite(base.target_ppl) and math.isfinite(base.sentence_ppl)):
            raise ValueError(f"model {model_name}: non-finite baseline perplexity on relation {relation!r}")
        selection = encode_probes(tokenizer, selection_probes[selection_probes["relation"] == relation]).to(device)
        stats: dict[tuple[str, int], ChannelStats] = channel_statistics(model, selection, site_layers)
        for site, layer in site_layers:
            width = site_width(model, site)
            k = max(1, math.ceil(spec["fraction"] * width))
            draws = [(m, -1, top_channels(stats[site, layer].scores(m), k)) for m in spec["methods"]]
            draws += [
                ("random", r, random_channels(width, k, stable_seed(seed, relation, site, layer, r)))
                for r in range(spec["random_seeds"])
            ]
            variants = [(method, draw_seed, channels, mode) for method, draw_seed, channels in draws for mode in spec["modes"]]
            fns = [
                perturbation_fn(
                    mode,
                    channels,
                    stats[site, layer],
                    sigma=spec["sigma"],
                    factor=spec["scale_factor"],
                    noise_seed=stable_seed(seed, relation, site, layer, method, draw_seed, "noise"),
                )
                for method, draw_seed, channels, mode in variants
            ]
            per_pass = max(1, MAX_ROWS_PER_PASS // batch.n)
            perturbed = [
                ppl
                for start in range(0, len(fns), per_pass)
                for ppl in _perturbed_replicas(model, batch, site, layer, fns[start : start + per_pass])
            ]
            for (method, draw_seed, channels, mode), pert in zip(variants, perturbed):
                row = {
                    "model": model_name,
                    "model_type": kind,
                    "relation": relation,
                    "site": site,
                    "layer": layer,
                    "method": method,
                    "seed": draw_seed,
                    "mode": mode,
                    "n_channels": k,
                    "site_width": width,
                    "channels": [int(c) for c in channels],
                    "n_probes": batch.n,
                    "target_tokens": base.target_tokens,
                    "sentence_tokens": base.sentence_tokens,
                }
                for part in ("target", "sentence"):
                    b = getattr(base, f"{part}_ppl")
                    p = getattr(pert, f"{part}_ppl")
                    if not math.isfinite(p):
                        raise ValueError(
                            f"model {model_name}: non-finite perturbed {part} perplexity "
                            f"({relation}, {site}, layer {layer}, {method}, {mode})"
                        )
                    row[f"baseline_{part}_ppl"] = b
                    row[f"perturbed_{part}_ppl"] = p
                    row.update({f"{part}_{key}": value for key, value in change_metrics(b, p).items()})
                rows.append(row)
        log.info("%s: relation %s done (baseline target ppl %.2f)", model_name, relation, base.target_ppl)
    return pd.DataFrame(rows, columns=ROW_SCHEMA.names)

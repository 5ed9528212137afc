"""Channel statistics of a relation's probes, neuron selection, and the perturbation functions.

For one relation (its probes) and each (site, layer), one forward and one backward pass give, per channel c
of the site activation a[n, t, c] (probe n, token t; real tokens only):

* ``attribution`` — first-order Taylor estimate of the relation loss change when channel c is ablated
  (Molchanov et al. 2017, "Pruning CNNs for resource efficient inference"), per probe, then averaged::

      score_c = (1/N) Σ_n | Σ_t (∂L/∂a[n,t,c]) · a[n,t,c] |

  with L = mean NLL of the relation's target tokens;
* ``variance`` — variance across probes of the activation at the last prompt token (the position that
  predicts the target), a label-free criterion: ``score_c = Var_n a[n, last_prompt(n), c]``;
* ``mean`` / ``std`` over all real tokens — used by the ``mean`` and ``gaussian`` perturbation modes.

Selection takes the top ``k`` channels by score (ties broken by channel index); the random control draws
``k`` channels uniformly without replacement from a seeded generator.

Perturbation modes, applied to the selected channels at every token position (``x`` = site activation):
``zero`` x_c ← 0; ``mean`` x_c ← mean_c; ``gaussian`` x_c ← x_c + σ · std_c · ε, ε ~ N(0, 1)
(σ in units of the channel's own spread, so it means the same for every architecture and site);
``scale`` x_c ← factor · x_c.
"""

from __future__ import annotations

import contextlib
import zlib
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedModel

from attnlab.perturbation.metrics import ProbeBatch, token_nll
from attnlab.perturbation.sites import SiteFn, require_called, site_hook

METHODS: tuple[str, ...] = ("attribution", "variance")
MODES: tuple[str, ...] = ("zero", "mean", "gaussian", "scale")


@dataclass
class ChannelStats:
    """Per-channel statistics of one (site, layer) on one relation's probes; every array is ``[channels]``."""

    attribution: np.ndarray
    variance: np.ndarray
    mean: torch.Tensor
    std: torch.Tensor

    def scores(self, method: str) -> np.ndarray:
        if method not in METHODS:
            raise ValueError(f"unknown selection method {method!r}; choose from {METHODS}")
        return self.attribution if method == "attribution" else self.variance


def channel_statistics(
    model: PreTrainedModel, batch: ProbeBatch, site_layers: list[tuple[str, int]]
) -> dict[tuple[str, int], ChannelStats]:
    """:class:`ChannelStats` for every ``(site, layer)``, from one forward and one backward pass."""
    captured: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def capture(key: tuple[str, int]) -> SiteFn:
        def fn(x: torch.Tensor) -> torch.Tensor:
            # a zero offset z that requires grad: ∂L/∂z = ∂L/∂x even when the weights are frozen
            z = torch.zeros_like(x, requires_grad=True)
            captured[key] = (x.detach(), z)
            return x + z

        return fn

    with contextlib.ExitStack() as stack, torch.enable_grad():
        counters = {key: stack.enter_context(site_hook(model, key[0], key[1], capture(key))) for key in site_layers}
        nll = token_nll(model, batch)  # [n, seq-1]
        loss = nll[batch.target_mask[:, 1:]].mean()
    for key, counter in counters.items():
        require_called(counter, *key)
    keys = list(site_layers)
    grads = torch.autograd.grad(loss, [captured[k][1] for k in keys])
    real = batch.attention_mask.bool()  # [n, seq]
    rows = torch.arange(batch.n, device=real.device)
    stats = {}
    for key, grad in zip(keys, grads):
        act = captured[key][0].float()  # [n, seq, channels]
        grad = grad.float() * real[..., None]
        attribution = (grad * act).sum(dim=1).abs().mean(dim=0)  # [channels]
        at_last = act[rows, batch.last_prompt]  # [n, channels]
        tokens = act[real]  # [tokens, channels]
        stats[key] = ChannelStats(
            attribution=attribution.double().cpu().numpy(),
            variance=at_last.double().var(dim=0, unbiased=True).cpu().numpy(),
            mean=tokens.mean(dim=0),
            std=tokens.std(dim=0, unbiased=True),
        )
    return stats


def top_channels(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores, largest first (ties: lower index first)."""
    if not 1 <= k <= len(scores):
        raise ValueError(f"cannot select {k} of {len(scores)} channels")
    if not np.all(np.isfinite(scores)):
        raise ValueError("channel scores contain NaN or inf")
    return np.argsort(-scores, kind="stable")[:k]


def stable_seed(*parts: object) -> int:
    """A 32-bit seed from the parts' text (stable across runs and Python versions, unlike ``hash``)."""
    return zlib.crc32("|".join(map(str, parts)).encode())


def random_channels(width: int, k: int, seed: int) -> np.ndarray:
    """``k`` distinct channels of ``width``, uniformly, sorted; the same seed gives the same channels."""
    if not 1 <= k <= width:
        raise ValueError(f"cannot draw {k} of {width} channels")
    return np.sort(np.random.default_rng(seed).choice(width, size=k, replace=False))


def perturbation_fn(
    mode: str,
    channels: np.ndarray,
    stats: ChannelStats,
    *,
    sigma: float,
    factor: float,
    noise_seed: int,
) -> SiteFn:
    """The site rewrite of ``mode`` on ``channels`` (see the module docstring)."""
    if mode not in MODES:
        raise ValueError(f"unknown perturbation mode {mode!r}; choose from {MODES}")
    index = torch.as_tensor(channels, dtype=torch.long)

    def fn(x: torch.Tensor) -> torch.Tensor:
        idx = index.to(x.device)
        out = x.clone()
        if mode == "zero":
            out[..., idx] = 0.0
        elif mode == "mean":
            out[..., idx] = stats.mean.to(x.device, x.dtype)[idx]
        elif mode == "scale":
            out[..., idx] = x[..., idx] * factor
        else:
            generator = torch.Generator().manual_seed(noise_seed)
            noise = torch.randn(x[..., idx].shape, generator=generator, dtype=torch.float32)
            out[..., idx] = x[..., idx] + (sigma * stats.std.cpu()[index] * noise).to(x.device, x.dtype)
        return out

    return fn

"""Where a model's channels live, and forward hooks that read or rewrite them.

A **site** is a family of channels at one layer (block) ``l``; every hook sees the site's activation
channels-last, ``x: [batch, seq, channels]``, and returns a tensor of the same shape:

``residual`` (every architecture)
    the residual stream after block ``l`` (the block's output), ``channels = hidden_size``.
``mlp`` (Transformers: gpt2, llama, diffllama)
    the MLP's hidden neurons, i.e. the input of its output projection (GPT-2: ``gelu(c_fc(x))``
    entering ``mlp.c_proj``; Llama/DiffLlama: ``silu(gate) * up`` entering ``mlp.down_proj``),
    ``channels = intermediate_size``.
``delta`` (SSMs: mamba, mamba2)
    the selective-scan step sizes before the softplus, Δ_raw, with Δ = softplus(Δ_raw)
    (Gu & Dao 2023, "Mamba", Alg. 2; Dao & Gu 2024, "Transformers are SSMs", Mamba-2):

    * Mamba-1: the ``dt_proj`` outputs ``W_dt · x_proj(x)[:dt_rank] + b_dt``, one per inner channel
      (``channels = intermediate_size = expand · hidden_size``). transformers 5 computes them as
      ``dt_proj.weight @ time_step`` inside ``MambaMixer.forward`` and adds ``dt_proj.bias`` in the
      scan, so no module hook sees them: the hook wraps the module-level ``mamba_selective_scan`` of
      ``transformers.models.mamba.modeling_mamba`` while layer ``l``'s mixer runs.
    * Mamba-2: one dt per SSM head, the last ``num_heads`` outputs of ``mixer.in_proj``
      (``gate, xBC, dt = in_proj(x).split([...])`` in ``Mamba2Mixer.forward``) plus ``mixer.dt_bias``
      (added in the chunk scan), ``channels = num_heads``. The hook rewrites the in_proj output's dt
      slice as ``fn(dt + dt_bias) - dt_bias``.

    In both, the channel value is the pre-softplus step size *including* its bias, so "zero" means
    Δ = softplus(0) = ln 2 in both architectures.

Every hook counts its calls; :func:`site_hook` raises if a forward pass never reached it (for example a
fused CUDA kernel path that bypasses the module), instead of silently measuring an unperturbed model.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn
from transformers import PreTrainedModel

from attnlab.models import architectures
from attnlab.models.architectures import model_types

SITES: tuple[str, ...] = ("residual", "mlp", "delta")
TRANSFORMER_TYPES = frozenset(model_types(attention=True, causal=True))
SSM_TYPES = frozenset(model_types(ssm=True))

#: channels-last rewrite of a site activation: [batch, seq, channels] -> same shape
SiteFn = Callable[[torch.Tensor], torch.Tensor]


def model_type(model: PreTrainedModel) -> str:
    """The model's ``config.model_type`` if this stage knows it, else ``ValueError``."""
    kind = model.config.model_type
    if kind not in TRANSFORMER_TYPES | SSM_TYPES:
        raise ValueError(
            f"the perturbation stage does not know model type {kind!r} "
            f"(supported: {sorted(TRANSFORMER_TYPES | SSM_TYPES)})"
        )
    return kind


def blocks(model: PreTrainedModel) -> nn.ModuleList:
    """The model's stack of blocks (one per layer), in order."""
    model_type(model)
    return architectures.blocks(model)


def num_layers(model: PreTrainedModel) -> int:
    return len(blocks(model))


def site_available(model: PreTrainedModel, site: str) -> bool:
    """Whether ``site`` exists in this architecture (mlp: Transformers only; delta: SSMs only)."""
    if site not in SITES:
        raise ValueError(f"unknown site {site!r}; choose from {SITES}")
    kind = model_type(model)
    if site == "mlp":
        return kind in TRANSFORMER_TYPES
    if site == "delta":
        return kind in SSM_TYPES
    return True


def site_width(model: PreTrainedModel, site: str) -> int:
    """Number of channels of ``site`` at any layer."""
    if not site_available(model, site):
        raise ValueError(f"site {site!r} does not exist in a {model.config.model_type} model")
    config = model.config
    if site == "residual":
        return int(config.hidden_size)
    if site == "mlp":
        if config.model_type == "gpt2":
            return int(config.n_inner or 4 * config.n_embd)
        return int(config.intermediate_size)
    if config.model_type == "mamba":
        return int(config.intermediate_size)
    return int(config.num_heads)  # mamba2: one dt per head


@dataclass
class HookCalls:
    """How often the hook ran (checked after the forward pass)."""

    calls: int = 0


def _check_layer(model: PreTrainedModel, layer: int) -> nn.Module:
    stack = blocks(model)
    if not 0 <= layer < len(stack):
        raise IndexError(f"layer {layer} out of range: the model has {len(stack)} layers (0..{len(stack) - 1})")
    return stack[layer]


class _Mamba1Scan:
    """The wrapper of ``modeling_mamba.mamba_selective_scan`` shared by every active Mamba-1 delta hook.

    Installed while at least one hook is active (reference counted); a forward pre-hook on a hooked
    mixer marks it as running, and the wrapper applies that mixer's functions to Δ_raw.
    """

    functions: dict[int, list[tuple[SiteFn, HookCalls]]] = {}
    running: list[int] = []
    handles: dict[int, list] = {}
    original = None

    @classmethod
    def scan(cls, hidden_states, dt, *args, delta_bias=None, **kwargs):
        entries = cls.functions.get(cls.running[-1], []) if cls.running else []
        if not entries:
            return cls.original(hidden_states, dt, *args, delta_bias=delta_bias, **kwargs)
        # dt: [batch, channels, seq] = dt_proj.weight @ time_step; the bias is added in the scan
        raw = (dt if delta_bias is None else dt + delta_bias.to(dt.dtype)[..., None]).transpose(1, 2)
        for fn, counter in entries:
            raw = fn(raw)
            counter.calls += 1
        return cls.original(hidden_states, raw.transpose(1, 2), *args, delta_bias=None, **kwargs)


@contextlib.contextmanager
def _mamba1_delta_hook(block: nn.Module, fn: SiteFn, counter: HookCalls) -> Iterator[None]:
    from transformers.models.mamba import modeling_mamba

    if not hasattr(modeling_mamba, "mamba_selective_scan"):
        raise RuntimeError(
            "transformers.models.mamba.modeling_mamba has no mamba_selective_scan; this transformers "
            "version computes Mamba's Δ differently and the delta site must be adapted"
        )
    mixer = block.mixer
    key = id(mixer)
    if not _Mamba1Scan.functions:
        _Mamba1Scan.original = modeling_mamba.mamba_selective_scan
        modeling_mamba.mamba_selective_scan = _Mamba1Scan.scan
    if key not in _Mamba1Scan.functions:

        def enter(module, args) -> None:
            _Mamba1Scan.running.append(key)

        def leave(module, args, output) -> None:  # must return None: a value would replace the output
            _Mamba1Scan.running.pop()

        _Mamba1Scan.handles[key] = [mixer.register_forward_pre_hook(enter), mixer.register_forward_hook(leave)]
    _Mamba1Scan.functions.setdefault(key, []).append((fn, counter))
    try:
        yield
    finally:
        _Mamba1Scan.functions[key].remove((fn, counter))
        if not _Mamba1Scan.functions[key]:
            del _Mamba1Scan.functions[key]
            for handle in _Mamba1Scan.handles.pop(key):
                handle.remove()
        if not _Mamba1Scan.functions:
            modeling_mamba.mamba_selective_scan = _Mamba1Scan.original
            _Mamba1Scan.original = None


@contextlib.contextmanager
def site_hook(model: PreTrainedModel, site: str, layer: int, fn: SiteFn) -> Iterator[HookCalls]:
    """Apply ``fn`` to the ``site`` activation of block ``layer`` in every forward pass inside the block.

    Yields a :class:`HookCalls`; use :func:`require_called` after the forward pass.

    Raises:
        ValueError: the site does not exist in this architecture.
        IndexError: no such layer.
    """
    if not site_available(model, site):
        raise ValueError(f"site {site!r} does not exist in a {model.config.model_type} model")
    block = _check_layer(model, layer)
    counter = HookCalls()
    kind = model.config.model_type

    if site == "residual":

        def residual_hook(module, args, output):
            counter.calls += 1
            if isinstance(output, tuple):
                return (fn(output[0]), *output[1:])
            return fn(output)

        handle = block.register_forward_hook(residual_hook)
    elif site == "mlp":
        projection = architectures.mlp_projection(model, layer)

        def mlp_hook(module, args):
            counter.calls += 1
            return (fn(args[0]), *args[1:])

        handle = projection.register_forward_pre_hook(mlp_hook)
    elif kind == "mamba2":
        mixer = block.mixer
        heads = int(mixer.num_heads)

        def dt_hook(module, args, output):
            counter.calls += 1
            bias = mixer.dt_bias.to(output.dtype)  # [heads]
            dt = output[..., -heads:] + bias  # [batch, seq, heads]
            return torch.cat([output[..., :-heads], fn(dt) - bias], dim=-1)

        handle = mixer.in_proj.register_forward_hook(dt_hook)
    else:  # mamba (Mamba-1)
        with _mamba1_delta_hook(block, fn, counter):
            yield counter
        return
    try:
        yield counter
    finally:
        handle.remove()


def require_called(counter: HookCalls, site: str, layer: int) -> None:
    """Raise if a hook never ran (a code path bypassed the module it is attached to)."""
    if counter.calls == 0:
        raise RuntimeError(
            f"the {site} hook at layer {layer} never ran during the forward pass; this model's code path "
            f"(e.g. a fused kernel) bypasses it, so a perturbation there would silently do nothing"
        )


#: Mamba-2 chunk length used for analysis passes over short texts (see :func:`prepare_for_analysis`)
ANALYSIS_CHUNK_SIZE = 16


def prepare_for_analysis(model: PreTrainedModel) -> PreTrainedModel:
    """Make a loaded model cheap to analyse on short texts, without changing what it computes.

    Mamba-2's chunked scan pads every sequence to a multiple of ``chunk_size`` (256 by default) and
    builds ``chunk_size × chunk_size`` decay matrices per head, so a 30-token probe costs as much as
    a 256-token one. The chunked scan is exact for any chunk length (Dao & Gu 2024, Sec. 6), so the
    mixers' ``chunk_size`` is lowered to :data:`ANALYSIS_CHUNK_SIZE`; outputs agree to float rounding
    (checked in tests). Other architectures are returned unchanged.
    """
    if model.config.model_type == "mamba2":
        for block in blocks(model):
            block.mixer.chunk_size = min(int(block.mixer.chunk_size), ANALYSIS_CHUNK_SIZE)
    return model

"""Per-head gates: a scalar α per attention head, applied to the head's slice of the output projection's input.

For a layer with heads h = 0..H−1 the attention block computes ``o_proj(concat_h o_h)``; the gate replaces the
input by ``concat_h α_h · o_h`` (Michel et al. 2019, "Are Sixteen Heads Really Better than One?", eq. 2, where
ξ_h ∈ {0, 1} masks a head; here α_h is continuous so that ∂J/∂α_h exists). α = 1 everywhere is the unmodified
model (multiplication by 1.0 is exact in floating point), α_h = 0 removes head h's contribution.

Gate units ("heads") per architecture:

* ``llama``, ``mdlm`` (``self_attn.o_proj``) and ``gpt2`` (``attn.c_proj``): one unit per attention head, the
  contiguous ``head_dim`` slice ``[h·d, (h+1)·d)`` of the projection's input.
* ``diffllama`` (``self_attn.o_proj``): one unit per *differential* head, H/2 units per layer. transformers'
  ``DiffLlamaAttention`` pairs raw heads u and u + H/2 (the two softmax maps A_u − λ·A_{u+H/2}), concatenates the
  two value halves to a ``2·head_dim`` vector per pair, applies the per-head RMS norm (``groupnorm``) over that
  ``2·head_dim`` vector and reshapes ``[..., H/2, 2·head_dim]`` to ``[..., H·head_dim]``: unit u is the contiguous
  slice ``[u·2d, (u+1)·2d)`` *after* the norm.

α has shape ``[batch, layers, units]`` (one gate vector per batch row, so the IG steps of a path run as one batch),
or ``[layers, units]`` (the same gates for every row). Gates are applied by forward pre-hooks on the projections;
they are removed when the :class:`HeadGates` context exits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import nn

from attnlab.models.architectures import ARCHITECTURES, by_model_type, head_units

__all__ = [
    "GateLayout",
    "HeadGates",
    "UnsupportedModelError",
    "gate_layout",
    "head_mask_alpha",
    "ones_alpha",
]

#: model_type → (attention-block attribute on a decoder layer, projection attribute on that block)
SUPPORTED_MODEL_TYPES: dict[str, tuple[str, str]] = {
    arch.model_type: (arch.attention_attr, arch.output_projection_attr)
    for arch in ARCHITECTURES.values()
    if arch.attention
}


class UnsupportedModelError(ValueError):
    """The model has no per-head attention output projection that the gates know how to slice."""


@dataclass(frozen=True)
class GateLayout:
    """Where the gates of a model sit and how the projection input splits into units.

    Attributes:
        model_type: ``config.model_type`` of the model (``llama``, ``diffllama``, ``gpt2``, ``attnlab_mdlm``).
        num_layers: decoder layers L.
        units_per_layer: gate units U per layer (H; H/2 for diffllama).
        unit_dim: features of one unit in the projection's input (head_dim; 2·head_dim for diffllama).
        projections: the L modules whose input is gated, in layer order.
        module_names: their qualified names in the model (for messages).
    """

    model_type: str
    num_layers: int
    units_per_layer: int
    unit_dim: int
    projections: tuple[nn.Module, ...]
    module_names: tuple[str, ...]

    @property
    def shape(self) -> tuple[int, int]:
        """``(layers, units)``: the trailing shape of α."""
        return (self.num_layers, self.units_per_layer)

    @property
    def unit_name(self) -> str:
        arch = by_model_type(self.model_type)
        return "differential head" if arch is not None and arch.differential else "head"


def _decoder_layers(model: nn.Module) -> tuple[Sequence[nn.Module], str]:
    base = getattr(model, "base_model", model)
    for attr in ("layers", "h"):
        layers = getattr(base, attr, None)
        if isinstance(layers, nn.ModuleList):
            return layers, f"{base.__class__.__name__}.{attr}"
    raise UnsupportedModelError(f"{model.__class__.__name__}: no decoder layer list (.layers or .h) found")


def gate_layout(model: nn.Module) -> GateLayout:
    """The gate layout of a supported model (see the module docstring).

    Raises:
        UnsupportedModelError: for a model type without a known per-head output projection
            (e.g. mamba, or hub models with their own modelling code).
    """
    config = model.config
    model_type = getattr(config, "model_type", "")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedModelError(
            f"head gates support model types {sorted(SUPPORTED_MODEL_TYPES)}, not {model_type!r} "
            f"({model.__class__.__name__})"
        )
    block_attr, proj_attr = SUPPORTED_MODEL_TYPES[model_type]
    layers, where = _decoder_layers(model)
    units = head_units(config)
    projections, names = [], []
    for index, layer in enumerate(layers):
        block = getattr(layer, block_attr, None)
        proj = getattr(block, proj_attr, None) if block is not None else None
        if proj is None:
            raise UnsupportedModelError(f"{where}[{index}] has no {block_attr}.{proj_attr}")
        in_features = proj.in_features if isinstance(proj, nn.Linear) else proj.weight.shape[0]  # Conv1D: [in, out]
        if in_features % units:
            raise UnsupportedModelError(f"{where}[{index}].{block_attr}.{proj_attr}: {in_features} inputs do not split into {units} units")
        projections.append(proj)
        names.append(f"{where}[{index}].{block_attr}.{proj_attr}")
    unit_dim = projections[0].in_features if isinstance(projections[0], nn.Linear) else projections[0].weight.shape[0]
    return GateLayout(
        model_type=model_type,
        num_layers=len(projections),
        units_per_layer=units,
        unit_dim=unit_dim // units,
        projections=tuple(projections),
        module_names=tuple(names),
    )


class HeadGates:
    """Context manager that multiplies each gate unit's slice of the projection input by α.

    Usage::

        gates = HeadGates(model)                     # layout from the model
        alpha = torch.ones(batch, *gates.layout.shape, requires_grad=True)
        with gates:                                  # registers the pre-hooks
            gates.set(alpha)                         # [batch, L, U] or [L, U]
            loss = model(input_ids).logits...        # gradients flow into alpha
            gates.set(None)                          # None = identity (no gating)

    ``set`` may be called any number of times inside the context (e.g. one mask per pruning level) without
    re-registering hooks. A ``[batch, L, U]`` α must have the batch size of the model input (or 1).
    """

    def __init__(self, model: nn.Module, layout: GateLayout | None = None) -> None:
        self.model = model
        self.layout = layout if layout is not None else gate_layout(model)
        self.alpha: torch.Tensor | None = None
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def set(self, alpha: torch.Tensor | None) -> None:
        """Use ``alpha`` (``[batch, L, U]``, ``[L, U]`` or None = identity) for the following forwards."""
        if alpha is not None:
            if alpha.dim() not in (2, 3) or tuple(alpha.shape[-2:]) != self.layout.shape:
                raise ValueError(
                    f"alpha must have shape [batch, {self.layout.num_layers}, {self.layout.units_per_layer}] "
                    f"or [{self.layout.num_layers}, {self.layout.units_per_layer}], got {tuple(alpha.shape)}"
                )
        self.alpha = alpha

    def _hook(self, layer: int):
        units, unit_dim = self.layout.units_per_layer, self.layout.unit_dim

        def pre_hook(module: nn.Module, args: tuple) -> tuple | None:
            if self.alpha is None:
                return None
            x = args[0]  # [B, T, U·unit_dim]
            alpha = self.alpha[layer] if self.alpha.dim() == 2 else self.alpha[:, layer]  # [U] or [B, U]
            if alpha.dim() == 2 and alpha.shape[0] not in (1, x.shape[0]):
                raise ValueError(f"alpha has {alpha.shape[0]} rows but the input batch has {x.shape[0]}")
            gate = alpha.to(x.dtype)
            gate = gate[:, None, :, None] if gate.dim() == 2 else gate[None, None, :, None]  # [B|1, 1, U, 1]
            gated = (x.unflatten(-1, (units, unit_dim)) * gate).flatten(-2)  # [B, T, U·unit_dim]
            return (gated, *args[1:])

        return pre_hook

    def __enter__(self) -> "HeadGates":
        if self._handles:
            raise RuntimeError("HeadGates is already active")
        self._handles = [p.register_forward_pre_hook(self._hook(i)) for i, p in enumerate(self.layout.projections)]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.alpha = None


def ones_alpha(layout: GateLayout, batch: int | None = None, *, device: torch.device | str = "cpu") -> torch.Tensor:
    """All-ones gates: ``[L, U]``, or ``[batch, L, U]`` when ``batch`` is given (float32)."""
    shape = layout.shape if batch is None else (batch, *layout.shape)
    return torch.ones(shape, dtype=torch.float32, device=device)


def head_mask_alpha(
    layout: GateLayout, pruned: Iterable[tuple[int, int]], *, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``[L, U]`` gates that are 1 except 0 at each ``(layer, head)`` in ``pruned`` (head = gate unit index).

    Raises:
        IndexError: for a (layer, head) outside the layout.
    """
    alpha = ones_alpha(layout, device=device)
    for layer, head in pruned:
        if not (0 <= layer < layout.num_layers and 0 <= head < layout.units_per_layer):
            raise IndexError(f"(layer={layer}, head={head}) is outside the {layout.num_layers}×{layout.units_per_layer} gate grid")
        alpha[layer, head] = 0.0
    return alpha

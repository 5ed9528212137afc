"""DiffLlama with a configurable per-head norm: the published form, a learnable scale, or none.

Differential attention (Ye et al. 2024, "Differential Transformer", arXiv:2410.05258, eq. 1 and Sec. 2.1) computes
for head pair i

    h_i = (softmax(Q1 K1ᵀ/√d) − λ · softmax(Q2 K2ᵀ/√d)) · V          shape (batch, T, 2·head_dim)
    head_i = (1 − λ_init) · GroupNorm(h_i)

and concatenates the heads before the output projection ``o_proj``. ``GroupNorm`` is an RMS norm over each head's
2·head_dim channels (eq. 2). The three forms of that norm (``config.head_norm``):

* ``None`` or ``{"kind": "rms", "init_scale": null}`` — transformers' ``DiffLlamaAttention`` as published:
  ``nn.RMSNorm(2·head_dim, elementwise_affine=False)``. Every head emits a unit-RMS vector at initialisation, so
  each layer writes a residual update ~10-25x larger than Llama's (whose attention output averages small value
  vectors); the published DiffLlama-375M checkpoint uses this form.
* ``{"kind": "rms", "init_scale": s}`` — the same norm with a learnable per-channel scale γ initialised to ``s``:
  ``GroupNorm(h) = γ ⊙ h / RMS(h)``. ``s = 1`` is the layout of the paper's reference code (a learnable weight);
  a small ``s`` (e.g. 0.05) starts each head near Llama's output scale, which changes an initialisation, not the
  function class.
* ``{"kind": "none"}`` — no per-head norm, as the Differential Transformer V2 drops it:
  ``head_i = (1 − λ_init) · h_i``.

Importing this module registers :class:`DiffLlamaForCausalLM` (a subclass of transformers' class of the same name,
so saved configs keep ``architectures: [DiffLlamaForCausalLM]``) as the causal-LM class of ``DiffLlamaConfig``
(``exist_ok``: it replaces transformers' own), so every DiffLlama the project builds or loads goes through it. With no ``head_norm`` in the config it is transformers' model unchanged (same modules, same
state-dict keys, same outputs), so published checkpoints load as before; with a learnable scale the state dict
gains ``model.layers.<l>.self_attn.groupnorm.weight`` and ``save_pretrained`` / ``from_pretrained`` round-trip it.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn
from transformers import AutoModelForCausalLM, DiffLlamaConfig
from transformers import DiffLlamaForCausalLM as PublishedDiffLlamaForCausalLM

from attnlab.models.architectures import HEAD_NORM_KINDS, head_norm_spec

__all__ = ["HEAD_NORM_KINDS", "DiffLlamaForCausalLM", "apply_head_norm", "head_norm_spec"]

def _new_head_norm(template: nn.RMSNorm, spec: dict[str, Any]) -> nn.Module:
    if spec["kind"] == "none":
        return nn.Identity()
    norm = nn.RMSNorm(template.normalized_shape, eps=template.eps, elementwise_affine=True)
    with torch.no_grad():
        norm.weight.fill_(spec["init_scale"])
    return norm


def apply_head_norm(model: PublishedDiffLlamaForCausalLM, spec: Mapping[str, Any] | None) -> None:
    """Replace every layer's ``self_attn.groupnorm`` by the form ``spec`` names (``None``: leave the published one)."""
    spec = head_norm_spec(spec)
    if spec is None:
        return
    for layer in model.model.layers:
        layer.self_attn.groupnorm = _new_head_norm(layer.self_attn.groupnorm, spec)


class DiffLlamaForCausalLM(PublishedDiffLlamaForCausalLM):
    """transformers' ``DiffLlamaForCausalLM`` with the per-head norm that ``config.head_norm`` names."""

    def __init__(self, config: DiffLlamaConfig) -> None:
        super().__init__(config)
        apply_head_norm(self, getattr(config, "head_norm", None))


AutoModelForCausalLM.register(DiffLlamaConfig, DiffLlamaForCausalLM, exist_ok=True)

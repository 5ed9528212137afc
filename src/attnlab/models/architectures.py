"""One table of the architectures the project knows: identity, size keys, capabilities and module accessors.

Every stage that asks "can this model be measured here?" reads this table, so an architecture is described once:

* ``name`` — the value of ``models.<name>.architecture`` in a study config (the schema's enum is checked against
  :data:`ARCHITECTURES` by the tests);
* ``model_type`` — ``config.model_type`` of the built (or published) model, the key the intervention modules see;
* ``size_keys`` — the required ``size`` fields of a from-scratch model (:func:`attnlab.models.registry.build_scratch_config`);
* capabilities — ``attention`` (softmax attention computed through transformers' ``AttentionInterface``, so it can
  be captured, gated per head and made sparse), ``causal`` (a left-to-right LM: next-token loss, greedy decoding),
  ``differential`` (DiffLlama's head pairs, A_u − λ·A_{u+H/2}; Ye et al. 2024, "Differential Transformer", eq. 1),
  ``ssm`` (a selective state-space mixer with step sizes Δ; Gu & Dao 2023);
* accessors — where a model keeps its stack of blocks, each block's attention module and its output projection,
  and the MLP's down projection.

The masked diffusion LM (``mdlm``) is a Llama without the causal mask: attention, not causal. The module imports
neither torch nor transformers, so config checks can read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # torch is not imported here, so config checks and data jobs stay torch-free
    from torch import nn

__all__ = [
    "ARCHITECTURES",
    "HEAD_NORM_KINDS",
    "Architecture",
    "architecture_names",
    "attention_module",
    "blocks",
    "by_model_type",
    "head_norm_spec",
    "head_units",
    "mlp_projection",
    "model_types",
    "output_projection",
]

_TRANSFORMER_SIZE = ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_position_embeddings")


@dataclass(frozen=True)
class Architecture:
    """One architecture (see the module docstring for the fields' meaning)."""

    name: str
    model_type: str
    size_keys: tuple[str, ...]
    attention: bool
    causal: bool
    differential: bool
    ssm: bool
    #: dotted path from the model to its ``nn.ModuleList`` of blocks
    blocks_path: str
    #: attribute of a block holding the attention module (``None``: no attention)
    attention_attr: str | None = None
    #: attribute of the attention module whose input is the concatenation of the heads' outputs
    output_projection_attr: str | None = None
    #: dotted path from a block to the MLP's down projection (``None``: no MLP)
    mlp_projection_path: str | None = None


_LLAMA_ACCESSORS = dict(
    blocks_path="model.layers",
    attention_attr="self_attn",
    output_projection_attr="o_proj",
    mlp_projection_path="mlp.down_proj",
)

#: name → architecture, in the order the project lists them
ARCHITECTURES: dict[str, Architecture] = {
    arch.name: arch
    for arch in (
        Architecture("llama", "llama", _TRANSFORMER_SIZE, attention=True, causal=True, differential=False, ssm=False,
                     **_LLAMA_ACCESSORS),
        Architecture("diffllama", "diffllama", _TRANSFORMER_SIZE, attention=True, causal=True, differential=True,
                     ssm=False, **_LLAMA_ACCESSORS),
        Architecture("gpt2", "gpt2", _TRANSFORMER_SIZE, attention=True, causal=True, differential=False, ssm=False,
                     blocks_path="transformer.h", attention_attr="attn", output_projection_attr="c_proj",
                     mlp_projection_path="mlp.c_proj"),
        Architecture("mamba", "mamba", ("hidden_size", "num_layers", "state_size", "expand"), attention=False,
                     causal=True, differential=False, ssm=True, blocks_path="backbone.layers"),
        Architecture("mamba2", "mamba2", ("hidden_size", "num_layers", "state_size", "expand", "head_dim"),
                     attention=False, causal=True, differential=False, ssm=True, blocks_path="backbone.layers"),
        Architecture("mdlm", "attnlab_mdlm", _TRANSFORMER_SIZE, attention=True, causal=False, differential=False,
                     ssm=False, **_LLAMA_ACCESSORS),
    )
}

_BY_MODEL_TYPE: dict[str, Architecture] = {arch.model_type: arch for arch in ARCHITECTURES.values()}


def _matching(capabilities: dict[str, bool]) -> list[Architecture]:
    unknown = sorted(set(capabilities) - {"attention", "causal", "differential", "ssm"})
    if unknown:
        raise ValueError(f"unknown capabilities {unknown}")
    return [a for a in ARCHITECTURES.values() if all(getattr(a, k) == v for k, v in capabilities.items())]


def architecture_names(**capabilities: bool) -> tuple[str, ...]:
    """Config names of the architectures with the given capabilities, e.g. ``architecture_names(attention=True)``."""
    return tuple(a.name for a in _matching(capabilities))


def model_types(**capabilities: bool) -> tuple[str, ...]:
    """``config.model_type`` values of the architectures with the given capabilities."""
    return tuple(a.model_type for a in _matching(capabilities))


def by_model_type(model_type: str) -> Architecture | None:
    """The architecture of a built model's ``config.model_type`` (``None`` for one the project does not know,
    e.g. a hub model with its own modelling code)."""
    return _BY_MODEL_TYPE.get(model_type)


def _architecture_of(model: nn.Module) -> Architecture:
    kind = getattr(getattr(model, "config", None), "model_type", None)
    arch = by_model_type(kind) if isinstance(kind, str) else None
    if arch is None:
        raise ValueError(f"{type(model).__name__}: unknown model type {kind!r} (known: {sorted(_BY_MODEL_TYPE)})")
    return arch


def _attribute_path(obj: Any, path: str) -> Any:
    return reduce(getattr, path.split("."), obj)


def blocks(model: nn.Module) -> nn.ModuleList:
    """The model's stack of blocks (one per layer), in order."""
    return _attribute_path(model, _architecture_of(model).blocks_path)


def attention_module(model: nn.Module, layer: int) -> nn.Module:
    """The attention module of block ``layer`` (``ValueError`` for an architecture without attention)."""
    arch = _architecture_of(model)
    if arch.attention_attr is None:
        raise ValueError(f"architecture {arch.name!r} has no attention")
    return getattr(blocks(model)[layer], arch.attention_attr)


def output_projection(model: nn.Module, layer: int) -> nn.Module:
    """The attention output projection of block ``layer``: its input is the concatenation of the heads' outputs."""
    arch = _architecture_of(model)
    return getattr(attention_module(model, layer), arch.output_projection_attr)


def mlp_projection(model: nn.Module, layer: int) -> nn.Module:
    """The MLP's down projection of block ``layer`` (its input: the MLP's hidden neurons)."""
    arch = _architecture_of(model)
    if arch.mlp_projection_path is None:
        raise ValueError(f"architecture {arch.name!r} has no MLP")
    return _attribute_path(blocks(model)[layer], arch.mlp_projection_path)


def head_units(config: Any) -> int:
    """Head units per layer: H attention heads, or H/2 differential heads (one per pair of softmax maps)."""
    arch = by_model_type(getattr(config, "model_type", ""))
    heads = int(config.num_attention_heads)
    return heads // 2 if arch is not None and arch.differential else heads


#: values of ``head_norm.kind``
HEAD_NORM_KINDS: tuple[str, ...] = ("rms", "none")


def head_norm_spec(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The normalised DiffLlama ``head_norm`` entry: ``None`` for the published form, else ``{"kind", "init_scale"}``
    (:mod:`attnlab.models.diffllama` builds the norm it names; config checks read it without torch).

    Raises:
        ValueError: an unknown kind or key, a non-positive scale, or a scale with ``kind: none``.
    """
    if value is None:
        return None
    unknown = sorted(set(value) - {"kind", "init_scale"})
    if unknown:
        raise ValueError(f"head_norm has unknown keys {unknown} (known: kind, init_scale)")
    kind = value.get("kind", "rms")
    if kind not in HEAD_NORM_KINDS:
        raise ValueError(f"head_norm.kind must be one of {list(HEAD_NORM_KINDS)}, got {kind!r}")
    scale = value.get("init_scale")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 0):
        raise ValueError(f"head_norm.init_scale must be a positive number or null, got {scale!r}")
    if kind == "none" and scale is not None:
        raise ValueError("head_norm.init_scale needs kind: rms (kind: none has no norm to scale)")
    if kind == "rms" and scale is None:
        return None  # the published form
    return {"kind": kind, "init_scale": None if scale is None else float(scale)}

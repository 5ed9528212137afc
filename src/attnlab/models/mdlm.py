"""A masked diffusion language model (MDLM): Llama blocks without the causal mask, trained LLaDA-style.

Architecture
------------
:class:`MDLMForMaskedDiffusion` is ``transformers.LlamaForCausalLM`` with every attention module made
bidirectional (``config.is_causal = False``, so ``create_causal_mask`` builds a padding-only bidirectional mask,
and ``self_attn.is_causal = False``, so SDPA / flash kernels are called without their causal flag). Everything else
is Llama's: RMSNorm, RoPE, SwiGLU MLP, per-layer ``model.layers[i].self_attn.{q,k,v,o}_proj``, tied embeddings,
and transformers' attention-interface dispatch (``config._attn_implementation``), so attention functions
registered with ``AttentionInterface.register`` apply unchanged. With the same size fields the parameter count
equals Llama's exactly. ``config.model_type = "attnlab_mdlm"``; importing this module registers the config with
``AutoConfig`` and the model with ``AutoModelForCausalLM`` (the project's one loader) and ``AutoModelForMaskedLM``,
so a ``save_pretrained`` folder reloads as this class. (It is registered as a "causal LM" only because the loader
resolves classes through that Auto class; it is *not* autoregressive and its ``forward`` rejects ``labels``.)

The logits at position i are a prediction of the clean token x0^i given the whole partially masked sequence x_t:
``logits[:, i]`` predicts ``input_ids[:, i]`` where it is ``<mask>``. With ``config.shift_logits`` (a model adapted
from an autoregressive LM, :func:`mdlm_config_from_causal`), the hidden state at position i predicts token i+1, as
it did in the autoregressive model (Dream 7B's shift operation, Ye et al. 2025, "Dream 7B", Sec. 2): ``forward``
returns ``logits[:, i] = head(h_{i-1})`` for i >= 1 (position 0, the BOS that is never masked, repeats
``head(h_0)``), so every consumer still reads position i's prediction at ``logits[:, i]``.

Training objective (Nie et al. 2025, "Large Language Diffusion Models", arXiv:2502.09992, eq. 3)
------------------------------------------------------------------------------------------------
For a clean sequence x0, draw t ~ U(0, 1) per sequence, mask every eligible token independently with probability
p = (1 − ε)·t + ε (ε = 1e-3, LLaDA's guard against t = 0), and minimise

    L = − E_{t, x0, x_t} [ (1 / p) · Σ_i 1[x_t^i = M] · log p_θ(x0^i | x_t) ] / n_eligible(x0),

averaged over the sequences of the batch. "Eligible" tokens are those with a label (``labels != -100``): the whole
sequence for pretraining (``loss_on: all``; n_eligible = L, LLaDA's pretraining normalisation by the sequence
length) or only the answer for ``loss_on: answer`` (the prompt is never masked and n_eligible is the answer length,
LLaDA's SFT normalisation). L upper-bounds the negative log-likelihood of x0 (eq. 3/4 of the paper).
"""

from __future__ import annotations

from typing import Any

import torch
from huggingface_hub.dataclasses import strict
from torch.nn import functional as F
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, LlamaConfig, LlamaForCausalLM

__all__ = [
    "MDLM_MODEL_TYPE",
    "MASK_EPSILON",
    "MDLMConfig",
    "MDLMForMaskedDiffusion",
    "MaskedDiffusionObjective",
    "forward_mask",
    "is_masked_diffusion_model",
    "masked_diffusion_loss",
    "mdlm_config_from_causal",
]

MDLM_MODEL_TYPE = "attnlab_mdlm"
#: LLaDA's lower bound on the masking probability: p = (1 - eps) * t + eps
MASK_EPSILON = 1e-3


@strict
class MDLMConfig(LlamaConfig):
    """``LlamaConfig`` plus the mask token, with bidirectional attention and no KV cache.

    Attributes (beyond Llama's):
        mask_token_id: id of ``<mask>`` in the tokenizer (the project tokenizer: 4).
        is_causal: always ``False`` (read by ``transformers.masking_utils.create_causal_mask``).
        shift_logits: the hidden state at position i predicts token i+1 (a model adapted from a causal LM).
    """

    model_type = MDLM_MODEL_TYPE

    mask_token_id: int | None = None
    use_cache: bool = False
    is_causal: bool = False
    shift_logits: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        if self.is_causal:
            raise ValueError("an attnlab_mdlm model is bidirectional: is_causal must be False")


class MDLMForMaskedDiffusion(LlamaForCausalLM):
    """A bidirectional Llama that predicts masked tokens (LLaDA-style masked diffusion LM).

    ``forward(input_ids, attention_mask=None, position_ids=None)`` returns ``logits`` of shape
    (batch, length, vocab); ``logits[:, i]`` is the prediction for position i itself. Pass an ``attention_mask``
    (1 = real token) when rows are padded; padded keys are then ignored by every query.
    """

    config_class = MDLMConfig

    def __init__(self, config: MDLMConfig) -> None:
        super().__init__(config)
        for layer in self.model.layers:
            layer.self_attn.is_causal = False  # SDPA/flash read the module flag when no mask is materialised

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = False,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Any,
    ):
        """Logits (batch, length, vocab) of the clean token at every position of the (partially masked) input."""
        if labels is not None:
            raise ValueError(
                "MDLMForMaskedDiffusion.forward does not take labels: the masked-diffusion loss needs a random mask "
                "ratio; use attnlab.models.mdlm.MaskedDiffusionObjective / masked_diffusion_loss"
            )
        out = super().forward(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache,
            inputs_embeds=inputs_embeds, use_cache=use_cache, logits_to_keep=logits_to_keep, **kwargs,
        )
        if getattr(self.config, "shift_logits", False):
            if logits_to_keep:
                raise ValueError("a shift_logits mdlm needs every position's logits (logits_to_keep=0)")
            out.logits = torch.cat([out.logits[:, :1], out.logits[:, :-1]], dim=1)  # (b, l, v): row i from h_{i-1}
        return out


def mdlm_config_from_causal(causal_config: LlamaConfig, mask_token_id: int) -> MDLMConfig:
    """The :class:`MDLMConfig` of a causal Llama's architecture, bidirectional and with ``shift_logits``.

    Every size field, RoPE setting and token id is the Llama's, so its state dict loads with no missing or
    unexpected keys.

    Raises:
        ValueError: if ``causal_config`` is not a Llama config.
    """
    if causal_config.model_type != "llama":
        raise ValueError(f"an mdlm can be initialised from a llama model only, got model_type {causal_config.model_type!r}")
    fields = {k: v for k, v in causal_config.to_dict().items() if k not in ("model_type", "architectures", "transformers_version", "use_cache", "is_causal")}
    return MDLMConfig(**{**fields, "mask_token_id": int(mask_token_id), "shift_logits": True, "use_cache": False})


AutoConfig.register(MDLM_MODEL_TYPE, MDLMConfig, exist_ok=True)
AutoModelForCausalLM.register(MDLMConfig, MDLMForMaskedDiffusion, exist_ok=True)
AutoModelForMaskedLM.register(MDLMConfig, MDLMForMaskedDiffusion, exist_ok=True)


def is_masked_diffusion_model(model: torch.nn.Module) -> bool:
    """Whether ``model`` is one of the project's masked diffusion LMs (``config.model_type == "attnlab_mdlm"``)."""
    return getattr(getattr(model, "config", None), "model_type", None) == MDLM_MODEL_TYPE


def forward_mask(
    labels: torch.Tensor,
    generator: torch.Generator | None = None,
    eps: float = MASK_EPSILON,
) -> tuple[torch.Tensor, torch.Tensor]:
    """LLaDA's forward (noising) process: which tokens to mask and with what probability.

    Args:
        labels: (batch, length) clean token ids; ``-100`` marks tokens that are never masked (prompt, padding).
        generator: the random source (CPU generator; draws are moved to ``labels.device``).
        eps: lower bound of the masking probability.

    Returns:
        ``(masked, p_mask)``: (batch, length) bool — masked eligible tokens; (batch,) float — the per-sequence
        masking probability p = (1 − eps)·t + eps with t ~ U(0, 1).
    """
    batch, length = labels.shape
    t = torch.rand(batch, generator=generator)  # (batch,)
    p_mask = (1 - eps) * t + eps
    draws = torch.rand(batch, length, generator=generator)  # (batch, length)
    masked = (draws < p_mask[:, None]).to(labels.device) & (labels != -100)
    return masked, p_mask.to(labels.device)


def masked_diffusion_loss(
    logits: torch.Tensor, labels: torch.Tensor, masked: torch.Tensor, p_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence LLaDA loss terms (Nie et al. 2025, eq. 3) from the logits of the masked input.

    Args:
        logits: (batch, length, vocab) model outputs on the masked input x_t.
        labels: (batch, length) clean ids, ``-100`` where not eligible.
        masked: (batch, length) bool, the masked positions (a subset of the eligible ones).
        p_mask: (batch,) masking probability of each sequence.

    Returns:
        ``(weighted_sum, n_eligible)``, both (batch,): Σ_{i masked} CE(logits_i, x0^i) / p, and the number of
        eligible tokens. The loss of the batch is ``mean(weighted_sum / n_eligible)`` over sequences with
        ``n_eligible > 0``.
    """
    targets = labels.masked_fill(~masked, -100)  # (batch, length): only masked positions are scored
    ce = F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=-100, reduction="none")  # (b, l)
    weighted_sum = ce.sum(dim=1) / p_mask  # (batch,)
    n_eligible = (labels != -100).sum(dim=1)  # (batch,)
    return weighted_sum, n_eligible


class MaskedDiffusionObjective:
    """The pretraining hook for masked diffusion LMs: LLaDA loss for training, a fixed-noise version for validation.

    Training draws t and the masks from one seeded generator (advanced step by step, so a run is reproducible);
    validation re-seeds its own generator on every call, so every evaluation scores the same (t, mask) draws and the
    validation curve is comparable across steps.
    """

    def __init__(self, mask_token_id: int, pad_token_id: int | None, seed: int) -> None:
        if mask_token_id is None:
            raise ValueError("masked diffusion training needs a mask token id (config.mask_token_id is None)")
        self.mask_token_id = int(mask_token_id)
        self.pad_token_id = pad_token_id
        self.seed = int(seed)
        self.train_generator = torch.Generator().manual_seed(self.seed)
        self.validation_generator = torch.Generator()

    def _noised(
        self, input_ids: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        masked, p_mask = forward_mask(labels, generator)
        noisy = input_ids.masked_fill(masked, self.mask_token_id)  # (batch, length) x_t
        attention_mask = None
        if self.pad_token_id is not None and bool((input_ids == self.pad_token_id).any()):
            attention_mask = (input_ids != self.pad_token_id).long()  # right padding: pads are never keys
        return noisy, masked, p_mask, attention_mask

    def train_loss(self, model: torch.nn.Module, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The batch loss: mean over sequences of (Σ masked CE / p) / n_eligible (a scalar with grad)."""
        noisy, masked, p_mask, attention_mask = self._noised(input_ids, labels, self.train_generator)
        logits = model(input_ids=noisy, attention_mask=attention_mask).logits
        weighted_sum, n_eligible = masked_diffusion_loss(logits, labels, masked, p_mask)
        keep = n_eligible > 0
        return (weighted_sum[keep] / n_eligible[keep]).mean()

    def reset_validation(self) -> None:
        """Re-seed the validation noise (call before each pass over the validation set)."""
        self.validation_generator.manual_seed(self.seed + 1)

    @torch.no_grad()
    def validation_loss_sum(
        self, model: torch.nn.Module, input_ids: torch.Tensor, labels: torch.Tensor
    ) -> tuple[float, int]:
        """(Σ over sequences of Σ masked CE / p, Σ eligible tokens): a token-weighted LLaDA bound when summed."""
        noisy, masked, p_mask, attention_mask = self._noised(input_ids, labels, self.validation_generator)
        logits = model(input_ids=noisy, attention_mask=attention_mask).logits
        weighted_sum, n_eligible = masked_diffusion_loss(logits, labels, masked, p_mask)
        return float(weighted_sum.sum()), int(n_eligible.sum())

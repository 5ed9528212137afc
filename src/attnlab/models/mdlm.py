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
LLaDA's SFT normalisation, their eq. 5). L upper-bounds the negative log-likelihood of x0 (eq. 3/4 of the paper).
This is ``loss_weighting: llada`` (the default); :func:`diffusion_batch_loss` documents the other normalisations.

Adaptation from an autoregressive model (Gong et al. 2024, "Scaling Diffusion Language Models via Adaptation from
Autoregressive Models", arXiv:2410.17891 — DiffuGPT / DiffuLLaMA)
--------------------------------------------------------------------------------------------------------------
Three optional pieces of :class:`MaskedDiffusionObjective`, all off by default:

* **attention-mask annealing** (the paper's "attention mask annealing"; :func:`annealed_attention_mask`): during
  the first ``anneal_steps`` optimiser steps the attention mask is the causal mask with a random fraction
  min(1, s / anneal_steps) of its masked-out upper triangle opened, after which it is fully bidirectional;
* **the loss normalisation of their training code** (``loss_weighting: diffullama``; :func:`diffusion_batch_loss`);
* **a next-token term** kept during adaptation (``ar_loss_weight``; :func:`next_token_loss`): the shifted model
  under the causal mask is exactly the autoregressive model it came from, and its next-token cross-entropy is added.

Evaluation and generation always use the full bidirectional mask: the objective's validation loss and the model's
own ``forward`` never anneal.
"""

from __future__ import annotations

from typing import Any

import torch
from huggingface_hub.dataclasses import strict
from torch.nn import functional as F
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, LlamaConfig, LlamaForCausalLM

__all__ = [
    "LOSS_WEIGHTINGS",
    "MDLM_MODEL_TYPE",
    "MASK_EPSILON",
    "MDLMConfig",
    "MDLMForMaskedDiffusion",
    "MaskedDiffusionObjective",
    "anneal_ratio",
    "annealed_attention_mask",
    "attention_bias",
    "diffusion_batch_loss",
    "forward_mask",
    "is_masked_diffusion_model",
    "masked_diffusion_loss",
    "mdlm_config_from_causal",
    "next_token_loss",
]

MDLM_MODEL_TYPE = "attnlab_mdlm"
#: LLaDA's lower bound on the masking probability: p = (1 - eps) * t + eps
MASK_EPSILON = 1e-3
#: normalisations of the masked-diffusion loss (:func:`diffusion_batch_loss`); the first is the default
LOSS_WEIGHTINGS: tuple[str, ...] = ("llada", "diffullama", "unweighted")


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


def diffusion_batch_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    masked: torch.Tensor,
    p_mask: torch.Tensor,
    weighting: str = "llada",
) -> torch.Tensor:
    """The batch's masked-diffusion loss (a scalar with grad) under one of :data:`LOSS_WEIGHTINGS`.

    With CE_bi = −log p_θ(x0^i | x_t) of sequence b at masked position i, M_b its masked positions, p_b its masking
    probability (t of the papers, kept ≥ ε) and E_b its eligible positions (``labels != -100``):

    ``llada`` (the default; Nie et al. 2025, arXiv:2502.09992, eq. 3 for pretraining and eq. 5 for SFT, and their
    SFT code, which divides each token's loss by its sequence's answer length)::

        L = (1 / |B'|) Σ_{b ∈ B'} (1 / |E_b|) Σ_{i ∈ M_b} CE_bi / p_b        (B' = sequences with |E_b| > 0)

    ``diffullama`` (Gong et al. 2024, arXiv:2410.17891: the paper's continuous-time absorbing-diffusion objective
    L_t = (1/t) E_{q(x_t|x_0)} [ −Σ_n δ(x_t^n, m) (x_0^n)ᵀ log f_θ(x_t)_n ], as their released training code
    reduces it over a batch: the 1/t-weighted CE summed over the batch, divided by the number of masked tokens)::

        L = Σ_b Σ_{i ∈ M_b} CE_bi / p_b  /  Σ_b |M_b|

    ``unweighted`` (the same masked-token mean without 1/t; the "unweighted loss" their code logs beside it)::

        L = Σ_b Σ_{i ∈ M_b} CE_bi  /  Σ_b |M_b|

    The first two share the 1/t weight and differ in the normaliser: per sequence by its eligible tokens (a fixed
    count, so every sequence's term is an unbiased estimate of its NLL bound), or over the batch by the masked
    tokens (a random count ≈ Σ_b p_b |E_b|, which further up-weights the batches drawn at small t). They coincide
    only when every eligible token is masked and every sequence has as many eligible tokens (e.g. one sequence at
    p = 1). A batch with no masked token gives a zero loss (with grad).

    Args:
        logits: (batch, length, vocab) predictions at every position of x_t.
        labels: (batch, length) clean ids, ``-100`` where not eligible.
        masked: (batch, length) bool masked positions (a subset of the eligible ones).
        p_mask: (batch,) masking probability of each sequence.
        weighting: one of :data:`LOSS_WEIGHTINGS`.

    Raises:
        ValueError: for an unknown ``weighting``.
    """
    if weighting not in LOSS_WEIGHTINGS:
        raise ValueError(f"loss_weighting must be one of {list(LOSS_WEIGHTINGS)}, got {weighting!r}")
    if weighting == "llada":
        weighted_sum, n_eligible = masked_diffusion_loss(logits, labels, masked, p_mask)
        keep = n_eligible > 0
        return (weighted_sum[keep] / n_eligible[keep]).mean()
    targets = labels.masked_fill(~masked, -100)  # (batch, length)
    ce = F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=-100, reduction="none")  # (b, l)
    per_sequence = ce.sum(dim=1)  # (batch,)
    if weighting == "diffullama":
        per_sequence = per_sequence / p_mask
    n_masked = masked.sum()
    if int(n_masked) == 0:
        return logits.sum() * 0.0
    return per_sequence.sum() / n_masked


def anneal_ratio(step: int, anneal_steps: int) -> float:
    """The fraction of the causal mask's upper triangle opened at optimiser step ``step``: min(1, step / anneal_steps).

    Step 0 (the model as initialised) is causal; 1-based optimiser step s opens s / anneal_steps, as DiffuLLaMA's
    ``(global_step + 1) / anneal_steps`` with its 0-based step counter. ``anneal_steps = 0`` means no annealing
    (always 1: bidirectional).
    """
    if anneal_steps < 0 or step < 0:
        raise ValueError(f"step and anneal_steps must be >= 0, got {step} and {anneal_steps}")
    return 1.0 if anneal_steps == 0 else min(1.0, step / anneal_steps)


def annealed_attention_mask(length: int, ratio: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """The annealed attention mask (Gong et al. 2024, arXiv:2410.17891, "attention mask annealing"): (length, length)
    bool, True = query i may attend to key j.

    The causal lower triangle (j ≤ i) is always open; each entry of the upper triangle (j > i) is opened
    independently with probability ``ratio`` (a Bernoulli draw from ``generator``), the causal mask OR a random
    mask, one draw shared by the batch and every head and layer, as in DiffuLLaMA's ``get_anneal_attn_mask``.
    ``ratio <= 0`` is exactly the causal mask and ``ratio >= 1`` exactly the full (bidirectional) mask.
    """
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    if ratio <= 0:
        return causal
    if ratio >= 1:
        return torch.ones(length, length, dtype=torch.bool)
    opened = torch.rand(length, length, generator=generator) < ratio
    return causal | opened


def attention_bias(allowed: torch.Tensor, key_is_real: torch.Tensor | None, batch: int, dtype: torch.dtype) -> torch.Tensor:
    """A 4-D additive attention mask (batch, 1, length, length): 0 where ``allowed`` (length, length) and the key is
    real, the dtype's minimum elsewhere. transformers passes a 4-D mask to the attention functions unchanged (SDPA and
    eager both add it to the scores), so this replaces the model's own (bidirectional, padding-only) mask."""
    allowed = allowed[None, None].expand(batch, 1, *allowed.shape)  # (b, 1, l, l)
    if key_is_real is not None:
        allowed = allowed & key_is_real.bool()[:, None, None, :]
    bias = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return bias.masked_fill(~allowed, torch.finfo(dtype).min)


def next_token_loss(
    model: torch.nn.Module, input_ids: torch.Tensor, labels: torch.Tensor, key_is_real: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean next-token cross-entropy of ``model`` on the clean input under the causal mask (a scalar with grad).

    For a ``shift_logits`` mdlm under the causal mask, ``logits[:, i]`` is the head of h_{i-1}, which sees tokens
    0..i-1 only: the prediction of token i by the causal Llama the mdlm was initialised from. The loss is
    CE(logits[:, i], labels[:, i]) averaged over i ≥ 1 with ``labels != -100`` — the Llama's own next-token loss
    (``LlamaForCausalLM(input_ids, labels=labels).loss``) for the same weights. Without ``shift_logits``,
    ``logits[:, i]`` predicts token i + 1 (the unshifted reading).
    """
    batch, length = input_ids.shape
    dtype = next(model.parameters()).dtype
    causal = attention_bias(torch.ones(length, length, dtype=torch.bool, device=input_ids.device).tril(), key_is_real, batch, dtype)
    logits = model(input_ids=input_ids, attention_mask=causal).logits  # (batch, length, vocab)
    if getattr(model.config, "shift_logits", False):
        predictions, targets = logits[:, 1:], labels[:, 1:]
    else:
        predictions, targets = logits[:, :-1], labels[:, 1:]
    return F.cross_entropy(predictions.float().reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)


class MaskedDiffusionObjective:
    """The pretraining hook for masked diffusion LMs: LLaDA loss for training, a fixed-noise version for validation.

    Training draws t and the masks from one seeded generator (advanced step by step, so a run is reproducible);
    validation re-seeds its own generator on every call, so every evaluation scores the same (t, mask) draws and the
    validation curve is comparable across steps. Validation always scores the ``llada`` bound under the full
    bidirectional mask, whatever the training options, so curves of different recipes are comparable.

    Adaptation options (Gong et al. 2024; all off by default, which is exactly the plain LLaDA objective):
        anneal_steps: open the causal mask to bidirectional over the first ``anneal_steps`` optimiser steps
            (:func:`annealed_attention_mask`; its random upper-triangle entries come from their own generator,
            seeded by ``seed``, so the noise draws are the same with and without annealing).
        loss_weighting: one of :data:`LOSS_WEIGHTINGS` (:func:`diffusion_batch_loss`).
        ar_loss_weight: w ≥ 0; the training loss is the diffusion loss + w · :func:`next_token_loss` on the clean
            batch under the causal mask (one more forward and backward pass per step when w > 0).
    """

    def __init__(
        self,
        mask_token_id: int,
        pad_token_id: int | None,
        seed: int,
        *,
        anneal_steps: int = 0,
        loss_weighting: str = "llada",
        ar_loss_weight: float = 0.0,
    ) -> None:
        if mask_token_id is None:
            raise ValueError("masked diffusion training needs a mask token id (config.mask_token_id is None)")
        if isinstance(anneal_steps, bool) or not isinstance(anneal_steps, int) or anneal_steps < 0:
            raise ValueError(f"anneal_steps must be a non-negative integer, got {anneal_steps!r}")
        if loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"loss_weighting must be one of {list(LOSS_WEIGHTINGS)}, got {loss_weighting!r}")
        if isinstance(ar_loss_weight, bool) or not isinstance(ar_loss_weight, (int, float)) or ar_loss_weight < 0:
            raise ValueError(f"ar_loss_weight must be a number >= 0, got {ar_loss_weight!r}")
        self.mask_token_id = int(mask_token_id)
        self.pad_token_id = pad_token_id
        self.seed = int(seed)
        self.anneal_steps = int(anneal_steps)
        self.loss_weighting = loss_weighting
        self.ar_loss_weight = float(ar_loss_weight)
        self.train_generator = torch.Generator().manual_seed(self.seed)
        self.validation_generator = torch.Generator()
        self.anneal_generator = torch.Generator().manual_seed(self.seed + 2)

    def _key_is_real(self, input_ids: torch.Tensor) -> torch.Tensor | None:
        if self.pad_token_id is not None and bool((input_ids == self.pad_token_id).any()):
            return (input_ids != self.pad_token_id).long()  # right padding: pads are never keys
        return None

    def _noised(
        self, input_ids: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        masked, p_mask = forward_mask(labels, generator)
        noisy = input_ids.masked_fill(masked, self.mask_token_id)  # (batch, length) x_t
        return noisy, masked, p_mask, self._key_is_real(input_ids)

    def attention_mask_at(self, step: int | None, input_ids: torch.Tensor, key_is_real: torch.Tensor | None, dtype: torch.dtype):
        """The attention mask of training step ``step``: the model's own 2-D padding mask (or None) once annealing
        is over or off (``step`` None = no annealing), else a 4-D additive annealed mask (:func:`attention_bias`)."""
        ratio = 1.0 if step is None else anneal_ratio(step, self.anneal_steps)
        if ratio >= 1:
            return key_is_real
        batch, length = input_ids.shape
        allowed = annealed_attention_mask(length, ratio, self.anneal_generator).to(input_ids.device)
        return attention_bias(allowed, key_is_real, batch, dtype)

    def train_loss(
        self, model: torch.nn.Module, input_ids: torch.Tensor, labels: torch.Tensor, step: int | None = None
    ) -> torch.Tensor:
        """The batch loss of optimiser step ``step`` (1-based; None = no annealing): the diffusion loss under the
        step's attention mask (:func:`diffusion_batch_loss` with ``loss_weighting``), plus ``ar_loss_weight`` times
        the next-token loss of the clean batch under the causal mask."""
        noisy, masked, p_mask, key_is_real = self._noised(input_ids, labels, self.train_generator)
        dtype = next(model.parameters()).dtype
        attention_mask = self.attention_mask_at(step, input_ids, key_is_real, dtype)
        logits = model(input_ids=noisy, attention_mask=attention_mask).logits
        loss = diffusion_batch_loss(logits, labels, masked, p_mask, self.loss_weighting)
        if self.ar_loss_weight > 0:
            loss = loss + self.ar_loss_weight * next_token_loss(model, input_ids, labels, key_is_real)
        return loss

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

"""Layer-wise Jacobian analysis: how much each architecture amplifies a perturbation of its hidden states.

For a text with tokens x_1..x_T and layer l, let h = h_l ∈ R^{T×d} be the residual stream after block l
and f(h) ∈ R^V the logits at the last token, computed by the rest of the network. J = ∂f/∂h is a
V × (T·d) matrix (block-diagonal over a batch of texts, so texts are processed together). Per layer:

* **gradient sensitivity** ``E_v ‖J v‖ / ‖v‖`` over ``num_vectors`` random directions v (Gaussian,
  normalised to unit norm over the real tokens), averaged over texts;
* **relative sensitivity** ``E_v ‖J v‖ · ‖h‖ / ‖f(h)‖`` per text, the gain for a perturbation scaled to the
  text's own hidden-state norm, measured against the logits' norm: the relative condition number
  κ = ‖J‖ ‖h‖ / ‖f(h)‖ (Trefethen & Bau 1997, "Numerical Linear Algebra", Lecture 12) with ‖J‖ replaced by
  the mean random-direction gain. ‖h‖ is the norm over the text's real tokens (the norm v is normalised in),
  ‖f(h)‖ that of its last-token logits. It is free of each architecture's activation scale — rescaling h by
  c scales the absolute sensitivity by 1/c and leaves this one unchanged — so it is the column that compares
  architectures; the absolute ``sensitivity_*`` columns compare layers of one model;
* **Lipschitz estimate** ``σ_max(J)`` = the spectral norm by power iteration on JᵀJ
  (v ← Jᵀ(J v) / ‖Jᵀ(J v)‖, σ = ‖J v‖; Golub & Van Loan 2013, Sec. 8.2), reported as max and mean over texts
  — a local Lipschitz constant of the remaining network at h. σ = ‖J v‖ with ‖v‖ = 1 is a **lower bound** on
  σ_max after any number of iterations (it converges from below, at rate (σ₂/σ₁)^{2k}). Measured against the
  exact norm (SVD of the explicit Jacobian) on the tiny GPT-2 and Mamba-2 of ``tests/test_jacobian_analysis.py``
  (3 texts × 2 layers each): the largest shortfall is 15 % after 3 iterations, 3.2 % after 10, 0.1 % after 20
  and 0.03 % after 30; the default of 20 (``power_iterations``) is within 1 % there, and the test suite checks
  it. Fewer iterations (the CI study uses 3) give a looser lower bound;
* **effective rank** ``exp(H(p))``, p_i = s_i / Σ_j s_j, s the singular values of the centered
  token-level hidden states H ∈ R^{N×d} of all real tokens of all texts (Roy & Vetterli 2007,
  "The effective rank: a measure of effective dimensionality"), N ≥ d required;
* **hidden variance** — mean over dimensions of the variance across texts of the last-token hidden state;
* **output variance** — mean over the vocabulary of the variance across texts of the last-token logits
  (a property of the model, the same in every layer's row).

Products with J are autograd products through a forward hook that adds δ (zero) to block l's output:
``Jᵀu = ∂(u·f)/∂δ`` (a VJP), and ``J v = ∂(v · Jᵀu)/∂u`` (a JVP by double backward: Jᵀu is linear in
u, so its gradient along v is J v). Attention uses PyTorch's math SDPA kernel so double backward exists.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Mapping

import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from attnlab.perturbation.relations import sample_texts
from attnlab.perturbation.sites import model_type, num_layers, require_called, site_hook
from attnlab.study.schema import schema_defaults

__all__ = ["LayerJacobian", "effective_rank", "run_jacobian", "sample_texts", "sensitivity", "spectral_norm"]

#: the spec keys of :func:`run_jacobian` and their defaults: the config schema's (``perturbation.jacobian``)
DEFAULT_JACOBIAN_SPEC: dict[str, Any] = {
    k: v for k, v in schema_defaults("perturbation", "jacobian").items()
    if k in ("num_texts", "num_vectors", "power_iterations", "layers")
}

COLUMNS = (
    "model", "model_type", "layer", "num_texts", "num_tokens", "hidden_size",
    "sensitivity_mean", "sensitivity_std", "sensitivity_low", "sensitivity_high",
    "relative_sensitivity_mean", "relative_sensitivity_low", "relative_sensitivity_high",
    "hidden_norm_mean", "logit_norm_mean",
    "spectral_norm_max", "spectral_norm_mean", "spectral_norm_low", "spectral_norm_high",
    "effective_rank", "effective_rank_fraction", "hidden_variance", "output_variance",
)  # fmt: skip


def effective_rank(hidden: torch.Tensor) -> float:
    """Roy & Vetterli (2007) effective rank of the centered rows of ``hidden`` ([N, d], N ≥ d).

    ``erank = exp(−Σ_i p_i ln p_i)`` with ``p_i = s_i / Σ_j s_j`` over the non-zero singular values s.
    """
    if hidden.ndim != 2:
        raise ValueError(f"effective_rank needs a [tokens, dims] matrix, got shape {tuple(hidden.shape)}")
    n, d = hidden.shape
    if n < d:
        raise ValueError(f"effective rank needs at least as many tokens as dimensions, got {n} tokens for {d} dims")
    centered = hidden.double() - hidden.double().mean(dim=0, keepdim=True)
    s = torch.linalg.svdvals(centered)
    s = s[s > s.max() * 1e-12] if s.max() > 0 else s[:0]
    if s.numel() == 0:
        return 0.0
    p = s / s.sum()
    return float(torch.exp(-(p * p.log()).sum()))


def _math_attention() -> contextlib.AbstractContextManager:
    """PyTorch's math SDPA kernel: its graph has a double backward (the fused CPU/CUDA kernels do not)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


class LayerJacobian:
    """J = ∂(last-token logits)/∂(hidden states after block ``layer``) for a right-padded batch of texts.

    Builds one forward graph with a zero offset δ on the block's output; :meth:`vjp` and :meth:`jvp`
    reuse it. Rows are independent (J is block-diagonal), so every product is batched over texts.
    """

    def __init__(self, model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, layer: int):
        self.mask = attention_mask.bool()  # [B, T]
        last = attention_mask.sum(dim=1) - 1  # [B]
        hidden = {}

        def add_delta(h: torch.Tensor) -> torch.Tensor:
            hidden["h"] = h.detach()
            self.delta = torch.zeros_like(h, requires_grad=True)  # [B, T, d]
            return h + self.delta

        with torch.enable_grad(), _math_attention(), site_hook(model, "residual", layer, add_delta) as counter:
            logits = model(input_ids=input_ids, attention_mask=attention_mask).logits  # [B, T, V]
        require_called(counter, "residual", layer)
        self.hidden = hidden["h"]  # [B, T, d]
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        self.logits = logits[rows, last]  # [B, V]
        with torch.enable_grad():
            self.u = torch.zeros_like(self.logits, requires_grad=True)  # [B, V]
            (self.jt_u,) = torch.autograd.grad((self.logits * self.u).sum(), self.delta, create_graph=True)

    def vjp(self, w: torch.Tensor) -> torch.Tensor:
        """Jᵀ w per row: ``w`` [B, V] → [B, T, d]."""
        (out,) = torch.autograd.grad(self.logits, self.delta, grad_outputs=w, retain_graph=True)
        return out

    def jvp(self, v: torch.Tensor) -> torch.Tensor:
        """J v per row: ``v`` [B, T, d] → [B, V]."""
        (out,) = torch.autograd.grad(self.jt_u, self.u, grad_outputs=v, retain_graph=True)
        return out

    def random_directions(self, generator: torch.Generator) -> torch.Tensor:
        """Gaussian directions on the real tokens, unit norm per row: [B, T, d]."""
        v = torch.randn(self.delta.shape, generator=generator, dtype=torch.float32).to(self.delta)
        v = v * self.mask[..., None]
        return v / _row_norm(v)[:, None, None]


def _row_norm(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1)


def sensitivity(jac: LayerJacobian, num_vectors: int, generator: torch.Generator) -> torch.Tensor:
    """Mean over ``num_vectors`` random unit v of ‖J v‖, per row: [B]."""
    norms = [_row_norm(jac.jvp(jac.random_directions(generator))) for _ in range(num_vectors)]
    return torch.stack(norms).mean(dim=0)


def spectral_norm(jac: LayerJacobian, iterations: int, generator: torch.Generator) -> torch.Tensor:
    """σ_max(J) per row by ``iterations`` steps of power iteration on JᵀJ: [B]."""
    v = jac.random_directions(generator)
    sigma = _row_norm(jac.jvp(v))
    for _ in range(iterations):
        w = jac.vjp(jac.jvp(v))  # JᵀJ v
        v = w / _row_norm(w).clamp_min(1e-30)[:, None, None]
        sigma = _row_norm(jac.jvp(v))
    return sigma


def encode_texts(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask`` ([B, T]) of ``texts`` (with special tokens)."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise ValueError("tokenizer has neither a pad nor an eos token to right-pad texts with")
    encoded = [tokenizer(t)["input_ids"] for t in texts]
    width = max(len(e) for e in encoded)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for i, e in enumerate(encoded):
        ids[i, : len(e)] = torch.tensor(e)
        mask[i, : len(e)] = 1
    return ids, mask


def _t_interval(values: torch.Tensor, confidence: float) -> tuple[float, float]:
    """Student-t interval of the mean over texts (a point when there is one text)."""
    from scipy import stats as sps

    x = values.double().cpu().numpy()
    if len(x) < 2:
        return float(x.mean()), float(x.mean())
    half = float(sps.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return float(x.mean()) - half, float(x.mean()) + half


def run_jacobian(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    spec: Mapping[str, Any],
    seed: int,
    model_name: str,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """One row per layer with the metrics of the module docstring (columns :data:`COLUMNS`).

    Raises:
        ValueError: fewer real tokens than the hidden size (raise ``num_texts``), bad layers, unknown keys.
    """
    unknown = sorted(set(spec) - set(DEFAULT_JACOBIAN_SPEC))
    if unknown:
        raise ValueError(f"unknown jacobian spec keys {unknown}; known: {sorted(DEFAULT_JACOBIAN_SPEC)}")
    spec = {**DEFAULT_JACOBIAN_SPEC, **spec}
    kind = model_type(model)
    depth = num_layers(model)
    layers = list(range(depth)) if spec["layers"] is None else list(spec["layers"])
    bad = [layer for layer in layers if not 0 <= layer < depth]
    if bad:
        raise ValueError(f"jacobian layers {bad} out of range: the model has {depth} layers (0..{depth - 1})")
    device = next(model.parameters()).device
    ids, mask = (t.to(device) for t in encode_texts(tokenizer, texts))
    hidden_size = int(model.config.hidden_size)
    n_tokens = int(mask.sum())
    if n_tokens < hidden_size:
        raise ValueError(
            f"effective rank needs at least hidden_size={hidden_size} tokens; {len(texts)} texts have {n_tokens} "
            f"(raise perturbation.jacobian.num_texts)"
        )
    rows = []
    for layer in layers:
        generator = torch.Generator().manual_seed(seed * 1000 + layer)
        jac = LayerJacobian(model, ids, mask, layer)
        sens = sensitivity(jac, spec["num_vectors"], generator)  # [B]
        sigma = spectral_norm(jac, spec["power_iterations"], generator)  # [B]
        tokens = jac.hidden[jac.mask]  # [N, d]
        last = jac.hidden[torch.arange(ids.shape[0], device=device), mask.sum(dim=1) - 1]  # [B, d]
        erank = effective_rank(tokens)
        hidden_norm = _row_norm(jac.hidden * jac.mask[..., None])  # [B], real tokens only
        logit_norm = _row_norm(jac.logits.detach())  # [B]
        relative = sens * hidden_norm / logit_norm  # [B]
        sens_low, sens_high = _t_interval(sens, confidence)
        rel_low, rel_high = _t_interval(relative, confidence)
        sigma_low, sigma_high = _t_interval(sigma, confidence)
        rows.append(
            {
                "model": model_name,
                "model_type": kind,
                "layer": layer,
                "num_texts": len(texts),
                "num_tokens": n_tokens,
                "hidden_size": hidden_size,
                "sensitivity_mean": float(sens.mean()),
                "sensitivity_std": float(sens.std(unbiased=True)) if len(texts) > 1 else 0.0,
                "sensitivity_low": sens_low,
                "sensitivity_high": sens_high,
                "relative_sensitivity_mean": float(relative.mean()),
                "relative_sensitivity_low": rel_low,
                "relative_sensitivity_high": rel_high,
                "hidden_norm_mean": float(hidden_norm.mean()),
                "logit_norm_mean": float(logit_norm.mean()),
                "spectral_norm_max": float(sigma.max()),
                "spectral_norm_mean": float(sigma.mean()),
                "spectral_norm_low": sigma_low,
                "spectral_norm_high": sigma_high,
                "effective_rank": erank,
                "effective_rank_fraction": erank / hidden_size,
                "hidden_variance": float(last.double().var(dim=0, unbiased=True).mean()),
                "output_variance": float(jac.logits.detach().double().var(dim=0, unbiased=True).mean()),
            }
        )
        del jac
    for row in rows:
        for key, value in row.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"model {model_name}: non-finite {key} at layer {row['layer']}")
    return pd.DataFrame(rows, columns=list(COLUMNS))

"""HeadIG: integrated gradients over per-head gates, on the diagonal and the stochastic-threshold path.

With gates α ∈ R^{L×U} (:mod:`attnlab.attribution.gates`), an objective J(α) = −L(α)
(:mod:`attnlab.attribution.objectives`) and a path γ: [0, 1] → R^{L×U} from the baseline γ(0) = α₀·1 to the
unmodified model γ(1) = 1, the attribution of unit i is the path integral (Sundararajan et al. 2017, eq. 1–3)

    IG_i = ∫_0^1 ∂J/∂α_i(γ(τ)) · γ_i'(τ) dτ ,        Σ_i IG_i = J(1) − J(α₀·1)   (completeness).

Paths
    diagonal (``dp``):      γ_i(τ) = α₀ + (1 − α₀)·τ — all gates ramp together (classic IG on the gates).
    stochastic threshold    per unit a threshold u_i ~ U[0, 1); γ_i(τ) = α₀ + (1 − α₀)·clip((τ − u_i)/(1 − u_i), 0, 1):
    (``stp``):              unit i stays at the baseline until τ = u_i, then ramps linearly to 1 at τ = 1; so each
                            head is attributed in a context where a random subset of the other heads is already
                            (partly) on. The result is averaged over ``path_samples`` seeded paths.

Quadrature (``ig_steps`` = m gradient evaluations), in increment form so that it applies to any path:
    ``riemann_right``: τ_k = k/m (k = 0..m),      IG_i ≈ Σ_{k=1..m} g_i(τ_k) · (γ_i(τ_k) − γ_i(τ_{k−1}))
    ``trapezoid``:     τ_k = k/(m−1) (k = 0..m−1), IG_i ≈ Σ_{k=1..m−1} ½(g_i(τ_{k−1}) + g_i(τ_k)) · (γ_i(τ_k) − γ_i(τ_{k−1}))
with g = ∇_α J. On the diagonal path the increments are the constant (1 − α₀)/m resp. (1 − α₀)/(m − 1). The
``riemann_right`` rule is exactly Captum's. The ``trapezoid`` rule is the composite trapezoid rule on the m-point
grid (spacing h = 1/(m − 1), weights h/2, h, …, h, h/2, summing to 1, so it is exact for a linear integrand and
completeness holds up to the O(h²) quadrature error). Captum's ``riemann_trapezoid`` evaluates the same m points
(``linspace(0, 1, m)``) but weights them 1/m with halved ends (``step_sizes``: ``[1/m]·m``, first and last
halved), which sum to (m − 1)/m: its attributions are ours × (m − 1)/m, i.e. ours = Captum's × m/(m − 1)
(3 % at m = 32), and Captum's systematically miss completeness by the factor (m − 1)/m. For riemann_right the
baseline point τ_0 is evaluated too (forward only matters: J(α₀) for the completeness check), so a path costs
m + 1 rows.

Sign convention: J = −L, so a **positive** attribution means switching the head on (α₀ → 1) *increases* J, i.e.
*lowers* the answer loss: the head helps produce the gold answer. Post-processing per item before averaging over
items: ``signed`` (as is), ``abs`` (|IG_i|, magnitude only), ``relu`` (max(IG_i, 0): only helpful contributions).

Units outside the configured layer range keep α = 1 on every path point (they are not on the path) and get no
attribution; completeness then holds for J(1) − J(α with only the in-range units at α₀).

Baseline importance (Michel et al. 2019, eq. 3): I_i = E_x |∂L/∂α_i| at α = 1 — one gradient per item.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedModel

from attnlab.attribution.gates import GateLayout, HeadGates
from attnlab.attribution.objectives import EncodedItem, ObjectiveSpec, objective_rows

__all__ = [
    "METHODS",
    "HeadIGSpec",
    "ItemAttribution",
    "attribute_item",
    "attribute_items",
    "diagonal_path",
    "integrate",
    "path_taus",
    "postprocess",
    "score_table",
    "stochastic_threshold_path",
]

LOG = logging.getLogger(__name__)

METHODS = ("dp", "stp", "michel")
QUADRATURES = ("riemann_right", "trapezoid")
POSTPROCESS = ("signed", "abs", "relu")


@dataclass(frozen=True)
class HeadIGSpec:
    """The attribution settings of one method (see the module docstring and ``docs/attribution.md``)."""

    method: str = "dp"
    baseline: float = 0.0
    ig_steps: int = 32
    quadrature: str = "trapezoid"
    path_samples: int = 2
    postprocess: str = "signed"
    first_layer: int = 0
    last_layer: int | None = None
    seed: int = 0
    batch_rows: int = 64

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"attribution method must be one of {METHODS}, got {self.method!r}")
        if self.quadrature not in QUADRATURES:
            raise ValueError(f"quadrature must be one of {QUADRATURES}, got {self.quadrature!r}")
        if self.postprocess not in POSTPROCESS:
            raise ValueError(f"postprocess must be one of {POSTPROCESS}, got {self.postprocess!r}")
        if not 0.0 <= self.baseline < 1.0:
            raise ValueError(f"baseline α₀ must be in [0, 1), got {self.baseline}")
        if self.ig_steps < (2 if self.quadrature == "trapezoid" else 1):
            raise ValueError(f"ig_steps={self.ig_steps} is too few for quadrature {self.quadrature!r}")
        if self.path_samples < 1 or self.batch_rows < 1:
            raise ValueError("path_samples and batch_rows must be ≥ 1")

    @classmethod
    def from_config(cls, section: Mapping[str, Any], method: str, seed: int) -> "HeadIGSpec":
        """From the ``attribution`` config section (defaults filled) for one method."""
        layers = section.get("layers") or {}
        return cls(
            method=method,
            baseline=float(section.get("baseline", 0.0)),
            ig_steps=int(section.get("ig_steps", cls.ig_steps)),
            quadrature=section.get("quadrature", cls.quadrature),
            path_samples=int(section.get("path_samples", cls.path_samples)),
            postprocess=section.get("postprocess", cls.postprocess),
            first_layer=int(layers.get("first", 0)),
            last_layer=layers.get("last"),
            seed=int(seed),
            batch_rows=int(section.get("batch_rows", cls.batch_rows)),
        )

    def layer_range(self, num_layers: int) -> range:
        """The attributed layers; raises ValueError if the range does not fit the model."""
        last = num_layers - 1 if self.last_layer is None else int(self.last_layer)
        if not 0 <= self.first_layer <= last < num_layers:
            raise ValueError(
                f"attribution layers first={self.first_layer}, last={self.last_layer} do not fit a model with "
                f"{num_layers} layers (0..{num_layers - 1})"
            )
        return range(self.first_layer, last + 1)


# --- paths and quadrature -----------------------------------------------------------------------------------


def path_taus(steps: int, quadrature: str) -> torch.Tensor:
    """The τ grid [P] (float64) whose points are evaluated: riemann_right k/m, k=0..m; trapezoid k/(m−1), k=0..m−1."""
    if quadrature == "riemann_right":
        return torch.arange(steps + 1, dtype=torch.float64) / steps
    if quadrature == "trapezoid":
        return torch.arange(steps, dtype=torch.float64) / (steps - 1)
    raise ValueError(f"unknown quadrature {quadrature!r}")


def diagonal_path(taus: torch.Tensor, baseline: float, active: torch.Tensor) -> torch.Tensor:
    """Gates [P, L, U] on the diagonal path: α₀ + (1 − α₀)·τ for active units (bool [L, U]), 1 elsewhere."""
    ramp = baseline + (1.0 - baseline) * taus  # [P]
    return torch.where(active[None], ramp[:, None, None], torch.ones((), dtype=torch.float64))


def stochastic_threshold_path(
    taus: torch.Tensor, baseline: float, active: torch.Tensor, thresholds: torch.Tensor
) -> torch.Tensor:
    """Gates [P, L, U] on a stochastic threshold path with per-unit thresholds u [L, U] in [0, 1).

    γ_i(τ) = α₀ + (1 − α₀)·clip((τ − u_i)/(1 − u_i), 0, 1) for active units, 1 elsewhere.
    """
    ramp = ((taus[:, None, None] - thresholds[None]) / (1.0 - thresholds[None])).clamp(0.0, 1.0)  # [P, L, U]
    return torch.where(active[None], baseline + (1.0 - baseline) * ramp, torch.ones((), dtype=torch.float64))


def integrate(gates: torch.Tensor, grads: torch.Tensor, quadrature: str) -> torch.Tensor:
    """Path integral of g·dγ over the evaluated points (gates, grads [P, L, U]) → attributions [L, U].

    riemann_right: Σ_{k≥1} g_k·Δγ_k; trapezoid: Σ_{k≥1} ½(g_{k−1} + g_k)·Δγ_k, with Δγ_k = γ_k − γ_{k−1}.
    """
    increments = gates[1:] - gates[:-1]  # [P-1, L, U]
    if quadrature == "riemann_right":
        return (grads[1:] * increments).sum(dim=0)
    if quadrature == "trapezoid":
        return (0.5 * (grads[1:] + grads[:-1]) * increments).sum(dim=0)
    raise ValueError(f"unknown quadrature {quadrature!r}")


def postprocess(attributions: np.ndarray, mode: str) -> np.ndarray:
    """``signed`` (unchanged), ``abs`` or ``relu`` — applied per item before averaging over items."""
    if mode == "signed":
        return attributions
    if mode == "abs":
        return np.abs(attributions)
    if mode == "relu":
        return np.maximum(attributions, 0.0)
    raise ValueError(f"unknown postprocess {mode!r}")


def path_thresholds(seed: int, item_id: str, samples: int, shape: tuple[int, int]) -> torch.Tensor:
    """Seeded thresholds u [samples, L, U] ~ U[0, 1) for one item (stable: crc32 of seed and item id)."""
    import zlib

    generator = torch.Generator().manual_seed(zlib.crc32(f"{seed}:attribution-stp:{item_id}".encode()))
    return torch.rand((samples, *shape), generator=generator, dtype=torch.float64)


# --- attribution of one item --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemAttribution:
    """One item's raw (signed, un-postprocessed) result.

    ``attributions`` [L, U] (float64; zero outside the layer range; Michel: ∂L/∂α at α = 1, signed),
    ``j_full`` = J(1), ``j_baseline`` = J(α₀) (NaN for michel), ``seconds`` spent.
    """

    item_id: str
    variant: str
    attributions: np.ndarray
    j_full: float
    j_baseline: float
    seconds: float

    @property
    def completeness_delta(self) -> float:
        """Σ_i IG_i − (J(1) − J(α₀))."""
        return float(self.attributions.sum() - (self.j_full - self.j_baseline))


def _path_gates(spec: HeadIGSpec, layout: GateLayout, item: EncodedItem, active: torch.Tensor) -> torch.Tensor:
    """All evaluated gate points of the item's path(s): [S·P, L, U] (S = 1 for dp, path_samples for stp)."""
    taus = path_taus(spec.ig_steps, spec.quadrature)
    if spec.method == "dp":
        return diagonal_path(taus, spec.baseline, active)
    thresholds = path_thresholds(spec.seed, item.item_id, spec.path_samples, layout.shape)  # [S, L, U]
    return torch.cat([stochastic_threshold_path(taus, spec.baseline, active, u) for u in thresholds])


def attribute_item(
    model: PreTrainedModel,
    gates: HeadGates,
    item: EncodedItem,
    spec: HeadIGSpec,
    objective: ObjectiveSpec,
) -> ItemAttribution:
    """Attribute one item with ``spec.method`` (``gates`` must be active on ``model``)."""
    started = time.perf_counter()
    layout = gates.layout
    layers = spec.layer_range(layout.num_layers)
    active = torch.zeros(layout.shape, dtype=torch.bool)
    active[layers.start : layers.stop] = True
    if spec.method == "michel":
        ones = torch.ones((1, *layout.shape), dtype=torch.float64)
        values, grads = objective_rows(model, gates, item, ones.float(), objective, batch_rows=spec.batch_rows)
        attributions = torch.where(active, -grads[0], torch.zeros(())).numpy()  # ∂L/∂α = −∂J/∂α
        return ItemAttribution(item.item_id, item.variant, attributions, float(values[0]), float("nan"), time.perf_counter() - started)
    points = _path_gates(spec, layout, item, active)  # [S·P, L, U] float64
    values, grads = objective_rows(model, gates, item, points.float(), objective, batch_rows=spec.batch_rows)
    n_paths = 1 if spec.method == "dp" else spec.path_samples
    per_path = points.shape[0] // n_paths
    total = torch.zeros(layout.shape, dtype=torch.float64)
    for s in range(n_paths):
        rows = slice(s * per_path, (s + 1) * per_path)
        total += integrate(points[rows], grads[rows], spec.quadrature)
    attributions = torch.where(active, total / n_paths, torch.zeros((), dtype=torch.float64)).numpy()
    # every path starts at γ(0) = baseline and ends at γ(1) = 1; use the first path's end points
    return ItemAttribution(
        item.item_id, item.variant, attributions, float(values[per_path - 1]), float(values[0]), time.perf_counter() - started
    )


def attribute_items(
    model: PreTrainedModel,
    items: Sequence[EncodedItem],
    spec: HeadIGSpec,
    objective: ObjectiveSpec,
    *,
    progress: Callable[[int, ItemAttribution], None] | None = None,
) -> list[ItemAttribution]:
    """Attribute every item (one :func:`attribute_item` each) under one set of gate hooks."""
    results = []
    with HeadGates(model) as gates:
        for index, item in enumerate(items):
            result = attribute_item(model, gates, item, spec, objective)
            if not np.all(np.isfinite(result.attributions)):
                raise ValueError(f"item {item.item_id}: non-finite attributions")
            results.append(result)
            if progress is not None:
                progress(index, result)
    return results


# --- tables -------------------------------------------------------------------------------------------------


def item_table(results: Sequence[ItemAttribution], spec: HeadIGSpec, layout: GateLayout) -> pd.DataFrame:
    """One row per item × layer × head in the layer range: the raw signed attribution and the item's completeness.

    (No timings: the file must be byte-identical for the same config; the CLI logs seconds per item.)
    """
    layers = spec.layer_range(layout.num_layers)
    rows = []
    for r in results:
        delta = r.completeness_delta if spec.method != "michel" else float("nan")
        j_gap = r.j_full - r.j_baseline
        for layer in layers:
            for head in range(layout.units_per_layer):
                rows.append(
                    {
                        "item_id": r.item_id,
                        "variant": r.variant,
                        "layer": layer,
                        "head": head,
                        "attribution": float(r.attributions[layer, head]),
                        "j_full": r.j_full,
                        "j_baseline": r.j_baseline,
                        "completeness_delta": delta,
                        "relative_delta": abs(delta) / abs(j_gap) if j_gap else float("nan"),
                    }
                )
    return pd.DataFrame(rows)


def score_table(
    results: Sequence[ItemAttribution], spec: HeadIGSpec, layout: GateLayout, *, model: str, base: str
) -> pd.DataFrame:
    """The per-head scores: one row per (layer, head) in the layer range (see ``docs/attribution.md``).

    dp/stp: score = mean over items of postprocess(IG); michel: score = mean over items of |∂L/∂α| at α = 1.
    ``completeness_delta_mean`` = mean_items |Σ IG − (J(1) − J(α₀))|; ``relative_delta_mean`` = that divided by
    mean_items |J(1) − J(α₀)| (NaN for michel).
    """
    if not results:
        raise ValueError("no items to attribute")
    layers = spec.layer_range(layout.num_layers)
    stacked = np.stack([r.attributions[layers.start : layers.stop] for r in results])  # [N, L_sel, U]
    per_item = np.abs(stacked) if spec.method == "michel" else postprocess(stacked, spec.postprocess)
    n = len(results)
    score = per_item.mean(axis=0)  # [L_sel, U]
    std = per_item.std(axis=0, ddof=1) if n > 1 else np.zeros_like(score)
    if spec.method == "michel":
        delta_mean = relative = float("nan")
    else:
        deltas = np.array([abs(r.completeness_delta) for r in results])
        gaps = np.array([abs(r.j_full - r.j_baseline) for r in results])
        delta_mean = float(deltas.mean())
        relative = float(delta_mean / gaps.mean()) if gaps.mean() > 0 else float("nan")
    grid_layer, grid_head = np.meshgrid(np.arange(layers.start, layers.stop), np.arange(layout.units_per_layer), indexing="ij")
    return pd.DataFrame(
        {
            "model": model,
            "base": base,
            "method": spec.method,
            "layer": grid_layer.ravel().astype(np.int64),
            "head": grid_head.ravel().astype(np.int64),
            "score": score.ravel().astype(np.float64),
            "score_std": std.ravel().astype(np.float64),
            "n_items": np.int64(n),
            "completeness_delta_mean": delta_mean,
            "relative_delta_mean": relative,
        }
    )

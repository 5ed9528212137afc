"""What every intervention on a model shares: switch it in, run, check that it was reached, restore.

The project changes or observes what a model computes without editing model files, in two ways:

* **attention functions** — attention capture (:mod:`attnlab.attention.capture`) and top-k sparse attention
  (:mod:`attnlab.validation.sparse_attention`) register a function with transformers' ``AttentionInterface`` and
  select it by ``config._attn_implementation`` (:func:`attention_implementation`);
* **module hooks** — head gates (:mod:`attnlab.attribution.gates`) and perturbation sites
  (:mod:`attnlab.perturbation.sites`) attach forward (pre-)hooks to modules (:func:`forward_hooks`).

Each must restore the model exactly when the block ends, also when it raises, and each must fail loudly when the
model's code path never reached it (a fused kernel, a model with its own attention code): a silent no-op would
measure the unmodified model. A :class:`CallCounter` counts the calls, :func:`require_reached` raises on zero.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

if TYPE_CHECKING:  # torch is imported by the callers; this module stays import-light
    from torch.utils.hooks import RemovableHandle
    from transformers import PreTrainedModel

__all__ = [
    "CallCounter",
    "InterventionNotReachedError",
    "attention_implementation",
    "forward_hooks",
    "require_reached",
]


class InterventionNotReachedError(RuntimeError):
    """A forward pass ran inside the intervention but never reached it, so it would silently do nothing."""


@dataclass
class CallCounter:
    """How often an intervention ran (checked after the forward pass)."""

    calls: int = 0


def require_reached(
    counter: CallCounter, what: str, error: type[Exception] = InterventionNotReachedError
) -> None:
    """Raise ``error`` naming ``what`` if ``counter`` saw no call."""
    if counter.calls == 0:
        raise error(
            f"{what} never ran during the forward pass; this model's code path bypasses it, so the intervention "
            "would silently do nothing"
        )


@contextmanager
def attention_implementation(model: "PreTrainedModel", name: str) -> Iterator[None]:
    """Run the block with the registered attention function ``name``; the previous implementation after.

    Raises:
        RuntimeError: the model does not accept ``name`` (its attention modules do not dispatch through
            transformers' ``ALL_ATTENTION_FUNCTIONS``).
    """
    previous = model.config._attn_implementation
    model.set_attn_implementation(name)
    if model.config._attn_implementation != name:
        model.set_attn_implementation(previous)
        raise RuntimeError(f"{type(model).__name__} does not accept the attention implementation {name!r}")
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


@contextmanager
def forward_hooks(registrations: Iterable[Callable[[], "RemovableHandle"]]) -> Iterator[None]:
    """Register every hook (each ``registration()`` returns its handle) for the block; remove them all after,
    also those registered before a failing registration."""
    handles: list[RemovableHandle] = []
    try:
        for register in registrations:
            handles.append(register())
        yield
    finally:
        for handle in reversed(handles):
            handle.remove()

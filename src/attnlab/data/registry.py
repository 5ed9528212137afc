"""Registries: the extension points of the data stage.

Base datasets and noise types are looked up by name, so a study (or a test) can
add its own without touching attnlab::

    from attnlab.data import register_dataset, register_noise

    @register_dataset("toy")
    def load_toy(spec: dict, split: str, seed: int, n: int | None) -> pd.DataFrame:
        ...  # return a frame with BASE_COLUMNS

    @register_noise("shout")
    def shout(item: NoiseContext, rng: random.Random) -> str:
        return "Everyone in the room was shouting."

A loader returns the base-dataset frame (see :data:`attnlab.data.schema.BASE_COLUMNS`);
:func:`load_base_dataset` validates it. A noise function returns one sentence to
insert; :func:`attnlab.data.noise.apply_noise` does the rest (position, insertion,
span bookkeeping).

The built-in loaders and noise types register themselves when their modules are imported; the package
``attnlab.data`` imports them, and Python runs a package's ``__init__`` before any of its modules, so the
registries are filled before anyone reads them and this module imports none of the implementations.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Callable, Mapping, TypeVar

import pandas as pd

from attnlab.data.schema import validate_base_frame

if TYPE_CHECKING:
    from attnlab.data.noise import NoiseContext

DatasetLoader = Callable[[Mapping[str, Any], str, int, "int | None"], pd.DataFrame]
NoiseFunction = Callable[["NoiseContext", random.Random], str]

_DATASETS: dict[str, DatasetLoader] = {}
_NOISE: dict[str, NoiseFunction] = {}

F = TypeVar("F", bound=Callable[..., Any])

# Reserved noise name: the identity (no insertion). It is handled by apply_noise itself.
CLEAN = "clean"


def _register(table: dict[str, Any], kind: str, name: str, reserved: tuple[str, ...] = ()) -> Callable[[F], F]:
    if not isinstance(name, str) or not name or name != name.strip():
        raise ValueError(f"{kind} name must be a non-empty string without surrounding spaces, got {name!r}")
    if name in reserved:
        raise ValueError(f"{kind} name {name!r} is reserved")

    def decorator(func: F) -> F:
        if name in table and table[name] is not func:
            raise ValueError(f"{kind} {name!r} is already registered (by {table[name].__module__}.{table[name].__qualname__})")
        table[name] = func
        return func

    return decorator


def register_dataset(name: str) -> Callable[[F], F]:
    """Decorator: register ``loader(spec, split, seed, n) -> DataFrame`` under ``name`` (``spec["loader"]``)."""
    return _register(_DATASETS, "dataset loader", name)


def register_noise(name: str) -> Callable[[F], F]:
    """Decorator: register ``noise(item: NoiseContext, rng: random.Random) -> str`` under ``name``."""
    return _register(_NOISE, "noise type", name, reserved=(CLEAN,))


def unregister_dataset(name: str) -> None:
    """Remove a registered loader (for tests that register toys)."""
    _DATASETS.pop(name, None)


def unregister_noise(name: str) -> None:
    """Remove a registered noise type (for tests that register toys)."""
    _NOISE.pop(name, None)


def available_datasets() -> list[str]:
    """Names of the registered dataset loaders, sorted."""
    return sorted(_DATASETS)


def available_noise_types() -> list[str]:
    """Names of the registered noise types plus ``"clean"``, sorted."""
    return sorted([CLEAN, *_NOISE])


def get_noise_function(name: str) -> NoiseFunction:
    """The noise function registered as ``name``.

    Raises:
        KeyError: naming the unknown type and the known ones.
    """
    if name not in _NOISE:
        raise KeyError(f"unknown noise type {name!r}; known: {', '.join(available_noise_types())}")
    return _NOISE[name]


def load_base_dataset(spec: Mapping[str, Any], split: str, seed: int, n: int | None = None) -> pd.DataFrame:
    """Load split ``split`` of the dataset described by ``spec``, dispatching on ``spec["loader"]``.

    Args:
        spec: the dataset's config section; ``spec["loader"]`` names a registered loader,
            the other keys are the loader's own.
        split: ``"train"`` or ``"test"`` (loaders may support others).
        seed: seed for loaders that sample or generate.
        n: keep only the first ``n`` items (``None``: all).

    Returns:
        The base-dataset frame, validated against :data:`~attnlab.data.schema.BASE_COLUMNS`.
    """
    if not isinstance(spec, Mapping):
        raise TypeError(f"dataset spec must be a mapping, got {type(spec).__name__}")
    if "loader" not in spec:
        raise KeyError(f"dataset spec has no 'loader' key (one of: {', '.join(available_datasets())}); spec={dict(spec)}")
    name = spec["loader"]
    if name not in _DATASETS:
        raise KeyError(f"unknown dataset loader {name!r} in spec key 'loader'; known: {', '.join(available_datasets())}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
        raise ValueError(f"n must be a non-negative int or None, got {n!r}")
    frame = _DATASETS[name](spec, split, seed, n)
    frame = validate_base_frame(frame, source=f"dataset loader {name!r}")
    if n is not None and len(frame) > n:
        raise ValueError(f"dataset loader {name!r} returned {len(frame)} rows for n={n}")
    return frame

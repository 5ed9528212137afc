"""The data stage: base datasets (synthetic and GSM8K) and span-labelled noise injection.

Public API::

    load_base_dataset(spec, split, seed, n)  -> base frame (BASE_COLUMNS)
    apply_noise(df, noise_type, seed)        -> data table (DATA_COLUMNS)
    write_dataset(df, path, metadata)        -> Parquet with DATA_SCHEMA
    register_dataset(name) / register_noise(name)   extension points
    available_datasets() / available_noise_types()

CLI: ``attnlab data base …`` and ``attnlab data noise …`` (see :mod:`attnlab.data.cli`).
"""

from attnlab.data.errors import DataFormatError
from attnlab.data.registry import (
    available_datasets,
    available_noise_types,
    load_base_dataset,
    register_dataset,
    register_noise,
    unregister_dataset,
    unregister_noise,
)
from attnlab.data.schema import (
    BASE_COLUMNS,
    BASE_SCHEMA,
    DATA_COLUMNS,
    DATA_SCHEMA,
    NOISE_COLUMNS,
    read_dataset,
    validate_base_frame,
    validate_data_frame,
    write_dataset,
)
from attnlab.data.noise import KeyQuantity, NoiseContext, NoiseError, apply_noise  # noqa: E402  (registers inf/rcs/sd)
from attnlab.data import gsm8k, synthetic  # noqa: E402,F401  (register the loaders)

__all__ = [
    "BASE_COLUMNS",
    "BASE_SCHEMA",
    "DATA_COLUMNS",
    "DATA_SCHEMA",
    "NOISE_COLUMNS",
    "DataFormatError",
    "KeyQuantity",
    "NoiseContext",
    "NoiseError",
    "apply_noise",
    "available_datasets",
    "available_noise_types",
    "load_base_dataset",
    "read_dataset",
    "register_dataset",
    "register_noise",
    "unregister_dataset",
    "unregister_noise",
    "validate_base_frame",
    "validate_data_frame",
    "write_dataset",
]

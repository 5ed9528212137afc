"""Atomic, deterministic Parquet I/O with provenance metadata.

Every table attnlab writes goes through :func:`write_parquet`:

* the file is written to a temporary name in the same folder and renamed into
  place, so a killed job never leaves a half-written output behind;
* the config values that produced the table are stored as JSON in the Parquet
  schema metadata under ``attnlab`` (read them back with :func:`read_metadata`);
* no wall-clock timestamps or absolute paths are stored, so the same inputs and
  config give byte-identical files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from contextlib import contextmanager

METADATA_KEY = b"attnlab"


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.is_file():  # mkstemp creates 0600; give the file the usual umask-based mode
            os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``path``; on success it replaces ``path``.

    On an exception the temporary folder is removed and ``path`` is untouched. An
    existing ``path`` is moved aside first and deleted after the new folder is in
    place, so at no point is a half-written folder visible under ``path``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_current_umask())  # mkdtemp makes 0700; give the folder normal permissions
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old: Path | None = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        old.rmdir()
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as sorted, indented JSON atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_parquet(
    df: pd.DataFrame,
    path: str | os.PathLike[str],
    metadata: dict[str, Any] | None = None,
    schema: pa.Schema | None = None,
) -> None:
    """Write ``df`` to ``path`` atomically, with ``metadata`` recorded as JSON.

    Args:
        df: the table; its index is dropped.
        path: destination ``.parquet`` file; parent folders are created.
        metadata: JSON-serialisable provenance (config values, seeds, inputs).
        schema: optional explicit Arrow schema (use it for list/struct columns
            that may be empty, so the column type never depends on the data).
    """
    table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    existing = dict(table.schema.metadata or {})
    existing.pop(b"pandas", None)  # pandas metadata carries versions; keep files byte-stable
    if metadata is not None:
        existing[METADATA_KEY] = json.dumps(metadata, sort_keys=True, default=str).encode()
    table = table.replace_schema_metadata(existing)
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp, compression="zstd", write_statistics=True)


def read_parquet(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a table written by :func:`write_parquet`."""
    return pq.read_table(path).to_pandas()


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the provenance dict stored by :func:`write_parquet` (``{}`` if none)."""
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(METADATA_KEY)
    return json.loads(raw) if raw else {}

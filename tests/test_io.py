"""Atomic, deterministic Parquet I/O."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from attnlab.io import atomic_dir, atomic_path, read_metadata, read_parquet, write_parquet

SPANS = pa.list_(pa.struct([("start", pa.int64()), ("end", pa.int64())]))
SCHEMA = pa.schema([("id", pa.string()), ("spans", SPANS)])


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"id": ["a", "b"], "spans": [[{"start": 1, "end": 3}], []]})


def test_same_table_same_bytes_and_metadata_round_trip(tmp_path: Path) -> None:
    write_parquet(_frame(), tmp_path / "x.parquet", {"seed": 3, "spec": {"n": 2}}, schema=SCHEMA)
    write_parquet(_frame(), tmp_path / "y.parquet", {"spec": {"n": 2}, "seed": 3}, schema=SCHEMA)
    assert (tmp_path / "x.parquet").read_bytes() == (tmp_path / "y.parquet").read_bytes()
    assert read_metadata(tmp_path / "x.parquet") == {"seed": 3, "spec": {"n": 2}}
    back = read_parquet(tmp_path / "x.parquet")
    assert back["id"].tolist() == ["a", "b"]
    assert [list(s) for s in back["spans"]] == [[{"start": 1, "end": 3}], []]


def test_failed_write_leaves_previous_file_and_no_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_written_files_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_parquet(_frame(), tmp_path / "x.parquet", schema=SCHEMA)
    finally:
        os.umask(old)
    assert (tmp_path / "x.parquet").stat().st_mode & 0o777 == 0o644


def test_atomic_dir_replaces_a_folder_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "weights").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "weights").write_text("half")
            raise RuntimeError("killed")
    assert (target / "weights").read_text() == "v1"
    with atomic_dir(target) as tmp:
        (tmp / "weights").write_text("v2")
    assert (target / "weights").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]

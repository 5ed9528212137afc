"""The tables of the data stage: columns, Arrow schema, validation, writing.

Base dataset (what a loader returns), columns in this order:

====================  ===========================  =================================================
column                type                         meaning
====================  ===========================  =================================================
id                    str                          unique item id, e.g. ``"synthetic-test-00012"``
split                 str                          ``"train"`` / ``"test"``
family                str                          problem family (``"gsm8k"`` for GSM8K)
topic                 str                          shopping, school, cooking, …, ``"general"``
question              str                          the question text
answer                str                          worked solution, GSM8K format, last line ``#### N``
answer_number         float64                      N
key_spans             list<struct<start, end>>     character spans in ``question`` of the quantities
                                                   the solution uses (``question[start:end]``)
====================  ===========================  =================================================

Data table (:data:`DATA_COLUMNS`, what ``attnlab data base|noise`` write) = the base
columns, then:

========================  ========================  ===============================================
original_question         str                       the question before noise insertion
noise_type                str                       ``"clean"``, ``"inf"``, ``"rcs"``, ``"sd"``, …
noise_spans               list<struct<start, end>>  spans in ``question`` of what was inserted,
                                                    each including exactly one joining space
insert_sentence_index     int64                     noise went before this sentence of
                                                    ``original_question`` (0-based); -1 if clean
========================  ========================  ===============================================

Invariants (checked by :func:`validate_data_frame`): spans lie inside ``question``;
removing the noise spans from ``question`` gives ``original_question``; a clean row has
``question == original_question``, no noise spans and index -1.
"""

from __future__ import annotations

import math
import os
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from attnlab.io import read_parquet, write_parquet

SPAN_TYPE = pa.struct([pa.field("start", pa.int64(), nullable=False), pa.field("end", pa.int64(), nullable=False)])
SPANS_TYPE = pa.list_(pa.field("item", SPAN_TYPE, nullable=False))

BASE_COLUMNS: tuple[str, ...] = (
    "id",
    "split",
    "family",
    "topic",
    "question",
    "answer",
    "answer_number",
    "key_spans",
)
NOISE_COLUMNS: tuple[str, ...] = ("original_question", "noise_type", "noise_spans", "insert_sentence_index")
DATA_COLUMNS: tuple[str, ...] = BASE_COLUMNS + NOISE_COLUMNS

_STRING_COLUMNS = ("id", "split", "family", "topic", "question", "answer", "original_question", "noise_type")
_SPAN_COLUMNS = ("key_spans", "noise_spans")

_ARROW_TYPES: dict[str, pa.DataType] = {
    **{name: pa.string() for name in _STRING_COLUMNS},
    "answer_number": pa.float64(),
    "key_spans": SPANS_TYPE,
    "noise_spans": SPANS_TYPE,
    "insert_sentence_index": pa.int64(),
}

BASE_SCHEMA = pa.schema([pa.field(name, _ARROW_TYPES[name], nullable=False) for name in BASE_COLUMNS])
DATA_SCHEMA = pa.schema([pa.field(name, _ARROW_TYPES[name], nullable=False) for name in DATA_COLUMNS])

Span = dict[str, int]


def spans_to_list(cell: Any, where: str) -> list[Span]:
    """Normalise a span-list cell (list / numpy array of dicts or (start, end) pairs) to ``[{"start", "end"}]``."""
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        raise ValueError(f"{where}: span list is missing")
    out: list[Span] = []
    for span in list(cell):
        if isinstance(span, Mapping):
            if set(span) != {"start", "end"}:
                raise ValueError(f"{where}: span {dict(span)} must have exactly the keys 'start' and 'end'")
            start, end = span["start"], span["end"]
        else:
            start, end = span
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (start, end)):
            raise ValueError(f"{where}: span ({start!r}, {end!r}) must be integers")
        out.append({"start": int(start), "end": int(end)})
    return out


def _check_columns(df: pd.DataFrame, columns: tuple[str, ...], source: str) -> pd.DataFrame:
    missing = [c for c in columns if c not in df.columns]
    extra = [c for c in df.columns if c not in columns]
    if missing or extra:
        raise ValueError(f"{source}: table must have columns {list(columns)}; missing {missing}, unexpected {extra}")
    return df.loc[:, list(columns)].reset_index(drop=True)


def _check_spans(question: str, spans: Iterable[Span], where: str) -> None:
    for span in spans:
        if not 0 <= span["start"] < span["end"] <= len(question):
            raise ValueError(f"{where}: span {span} is outside the question (length {len(question)})")


def validate_base_frame(df: pd.DataFrame, source: str = "base dataset") -> pd.DataFrame:
    """Check a base-dataset frame and return it with normalised column order and types.

    Raises:
        ValueError: naming ``source``, the column and the row id of the first problem.
    """
    df = _check_columns(df, BASE_COLUMNS, source)
    return _normalise(df, BASE_COLUMNS, source)


def validate_data_frame(df: pd.DataFrame, source: str = "data table") -> pd.DataFrame:
    """Check a data table (base columns + noise columns) and its noise invariants; return it normalised."""
    df = _check_columns(df, DATA_COLUMNS, source)
    df = _normalise(df, DATA_COLUMNS, source)
    for row in df.itertuples(index=False):
        where = f"{source}: row id={row.id!r}"
        question, spans = row.question, row.noise_spans
        _check_spans(question, spans, f"{where}, column 'noise_spans'")
        restored, cursor = [], 0
        for span in sorted(spans, key=lambda s: s["start"]):
            if span["start"] < cursor:
                raise ValueError(f"{where}: noise spans overlap")
            restored.append(question[cursor : span["start"]])
            cursor = span["end"]
        restored.append(question[cursor:])
        if "".join(restored) != row.original_question:
            raise ValueError(f"{where}: removing the noise spans from 'question' does not give 'original_question'")
        if row.noise_type == "clean" and (spans or row.insert_sentence_index != -1):
            raise ValueError(f"{where}: a clean row must have no noise spans and insert_sentence_index -1")
    return df


def _normalise(df: pd.DataFrame, columns: tuple[str, ...], source: str) -> pd.DataFrame:
    out: dict[str, list[Any]] = {}
    ids = df["id"].tolist()
    for name in columns:
        values = df[name].tolist()
        if name in _STRING_COLUMNS:
            for item_id, value in zip(ids, values):
                if not isinstance(value, str):
                    raise ValueError(f"{source}: column {name!r} of row id={item_id!r} must be a string, got {value!r}")
        elif name == "answer_number":
            try:
                values = [float(v) for v in values]
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{source}: column 'answer_number' must be numeric ({exc})") from None
            for item_id, value in zip(ids, values):
                if not math.isfinite(value):
                    raise ValueError(f"{source}: answer_number of row id={item_id!r} is not finite")
        elif name == "insert_sentence_index":
            for item_id, value in zip(ids, values):
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < -1:
                    raise ValueError(f"{source}: insert_sentence_index of row id={item_id!r} must be an int >= -1")
            values = [int(v) for v in values]
        elif name in _SPAN_COLUMNS:
            values = [spans_to_list(v, f"{source}: column {name!r} of row id={i!r}") for i, v in zip(ids, values)]
        out[name] = values
    if len(set(ids)) != len(ids):
        dup = pd.Series(ids)[pd.Series(ids).duplicated()].iloc[0]
        raise ValueError(f"{source}: duplicate id {dup!r}")
    for item_id, question, spans in zip(ids, out["question"], out["key_spans"]):
        _check_spans(question, spans, f"{source}: row id={item_id!r}, column 'key_spans'")
    frame = pd.DataFrame(out, columns=list(columns))
    frame["answer_number"] = frame["answer_number"].astype("float64")
    if "insert_sentence_index" in frame:
        frame["insert_sentence_index"] = frame["insert_sentence_index"].astype("int64")
    return frame


def write_dataset(df: pd.DataFrame, path: str | os.PathLike[str], metadata: Mapping[str, Any]) -> None:
    """Validate ``df`` as a data table and write it with :data:`DATA_SCHEMA` (atomic, byte-deterministic)."""
    df = validate_data_frame(df, source=f"table for {os.fspath(path)}")
    write_parquet(df, path, metadata=dict(metadata), schema=DATA_SCHEMA)


def read_dataset(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a data table written by :func:`write_dataset`, validated, spans as lists of dicts."""
    return validate_data_frame(read_parquet(path), source=os.fspath(path))

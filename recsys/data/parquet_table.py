"""A user's table in a Parquet file, read by its Arrow types.

Spark, DuckDB, Polars and Hive write the contract's columns in types pandas alone would
misread: a ``genres`` list of names (joined here with ``|``), text as bytes without Parquet's
UTF-8 annotation (decoded here; ``encoding`` where it is not UTF-8), and lists, structs, maps or
UUIDs where a contract column holds none of those (``column type``: pandas would load their
repr, a title "{'a': 1}", or compare a list of one id as the id). A contract column stored twice
is a ``duplicate column``. :mod:`recsys.data.coerce` then casts the columns as it does a CSV's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from recsys.data.findings import Finding, finding_of, repeated_columns
from recsys.data.parquet import read_parquet, read_parquet_schema
from recsys.data.schema import TableSpec

__all__ = ["read_parquet_table"]


def _arrow_storage(kind: pa.DataType) -> pa.DataType:
    """The type a column's values are stored as: extension types (``arrow.uuid``) and
    dictionary encoding (Spark, Polars' categoricals) unwrapped."""
    while True:
        if isinstance(kind, pa.BaseExtensionType):
            kind = kind.storage_type
        elif pa.types.is_dictionary(kind):
            kind = kind.value_type
        else:
            return kind


# The types a Parquet file reads back as (view types never come out of a Parquet reader).
def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _is_bytes(kind: pa.DataType) -> bool:
    return pa.types.is_binary(kind) or pa.types.is_large_binary(kind)


def _is_text_list(kind: pa.DataType) -> bool:
    return ((pa.types.is_list(kind) or pa.types.is_large_list(kind)
             or pa.types.is_fixed_size_list(kind)) and _is_text(_arrow_storage(kind.value_type)))


_EXPECTED = {"int64": "whole numbers (an integer type)", "float32": "numbers",
             "string": "text (a string type)"}


def _column_type(path: Path, spec: TableSpec, name: str, kind: pa.DataType) -> Finding | None:
    """A Parquet column whose type holds no value of the contract's kind: lists, structs, maps
    (pandas would load their repr, a title "{'a': 1}", or compare a list of one id as the id)
    and fixed-size bytes (a UUID is no integer id). ``genres`` may be a list of names, as
    Spark, Polars and DuckDB write them: it is joined with "|"."""
    stored = _arrow_storage(kind)
    if name == "genres" and _is_text_list(stored):
        return None
    if not (pa.types.is_nested(stored) or pa.types.is_fixed_size_binary(stored)):
        return None
    expected = ("a timestamp, unix seconds or ISO-8601 text" if name == "timestamp"
                else _EXPECTED[spec.column(name).dtype])
    if name == "genres":
        expected += " or a list of names"
    return Finding(table=spec.name, column=name, rule="column type", bad_count=0,
                   detail=f"{path.name} stores {name} as {kind}: expected {expected}")


def _decoded(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(the values of a Parquet bytes column as text, mask of those not UTF-8). Writers that
    store text without Parquet's UTF-8 annotation (Hive, Impala) give pandas bytes."""
    bad = np.zeros(len(raw), dtype=bool)
    out = []
    for row, value in enumerate(raw.astype(object).tolist()):
        if isinstance(value, (bytes, bytearray, memoryview)):
            try:
                value = bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                value, bad[row] = None, True
        out.append(value)
    return pd.Series(out, index=raw.index, dtype=object), pd.Series(bad, index=raw.index)


def _joined(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(a list-of-names column as pipe-separated text, mask of missing lists and of lists
    holding a missing name). An empty list stays an empty text, refused as no genre."""
    bad = np.zeros(len(raw), dtype=bool)
    out: list[str | None] = []
    for row, names in enumerate(raw.tolist()):
        names = None if names is None else list(names)
        if names is None or any(name is None for name in names):
            out.append(None)
            bad[row] = True
        else:
            out.append("|".join(names))
    return pd.Series(out, index=raw.index, dtype=object), pd.Series(bad, index=raw.index)


def read_parquet_table(path: Path, spec: TableSpec) -> tuple[pd.DataFrame | None,
                                                           list[Finding]]:
    """A Parquet table as pandas columns, its schema checked first: a contract column stored
    twice (``duplicate column``) or as a type that holds no such value (``column type``)
    refuses the file; bytes are decoded as UTF-8 (``encoding`` where not) and a list of
    genres joined. Only the contract columns are read when all are there: another column of a
    type pandas cannot load does not stop a table that does not need it."""
    schema = read_parquet_schema(path)
    names = list(schema.names)
    present = [name for name in spec.names if name in names]
    refused = repeated_columns(spec.name, path.name, spec.names, names) or [
        found for name in present
        if (found := _column_type(path, spec, name, schema.field(name).type))]
    if refused:
        return None, refused
    frame = read_parquet(path, columns=present if len(present) == len(spec.names) else None)
    # pandas' metadata brings a column back as the index it was when written
    # (``set_index("user_id").to_parquet(…)``): it is still one of the file's columns
    if any(name is not None for name in frame.index.names):
        frame = frame.reset_index()
    findings = []
    for name in present:
        stored, raw = _arrow_storage(schema.field(name).type), frame[name]
        if _is_bytes(stored):
            frame[name], bad = _decoded(raw)
            if bad.any():
                findings.append(finding_of(spec.name, name, "encoding", bad, raw,
                                           f"{path.name} stores {name} as bytes that are not UTF-8 "
                                           "text: write it as UTF-8 strings"))
        elif name == "genres" and _is_text_list(stored):
            frame[name], bad = _joined(raw)
            if bad.any():
                shown = raw.map(lambda names: None if names is None else str(list(names)))
                findings.append(finding_of(spec.name, name, "not null", bad, shown,
                                           "a missing list of genres, or a missing name in one"))
    return frame, findings

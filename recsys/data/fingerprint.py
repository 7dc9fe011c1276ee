"""Content fingerprint of tables: sha256 over canonical, library-version-independent bytes.

Canonical means: rows sorted by the table's sort keys, columns in schema order, each column
encoded as its name, its dtype and then little-endian values (numbers) or sorted unique
values plus int32 codes (strings, nulls as code -1). The digest therefore does not depend on
row order, on the pandas index, on the Parquet writer or on the pyarrow version, only on the
table contents and dtypes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["canonical_order", "update_digest", "table_digest"]


def _sort_key(series: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series):
        values = series.to_numpy()
        if values.dtype.kind == "f":
            return np.where(np.isnan(values), np.inf, values)
        return values
    codes, _ = pd.factorize(series, sort=True, use_na_sentinel=True)
    return codes


def _is_sorted(keys: list[np.ndarray]) -> bool:
    """Whether rows are already in lexicographic order of ``keys`` (most significant first)."""
    if len(keys[0]) < 2:
        return True
    bad = np.zeros(len(keys[0]) - 1, dtype=bool)
    decided = np.zeros(len(keys[0]) - 1, dtype=bool)
    for key in keys:
        a, b = key[:-1], key[1:]
        bad |= ~decided & (a > b)
        decided |= a != b
    return not bad.any()


def canonical_order(frame: pd.DataFrame, keys: Sequence[str]) -> np.ndarray | None:
    """Row positions that sort ``frame`` by ``keys`` (first key most significant), stably;
    ``None`` when the rows are already in that order."""
    if len(frame) == 0 or not keys:
        return None
    sort_keys = [_sort_key(frame[key]) for key in keys]
    if _is_sorted(sort_keys):
        return None
    # np.lexsort sorts by the last key first.
    return np.lexsort(sort_keys[::-1])


def _column_bytes(series: pd.Series) -> list[bytes | memoryview]:
    dtype = series.dtype
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_extension_array_dtype(dtype):
        values = series.to_numpy()
        if values.dtype.kind == "f":  # one bit pattern for every NaN
            values = np.where(np.isnan(values), values.dtype.type(np.nan), values)
        values = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))
        return [memoryview(values).cast("B")]
    codes, uniques = pd.factorize(series, sort=True, use_na_sentinel=True)
    text = "\x1f".join(str(u) for u in uniques).encode("utf-8")
    codes = np.ascontiguousarray(codes, dtype="<i4")
    return [len(uniques).to_bytes(8, "little"), text, memoryview(codes).cast("B")]


def update_digest(digest: "hashlib._Hash", name: str, frame: pd.DataFrame,
                  columns: Sequence[str], sort_keys: Sequence[str]) -> None:
    """Feed one table's canonical bytes into ``digest``."""
    order = canonical_order(frame, sort_keys)
    digest.update(f"table:{name}:rows={len(frame)}\n".encode())
    for column in columns:
        series = frame[column]
        if order is not None:
            series = series.take(order)
        digest.update(f"column:{column}:{series.dtype}\n".encode())
        for chunk in _column_bytes(series):
            digest.update(chunk)


def table_digest(name: str, frame: pd.DataFrame, columns: Sequence[str],
                 sort_keys: Sequence[str]) -> str:
    """Hex sha256 of one table."""
    digest = hashlib.sha256()
    update_digest(digest, name, frame, columns, sort_keys)
    return digest.hexdigest()

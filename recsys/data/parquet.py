"""Reading a local Parquet file without a Python file object in Arrow's reader threads.

Given a path alone, pandas opens a Python file and Arrow's reader threads wrap what they read
from it in Python objects, some of which they let go of after ``read_parquet`` has returned.
One let go of while the interpreter finalizes (a command that exits right after reading: a
refusal, a short job) takes the GIL then: CPython ends that thread inside a C++ destructor and
the process dies of SIGABRT ("terminate called without an active exception") instead of
exiting with its code (seen in about 1 of 150 runs of a refused ``marquee traffic replay``
on a loaded machine). Arrow's own file holds no Python objects, so every local Parquet read
of the platform goes through :func:`read_parquet`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["read_parquet", "read_parquet_schema"]


def read_parquet(path: str | Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """``pd.read_parquet(path, columns=…)`` for a local file, opened by Arrow itself. Arrow's
    errors for a file it cannot open do not name the file: then Python opens it, to raise the
    OSError that does (FileNotFoundError, PermissionError, IsADirectoryError).

    Legacy INT96 timestamps (Spark, Hive, Impala) are read in microseconds: in Arrow's default
    nanoseconds, a time past 2262 wraps in silence (the 9999-12-31 "no end" placeholder read
    as 1816-03-29), which no later check can tell from a real time. Files without INT96 (every
    table Marquee writes) read the same either way."""
    import pyarrow.fs as pafs

    path = Path(path)
    try:
        return pd.read_parquet(path, columns=list(columns) if columns is not None else None,
                               filesystem=pafs.LocalFileSystem(),
                               coerce_int96_timestamp_unit="us")
    except OSError:
        with path.open("rb"):  # raises the missing or unreadable file's error, naming it
            pass
        raise


def read_parquet_schema(path: str | Path) -> pa.Schema:
    """The Arrow schema of a local Parquet file (its footer only, no data), opened by Arrow
    itself as :func:`read_parquet` does; the same OSError naming the file when it cannot be."""
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        return pq.read_schema(str(path), filesystem=pafs.LocalFileSystem())
    except OSError:
        with path.open("rb"):
            pass
        raise

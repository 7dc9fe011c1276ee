"""Parquet files of a :class:`Dataset` or :class:`RawDataset` in a local directory.

Layout: ``<dir>/interactions.parquet``, ``<dir>/users.parquet``, ``<dir>/items.parquet``; the
same layout as ``datasets/<name>/<fingerprint>/`` in the object store. Files are written to a
temporary name and renamed, so a reader never sees half a table.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from recsys.data.errors import DataSourceError, DataValidationError
from recsys.data.parquet import read_parquet
from recsys.data.schema import RAW_TABLES, TABLES, Dataset, RawDataset, TableSpec, conform

__all__ = [
    "TABLE_NAMES",
    "write_dataset",
    "read_dataset",
    "write_raw_dataset",
    "read_raw_dataset",
    "has_tables",
]

TABLE_NAMES: tuple[str, str, str] = ("interactions", "users", "items")


def _write(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.to_parquet(tmp, index=False, compression="zstd")
    tmp.replace(path)


def _write_all(directory: Path, tables: dict[str, pd.DataFrame],
               specs: dict[str, TableSpec]) -> dict[str, Path]:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in TABLE_NAMES:
        paths[name] = directory / f"{name}.parquet"
        _write(conform(tables[name], specs[name]), paths[name])
    return paths


def _read_all(directory: Path, specs: dict[str, TableSpec]) -> dict[str, pd.DataFrame]:
    directory = Path(directory)
    out = {}
    for name in TABLE_NAMES:
        path = directory / f"{name}.parquet"
        if not path.is_file():
            raise DataSourceError(f"{path} is missing")
        frame = read_parquet(path)
        missing = [c for c in specs[name].names if c not in frame.columns]
        if missing:
            raise DataSourceError(f"{path}: missing column(s) {missing}")
        out[name] = _conform_checked(frame, specs[name], path)
    return out


def _conform_checked(frame: pd.DataFrame, spec: TableSpec, path: Path) -> pd.DataFrame:
    """``conform`` for a table read from disk: a value the contract dtype cannot hold (an
    ``<NA>`` id of a nullable column, text in a number column) raises
    :class:`DataValidationError` naming the table, the column and the rule it breaks, as
    validation does, instead of pandas' cast error."""
    try:
        return conform(frame, spec)
    except (ValueError, TypeError) as exc:
        from recsys.data.validate import check_table

        findings = [f for f in check_table(frame, spec) if f.rule != "dtype"]
        if not findings:
            raise
        raise DataValidationError(findings, title=f"{path}: data validation failed") from exc


def has_tables(directory: Path) -> bool:
    """Whether ``directory`` holds all three Parquet tables."""
    return all((Path(directory) / f"{name}.parquet").is_file() for name in TABLE_NAMES)


def write_dataset(dataset: Dataset, directory: Path) -> dict[str, Path]:
    """Write the three contract tables as Parquet; returns ``{table: path}``."""
    return _write_all(directory, dataset.tables(), TABLES)


def read_dataset(directory: Path) -> Dataset:
    """Read a directory written by :func:`write_dataset` (contract dtypes enforced)."""
    return Dataset(**_read_all(directory, TABLES))


def write_raw_dataset(raw: RawDataset, directory: Path) -> dict[str, Path]:
    return _write_all(directory, raw.tables(), RAW_TABLES)


def read_raw_dataset(directory: Path) -> RawDataset:
    return RawDataset(**_read_all(directory, RAW_TABLES))

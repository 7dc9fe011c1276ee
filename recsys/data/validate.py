"""Validate a :class:`Dataset` against the data contract.

:func:`check_dataset` returns every :class:`Finding`; :func:`validate_dataset` raises
:class:`DataValidationError` with all of them (message and ``.report``) when there is any.
Rules (the ``rule`` field of a finding):

``missing column``, ``dtype``, ``integer``, ``numeric``, ``not null``, ``non-empty``,
``positive id``, ``rating range``, ``timestamp range``, ``allowed values``, ``lower case``,
``year range``, ``unique key``, ``duplicate rows``, ``known user``, ``known item``; and, for raw
files read through :mod:`recsys.data.coerce`, ``readable file``, ``encoding``, ``separator``,
``empty file``, ``missing file``, ``ambiguous file``, ``duplicate column``, ``unclosed quote``,
``column type``, ``precision`` and ``parseable timestamp``. Where the cause is a common one,
the finding's detail says what was seen and what to change (a close column name, milliseconds
for seconds).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.coerce import coerce_raw_frame, read_dataset_files
from recsys.data.errors import DataValidationError
from recsys.data.findings import Finding, examples_of, missing_columns, rows_of
from recsys.data.schema import (
    AGE_BUCKETS,
    EVENTS,
    GENDERS,
    GENRES,
    MIN_TIMESTAMP,
    REGIONS,
    TABLES,
    Dataset,
    TableSpec,
)

__all__ = [
    "Finding",
    "check_table",
    "check_dataset",
    "check_references",
    "validate_dataset",
    "validate_directory",
    "coerce_raw_frame",
]

_DAY = 86_400


def _dtype_ok(series: pd.Series, expected: str) -> bool:
    if expected == "string":
        return isinstance(series.dtype, pd.StringDtype)
    return str(series.dtype) == expected


def _numeric_view(series: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(numeric values with NaN for junk, mask of non-null values that are not numbers)."""
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series):
        return series.astype("float64"), pd.Series(False, index=series.index)
    values = pd.to_numeric(series, errors="coerce")
    junk = values.isna() & series.notna()
    return values.astype("float64"), junk


def _finding(spec: TableSpec, column: str, rule: str, bad: pd.Series, values: pd.Series,
             detail: str = "") -> Finding | None:
    count = int(bad.sum())
    if count == 0:
        return None
    return Finding(table=spec.name, column=column, rule=rule, bad_count=count,
                   examples=examples_of(values[bad]), rows=rows_of(bad), detail=detail)


def _value_rules(now: float) -> dict[str, tuple[str, Callable[[pd.Series], pd.Series], str]]:
    """column → (rule, bad-row predicate on the numeric or string view, detail)."""
    max_ts = int(now) + _DAY
    max_year = time.gmtime(now).tm_year + 5
    genre_set = set(GENRES)

    def bad_genres(s: pd.Series) -> pd.Series:
        parts = s.fillna("").astype(str).str.split("|")
        return parts.map(lambda names: not names or any(n not in genre_set for n in names))

    return {
        "user_id": ("positive id", lambda v: v <= 0, "ids must be > 0"),
        "item_id": ("positive id", lambda v: v <= 0, "ids must be > 0"),
        "rating": ("rating range", lambda v: (v < 0) | (v > 5), "0 <= rating <= 5"),
        "timestamp": ("timestamp range", lambda v: (v < MIN_TIMESTAMP) | (v > max_ts),
                      f"unix seconds between {MIN_TIMESTAMP} (1990-01-01) and now + 1 day "
                      f"({max_ts})"),
        "year": ("year range", lambda v: (v != 0) & ((v < 1870) | (v > max_year)),
                 f"0 (unknown) or 1870..{max_year}"),
        "event": ("allowed values", lambda s: ~s.isin(EVENTS), "one of " + ", ".join(EVENTS)),
        "age_bucket": ("allowed values", lambda s: ~s.isin(AGE_BUCKETS),
                       "one of " + ", ".join(AGE_BUCKETS)),
        "gender": ("allowed values", lambda s: ~s.isin(GENDERS), "one of M, F, U"),
        "region": ("allowed values", lambda s: ~s.isin(REGIONS), "US-0 … US-9, non-US, unknown"),
        "occupation": ("lower case", lambda s: (s != s.str.lower()) | (s.str.strip() == ""),
                       "non-empty lower-case text, 'unknown' when missing"),
        "genres": ("allowed values", bad_genres, "pipe-separated names from GENRES"),
    }


def _unit_hint(stamps: pd.Series, now: float) -> str:
    """What to do when every timestamp out of range is in range once divided by 1000, 10**6 or
    10**9: Java and JavaScript clocks count milliseconds, Spark and Kafka micro- or
    nanoseconds, and the contract seconds."""
    if stamps.empty:
        return ""
    for unit, factor in (("milliseconds", 10**3), ("microseconds", 10**6),
                         ("nanoseconds", 10**9)):
        seconds = stamps / factor
        if ((seconds >= MIN_TIMESTAMP) & (seconds <= int(now) + _DAY)).all():
            return f"; the values look like {unit}: divide by {factor}"
    return ""


def check_table(frame: pd.DataFrame, spec: TableSpec, now: float | None = None) -> list[Finding]:
    """Findings for one table on its own (columns, dtypes, nulls, values, keys)."""
    now = time.time() if now is None else now
    if not isinstance(frame, pd.DataFrame):
        return [Finding(table=spec.name, column="*", rule="dtype", bad_count=0,
                        detail=f"expected a DataFrame, got {type(frame).__name__}")]
    findings: list[Finding | None] = [*missing_columns(spec.name, spec.names, frame.columns,
                                                       len(frame))]
    if len(frame) == 0:
        findings.append(Finding(table=spec.name, column="*", rule="non-empty", bad_count=0,
                                detail="the table has no rows"))
    rules = _value_rules(now)
    for col in spec.columns:
        if col.name not in frame.columns:
            continue
        series = frame[col.name]
        nulls = series.isna()
        findings.append(_finding(spec, col.name, "not null", nulls, series))
        view = series
        if col.dtype in ("int64", "float32"):
            view, junk = _numeric_view(series)
            if col.dtype == "int64":
                if series.dtype.kind not in "iu":  # integer dtypes hold whole numbers already
                    junk = junk | (view.notna() & (view % 1 != 0))
                findings.append(_finding(spec, col.name, "integer", junk, series,
                                         "ids and counts must be whole numbers"))
            else:
                findings.append(_finding(spec, col.name, "numeric", junk, series))
            view = view.where(~junk)
        if not _dtype_ok(series, col.dtype):
            findings.append(Finding(table=spec.name, column=col.name, rule="dtype",
                                    bad_count=len(series),
                                    detail=f"expected {col.dtype}, got {series.dtype}"))
        if col.name in rules:
            rule, predicate, detail = rules[col.name]
            valid = view.notna()
            if valid.any():
                checked = view[valid] if col.dtype != "string" else view[valid].astype(str)
                bad = pd.Series(False, index=series.index)
                bad[valid] = np.asarray(predicate(checked), dtype=bool)
                if col.name == "timestamp":
                    detail += _unit_hint(view[bad], now)
                findings.append(_finding(spec, col.name, rule, bad, series, detail))
    key = [c for c in spec.key if c in frame.columns]
    if len(key) == len(spec.key) and len(frame):
        dup = frame.duplicated(subset=key, keep=False)
        if dup.any():
            if len(key) == 1:
                findings.append(_finding(spec, key[0], "unique key", dup, frame[key[0]],
                                         f"{key[0]} must be unique"))
            else:
                rows = frame.loc[dup, key].head(50)
                labels = pd.Series([", ".join(f"{k}={v}" for k, v in zip(key, r, strict=True))
                                    for r in rows.itertuples(index=False)])
                repeats = frame.duplicated(subset=key, keep="first")
                findings.append(Finding(
                    table=spec.name, column="*", rule="duplicate rows",
                    bad_count=int(repeats.sum()), examples=examples_of(labels),
                    rows=rows_of(repeats), detail=f"same {', '.join(key)}"))
    return [f for f in findings if f is not None]


def check_references(tables: dict[str, pd.DataFrame]) -> list[Finding]:
    """Interactions whose user or item is not in the users / items table."""
    out: list[Finding] = []
    inter = tables["interactions"]
    for column, target, rule in (("user_id", "users", "known user"),
                                 ("item_id", "items", "known item")):
        table = tables[target]
        if column not in inter.columns or column not in table.columns or len(inter) == 0:
            continue
        known = pd.to_numeric(table[column], errors="coerce").dropna().to_numpy()
        values = pd.to_numeric(inter[column], errors="coerce")
        bad = pd.Series(~np.isin(values.to_numpy(), known), index=inter.index) & values.notna()
        finding = _finding(TABLES["interactions"], column, rule, bad, inter[column],
                           f"every interaction's {column} must exist in {target}")
        if finding:
            out.append(finding)
    return out


def check_dataset(ds: Dataset, now: float | None = None) -> list[Finding]:
    """Every finding for the three tables and the references between them."""
    findings: list[Finding] = []
    for name, spec in TABLES.items():
        findings += check_table(ds.tables()[name], spec, now)
    findings += check_references(ds.tables())
    return findings


def validate_dataset(ds: Dataset, now: float | None = None) -> None:
    """Raise :class:`DataValidationError` naming every broken rule; return quietly otherwise."""
    findings = check_dataset(ds, now)
    if findings:
        raise DataValidationError(findings)


def validate_directory(directory: Path | str, now: float | None = None) -> Dataset:
    """Read raw files (CSV/TSV/Parquet) from ``directory``, coerce and validate them.

    Returns the contract :class:`Dataset` when everything holds. Otherwise raises one
    :class:`DataValidationError` with the coercion findings (unreadable or empty files,
    unparseable timestamps, non-integer ids) and the validation findings together.
    """
    tables, findings = read_dataset_files(Path(directory))
    # Values that could not be cast are missing after coercion and already reported: their
    # column's "not null" would count them again. Coercion also chose the dtypes (nullable ones
    # only where values are missing), so a "dtype" finding says nothing about the file. Every
    # other rule still holds for the values that were cast (a -2 beside an 'x' is reported).
    coerced = {(f.table, f.column) for f in findings}
    for name, frame in tables.items():
        findings += [f for f in check_table(frame, TABLES[name], now)
                     if f.rule != "dtype"
                     and not (f.rule == "not null" and (f.table, f.column) in coerced)]
    if len(tables) == len(TABLES):
        findings += check_references(tables)
    if findings:
        raise DataValidationError(findings, title=f"{directory}: data validation failed")
    return Dataset(**tables).conformed()

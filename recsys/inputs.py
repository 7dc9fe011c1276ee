"""Checks and conversions of what callers hand :class:`recsys.Recommender`: its three tables
(columns, index, id, number and time dtypes, event kinds) and the user ids of a request. Each
refusal is a ValueError naming the table and column (or argument), never pandas' or numpy's own
error.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping

import numpy as np
import pandas as pd

from recsys.data.coerce import to_seconds
from recsys.data.schema import EVENTS, TABLES

__all__ = ["MAX_TIMESTAMP", "check_events", "check_int", "check_table", "event_times",
           "genre_text", "index_as_columns", "request_user_ids", "with_ids", "with_numbers"]

#: 2100-01-01 in unix seconds; any later time is not in seconds
MAX_TIMESTAMP = 4_102_444_800
_INT64_MAX = np.iinfo(np.int64).max


def index_as_columns(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (the table ``name`` of the contract) as ``fit`` reads it: an index level named
    after a contract column the frame lacks is that column (``users.set_index("user_id")``,
    ``interactions.set_index(["user_id", "item_id"])``), and an index level named like one of
    its columns (``set_index(..., drop=False)``) is left out, the column being what the contract
    reads: pandas refused such a frame ("'user_id' is both an index level and a column label,
    which is ambiguous"), and an index named user_id was a missing column. The frame itself
    when its index names no contract column; otherwise a shallow copy on a default index (the
    rows are not copied). Anything but a DataFrame is returned as is, for check_table."""
    if not isinstance(frame, pd.DataFrame):
        return frame
    contract = set(TABLES[name].names)
    levels = [n for n in frame.index.names if n is not None and (
        n in frame.columns or n in contract)]
    if not levels:
        return frame
    out = frame.copy(deep=False)
    out.index = pd.RangeIndex(len(frame))
    lifted = [n for n in levels if n not in frame.columns]
    for at, n in enumerate(lifted):  # first, as reset_index puts them; their dtypes kept
        out.insert(at, n, frame.index.get_level_values(n))
    return out


def check_table(name: str, frame: pd.DataFrame, columns: tuple[str, ...],
                 key: str | None = None) -> None:
    """A clear error for a table ``fit`` cannot use: missing columns, or a key that repeats
    (rows are matched to ids by position, so a repeated id would shift every later row)."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{name}: expected a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing} (has {list(frame.columns)})")
    if key is not None:
        dup = frame[key].duplicated(keep=False) & frame[key].notna()  # missing: see _ids
        if dup.any():
            raise ValueError(f"{name}: {key} must be unique, but {int(dup.sum())} rows share "
                             f"an id (e.g. {key} {frame[key][dup].iloc[0]})")


def check_events(interactions: pd.DataFrame) -> None:
    """``interactions.event`` holds the contract's kinds only (docs/CONTRACTS.md): another
    kind ("purchase") or a missing one was fitted on silently, as if it were one of them."""
    col = interactions["event"]
    bad = ~col.isin(EVENTS).to_numpy(bool)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"interactions.event: {int(bad.sum())} value(s) outside the contract "
                         f"(e.g. {col.iloc[first]!r} at row {first}); allowed: "
                         + ", ".join(EVENTS))


def _ids(name: str, frame: pd.DataFrame, column: str) -> np.ndarray:
    """``frame[column]`` (an id column) as int64, or a ValueError naming ``name.column``:
    missing values (``<NA>`` of a nullable column, NaN, None) or values that are not whole
    numbers (text, fractions, booleans). Any integer dtype, nullable or not, is accepted."""
    col = frame[column]
    missing = col.isna()
    if missing.any():
        raise ValueError(f"{name}.{column}: {int(missing.sum())} missing value(s) (e.g. at row "
                         f"{int(np.flatnonzero(missing.to_numpy())[0])}); every row needs an id")
    if pd.api.types.is_bool_dtype(col.dtype):
        raise ValueError(f"{name}.{column}: expected integer ids, got dtype {col.dtype}")
    if pd.api.types.is_integer_dtype(col.dtype):
        _check_int64_range(name, column, col)
        return col.to_numpy(np.int64)
    values = pd.to_numeric(col, errors="coerce") if not pd.api.types.is_numeric_dtype(
        col.dtype) else col
    if pd.api.types.is_integer_dtype(values.dtype):  # text of whole numbers, read exactly
        _check_int64_range(name, column, values)
        return values.to_numpy(np.int64)
    floats = values.astype("float64")
    bad = values.isna() | (floats % 1 != 0)
    if bad.any():
        raise ValueError(f"{name}.{column}: expected integer ids, got dtype {col.dtype} with "
                         f"{int(bad.sum())} non-integer value(s) (e.g. "
                         f"{col[bad.to_numpy()].iloc[0]!r})")
    outside = (floats >= 2.0 ** 63) | (floats < -2.0 ** 63)
    if outside.any():
        raise ValueError(f"{name}.{column}: id {col[outside.to_numpy()].iloc[0]!r} is outside "
                         f"the int64 range ({int(outside.sum())} such id(s))")
    return values.to_numpy(np.int64)


def _check_int64_range(name: str, column: str, col: pd.Series) -> None:
    """A ValueError naming ``name.column`` for an unsigned id past int64's maximum (hashed
    64-bit ids as uint64): cast, it wrapped to a negative id in silence, one that ``recommend``
    then refused as outside the int64 range."""
    top = col.max() if len(col) else 0
    if int(top) > _INT64_MAX:
        raise ValueError(f"{name}.{column}: id {int(top)} is outside the int64 range "
                         f"({int((col > _INT64_MAX).sum())} such id(s))")


def _is_number(value: object) -> bool:
    """A text or a number (not a bool): what ``pd.to_numeric`` may read as a number."""
    return isinstance(value, str) or (isinstance(value, numbers.Number)
                                      and not isinstance(value, (bool, np.bool_)))


def _numbers(name: str, frame: pd.DataFrame, column: str, expected: str) -> pd.Series:
    """``frame[column]`` (a number column: ``items.year``, ``interactions.rating``) as float64
    numbers, so that a harness's ``convert_dtypes()``, Arrow-backed or ``category`` table fits
    as the plain one does: text or categories are parsed ("1995" is 1995; a blank or missing
    value stays missing, as an empty cell of a data file does). Booleans, dates and times, or
    text that is not a number are a ValueError naming ``name.column`` (pandas' own error named
    neither, and booleans or datetimes were silently taken as numbers)."""
    col = frame[column]
    if col.dtype.kind in "bmM":
        raise ValueError(f"{name}.{column}: expected {expected}, got dtype {col.dtype}")
    values = col.astype(object)
    missing = values.isna().to_numpy(bool) | values.map(
        lambda v: isinstance(v, str) and not v.strip()).to_numpy(bool)
    num = pd.to_numeric(values.where(~missing), errors="coerce")
    bad = ~missing & (num.isna().to_numpy(bool) | ~values.map(_is_number).to_numpy(bool))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}.{column}: expected {expected}, got dtype {col.dtype} with "
                         f"{int(bad.sum())} value(s) that are not numbers (e.g. "
                         f"{values.iloc[first]!r} at row {first})")
    return num.astype(np.float64)


def with_numbers(name: str, frame: pd.DataFrame, expected: Mapping[str, str]) -> pd.DataFrame:
    """``frame`` with its number columns ``expected`` (column → what it holds) as numbers
    (see ``_numbers``); the frame itself, not a copy, when each already has a numeric dtype
    (nullable and Arrow ones included)."""
    def plain(dtype) -> bool:
        return pd.api.types.is_numeric_dtype(dtype) and dtype.kind not in "bmM"

    todo = [c for c in expected if c in frame and not plain(frame[c].dtype)]
    if not todo:
        return frame
    return frame.assign(**{c: _numbers(name, frame, c, expected[c]) for c in todo})


def with_ids(name: str, frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """``frame`` with its id ``columns`` as int64 (see ``_ids``); the frame itself, not a
    copy, when they already are (20M interactions are not copied for nothing)."""
    if all(frame[c].dtype == np.int64 for c in columns):
        return frame
    return frame.assign(**{c: _ids(name, frame, c) for c in columns})


def request_user_ids(uid: np.ndarray) -> np.ndarray:
    """The one-dimensional ``user_ids`` of ``recommend`` as int64, or a ValueError naming
    ``user_ids``: a missing id (``<NA>``, NaN, None), a fraction, a boolean, text that is not
    a number, or an id outside int64 (each was silently turned into another user's id)."""
    if uid.dtype.kind == "b":
        raise ValueError("user_ids: expected integer user ids, got booleans")
    if uid.dtype.kind not in "iufOUS":  # datetimes, durations, complex numbers, records
        raise ValueError(f"user_ids: expected integer user ids, got dtype {uid.dtype}")
    if uid.dtype.kind in "OUS":
        num = pd.to_numeric(pd.Series(uid, dtype=object), errors="coerce")
        junk = num.isna().to_numpy() & ~pd.isna(uid)
        if junk.any():
            first = int(np.flatnonzero(junk)[0])
            raise ValueError(f"user_ids: expected integer user ids, got "
                             f"{uid.tolist()[first]!r} at position {first}")
        if any(isinstance(v, (bool, np.bool_)) for v in uid):
            raise ValueError("user_ids: expected integer user ids, got booleans")
        uid = num.to_numpy()
    if uid.dtype.kind == "f":
        missing = np.isnan(uid)
        if missing.any():
            raise ValueError(f"user_ids: {int(missing.sum())} missing id(s), e.g. at position "
                             f"{int(np.flatnonzero(missing)[0])}")
        bad = ~np.isfinite(uid) | (uid % 1 != 0) | (np.abs(uid) >= 2.0 ** 63)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise ValueError(f"user_ids: expected integer user ids, got {uid.tolist()[first]!r} "
                             f"at position {first}")
    if uid.dtype.kind == "u" and uid.size and uid.max() > np.iinfo(np.int64).max:
        raise ValueError(f"user_ids: id {int(uid.max())} is outside the int64 range")
    try:
        return uid.astype(np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"user_ids: expected integer user ids ({exc})") from None


def event_times(interactions: pd.DataFrame) -> np.ndarray:
    """``interactions.timestamp`` as int64 unix seconds, or a ValueError naming the column:
    neither numbers nor datetimes (text, objects, durations), missing values (NaN, ``<NA>``,
    NaT), infinite ones, or times past 2100-01-01 (a time in milliseconds, microseconds or
    nanoseconds, which would give every time feature, the popularity decay and the request
    features nonsense, then fail on the request path).

    Datetimes (what ``pd.to_datetime`` or a Parquet timestamp column give a pandas user) are
    read as the pipeline's ingest reads them (``recsys.data.coerce``): naive ones are UTC,
    tz-aware ones are converted to UTC, in any unit (ns, us, ms, s; numpy or Arrow), floored
    to whole seconds. Text is refused rather than guessed at ("01/02/2023")."""
    col = interactions["timestamp"]
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        return _datetime_seconds(col)
    if not pd.api.types.is_numeric_dtype(col.dtype) or col.dtype.kind in "bmc":
        raise ValueError(f"interactions.timestamp: expected unix seconds (integers) or "
                         f"datetimes, got dtype {col.dtype}; convert it first, e.g. with "
                         "pd.to_datetime(interactions['timestamp'], utc=True)")
    missing = col.isna()
    if missing.any():
        raise ValueError(f"interactions.timestamp: {int(missing.sum())} missing value(s); "
                         "expected unix seconds")
    if col.dtype.kind == "f":
        infinite = np.isinf(col.to_numpy(np.float64))
        if infinite.any():
            first = int(np.flatnonzero(infinite)[0])
            raise ValueError(f"interactions.timestamp: {int(infinite.sum())} infinite value(s) "
                             f"(e.g. {col.iloc[first]} at row {first}); expected unix seconds")
    top = col.max() if len(col) else 0  # before the cast: a uint64 past int64 would wrap
    if top > MAX_TIMESTAMP:
        raise ValueError(f"interactions.timestamp: expected unix seconds, but values go up to "
                         f"{int(top)} (after 2100-01-01); timestamps in milliseconds (or "
                         "finer) must be converted to seconds first")
    return col.to_numpy(np.int64)


def _datetime_seconds(col: pd.Series) -> np.ndarray:
    """A datetime ``interactions.timestamp`` as int64 unix seconds, by the conversion of the
    pipeline's ingest (``recsys.data.coerce.to_seconds``), so that the same events fitted
    through the API or through the pipeline have the same times."""
    try:
        seconds = to_seconds(col)
    except (pd.errors.OutOfBoundsDatetime, OverflowError) as exc:  # Arrow past 2262 in ns
        raise ValueError(f"interactions.timestamp: a time out of range ({exc}); expected "
                         "times before 2100-01-01") from None
    missing = seconds.isna().to_numpy(bool)
    if missing.any():
        raise ValueError(f"interactions.timestamp: {int(missing.sum())} missing value(s) (NaT, "
                         f"e.g. at row {int(np.flatnonzero(missing)[0])}); every event needs "
                         "a time")
    top = seconds.max() if len(seconds) else 0
    if top > MAX_TIMESTAMP:
        raise ValueError(f"interactions.timestamp: times go up to "
                         f"{np.datetime64(int(top), 's')} (after 2100-01-01); expected the "
                         "times the events happened")
    return seconds.to_numpy(np.int64)


_LISTS = (list, tuple, np.ndarray)  # genres as a list of names (Arrow list<string>: arrays)


def genre_text(items: pd.DataFrame) -> pd.DataFrame:
    """``items`` with ``genres`` as the contract's pipe-separated text: a list of names (an
    Arrow ``list<string>`` column, Python lists or tuples) is joined with ``|``, and a missing
    value is no genres (as an empty string is), not pandas' "ambiguous NA". The frame itself
    when nothing needs changing. A list was read as one unknown genre name, so no genres."""
    values = items["genres"].astype(object)

    def text(v: object) -> object:
        if isinstance(v, _LISTS):
            return "|".join(str(g) for g in v if g is not None and not pd.isna(g))
        return v

    listed = values.map(lambda v: isinstance(v, _LISTS)).to_numpy(bool)
    missing = values.isna().to_numpy(bool)  # a list is never missing, even an empty one
    if not listed.any() and not missing.any():
        return items
    return items.assign(genres=values.map(text).where(~missing, ""))


def check_int(name: str, value: object, least: int) -> None:
    """A ValueError naming ``name`` unless ``value`` is an integer (not a bool) >= least."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < least:
        raise ValueError(f"{name}: expected an integer >= {least}, got {value!r}")

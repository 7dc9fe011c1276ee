"""Reading a time window of payload logs from the object store (shared by drift and skew).

Layout (docs/CONTRACTS.md): ``payload-logs/date=YYYY-MM-DD/hour=HH/model_version=V/part-*.parquet``.
Only the hour partitions that overlap the window are listed, only the needed columns are
read, and rows are kept when ``since <= ts < until``. A file that cannot be read, has no
``ts`` or whose columns do not unify with the other files' (another schema) is skipped with
a warning naming it: one odd file never hides the rest of the window.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from marquee.store import ObjectStore, local_path_of
from monitoring.errors import MonitoringInputError, NoDataError

log = logging.getLogger("marquee.monitoring")

__all__ = ["Window", "parse_time", "parse_window", "partition_prefixes", "list_window_keys",
           "read_window", "read_parquet_path", "parquet_files", "PAYLOG_PREFIX"]

PAYLOG_PREFIX = "payload-logs"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_VERSION_SEGMENT = re.compile(r"/model_version=([^/]+)/")
#: The longest window: each of its hours is one listing of the store (366 days: 8,784).
MAX_WINDOW = timedelta(days=366)


@dataclass(frozen=True)
class Window:
    since: datetime
    until: datetime

    def __post_init__(self) -> None:
        if self.until <= self.since:
            raise MonitoringInputError(f"window: until {self.until.isoformat()} is not after "
                                       f"since {self.since.isoformat()}")
        if self.until - self.since > MAX_WINDOW:
            raise MonitoringInputError(
                f"window: {self.since.isoformat()} .. {self.until.isoformat()} is longer than "
                f"{MAX_WINDOW.days} days (one store listing per hour); a bare number is unix "
                "seconds: for a duration give its unit (90m, 2h, 7d)")


def parse_time(value: str, now: datetime) -> datetime:
    """``2025-03-01T02:00:00Z`` / ``2025-03-01`` / unix seconds / ``now``."""
    v = value.strip()
    if v == "now":
        return now
    try:
        return datetime.fromtimestamp(float(v), tz=timezone.utc)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError as exc:
        raise MonitoringInputError(f"time={value!r}: use ISO-8601, unix seconds or 'now'") from exc
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def parse_window(since: str, until: str = "now", now: datetime | None = None) -> Window:
    """``since`` is a time or a duration before ``until`` (``90m``, ``1h``, ``2d``); a window
    longer than ``MAX_WINDOW`` is refused (``--since 90`` is unix second 90: 56 years of
    hourly listings before, not 90 minutes)."""
    now = now or datetime.now(timezone.utc)
    try:
        end = parse_time(until, now)
        m = _DURATION.match(since.strip())
        if m:
            return Window(end - timedelta(seconds=float(m[1]) * _UNIT[m[2]]), end)
        return Window(parse_time(since, now), end)
    except OverflowError:  # unix seconds or a duration past the calendar: 1e20, inf, 1e8h
        raise MonitoringInputError(f"window {since!r} .. {until!r}: a time beyond the years "
                                   "1..9999") from None


def partition_prefixes(window: Window, prefix: str = PAYLOG_PREFIX) -> list[str]:
    """One ``<prefix>/date=…/hour=…/`` per hour the window touches."""
    hour = window.since.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    out = []
    while hour < window.until:
        out.append(f"{prefix}/date={hour:%Y-%m-%d}/hour={hour:%H}/")
        hour += timedelta(hours=1)
    return out


def list_window_keys(store: ObjectStore, window: Window, model_version: str | None = None,
                     prefix: str = PAYLOG_PREFIX) -> list[str]:
    keys = []
    for p in partition_prefixes(window, prefix):
        for key in store.list(p):
            if not key.endswith(".parquet"):
                continue
            if model_version is not None:
                m = _VERSION_SEGMENT.search("/" + key)
                if m is None or m[1] != model_version:
                    continue
            keys.append(key)
    return keys


def _read_file(path: Path | str, columns: Sequence[str] | None,
               dictionary: Sequence[str] = ()) -> pa.Table:
    """``columns`` that the file has (a missing one is reported by whoever needs it);
    ``dictionary`` string columns stay dictionary-encoded (10x faster than decoding)."""
    try:
        present = set(pq.read_schema(path).names)
        if columns is not None:
            columns = [c for c in columns if c in present]
        return pq.read_table(path, columns=list(columns) if columns is not None else None,
                             read_dictionary=[c for c in dictionary if c in present] or None)
    except (pa.ArrowInvalid, OSError) as exc:
        raise MonitoringInputError(f"{path}: {exc}") from exc


def _inside(table: pa.Table, window: Window) -> pa.Table:
    """Rows with since <= ts < until; the table itself when all are (filtering copies every
    column, list columns included)."""
    ts = table.column("ts")
    lo, hi = window.since.timestamp(), window.until.timestamp()
    bounds = pc.min_max(ts)
    if bounds["min"].as_py() is not None and bounds["min"].as_py() >= lo \
            and bounds["max"].as_py() < hi:
        return table
    return table.filter(pc.and_(pc.greater_equal(ts, lo), pc.less(ts, hi)))


def _skip(key: str, why: str, skipped: list[str]) -> None:
    log.warning("skipping a payload-log file that does not fit the window: %s: %s", key, why)
    skipped.append(key)


def _fitting(parts: list[tuple[str, pa.Table]], skipped: list[str]) -> list[pa.Table]:
    """The parts whose columns unify with the window's (numbers widen: int64 to double); a
    file of another schema (a feature logged as text) is skipped, not the whole window.
    Files are taken largest first, so a small odd file is the one left out."""
    kept: set[int] = set()
    schema: pa.Schema | None = None
    for i in sorted(range(len(parts)), key=lambda i: -parts[i][1].num_rows):
        key, part = parts[i]
        try:
            schema = part.schema if schema is None else pa.unify_schemas(
                [schema, part.schema], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            clash = next((f for f in part.schema if f.name in schema.names
                          and not _unifies(schema.field(f.name), f)), None)
            _skip(key, f"column {clash.name} is {clash.type}, the window's other files have "
                       f"{schema.field(clash.name).type}" if clash else str(exc), skipped)
            continue
        kept.add(i)
    return [part for i, (_, part) in enumerate(parts) if i in kept]  # in the keys' order


def _unifies(a: pa.Field, b: pa.Field) -> bool:
    try:
        pa.unify_schemas([pa.schema([a]), pa.schema([b])], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return False
    return True


def read_window(store: ObjectStore, keys: Sequence[str], window: Window | None,
                columns: Sequence[str] | None = None, dictionary: Sequence[str] = ()
                ) -> pa.Table:
    """Rows of ``keys`` inside ``window`` (``ts`` column), ``columns`` only."""
    if not keys:
        raise NoDataError("no payload logs in the window"
                          + (f" {window.since.isoformat()} .. {window.until.isoformat()}"
                             if window else ""))
    cols = None if columns is None else sorted(set(columns) | ({"ts"} if window else set()))
    parts, unreadable = [], []
    with tempfile.TemporaryDirectory(prefix="marquee-window-") as tmp:
        for i, key in enumerate(keys):
            local = local_path_of(store.uri(key))
            if local is None:  # remote store: download (the store verifies the sha256)
                local = Path(tmp) / f"{i}.parquet"
                store.get_file(key, local)
            try:
                part = _read_file(local, cols, dictionary)
            except MonitoringInputError as exc:  # one damaged file must not hide the rest
                log.warning("skipping an unreadable payload-log file: %s", exc.message)
                unreadable.append(key)
                continue
            if window is not None and "ts" not in part.column_names:
                _skip(key, "it has no ts column", unreadable)
                continue
            parts.append((key, part if window is None else _inside(part, window)))
        tables = _fitting(parts, unreadable)
        if not tables:
            raise NoDataError(f"none of the {len(keys)} payload-log files in the window could "
                              f"be read (first: {unreadable[0]})")
        table = pa.concat_tables(tables, promote_options="permissive")
    if table.num_rows == 0:
        raise NoDataError(f"no payload-log rows in the window ({len(keys)} files)")
    return table


def parquet_files(path: Path | str) -> list[Path]:
    """A Parquet file, or every ``*.parquet`` under a directory but its hidden ones (a local
    store keeps checksums under ``.marquee-store``)."""
    p = Path(path)
    if not p.is_dir():
        return [p] if p.exists() else []
    return sorted(f for f in p.rglob("*.parquet")
                  if not any(part.startswith(".") for part in f.relative_to(p).parts))


def read_parquet_path(path: Path | str, columns: Sequence[str] | None = None,
                      dictionary: Sequence[str] = ()) -> pa.Table:
    """A Parquet file, or every ``*.parquet`` under a directory (an ad-hoc window). As in
    :func:`read_window`, a file that cannot be read, or whose columns do not unify with the
    other files', is skipped with a warning naming it (one damaged file stopped the check,
    whatever the others held); only when none can be read is the path refused, with the
    first file's error."""
    p = Path(path)
    files = parquet_files(p)
    if not files:
        raise NoDataError(f"no Parquet files at {p}")
    parts, unreadable = [], []
    for f in files:
        try:
            parts.append((str(f), _read_file(f, columns, dictionary)))
        except MonitoringInputError as exc:
            unreadable.append(exc)
    if not parts:
        if len(files) == 1:
            raise unreadable[0]
        raise NoDataError(f"none of the {len(files)} Parquet files at {p} could be read "
                          f"(first: {unreadable[0].message})")
    for exc in unreadable:  # one damaged file must not hide the rest
        log.warning("skipping an unreadable Parquet file: %s", exc.message)
    table = pa.concat_tables(_fitting(parts, []), promote_options="permissive")
    if table.num_rows == 0:
        raise NoDataError(f"{p} has no rows")
    return table
